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
//! Crates above this one add what they know (SQLite) as extra [`Classifier`]s.
//!
//! # Across the task boundary
//!
//! In-process, a task's error reaches the driver as the value it was raised as, and the retry
//! policy walks its causes. On a Ballista cluster it does not: an executor
//! reports a failed task as text (Ballista 55 formats the task's error with `{:?}`), the
//! scheduler fails the job with that text, and the client gets it back as a plain
//! `DataFusionError::Execution`. A Postgres SQLSTATE, an object store's `Precondition`, an I/O
//! error's kind would all be lost there, and every failure retried alike.
//!
//! So every error that ubm's own execution nodes raise is wrapped where it is raised, on the
//! executor, in a [`TaskFailure`]: it decides right there, from the typed cause, whether another
//! attempt could help, and its `Debug` text (the one Ballista carries) holds that decision and
//! its message as a tag, `[ubm-task-failure retry=futile message=<base64>]`, of characters no
//! Debug formatting escapes. The driver finds the tag in the failed job's text
//! ([`TaskFailure::find_in`]) and gets back a `TaskFailure` with the same decision and message,
//! which the retry policy asks instead of the text around it. In-process the same wrapper keeps
//! its cause as its `source()`, so both ways decide alike.
//!
//! Errors that only pass through ubm's nodes (a shuffle input's fetch failure, whose type
//! Ballista itself reads to rerun a lost executor's stage) are never wrapped.

use std::error::Error;
use std::fmt;
use std::io::ErrorKind;
use std::str::FromStr;

use base64::Engine as _;
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

/// The word a [`Retry`] is written as where it travels as text (see [`TaskFailure`]).
impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Retry::Worth => "worth",
            Retry::Futile => "futile",
        })
    }
}

impl FromStr for Retry {
    type Err = ();
    fn from_str(word: &str) -> Result<Self, ()> {
        match word {
            "worth" => Ok(Retry::Worth),
            "futile" => Ok(Retry::Futile),
            _ => Err(()),
        }
    }
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
        | ClusterError::TlsRefused { .. }
        | ClusterError::BadValue { .. }
        // Waiting again would double the bound the user chose.
        | ClusterError::NoExecutors { .. }
        // The network between here and the cluster will not change by itself.
        | ClusterError::Unreachable { .. } => Some(Retry::Futile),
        // Decided before its source, a store's `Precondition`, which alone would be final.
        ClusterError::Changed { .. } => Some(Retry::Worth),
        ClusterError::SchedulerLost { .. }
        | ClusterError::ExecutorLost { .. }
        | ClusterError::NoScheduler { .. }
        | ClusterError::SchedulerUnreachable { .. } => Some(Retry::Worth),
        ClusterError::SchedulerAnswer { status, .. } => Some(if status.is_none_or(|s| s >= 500) { Retry::Worth } else { Retry::Futile }),
        ClusterError::Store { .. }
        | ClusterError::Engine { .. }
        | ClusterError::Node { .. }
        | ClusterError::Postgres { .. }
        | ClusterError::Write { .. } => None,
    }
}

