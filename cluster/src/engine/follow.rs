//! Following the Ballista jobs an [`Engine`](crate::Engine) submits: each job's id as soon as
//! the scheduler accepts it, its progress from the scheduler's REST API, its end, and
//! cancelling what is still running when the caller gives up (Ctrl-C).
//!
//! Ballista's client submits the job when its result stream is first polled and keeps the id
//! on its `DistributedQueryExec`; a small watcher task reads it from there, so the results
//! still travel Ballista's own way.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use ballista_core::execution_plans::DistributedQueryExec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine::scheduler_api::{CancelOutcome, JobProgress, SchedulerApi};
use crate::{ClusterError, TaskFailure};

/// How often a running job's watcher wakes: to read progress when due, and to see whether the
/// scheduler still has executors. Also the shortest wait between two reads of progress.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// What reading a job's progress may cost the submitter, on average. Ballista's answer carries
/// every started stage's plan (with its file lists), so on a large job one answer is tens of
/// kilobytes: read at a fixed pace, the progress of a long run would outweigh everything else
/// the submitter receives. Reads are spaced by their size: a small job's every 0.5 s, a large
/// one's less often, never more than [`PROGRESS_LONGEST_WAIT`] apart (so an answer over 80 KB
/// costs more than this rate; each job followed is read on its own).
const PROGRESS_BYTES_PER_SECOND: f64 = 16.0 * 1024.0;
/// The longest wait between two reads of a job's progress, however large the answer.
const PROGRESS_LONGEST_WAIT: Duration = Duration::from_secs(5);
/// How often the watcher looks for the job id while the job is being submitted.
const SUBMISSION_POLL: Duration = Duration::from_millis(20);
/// How long [`JobTracker::settle`] waits for one job's last report.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// How long a job waits while the scheduler has no executor, unless told otherwise
/// ([`JobTracker::with_executor_wait`]).
pub const DEFAULT_EXECUTOR_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting job asks the scheduler whether it has an executor.
const EXECUTOR_POLL: Duration = Duration::from_secs(1);

/// Hears about the jobs an engine submits. Called from the engine's tasks: keep it quick.
pub trait JobObserver: Send + Sync {
    /// The scheduler accepted the job.
    fn submitted(&self, job_id: &str, job_name: &str);
    /// The job's state changed (only on a cluster, whose scheduler has a REST API).
    fn progress(&self, progress: &JobProgress);
    /// Whether [`Self::progress`] is worth the scheduler's answers: an observer that drops it
    /// says no, and a running job's progress is then never read.
    fn wants_progress(&self) -> bool {
        true
    }
    /// The job's results have all arrived (`error` is `None`) or the job failed.
    fn ended(&self, job_id: &str, job_name: &str, error: Option<&str>);
}

/// The jobs of one engine: which are running, and whom to tell about them.
#[derive(Clone)]
pub struct JobTracker {
    api: Option<SchedulerApi>,
    observer: Option<Arc<dyn JobObserver>>,
    running: Arc<Mutex<BTreeSet<String>>>,
    watchers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    executor_wait: Duration,
}

impl JobTracker {
    /// A tracker for jobs on the scheduler behind `api` (`None`: an in-process Ballista,
    /// which has no REST API; ids are still reported, progress is not).
    pub fn new(api: Option<SchedulerApi>) -> Self {
        Self { api, observer: None, running: Arc::default(), watchers: Arc::default(), executor_wait: DEFAULT_EXECUTOR_WAIT }
    }

    /// How long a job waits while the scheduler has no executor before it is cancelled and
    /// fails saying so.
    pub fn with_executor_wait(mut self, wait: Duration) -> Self {
        self.executor_wait = wait;
        self
    }

    /// The scheduler's REST API (`None` in-process).
    pub fn api(&self) -> Option<&SchedulerApi> {
        self.api.as_ref()
    }

