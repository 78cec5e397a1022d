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

use crate::{ClusterError, SchedulerAddress};

/// An executor as the scheduler's `/api/executors` lists it (the fields ubm shows; Ballista's
/// metrics and OS details are left out).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecutorInfo {
    pub id: String,
    /// The host and Flight port the executor advertised: where clients fetch its results.
    pub host: String,
    pub port: u16,
    /// Milliseconds since its last heartbeat.
    pub last_seen: Option<u64>,
    pub specification: ExecutorSlots,
}

/// What an executor offers: its task slots (Ballista calls them vcores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecutorSlots {
    pub vcores: u32,
}

/// Executors as a table, one line each.
pub fn executors_table(executors: &[ExecutorInfo]) -> String {
    let mut table = format!("{:<38} {:<28} {:>5} {:>10}\n", "EXECUTOR", "FLIGHT ADDRESS", "SLOTS", "LAST SEEN");
    for executor in executors {
        let seen = executor.last_seen.map_or_else(|| "-".to_string(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0));
        let address = format!("{}:{}", executor.host, executor.port);
        table.push_str(&format!("{:<38} {:<28} {:>5} {:>10}\n", executor.id, address, executor.specification.vcores, seen));
    }
    table
}

/// A scheduler's REST API at the `df://HOST:PORT` users give.
#[derive(Debug, Clone)]
pub struct SchedulerApi {
    scheduler: SchedulerAddress,
    http: reqwest::Client,
}

/// What a job's state is, in a few numbers a progress line can show (and `ubm status --json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Milliseconds since the epoch; 0 when not yet started / not yet ended, or not read (a
    /// running job's progress read from its stages alone).
    pub started_ms: u64,
    pub ended_ms: u64,
}

