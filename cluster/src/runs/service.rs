//! The scheduler's side of cluster deploy mode: accepts runs, starts and watches their drivers,
//! keeps each run's state where a restarted scheduler finds it, and serves `/ubm/runs`.
//!
//! A run's folder, `<state-dir>/<id>/` (0700):
//! - `request.json` (0600): the request, secrets included, so that a restarted scheduler can
//!   start the driver again; removed once the run has ended.
//! - `state.json`: the run's state and its driver's pid (no secrets).
//! - `progress.json`: what the driver writes as its jobs go ([`super::DriverProgress`]).
//! - `summary.txt` and `driver.log`: the driver's stdout (the summary) and its log.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DriverProgress, RunRequest, RunState, RunView};
use crate::process::start_time;

/// How `ubm run` is started as a run's driver.
#[derive(Debug, Clone)]
pub struct DriverCommand {
    /// The `ubm` executable (the scheduler's own).
    pub exe: PathBuf,
    /// The scheduler, as the driver reaches it (`df://HOST:PORT`).
    pub scheduler: String,
    /// The node's TLS material, which also serves as a client's (the scheduler's `--tls`).
    pub tls_dir: Option<PathBuf>,
}

/// A resumed driver waits at least this long for executors: after a scheduler restart they
/// rejoin at their next poll (pull) or heartbeat (push, 60 s by default).
const RESUMED_EXECUTOR_WAIT: u64 = 150;

/// A resumed driver waits at least this long for the date's lease: should the driver it
/// replaces still be alive (it is killed first), its lease names it until it is gone.
const RESUMED_LEASE_WAIT: u64 = 60;

/// Lines of the driver's log that `status` shows of a run that failed.
const LOG_TAIL_LINES: usize = 20;

/// The cluster-mode runs of one scheduler.
#[derive(Clone)]
pub struct RunService {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    driver: DriverCommand,
    launcher: Launcher,
    /// Serialises changes of the runs' state files.
    state_lock: Mutex<()>,
    /// Set when the scheduler stops: a driver ending then is not the run's end (it resumes at
    /// the next start).
    stopping: AtomicBool,
    /// The lock that makes the state folder this scheduler's (see [`RunService::claim`]).
    claim: Mutex<Option<std::fs::File>>,
}

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunRecord {
    id: String,
    from: String,
    to: String,
    reviews: String,
    lake: String,
    state: RunState,
    submitted_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    driver_starts: u32,
    exit: Option<String>,
    /// The running driver: pid and its start time (clock ticks after boot), to tell it from a
    /// later process of the same pid.
    pid: Option<u32>,
    pid_start: Option<u64>,
    cancel_requested: bool,
}

/// Why a request failed (refused, unknown, or the scheduler could not do it), with the HTTP
/// status to answer.
#[derive(Debug)]
pub struct RequestError {
    pub status: StatusCode,
    pub message: String,
}

