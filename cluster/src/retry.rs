//! Whether a failed attempt is worth another, decided by the error's real cause.
//!
//! An error is walked from the outside in, through its sources. The first error in the chain
//! that says something decides:
//! - object_store maps the HTTP answers that cannot change to their own variants (`NotFound`,
//!   `PermissionDenied`, `Unauthenticated`, `Precondition`, `AlreadyExists`): futile. What it
//!   leaves in `Generic` is a 5xx, a timeout or a dropped connection that outlasted the client's
//!   own retries: worth another attempt.
//! - I/O errors by kind: a missing file, permission denied, a full disk or invalid data are
//!   futile; a timeout, a reset or refused connection, a broken pipe are worth another attempt.
//! - DataFusion's planning, schema and configuration errors are futile; running out of memory is
//!   worth another attempt (the cluster may be less busy).
//! - Arrow's cast, parse and compute errors are futile: the same data fails the same way.
//! - Nothing decisive in the chain (a task that failed on a Ballista executor arrives as text):
//!   worth another attempt, as Spark retries a failed task. A retry costs time, never correctness:
//!   every task writes a whole partition or nothing.
//!
//! Crates above this one add what they know (Postgres, SQLite) as extra [`Classifier`]s.

use std::error::Error;
use std::io::ErrorKind;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::ClusterError;

/// What an error says about another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The cause may go away: try again.
    Worth,
    /// The same attempt fails the same way: stop and say why.
    Futile,
}