    pub fn with_observer(mut self, observer: Arc<dyn JobObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Cancels every job still running; returns the ids the scheduler cancelled.
    pub async fn cancel_running(&self) -> Vec<String> {
        let Some(api) = &self.api else { return Vec::new() };
        let ids: Vec<String> = lock(&self.running).iter().cloned().collect();
        let mut cancelled = Vec::new();
        for id in ids {
            match api.cancel(&id).await {
                Ok(CancelOutcome::Cancelled) => cancelled.push(id.clone()),
                Ok(CancelOutcome::AlreadyEnded(_)) => {}
                Err(e) => tracing::warn!("could not cancel job {id}: {e}"),
            }
            lock(&self.running).remove(&id);
        }
        cancelled
    }

    /// Waits (a few seconds at most) until the observer has heard the end of every job whose
    /// results have arrived, so that the last lines are not lost when the process exits.
    pub async fn settle(&self) {
        let watchers = std::mem::take(&mut *lock(&self.watchers));
        for watcher in watchers {
            let _ = tokio::time::timeout(SETTLE_LIMIT, watcher).await;
        }
    }

    /// Wraps the result stream of `plan` (already executing) so that its job is followed
    /// until the stream ends, and cancelled if the stream is dropped before that.
    pub fn follow(&self, plan: Arc<dyn ExecutionPlan>, job_name: &str, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let job =
            Arc::new(FollowedJob { plan, name: job_name.to_string(), tracker: self.clone(), announced: OnceLock::new(), starved: OnceLock::new() });
        let (end, ended) = oneshot::channel();
        lock(&self.watchers).push(tokio::spawn(watch(Arc::clone(&job), ended)));
        Box::pin(FollowedStream { inner: stream, job, end: Some(end), explaining: None })
    }
}

/// A poisoned lock still guards correct data here (sets and lists that a panic elsewhere
/// cannot leave half-changed).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One submitted plan, shared by its stream and its watcher.
struct FollowedJob {
    plan: Arc<dyn ExecutionPlan>,
    name: String,
    tracker: JobTracker,
    /// The job id, set by whoever first tells the observer about the job.
    announced: OnceLock<String>,
    /// Set when the job was cancelled because no executor registered within the wait.
    starved: OnceLock<Starved>,
}

/// A job cancelled because its scheduler had no executor for the whole wait.
#[derive(Debug, Clone)]
struct Starved {
    scheduler: String,
    host_port: String,
    waited_seconds: u64,
}

impl Starved {
    fn error(&self) -> ClusterError {
        let Starved { scheduler, host_port, waited_seconds } = self.clone();
        ClusterError::NoExecutors { scheduler, host_port, waited_seconds }
    }
}

/// What a job's watcher knows about the scheduler's executors.
#[derive(Default)]
struct ExecutorSightings {
    /// Since when the scheduler has had no executor (`None`: it had one when last asked).
    none_since: Option<std::time::Instant>,
    /// When the scheduler was last asked.
    asked: Option<std::time::Instant>,
    /// Tasks the job had finished when last seen: while that grows, executors are at work and
    /// the scheduler is not asked.
    tasks_done: usize,
}

impl FollowedJob {
    /// The job id, once Ballista's client has submitted the job.
    fn job_id(&self) -> Option<String> {
        let mut id = None;
        let _ = self.plan.apply(|node| {
            if let Some(exec) = node.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>() {
                id = exec.job_id().map(|job| job.to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        id
    }

    /// Tells the observer about the job, once.
    fn announce(&self, job_id: &str) {
        if self.announced.set(job_id.to_string()).is_ok() {
            lock(&self.tracker.running).insert(job_id.to_string());
            if let Some(observer) = &self.tracker.observer {
                observer.submitted(job_id, &self.name);
            }
        }
    }

    /// The observer to report progress to, if there is one that wants it.
    fn progress_observer(&self) -> Option<&Arc<dyn JobObserver>> {
        self.tracker.observer.as_ref().filter(|observer| observer.wants_progress())
    }

    /// Reads the running job's progress from its stages and reports it when it changed; returns
    /// when to read it next (sooner for a small answer than a large one). Does nothing without
    /// a REST API or an observer that wants progress.
    async fn report_running(&self, job_id: &str, last: &mut Option<JobProgress>) -> Instant {
        let now = Instant::now();
        let (Some(api), Some(observer)) = (&self.tracker.api, self.progress_observer()) else {
            return now + PROGRESS_LONGEST_WAIT;
        };
        match api.stage_progress(job_id, &self.name).await {
            Ok((progress, bytes)) => {
                // None: the scheduler is still planning the job (or has forgotten it).
                if let Some(progress) = progress {
                    report_if_changed(observer.as_ref(), progress, last);
                }
                now + progress_wait(bytes)
            }
            // The result stream notices a dead scheduler too, and fails the job there.
            Err(e) => {
                tracing::debug!("reading the progress of job {job_id}: {e}");
                now + WATCH_INTERVAL
            }
        }
    }

    /// Reads the ended job's progress (its state word and times with its stages) and reports it;
    /// does nothing without a REST API or an observer that wants progress.
    async fn report_end(&self, job_id: &str, last: &mut Option<JobProgress>) {
        let (Some(api), Some(observer)) = (&self.tracker.api, self.progress_observer()) else { return };
        match api.progress(job_id).await {
            Ok(Some(progress)) => report_if_changed(observer.as_ref(), progress, last),
            Ok(None) => {}
            Err(e) => tracing::debug!("reading the end of job {job_id}: {e}"),
        }
    }

    /// Whether the job has waited longer than the executor wait on a scheduler with no
    /// executor (asked at most once a second; the wait is said once, when it starts).
    async fn starved(&self, job_id: &str, progress: Option<&JobProgress>, sightings: &mut ExecutorSightings) -> bool {
        let Some(api) = &self.tracker.api else { return false };
        if self.starved.get().is_some() || sightings.asked.is_some_and(|at| at.elapsed() < EXECUTOR_POLL) {
            return false;
        }
        if let Some(progress) = progress
            && progress.tasks_done > sightings.tasks_done
        {
            sightings.tasks_done = progress.tasks_done;
            sightings.none_since = None;
            return false;
        }
        sightings.asked = Some(std::time::Instant::now());
        let wait = self.tracker.executor_wait;
        match api.executors().await {
            Ok(executors) if executors.is_empty() => {
                let since = *sightings.none_since.get_or_insert_with(|| {
                    let scheduler = api.scheduler();
                    tracing::warn!(
                        "no executor is registered with {scheduler}: job {job_id} ({}) waits for one, up to {} s (--executor-wait)",
                        self.name,
                        wait.as_secs()
                    );
                    std::time::Instant::now()
                });
                since.elapsed() >= wait
            }
            Ok(_) => {
                if sightings.none_since.take().is_some() {
                    tracing::info!("an executor registered; job {job_id} ({}) goes on", self.name);
                }
                false
            }
            // The result stream notices a dead scheduler, and fails the job there.
            Err(e) => {
                tracing::debug!("asking for the executors of job {job_id}: {e}");
                false
            }
        }
    }

    /// Cancels a job that waited too long for an executor; its stream then fails saying why.
    async fn give_up(&self, job_id: &str) {
        let Some(api) = &self.tracker.api else { return };
        let scheduler = api.scheduler();
        let reason =
            Starved { scheduler: scheduler.to_string(), host_port: scheduler.host_port(), waited_seconds: self.tracker.executor_wait.as_secs() };
        match api.cancel(job_id).await {
            // Its stream now fails as cancelled, and is explained by this.
            Ok(CancelOutcome::Cancelled) => drop(self.starved.set(reason)),
            Ok(CancelOutcome::AlreadyEnded(_)) => {}
            Err(e) => tracing::warn!("could not cancel job {job_id}, which has no executor to run on: {e}"),
        }
    }

    fn finish(&self, job_id: &str, error: Option<&str>) {
        lock(&self.tracker.running).remove(job_id);
        if let Some(observer) = &self.tracker.observer {
            observer.ended(job_id, &self.name, error);
        }
    }
}

/// Follows one job: its id as soon as it exists, its progress while its stream runs, and its
/// end (`ended` carries the stream's error, if any; a dropped sender means the stream was
/// abandoned, and its `Drop` cancels the job).
async fn watch(job: Arc<FollowedJob>, mut ended: oneshot::Receiver<Option<String>>) {
    let mut outcome = None;
    while job.job_id().is_none() && outcome.is_none() {
        tokio::select! {
            result = &mut ended => outcome = Some(result),
            _ = tokio::time::sleep(SUBMISSION_POLL) => {}
        }
    }
    // No id: the job failed before the scheduler accepted it; the stream's error says why.
    let Some(job_id) = job.job_id() else { return };
    job.announce(&job_id);
    let mut last = None;
    let mut sightings = ExecutorSightings::default();
    let mut next_read = Instant::now();
    while outcome.is_none() {
        if Instant::now() >= next_read {
            next_read = job.report_running(&job_id, &mut last).await;
        }
        if job.starved(&job_id, last.as_ref(), &mut sightings).await {
            job.give_up(&job_id).await;
        }
        tokio::select! {
            result = &mut ended => outcome = Some(result),
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
    if let Some(Ok(error)) = outcome {
        job.report_end(&job_id, &mut last).await;
        job.finish(&job_id, error.as_deref());
    }
}

/// Reports `progress` to `observer` and keeps it as the `last` reported, unless it is that.
fn report_if_changed(observer: &dyn JobObserver, progress: JobProgress, last: &mut Option<JobProgress>) {
    if last.as_ref() != Some(&progress) {
        observer.progress(&progress);
        *last = Some(progress);
    }
}

/// How long to wait before reading again a progress whose answer took `bytes`: long enough
/// that reads average [`PROGRESS_BYTES_PER_SECOND`], between [`WATCH_INTERVAL`] and
/// [`PROGRESS_LONGEST_WAIT`].
fn progress_wait(bytes: usize) -> Duration {
    Duration::from_secs_f64(bytes as f64 / PROGRESS_BYTES_PER_SECOND).clamp(WATCH_INTERVAL, PROGRESS_LONGEST_WAIT)
}

struct FollowedStream {
    inner: SendableRecordBatchStream,
    job: Arc<FollowedJob>,
    /// Tells the watcher the stream ended; `None` once it has.
    end: Option<oneshot::Sender<Option<String>>>,
    /// The stream's error being explained (which may ask the network), returned once it is.
    explaining: Option<futures::future::BoxFuture<'static, DataFusionError>>,
}

impl FollowedStream {
    fn finish(&mut self, error: Option<&DataFusionError>) {
        if let Some(end) = self.end.take() {
            let _ = end.send(error.map(|e| crate::retry::describe(e)));
        }
    }
}

/// Names the failures a user must tell apart from a failing plan. Ballista reports them as
/// text only: a task of ubm's that failed carries its cause's retry decision in a tag
/// ([`TaskFailure`]); a cancelled job fails with the reason `Cancelled` (not a failure to retry);
/// a job cancelled for want of executors says so; a scheduler or an executor that went away
/// shows as a gRPC transport error naming its address, which tells the two apart; an address
/// this machine cannot reach at all is named as such.
async fn explain(job: Arc<FollowedJob>, error: DataFusionError) -> DataFusionError {
    if let Some(starved) = job.starved.get() {
        return DataFusionError::External(Box::new(starved.error()));
    }
    let message = error.to_string();
    let job_id = job.job_id();
    if let Some(failure) = TaskFailure::find_in(&message) {
        let failure = match job_id {
            Some(job_id) => failure.in_job(job_id),
            None => failure,
        };
        return DataFusionError::External(Box::new(failure));
    }
    if let Some(job_id) = job_id
        && message.trim_end().ends_with("failed: Cancelled")
    {
        return DataFusionError::External(Box::new(ClusterError::Cancelled { job_id }));
    }
    let lost = ["code: Unavailable", "transport error", "ConnectError", "Connection refused"];
    let Some(api) = job.tracker.api.as_ref().filter(|_| lost.iter().any(|sign| message.contains(sign))) else { return error };
    let lost = match other_address(&message, &api.scheduler().host_port()) {
        // This client's own connection failed (the scheduler's Flight proxy words it "Ballista
        // executor at": that executor went away behind the proxy, which this machine need not
        // reach).
        Some(address) if message.contains("Ballista scheduler or executor at") && !reachable(&address).await => {
            ClusterError::Unreachable { address, reason: message }
        }
        Some(_) => ClusterError::ExecutorLost { reason: message },
        None => ClusterError::SchedulerLost { scheduler: api.scheduler().to_string(), reason: message },
    };
    DataFusionError::External(Box::new(lost))
}

/// Whether this machine can open a TCP connection to `address` now (a second at most: this is
/// the error path of a job that already failed).
async fn reachable(address: &str) -> bool {
    let connect = tokio::net::TcpStream::connect(address.to_string());
    matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Ok(_)))
}

impl Stream for FollowedStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(explaining) = self.explaining.as_mut() {
                let Poll::Ready(error) = explaining.as_mut().poll(cx) else { return Poll::Pending };
                self.explaining = None;
                self.finish(Some(&error));
                return Poll::Ready(Some(Err(error)));
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Ready(None) => {
                    self.finish(None);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(error))) => self.explaining = Some(Box::pin(explain(Arc::clone(&self.job), error))),
                other => return other,
            }
        }
    }
}

impl RecordBatchStream for FollowedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for FollowedStream {
    /// Results nobody will read: stop the job instead of letting it run on.
    fn drop(&mut self) {
        if self.end.is_none() {
            return;
        }
        let (Some(job_id), Some(api)) = (self.job.job_id(), self.job.tracker.api.clone()) else { return };
        let running = Arc::clone(&self.job.tracker.running);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(CancelOutcome::Cancelled) = api.cancel(&job_id).await {
                    tracing::info!("cancelled job {job_id}: its results were no longer wanted");
                }
                lock(&running).remove(&job_id);
            });
        }
    }
}