impl RequestError {
    fn bad(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
    fn internal(doing: &str, e: impl std::fmt::Display) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: format!("{doing}: {e}") }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl RunService {
    /// The runs kept under `dir`, which the first run makes (0700) if it is missing. Nothing
    /// is started yet: see [`RunService::resume_unfinished`], once the scheduler accepts
    /// connections.
    pub fn open(dir: &Path, driver: DriverCommand) -> std::io::Result<RunService> {
        // The drivers run in their runs' folders: every path they are given is absolute.
        let dir = std::path::absolute(dir)?;
        let launcher = Launcher::start()?;
        let inner = Inner { dir, driver, launcher, state_lock: Mutex::new(()), stopping: AtomicBool::new(false), claim: Mutex::new(None) };
        let service = RunService { inner: Arc::new(inner) };
        if service.inner.dir.exists() {
            service.claim()?;
        }
        Ok(service)
    }

    /// Makes the state folder if needed and takes it for this scheduler (an exclusive `flock`
    /// on `.scheduler.lock`, held until the process ends): two schedulers resuming the same runs
    /// would kill each other's drivers.
    fn claim(&self) -> std::io::Result<()> {
        let mut claim = self.inner.claim.lock().unwrap_or_else(|p| p.into_inner());
        if claim.is_some() {
            return Ok(());
        }
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.inner.dir)?;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(self.inner.dir.join(".scheduler.lock"))?;
        // SAFETY: flock only locks the open file it is given.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            let dir = self.inner.dir.display();
            return Err(std::io::Error::new(
                error.kind(),
                format!("another scheduler keeps its runs in {dir} ({error}); give each scheduler a --state-dir of its own"),
            ));
        }
        *claim = Some(file);
        Ok(())
    }

    /// Starts a driver again for every run that had not ended when the scheduler stopped; the
    /// run keeps its id, and with it what it had committed. Returns the runs resumed.
    pub fn resume_unfinished(&self) -> Vec<String> {
        let mut resumed = Vec::new();
        for record in self.records() {
            if record.state.has_ended() {
                continue;
            }
            // A driver of the previous scheduler that is somehow still alive would run the
            // same date beside the new one: stop it first.
            if let (Some(pid), Some(start)) = (record.pid, record.pid_start)
                && start_time(pid) == Some(start)
            {
                tracing::warn!("run {}: stopping its previous driver (pid {pid}), which outlived the scheduler", record.id);
                kill(pid, libc::SIGKILL);
            }
            let id = record.id.clone();
            if record.cancel_requested {
                // Cancelled while its driver stopped with the scheduler, or while the scheduler
                // was down: it ends here; the next run of the date removes its staging.
                self.end(&id, RunState::Cancelled, "cancelled; its driver had stopped with the scheduler".to_string());
                continue;
            }
            match self.load_request(&id).and_then(|request| self.start_driver(record, &request, true)) {
                Ok(()) => resumed.push(id),
                Err(e) => {
                    tracing::error!("run {id} cannot be resumed: {}", e.message);
                    self.end(&id, RunState::Failed, format!("not resumed after a scheduler restart: {}", e.message));
                }
            }
        }
        resumed
    }

    /// Ends run `id` in `state` (for a run whose driver has ended or never started) and forgets
    /// its secrets.
    fn end(&self, id: &str, state: RunState, exit: String) {
        let ended = self.update(id, |r| {
            r.state = state;
            r.exit = Some(exit);
            r.ended_at = Some(Utc::now());
            r.pid = None;
            r.pid_start = None;
        });
        if let Err(e) = ended {
            tracing::error!("run {id}: its state cannot be written: {e}");
        }
        self.forget_secrets(id);
    }

    /// Whether some run has not ended (a driver works, between jobs too).
    pub fn has_unfinished(&self) -> bool {
        self.records().iter().any(|r| !r.state.has_ended())
    }

    /// Marks the service as stopping: drivers that end from now on are left to resume.
    pub fn stop(&self) -> usize {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.records().iter().filter(|r| !r.state.has_ended()).count()
    }

    /// The routes of `/ubm/runs`, to serve beside the scheduler's own.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/ubm/runs", post(submit_route).get(list_route))
            .route("/ubm/runs/{id}", get(view_route))
            .route("/ubm/runs/{id}/cancel", post(cancel_route))
            .with_state(self.clone())
    }

    /// Accepts a run and starts its driver.
    pub fn submit(&self, request: RunRequest) -> Result<RunView, RequestError> {
        check_request(&request)?;
        let id = new_run_id();
        let run_dir = self.run_dir(&id);
        self.claim().map_err(|e| RequestError::internal(&format!("the scheduler's --state-dir {}", self.inner.dir.display()), e))?;
        std::fs::DirBuilder::new().mode(0o700).create(&run_dir).map_err(|e| RequestError::internal("making the run's folder", e))?;
        let json = serde_json::to_vec(&request).map_err(|e| RequestError::internal("encoding the request", e))?;
        write_private(&run_dir.join("request.json"), &json).map_err(|e| RequestError::internal("keeping the request", e))?;
        let record = RunRecord {
            id: id.clone(),
            from: request.from.clone(),
            to: request.to.clone(),
            reviews: request.reviews.clone(),
            lake: request.lake.clone(),
            state: RunState::Running,
            submitted_at: Utc::now(),
            ended_at: None,
            driver_starts: 0,
            exit: None,
            pid: None,
            pid_start: None,
            cancel_requested: false,
        };
        if let Err(e) = self.save(&record) {
            // Nothing would ever look at a folder without a state: it goes, secrets and all.
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(RequestError::internal("writing the run's state", e));
        }
        if let Err(e) = self.start_driver(record, &request, false) {
            self.end(&id, RunState::Failed, e.message.clone());
            return Err(e);
        }
        tracing::info!("accepted run {id} ({request:?})");
        self.view(&id).ok_or_else(|| RequestError::internal("reading the run back", "its state is gone"))
    }

    /// Every run, newest first.
    pub fn list(&self) -> Vec<RunView> {
        let mut runs: Vec<RunView> = self.records().into_iter().map(|r| self.view_of(r, false)).collect();
        runs.sort_by(|a, b| b.submitted_at.cmp(&a.submitted_at).then_with(|| b.id.cmp(&a.id)));
        runs
    }

    /// One run, with its summary or log tail once ended; `None` when unknown.
    pub fn view(&self, id: &str) -> Option<RunView> {
        if !is_run_id(id) {
            return None;
        }
        self.load_record(id).map(|r| self.view_of(r, true))
    }

    /// Stops a running run: its driver gets SIGTERM, cancels the run's jobs and removes its
    /// staging; what the run had committed stays.
    pub fn cancel(&self, id: &str) -> Result<RunView, RequestError> {
        if !is_run_id(id) || self.load_record(id).is_none() {
            return Err(RequestError { status: StatusCode::NOT_FOUND, message: format!("no run {id}") });
        }
        let record = self
            .update(id, |r| {
                if !r.state.has_ended() {
                    r.cancel_requested = true;
                }
            })
            .map_err(|e| RequestError::internal("writing the run's state", e))?;
        if record.state.has_ended() {
            return Err(RequestError { status: StatusCode::CONFLICT, message: format!("run {id} has already ended ({})", record.state) });
        }
        if let (Some(pid), Some(start)) = (record.pid, record.pid_start)
            && start_time(pid) == Some(start)
        {
            kill(pid, libc::SIGTERM);
        }
        tracing::info!("run {id}: cancel requested");
        self.view(id).ok_or_else(|| RequestError::internal("reading the run back", "its state is gone"))
    }

    /// Starts the driver of `record` and a task that records how it ends.
    fn start_driver(&self, record: RunRecord, request: &RunRequest, resumed: bool) -> Result<(), RequestError> {
        let run_dir = self.run_dir(&record.id);
        let progress = read_progress(&run_dir);
        let mut command = self.driver_command(&record.id, request, resumed, progress.partitions.as_ref().map(|p| p.count));
        let log = append(&run_dir.join("driver.log")).map_err(|e| RequestError::internal("opening the driver's log", e))?;
        let summary = append(&run_dir.join("summary.txt")).map_err(|e| RequestError::internal("opening the driver's summary", e))?;
        let mut header = log.try_clone().map_err(|e| RequestError::internal("opening the driver's log", e))?;
        let _ = writeln!(header, "--- driver {} of run {} started {}", record.driver_starts + 1, record.id, Utc::now().to_rfc3339());
        command.stdout(summary).stderr(log).stdin(Stdio::null());
        let mut child = self.inner.launcher.spawn(command).map_err(|e| RequestError::internal("starting the driver", e))?;
        let pid = child.id();
        let recorded = self.update(&record.id, |r| {
            r.state = RunState::Running;
            r.driver_starts += 1;
            r.pid = pid;
            r.pid_start = pid.and_then(start_time);
        });
        if let Err(e) = recorded {
            // A driver nobody could find again must not go on.
            let _ = child.start_kill();
            return Err(RequestError::internal("writing the run's state", e));
        }
        if resumed {
            tracing::info!("run {}: driver started again (pid {}), resuming", record.id, pid.unwrap_or(0));
        }
        let service = self.clone();
        let id = record.id;
        tokio::spawn(async move {
            let status = child.wait().await;
            service.driver_ended(&id, status);
        });
        Ok(())
    }

    /// `ubm run` for the run `id`: against this scheduler, with the run's id (which keeps what
    /// it committed before a restart) and its progress file; secrets in the environment only.
    fn driver_command(&self, id: &str, request: &RunRequest, resumed: bool, partitions: Option<usize>) -> tokio::process::Command {
        let driver = &self.inner.driver;
        let run_dir = self.run_dir(id);
        let mut command = tokio::process::Command::new(&driver.exe);
        command.current_dir(&run_dir).arg("run").args(["--engine", &driver.scheduler]);
        if let Some(tls) = &driver.tls_dir {
            command.arg("--tls").arg(tls);
        }
        let (executor_wait, lease_wait) = match resumed {
            true => (request.executor_wait.max(RESUMED_EXECUTOR_WAIT), request.wait_for_lease.max(RESUMED_LEASE_WAIT)),
            false => (request.executor_wait, request.wait_for_lease),
        };
        command
            .args(["--from", &request.from, "--to", &request.to, "--reviews", &request.reviews, "--lake", &request.lake])
            .args(["--semantics", &request.semantics, "--attempts", &request.attempts.to_string()])
            .args(["--retry-backoff-ms", &request.retry_backoff_ms.to_string(), "--wait-for-lease", &lease_wait.to_string()])
            .args(["--executor-wait", &executor_wait.to_string(), "--run-id", id])
            .arg("--progress-file")
            .arg(run_dir.join("progress.json"))
            .arg("--data-dir")
            .arg(run_dir.join("data"));
        // A restarted driver splits its plans as the first one did.
        if let Some(count) = request.partitions.map(usize::from).or(partitions) {
            command.args(["--partitions", &count.to_string()]);
        }
        for check in &request.checks {
            command.args(["--check", check]);
        }
        command.args(["--redo", &request.redo, "--parallel", &request.parallel.max(1).to_string()]);
        if request.keep_going {
            command.arg("--keep-going");
        }
        if request.no_report {
            command.arg("--no-report");
        }
        for (name, value) in [("UBM_OLTP", &request.oltp), ("UBM_WAREHOUSE", &request.warehouse)] {
            if let Some(value) = value {
                command.env(name, value);
            }
        }
        let scheduler_pid = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid, _exit and setpgid are async-signal-safe and touch nothing of
        // this process's memory. The driver dies with the scheduler (as a driver beside it must:
        // a restarted scheduler starts it again; the parent is checked after the prctl, since a
        // scheduler that died just before it would leave the driver without the signal), and has
        // a process group of its own, so that a Ctrl-C meant for a scheduler in a terminal
        // reaches the scheduler only.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != scheduler_pid {
                    libc::_exit(1);
                }
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        command.kill_on_drop(false);
        command
    }

    /// Records how the driver of `id` ended: the run's end, unless the scheduler is stopping.
    fn driver_ended(&self, id: &str, status: std::io::Result<ExitStatus>) {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let exit = match &status {
            Ok(status) => status.to_string(),
            Err(e) => format!("cannot be waited for: {e}"),
        };
        let succeeded = status.as_ref().is_ok_and(ExitStatus::success);
        // Decided under the state's lock, so that a cancel request is seen or refused, never lost.
        let ended = self.update(id, |r| {
            r.state = match (succeeded, r.cancel_requested) {
                (true, _) => RunState::Succeeded,
                (false, true) => RunState::Cancelled,
                (false, false) => RunState::Failed,
            };
            r.exit = Some(exit.clone());
            r.ended_at = Some(Utc::now());
            r.pid = None;
            r.pid_start = None;
        });
        match ended {
            Ok(record) => tracing::info!("run {id} {} ({exit})", record.state),
            Err(e) => tracing::error!("run {id}: its driver ended ({exit}) but its state cannot be written: {e}"),
        }
        self.forget_secrets(id);
    }

    /// Removes the request (which holds the secrets) of a run that has ended.
    fn forget_secrets(&self, id: &str) {
        let path = self.run_dir(id).join("request.json");
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }

    fn view_of(&self, record: RunRecord, details: bool) -> RunView {
        let run_dir = self.run_dir(&record.id);
        let ended = record.state.has_ended();
        let summary = (details && ended).then(|| std::fs::read_to_string(run_dir.join("summary.txt")).unwrap_or_default()).filter(|s| !s.is_empty());
        let log_tail = match (details, record.state) {
            (true, RunState::Failed | RunState::Cancelled) => log_tail(&run_dir.join("driver.log")),
            _ => Vec::new(),
        };
        RunView {
            id: record.id,
            from: record.from,
            to: record.to,
            reviews: record.reviews,
            lake: record.lake,
            state: record.state,
            submitted_at: record.submitted_at,
            ended_at: record.ended_at,
            driver_starts: record.driver_starts,
            exit: record.exit,
            progress: read_progress(&run_dir),
            summary,
            log_tail,
        }
    }

    fn run_dir(&self, id: &str) -> PathBuf {
        self.inner.dir.join(id)
    }

    fn records(&self) -> Vec<RunRecord> {
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| is_run_id(n))
            .filter_map(|id| self.load_record(&id))
            .collect()
    }

    fn load_record(&self, id: &str) -> Option<RunRecord> {
        let path = self.run_dir(id).join("state.json");
        let bytes = std::fs::read(&path).ok()?;
        serde_json::from_slice(&bytes).map_err(|e| tracing::warn!("{} cannot be read ({e}); the run is not shown", path.display())).ok()
    }

    fn load_request(&self, id: &str) -> Result<RunRequest, RequestError> {
        let path = self.run_dir(id).join("request.json");
        let bytes = std::fs::read(&path).map_err(|e| RequestError::internal(&format!("reading {}", path.display()), e))?;
        serde_json::from_slice(&bytes).map_err(|e| RequestError::internal(&format!("reading {}", path.display()), e))
    }

    fn save(&self, record: &RunRecord) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        write_private(&self.run_dir(&record.id).join("state.json"), &json)
    }

    /// Changes the state of `id` under the lock and returns it as written.
    fn update(&self, id: &str, change: impl FnOnce(&mut RunRecord)) -> std::io::Result<RunRecord> {
        let _guard = self.inner.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = self.load_record(id).ok_or_else(|| std::io::Error::other(format!("the state of run {id} cannot be read")))?;
        change(&mut record);
        self.save(&record)?;
        Ok(record)
    }
}

