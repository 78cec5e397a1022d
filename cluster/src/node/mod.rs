//! A Ballista scheduler or executor with everything ubm's plans need: ubm's functions, the
//! codecs that ship its review scan, and object stores for `s3://` as well as local files.
//! `ubm cluster scheduler` and `ubm cluster executor` run these.

pub mod busy;
pub mod local;

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::extension::{BallistaConfigGrpcEndpoint, SessionConfigExt};
use ballista_core::flight_proxy_service::BallistaFlightProxyService;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::utils::{GrpcServerConfig, create_grpc_server, default_config_producer};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::shutdown::Shutdown;
use ballista_scheduler::api::get_routes;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::exec::codec::{UbmLogicalCodec, UbmPhysicalCodec};
use crate::store::registry::UbmObjectStoreRegistry;
use crate::tls::{ClusterTls, TlsListener};
use crate::{ClusterError, SchedulerAddress};

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
    // A Ballista task runs its partitions in isolation: a file scan must read exactly the file
    // groups it was planned with, never take over a sibling partition's (DataFusion's advice for
    // Ballista).
    config.options_mut().execution.enable_file_stream_work_stealing = false;
    // Ballista's own default, which its scheduler forces on clients' sessions but an in-process
    // (standalone) scheduler does not: a round-robin repartition stays inside a Ballista stage,
    // whose every task then drains all of its outputs, so a stage could deliver a task's
    // results twice (the lake's commit refuses a file reported twice, `PipelineError::Duplicate`).
    config.options_mut().optimizer.enable_round_robin_repartition = false;
    // The day's aggregations have few groups (a customer each): after each task's partial
    // aggregate there are a few thousand rows. Hash-repartitioning those across the cluster costs
    // a stage of its own and N x N shuffle fetches; one task finishing them costs one fetch per
    // partial (`docs/performance.md`, "Scale-out"). Bound: that task reads N x customers rows.
    config.options_mut().optimizer.repartition_aggregations = false;
    // One task per partition, as Spark runs one task per split. Ballista otherwise packs as many
    // partitions into one task as the executor has free cores: a review file's ranges would then
    // be one task on one executor, and a lost executor would cost every range it held.
    // (The setting lives in Ballista's options extension, which a plain config lacks yet.)
    let ballista = ballista_core::extension::SessionConfigExt::ballista_config(&config);
    config.with_option_extension(ballista).set_usize(ballista_core::config::BALLISTA_SCHEDULER_MAX_PARTITIONS_PER_TASK, 1)
}

/// Ballista's default session for `config`, plus ubm's functions, object stores and planner
/// ([`crate::exec::parts::UbmQueryPlanner`]).
pub fn session_state(config: SessionConfig) -> datafusion::common::Result<SessionState> {
    let base = ballista_core::utils::default_session_builder(for_ballista(config))?;
    let mut state = datafusion::execution::SessionStateBuilder::new_from_existing(base)
        .with_runtime_env(runtime()?)
        .with_query_planner(Arc::new(crate::exec::parts::UbmQueryPlanner))
        .build();
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
    /// Mutual TLS on the scheduler's port, to the executors and from every client.
    pub tls: Option<Arc<ClusterTls>>,
    /// Executors poll for their tasks instead of being sent them (always so with TLS).
    pub pull: bool,
    /// Serve jobs' results through the scheduler's port (Ballista's embedded Flight proxy);
    /// without it clients fetch them from the executors' Flight ports, which they must reach.
    pub flight_proxy: bool,
    /// More HTTP routes served on the scheduler's port (cluster deploy mode's `/ubm/runs`).
    pub extra_routes: Option<axum::Router>,
    /// A file to touch while jobs run (EMR's busy marker for auto-termination).
    pub busy_marker: Option<busy::BusyMarker>,
}

/// Runs a scheduler until the process is stopped.
pub async fn run_scheduler(options: SchedulerOptions) -> Result<(), ClusterError> {
    let mut config = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options.external_host,
        executor_timeout_seconds: options.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: options.expire_dead_executor_interval_seconds,
        override_session_builder: Some(Arc::new(session_state)),
        override_logical_codec: Some(Arc::new(UbmLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(UbmPhysicalCodec::default())),
        // Clients fetch every job's results through the scheduler's own port (Ballista's
        // embedded Flight proxy), never from the executors' ports: a laptop that reaches only
        // the scheduler (an SSH tunnel, a cluster in a private network) gets its results.
        enable_embedded_flight_proxy: options.flight_proxy,
        ..SchedulerConfig::default()
    };
    if let Some(tls) = &options.tls {
        config.use_tls = true;
        config.override_create_grpc_client_endpoint = Some(tls.endpoint_override());
    }
    // With TLS executors pull their tasks: the scheduler then never dials them, and an executor
    // has no task port (Ballista serves that one in plaintext only).
    if options.pull || options.tls.is_some() {
        config.scheduling_policy = TaskSchedulingPolicy::PullStaged;
    }
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(ClusterError::node("setting up the scheduler"))?;
    serve_scheduler(cluster, options.bind, Arc::new(config), options.tls.as_deref(), options.extra_routes, options.busy_marker).await
}

