//! `ubm cluster …`: Ballista's scheduler and executor, embedded in `ubm` so that every node has
//! ubm's functions, codecs and object stores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ubm_cluster::SchedulerAddress;
use ubm_cluster::node::busy::BusyMarker;
use ubm_cluster::node::local::LocalCluster;
use ubm_cluster::node::{ExecutorOptions, SchedulerOptions, run_executor, run_scheduler};
use ubm_cluster::runs::service::{DriverCommand, RunService};
use ubm_cluster::tls::certs::{CA_DAYS, CertsRequest, LEAF_DAYS};

use crate::args::TlsArg;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run a scheduler (gRPC on --bind). Clients and executors connect to it.
    Scheduler(SchedulerArgs),
    /// Run an executor that registers with --scheduler and runs tasks.
    Executor(ExecutorArgs),
    /// Start a scheduler and N executors as child processes on this machine, for development;
    /// Ctrl-C stops them all.
    Local(LocalArgs),
    /// Make a cluster's own CA and the key pairs it signs, for `--tls`: OUT/node (scheduler and
    /// executors), OUT/client (submitters), OUT/ca (the CA; keep it off the cluster).
    Certs(CertsArgs),
}

/// Who may connect: mutual TLS, or, on purpose, anyone who can reach the ports; and how tasks
/// reach the executors.
#[derive(Debug, Args)]
pub struct Exposure {
    /// Executors poll the scheduler for tasks (Ballista's pull policy) instead of being sent
    /// them; give it to the scheduler and every executor alike. Always so with --tls: the push
    /// policy needs a task port on each executor that Ballista serves in plaintext only.
    #[arg(long)]
    pub pull: bool,
    #[command(flatten)]
    pub tls: TlsArg,
    /// Listen on a non-loopback address without TLS: anyone who reaches the ports can submit
    /// plans that run with this node's credentials. Without --tls, only loopback is allowed
    /// unless this is given.
    #[arg(long, conflicts_with = "tls")]
    pub insecure: bool,
}

impl Exposure {
    /// The TLS material, after refusing a plaintext non-loopback bind that was not asked for.
    fn check(&self, bind: SocketAddr, ports: &str) -> Result<Option<std::sync::Arc<ubm_cluster::tls::ClusterTls>>> {
        let tls = self.tls.load()?;
        ubm_cluster::tls::check_exposure(bind, tls.is_some(), self.insecure, ports)?;
        Ok(tls)
    }
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
    /// Clients fetch jobs' results straight from the executors' Flight ports, which they must
    /// then reach. By default results pass through this scheduler's port (Ballista's embedded
    /// Flight proxy), so that a client that reaches only the scheduler (an SSH tunnel, a laptop
    /// outside the cluster's network) gets them. ubm's jobs return small reports (the tables
    /// go to the lake); the warehouse load streams the day's metric, a row per customer.
    #[arg(long)]
    pub no_flight_proxy: bool,
    /// Where cluster-mode runs (`ubm submit --deploy-mode cluster`) keep their state: one folder
    /// per run (0700), its request (with the connection URLs, 0600, removed when the run
    /// ends), state, progress and driver log. A scheduler started again with the same folder
    /// (as systemd does) resumes every run that had not ended.
    #[arg(long, default_value = "ubm-runs", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Touch this file every 15 s while a job is pending or running, or a cluster-mode run has
    /// not ended. On EMR (the bootstrap sets it) this is /emr/metricscollector/isbusy, EMR's
    /// documented marker for work outside YARN and steps, so that auto-termination
    /// (`deploy up --idle-timeout`) does not end a cluster that a laptop is driving.
    #[arg(long, value_name = "FILE")]
    pub busy_file: Option<PathBuf>,
    #[command(flatten)]
    pub exposure: Exposure,
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
    #[command(flatten)]
    pub exposure: Exposure,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of executor processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub executors: u16,
    /// The scheduler's port; executors take the ports after it, two each.
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    // Node material for the scheduler and executors (OUT/node of `ubm cluster certs`); clients
    // then need client material (OUT/client).
    #[command(flatten)]
    pub tls: TlsArg,
    /// Executors poll the scheduler for tasks (see `ubm cluster scheduler --help`).
    #[arg(long)]
    pub pull: bool,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Folder to make; it gets node/, client/ and ca/. Existing material is never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Host names and addresses the scheduler and executors are reached at, comma-separated;
    /// wildcards such as *.ec2.internal work. localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long, value_delimiter = ',', value_name = "H1,H2,...")]
    pub hosts: Vec<String>,
    /// Sign with an existing CA (the ca/ folder of an earlier run) instead of making one: new
    /// node and client material that the running cluster trusts.
    #[arg(long, value_name = "CA_DIR")]
    pub ca: Option<PathBuf>,
    /// Lifetime of the node and client certificates, in days.
    #[arg(long, default_value_t = LEAF_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Lifetime of a new CA, in days.
    #[arg(long, default_value_t = CA_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_days: u32,
}

