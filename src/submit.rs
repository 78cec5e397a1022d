//! `ubm submit`, `ubm status` and `ubm cancel`: the daily run on a Ballista cluster, driven
//! from this machine, and the jobs it leaves on the scheduler.
//!
//! A run is several Ballista jobs (classify, then metric), with a commit into the lake after
//! each, so something must drive it: `submit` does, on the machine it runs on, as Spark's
//! client deploy mode does. The plans run on the cluster's executors; the small results
//! (one row per review and per customer, no review text) come back to the submitter, which
//! checks them and commits the partitions. `--detach` moves the driver into the background.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ubm_cluster::jobs::JobObserver;
use ubm_cluster::scheduler_api::{CancelOutcome, JobProgress, JobState, SchedulerApi, tasks_done};
use ubm_cluster::{Engine, EngineKind};

use crate::cli::{RunData, run_config, run_dates};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The scheduler started with `ubm cluster scheduler`.
    #[arg(long, env = "UBM_SCHEDULER", value_name = "df://HOST:PORT")]
    pub scheduler: String,
    /// Return once the first job is submitted; the run goes on in a background process of
    /// this machine, logging to --log. Follow it with `ubm status`, stop it with `ubm cancel`.
    #[arg(long)]
    pub detach: bool,
    /// Where a detached run logs (default: ubm-submit-<time>.log in the current directory).
    #[arg(long, requires = "detach", value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub data: RunData,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A job id (as `submit` printed it). Without it, every job the scheduler remembers.
    pub job: Option<String>,
    #[arg(long, env = "UBM_SCHEDULER", value_name = "df://HOST:PORT")]
    pub scheduler: String,
    /// Print the scheduler's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job id, as `submit` or `status` printed it.
    pub job: String,
    #[arg(long, env = "UBM_SCHEDULER", value_name = "df://HOST:PORT")]
    pub scheduler: String,
}

/// The environment variable that marks the background process of `submit --detach`.
const DETACHED: &str = "UBM_SUBMIT_DETACHED";

pub async fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let kind = scheduler_engine(&args.scheduler)?;
    if args.detach {
        return detach(&args).await;
    }
    // The scheduler first: a wrong address fails before any sample data is made.
    let engine = Engine::start(kind).await?;
    let json = args.data.json;
    let (dates, config) = run_config(args.data).await?;
    let engine = engine.with_job_observer(Arc::new(ProgressPrinter::new(std::env::var_os(DETACHED).is_none())));
    run_dates(&engine, &config, dates, json).await
}

fn scheduler_engine(scheduler: &str) -> Result<EngineKind> {
    if !scheduler.starts_with("df://") {
        bail!("--scheduler `{scheduler}` is not a scheduler address: use df://HOST:PORT (port 50050 by default)");
    }
    SchedulerApi::new(scheduler)?;
    Ok(EngineKind::Remote(scheduler.to_string()))
}