/// The scheduler's gRPC service, its REST API, the Flight proxy and `extra` routes on one
/// port, as Ballista's own server serves the first three, in plaintext or over [`TlsListener`]
/// (Ballista's server takes a plain TCP listener only and no routes of ours).
async fn serve_scheduler(
    cluster: BallistaCluster,
    bind: SocketAddr,
    config: Arc<SchedulerConfig>,
    tls: Option<&ClusterTls>,
    extra: Option<axum::Router>,
    busy_marker: Option<busy::BusyMarker>,
) -> Result<(), ClusterError> {
    config.validate().map_err(ClusterError::node("checking the scheduler's settings"))?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config.clone())
        .await
        .map_err(ClusterError::node("setting up the scheduler"))?;
    if let Some(marker) = busy_marker {
        let jobs = scheduler.clone();
        tokio::spawn(marker.keep_touching(move || jobs.pending_job_number() + jobs.running_job_number()));
    }
    let grpc = SchedulerGrpcServer::new(scheduler.clone())
        .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
        .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(grpc);
    if config.enable_embedded_flight_proxy {
        routes.add_service(flight_proxy(&config));
    }
    let mut router = get_routes(Arc::new(scheduler)).merge(routes.routes().into_axum_router());
    if let Some(extra) = extra {
        router = router.merge(extra);
    }
    let listening = |e| ClusterError::Node { doing: "listening for the scheduler", source: BallistaError::IoError(e) };
    let serving = |e| ClusterError::Node { doing: "running the scheduler", source: BallistaError::IoError(e) };
    // Ballista's handlers read the peer's address from axum's `ConnectInfo<SocketAddr>`.
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            let listener = tokio::net::TcpListener::bind(bind).await.map_err(listening)?;
            axum::serve(listener, service).await.map_err(serving)
        }
        Some(tls) => {
            let listener = TlsListener::bind(bind, tls.server_config()?, "scheduler").await.map_err(listening)?;
            // axum derives `ConnectInfo` for a listener of its own kind or a tapped one; the
            // tap does nothing else.
            let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
            axum::serve(listener, service).await.map_err(serving)
        }
    }
}

/// Ballista's Flight proxy, as its own server adds it beside the scheduler's service: it
/// reaches the executors over the cluster's TLS.
fn flight_proxy(config: &SchedulerConfig) -> FlightServiceServer<BallistaFlightProxyService> {
    let endpoint = config.override_create_grpc_client_endpoint.clone().map(|f| Arc::new(BallistaConfigGrpcEndpoint::new(f)));
    let (max_decoding, max_encoding) = (config.grpc_server_max_decoding_message_size as usize, config.grpc_server_max_encoding_message_size as usize);
    FlightServiceServer::new(BallistaFlightProxyService::new(max_decoding, max_encoding, config.use_tls, endpoint))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(max_encoding)
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
    /// Mutual TLS on the Flight port, to the scheduler and to other executors.
    pub tls: Option<Arc<ClusterTls>>,
    /// Poll the scheduler for tasks instead of being sent them (always so with TLS); the
    /// scheduler must be started the same way.
    pub pull: bool,
}