/// A job's state as the scheduler reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Completed,
    Failed,
    /// A state word this version of ubm does not know.
    #[serde(rename = "unknown")]
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
    /// The REST API of the scheduler at `scheduler`.
    /// With TLS material on the address, every request presents its certificate.
    pub fn new(scheduler: SchedulerAddress) -> Result<Self, ClusterError> {
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(30));
        let http = match scheduler.tls() {
            Some(tls) => tls.http_client(builder)?,
            None => builder.build().map_err(|source| ClusterError::HttpClient { source })?,
        };
        Ok(Self { scheduler, http })
    }

    /// Fails, saying why, unless the scheduler answers this client: something listens at the
    /// address (within the 5 s connect timeout), it speaks TLS when this client does and the
    /// handshake succeeds both ways, and it serves the job list.
    pub async fn check(&self) -> Result<(), ClusterError> {
        match self.jobs().await {
            Err(ClusterError::SchedulerUnreachable { scheduler, source }) if source.is_connect() || source.is_timeout() => {
                Err(ClusterError::NoScheduler { scheduler, source })
            }
            other => other.map(|_| ()),
        }
    }

    /// The HTTP client, with this client's TLS material if any.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The scheduler's address.
    pub fn scheduler(&self) -> &SchedulerAddress {
        &self.scheduler
    }

    /// Every job the scheduler still remembers (it forgets finished jobs after a while).
    pub async fn jobs(&self) -> Result<Vec<JobResponse>, ClusterError> {
        self.get("api/jobs").await?.ok_or_else(|| self.error(Some(404), "has no job list (is this a Ballista 55 scheduler?)".to_string()))
    }

    /// The executors registered with the scheduler now (an executor that stopped heartbeating
    /// is dropped after the scheduler's `--executor-timeout-seconds`).
    pub async fn executors(&self) -> Result<Vec<ExecutorInfo>, ClusterError> {
        self.get("api/executors").await?.ok_or_else(|| self.error(Some(404), "has no executor list (is this a Ballista 55 scheduler?)".to_string()))
    }

    /// A job's progress, or `None` when the scheduler does not know the job.
    pub async fn progress(&self, job_id: &str) -> Result<Option<JobProgress>, ClusterError> {
        let Some(job) = self.get::<JobResponse>(&format!("api/job/{job_id}")).await? else {
            return Ok(None);
        };
        let stages = self.get::<QueryStagesResponse>(&format!("api/job/{job_id}/stages")).await?;
        Ok(Some(progress_of(job, stages.as_ref())))
    }

    /// A running job's progress read from its stages alone, and the bytes the answer took: one
    /// request, without the job's own answer, which renders its whole plan three times. A
    /// follower reads this often; the job's state word and times come from [`Self::progress`].
    /// `None` while the scheduler is still planning the job (it has no stages yet) or when it
    /// does not know the job.
    pub async fn stage_progress(&self, job_id: &str, job_name: &str) -> Result<(Option<JobProgress>, usize), ClusterError> {
        let (stages, bytes) = self.get_sized::<QueryStagesResponse>(&format!("api/job/{job_id}/stages")).await?;
        Ok((stages.map(|stages| progress_of_stages(job_id, job_name, &stages)), bytes))
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
            _ => {
                Err(self.error(Some(status.as_u16()), format!("cancelling job {job_id} answered HTTP {status}: {}", String::from_utf8_lossy(&body))))
            }
        }
    }

    /// The error for a job id the scheduler does not know.
    pub fn unknown_job(&self, job_id: &str) -> ClusterError {
        ClusterError::UnknownJob { scheduler: self.scheduler.to_string(), job_id: job_id.to_string() }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClusterError> {
        Ok(self.get_sized(path).await?.0)
    }

    /// [`Self::get`], and the size of the answer's body in bytes (0 for a 404).
    async fn get_sized<T: DeserializeOwned>(&self, path: &str) -> Result<(Option<T>, usize), ClusterError> {
        let response = self.http.get(self.url(path)?).send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.as_u16() == 404 {
            return Ok((None, 0));
        }
        if response.headers().contains_key(crate::tls::TLS_REQUIRED_HEADER) {
            return Err(ClusterError::TlsRequired { scheduler: self.scheduler.to_string() });
        }
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(self.error(Some(status.as_u16()), format!("GET /{path} answered HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        let value = serde_json::from_slice(&body).map_err(|e| {
            self.error(Some(status.as_u16()), format!("GET /{path} answered what ubm cannot read ({e}); is this a Ballista 55 scheduler?"))
        })?;
        Ok((Some(value), body.len()))
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, ClusterError> {
        self.scheduler
            .rest_base()
            .join(path)
            .map_err(|e| ClusterError::BadLocation { location: path.to_string(), reason: format!("not a valid path: {e}") })
    }

    pub(crate) fn unreachable(&self, source: reqwest::Error) -> ClusterError {
        let server = format!("the scheduler at {}", self.scheduler);
        if let Some(reason) = self.scheduler.tls().and_then(|tls| tls.explain(&server, &source)) {
            return ClusterError::TlsRefused { reason };
        }
        ClusterError::SchedulerUnreachable { scheduler: self.scheduler.to_string(), source }
    }

    pub(crate) fn error(&self, status: Option<u16>, what: String) -> ClusterError {
        ClusterError::SchedulerAnswer { scheduler: self.scheduler.to_string(), status, what }
    }
}

impl JobProgress {
    /// What `ubm status JOB` shows: the job, and each of `stages` (in stage order) with its
    /// tasks done and rows in and out.
    pub fn describe(&self, stages: Option<QueryStagesResponse>) -> String {
        let mut text = format!("job {} ({}): {}\n", self.job_id, self.job_name, self.state);
        text += &format!("  stages {}/{} done, tasks {}/{} done\n", self.stages_done, self.stages, self.tasks_done, self.tasks);
        if self.state == JobState::Failed || self.state == JobState::Other {
            text += &format!("  {}\n", self.detail);
        }
        let mut stages = stages.map(|s| s.stages).unwrap_or_default();
        stages.sort_by_key(|stage| stage.stage_id.parse::<u64>().unwrap_or(u64::MAX));
        for stage in &stages {
            text += &format!(
                "  stage {:<4} {:<12} tasks {}/{}, rows in {} out {}\n",
                stage.stage_id,
                stage.stage_status,
                tasks_done(stage),
                stage.tasks.len(),
                stage.input_rows,
                stage.output_rows
            );
        }
        text
    }
}

/// What `ubm status --scheduler` shows: one line per job, its seconds counted to its end (or
/// to now while it runs).
pub fn jobs_table(jobs: &[JobResponse]) -> String {
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut text = format!("{:<14} {:<10} {:>7} {:>9}  NAME\n", "JOB", "STATE", "STAGES", "SECONDS");
    for job in jobs {
        let end = if job.end_time > 0 { job.end_time } else { now };
        let seconds = end.saturating_sub(job.start_time) as f64 / 1000.0;
        let stages = format!("{}/{}", job.completed_stages, job.num_stages);
        text += &format!("{:<14} {:<10} {:>7} {:>9.1}  {}\n", job.job_id, job.status, stages, seconds, job.job_name);
    }
    text
}

/// The tasks of `stage` that finished successfully.
pub fn tasks_done(stage: &QueryStageSummary) -> usize {
    stage.tasks.iter().flatten().filter(|task| matches!(task.status, TaskStatus::Successful)).count()
}

/// The tasks done and the tasks known over `stages`.
fn task_counts(stages: Option<&QueryStagesResponse>) -> (usize, usize) {
    let stages = stages.map(|s| s.stages.as_slice()).unwrap_or_default();
    (stages.iter().map(tasks_done).sum(), stages.iter().map(|stage| stage.tasks.len()).sum())
}

/// Folds a planned job's stages alone into the numbers of a progress line: a job with stages
/// is running (Ballista plans a queued job before it has any); its state word, detail and times
/// are left for the job's own answer.
fn progress_of_stages(job_id: &str, job_name: &str, stages: &QueryStagesResponse) -> JobProgress {
    let (tasks_done, tasks) = task_counts(Some(stages));
    JobProgress {
        job_id: job_id.to_string(),
        job_name: job_name.to_string(),
        state: JobState::Running,
        detail: String::new(),
        stages_done: stages.stages.iter().filter(|stage| stage.stage_status == "Successful").count(),
        stages: stages.stages.len(),
        tasks_done,
        tasks,
        started_ms: 0,
        ended_ms: 0,
    }
}

/// Folds the job and its stages into the numbers of a progress line.
fn progress_of(job: JobResponse, stages: Option<&QueryStagesResponse>) -> JobProgress {
    let (done, tasks) = task_counts(stages);
    JobProgress {
        state: JobState::parse(&job.status),
        job_id: job.job_id,
        job_name: job.job_name,
        detail: crate::TaskFailure::readable(&job.job_status),
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
    fn state_words_are_ballistas() {
        assert_eq!(JobState::parse("Completed"), JobState::Completed);
        assert!(JobState::parse("Failed").is_terminal());
        assert!(!JobState::parse("Running").is_terminal());
        assert_eq!(JobState::parse("Paused"), JobState::Other);
    }

    /// A stage as Ballista's REST API sends it, with a task per entry of `tasks`.
    fn stage(id: u32, status: &str, tasks: &[&str]) -> serde_json::Value {
        let tasks: Vec<_> = tasks
            .iter()
            .enumerate()
            .map(|(i, task)| {
                serde_json::json!({"id": i, "status": task, "partition_id": [i], "scheduled_time": 0, "launch_time": 0,
                    "start_exec_time": 0, "end_exec_time": 0, "exec_duration": 0, "finish_time": 0, "input_rows": 0, "output_rows": 0})
            })
            .collect();
        serde_json::json!({"stage_id": id.to_string(), "stage_status": status, "input_rows": 0, "output_rows": 0,
            "elapsed_compute": null, "stage_plan": "a plan", "tasks": tasks})
    }

    #[test]
    fn stages_alone_say_how_far_a_job_is() {
        let read = |stages: Vec<serde_json::Value>| -> QueryStagesResponse {
            serde_json::from_value(serde_json::json!({ "stages": stages })).expect("Ballista's shape")
        };
        let planned = read(vec![stage(1, "Resolved", &[]), stage(2, "Unresolved", &[])]);
        let starting = progress_of_stages("j", "metric", &planned);
        assert_eq!((starting.state, starting.stages_done, starting.stages, starting.tasks), (JobState::Running, 0, 2, 0));

        let halfway = read(vec![stage(1, "Successful", &["Successful", "Successful"]), stage(2, "Running", &["Running", "Successful", "Running"])]);
        let running = progress_of_stages("j", "metric", &halfway);
        assert_eq!(running.state, JobState::Running);
        assert_eq!((running.stages_done, running.stages, running.tasks_done, running.tasks), (1, 2, 3, 5));
        assert_eq!((running.job_id.as_str(), running.job_name.as_str()), ("j", "metric"));
    }
}
