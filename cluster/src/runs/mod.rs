//! Cluster deploy mode: runs whose driver lives on the cluster, beside the scheduler.
//!
//! `ubm submit --deploy-mode cluster` sends a [`RunRequest`] to the scheduler's port
//! (`POST /ubm/runs`); the scheduler's [`service::RunService`] keeps the run's state in a folder
//! of its own under `--state-dir` and starts the driver: `ubm run --engine df://…` against the
//! scheduler itself, as a child process that dies with the scheduler. The submitter may then go
//! away. When the scheduler starts again with the same `--state-dir` (systemd restarting it),
//! every run that had not ended starts a driver again under the same run id, which keeps what
//! the run had committed (see the pipeline's `resume`).
//!
//! Everything crosses the scheduler's one port, over the cluster's TLS when it has one:
//! `GET /ubm/runs`, `GET /ubm/runs/ID`, `POST /ubm/runs/ID/cancel` ([`client::RunsApi`]).
//! Connection URLs with passwords travel in the request only; the scheduler keeps them in a
//! 0600 file for a restart and hands them to the driver in its environment, never on a
//! command line, in a log or in an answer.

pub mod client;
pub mod service;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Partitions;
use crate::engine::scheduler_api::JobProgress;

/// What `submit --deploy-mode cluster` asks the cluster to run: the flags of `ubm run` that
/// make sense on a cluster's node.
#[derive(Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// First and last date (inclusive), YYYY-MM-DD.
    pub from: String,
    pub to: String,
    /// The review file (`{date}` allowed) and the lake, as the cluster's nodes reach them.
    pub reviews: String,
    pub lake: String,
    /// The OLTP database and the warehouse: secrets. `None`: the scheduler's own `UBM_OLTP` /
    /// `UBM_WAREHOUSE` (EMR's env file), if it has them.
    #[serde(default)]
    pub oltp: Option<String>,
    #[serde(default)]
    pub warehouse: Option<String>,
    pub semantics: String,
    pub attempts: u32,
    pub retry_backoff_ms: u64,
    pub wait_for_lease: u64,
    pub executor_wait: u64,
    #[serde(default)]
    pub partitions: Option<u16>,
    #[serde(default)]
    pub no_report: bool,
    /// `--check NAME=SEVERITY[:BOUND]` settings (see `ubm run --help`).
    #[serde(default)]
    pub checks: Vec<String>,
    /// Which dates run (`--redo`): `all` for a date named alone, which always runs.
    #[serde(default = "redo_all")]
    pub redo: String,
    #[serde(default)]
    pub keep_going: bool,
    /// Dates run at once.
    #[serde(default = "one")]
    pub parallel: u16,
}

fn redo_all() -> String {
    "all".to_string()
}

fn one() -> u16 {
    1
}

impl fmt::Debug for RunRequest {
    /// Everything but the secrets, which show only whether they were given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunRequest")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("reviews", &self.reviews)
            .field("lake", &self.lake)
            .field("oltp", &self.oltp.as_ref().map(|_| "(given)"))
            .field("warehouse", &self.warehouse.as_ref().map(|_| "(given)"))
            .field("semantics", &self.semantics)
            .finish_non_exhaustive()
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Its driver is running (or will be started again when the scheduler restarts).
    Running,
    Succeeded,
    Failed,
    /// Stopped by `ubm cancel`.
    Cancelled,
}

impl RunState {
    pub fn has_ended(self) -> bool {
        self != RunState::Running
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        })
    }
}

/// What the driver of a run writes as it goes (`ubm run --progress-file`), and `status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DriverProgress {
    /// How many partitions the run's plans are split into, and why; a restarted driver keeps
    /// the count.
    pub partitions: Option<Partitions>,
    /// Every job the driver submitted, oldest first, with its last known progress.
    pub jobs: Vec<JobProgress>,
}

/// A run as the scheduler shows it: never a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub id: String,
    pub from: String,
    pub to: String,
    pub reviews: String,
    pub lake: String,
    pub state: RunState,
    pub submitted_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Drivers started for it: 1, plus one for every restart of the scheduler during the run.
    pub driver_starts: u32,
    /// How its last driver ended ("exit status 1", ...), once it has.
    pub exit: Option<String>,
    pub progress: DriverProgress,
    /// What the driver printed (the summary of each date), once the run has ended.
    #[serde(default)]
    pub summary: Option<String>,
    /// The last lines of the driver's log, once the run failed or was cancelled.
    #[serde(default)]
    pub log_tail: Vec<String>,
}

impl RunView {
    /// The dates, as one word or a range.
    pub fn dates(&self) -> String {
        if self.from == self.to { self.from.clone() } else { format!("{}..{}", self.from, self.to) }
    }

    /// The run in a few lines: state, dates, each job's progress; the summary once ended.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "run {} ({}): {}, submitted {}{}{}\n",
            self.id,
            self.dates(),
            self.state,
            self.submitted_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.ended_at.map(|t| format!(", ended {}", t.format("%H:%M:%S UTC"))).unwrap_or_default(),
            match self.driver_starts {
                0 | 1 => String::new(),
                n => format!(", driver started {n} times (resumed after a scheduler restart)"),
            },
        );
        if let Some(partitions) = &self.progress.partitions {
            out.push_str(&format!("  partitions: {} (from {})\n", partitions.count, partitions.from));
        }
        for job in &self.progress.jobs {
            out.push_str(&format!("  {}\n", job_line(job)));
        }
        if let Some(summary) = &self.summary {
            out.push_str(summary);
        }
        if !self.log_tail.is_empty() {
            out.push_str(&format!("  the driver's last log lines ({}):\n", self.exit.as_deref().unwrap_or("ended")));
            for line in &self.log_tail {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out
    }
}

/// One job of a run, as `status` and `submit --follow` show it.
pub fn job_line(job: &JobProgress) -> String {
    format!("{:<44} {:<9} stages {}/{}, tasks {}/{}", job.job_name, job.state, job.stages_done, job.stages, job.tasks_done, job.tasks)
}

/// Runs as a table, newest first.
pub fn runs_table(runs: &[RunView]) -> String {
    let mut table = format!("{:<24} {:<23} {:<10} {:>6} {:<20} {}\n", "RUN", "DATES", "STATE", "JOBS", "SUBMITTED", "NOW");
    for run in runs {
        let done = run.progress.jobs.iter().filter(|j| j.state.is_terminal()).count();
        // A driver that was killed leaves its last jobs unfinished in its progress: only a
        // running run has a job under way.
        let under_way = run.progress.jobs.iter().rev().find(|j| !j.state.is_terminal());
        let now = under_way.filter(|_| !run.state.has_ended()).map_or("", |j| j.job_name.as_str());
        table.push_str(&format!(
            "{:<24} {:<23} {:<10} {:>6} {:<20} {}\n",
            run.id,
            run.dates(),
            run.state,
            format!("{done}/{}", run.progress.jobs.len()),
            run.submitted_at.format("%Y-%m-%d %H:%M:%S"),
            now
        ));
    }
    table
}
