//! One task of a run, tried until it succeeds, its attempts run out, or its error says another
//! attempt cannot help ([`PipelineError::is_retryable`]).

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// How often and how patiently a failing task is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; it doubles for every further one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 3, first_backoff: Duration::from_secs(1) }
    }
}

/// A task's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Succeeded,
    Failed,
    /// Not run: a task it needs failed, or there was nothing to do.
    Skipped,
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
        })
    }
}

/// One task's outcome, as the run report shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskReport {
    pub name: String,
    pub status: TaskStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_ms: u128,
    pub attempts: u32,
    pub error: Option<String>,
    /// Not run by this driver: the run had committed it before its driver stopped, and the
    /// resumed run kept it (see `crate::resume`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

impl TaskReport {
    /// A task that did not run, and why.
    pub fn skipped(name: &str, why: &str) -> TaskReport {
        TaskReport {
            name: name.to_string(),
            status: TaskStatus::Skipped,
            started_at: None,
            duration_ms: 0,
            attempts: 0,
            error: Some(why.to_string()),
            kept: false,
        }
    }

    /// A task the run committed before its driver stopped, kept by the resumed run.
    pub fn kept(name: &str) -> TaskReport {
        TaskReport { status: TaskStatus::Succeeded, error: None, kept: true, ..TaskReport::skipped(name, "") }
    }

    /// A task that could not even start (its input cannot be named): failed, with no attempt.
    pub fn failed_before_start(name: &str, error: &PipelineError) -> TaskReport {
        TaskReport { status: TaskStatus::Failed, error: Some(error.describe()), ..TaskReport::skipped(name, "") }
    }

    /// Marks a task that had succeeded as failed after all (its result could not be kept).
    pub fn fail(&mut self, why: String) {
        self.status = TaskStatus::Failed;
        self.error = Some(why);
    }
}

/// Runs `work` until it succeeds, the attempts run out, or it fails for a reason a retry
/// cannot fix; returns its outcome and the attempts made. `what` names it in the log.
pub async fn retrying<T, F, Fut>(what: &str, policy: RetryPolicy, mut work: F) -> (Result<T>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempts = 0;
    let mut backoff = policy.first_backoff;
    loop {
        attempts += 1;
        match work().await {
            Ok(value) => return (Ok(value), attempts),
            Err(err) if attempts < policy.attempts.max(1) && err.is_retryable() => {
                tracing::warn!(task = what, attempt = attempts, "failed, retrying in {backoff:?}: {}", err.describe());
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(err) => return (Err(err), attempts),
        }
    }
}

/// Runs `work` as the task `name` (see [`retrying`]). Returns the task's report and, when it
/// succeeded, its value.
pub async fn run_task<T, F, Fut>(name: &str, policy: RetryPolicy, work: F) -> (TaskReport, Option<T>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let (report, outcome) = run_task_keeping_error(name, policy, work).await;
    (report, outcome.ok())
}

/// [`run_task`], with the error itself when the task failed (for a caller that decides on it).
pub async fn run_task_keeping_error<T, F, Fut>(name: &str, policy: RetryPolicy, work: F) -> (TaskReport, Result<T>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started_at = Utc::now();
    let clock = Instant::now();
    tracing::info!(task = name, "started");
    let (outcome, attempts) = retrying(name, policy, work).await;
    let duration_ms = clock.elapsed().as_millis();
    let (status, error) = match &outcome {
        Ok(_) => {
            tracing::info!(task = name, duration_ms, attempts, "succeeded");
            (TaskStatus::Succeeded, None)
        }
        Err(err) => {
            let error = err.describe();
            tracing::error!(task = name, attempts, retryable = err.is_retryable(), "failed: {error}");
            (TaskStatus::Failed, Some(error))
        }
    };
    (TaskReport { name: name.to_string(), status, started_at: Some(started_at), duration_ms, attempts, error, kept: false }, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy { attempts, first_backoff: Duration::from_millis(1) }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_a_final_one_is_not() {
        let mut calls = 0;
        let (report, value) = run_task("t", quick(3), || {
            calls += 1;
            let fail = calls < 3;
            async move { if fail { Err(PipelineError::Changed { url: "file:///x".into() }) } else { Ok(7) } }
        })
        .await;
        assert_eq!((report.status, report.attempts, value), (TaskStatus::Succeeded, 3, Some(7)));

        let (report, value) =
            run_task("t", quick(3), || async { Err::<(), _>(PipelineError::BadInput { what: "the file".into(), reason: "has no header".into() }) })
                .await;
        assert_eq!((report.status, report.attempts, value), (TaskStatus::Failed, 1, None));
        assert_eq!(report.error.as_deref(), Some("the file: has no header"));
    }
}
