//! What can go wrong choosing or using a place to run plans, and whether another attempt could
//! help.
//!
//! Every variant keeps the error that caused it, so that [`crate::retry`] can look at the real
//! cause (an object store's `NotFound`, an I/O error's kind, a DataFusion planning error) instead
//! of guessing from a message; `ClusterError::is_retryable` is defined there.

use ballista_core::error::BallistaError;
use datafusion::error::DataFusionError;
use ubm_jobs::csv::HeaderError;

/// What can go wrong choosing or using a place to run plans.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A location a user named cannot be used (a malformed URL, an unsupported scheme, a
    /// scheduler address without a port). Never retried.
    #[error("`{location}`: {reason}")]
    BadLocation { location: String, reason: String },
    /// An environment setting has a value ubm cannot use. Never retried.
    #[error("{name}={value}: {reason}")]
    BadSetting { name: &'static str, value: String, reason: String },
    /// Reading an input through its object store failed; the source says how.
    #[error("{doing} {url}")]
    Store { doing: &'static str, url: String, source: object_store::Error },
    /// The review file's header cannot be used (empty file, missing column). Never retried.
    #[error("review file {url}")]
    BadHeader { url: String, source: HeaderError },
    /// The engine failed while doing `doing` (the source says how).
    #[error("{doing}")]
    Engine { doing: String, source: DataFusionError },
    /// A Ballista job was cancelled (by `ubm cancel`, Ctrl-C or the scheduler's API): a choice,
    /// not a failure, so never retried.
    #[error("job {job_id} was cancelled")]
    Cancelled { job_id: String },
    /// The scheduler stopped answering while a job ran.
    #[error(
        "the scheduler at {scheduler} stopped answering ({reason}); is it running? Nothing of the \
         task was committed: rerun the date once the scheduler is back"
    )]
    SchedulerLost { scheduler: String, reason: String },
    /// An executor stopped answering while this process fetched a job's results from it (it
    /// died after running its tasks, before their output was read). Ballista cannot fetch them
    /// again, so the job is run again.
    #[error(
        "an executor stopped answering while the results of a job were fetched from it ({reason}); \
         nothing of the task was committed and the job is run again"
    )]
    ExecutorLost { reason: String },
    /// This machine cannot reach the address the scheduler gave for a job's results (an
    /// executor's Flight port, from outside the cluster's network).
    #[error(
        "this machine cannot reach {address}, where the scheduler said the job's results are ({reason}); the executor \
         may be running, only unreachable from here: a scheduler of ubm serves results through its own port, so check \
         that the scheduler is `ubm cluster scheduler` of this version, or open the executors' Flight ports to this machine"
    )]
    Unreachable { address: String, reason: String },
    /// No Ballista scheduler answers at the address (checked before any work starts); the
    /// source is the refused or timed-out connection.
    #[error(
        "`{scheduler}`: no Ballista scheduler answers there ({reason}); start one with `ubm cluster scheduler` or check the address",
        reason = innermost(.source)
    )]
    NoScheduler { scheduler: String, source: reqwest::Error },
    /// The scheduler has no executor, and none registered within the wait the run was given.
    #[error(
        "no executor is registered with the scheduler at {scheduler} (waited {waited_seconds} s, the bound --executor-wait sets): \
         start one with `ubm cluster executor --scheduler {host_port}`, or check that the executors reach the scheduler; \
         nothing of the task was committed"
    )]
    NoExecutors { scheduler: String, host_port: String, waited_seconds: u64 },
    /// The scheduler's REST API could not be reached.
    #[error(
        "the scheduler does not answer at {scheduler}; is `ubm cluster scheduler` running there, and \
         is its port open to this machine?"
    )]
    SchedulerUnreachable { scheduler: String, source: reqwest::Error },
    /// No HTTP client could be made for the scheduler's REST API.
    #[error("cannot make an HTTP client")]
    HttpClient { source: reqwest::Error },
    /// The scheduler's REST API answered with an error status, or with what ubm cannot read.
    #[error("the scheduler at {scheduler}: {what}")]
    SchedulerAnswer { scheduler: String, status: Option<u16>, what: String },
    /// The scheduler does not know the job.
    #[error(
        "no job `{job_id}` at {scheduler}: check the id with `ubm status --scheduler {scheduler}` (a \
         scheduler forgets finished jobs a few minutes after they end, and all jobs when it restarts)"
    )]
    UnknownJob { scheduler: String, job_id: String },
    /// A TLS directory cannot be used (a missing file, a key others can read, an expired
    /// certificate, one the CA did not sign). Never retried.
    #[error("TLS material {dir}: {reason}")]
    Tls { dir: String, reason: String },
    /// The scheduler accepts only TLS and this client has none.
    #[error(
        "the scheduler at {scheduler} accepts only TLS with a client certificate: pass --tls DIR (or set UBM_TLS_DIR) \
         with this cluster's client material (`ubm cluster certs` makes it)"
    )]
    TlsRequired { scheduler: String },
    /// A TLS connection to the scheduler failed; `reason` says which side refused what.
    #[error("{reason}")]
    TlsRefused { reason: String },
    /// A slice of the purchases extract failed in Postgres; the source's SQLSTATE decides a
    /// retry (see [`crate::retry`]).
    #[error("{doing} {slice} of retail.user_purchase at {db}")]
    Postgres { doing: &'static str, slice: String, db: String, source: tokio_postgres::Error },
    /// A value does not fit the data contract (e.g. a price wider than `numeric(8,3)`). Never
    /// retried: the same row fails the same way.
    #[error("{what}: {reason}")]
    BadValue { what: String, reason: String },
    /// The review file changed while a task read it: another attempt plans on the new version.
    /// The source, when there is one, is the store's refusal of the old version.
    #[error("the review file {url} changed while it was being read ({how}); rerun the date once the vendor has finished writing it")]
    Changed { url: String, how: &'static str, source: Option<object_store::Error> },
    /// A task could not write one of its files; the source's kind (or the store error it
    /// carries) decides a retry.
    #[error("{doing} {url}")]
    Write { doing: &'static str, url: String, source: std::io::Error },
    /// A scheduler or executor process failed while doing `doing`.
    #[error("{doing}")]
    Node { doing: &'static str, source: BallistaError },
}

/// The text of an error's last cause (a refused connection says "Connection refused", not
/// "error sending request").
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source()).last().map(|e| e.to_string()).unwrap_or_default()
}

impl ClusterError {
    /// Adapter for `map_err`: a scheduler or executor error while doing `doing`.
    pub fn node(doing: &'static str) -> impl FnOnce(BallistaError) -> ClusterError {
        move |source| ClusterError::Node { doing, source }
    }

    /// Adapter for `map_err`: an engine error while doing `doing`.
    pub fn engine(doing: impl Into<String>) -> impl FnOnce(DataFusionError) -> ClusterError {
        let doing = doing.into();
        move |source| ClusterError::Engine { doing, source }
    }
}