pub async fn dispatch(command: ClusterCommand) -> Result<ExitCode> {
    match command {
        ClusterCommand::Scheduler(args) => return scheduler(args).await,
        ClusterCommand::Executor(args) => {
            let ports = format!("the executor's ports {} (Flight) and {} (tasks)", args.bind.port(), args.bind.port().saturating_add(1));
            let tls = args.exposure.check(args.bind, &ports)?;
            run_executor(ExecutorOptions {
                tls,
                pull: args.exposure.pull,
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
        ClusterCommand::Certs(args) => certs(args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a scheduler with its cluster-mode runs until it is stopped. Drivers die with it and
/// start again, resuming their runs, when it is started again with the same --state-dir.
async fn scheduler(args: SchedulerArgs) -> Result<ExitCode> {
    let tls = args.exposure.check(args.bind, &format!("the scheduler's port {} (gRPC and REST)", args.bind.port()))?;
    ubm_cluster::node::check_port_free(args.bind, "the scheduler's port")?;
    let (bind, how) = (args.bind, if tls.is_some() { "mutual TLS" } else { "plaintext" });
    let address = format!("df://{}:{}", args.external_host, bind.port());
    // The driver runs in its run's folder: its TLS directory is given absolute.
    let tls_dir = args.exposure.tls.tls.as_deref().map(std::path::absolute).transpose().context("--tls: resolving the directory")?;
    let driver = DriverCommand { exe: std::env::current_exe().context("finding the ubm executable")?, scheduler: address.clone(), tls_dir };
    let runs = RunService::open(&args.state_dir, driver).with_context(|| {
        format!("--state-dir {}: cannot keep the runs' state there; give a folder this user can create and write", args.state_dir.display())
    })?;
    let mut scheduler = tokio::spawn(run_scheduler(SchedulerOptions {
        tls,
        pull: args.exposure.pull,
        bind: args.bind,
        external_host: args.external_host,
        executor_timeout_seconds: args.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: args.expire_dead_executor_interval_seconds,
        flight_proxy: !args.no_flight_proxy,
        extra_routes: Some(runs.routes()),
        busy_marker: args.busy_file.map(|path| {
            let runs = runs.clone();
            BusyMarker { path, also_busy: Arc::new(move || runs.has_unfinished()) }
        }),
    }));
    // "listening" is said once the port accepts connections, never before; runs resume then.
    tokio::select! {
        ended = &mut scheduler => {
            ended.context("the scheduler stopped unexpectedly")??;
            bail!("the scheduler stopped before it listened on {bind}");
        }
        () = accepting(bind) => eprintln!("ubm scheduler listening on {bind} ({address}, {how}); cluster-mode runs kept in {}", args.state_dir.display()),
    }
    for id in runs.resume_unfinished() {
        eprintln!("resuming run {id}, which had not ended when the scheduler stopped");
    }
    tokio::select! {
        ended = &mut scheduler => {
            ended.context("the scheduler stopped unexpectedly")??;
            Ok(ExitCode::SUCCESS)
        }
        signal = crate::signals::stop_requested() => {
            let unfinished = runs.stop();
            eprintln!("{}: stopping the scheduler; {unfinished} run(s) not ended resume when it starts again with --state-dir {}", signal?, args.state_dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Returns once `bind` accepts TCP connections (on loopback when it is a wildcard address).
async fn accepting(bind: SocketAddr) {
    let mut address = bind;
    if address.ip().is_unspecified() {
        address.set_ip(if bind.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    while tokio::net::TcpStream::connect(address).await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

fn parse_host_port(text: &str) -> Result<SchedulerAddress, String> {
    SchedulerAddress::from_host_port(text).map_err(|e| e.to_string())
}

/// A scheduler and executors as child processes of this one, stopped together: on Ctrl-C or
/// SIGTERM, when one of them exits, and, through the kernel, when this process dies however it
/// dies.
async fn local_cluster(args: LocalArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the ubm executable")?;
    // Checked here so that a bad directory fails once, not in every child.
    args.tls.load()?;
    let mut cluster = LocalCluster::start(&exe, args.port, args.executors, args.tls.tls.as_deref(), args.pull).await?;
    let scheduler = cluster.scheduler.clone();
    let (executors, client_tls) = (args.executors, if args.tls.tls.is_some() { " --tls CLIENT_DIR" } else { "" });
    eprintln!(
        "local cluster: scheduler df://{scheduler} and {executors} executors; submit with `ubm submit --scheduler df://{scheduler}{client_tls}`; Ctrl-C stops them"
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

fn certs(args: CertsArgs) -> Result<()> {
    let mut request = CertsRequest::new(args.out, args.hosts);
    (request.existing_ca, request.leaf_days, request.ca_days) = (args.ca, args.days, args.ca_days);
    print!("{}", ubm_cluster::tls::certs::make(&request)?);
    Ok(())
}
