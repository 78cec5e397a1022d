//! `ubm deploy …`: a Ballista cluster on AWS EMR and the daily run as EMR steps. The AWS calls
//! themselves live in the `ubm-deploy` crate; this module turns flags into its calls and
//! prints what happens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ubm_deploy::artifacts::check_architecture;
use ubm_deploy::emr::{ClusterSpec, Emr};
use ubm_deploy::state::{DEFAULT_STATE_FILE, DeployState, tls_dir_for};
use ubm_deploy::steps::{StepPlan, daily_steps};
use ubm_deploy::up::Deployment;
use ubm_jobs::Semantics;

use crate::args::{AttemptsArg, DateArgs, PollArgs};

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
    /// Add the daily run's steps to the cluster and follow each to its end.
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
    /// EC2 instance type of every node. Graviton types (m6g, m7g, …) need an aarch64 build of ubm (--binary).
    #[arg(long, default_value = "m5.xlarge")]
    pub instance_type: String,
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
    /// The ubm binary to install on the nodes (default: this one). Must match their architecture.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
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
        None => {
            check_architecture(&args.instance_type, std::env::consts::ARCH)?;
            std::env::current_exe().context("finding this ubm binary")?
        }
    };
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
fn step_plan(state: &DeployState, reviews: Option<&str>, lake: Option<&str>, semantics: Semantics, attempts: u32) -> Result<StepPlan> {
    let reviews = reviews.unwrap_or(&state.reviews);
    let lake = lake.unwrap_or(&state.lake);
    Ok(StepPlan::new(state.scheduler_port, reviews, lake, &semantics.to_string(), attempts)?)
}

/// The dates and plan of `steps` and `run`.
fn dated_plan(flags: &StepFlags, state: &DeployState) -> Result<(Vec<String>, StepPlan)> {
    let dates = flags.dates.required()?.iter().map(ToString::to_string).collect();
    let plan = step_plan(state, flags.reviews.as_deref(), flags.lake.as_deref(), flags.semantics, flags.attempts.attempts)?;
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
    let policy = args.poll.policy(4 * 3600)?;
    let (emr, _) = Emr::connect(Some(state.region.as_str())).await?;
    let cluster = emr.describe_cluster(&state.cluster_id).await?;
    if !cluster.is_ready() {
        bail!("cluster {} is {}: steps need it WAITING or RUNNING (see `ubm deploy status`)", cluster.id, cluster.state.as_str());
    }
    let steps = daily_steps(&dates, &plan);
    let ids = emr.add_steps(&state.cluster_id, &steps).await?;
    for (id, step) in ids.iter().zip(&steps) {
        eprintln!("added step {id}: {}", step.name);
    }
    for id in &ids {
        let view = emr.wait_step(&state.cluster_id, id, policy, |view| eprintln!("  step {id} ({}): {}", view.name, view.state.as_str())).await?;
        let name = view.name.clone();
        view.into_result()?;
        println!("step {id} ({name}) completed");
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
    let plan = step_plan(&state, None, None, args.semantics, args.attempts.attempts)?;
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
