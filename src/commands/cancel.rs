//! `ubm cancel`: stops a job on a scheduler; the run waiting for it fails without committing
//! that job's work. What the run committed before (an ingest or extract that had finished)
//! stays: the date is then failed or mixed until it is run again.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ubm_cluster::engine::scheduler_api::{CancelOutcome, SchedulerApi};

use crate::args::SchedulerArg;

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job id, as `submit` or `status` printed it.
    pub job: String,
    #[command(flatten)]
    pub scheduler: SchedulerArg,
}

pub async fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let api = SchedulerApi::new(args.scheduler.address()?)?;
    match api.cancel(&args.job).await? {
        CancelOutcome::Cancelled => {
            println!(
                "cancelled job {}; the run waiting for it fails and commits nothing of that job. Partitions its earlier tasks \
                 committed stay (`ubm status --lake` shows the date as failed or mixed): rerun the date to make it whole",
                args.job
            );
            Ok(ExitCode::SUCCESS)
        }
        CancelOutcome::AlreadyEnded(reason) => {
            eprintln!("job {} was not cancelled: {reason}", args.job);
            Ok(ExitCode::FAILURE)
        }
    }
}
