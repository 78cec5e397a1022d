//! `ubm cancel`: stops a cluster-mode run (its driver cancels its jobs and removes its staging),
//! or one job on a scheduler (the run waiting for it fails without committing that job's
//! work). What the run committed before (an ingest or extract that had finished) stays: the
//! date is then failed or mixed until it is run again.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ubm_cluster::engine::scheduler_api::{CancelOutcome, SchedulerApi};
use ubm_cluster::runs::RunState;
use ubm_cluster::runs::client::RunsApi;
use ubm_cluster::runs::service::is_run_id;

use crate::args::SchedulerArg;

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// A run id (as `submit --deploy-mode cluster` printed it) or a job id (as `submit` or
    /// `status` printed it).
    pub job: String,
    #[command(flatten)]
    pub scheduler: SchedulerArg,
}

pub async fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let api = SchedulerApi::new(args.scheduler.address()?)?;
    if is_run_id(&args.job) {
        return cancel_run(&RunsApi::new(api), &args.job).await;
    }
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

/// Cancels a cluster-mode run and waits (up to a minute) until its driver has stopped.
async fn cancel_run(runs: &RunsApi, id: &str) -> Result<ExitCode> {
    let Some(mut run) = runs.cancel(id).await? else {
        anyhow::bail!("no run {id} at {} (`ubm status --runs --scheduler …` lists them)", runs.scheduler());
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !run.state.has_ended() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        run = runs.get(id).await?.unwrap_or(run);
    }
    if !run.state.has_ended() {
        eprintln!("run {id}: cancel requested; its driver has not stopped yet (`ubm status {id}` shows when it has)");
        return Ok(ExitCode::FAILURE);
    }
    if run.state != RunState::Cancelled {
        eprintln!("run {id} ended {} before the cancel reached it ({})", run.state, run.exit.as_deref().unwrap_or("ended"));
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "run {id} cancelled: its jobs were cancelled and its staging removed; partitions it had committed stay (`ubm status --lake` \
         shows the date as failed or mixed): rerun the date to make it whole"
    );
    Ok(ExitCode::SUCCESS)
}
