//! Several dates in one command (`--from/--to`): only what is left, several at once if asked,
//! going on past a failed date if asked, and one line per date at the end.
//!
//! Which dates run follows Airflow's backfill "reprocess behavior" ([`Redo`]): by default a
//! backfill runs every date that is not complete (never run, failed, mixed, damaged or held) and
//! skips the complete ones, whose `_SUCCESS` markers and run report agree (`crate::day`). Each
//! date runs under its own lease ([`crate::lease`]), so dates run side by side never share a
//! partition, and a date another process is running is refused, not run twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use serde::Serialize;
use ubm_cluster::Engine;
use ubm_jobs::RunDate;

use crate::day::{DayState, day_status};
use crate::error::Result;
use crate::run::{RunConfig, run_date};
use crate::run_report::RunReport;

/// Which dates of a backfill run again (Airflow's `reprocess_behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Redo {
    /// Only dates never run.
    None,
    /// Dates never run, and those not complete (failed, mixed, damaged, held): what is left.
    Failed,
    /// Every date, the complete ones too.
    All,
}

impl std::str::FromStr for Redo {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Redo, String> {
        match text {
            "none" => Ok(Redo::None),
            "failed" => Ok(Redo::Failed),
            "all" => Ok(Redo::All),
            other => Err(format!("`{other}`: use none (only dates never run), failed (all but the complete ones) or all")),
        }
    }
}

impl std::fmt::Display for Redo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Redo::None => "none",
            Redo::Failed => "failed",
            Redo::All => "all",
        })
    }
}

/// How the dates of a command run.
#[derive(Debug, Clone, Copy)]
pub struct Backfill {
    pub redo: Redo,
    /// Go on with the other dates after one fails (else no new date starts).
    pub keep_going: bool,
    /// Dates run at once (each under its own lease; on a cluster their jobs share the executors).
    pub parallel: usize,
}

impl Backfill {
    /// One date named on its own (`--date`): it runs whatever its state.
    pub fn one_date() -> Backfill {
        Backfill { redo: Redo::All, keep_going: false, parallel: 1 }
    }
}

/// What became of one date.
#[derive(Debug)]
pub enum DateOutcome {
    /// It ran; the report says how it ended (succeeded, failed, held).
    Ran(Box<RunReport>),
    /// It was not run: complete already (with `--redo`'s default), never started because an
    /// earlier date failed, or (a dry run) what would happen.
    Skipped { date: RunDate, why: String },
    /// It could not run: another run holds it, or the lake failed.
    Error { date: RunDate, error: crate::PipelineError },
}

impl DateOutcome {
    pub fn date(&self) -> String {
        match self {
            DateOutcome::Ran(report) => report.run_date.clone(),
            DateOutcome::Skipped { date, .. } | DateOutcome::Error { date, .. } => date.to_string(),
        }
    }

    /// Failed, held, or could not run.
    pub fn is_failure(&self) -> bool {
        match self {
            DateOutcome::Ran(report) => !report.succeeded(),
            DateOutcome::Skipped { .. } => false,
            DateOutcome::Error { .. } => true,
        }
    }

    /// The outcome in a word and what explains it, for the table at the end.
    pub fn describe(&self) -> (String, String) {
        match self {
            DateOutcome::Ran(report) => {
                let why = report
                    .tasks
                    .iter()
                    .find_map(|t| t.error.clone())
                    .or_else(|| {
                        let held: Vec<String> = report.checks.iter().filter(|c| c.holds()).map(|c| format!("{}: {}", c.name, c.detail)).collect();
                        (!held.is_empty()).then(|| held.join("; "))
                    })
                    .unwrap_or_else(|| format!("{} rows, run {}", report.counts.metric_rows_written, report.run_id));
                (report.status.to_string(), why)
            }
            DateOutcome::Skipped { why, .. } => ("skipped".to_string(), why.clone()),
            DateOutcome::Error { error, .. } => ("failed".to_string(), error.describe()),
        }
    }
}

/// What a backfill would do with `date`: `None` to run it, or why it is skipped.
pub async fn skip_reason(config: &RunConfig, date: RunDate, redo: Redo) -> Result<Option<String>> {
    if redo == Redo::All {
        return Ok(None);
    }
    let status = day_status(&config.lake, date).await?;
    // A cluster-mode driver started again runs what its run left unfinished, whatever --redo.
    let ours = config.run_id.as_deref().is_some_and(|id| status.report.as_ref().is_some_and(|r| r.run_id == id));
    if ours && status.state != DayState::Complete {
        return Ok(None);
    }
    Ok(match (status.report.is_some(), status.state, redo) {
        (false, _, _) => None,
        (true, DayState::Complete, _) => Some(format!("complete ({}; --redo all runs it again)", status.note)),
        (true, state, Redo::None) => Some(format!("{state}, and --redo none runs only dates never run")),
        (true, _, _) => None,
    })
}

/// Runs `dates` as `plan` says, up to `plan.parallel` at a time, and returns every date's
/// outcome in date order. `on_date` hears each outcome as soon as it is known, with how many
/// dates are done.
pub async fn run_dates(
    engine: &Engine,
    config: &RunConfig,
    dates: &[RunDate],
    plan: Backfill,
    on_date: impl Fn(&DateOutcome, usize, usize) + Sync,
) -> Result<Vec<DateOutcome>> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = dates.len();
    let one = |date: RunDate| {
        let stop = Arc::clone(&stop);
        let (done, on_date) = (&done, &on_date);
        async move {
            let outcome = run_one(engine, config, date, plan, &stop).await;
            if outcome.is_failure() && !plan.keep_going {
                stop.store(true, Ordering::SeqCst);
            }
            on_date(&outcome, done.fetch_add(1, Ordering::SeqCst) + 1, total);
            outcome
        }
    };
    let mut outcomes: Vec<DateOutcome> = futures::stream::iter(dates.iter().copied()).map(one).buffer_unordered(plan.parallel.max(1)).collect().await;
    outcomes.sort_by_key(DateOutcome::date);
    Ok(outcomes)
}

async fn run_one(engine: &Engine, config: &RunConfig, date: RunDate, plan: Backfill, stop: &AtomicBool) -> DateOutcome {
    if stop.load(Ordering::SeqCst) {
        return DateOutcome::Skipped { date, why: "not started: an earlier date failed (--keep-going runs the others)".to_string() };
    }
    if let Some(report) = crate::run::completed_by_this_run(config, date).await {
        return DateOutcome::Ran(Box::new(report));
    }
    match skip_reason(config, date, plan.redo).await {
        Ok(Some(why)) => return DateOutcome::Skipped { date, why },
        Ok(None) => {}
        Err(error) => return DateOutcome::Error { date, error },
    }
    match run_date(engine, config, date).await {
        Ok(report) => DateOutcome::Ran(Box::new(report)),
        Err(error) => DateOutcome::Error { date, error },
    }
}

/// One line per date: its outcome and what explains it.
pub fn table(outcomes: &[DateOutcome]) -> String {
    let mut text = format!("{:<10}  {:<9}  DETAIL\n", "DATE", "OUTCOME");
    for outcome in outcomes {
        let (word, why) = outcome.describe();
        text += &format!("{:<10}  {:<9}  {why}\n", outcome.date(), word);
    }
    let words: Vec<String> = outcomes.iter().map(|o| o.describe().0).collect();
    let count = |word: &str| words.iter().filter(|w| *w == word).count();
    text += &format!(
        "{} dates: {} succeeded, {} failed, {} held, {} skipped\n",
        outcomes.len(),
        count("succeeded"),
        count("failed"),
        count("held"),
        count("skipped")
    );
    text
}
