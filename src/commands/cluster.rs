//! `ubm cluster …`: Ballista's scheduler and executor, embedded in `ubm` so that every node has
//! ubm's functions, codecs and object stores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ubm_cluster::SchedulerAddress;
use ubm_cluster::local::LocalCluster;
use ubm_cluster::node::{ExecutorOptions, SchedulerOptions, run_executor, run_scheduler};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run a scheduler (gRPC on --bind). Clients and executors connect to it.
    Scheduler(SchedulerArgs),
    /// Run an executor that registers with --scheduler and runs tasks.
    Executor(ExecutorArgs),
    /// Start a scheduler and N executors as child processes on this machine, for development;
    /// Ctrl-C stops them all.
    Local(LocalArgs),
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address to listen on. Only loopback by default: listening on other interfaces is an
    /// explicit choice (e.g. 0.0.0.0:50050 on a cluster's private network).
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
    pub bind: SocketAddr,
    /// The name executors and clients use to reach this scheduler.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// Seconds without a heartbeat before an executor is declared dead and its tasks are run
    /// elsewhere. Keep it a few heartbeats long (see `executor --heartbeat-seconds`).
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    pub executor_timeout_seconds: u64,
    /// How often to look for executors past that timeout; keep it below the timeout.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub expire_dead_executor_interval_seconds: u64,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler to register with (`df://` in front is allowed).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub scheduler: SchedulerAddress,
    /// Address of the Arrow Flight service that serves shuffle data; the executor's gRPC
    /// service listens on the next port. Only loopback by default.
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
    pub bind: SocketAddr,
    /// The name the scheduler and other executors use to reach this executor.
    #[arg(long)]
    pub external_host: Option<String>,
    /// Directory for shuffle files (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Tasks run at once (default: the number of cores).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub heartbeat_seconds: u64,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of executor processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub executors: u16,
    /// The scheduler's port; executors take the ports after it, two each.
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
}

pub async fn dispatch(command: ClusterCommand) -> Result<ExitCode> {
    match command {
        ClusterCommand::Scheduler(args) => {
            eprintln!("ubm scheduler listening on {} (df://{}:{})", args.bind, args.external_host, args.bind.port());
            run_scheduler(SchedulerOptions {
                bind: args.bind,
                external_host: args.external_host,
                executor_timeout_seconds: args.executor_timeout_seconds,
                expire_dead_executor_interval_seconds: args.expire_dead_executor_interval_seconds,
            })
            .await?;
        }
        ClusterCommand::Executor(args) => {
            run_executor(ExecutorOptions {
                scheduler: args.scheduler,
                bind: args.bind,
                external_host: args.external_host,
                work_dir: args.work_dir.map(|d| d.display().to_string()),
                slots: args.slots.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                heartbeat_seconds: args.heartbeat_seconds,
            })
            .await?;
        }
        ClusterCommand::Local(args) => return local_cluster(args).await,
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_host_port(text: &str) -> Result<SchedulerAddress, String> {
    SchedulerAddress::from_host_port(text).map_err(|e| e.to_string())
}

/// A scheduler and executors as child processes of this one, stopped together: on Ctrl-C or
/// SIGTERM, when one of them exits, and, through the kernel, when this process dies however it
/// dies.
async fn local_cluster(args: LocalArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the ubm executable")?;
    let mut cluster = LocalCluster::start(&exe, args.port, args.executors).await?;
    let scheduler = cluster.scheduler.clone();
    eprintln!(
        "local cluster: scheduler df://{scheduler} and {} executors; submit with `ubm submit --scheduler df://{scheduler}`; Ctrl-C stops them",
        args.executors
    );
    tokio::select! {
        signal = crate::signals::stop_requested() => {
            eprintln!("{}: stopping the local cluster", signal?);
            Ok(ExitCode::SUCCESS)
        }
        (index, status) = cluster.first_exit() => {
            bail!("process {index} of the local cluster exited ({status:?}); stopping the others")
        }
    }
}