/// What one error, not counting its sources, says about retrying; `None` when it says nothing.
pub type Classifier = fn(&(dyn Error + 'static)) -> Option<Retry>;

/// Whether another attempt could succeed (see the module's documentation); `extra` classifiers
/// are asked first at every link of the chain.
pub fn worth_retrying(error: &(dyn Error + 'static), extra: &[Classifier]) -> bool {
    let mut next = Some(error);
    while let Some(link) = next {
        let decided = extra.iter().find_map(|classify| classify(link)).or_else(|| known(link));
        if let Some(decision) = decided {
            return decision == Retry::Worth;
        }
        next = cause_of(link);
    }
    true
}

/// The next link: `std::io::Error::source` skips the error it wraps, so that one is taken here.
fn cause_of<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
    if let Some(io) = error.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return Some(inner);
    }
    error.source()
}

impl ClusterError {
    /// Whether another attempt could succeed: a timeout, a 5xx or a dropped connection, yes; a
    /// missing file, a bad header, a refused permission or a cancelled job, no.
    pub fn is_retryable(&self) -> bool {
        worth_retrying(self, &[])
    }
}

/// What a `ClusterError` says about retrying by itself; `None` when its source decides.
fn cluster_retry(error: &ClusterError) -> Option<Retry> {
    match error {
        ClusterError::BadLocation { .. }
        | ClusterError::BadSetting { .. }
        | ClusterError::BadHeader { .. }
        | ClusterError::Cancelled { .. }
        | ClusterError::UnknownJob { .. }
        | ClusterError::HttpClient { .. }
        | ClusterError::Tls { .. }
        | ClusterError::TlsRequired { .. }
        | ClusterError::TlsRefused { .. } => Some(Retry::Futile),
        ClusterError::SchedulerLost { .. }
        | ClusterError::ExecutorLost { .. }
        | ClusterError::NoScheduler { .. }
        | ClusterError::SchedulerUnreachable { .. } => {
            Some(Retry::Worth)
        }
        ClusterError::SchedulerAnswer { status, .. } => {
            Some(if status.is_none_or(|s| s >= 500) { Retry::Worth } else { Retry::Futile })
        }
        ClusterError::Store { .. } | ClusterError::Engine { .. } | ClusterError::Node { .. } => None,
    }
}

fn known(error: &(dyn Error + 'static)) -> Option<Retry> {
    if let Some(e) = error.downcast_ref::<ClusterError>() {
        return cluster_retry(e);
    }
    if let Some(e) = error.downcast_ref::<object_store::Error>() {
        return object_store_retry(e);
    }
    if let Some(e) = error.downcast_ref::<std::io::Error>() {
        return io_retry(e);
    }
    if let Some(e) = error.downcast_ref::<DataFusionError>() {
        return datafusion_retry(e);
    }
    if let Some(e) = error.downcast_ref::<ArrowError>() {
        return arrow_retry(e);
    }
    if let Some(e) = error.downcast_ref::<reqwest::Error>() {
        return reqwest_retry(e);
    }
    if error.downcast_ref::<ubm_jobs::csv::HeaderError>().is_some() {
        return Some(Retry::Futile);
    }
    None
}

fn object_store_retry(error: &object_store::Error) -> Option<Retry> {
    use object_store::Error as E;
    match error {
        E::NotFound { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::Precondition { .. }
        | E::AlreadyExists { .. }
        | E::NotModified { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => Some(Retry::Futile),
        // A local store reports its I/O errors in Generic: their kind decides.
        E::Generic { source, .. } if source.downcast_ref::<std::io::Error>().is_some() => None,
        E::Generic { .. } => Some(Retry::Worth),
        _ => None,
    }
}

/// The I/O error kinds that no retry can fix.
pub fn io_kind_is_final(kind: ErrorKind) -> bool {
    use ErrorKind::*;
    matches!(
        kind,
        NotFound
            | PermissionDenied
            | AlreadyExists
            | InvalidInput
            | InvalidData
            | Unsupported
            | StorageFull
            | ReadOnlyFilesystem
            | IsADirectory
            | NotADirectory
            | FileTooLarge
            | QuotaExceeded
            | InvalidFilename
            | DirectoryNotEmpty
            | NotSeekable
            | CrossesDevices
            | TooManyLinks
            | ArgumentListTooLong
    )
}

fn io_retry(error: &std::io::Error) -> Option<Retry> {
    match error.kind() {
        kind if io_kind_is_final(kind) => Some(Retry::Futile),
        // An error wrapped into an I/O error: what it wraps decides.
        ErrorKind::Other if error.get_ref().is_some() => None,
        _ => Some(Retry::Worth),
    }
}

fn datafusion_retry(error: &DataFusionError) -> Option<Retry> {
    match error {
        DataFusionError::Plan(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Substrait(_) => Some(Retry::Futile),
        DataFusionError::ResourcesExhausted(_) | DataFusionError::ExecutionJoin(_) => Some(Retry::Worth),
        _ => None,
    }
}

fn arrow_retry(error: &ArrowError) -> Option<Retry> {
    match error {
        ArrowError::ExternalError(_) | ArrowError::IoError(..) => None,
        ArrowError::MemoryError(_) => Some(Retry::Worth),
        _ => Some(Retry::Futile),
    }
}

fn reqwest_retry(error: &reqwest::Error) -> Option<Retry> {
    if error.is_timeout() || error.is_connect() || error.is_request() {
        return Some(Retry::Worth);
    }
    error.status().map(|status| if status.is_server_error() { Retry::Worth } else { Retry::Futile })
}

/// An error and its causes as one line, each cause once: DataFusion and object_store repeat
/// their source's text in their own, so a cause already shown is not shown again.
pub fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = cause_of(error);
    while let Some(link) = next {
        let said = link.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause_of(link);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error(kind: ErrorKind) -> object_store::Error {
        object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(std::io::Error::from(kind)) }
    }

    #[test]
    fn missing_files_and_refusals_are_final_outages_are_not() {
        let not_found = object_store::Error::NotFound { path: "x".into(), source: "gone".into() };
        assert!(!worth_retrying(&not_found, &[]));
        let denied = object_store::Error::PermissionDenied { path: "x".into(), source: "403".into() };
        assert!(!worth_retrying(&DataFusionError::ObjectStore(Box::new(denied)).context("reading x"), &[]));
        let outage = object_store::Error::Generic { store: "S3", source: "503 Slow Down".into() };
        assert!(worth_retrying(&DataFusionError::ObjectStore(Box::new(outage)), &[]));
        assert!(!worth_retrying(&store_error(ErrorKind::StorageFull), &[]));
        assert!(worth_retrying(&store_error(ErrorKind::ConnectionReset), &[]));
    }

    #[test]
    fn io_errors_decide_by_kind_even_when_wrapped() {
        let wrapped = std::io::Error::other(std::io::Error::from(ErrorKind::PermissionDenied));
        assert!(!worth_retrying(&wrapped, &[]));
        assert!(worth_retrying(&std::io::Error::from(ErrorKind::TimedOut), &[]));
        let engine = ClusterError::Engine {
            doing: "running".into(),
            source: DataFusionError::External(Box::new(std::io::Error::from(ErrorKind::NotFound))),
        };
        assert!(!engine.is_retryable());
    }

    #[test]
    fn plans_and_cancellations_are_final_unknown_failures_are_retried() {
        assert!(!worth_retrying(&DataFusionError::Plan("no such column".into()), &[]));
        assert!(!ClusterError::Cancelled { job_id: "j".into() }.is_retryable());
        assert!(ClusterError::SchedulerLost { scheduler: "df://h:1".into(), reason: "gone".into() }.is_retryable());
        assert!(worth_retrying(&DataFusionError::Execution("task failed on an executor".into()), &[]));
        let extra: Classifier = |_| Some(Retry::Futile);
        assert!(!worth_retrying(&DataFusionError::Execution("x".into()), &[extra]));
    }

    #[test]
    fn a_description_shows_each_cause_once() {
        let denied = object_store::Error::PermissionDenied { path: "lake/x".into(), source: "403 Forbidden".into() };
        let error = ClusterError::Store { doing: "reading", url: "s3://b/lake/x".into(), source: denied };
        let text = describe(&error);
        assert_eq!(text.matches("403 Forbidden").count(), 1, "{text}");
        assert!(text.starts_with("reading s3://b/lake/x: "), "{text}");
    }
}
