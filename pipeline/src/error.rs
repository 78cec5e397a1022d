//! What can go wrong in a run, with the cause kept, and whether another attempt could help.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use ubm_cluster::ClusterError;
use ubm_cluster::retry::{Classifier, Retry, worth_retrying};

/// What can go wrong in a run. Each variant names where (a URL, a path, a database) and keeps
/// its source, so that [`PipelineError::is_retryable`] decides on the real cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Choosing or using the engine, or opening an input through it.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A plan failed while it ran.
    #[error("{doing}")]
    Query { doing: String, source: DataFusionError },
    /// An Arrow computation on a plan's output failed.
    #[error("{doing}")]
    Arrow { doing: String, source: ArrowError },
    /// A request to the lake's (or an input's) object store failed.
    #[error("{doing} {url}")]
    Store { doing: &'static str, url: String, source: object_store::Error },
    /// A local file-system operation failed.
    #[error("{doing} {path}")]
    Io { doing: &'static str, path: String, source: std::io::Error },
    /// Encoding a Parquet file failed.
    #[error("writing the Parquet file {url}")]
    Parquet { url: String, source: parquet::errors::ParquetError },
    /// A Postgres (or Redshift) request failed; `url` has its password redacted.
    #[error("{doing} at {url}")]
    Postgres { doing: String, url: String, source: tokio_postgres::Error },
    /// A request to the embedded SQLite database failed.
    #[error("{doing} {path}")]
    Sqlite { doing: String, path: String, source: rusqlite::Error },
    /// An input cannot be used as it is: the text says which and what to do. Never retried.
    #[error("{what}: {reason}")]
    BadInput { what: String, reason: String },
    /// A file changed while it was read: another attempt reads it whole again.
    #[error("{url} changed while it was read; nothing of the task was committed")]
    Changed { url: String },
    /// The engine delivered a row or a task's report twice (a task read more than its share, or
    /// a stage's results were delivered twice). Another attempt may not; the numbers are never
    /// written either way.
    #[error("the engine delivered {what} twice ({cause}); refusing to write doubled numbers (please report this)")]
    Duplicate { what: String, cause: &'static str },
    /// Another run holds the date's lease. Never retried by the task loop: `--wait-for-lease`
    /// is how to wait for it.
    #[error("{date} is being run by {holder}; wait for it with --wait-for-lease SECONDS, or run the date later")]
    DateBusy { date: String, holder: String },
    /// This run no longer holds its date: it must not commit anything more.
    #[error("this run lost the lease of {date} ({why}); nothing more of it was committed: run the date again once the other run has finished")]
    LeaseLost { date: String, why: String },
    /// A committed partition's files differ from what its commit listed: nothing reads it.
    #[error("the committed partition {partition} is damaged: {problem}; run the date again to rewrite it")]
    Damaged { partition: String, problem: String },
    /// ubm's own plans and writers disagree: a bug, never retried.
    #[error("internal error: {what}")]
    Internal { what: String },
    /// A background task of the run stopped unexpectedly.
    #[error("{what} stopped unexpectedly")]
    Stopped { what: &'static str, source: Option<tokio::task::JoinError> },
    /// A record ubm writes as JSON (the run report, a lease, a `_SUCCESS` marker) could not be
    /// encoded: a bug, never retried.
    #[error("encoding {what}")]
    Encoding { what: &'static str, source: serde_json::Error },
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

impl PipelineError {
    /// Whether another attempt could succeed: a timeout, a 5xx, a dropped connection, a file
    /// that changed while it was read, yes; a missing file, a bad header, a refused permission,
    /// a full disk, a cancelled job, no. See [`ubm_cluster::retry`] for the rules.
    pub fn is_retryable(&self) -> bool {
        worth_retrying(self, CLASSIFIERS)
    }

    /// Whether the run itself was stopped (a job cancelled, no executor, the scheduler gone)
    /// rather than the task failing on its input: nothing else should be tried then.
    pub fn stops_the_run(&self) -> bool {
        matches!(
            self,
            PipelineError::Cluster(
                ClusterError::Cancelled { .. }
                    | ClusterError::NoExecutors { .. }
                    | ClusterError::SchedulerLost { .. }
                    | ClusterError::NoScheduler { .. }
                    | ClusterError::SchedulerUnreachable { .. }
            )
        ) || self.describe().contains("was cancelled")
    }

    /// Adapter for `map_err`: a plan that failed while doing `doing`.
    pub fn query(doing: impl Into<String>) -> impl FnOnce(DataFusionError) -> PipelineError {
        let doing = doing.into();
        move |source| PipelineError::Query { doing, source }
    }

    /// Adapter for `map_err`: an Arrow computation that failed while doing `doing`.
    pub fn arrow(doing: impl Into<String>) -> impl FnOnce(ArrowError) -> PipelineError {
        let doing = doing.into();
        move |source| PipelineError::Arrow { doing, source }
    }

    /// Adapter for `map_err`: a local file operation on `path`.
    pub fn io(doing: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PipelineError {
        let path = path.display().to_string();
        move |source| PipelineError::Io { doing, path, source }
    }

    /// The error as one line, each cause once (for the run report and the summary).
    pub fn describe(&self) -> String {
        ubm_cluster::retry::describe(self)
    }
}

/// What this crate knows about retrying, beyond what `ubm_cluster::retry` knows.
const CLASSIFIERS: &[Classifier] = &[own_retry, sqlite_retry];

fn own_retry(error: &(dyn std::error::Error + 'static)) -> Option<Retry> {
    match error.downcast_ref::<PipelineError>()? {
        PipelineError::BadInput { .. }
        | PipelineError::Internal { .. }
        | PipelineError::Encoding { .. }
        | PipelineError::DateBusy { .. }
        | PipelineError::LeaseLost { .. }
        | PipelineError::Damaged { .. } => Some(Retry::Futile),
        PipelineError::Changed { .. } | PipelineError::Duplicate { .. } | PipelineError::Stopped { .. } => Some(Retry::Worth),
        _ => None,
    }
}

/// SQLite: a busy or locked database may free up; every other SQLite error will not.
fn sqlite_retry(error: &(dyn std::error::Error + 'static)) -> Option<Retry> {
    let error = error.downcast_ref::<rusqlite::Error>()?;
    let busy = matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked));
    Some(if busy { Retry::Worth } else { Retry::Futile })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_errors_decide_and_wrapped_causes_decide_the_rest() {
        assert!(!PipelineError::BadInput { what: "x".into(), reason: "y".into() }.is_retryable());
        assert!(PipelineError::Changed { url: "file:///x".into() }.is_retryable());
        let full = PipelineError::Io { doing: "writing", path: "/x".into(), source: std::io::ErrorKind::StorageFull.into() };
        assert!(!full.is_retryable());
        let reset = PipelineError::Io { doing: "writing", path: "/x".into(), source: std::io::ErrorKind::ConnectionReset.into() };
        assert!(reset.is_retryable());
        let locked = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(PipelineError::Sqlite { doing: "reading".into(), path: "/db".into(), source: locked }.is_retryable());
        let no_table = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR), Some("no such table".into()));
        assert!(!PipelineError::Sqlite { doing: "reading".into(), path: "/db".into(), source: no_table }.is_retryable());
    }
}
