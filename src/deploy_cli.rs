//! `ubm deploy …`: a Ballista cluster on AWS EMR and the daily run as EMR steps. The AWS calls
//! themselves live in the `ubm-deploy` crate; this module turns flags into its calls and
//! prints what happens.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ubm_deploy::emr::{ClusterSpec, Emr, PollPolicy};
use ubm_deploy::state::{DEFAULT_STATE_FILE, DeployState};
use ubm_deploy::steps::{StepPlan, daily_steps};
use ubm_deploy::upload::ArtifactStore;
use ubm_jobs::{RunDate, Semantics};

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Upload ubm and its bootstrap script to the bucket, create the EMR cluster (scheduler on
    /// the master node, an executor on each core node) and wait until it is ready.
    Up(UpArgs),
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
    /// AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).
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
    /// Give up waiting for the cluster after this long (it keeps starting; `status` shows it).
    #[arg(long, default_value_t = 1800)]
    pub timeout_seconds: u64,
    /// First wait between polls; it doubles up to 60 s.
    #[arg(long, default_value_t = 10.0)]
    pub poll_seconds: f64,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The flags that say which dates and how the steps run them.
#[derive(Debug, Args)]
pub struct StepFlags {
    /// The run date, YYYY-MM-DD.
    #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present = "from")]
    pub date: Option<RunDate>,
    /// First date of a backfill (inclusive): one step per date, in order.
    #[arg(long, requires = "to")]
    pub from: Option<RunDate>,
    #[arg(long, requires = "from")]
    pub to: Option<RunDate>,
    /// Override the review location recorded by `up`.
    #[arg(long, value_name = "URL")]
    pub reviews: Option<String>,
    /// Override the lake recorded by `up`.
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    #[arg(long, default_value = "correct", value_name = "correct|seed")]
    pub semantics: Semantics,
    /// Attempts per task inside a step.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
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
    /// Give up following a step after this long (the step goes on; `status` shows it).
    #[arg(long, default_value_t = 4 * 3600)]
    pub timeout_seconds: u64,
    /// First wait between polls of a step; it doubles up to 60 s.
    #[arg(long, default_value_t = 10.0)]
    pub poll_seconds: f64,
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
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    #[command(flatten)]
    pub state: StateArgs,
}

pub async fn dispatch(command: DeployCommand) -> Result<ExitCode> {
    match command {
        DeployCommand::Up(args) => up(args).await,
        DeployCommand::Steps(args) => steps(args),
        DeployCommand::Run(args) => run(args).await,
        DeployCommand::Status(args) => status(args).await,
        DeployCommand::Down(args) => down(args).await,
        DeployCommand::AirflowDag(args) => airflow_dag(args),
    }
}

fn default_region() -> String {
    std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION")).unwrap_or_else(|_| "us-east-1".to_string())
}

fn poll_policy(poll_seconds: f64, timeout_seconds: u64) -> Result<PollPolicy> {
    if !(poll_seconds > 0.0 && poll_seconds <= 600.0) {
        bail!("--poll-seconds {poll_seconds}: use a number above 0 and at most 600");
    }
    let first = Duration::from_secs_f64(poll_seconds);
    Ok(PollPolicy { first, max: first.max(Duration::from_secs(60)), timeout: Duration::from_secs(timeout_seconds) })
}

fn require_s3(flag: &str, location: &str) -> Result<()> {
    if !location.starts_with("s3://") {
        bail!("{flag} `{location}`: every EMR node must reach it, so use an s3:// location");
    }
    Ok(())
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    require_s3("--lake", &args.lake)?;
    require_s3("--reviews", &args.reviews)?;
    if args.state.state.exists() {
        let known = DeployState::load(&args.state.state)?;
        bail!(
            "{} already records cluster {}: run `ubm deploy down` first, or pass another --state file",
            args.state.state.display(),
            known.cluster_id
        );
    }
    let region = args.region.clone().unwrap_or_else(default_region);
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => {
            check_architecture(&args.instance_type)?;
            std::env::current_exe().context("finding this ubm binary")?
        }
    };
    let binary = LeanBinary::of(&binary)?;
    let env = environment_file(args.env_file.as_deref(), &region)?;
    let policy = poll_policy(args.poll_seconds, args.timeout_seconds)?;

    let version = env!("CARGO_PKG_VERSION");
    let store = ubm_cluster::stores::object_store_for(&url::Url::parse(&format!("s3://{}", args.bucket))?)?;
    let artifacts = ArtifactStore::new(store, &args.bucket, version);
    eprintln!("uploading ubm {version} to {}", artifacts.url());
    let mut shown = 0;
    let binary_url = artifacts
        .upload_file("ubm", binary.path(), |sent, total| {
            let percent = if total == 0 { 100 } else { sent * 100 / total };
            if percent >= shown + 25 || sent == total {
                eprintln!("  ubm: {} of {} MB", sent / 1_000_000, total / 1_000_000);
                shown = percent;
            }
        })
        .await?;
    let bootstrap_url = artifacts.put("bootstrap.sh", ubm_deploy::bootstrap::BOOTSTRAP_SH.as_bytes().to_vec()).await?;
    let env_url = artifacts.put("ubm.env", env).await?;

    let spec = ClusterSpec {
        name: args.name.clone(),
        release_label: args.release_label.clone(),
        instance_type: args.instance_type.clone(),
        core_nodes: args.core_nodes,
        subnet: args.subnet.clone(),
        key_name: args.key_name.clone(),
        log_uri: format!("s3://{}/ubm/logs/", args.bucket),
        bootstrap_script: bootstrap_url,
        bootstrap_args: ubm_deploy::bootstrap::bootstrap_args(&binary_url, Some(&env_url), args.scheduler_port),
        service_role: args.service_role.clone(),
        instance_profile: args.instance_profile.clone(),
        tags: vec![("ubm-version".to_string(), version.to_string())],
    };
    let emr = Emr::connect(&region).await;
    eprintln!("creating EMR cluster `{}`: 1 master + {} core {} nodes, {}", spec.name, spec.core_nodes, spec.instance_type, spec.release_label);
    let cluster_id = emr.create_cluster(&spec).await?;
    let state = DeployState {
        cluster_id: cluster_id.clone(),
        region,
        bucket: args.bucket.clone(),
        artifacts: artifacts.url(),
        version: version.to_string(),
        scheduler_port: args.scheduler_port,
        reviews: args.reviews.clone(),
        lake: args.lake.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    // Recorded before waiting, so that `down` finds the cluster even if the wait is interrupted.
    state.save(&args.state.state)?;
    eprintln!("cluster {cluster_id} created (recorded in {}); waiting until it is ready", args.state.state.display());
    let ready = emr
        .wait_ready(&cluster_id, policy, |view| {
            let reason = view.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            eprintln!("  {cluster_id}: {}{reason}", view.state);
        })
        .await?;
    println!("cluster {cluster_id} is {}: scheduler on the master node, port {}", ready.state, args.scheduler_port);
    println!("next: ubm deploy run --date YYYY-MM-DD");
    Ok(ExitCode::SUCCESS)
}

/// The binary to upload: a copy without debug information when `objcopy` is at hand (the
/// release build carries line tables for backtraces: 937 MB instead of 199 MB), else the binary
/// as it is.
struct LeanBinary {
    path: PathBuf,
    temporary: bool,
}

impl LeanBinary {
    fn of(binary: &Path) -> Result<LeanBinary> {
        let lean = std::env::temp_dir().join(format!("ubm-deploy-{}", std::process::id()));
        match Command::new("objcopy").arg("--strip-debug").arg(binary).arg(&lean).status() {
            Ok(status) if status.success() => Ok(LeanBinary { path: lean, temporary: true }),
            _ => {
                let size = std::fs::metadata(binary).with_context(|| format!("reading {}", binary.display()))?.len();
                eprintln!("objcopy (binutils) is not available: uploading {} as it is, {} MB", binary.display(), size / 1_000_000);
                Ok(LeanBinary { path: binary.to_path_buf(), temporary: false })
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LeanBinary {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// EC2 families with a `g` after the generation digit (m6g, c7gn, r6gd) are Graviton: aarch64.
fn check_architecture(instance_type: &str) -> Result<()> {
    let family = instance_type.split('.').next().unwrap_or_default();
    let after_digit = family.trim_start_matches(|c: char| c.is_ascii_alphabetic()).trim_start_matches(|c: char| c.is_ascii_digit());
    let node_arch = if after_digit.starts_with('g') { "aarch64" } else { "x86_64" };
    let ours = std::env::consts::ARCH;
    if node_arch != ours {
        bail!(
            "{instance_type} nodes are {node_arch} but this ubm is {ours}: build ubm for \
             {node_arch}-unknown-linux-gnu and pass it with --binary, or choose a {ours} instance type"
        );
    }
    Ok(())
}

/// The environment file the nodes get: the user's KEY=VALUE lines (checked) and AWS_REGION.
fn environment_file(path: Option<&Path>, region: &str) -> Result<Vec<u8>> {
    let mut lines = vec![format!("AWS_REGION={region}")];
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading --env-file {}", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let valid_key = trimmed
                .split_once('=')
                .is_some_and(|(key, _)| !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !valid_key {
                // The line itself is not shown: it may hold a secret.
                bail!(
                    "--env-file {} line {}: expected KEY=VALUE, with letters, digits and _ in the key",
                    path.display(),
                    number + 1
                );
            }
            lines.push(trimmed.to_string());
        }
    }
    Ok((lines.join("\n") + "\n").into_bytes())
}

fn step_plan(flags: &StepFlags, state: &DeployState) -> Result<(Vec<String>, StepPlan)> {
    let Some(dates) = crate::cli::named_dates(flags.date, flags.from, flags.to)? else {
        bail!("name the date(s): --date D, or --from D1 --to D2");
    };
    let reviews = flags.reviews.clone().unwrap_or_else(|| state.reviews.clone());
    let lake = flags.lake.clone().unwrap_or_else(|| state.lake.clone());
    require_s3("--reviews", &reviews)?;
    require_s3("--lake", &lake)?;
    let plan = StepPlan {
        scheduler_port: state.scheduler_port,
        reviews,
        lake,
        semantics: flags.semantics.to_string(),
        attempts: flags.attempts,
    };
    Ok((dates.iter().map(RunDate::to_string).collect(), plan))
}

fn steps(args: StepsArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state)?;
    let (dates, plan) = step_plan(&args.steps, &state)?;
    println!("{}", serde_json::to_string_pretty(&daily_steps(&dates, &plan))?);
    Ok(ExitCode::SUCCESS)
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state)?;
    let (dates, plan) = step_plan(&args.steps, &state)?;
    let policy = poll_policy(args.poll_seconds, args.timeout_seconds)?;
    let emr = Emr::connect(&state.region).await;
    let cluster = emr.describe_cluster(&state.cluster_id).await?;
    if !cluster.is_ready() {
        bail!("cluster {} is {}: steps need it WAITING or RUNNING (see `ubm deploy status`)", cluster.id, cluster.state);
    }
    let steps = daily_steps(&dates, &plan);
    let ids = emr.add_steps(&state.cluster_id, &steps).await?;
    for (id, step) in ids.iter().zip(&steps) {
        eprintln!("added step {id}: {}", step.name);
    }
    for id in &ids {
        let view = emr
            .wait_step(&state.cluster_id, id, policy, |view| eprintln!("  step {id} ({}): {}", view.name, view.state))
            .await?;
        let name = view.name.clone();
        view.into_result()?;
        println!("step {id} ({name}) completed");
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StateArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state)?;
    let emr = Emr::connect(&state.region).await;
    let view = emr.describe_cluster(&state.cluster_id).await?;
    println!("cluster {} ({}): {}", view.id, view.name, view.state);
    if let Some(reason) = &view.reason {
        println!("  {reason}");
    }
    if let Some(dns) = &view.master_dns {
        println!("  master node: {dns} (scheduler on port {})", state.scheduler_port);
    }
    println!("  region {}, ubm {} from {}", state.region, state.version, state.artifacts);
    println!("  reviews {}, lake {}", state.reviews, state.lake);
    Ok(if view.is_ended() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn down(args: DownArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state)?;
    let emr = Emr::connect(&state.region).await;
    emr.terminate(&state.cluster_id).await?;
    println!("terminating cluster {}", state.cluster_id);
    if args.purge {
        let store = ubm_cluster::stores::object_store_for(&url::Url::parse(&format!("s3://{}", state.bucket))?)?;
        let deleted = ArtifactStore::new(store, &state.bucket, &state.version).delete_all().await?;
        println!("deleted {deleted} objects under {}", state.artifacts);
    }
    DeployState::remove(&args.state.state)?;
    Ok(ExitCode::SUCCESS)
}

fn airflow_dag(args: DagArgs) -> Result<ExitCode> {
    let state = DeployState::load(&args.state.state)?;
    let plan = StepPlan {
        scheduler_port: state.scheduler_port,
        reviews: state.reviews.clone(),
        lake: state.lake.clone(),
        semantics: args.semantics.to_string(),
        attempts: args.attempts,
    };
    let dag = ubm_deploy::airflow::dag(&state.cluster_id, &plan);
    match &args.out {
        Some(path) => {
            std::fs::write(path, dag).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}: copy it into your Airflow dags/ folder", path.display());
        }
        None => print!("{dag}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_types_need_an_aarch64_binary() {
        let ours = std::env::consts::ARCH;
        let graviton = check_architecture("m6g.xlarge");
        let intel = check_architecture("m5.xlarge");
        if ours == "x86_64" {
            assert!(intel.is_ok());
            assert!(graviton.expect_err("aarch64 nodes").to_string().contains("--binary"));
        } else {
            assert!(graviton.is_ok());
        }
        assert_eq!(check_architecture("c7gn.large").is_ok(), ours == "aarch64");
    }

    #[test]
    fn a_bad_env_file_line_is_named_and_its_value_not_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ubm.env");
        std::fs::write(&path, "# secrets\nUBM_OLTP=postgres://u:pw@db/x\npostgres://u:hunter2@db/x\n").expect("write");
        let err = environment_file(Some(&path), "eu-west-1").expect_err("line 3").to_string();
        assert!(err.contains("line 3") && err.contains("KEY=VALUE"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        std::fs::write(&path, "UBM_OLTP=postgres://u:pw@db/x\n").expect("write");
        let text = String::from_utf8(environment_file(Some(&path), "eu-west-1").expect("ok")).expect("utf8");
        assert_eq!(text, "AWS_REGION=eu-west-1\nUBM_OLTP=postgres://u:pw@db/x\n");
    }
}
