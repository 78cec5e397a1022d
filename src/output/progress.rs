//! What the engine's jobs look like to a person (a progress line per job on stderr) and to the
//! scheduler of a cluster-mode run (a progress file).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use ubm_cluster::Partitions;
use ubm_cluster::engine::follow::JobObserver;
use ubm_cluster::engine::scheduler_api::{JobProgress, JobState};
use ubm_cluster::runs::DriverProgress;
use ubm_cluster::runs::service::write_private;

/// Shows each job on stderr: on a terminal one line redrawn in place, otherwise a log line per
/// change of state or stage, which reads well in a file or CI log.
pub struct ProgressPrinter {
    terminal: bool,
    /// When each job was seen submitted, and how long the scheduler says it ran once it ended.
    jobs: Mutex<std::collections::HashMap<String, (Instant, Option<Duration>)>>,
}

impl ProgressPrinter {
    pub fn new(allow_terminal: bool) -> Self {
        Self { terminal: allow_terminal && std::io::stderr().is_terminal(), jobs: Mutex::default() }
    }

    /// The scheduler's own run time once the job ended; until then the time since submission.
    fn elapsed(&self, job_id: &str) -> Duration {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.get(job_id) {
            Some((_, Some(ran))) => *ran,
            Some((seen, None)) => seen.elapsed(),
            None => Duration::ZERO,
        }
    }

    fn line(&self, text: &str) {
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal { writeln!(stderr, "\r\x1b[2K{text}") } else { writeln!(stderr, "{text}") };
    }
}

impl JobObserver for ProgressPrinter {
    fn submitted(&self, job_id: &str, job_name: &str) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(job_id.to_string(), (Instant::now(), None));
        self.line(&format!("job {job_id} submitted: {job_name}"));
    }

    fn progress(&self, p: &JobProgress) {
        if p.state.is_terminal() && p.ended_ms > 0 {
            let ran = Duration::from_millis(p.ended_ms.saturating_sub(p.started_ms));
            if let Some(job) = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&p.job_id) {
                job.1 = Some(ran);
            }
        }
        let text = format!(
            "job {} {}: {}, stages {}/{}, tasks {}/{}, {:.2} s",
            p.job_id,
            p.job_name,
            p.state,
            p.stages_done,
            p.stages,
            p.tasks_done,
            p.tasks,
            self.elapsed(&p.job_id).as_secs_f64()
        );
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{text}");
            let _ = stderr.flush();
        } else {
            self.line(&text);
        }
    }

    fn ended(&self, job_id: &str, job_name: &str, error: Option<&str>) {
        let seconds = self.elapsed(job_id).as_secs_f64();
        match error {
            None => self.line(&format!("job {job_id} completed: {job_name}, {seconds:.2} s")),
            Some(error) => self.line(&format!("job {job_id} failed: {job_name}, {seconds:.2} s: {error}")),
        }
    }
}

/// For `ubm run` on Ballista: each job's id and end as log lines (no progress: nothing would
/// show it, so the scheduler is not asked for it).
pub struct LogJobs;

impl JobObserver for LogJobs {
    fn submitted(&self, job_id: &str, job_name: &str) {
        tracing::info!("job {job_id} submitted: {job_name}");
    }
    fn progress(&self, _: &JobProgress) {}
    fn wants_progress(&self) -> bool {
        false
    }
    fn ended(&self, job_id: &str, job_name: &str, error: Option<&str>) {
        match error {
            None => tracing::debug!("job {job_id} completed: {job_name}"),
            Some(error) => tracing::warn!("job {job_id} failed: {job_name}: {error}"),
        }
    }
}

/// For the driver of a cluster-mode run: every job and its last known progress, rewritten whole
/// into a file at each change, where the scheduler reads it for `ubm status`.
pub struct ProgressFile {
    path: PathBuf,
    progress: Mutex<DriverProgress>,
}

impl ProgressFile {
    pub fn new(path: PathBuf, partitions: Partitions) -> Self {
        let file = Self { path, progress: Mutex::new(DriverProgress { partitions: Some(partitions), jobs: Vec::new() }) };
        file.change(|_| {});
        file
    }

    /// Applies `change` and writes the file (a failure to write is logged: progress is a view).
    fn change(&self, change: impl FnOnce(&mut DriverProgress)) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut progress);
        let written = serde_json::to_vec(&*progress).map_err(std::io::Error::other).and_then(|json| write_private(&self.path, &json));
        if let Err(e) = written {
            tracing::warn!("cannot write the run's progress to {}: {e}", self.path.display());
        }
    }
}

impl JobObserver for ProgressFile {
    fn submitted(&self, job_id: &str, job_name: &str) {
        let job = JobProgress {
            job_id: job_id.to_string(),
            job_name: job_name.to_string(),
            state: JobState::Queued,
            detail: String::new(),
            stages_done: 0,
            stages: 0,
            tasks_done: 0,
            tasks: 0,
            started_ms: 0,
            ended_ms: 0,
        };
        self.change(|p| p.jobs.push(job));
    }

    fn progress(&self, job: &JobProgress) {
        self.change(|p| match p.jobs.iter_mut().find(|j| j.job_id == job.job_id) {
            Some(known) => *known = job.clone(),
            None => p.jobs.push(job.clone()),
        });
    }

    fn ended(&self, job_id: &str, _: &str, error: Option<&str>) {
        self.change(|p| {
            if let Some(job) = p.jobs.iter_mut().find(|j| j.job_id == job_id) {
                job.state = if error.is_some() { JobState::Failed } else { JobState::Completed };
                if let Some(error) = error {
                    job.detail = error.to_string();
                }
            }
        });
    }
}

/// Several observers, each told everything.
pub struct Observers(pub Vec<std::sync::Arc<dyn JobObserver>>);

impl JobObserver for Observers {
    fn submitted(&self, job_id: &str, job_name: &str) {
        self.0.iter().for_each(|o| o.submitted(job_id, job_name));
    }
    fn progress(&self, progress: &JobProgress) {
        self.0.iter().for_each(|o| o.progress(progress));
    }
    fn wants_progress(&self) -> bool {
        self.0.iter().any(|o| o.wants_progress())
    }
    fn ended(&self, job_id: &str, job_name: &str, error: Option<&str>) {
        self.0.iter().for_each(|o| o.ended(job_id, job_name, error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ubm run` on a cluster logs its jobs and nothing else: the scheduler is not asked for
    /// progress. The cluster-mode driver writes it for `ubm status RUN`: it is.
    #[test]
    fn only_an_observer_that_shows_progress_has_it_read() {
        let dir = tempfile::tempdir().expect("a folder");
        let file = ProgressFile::new(dir.path().join("progress.json"), Partitions { count: 2, from: "cluster".to_string() });
        assert!(!Observers(vec![std::sync::Arc::new(LogJobs)]).wants_progress(), "ubm run in a terminal or a log");
        assert!(Observers(vec![std::sync::Arc::new(LogJobs), std::sync::Arc::new(file)]).wants_progress(), "the cluster-mode driver");
        assert!(ProgressPrinter::new(false).wants_progress(), "ubm submit");
    }
}
