//! What a run did: `<lake>/_runs/D.json`, and the counts that must reconcile.

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::task::TaskReport;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Written before the run replaces its first partition; a report still `running` after
    /// its run ended means the run was stopped (see `crate::day`).
    Running,
    Succeeded,
    Failed,
    /// Every task ran, but a check of severity error failed: the day's table is kept apart
    /// (`held/user_behavior_metric`), unpublished, until `ubm publish` accepts it or a rerun
    /// replaces it (see `crate::audit`).
    Held,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Held => "held",
        })
    }
}

/// The counts of a run; the review counts reconcile: read = classified + rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub review_records_read: u64,
    pub reviews_classified: u64,
    pub reviews_rejected: u64,
    pub null_reviews: u64,
    pub positive_reviews: u64,
    /// Reviews whose cid is not an integer (`abc`, `12.0`, empty): they match no customer.
    pub reviews_invalid_cid: u64,
    /// Reviews with an integer cid that bought nothing in the snapshot.
    pub reviews_without_customer: u64,
    pub purchase_rows_extracted: u64,
    pub metric_rows_written: u64,
    pub warehouse_rows_loaded: Option<u64>,
}

impl Counts {
    /// `review_records_read == reviews_classified + reviews_rejected`.
    pub fn reconcile(&self) -> bool {
        self.review_records_read == self.reviews_classified + self.reviews_rejected
    }
}

/// What a run did, written to `<lake>/_runs/D.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub run_date: String,
    /// The run's id: every partition it committed names it in its `_SUCCESS` (empty in reports
    /// written before runs had ids).
    #[serde(default)]
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u128,
    pub engine: String,
    /// How many partitions the run's stages were split into, and why (absent in reports written
    /// before runs recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<ubm_cluster::Partitions>,
    pub semantics: String,
    pub reviews: String,
    pub oltp: String,
    pub lake: String,
    pub warehouse: Option<String>,
    pub tasks: Vec<TaskReport>,
    pub counts: Counts,
    /// `review_records_read == reviews_classified + reviews_rejected`.
    pub counts_reconcile: bool,
    /// Where the day's table is in the lake.
    pub metric_partition: Option<String>,
    /// The report of the run whose day was published when this run started, kept while this
    /// run has not succeeded: a rerun that fails leaves the published table in place, and its
    /// numbers stay beside it (the report page shows them, not the failed run's zeros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Box<RunReport>>,
    /// The checks run on what the run staged, before publishing ([`crate::audit`]); empty in
    /// reports written before runs audited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckOutcome>,
    /// Who published a held day after looking, when, and which failed checks they accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
    /// The day's customers who spent most (a few rows, for the summary; not serialized: the
    /// lake holds the table).
    #[serde(skip)]
    pub top_customers: Vec<RecordBatch>,
}

/// A held day published by a person: `ubm publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// `--by`, or the user and host that ran `ubm publish`.
    pub by: String,
    pub at: DateTime<Utc>,
    /// The failed checks of severity error that were accepted, by name.
    pub checks: Vec<String>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    /// The checks that failed, of severity error (held the day) or warn.
    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The report of the published day that a run starting after this one keeps: this one if
    /// it succeeded, else the one it kept.
    pub fn into_published(self) -> Option<Box<RunReport>> {
        match self.status {
            RunStatus::Succeeded => Some(Box::new(RunReport { published: None, ..self })),
            _ => self.published,
        }
    }
}

/// What a failed check does to the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not checked.
    Off,
    /// Published, with the warning in the report.
    Warn,
    /// Held: not published until accepted.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Severity::Off => "off",
            Severity::Warn => "warn",
            Severity::Error => "error",
        })
    }
}

/// A check's outcome, as the run report keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub name: String,
    pub severity: Severity,
    pub passed: bool,
    /// What was measured and against what, in words ("30.4% of 2,000 records rejected; bound
    /// 10%").
    pub detail: String,
}

impl CheckOutcome {
    /// A failed check of severity error: the day is held.
    pub fn holds(&self) -> bool {
        !self.passed && self.severity == Severity::Error
    }

    /// A failed check of severity warn.
    pub fn warns(&self) -> bool {
        !self.passed && self.severity == Severity::Warn
    }
}
