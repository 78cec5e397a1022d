//! `ubm publish`: a day its checks held, published exactly as its run staged it, once someone
//! has looked at it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use ubm_cluster::{Engine, EngineKind};
use ubm_jobs::RunDate;
use ubm_pipeline::publish::{PublishRequest, publish as publish_held};
use ubm_pipeline::{Lake, SecretUrl, dashboard};

use crate::args::RetryArgs;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The held date (`ubm status --lake L` lists held days and the checks that held them).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: RunDate,
    /// The lake: a directory or s3://bucket/prefix, as `ubm run --lake` wrote it.
    #[arg(long, default_value = "ubm-data/lake", value_name = "DIR|URL")]
    pub lake: String,
    /// Also load the published day into this Postgres (or Redshift) database, as `ubm run
    /// --warehouse` would have.
    #[arg(long, env = "UBM_WAREHOUSE", hide_env_values = true, value_name = "postgres://…")]
    pub warehouse: Option<SecretUrl>,
    /// Who accepts the day, recorded in its run report. Default: USER@HOST.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// When a run holds the date, wait up to this many seconds for it instead of failing.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub wait_for_lease: u64,
    #[command(flatten)]
    pub retry: RetryArgs,
}

pub async fn publish(args: PublishArgs) -> Result<ExitCode> {
    let warehouse = args.warehouse.map(|url| url.into_postgres("--warehouse")).transpose()?;
    let lake = Lake::open_existing(&args.lake).await?;
    let by = args.by.unwrap_or_else(who_is_here);
    let request = PublishRequest {
        lake: lake.clone(),
        date: args.date,
        warehouse,
        by,
        retry: args.retry.policy(),
        wait_for_lease: Duration::from_secs(args.wait_for_lease),
    };
    // The table is copied by the lake's commit, and the warehouse load reads it in-process.
    let engine = Engine::start(EngineKind::Local).await?;
    let report = publish_held(&engine, &request).await?;
    if let Err(e) = dashboard::write(&lake, None).await {
        tracing::warn!("could not refresh the lake's report (`ubm report` makes it): {}", e.describe());
    }
    let accepted = report.accepted.as_ref().map(|a| a.checks.join(", ")).unwrap_or_default();
    println!(
        "published {} (run {}): {} rows in {}, accepting {accepted} (by {})",
        report.run_date,
        report.run_id,
        report.counts.metric_rows_written,
        report.metric_partition.as_deref().unwrap_or("-"),
        request.by
    );
    Ok(if report.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// USER@HOST of whoever runs the command (the host as the date's lease names it).
fn who_is_here() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{}", ubm_pipeline::lease::Host::current().name)
}
