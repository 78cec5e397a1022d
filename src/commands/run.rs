//! `ubm run`: the daily pipeline on one engine, in this process or on a cluster it drives.
//! On a cluster's scheduler node it is also the driver of a cluster-mode run (hidden flags
//! `--run-id` and `--progress-file`, which the scheduler passes).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use ubm_cluster::Engine;
use ubm_cluster::engine::follow::JobObserver;

use crate::args::{EngineArgs, RunData};
use crate::output::progress::{LogJobs, Observers, ProgressFile};
use crate::runner::run_and_print;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: RunData,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The run id of every date, kept across restarts of a cluster-mode run's driver: dates it
    /// completed are skipped, tasks it committed are kept. Set by the scheduler.
    #[arg(long, hide = true, value_name = "ID")]
    pub run_id: Option<String>,
    /// Where a cluster-mode run's driver writes its jobs' progress. Set by the scheduler.
    #[arg(long, hide = true, value_name = "FILE")]
    pub progress_file: Option<PathBuf>,
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let (json, refresh_report) = (args.data.json, !args.data.no_report);
    let (plan, dry_run) = (args.data.backfill(), args.data.dry_run);
    let executor_wait = Duration::from_secs(args.data.executor_wait);
    let (dates, mut config) = args.data.into_config().await?;
    if dry_run {
        return crate::runner::print_plan(&config, &dates, plan).await;
    }
    config.run_id = args.run_id;
    let engine = Engine::start_sized(args.engine.kind()?, args.engine.partitions.get()).await?;
    let mut observers: Vec<Arc<dyn JobObserver>> = vec![Arc::new(LogJobs)];
    if let Some(path) = args.progress_file {
        observers.push(Arc::new(ProgressFile::new(path, engine.partitions().clone())));
    }
    let engine = engine.with_job_observer(Arc::new(Observers(observers))).with_executor_wait(executor_wait);
    run_and_print(&engine, &config, &dates, plan, json, refresh_report).await
}
