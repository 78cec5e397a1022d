//! `ubm deploy …`: a Ballista cluster on AWS EMR and the daily run as EMR steps. The AWS calls
//! themselves live in the `ubm-deploy` crate; this module turns flags into its calls and
//! prints what happens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ubm_deploy::artifacts::check_binary;
use ubm_deploy::emr::{ClusterSpec, Emr};
use ubm_deploy::run::{RunEvent, run_steps};
use ubm_deploy::state::{DEFAULT_STATE_FILE, DeployState, tls_dir_for};
use ubm_deploy::steps::{StepPlan, TIMED_OUT_EXIT_CODE, daily_steps};
use ubm_deploy::up::Deployment;
use ubm_jobs::Semantics;

use crate::args::{AttemptsArg, DateArgs, PollArgs, parse_duration_seconds};

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Upload ubm and its bootstrap script to the bucket, create the EMR cluster (scheduler on
    /// the master node, an executor on each core node) and wait until it is ready.
    // Boxed: its flags are most of the enum's size (clippy's large_enum_variant).
    Up(Box<UpArgs>),
    /// Print the EMR step definitions of the daily run as JSON, in the API's shape (what boto3's
    /// add_job_flow_steps and Airflow's EmrAddStepsOperator take, as the original
    /// clean_movie_review.json).
    Steps(StepsArgs),
    /// Add the daily run's steps to the cluster and follow each to its end: in date order, in
    /// batches that keep the cluster within EMR's 256 active steps, more as earlier ones end.
    Run(RunArgs),
    /// Show the cluster's state.
    Status(StateArgs),
    /// Terminate the cluster; --purge also deletes what `up` uploaded.
    Down(DownArgs),
    /// Print an Airflow DAG that adds the daily step with EmrAddStepsOperator and watches it with
    /// EmrStepSensor.
    AirflowDag(DagArgs),
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where `up` records the cluster for the other commands.
    #[arg(long, env = "UBM_DEPLOY_STATE", default_value = DEFAULT_STATE_FILE, value_name = "FILE")]
    pub state: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The S3 bucket for ubm's binary, scripts and EMR's logs (under ubm/).
    #[arg(long)]
    pub bucket: String,
    /// The review files the daily run reads, s3://…; `{date}` becomes the run date.
    #[arg(long, value_name = "URL")]
    pub reviews: String,
    /// The lake, s3://bucket/prefix: every node reads and writes it.
    #[arg(long, value_name = "URL")]
    pub lake: String,
    /// AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or your AWS profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// Core nodes, one executor each.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub core_nodes: i32,
    /// EC2 instance type of every node (of the master node, with --core-types). Graviton types
    /// (m6g, m7g, …) need an aarch64 build of ubm (--binary).
    #[arg(long, default_value = "m5.xlarge")]
    pub instance_type: String,
    /// Instance types EMR may choose from for the core nodes, comma-separated (up to 5, all of
    /// one CPU architecture), e.g. m5.xlarge,m5a.xlarge,m6i.xlarge: with one type, a zone short of
    /// it fails the whole cluster (insufficient capacity); with several, EMR takes what the
    /// subnet's zone has (EMR's instance fleets).
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub core_types: Vec<String>,
    /// Core nodes on spot capacity (about a third of the on-demand price), on demand if none is
    /// found within 10 minutes of launch. AWS may take a spot node back at two minutes' notice:
    /// the scheduler then declares its executor dead (after --executor-timeout-seconds, 180 s
    /// by default) and Ballista runs its tasks again on the other nodes, so the day completes,
    /// later. The master node stays on demand.
    #[arg(long)]
    pub spot: bool,
    #[arg(long, default_value = "emr-7.5.0")]
    pub release_label: String,
    /// The VPC subnet for the nodes (default: EMR's choice in the default VPC).
    #[arg(long)]
    pub subnet: Option<String>,
    /// An EC2 key pair, to reach the nodes with ssh.
    #[arg(long)]
    pub key_name: Option<String>,
    /// KEY=VALUE lines the steps and services get on the nodes (UBM_OLTP, UBM_WAREHOUSE, …),
    /// kept out of step arguments. Uploaded to the bucket: keep that bucket private.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// The ubm binary to install on the nodes (default: this one). It must be a Linux program
    /// for the nodes' CPU: `up` reads its header and refuses anything else (a macOS build, say).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// End the cluster after it has been idle this long (EMR's auto-termination: no step
    /// pending or running, and no job on the scheduler, which marks the master node busy
    /// while it works). The default, 25h, keeps a cluster that runs one day a day (the
    /// Airflow DAG's or `deploy run`'s daily step) and ends one that was forgotten within a
    /// day. `none` keeps the cluster until `ubm deploy down`; EMR allows 1m to 7d.
    #[arg(long, default_value = "25h", value_name = "DURATION|none", value_parser = parse_idle_timeout)]
    pub idle_timeout: IdleTimeout,
    /// Let EMR replace core nodes that YARN marks unhealthy. Off by default: ubm's executors do
    /// not run on YARN, whose health check (local disks over 90% full) says nothing of them, and
    /// a replacement mid-run loses the node's work; a failed executor is restarted on its node
    /// and its tasks rerun elsewhere.
    #[arg(long)]
    pub replace_unhealthy_nodes: bool,
    /// The names the nodes have in the VPC's DNS, which their TLS certificates must carry
    /// (comma-separated; `*.` wildcards allowed), when the VPC has a DNS of its own
    /// (DHCP options with a custom domain: nodes are then ip-10-0-0-1.corp.example). Default:
    /// Amazon's names, `*.ec2.internal` and `*.REGION.compute.internal`. localhost is always
    /// added (steps reach the scheduler there).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub tls_hosts: Vec<String>,
    /// A gp3 EBS volume of this many GB on every node, where shuffle files go (EMR mounts it at
    /// /mnt). Default: the instance type's own storage only.
    #[arg(long, value_name = "GB", value_parser = clap::value_parser!(i32).range(5..=16384))]
    pub ebs_gb: Option<i32>,
    #[arg(long, default_value_t = 50050)]
    pub scheduler_port: u16,
    #[arg(long, default_value = "ubm")]
    pub name: String,
    /// The IAM role EMR uses (made by `aws emr create-default-roles`).
    #[arg(long, default_value = "EMR_DefaultRole")]
    pub service_role: String,
    /// The nodes' EC2 instance profile (made by `aws emr create-default-roles`).
    #[arg(long, default_value = "EMR_EC2_DefaultRole")]
    pub instance_profile: String,
    #[command(flatten)]
    pub poll: PollArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The flags that say which dates and how the steps run them.
#[derive(Debug, Args)]
pub struct StepFlags {
    /// One step per date, in date order.
    #[command(flatten)]
    pub dates: DateArgs,
    /// Override the review location recorded by `up`.
    #[arg(long, value_name = "URL")]
    pub reviews: Option<String>,
    /// Override the lake recorded by `up`.
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    #[arg(long, default_value = "correct", value_name = "correct|seed")]
    pub semantics: Semantics,
    #[command(flatten)]
    pub attempts: AttemptsArg,
    #[command(flatten)]
    pub step_timeout: StepTimeoutArg,
}

/// The bound every step's command runs under.
#[derive(Debug, Args)]
pub struct StepTimeoutArg {
    /// Stop a step that has run this long (SIGTERM: ubm cancels its jobs and removes its
    /// staging; SIGKILL 60 s later). The step then fails with exit code 124 and, at step
    /// concurrency 1, no longer holds back the steps after it, the next day's too. The bound is
    /// in the step itself, so it holds when nobody watches (the Airflow DAG, a closed laptop).
    #[arg(long, default_value = "4h", value_name = "DURATION", value_parser = parse_duration_seconds)]
    pub step_timeout: u64,
}

/// `--idle-timeout`: seconds, or none.
#[derive(Debug, Clone, Copy)]
pub struct IdleTimeout(Option<i64>);

/// EMR's range for an auto-termination idle timeout: 1 minute to 7 days.
const IDLE_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 60..=604_800;

fn parse_idle_timeout(text: &str) -> Result<IdleTimeout, String> {
    if text == "none" {
        return Ok(IdleTimeout(None));
    }
    let seconds = parse_duration_seconds(text)?;
    if !IDLE_TIMEOUT_SECONDS.contains(&seconds) {
        return Err(format!("`{text}`: EMR takes an idle timeout from 1m to 7d, or `none` to keep the cluster until `ubm deploy down`"));
    }
    Ok(IdleTimeout(Some(seconds as i64)))
}

#[derive(Debug, Args)]
pub struct StepsArgs {
    #[command(flatten)]
    pub steps: StepFlags,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub steps: StepFlags,
    #[command(flatten)]
    pub poll: PollArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also delete the binary, scripts and environment file `up` uploaded (EMR's logs stay).
    #[arg(long)]
    pub purge: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    /// Write the DAG here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "correct", value_name = "correct|seed")]
    pub semantics: Semantics,
    #[command(flatten)]
    pub attempts: AttemptsArg,
    #[command(flatten)]
    pub step_timeout: StepTimeoutArg,
    #[command(flatten)]
    pub state: StateArgs,
}

pub async fn dispatch(command: DeployCommand) -> Result<ExitCode> {
    match command {
        DeployCommand::Up(args) => up(*args).await,
        DeployCommand::Steps(args) => steps(args).await,
        DeployCommand::Run(args) => run(args).await,
        DeployCommand::Status(args) => status(args).await,
        DeployCommand::Down(args) => down(args).await,
        DeployCommand::AirflowDag(args) => airflow_dag(args).await,
    }
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    let poll = args.poll.policy(1800)?;
    let (emr, region) = Emr::connect(args.region.as_deref()).await?;
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("finding this ubm binary")?,
    };
    if args.core_types.len() > 5 {
        bail!("--core-types: give at most 5 instance types (EMR's limit for a fleet without an allocation strategy)");
    }
    for instance_type in std::iter::once(&args.instance_type).chain(&args.core_types) {
        check_binary(&binary, instance_type)?;
    }
    let tls_dir = tls_dir_for(&args.state.state);
    let cluster = ClusterSpec {
        name: args.name,
        release_label: args.release_label,
        instance_type: args.instance_type,
        core_nodes: args.core_nodes,
        subnet: args.subnet,
        key_name: args.key_name,
        service_role: args.service_role,
        instance_profile: args.instance_profile,
        idle_timeout_seconds: args.idle_timeout.0,
        replace_unhealthy_nodes: args.replace_unhealthy_nodes,
        ebs_gb: args.ebs_gb,
        core_types: args.core_types,
        spot: args.spot,
        ..ClusterSpec::default()
    };
    let deployment = Deployment {
        bucket: args.bucket,
        reviews: args.reviews,
        lake: args.lake,
        cluster,
        binary,
        env_file: args.env_file,
        scheduler_port: args.scheduler_port,
        state_file: args.state.state.clone(),
        poll,
        tls_dir: tls_dir.clone(),
        tls_hosts: args.tls_hosts,
    };
    let mut shown = 0;
    let ready = ubm_deploy::up::up(deployment, &emr, region, |event| {
        if let Some(line) = event.line(&mut shown) {
            eprintln!("{line}");
        }
    })
    .await?;
    println!("cluster {} is {}: scheduler on the master node, port {} (mutual TLS)", ready.id, ready.state.as_str(), args.scheduler_port);
    println!("client TLS material for this cluster: {} (ubm submit/status --tls)", tls_dir.join("client").display());
    println!("next: ubm deploy run --date YYYY-MM-DD");
    Ok(ExitCode::SUCCESS)
}

/// The steps' plan: the state's locations unless the flags override them, checked once.
fn step_plan(
    state: &DeployState,
    reviews: Option<&str>,
    lake: Option<&str>,
    semantics: Semantics,
    attempts: u32,
    step_timeout: u64,
) -> Result<StepPlan> {
    let reviews = reviews.unwrap_or(&state.reviews);
    let lake = lake.unwrap_or(&state.lake);
    Ok(StepPlan::new(state.scheduler_port, reviews, lake, &semantics.to_string(), attempts, step_timeout)?)
}

/// The dates and plan of `steps` and `run`.
fn dated_plan(flags: &StepFlags, state: &DeployState) -> Result<(Vec<String>, StepPlan)> {
    let dates = flags.dates.required()?.iter().map(ToString::to_string).collect();
    let plan =
        step_plan(state, flags.reviews.as_deref(), flags.lake.as_deref(), flags.semantics, flags.attempts.attempts, flags.step_timeout.step_timeout)?;
    Ok((dates, plan))
}

async fn steps(args: StepsArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state).await?;
    let (dates, plan) = dated_plan(&args.steps, &state)?;
    println!("{}", serde_json::to_string_pretty(&daily_steps(&dates, &plan))?);
    Ok(ExitCode::SUCCESS)
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state).await?;
    let (dates, plan) = dated_plan(&args.steps, &state)?;
    // Follow a step a little longer than its bound: a step stopped there is then reported with
    // its exit code 124, not as a wait that gave up.
    let policy = args.poll.policy(plan.step_timeout_seconds() + 300)?;
    let (emr, _) = Emr::connect(Some(state.region.as_str())).await?;
    let cluster = emr.describe_cluster(&state.cluster_id).await?;
    if !cluster.is_ready() {
        bail!("cluster {} is {}: steps need it WAITING or RUNNING (see `ubm deploy status`)", cluster.id, cluster.state.as_str());
    }
    let steps = daily_steps(&dates, &plan);
    let total = steps.len();
    let mut completed = 0;
    let outcome = run_steps(&emr, &state.cluster_id, steps, policy, |event| match event {
        RunEvent::Added { steps, left } => {
            for (id, name) in steps {
                eprintln!("added step {id}: {name}");
            }
            if left > 0 {
                eprintln!("  {left} more date(s) wait for room: EMR allows 256 active steps per cluster; more are added as these end");
            }
        }
        RunEvent::Full { batch } => {
            eprintln!("  EMR refused {batch} more step(s): the cluster holds its limit of 256 active steps (others' too); trying fewer as steps end")
        }
        RunEvent::State(view) => eprintln!("  step {} ({}): {}", view.id, view.name, view.state.as_str()),
        RunEvent::Completed(view) => {
            completed += 1;
            println!("step {} ({}) completed [{completed}/{total}]", view.id, view.name);
        }
    })
    .await;
    if let Err(error) = outcome {
        let text = error.to_string();
        if text.contains(&format!("exited with code {TIMED_OUT_EXIT_CODE}")) {
            bail!(
                "{text}\n  exit code {TIMED_OUT_EXIT_CODE}: the step ran longer than --step-timeout ({} s) and was stopped",
                plan.step_timeout_seconds()
            );
        }
        return Err(error.into());
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StateArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state).await?;
    let (emr, _) = Emr::connect(Some(state.region.as_str())).await?;
    let view = emr.describe_cluster(&state.cluster_id).await?;
    print!("{}", state.describe(&view));
    Ok(if view.is_ended() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn down(args: DownArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state).await?;
    let (emr, _) = Emr::connect(Some(state.region.as_str())).await?;
    let done = ubm_deploy::down::down(state, &args.state.state, &emr, args.purge).await?;
    println!("terminating cluster {}", done.cluster_id);
    if let Some((count, url)) = done.deleted {
        println!("deleted {count} objects under {url}");
    }
    if let Some(dir) = done.tls_removed {
        println!("removed the cluster's TLS material {dir}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn airflow_dag(args: DagArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state).await?;
    let plan = step_plan(&state, None, None, args.semantics, args.attempts.attempts, args.step_timeout.step_timeout)?;
    let dag = ubm_deploy::airflow::dag(&state.cluster_id, &plan)?;
    match &args.out {
        Some(path) => {
            tokio::fs::write(path, dag).await.with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}: copy it into your Airflow dags/ folder", path.display());
        }
        None => print!("{dag}"),
    }
    Ok(ExitCode::SUCCESS)
}
