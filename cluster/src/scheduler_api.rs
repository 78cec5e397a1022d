//! The scheduler's REST API, as `ubm submit`, `ubm status` and `ubm cancel` use it: job
//! progress (stages and tasks done), the list of jobs, and cancellation.
//!
//! A Ballista scheduler serves its REST API on the same port as its gRPC service, so the
//! `df://HOST:PORT` users already pass is all this needs. The JSON shapes are Ballista's own
//! (`ballista-api-types`), so a scheduler upgrade that changes them fails to compile here
//! rather than at a user's terminal.

use std::fmt;
use std::time::Duration;

use ballista_api_types::dto::TaskStatus;
pub use ballista_api_types::dto::{JobResponse, QueryStageSummary, QueryStagesResponse};
use serde::de::DeserializeOwned;
use url::Url;

use crate::ClusterError;

/// A scheduler's REST API at the `df://HOST:PORT` users give.
#[derive(Debug, Clone)]
pub struct SchedulerApi {
    scheduler: String,
    base: Url,
    http: reqwest::Client,
}

/// What a job's state is, in a few numbers a progress line can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    pub job_id: String,
    pub job_name: String,
    pub state: JobState,
    /// Ballista's own wording of the state, with the failure reason when it failed.
    pub detail: String,
    pub stages_done: usize,
    pub stages: usize,
    /// Tasks finished and known so far, over the stages the scheduler has planned.
    pub tasks_done: usize,
    pub tasks: usize,
    /// Milliseconds since the epoch; 0 when not yet started / not yet ended.
    pub started_ms: u64,
    pub ended_ms: u64,
}

/// A job's state as the scheduler reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Completed,
    Failed,
    /// A state word this version of ubm does not know.
    Other,
}

impl JobState {
    fn parse(word: &str) -> JobState {
        match word {
            "Queued" => JobState::Queued,
            "Running" => JobState::Running,
            "Completed" => JobState::Completed,
            "Failed" => JobState::Failed,
            _ => JobState::Other,
        }
    }

    /// Completed or failed: the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Other => "unknown",
        })
    }
}

/// The answer to a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    /// The job had already completed or failed; the scheduler's reason says which.
    AlreadyEnded(String),
}