fn known(error: &(dyn Error + 'static)) -> Option<Retry> {
    if let Some(e) = error.downcast_ref::<ClusterError>() {
        return cluster_retry(e);
    }
    if let Some(failure) = error.downcast_ref::<TaskFailure>() {
        return Some(failure.retry());
    }
    if let Some(e) = error.downcast_ref::<tokio_postgres::Error>() {
        return postgres_retry(e);
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

/// Postgres by SQLSTATE class: connection trouble (08), a transaction rolled back by the server
/// (40: serialization failure, deadlock), insufficient resources (53: out of memory, too many
/// connections), an operator intervention such as a shutdown (57) and system errors (58) may
/// pass, except a full disk (53100) and a missing file (58P01); anything else (authentication,
/// a missing table or privilege, bad data) will not. A closed connection is worth another
/// attempt, and an I/O error decides by its kind; any other error without a SQLSTATE (a value
/// that cannot be decoded into its column's type, say) fails the same way again.
fn postgres_retry(error: &tokio_postgres::Error) -> Option<Retry> {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        let class = code.get(..2).unwrap_or_default();
        let passing = matches!(class, "08" | "40" | "53" | "57" | "58") && !matches!(code, "53100" | "58P01");
        return Some(if passing { Retry::Worth } else { Retry::Futile });
    }
    if error.is_closed() {
        return Some(Retry::Worth);
    }
    match error.source() {
        Some(source) if source.downcast_ref::<std::io::Error>().is_some() => None,
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
/// their source's text in their own, so a cause already shown is not shown again, and a
/// DataFusion `External` wrapper, which adds only "External error: ", is passed over.
pub fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(link) = next {
        let said = link.to_string();
        if !only_wraps(link) && !said.is_empty() && !text.contains(&said) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
        next = cause_of(link);
    }
    text
}

/// Whether `error` is a wrapper that says nothing of its own.
fn only_wraps(error: &(dyn Error + 'static)) -> bool {
    matches!(error.downcast_ref::<DataFusionError>(), Some(DataFusionError::External(_) | DataFusionError::Shared(_)))
}

// ---- TaskFailure: a decision that survives the trip from an executor (see the module docs).

/// The tag's opening; a failure's `Debug` text is this, its fields, then `]`.
const TAG: &str = "[ubm-task-failure ";

/// A task's error with its retry decision made where the cause was still typed.
pub struct TaskFailure {
    /// Whether another attempt could succeed, decided from the cause's type when it was raised.
    retry: Retry,
    /// The cause and its own causes as one line, for the user.
    message: String,
    /// The cause itself, where the failure was raised in this process; `None` once it crossed
    /// from an executor as text.
    cause: Option<Box<dyn Error + Send + Sync>>,
    /// The Ballista job whose task failed, once the failure crossed from an executor.
    job_id: Option<String>,
}

impl TaskFailure {
    /// Wraps `error`, raised by ubm's own code in a task, unless it already carries a failure.
    pub fn wrap(error: DataFusionError) -> DataFusionError {
        if Self::within(&error).is_some() {
            return error;
        }
        let retry = if worth_retrying(&error, &[]) { Retry::Worth } else { Retry::Futile };
        let message = describe(&error);
        DataFusionError::External(Box::new(TaskFailure { retry, message, cause: Some(Box::new(error)), job_id: None }))
    }

    /// Adapter for `map_err`: wraps a typed error of ubm's own.
    pub fn raise(error: crate::ClusterError) -> DataFusionError {
        Self::wrap(DataFusionError::External(Box::new(error)))
    }

    /// The failure `error` carries, at any depth of its causes.
    pub fn within<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a TaskFailure> {
        let mut next = Some(error);
        while let Some(link) = next {
            if let Some(failure) = link.downcast_ref::<TaskFailure>() {
                return Some(failure);
            }
            next = link.source();
        }
        None
    }

    /// `text` (a failed job's error as Ballista reports it) for a person: a task failure of
    /// ubm's as its own message, anything else as it is.
    pub fn readable(text: &str) -> String {
        match TaskFailure::find_in(text) {
            Some(failure) => format!("a task failed on an executor: {}", failure.message),
            None => text.to_string(),
        }
    }

    /// Whether another attempt could succeed.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The failure as a task of the Ballista job `job_id` reported it.
    pub fn in_job(self, job_id: String) -> Self {
        TaskFailure { job_id: Some(job_id), ..self }
    }

    /// The first failure tagged in `text` (a failed job's error as Ballista reports it), or
    /// `None` when the text holds no tag of ubm's, or a tag that cannot be read (then logged:
    /// the executor runs another build of ubm).
    pub fn find_in(text: &str) -> Option<TaskFailure> {
        let (_, tagged) = text.split_once(TAG)?;
        let fields = tagged.split(']').next().unwrap_or_default();
        let parsed = Self::parse_fields(fields);
        if parsed.is_none() {
            tracing::warn!("a task failure's tag cannot be read (is every node running the same build of ubm?): {TAG}{fields}]");
        }
        parsed
    }

    fn parse_fields(fields: &str) -> Option<TaskFailure> {
        let mut retry = None;
        let mut message = None;
        for field in fields.split(' ') {
            match field.split_once('=')? {
                ("retry", value) => retry = Some(value.parse::<Retry>().ok()?),
                ("message", value) => {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
                    message = Some(String::from_utf8(bytes).ok()?);
                }
                _ => return None,
            }
        }
        Some(TaskFailure { retry: retry?, message: message?, cause: None, job_id: None })
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.job_id {
            Some(job_id) => write!(f, "a task of job {job_id} failed on an executor: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The wire form (see the module's documentation): Ballista sends a task's error as its
/// `Debug` text, so this is what reaches the driver from an executor.
impl fmt::Debug for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = base64::engine::general_purpose::STANDARD.encode(&self.message);
        write!(f, "{TAG}retry={} message={message}]", self.retry)
    }
}

impl Error for TaskFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn Error + 'static))
    }
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
        let engine =
            ClusterError::Engine { doing: "running".into(), source: DataFusionError::External(Box::new(std::io::Error::from(ErrorKind::NotFound))) };
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

    fn changed() -> ClusterError {
        ClusterError::Changed { url: "s3://b/movie_review.csv".into(), how: "its size changed", source: None }
    }

    #[test]
    fn the_decision_and_the_message_survive_the_debug_text_ballista_sends() {
        for (error, retry) in [
            (changed(), Retry::Worth),
            (ClusterError::BadValue { what: "unit_price \"3000000.000\"".into(), reason: "wider than numeric(8,3)".into() }, Retry::Futile),
        ] {
            let failure = TaskFailure::raise(error);
            let message = failure.to_string();
            // As Ballista 55 reports a failed task, and the scheduler a failed job.
            let sent = format!("Job j failed: Task failed due to runtime execution error: DataFusionError({failure:?})");
            let found = TaskFailure::find_in(&sent).expect("the tag is found");
            assert_eq!(found.retry(), retry);
            assert!(message.ends_with(&found.message), "{message} vs {}", found.message);
            assert_eq!(worth_retrying(&found, &[]), retry == Retry::Worth);
        }
    }

    #[test]
    fn a_failure_is_wrapped_once_and_text_without_a_tag_carries_none() {
        let once = TaskFailure::raise(changed());
        let twice = TaskFailure::wrap(once);
        let Some(outer) = twice.source() else { panic!("the failure is the source") };
        assert!(outer.downcast_ref::<TaskFailure>().is_some_and(|f| f.cause.is_some()));
        assert!(TaskFailure::find_in("Job j failed: Task failed due to runtime execution error: Internal(\"x\")").is_none());
        assert!(TaskFailure::find_in("[ubm-task-failure retry=maybe message=eA==]").is_none());
    }
}
