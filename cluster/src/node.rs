//! A Ballista scheduler or executor with everything ubm's plans need: ubm's functions, the
//! codecs that ship its review scan, and object stores for `s3://` as well as local files.
//! `ubm cluster scheduler` and `ubm cluster executor` run these.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;

use crate::{ClusterError, SchedulerAddress};
use crate::codec::{UbmLogicalCodec, UbmPhysicalCodec};
use crate::registry::UbmObjectStoreRegistry;

/// A runtime whose object stores resolve `s3://` on first use.
pub fn runtime() -> datafusion::common::Result<Arc<RuntimeEnv>> {
    RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(UbmObjectStoreRegistry::default())).build_arc()
}

/// Settings every session that plans for Ballista needs, on the client and on the scheduler.
pub fn for_ballista(mut config: SessionConfig) -> SessionConfig {
    // Ballista 55's adaptive planner may swap a hash join's inputs after DataFusion has attached
    // a join dynamic filter, which DataFusion refuses ("Cannot swap HashJoinExec inputs after
    // dynamic filters have been constructed"); the task then fails and the job never finishes.
    // Without the filter the join is the same, only unpruned.
    config.options_mut().optimizer.enable_join_dynamic_filter_pushdown = false;
    // One task per partition, as Spark runs one task per split. Ballista otherwise packs as many
    // partitions into one task as the executor has free cores: a review file's ranges would then
    // be one task on one executor, and a lost executor would cost every range it held.
    // (The setting lives in Ballista's options extension, which a plain config lacks yet.)
    let ballista = ballista_core::extension::SessionConfigExt::ballista_config(&config);
    config.with_option_extension(ballista).set_usize(ballista_core::config::BALLISTA_SCHEDULER_MAX_PARTITIONS_PER_TASK, 1)
}

/// Ballista's default session for `config`, plus ubm's functions and object stores.
pub fn session_state(config: SessionConfig) -> datafusion::common::Result<SessionState> {
    let base = ballista_core::utils::default_session_builder(for_ballista(config))?;
    let mut state = datafusion::execution::SessionStateBuilder::new_from_existing(base).with_runtime_env(runtime()?).build();
    ubm_jobs::udf::register_all(&mut state)?;
    Ok(state)
}

/// How a scheduler is run.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address of the gRPC service that clients and executors connect to (default
    /// 127.0.0.1:50050; listening on other interfaces is an explicit choice).
    pub bind: SocketAddr,
    /// Host name executors and clients use to reach this scheduler.
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is considered dead and its tasks
    /// are rescheduled (Ballista's default: 180).
    pub executor_timeout_seconds: u64,
    /// How often the scheduler looks for dead executors, in seconds (Ballista's default: 15).
    /// Keep it below `executor_timeout_seconds`, or a dead executor is noticed late.
    pub expire_dead_executor_interval_seconds: u64,
}

/// Runs a scheduler until the process is stopped.
pub async fn run_scheduler(options: SchedulerOptions) -> Result<(), ClusterError> {
    let config = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options.external_host,
        executor_timeout_seconds: options.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: options.expire_dead_executor_interval_seconds,
        override_session_builder: Some(Arc::new(session_state)),
        override_logical_codec: Some(Arc::new(UbmLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(UbmPhysicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(ClusterError::node("setting up the scheduler"))?;
    start_server(cluster, options.bind, Arc::new(config)).await.map_err(ClusterError::node("running the scheduler"))
}

/// How an executor is run.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler to register with.
    pub scheduler: SchedulerAddress,
    /// Address of this executor's Arrow Flight service (shuffle data); its gRPC service listens
    /// on the next port.
    pub bind: SocketAddr,
    /// Host name the scheduler and other executors use to reach this executor.
    pub external_host: Option<String>,
    /// Where shuffle files are written (default: a temporary directory).
    pub work_dir: Option<String>,
    /// Tasks run at once (default: the number of cores).
    pub slots: usize,
    /// Seconds between heartbeats to the scheduler (Ballista's default: 60).
    pub heartbeat_seconds: u64,
}

/// Runs an executor until the process is stopped.
pub async fn run_executor(options: ExecutorOptions) -> Result<(), ClusterError> {
    let state = session_state(SessionConfig::new()).map_err(ClusterError::engine("building the executor's session"))?;
    let runtime = runtime().map_err(ClusterError::engine("building the executor's runtime"))?;
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        port: options.bind.port(),
        grpc_port: options.bind.port().saturating_add(1),
        external_host: options.external_host,
        scheduler_host: options.scheduler.host().to_string(),
        scheduler_port: options.scheduler.port(),
        scheduler_connect_timeout_seconds: 30,
        vcores: options.slots,
        work_dir: options.work_dir,
        executor_heartbeat_interval_seconds: options.heartbeat_seconds,
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&state))),
        override_runtime_producer: Some(Arc::new(move |_| Ok(runtime.clone()))),
        override_logical_codec: Some(Arc::new(UbmLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(UbmPhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await.map_err(ClusterError::node("running the executor"))
}