impl SchedulerApi {
    /// The REST API of the scheduler at `df://HOST:PORT`.
    pub fn new(scheduler: &str) -> Result<Self, ClusterError> {
        let bad = |reason: &str| ClusterError::BadLocation { location: scheduler.to_string(), reason: reason.to_string() };
        let address = scheduler
            .strip_prefix("df://")
            .ok_or_else(|| bad("a scheduler address looks like df://HOST:PORT"))?
            .trim_end_matches('/');
        let base = Url::parse(&format!("http://{address}/"))
            .map_err(|e| bad(&format!("not a HOST:PORT ({e})")))?;
        if base.port().is_none() {
            return Err(bad("the port is missing: a scheduler address looks like df://HOST:50050"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| bad(&format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { scheduler: scheduler.to_string(), base, http })
    }

    /// The scheduler's `df://` address, as given.
    pub fn scheduler(&self) -> &str {
        &self.scheduler
    }

    /// Every job the scheduler still remembers (it forgets finished jobs after a while).
    pub async fn jobs(&self) -> Result<Vec<JobResponse>, ClusterError> {
        self.get("api/jobs").await?.ok_or_else(|| self.error("the scheduler has no job list (is this a Ballista 55 scheduler?)"))
    }

    /// A job's progress, or `None` when the scheduler does not know the job.
    pub async fn progress(&self, job_id: &str) -> Result<Option<JobProgress>, ClusterError> {
        let Some(job) = self.get::<JobResponse>(&format!("api/job/{job_id}")).await? else {
            return Ok(None);
        };
        let stages = self.get::<QueryStagesResponse>(&format!("api/job/{job_id}/stages")).await?;
        Ok(Some(progress_of(job, stages.as_ref())))
    }

    /// The stages of a job, with their tasks; `None` when the scheduler does not know the job.
    pub async fn stages(&self, job_id: &str) -> Result<Option<QueryStagesResponse>, ClusterError> {
        self.get(&format!("api/job/{job_id}/stages")).await
    }

    /// Asks the scheduler to cancel a job: its running tasks are stopped and it ends `Failed`
    /// with the reason `Cancelled`.
    pub async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, ClusterError> {
        let url = self.url(&format!("api/job/{job_id}"))?;
        let response = self.http.patch(url).send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        match status.as_u16() {
            200 => Ok(CancelOutcome::Cancelled),
            404 => Err(self.unknown_job(job_id)),
            409 => {
                let reason = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
                    .unwrap_or_else(|| "the job has already ended".to_string());
                Ok(CancelOutcome::AlreadyEnded(reason))
            }
            _ => Err(self.error(&format!("cancelling job {job_id} answered HTTP {status}: {}", String::from_utf8_lossy(&body)))),
        }
    }

    /// The error for a job id the scheduler does not know.
    pub fn unknown_job(&self, job_id: &str) -> ClusterError {
        self.error(&format!(
            "no job `{job_id}` there: check the id with `ubm status --scheduler {}` (a scheduler \
             forgets finished jobs a few minutes after they end, and all jobs when it restarts)",
            self.scheduler
        ))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClusterError> {
        let response = self.http.get(self.url(path)?).send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(self.error(&format!("GET /{path} answered HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| self.error(&format!("GET /{path} answered what ubm cannot read ({e}); is this a Ballista 55 scheduler?")))
    }

    fn url(&self, path: &str) -> Result<Url, ClusterError> {
        self.base.join(path).map_err(|e| self.error(&format!("`{path}` is not a valid path: {e}")))
    }

    fn unreachable(&self, error: reqwest::Error) -> ClusterError {
        let why = if error.is_timeout() { "no answer in time".to_string() } else { error.to_string() };
        self.error(&format!(
            "the scheduler does not answer ({why}); is `ubm cluster scheduler` running there, and is \
             its port open to this machine?"
        ))
    }

    fn error(&self, reason: &str) -> ClusterError {
        ClusterError::BadLocation { location: self.scheduler.clone(), reason: reason.to_string() }
    }
}

/// The tasks of `stage` that finished successfully.
pub fn tasks_done(stage: &QueryStageSummary) -> usize {
    stage.tasks.iter().flatten().filter(|task| matches!(task.status, TaskStatus::Successful)).count()
}

/// Folds the job and its stages into the numbers of a progress line.
fn progress_of(job: JobResponse, stages: Option<&QueryStagesResponse>) -> JobProgress {
    let (mut done, mut tasks) = (0, 0);
    for stage in stages.map(|s| s.stages.as_slice()).unwrap_or_default() {
        tasks += stage.tasks.len();
        done += tasks_done(stage);
    }
    JobProgress {
        state: JobState::parse(&job.status),
        job_id: job.job_id,
        job_name: job.job_name,
        detail: job.job_status,
        stages_done: job.completed_stages,
        stages: job.num_stages,
        tasks_done: done,
        tasks,
        started_ms: job.start_time,
        ended_ms: job.end_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_needs_the_df_scheme_and_a_port() {
        assert!(SchedulerApi::new("df://127.0.0.1:50050").is_ok());
        let no_scheme = SchedulerApi::new("127.0.0.1:50050").expect_err("no df://").to_string();
        assert!(no_scheme.contains("df://HOST:PORT"), "{no_scheme}");
        let no_port = SchedulerApi::new("df://scheduler.internal").expect_err("no port").to_string();
        assert!(no_port.contains("port is missing"), "{no_port}");
    }

    #[test]
    fn state_words_are_ballistas() {
        assert_eq!(JobState::parse("Completed"), JobState::Completed);
        assert!(JobState::parse("Failed").is_terminal());
        assert!(!JobState::parse("Running").is_terminal());
        assert_eq!(JobState::parse("Paused"), JobState::Other);
    }
}
