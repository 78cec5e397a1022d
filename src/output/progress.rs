//! What the engine's jobs look like to a person: a progress line per job on stderr.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ubm_cluster::engine::follow::JobObserver;
use ubm_cluster::engine::scheduler_api::JobProgress;

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

/// For `ubm run` on Ballista: each job's id and end as log lines.
pub struct LogJobs;

impl JobObserver for LogJobs {
    fn submitted(&self, job_id: &str, job_name: &str) {
        tracing::info!("job {job_id} submitted: {job_name}");
    }
    fn progress(&self, _: &JobProgress) {}
    fn ended(&self, job_id: &str, job_name: &str, error: Option<&str>) {
        match error {
            None => tracing::debug!("job {job_id} completed: {job_name}"),
            Some(error) => tracing::warn!("job {job_id} failed: {job_name}: {error}"),
        }
    }
}
