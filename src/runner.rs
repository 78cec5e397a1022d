//! Runs the dates of `ubm run` and `ubm submit` on an engine and prints what they did. Ctrl-C
//! cancels the engine's running jobs and leaves every partition as it was.

use std::process::ExitCode;

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use ubm_cluster::Engine;
use ubm_jobs::RunDate;
use ubm_pipeline::backfill::skip_reason;
use ubm_pipeline::{Backfill, DateOutcome, RunConfig, RunReport, dashboard, run_dates};

/// Runs `dates` on `engine` as `plan` says and prints the reports (a summary each, or all as
/// JSON), and for several dates one line per date. Exits non-zero when a date failed, was held
/// or could not run.
pub async fn run_and_print(
    engine: &Engine,
    config: &RunConfig,
    dates: &[RunDate],
    plan: Backfill,
    json: bool,
    refresh_report: bool,
) -> Result<ExitCode> {
    let backfill = dates.len() > 1;
    let finished = AtomicUsize::new(0);
    let all_dates = run_dates(engine, config, dates, plan, |outcome, done, total| {
        finished.store(done, Ordering::SeqCst);
        if backfill {
            let (word, why) = outcome.describe();
            let why = if word == "succeeded" { String::new() } else { format!(": {why}") };
            eprintln!("[{done}/{total}] {} {word}{why}", outcome.date());
        }
    });
    // Kept alive through the Ctrl-C branch, so that its jobs are cancelled while they are still
    // followed; dropping it then removes its unfinished staging. Committed partitions stay.
    tokio::pin!(all_dates);
    let outcomes = tokio::select! {
        done = &mut all_dates => done?,
        signal = crate::signals::stop_requested() => {
            let signal = signal?;
            for job in engine.cancel_running_jobs().await {
                eprintln!("cancelled job {job}");
            }
            let done = finished.load(Ordering::SeqCst);
            bail!(
                "interrupted by {signal} ({done} of {} dates done): every partition is either replaced whole or as \
                 it was; rerun the dates to finish them (a backfill skips the complete ones)",
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
    let failed = outcomes.iter().any(DateOutcome::is_failure);
    // One date: an error that kept it from running is the command's error, as it always was.
    let mut outcomes = outcomes;
    if !backfill
        && matches!(outcomes.first(), Some(DateOutcome::Error { .. }))
        && let Some(DateOutcome::Error { error, .. }) = outcomes.pop()
    {
        return Err(error.into());
    }
    let reports: Vec<&RunReport> = outcomes.iter().filter_map(|o| if let DateOutcome::Ran(r) = o { Some(&**r) } else { None }).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print!("{}", ubm_pipeline::summary::summary(report, config)?);
        }
        if backfill {
            print!("{}", ubm_pipeline::backfill::table(&outcomes));
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `--dry-run`: which dates would run and which would be skipped, and why.
pub async fn print_plan(config: &RunConfig, dates: &[RunDate], plan: Backfill) -> Result<ExitCode> {
    let mut to_run = 0;
    println!("{:<10}  WOULD", "DATE");
    for date in dates {
        match skip_reason(config, *date, plan.redo).await? {
            Some(why) => println!("{date}  skip: {why}"),
            None => {
                to_run += 1;
                println!("{date}  run");
            }
        }
    }
    println!(
        "{to_run} of {} dates would run, {} at a time (--redo {}){}",
        dates.len(),
        plan.parallel,
        plan.redo,
        if plan.keep_going { ", going on past failures" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