/// Starts this same command without `--detach` in a new session (so closing the terminal does
/// not stop it), then waits for its first job id and returns.
async fn detach(args: &SubmitArgs) -> Result<ExitCode> {
    let log = match &args.log {
        Some(log) => log.clone(),
        None => PathBuf::from(format!("ubm-submit-{}.log", chrono::Utc::now().format("%Y%m%dT%H%M%S"))),
    };
    let file = std::fs::File::create(&log).with_context(|| format!("creating the log {}", log.display()))?;
    let exe = std::env::current_exe().context("finding the ubm executable")?;
    let arguments: Vec<_> = std::env::args_os().skip(1).filter(|a| a.to_str() != Some("--detach")).collect();
    let mut command = std::process::Command::new(exe);
    command
        .args(remove_log_flag(arguments))
        .env(DETACHED, "1")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // SAFETY: setsid is async-signal-safe and touches nothing of this process's memory.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the background run")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some((job_id, name)) = text.lines().find_map(submitted_line) {
            println!("submitted job {job_id} ({name}) to {}", args.scheduler);
            println!("the run goes on in the background (pid {}), logging to {}", child.id(), log.display());
            println!("follow it: ubm status {job_id} --scheduler {}   (all jobs: ubm status --scheduler {})", args.scheduler, args.scheduler);
            println!("cancel it: ubm cancel {job_id} --scheduler {}", args.scheduler);
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            eprint!("{text}");
            bail!("the run ended ({status}) before submitting a job; its log is {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("no job submitted after 120 s; the run goes on (pid {}), see {}", child.id(), log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--log FILE` / `--log=FILE` concern the detaching process only.
fn remove_log_flag(arguments: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut kept = Vec::with_capacity(arguments.len());
    let mut skip_next = false;
    for argument in arguments {
        if skip_next {
            skip_next = false;
        } else if argument.to_str() == Some("--log") {
            skip_next = true;
        } else if !argument.to_string_lossy().starts_with("--log=") {
            kept.push(argument);
        }
    }
    kept
}

/// The job id and name of a `job ID submitted: NAME` line, as [`ProgressPrinter`] writes it.
fn submitted_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("job ")?;
    let (job_id, name) = rest.split_once(" submitted: ")?;
    Some((job_id.to_string(), name.trim().to_string()))
}

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

pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let api = SchedulerApi::new(&args.scheduler)?;
    let Some(job_id) = args.job else {
        let mut jobs = api.jobs().await?;
        jobs.sort_by_key(|job| std::cmp::Reverse(job.start_time));
        if args.json {
            println!("{}", serde_json::to_string_pretty(&jobs)?);
        } else if jobs.is_empty() {
            println!("no jobs at {} (a scheduler forgets finished jobs a few minutes after they end)", args.scheduler);
        } else {
            println!("{:<14} {:<10} {:>7} {:>9}  NAME", "JOB", "STATE", "STAGES", "SECONDS");
            for job in &jobs {
                let end = if job.end_time > 0 { job.end_time } else { now_ms() };
                let seconds = end.saturating_sub(job.start_time) as f64 / 1000.0;
                let stages = format!("{}/{}", job.completed_stages, job.num_stages);
                println!("{:<14} {:<10} {:>7} {:>9.1}  {}", job.job_id, job.status, stages, seconds, job.job_name);
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let progress = api.progress(&job_id).await?.ok_or_else(|| api.unknown_job(&job_id))?;
    if args.json {
        let stages = api.stages(&job_id).await?;
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"job": job_json(&progress), "stages": stages}))?);
    } else {
        print_job(&api, &progress).await?;
    }
    Ok(if progress.state == JobState::Failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn job_json(p: &JobProgress) -> serde_json::Value {
    serde_json::json!({
        "job_id": p.job_id, "job_name": p.job_name, "state": p.state.to_string(), "detail": p.detail,
        "stages_done": p.stages_done, "stages": p.stages, "tasks_done": p.tasks_done, "tasks": p.tasks,
        "started_ms": p.started_ms, "ended_ms": p.ended_ms,
    })
}

async fn print_job(api: &SchedulerApi, p: &JobProgress) -> Result<()> {
    println!("job {} ({}): {}", p.job_id, p.job_name, p.state);
    println!("  stages {}/{} done, tasks {}/{} done", p.stages_done, p.stages, p.tasks_done, p.tasks);
    if p.state == JobState::Failed || p.state == JobState::Other {
        println!("  {}", p.detail);
    }
    if let Some(mut stages) = api.stages(&p.job_id).await? {
        stages.stages.sort_by_key(|stage| stage.stage_id.parse::<u64>().unwrap_or(u64::MAX));
        for stage in &stages.stages {
            let done = tasks_done(stage);
            println!(
                "  stage {:<4} {:<12} tasks {}/{}, rows in {} out {}",
                stage.stage_id,
                stage.stage_status,
                done,
                stage.tasks.len(),
                stage.input_rows,
                stage.output_rows
            );
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

pub async fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let api = SchedulerApi::new(&args.scheduler)?;
    match api.cancel(&args.job).await? {
        CancelOutcome::Cancelled => {
            println!("cancelled job {}; a run waiting for it fails and commits nothing", args.job);
            Ok(ExitCode::SUCCESS)
        }
        CancelOutcome::AlreadyEnded(reason) => {
            eprintln!("job {} was not cancelled: {reason}", args.job);
            Ok(ExitCode::FAILURE)
        }
    }
}
