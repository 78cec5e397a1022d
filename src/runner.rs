//! Runs the dates of `ubm run` and `ubm submit` on an engine and prints what they did. Ctrl-C
//! cancels the engine's running jobs and leaves every partition as it was.

use std::process::ExitCode;

use anyhow::{Result, bail};
use ubm_cluster::Engine;
use ubm_jobs::RunDate;
use ubm_pipeline::{RunConfig, dashboard, run_dates};

/// Runs `dates` in order on `engine`, stopping at the first failed date, and prints the
/// reports (a summary each, or all as JSON). Exits non-zero when a date failed.
pub async fn run_and_print(engine: &Engine, config: &RunConfig, dates: &[RunDate], json: bool, refresh_report: bool) -> Result<ExitCode> {
    let backfill = dates.len() > 1;
    let finished = std::cell::Cell::new(0);
    let all_dates = run_dates(engine, config, dates, |report| {
        finished.set(finished.get() + 1);
        if backfill {
            tracing::info!("{} {} ({} of {} dates)", report.run_date, report.status, finished.get(), dates.len());
        }
    });
    // Kept alive through the Ctrl-C branch, so that its jobs are cancelled while they are still
    // followed; dropping it then removes its unfinished staging. Committed partitions stay.
    tokio::pin!(all_dates);
    let reports = tokio::select! {
        done = &mut all_dates => done?,
        signal = crate::signals::stop_requested() => {
            let signal = signal?;
            for job in engine.cancel_running_jobs().await {
                eprintln!("cancelled job {job}");
            }
            let done = finished.get();
            let at = dates.get(done).map_or(String::new(), |d| format!(" while running {d}"));
            bail!(
                "interrupted by {signal}{at} ({done} of {} dates done): every partition is either replaced whole or as \
                 it was; rerun the date to finish it",
                dates.len()
            );
        }
    };
    engine.settle_jobs().await;
    if refresh_report {
        // The page is a view of the lake: a failure to refresh it never fails the run.
        match dashboard::write(&config.lake, None).await {
            Ok(written) => tracing::info!("refreshed the report {written}"),
            Err(e) => tracing::warn!("could not refresh the lake's report (`ubm report` makes it): {}", e.describe()),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print!("{}", ubm_pipeline::summary::summary(report, config)?);
        }
    }
    if let Some(failed) = reports.iter().find(|r| !r.succeeded())
        && backfill
    {
        eprintln!("the backfill stopped at {}, which failed; later dates were not run", failed.run_date);
    }
    Ok(if reports.iter().all(|r| r.succeeded()) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