/// Starts the drivers from one thread that lives as long as the scheduler: the kernel sends a
/// child its parent-death signal when the *thread* that forked it ends, and a thread of the
/// async runtime's pool may end long before the process does.
struct Launcher {
    requests: std::sync::mpsc::Sender<(tokio::process::Command, std::sync::mpsc::Sender<std::io::Result<tokio::process::Child>>)>,
}

impl Launcher {
    fn start() -> std::io::Result<Launcher> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let (requests, received) = std::sync::mpsc::channel::<(tokio::process::Command, std::sync::mpsc::Sender<_>)>();
        std::thread::Builder::new().name("ubm-driver-launcher".to_string()).spawn(move || {
            // The child is registered with the runtime, which reaps it.
            let _runtime = runtime.enter();
            while let Ok((mut command, answer)) = received.recv() {
                let _ = answer.send(command.spawn());
            }
        })?;
        Ok(Launcher { requests })
    }

    fn spawn(&self, command: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
        let (answer, spawned) = std::sync::mpsc::channel();
        let sent = self.requests.send((command, answer));
        sent.map_err(|_| std::io::Error::other("the driver launcher has stopped"))?;
        spawned.recv().map_err(|_| std::io::Error::other("the driver launcher has stopped"))?
    }
}

/// Refuses what the driver would refuse later, and what makes no sense on a cluster: a
/// relative path (relative to what?), a key in a location, no OLTP database at all.
fn check_request(request: &RunRequest) -> Result<(), RequestError> {
    let (from, to) = (parse_date("from", &request.from)?, parse_date("to", &request.to)?);
    if from > to {
        return Err(RequestError::bad(format!("--from {from} is after --to {to}")));
    }
    for (flag, location) in [("--reviews", &request.reviews), ("--lake", &request.lake)] {
        crate::store::check_location(flag, location).map_err(|e| RequestError::bad(e.to_string()))?;
        if !location.contains("://") && !location.starts_with('/') {
            return Err(RequestError::bad(format!(
                "{flag} {location}: a relative path; the driver runs on the cluster, so give an absolute path there or a URL"
            )));
        }
    }
    if request.oltp.is_none() && std::env::var_os("UBM_OLTP").is_none() {
        return Err(RequestError::bad(
            "no OLTP database: pass --oltp postgres://… (it travels over the cluster's channel only), or set UBM_OLTP in the scheduler's environment",
        ));
    }
    if !matches!(request.semantics.as_str(), "correct" | "seed") {
        return Err(RequestError::bad(format!("--semantics {}: use correct or seed", request.semantics)));
    }
    if request.partitions == Some(0) {
        return Err(RequestError::bad("--partitions 0: use 1 or more"));
    }
    if !(1..=20).contains(&request.attempts) {
        return Err(RequestError::bad(format!("--attempts {}: use 1 to 20", request.attempts)));
    }
    if !matches!(request.redo.as_str(), "none" | "failed" | "all") {
        return Err(RequestError::bad(format!("--redo {}: use none, failed or all", request.redo)));
    }
    if !(1..=64).contains(&request.parallel) {
        return Err(RequestError::bad(format!("--parallel {}: use 1 to 64", request.parallel)));
    }
    Ok(())
}

