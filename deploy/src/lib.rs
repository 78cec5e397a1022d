//! ubm on AWS EMR: a Ballista cluster on EMR nodes, and the daily run as EMR steps.
//!
//! The only crate of ubm that knows AWS APIs. It
//! - uploads the `ubm` binary, the bootstrap script and an optional environment file to
//!   a folder of the deployment's own, `s3://BUCKET/ubm/deployments/ID/` ([`upload`]), through
//!   object_store like the rest of ubm;
//! - creates the cluster with a bootstrap action that installs `ubm` and starts the scheduler on
//!   the master node and an executor on every core node as services ([`emr`], [`bootstrap`]);
//! - describes the daily run as EMR steps, `command-runner.jar` running `ubm submit`
//!   ([`steps`]), adds them within EMR's limit of active steps and follows each to its end
//!   ([`run`], [`emr`]);
//! - writes the same steps as an Airflow DAG for teams that keep Airflow ([`airflow`]);
//! - remembers the cluster between commands in a small JSON file ([`state`]);
//! - gives every cluster a CA of its own, whose node material goes to the nodes through the
//!   bucket and whose client material stays next to the state file ([`up`], [`down`]).

pub mod airflow;
pub mod artifacts;
pub mod bootstrap;
pub mod down;
pub mod emr;
pub mod run;
pub mod state;
pub mod steps;
pub mod up;
pub mod upload;

use aws_sdk_emr::types::{ClusterState, StepState};

/// What can go wrong deploying or driving the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// An AWS call failed; the source is the SDK's error, with AWS's own explanation.
    #[error("{doing}")]
    Aws { doing: String, source: Box<dyn std::error::Error + Send + Sync + 'static> },
    /// An AWS answer lacked what ubm needs from it.
    #[error("{doing}: {missing}")]
    AwsAnswer { doing: String, missing: &'static str },
    /// A flag or a combination of flags that cannot work; the text says what to do.
    #[error("{0}")]
    Usage(String),
    /// A bucket, a store or the cluster's TLS material could not be set up; the source is
    /// ubm's own error, with its cause.
    #[error("{doing}")]
    Cluster { doing: String, source: Box<ubm_cluster::ClusterError> },
    /// What ubm writes as JSON (the steps of a DAG) could not be encoded: a bug.
    #[error("encoding {what}")]
    Encoding { what: &'static str, source: serde_json::Error },
    /// The state file could not be read or written.
    #[error("{path}: {reason}")]
    State { path: String, reason: String },
    /// A local file (the binary, the environment file) could not be read.
    #[error("{doing} {path}")]
    File { doing: &'static str, path: String, source: std::io::Error },
    /// An upload to (or a clean-up of) the bucket failed.
    #[error("{doing} {url}")]
    Storage { doing: &'static str, url: String, source: object_store::Error },
    /// EMR refused more steps: the cluster holds its limit of 256 active steps.
    #[error("cluster {cluster_id} holds EMR's limit of 256 active steps (PENDING, RUNNING or CANCEL_PENDING)")]
    StepLimit { cluster_id: String },
    /// Waiting took longer than the caller allowed.
    #[error("{0}")]
    Timeout(String),
    /// A step ended in FAILED, CANCELLED or INTERRUPTED; EMR's reason, message and log file.
    #[error("step {step_id} ({name}) ended {}{}", state.as_str(), failure_text(.reason, .message, .log_file))]
    StepFailed { step_id: String, name: String, state: StepState, reason: Option<String>, message: Option<String>, log_file: Option<String> },
    /// A step did not complete, and the dates after it that were waiting for room on the
    /// cluster were never added.
    #[error("{failed}; not added: {} later step(s), {}", not_added.len(), not_added_range(.not_added))]
    NotAdded { failed: Box<DeployError>, not_added: Vec<String> },
    /// The cluster ended (or is ending) when it was needed.
    /// `logs` says where the failed node's bootstrap log is, when EMR's reason names a node.
    #[error(
        "cluster {cluster_id} is {}{}{}",
        state.as_str(),
        .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default(),
        .logs.as_ref().map(|l| format!("\n  {l}")).unwrap_or_default()
    )]
    ClusterGone { cluster_id: String, state: ClusterState, reason: Option<String>, logs: Option<String> },
}

fn not_added_range(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} to {last}"),
    }
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
