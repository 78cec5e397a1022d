//! The daily ubm run as a library: what the `ubm` binary's commands call, and what tests call
//! directly.
//!
//! - [`run`]: one date ([`run_date`]); [`backfill`]: several ([`run_dates`]): ingest, extract,
//!   classify, metric, load, each a [`task`] retried on errors worth retrying
//!   ([`PipelineError::is_retryable`]), and the [`run_report`] written to `<lake>/_runs/D.json`.
//! - [`audit`]: the checks a day passes before it is published; a day failing one of severity
//!   error is held, and [`publish`] publishes it once a person accepts it.
//! - [`lake`]: Hive-style partitions, each replaced whole (an atomic rename on a local lake,
//!   copy-then-delete with the `_SUCCESS` marker last on S3).
//! - [`oltp`] (Postgres, embedded SQLite) and [`warehouse`] (Postgres/Redshift): the databases.
//! - `resume`: what a run whose driver restarted keeps of what it had committed.
//! - [`datagen`] and [`sample`]: deterministic sample data and the embedded defaults.
//! - [`secret`]: connection URLs whose passwords never reach a log, an error or a report.
//!
//! The plans themselves come from `ubm-jobs`; where they run is decided by `ubm-cluster`'s
//! `Engine`, which callers pass in.

pub mod audit;
pub mod backfill;
pub mod classify;
pub mod dashboard;
pub mod datagen;
pub mod day;
pub mod error;
mod extract;
mod ingest;
pub mod lake;
pub mod lease;
mod metric;
pub mod oltp;
pub mod publish;
mod resume;
pub mod run;
pub mod run_report;
pub mod sample;
pub mod secret;
pub mod summary;
pub mod task;
pub mod warehouse;

pub use backfill::{Backfill, DateOutcome, Redo, run_dates};
pub use error::PipelineError;
pub use lake::{Lake, Table};
pub use oltp::Oltp;
pub use run::{RunConfig, reviews_for, run_date};
pub use run_report::{Counts, RunReport, RunStatus};
pub use secret::SecretUrl;
pub use task::{RetryPolicy, TaskReport, TaskStatus};