fn parse_date(name: &str, text: &str) -> Result<chrono::NaiveDate, RequestError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| RequestError::bad(format!("{name} {text}: not a date YYYY-MM-DD ({e})")))
}

/// A new run id: the time it was accepted, sortable, and a random tail.
fn new_run_id() -> String {
    let tail = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%S"), &tail[..6])
}

/// Whether `text` has the shape of [`new_run_id`]'s ids (which also keeps paths out).
pub fn is_run_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 22
        && bytes[8] == b'T'
        && bytes[15] == b'-'
        && bytes.iter().enumerate().all(|(i, b)| matches!(i, 8 | 15) || b.is_ascii_digit() || (i > 15 && b.is_ascii_hexdigit()))
}

fn read_progress(run_dir: &Path) -> DriverProgress {
    std::fs::read(run_dir.join("progress.json")).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

fn log_tail(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].iter().map(|l| l.to_string()).collect()
}

/// Writes `bytes` to `path` whole (a temporary file renamed over it), readable by this user only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)
}

fn kill(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) only sends a signal; pid was checked to be the driver by its start time.
    unsafe {
        libc::kill(pid, signal);
    }
}

async fn submit_route(State(service): State<RunService>, body: axum::body::Bytes) -> Result<(StatusCode, axum::Json<RunView>), RequestError> {
    let request: RunRequest = serde_json::from_slice(&body).map_err(|e| RequestError::bad(format!("not a run request: {e}")))?;
    // A few small files are written here: short enough for an async worker.
    let view = service.submit(request)?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn list_route(State(service): State<RunService>) -> axum::Json<Vec<RunView>> {
    axum::Json(service.list())
}

async fn view_route(State(service): State<RunService>, UrlPath(id): UrlPath<String>) -> Result<axum::Json<RunView>, RequestError> {
    service.view(&id).map(axum::Json).ok_or(RequestError { status: StatusCode::NOT_FOUND, message: format!("no run {id}") })
}

async fn cancel_route(State(service): State<RunService>, UrlPath(id): UrlPath<String>) -> Result<axum::Json<RunView>, RequestError> {
    service.cancel(&id).map(axum::Json)
}