/// The first `http(s)://host:port` a transport error's message names other than `scheduler`'s
/// (then an executor, whose results were being fetched, is the one that could not be reached).
/// Other schemes (an `s3://` path in the same message) are no such address.
fn other_address(message: &str, scheduler: &str) -> Option<String> {
    message.split("http").skip(1).filter_map(|rest| rest.strip_prefix("://").or_else(|| rest.strip_prefix("s://"))).find_map(|rest| {
        let address: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']')).collect();
        let address = address.trim_end_matches(':'); // "…at http://h:p: reason"
        (address.contains(':') && address != scheduler).then(|| address.to_string())
    })
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    #[test]
    fn large_progress_answers_are_read_less_often() {
        assert_eq!(progress_wait(0), WATCH_INTERVAL, "a job not planned yet");
        assert_eq!(progress_wait(4 * 1024), WATCH_INTERVAL, "a small job is followed closely");
        assert_eq!(progress_wait(48 * 1024), Duration::from_secs(3), "48 KB at 16 KB/s");
        assert_eq!(progress_wait(10 << 20), PROGRESS_LONGEST_WAIT, "progress never goes quiet for long");
    }
}

#[cfg(test)]
mod address_tests {
    use super::other_address;

    #[test]
    fn a_lost_executor_is_told_from_a_lost_scheduler() {
        let executor = r#"GrpcConnectionError("Error connecting to Ballista scheduler or executor at http://127.0.0.1:40097: tonic")"#;
        assert_eq!(other_address(executor, "127.0.0.1:40743").as_deref(), Some("127.0.0.1:40097"));
        let tls = "Error connecting to Ballista scheduler or executor at https://10.0.0.7:50051: tonic";
        assert_eq!(other_address(tls, "127.0.0.1:40743").as_deref(), Some("10.0.0.7:50051"));
        let scheduler = "Error connecting to Ballista scheduler or executor at http://127.0.0.1:40743: refused";
        assert_eq!(other_address(scheduler, "127.0.0.1:40743"), None);
        assert_eq!(other_address("transport error", "127.0.0.1:40743"), None, "no address: the scheduler");
        assert_eq!(other_address("reading s3://bucket/x: Connection refused", "127.0.0.1:40743"), None, "a path is no address");
    }
}
