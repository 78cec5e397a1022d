//! ubm on AWS EMR: a Ballista cluster on EMR nodes, and the daily run as EMR steps.
//!
//! The only crate of ubm that knows AWS APIs. It
//! - uploads the `ubm` binary, the bootstrap script and an optional environment file to
//!   `s3://BUCKET/ubm/VERSION/` ([`upload`]), through object_store like the rest of ubm;
//! - creates the cluster with a bootstrap action that installs `ubm` and starts the scheduler on
//!   the master node and an executor on every core node as services ([`emr`], [`bootstrap`]);
//! - describes the daily run as EMR steps, `command-runner.jar` running `ubm submit`
//!   ([`steps`]), adds them and follows each to its end ([`emr`]);
//! - writes the same steps as an Airflow DAG for teams that keep Airflow ([`airflow`]);
//! - remembers the cluster between commands in a small JSON file ([`state`]).

pub mod airflow;
pub mod bootstrap;
pub mod emr;
pub mod state;
pub mod steps;
pub mod upload;

/// What can go wrong deploying or driving the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// An AWS call failed; `message` is AWS's own explanation.
    #[error("{doing}: {message}")]
    Aws { doing: String, message: String },
    /// A flag or a combination of flags that cannot work; the text says what to do.
    #[error("{0}")]
    Usage(String),
    /// The state file could not be read or written.
    #[error("{path}: {reason}")]
    State { path: String, reason: String },
    /// An upload to (or a clean-up of) the bucket failed.
    #[error("{doing} {url}: {reason}")]
    Storage { doing: &'static str, url: String, reason: String },
    /// Waiting took longer than the caller allowed.
    #[error("{0}")]
    Timeout(String),
    /// A step ended in FAILED, CANCELLED or INTERRUPTED; EMR's reason, message and log file.
    #[error("step {step_id} ({name}) ended {state}{}", failure_text(.reason, .message, .log_file))]
    StepFailed {
        step_id: String,
        name: String,
        state: String,
        reason: Option<String>,
        message: Option<String>,
        log_file: Option<String>,
    },
    /// The cluster ended (or is ending) when it was needed.
    #[error("cluster {cluster_id} is {state}{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    ClusterGone { cluster_id: String, state: String, reason: Option<String> },
}

fn failure_text(reason: &Option<String>, message: &Option<String>, log_file: &Option<String>) -> String {
    let mut text = String::new();
    if let Some(reason) = reason {
        text.push_str(&format!(": {reason}"));
    }
    if let Some(message) = message {
        text.push_str(&format!("; {message}"));
    }
    if let Some(log_file) = log_file {
        text.push_str(&format!("; log: {log_file}"));
    }
    text
}

pub type Result<T, E = DeployError> = std::result::Result<T, E>;
