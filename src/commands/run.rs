//! `ubm run`: the daily pipeline on one engine, in this process or on a cluster it drives.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use ubm_cluster::Engine;

use crate::args::{EngineArgs, RunData};
use crate::output::progress::LogJobs;
use crate::runner::run_and_print;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: RunData,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let (json, refresh_report) = (args.data.json, !args.data.no_report);
    let executor_wait = Duration::from_secs(args.data.executor_wait);
    let (dates, config) = args.data.into_config().await?;
    let engine = Engine::start_sized(args.engine.kind()?, args.engine.partitions.get())
        .await?
        .with_job_observer(Arc::new(LogJobs))
        .with_executor_wait(executor_wait);
    run_and_print(&engine, &config, &dates, json, refresh_report).await
}
