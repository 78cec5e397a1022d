//! `ubm submit`: the daily run on a Ballista cluster, driven from this machine.
//!
//! A run is several Ballista jobs (ingest's copy, the extract's slices, classify, metric),
//! with a commit into the lake after each, so something must drive it: `submit` does, on the
//! machine it runs on, as Spark's client deploy mode does. The executors read the inputs and
//! write their part files into the lake themselves; what comes back to the submitter is one
//! small report row per task (files, counts, line spans), which it checks before it commits the
//! partitions. `--detach` moves the driver into the background.
//!
//! `--deploy-mode cluster` (Spark's flag) hands the run to a driver on the cluster instead: the
//! scheduler accepts it on its port and starts `ubm run` beside itself ([`ubm_cluster::runs`]).
//! The submitter prints the run's id and returns, or follows it with `--follow`; the laptop
//! needs only the scheduler's port, and may close its lid.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ubm_cluster::{Engine, EngineKind};

use crate::args::{RunData, SchedulerArg};
use crate::output::progress::ProgressPrinter;
use crate::runner::run_and_print;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub scheduler: SchedulerArg,
    /// Where the driver runs (Spark's values). `client` (the default, as in Spark): on this
    /// machine, which must reach the OLTP database and the lake and stay up until the run
    /// ends; a run on your laptop shows its progress and summary right here. `cluster`: on
    /// the scheduler's node; this machine needs only the scheduler's port, --reviews and
    /// --lake must be as the cluster reaches them, --oltp may be left to the scheduler's
    /// UBM_OLTP, and the run survives this machine going away and the scheduler restarting.
    #[arg(long, value_enum, default_value_t = DeployMode::Client, value_name = "client|cluster")]
    pub deploy_mode: DeployMode,
    /// With --deploy-mode cluster: follow the run's jobs until it ends and print its summary,
    /// exiting as `ubm run` would. Without it the command returns once the cluster accepted the
    /// run (the point of cluster mode: nothing needs to stay up here); stopping a follow stops
    /// only the following.
    #[arg(long)]
    pub follow: bool,
    /// Return once the first job is submitted; the run goes on in a background process of
    /// this machine, logging to --log. Follow it with `ubm status`, stop it with `ubm cancel`.
    #[arg(long, conflicts_with = "follow")]
    pub detach: bool,
    /// Where a detached run logs (default: ubm-submit-<time>.log in the current directory).
    #[arg(long, requires = "detach", value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub partitions: crate::args::PartitionsArg,
    #[command(flatten)]
    pub data: RunData,
}

/// The environment variable that marks the background process of `submit --detach`.
const DETACHED: &str = "UBM_SUBMIT_DETACHED";

/// Where a submitted run's driver runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeployMode {
    Client,
    Cluster,
}

pub async fn submit(args: SubmitArgs) -> Result<ExitCode> {
    if args.data.dry_run {
        // What would run is read from the lake, here, whatever the deploy mode: nothing is sent.
        let plan = args.data.backfill();
        let (dates, config) = args.data.into_config().await?;
        return crate::runner::print_plan(&config, &dates, plan).await;
    }
    match (args.deploy_mode, args.detach, args.follow) {
        (DeployMode::Cluster, true, _) => bail!("--detach is for --deploy-mode client: in cluster mode the run never depended on this machine"),
        (DeployMode::Cluster, false, _) => {
            return crate::commands::submit_cluster::submit_to_cluster(&args.scheduler, &args.data, args.partitions.partitions, args.follow).await;
        }
        (DeployMode::Client, _, true) => bail!("--follow is for --deploy-mode cluster: in client mode this command is the run, and follows it"),
        (DeployMode::Client, _, false) => {}
    }
    if args.detach {
        return detach(&args).await;
    }
    // The scheduler first: a wrong address fails before any sample data is made.
    let engine = Engine::start_sized(EngineKind::Remote(args.scheduler.address()?), args.partitions.get()).await?;
    let engine = engine.with_executor_wait(Duration::from_secs(args.data.executor_wait));
    let (json, refresh_report) = (args.data.json, !args.data.no_report);
    let plan = args.data.backfill();
    let (dates, config) = args.data.into_config().await?;
    let engine = engine.with_job_observer(Arc::new(ProgressPrinter::new(std::env::var_os(DETACHED).is_none())));
    run_and_print(&engine, &config, &dates, plan, json, refresh_report).await
}

/// Starts this same command without `--detach` in a new session (so closing the terminal does
/// not stop it), then waits for its first job id and returns.
async fn detach(args: &SubmitArgs) -> Result<ExitCode> {
    let log = match &args.log {
        Some(log) => log.clone(),
        None => PathBuf::from(format!("ubm-submit-{}.log", chrono::Utc::now().format("%Y%m%dT%H%M%S"))),
    };
    let file = tokio::fs::File::create(&log).await.with_context(|| format!("creating the log {}", log.display()))?.into_std().await;
    let exe = std::env::current_exe().context("finding the ubm executable")?;
    let arguments: Vec<_> = std::env::args_os().skip(1).filter(|a| a.to_str() != Some("--detach")).collect();
    let mut command = tokio::process::Command::new(exe);
    command.args(remove_log_flag(arguments)).env(DETACHED, "1").stdin(std::process::Stdio::null()).stdout(file.try_clone()?).stderr(file);
    // SAFETY: setsid is async-signal-safe and touches nothing of this process's memory.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the background run")?;
    let pid = child.id().map_or_else(|| "?".to_string(), |p| p.to_string());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
        if let Some((job_id, name)) = text.lines().find_map(submitted_line) {
            let scheduler = &args.scheduler.scheduler;
            // The hints work as printed on a TLS cluster too.
            let scheduler = match &args.scheduler.tls.tls {
                Some(dir) => format!("{scheduler} --tls {}", dir.display()),
                None => scheduler.to_string(),
            };
            println!("submitted job {job_id} ({name}) to {}", args.scheduler.scheduler);
            println!("the run goes on in the background (pid {pid}), logging to {}", log.display());
            println!("follow it: ubm status {job_id} --scheduler {scheduler}   (all jobs: ubm status --scheduler {scheduler})");
            println!("cancel it: ubm cancel {job_id} --scheduler {scheduler}");
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            eprint!("{text}");
            bail!("the run ended ({status}) before submitting a job; its log is {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("no job submitted after 120 s; the run goes on (pid {pid}), see {}", log.display());
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