/// Runs an executor until the process is stopped. Its work directory and ports are checked
/// first: an executor that could not write a shuffle file or serve one must not register and
/// then fail every task it is given.
pub async fn run_executor(options: ExecutorOptions) -> Result<(), ClusterError> {
    if let Some(dir) = &options.work_dir {
        check_work_dir(std::path::Path::new(dir))?;
    }
    check_port_free(options.bind, "the executor's Flight port")?;
    if !(options.pull || options.tls.is_some()) {
        check_port_free(SocketAddr::new(options.bind.ip(), options.bind.port().saturating_add(1)), "the executor's task port")?;
    }
    let state = session_state(SessionConfig::new()).map_err(ClusterError::engine("building the executor's session"))?;
    let runtime = runtime().map_err(ClusterError::engine("building the executor's runtime"))?;
    let mut config = ExecutorProcessConfig {
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
    // The scheduler's rule, see run_scheduler.
    if options.pull || options.tls.is_some() {
        config.task_scheduling_policy = TaskSchedulingPolicy::PullStaged;
    }
    if let Some(tls) = &options.tls {
        refused_for_its_certificate(&options.scheduler, tls).await?;
        with_tls(&mut config, tls)?;
    }
    start_executor_process(Arc::new(config)).await.map_err(ClusterError::node("running the executor"))
}

/// Fails when the scheduler and this executor refuse each other's certificates (a name the
/// scheduler's certificate lacks, another cluster's CA, an expired key pair): Ballista would
/// retry its connection for 30 s and say only "transport error", and no retry can fix it. A
/// scheduler that is not up yet is no error here (Ballista waits for it).
async fn refused_for_its_certificate(scheduler: &SchedulerAddress, tls: &Arc<ClusterTls>) -> Result<(), ClusterError> {
    let api = crate::engine::scheduler_api::SchedulerApi::new(scheduler.clone().with_tls(Some(Arc::clone(tls))))?;
    match api.check().await {
        Err(ClusterError::TlsRefused { reason }) => Err(ClusterError::TlsRefused {
            reason: format!("this executor cannot join: {reason} (on EMR: `ubm deploy up --tls-hosts` with the names of the VPC's DNS)"),
        }),
        _ => Ok(()),
    }
}

/// Refuses a port another process listens on, naming it (Ballista would log the failure and
/// go on, or exit 0).
pub fn check_port_free(address: SocketAddr, what: &str) -> Result<(), ClusterError> {
    let bad = |reason: String| ClusterError::BadLocation { location: address.to_string(), reason };
    if address.port() == 0 {
        return Err(bad(format!("{what} needs a fixed port: the scheduler and clients must know it; pick one with --bind")));
    }
    std::net::TcpListener::bind(address).map(drop).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            bad(format!("{what} cannot be opened ({e}): another process listens there; stop it or pick another port with --bind"))
        }
        _ => bad(format!("{what} cannot be opened ({e}); check the address given to --bind")),
    })
}

/// Creates the work directory and writes a file into it, so that a directory this user cannot
/// write (or whose parent is a file) fails the start, naming the path.
fn check_work_dir(dir: &std::path::Path) -> Result<(), ClusterError> {
    let bad = |doing: &str, e: std::io::Error| ClusterError::BadLocation {
        location: dir.display().to_string(),
        reason: format!(
            "the executor's --work-dir cannot be used: {doing} failed ({e}); shuffle files are written there, so give a directory this user can create and write"
        ),
    };
    std::fs::create_dir_all(dir).map_err(|e| bad("creating it", e))?;
    let probe = dir.join(format!(".ubm-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"ubm").map_err(|e| bad("writing a file into it", e))?;
    std::fs::remove_file(&probe).map_err(|e| bad("removing a file from it", e))
}

/// An executor of a TLS cluster (which pulls its tasks, so it has no task port, see
/// [`run_scheduler`]): reaches the scheduler and the other executors with TLS (the endpoint
/// override also goes into every task's session, which fetches shuffle data), and serves its
/// Flight port over [`TlsListener`].
fn with_tls(config: &mut ExecutorProcessConfig, tls: &ClusterTls) -> Result<(), ClusterError> {
    let endpoint = tls.endpoint_override();
    config.override_create_grpc_client_endpoint = Some(endpoint.clone());
    config.override_config_producer = Some(Arc::new(move || {
        default_config_producer().with_ballista_use_tls(true).with_ballista_override_create_grpc_client_endpoint(endpoint.clone())
    }));
    let server_config = tls.server_config()?;
    let (max_encoding, max_decoding) = (config.grpc_max_encoding_message_size as usize, config.grpc_max_decoding_message_size as usize);
    config.override_arrow_flight_service = Some(Arc::new(move |work_dir, address, shutdown, grpc| {
        tokio::spawn(serve_flight_over_tls(work_dir, address, shutdown, grpc, server_config.clone(), (max_encoding, max_decoding)))
    }));
    Ok(())
}

/// Ballista's Flight service (shuffle data and results), over [`TlsListener`].
async fn serve_flight_over_tls(
    work_dir: String,
    address: SocketAddr,
    mut shutdown: Shutdown,
    grpc: GrpcServerConfig,
    server_config: Arc<rustls::ServerConfig>,
    (max_encoding, max_decoding): (usize, usize),
) -> Result<(), BallistaError> {
    let listener = TlsListener::bind(address, server_config, "executor flight").await?;
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir))
        .max_encoding_message_size(max_encoding)
        .max_decoding_message_size(max_decoding);
    create_grpc_server(&grpc)
        .add_service(flight)
        .serve_with_incoming_shutdown(listener.into_stream(), shutdown.recv())
        .await
        .map_err(BallistaError::TonicError)
}
