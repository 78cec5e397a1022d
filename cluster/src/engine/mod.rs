//! The one place that decides where a plan runs.
//!
//! # Layout
//! - this file: [`Engine`] and [`EngineKind`], the session every plan runs in.
//! - [`address`]: a scheduler's address, parsed once.
//! - [`follow`]: following a Ballista job (its id, progress, end, cancellation).
//! - [`scheduler_api`]: the scheduler's REST API (jobs, progress, cancel).

pub mod address;
pub mod follow;
pub mod scheduler_api;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::common::DataFusionError;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::provider_as_source;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use ubm_jobs::splits::{ChunkSummary, compose};
use url::Url;

use crate::engine::follow::{JobObserver, JobTracker};
use crate::engine::scheduler_api::SchedulerApi;
use crate::exec::codec::{UbmLogicalCodec, UbmPhysicalCodec};
use crate::exec::copy::{CopyTable, FileCopy};
use crate::exec::parts::{PartReport, PartsSpec, WriteParts};
use crate::exec::postgres::{PgExtract, PgSliceTable};
use crate::exec::review::ReviewPass;
use crate::exec::review::file::{ReviewFile, ReviewLocation};
use crate::exec::review::scan::summaries_of;
use crate::exec::review::table::ReviewCsvTable;
use crate::{ClusterError, SchedulerAddress};

/// Where plans run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// In this process, on DataFusion's multi-threaded executor. No servers.
    #[default]
    Local,
    /// A Ballista scheduler and executor started inside this process: the same plans, shipped
    /// through Ballista's serialization and scheduling as on a real cluster.
    Standalone,
    /// A Ballista cluster of `ubm cluster` processes, at its scheduler's `df://host:port`.
    Remote(SchedulerAddress),
}

impl FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(EngineKind::Local),
            "standalone" => Ok(EngineKind::Standalone),
            url if url.starts_with("df://") => url.parse().map(EngineKind::Remote).map_err(|e: ClusterError| e.to_string()),
            other => Err(format!("unknown engine `{other}`: use `local`, `standalone` or a scheduler's df://host:port")),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineKind::Local => f.write_str("local"),
            EngineKind::Standalone => f.write_str("standalone"),
            EngineKind::Remote(address) => write!(f, "{address}"),
        }
    }
}

/// A session ready to run ubm's plans: ubm's functions registered, ubm's codecs set (so a
/// Ballista cluster can ship its plan nodes) and object stores built for any location on first
/// use ([`crate::store::registry::UbmObjectStoreRegistry`]).
#[derive(Clone)]
pub struct Engine {
    kind: EngineKind,
    ctx: SessionContext,
    /// Follows the Ballista jobs this engine submits (all kinds but `Local`).
    jobs: Option<JobTracker>,
    /// How many partitions its plans are split into, and why that many.
    partitions: Partitions,
}

/// How many partitions an engine's plans are split into (DataFusion's `target_partitions`):
/// the extract's slices, the review scan's ranges and the metric's scans follow it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partitions {
    pub count: usize,
    /// Where the count came from: `this machine` (its cores, in-process), `cluster` (the task
    /// slots of the executors registered when the engine started), or `--partitions`.
    pub from: String,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("kind", &self.kind).finish()
    }
}

impl Engine {
    /// Starts an engine of `kind`. `Standalone` starts Ballista's scheduler and executor
    /// in-process on loopback ports chosen by the OS; `Remote` first checks that the scheduler
    /// answers.
    pub async fn start(kind: EngineKind) -> Result<Self, ClusterError> {
        Self::start_sized(kind, None).await
    }

    /// [`Engine::start`], with plans split into `partitions` when given; otherwise into as many
    /// partitions as the work has places to run: this machine's cores in-process, the task slots
    /// of the cluster's executors on a cluster (asked of the scheduler now), never the
    /// submitting machine's cores for a cluster's work.
    pub async fn start_sized(kind: EngineKind, partitions: Option<usize>) -> Result<Self, ClusterError> {
        let mut config = SessionConfig::new()
            .with_information_schema(false)
            .with_ballista_logical_extension_codec(Arc::new(UbmLogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(UbmPhysicalCodec::default()));
        if kind != EngineKind::Local {
            config = crate::node::for_ballista(config);
        }
        if let EngineKind::Remote(address) = &kind
            && let Some(tls) = address.tls()
        {
            config = config.with_ballista_use_tls(true).with_ballista_override_create_grpc_client_endpoint(tls.endpoint_override());
        }
        let api = match &kind {
            EngineKind::Remote(address) => {
                let api = SchedulerApi::new(address.clone())?;
                // Ballista itself would only notice a wrong address, a dead scheduler or a TLS
                // refusal when the first plan is submitted; this says which, before any work.
                api.check().await?;
                Some(api)
            }
            _ => None,
        };
        let partitions = match partitions {
            Some(count) => Partitions { count: count.max(1), from: "--partitions".to_string() },
            None => size_for(&kind, api.as_ref(), config.target_partitions()).await?,
        };
        config = config.with_target_partitions(partitions.count);
        let runtime = crate::node::runtime().map_err(ClusterError::engine("creating the runtime"))?;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_query_planner(Arc::new(crate::exec::parts::UbmQueryPlanner))
            .build();
        ubm_jobs::udf::register_all(&mut state).map_err(ClusterError::engine("registering functions"))?;
        let (ctx, jobs) = match &kind {
            EngineKind::Local => (SessionContext::new_with_state(state), None),
            EngineKind::Standalone => {
                let ctx =
                    SessionContext::standalone_with_state(state).await.map_err(ClusterError::engine("starting the in-process Ballista cluster"))?;
                (ctx, Some(JobTracker::new(None)))
            }
            EngineKind::Remote(address) => {
                let ctx = SessionContext::remote_with_state(&address.to_string(), state)
                    .await
                    .map_err(ClusterError::engine("connecting to the Ballista scheduler"))?;
                (ctx, Some(JobTracker::new(api)))
            }
        };
        Ok(Self { kind, ctx, jobs, partitions })
    }

    /// How many partitions this engine's plans are split into, and why.
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// How long a job on a cluster waits while the scheduler has no executor (none started
    /// yet, or all stopped) before it is cancelled and fails saying so, instead of waiting in
    /// the scheduler's queue for ever (default [`follow::DEFAULT_EXECUTOR_WAIT`]).
    pub fn with_executor_wait(mut self, wait: std::time::Duration) -> Self {
        self.jobs = self.jobs.map(|jobs| jobs.with_executor_wait(wait));
        self
    }

    /// Reports every Ballista job this engine submits to `observer`: its id once the
    /// scheduler accepts it, its progress (on a cluster) and its end. No effect in-process.
    pub fn with_job_observer(mut self, observer: Arc<dyn JobObserver>) -> Self {
        self.jobs = self.jobs.map(|jobs| jobs.with_observer(observer));
        self
    }

    /// Waits until every finished job's end has been reported to the observer.
    pub async fn settle_jobs(&self) {
        if let Some(jobs) = &self.jobs {
            jobs.settle().await;
        }
    }

    /// Cancels every job of this engine that is still running (on Ctrl-C, say). Returns the
    /// ids of the jobs the scheduler cancelled.
    pub async fn cancel_running_jobs(&self) -> Vec<String> {
        match &self.jobs {
            Some(jobs) => jobs.cancel_running().await,
            None => Vec::new(),
        }
    }

    pub fn kind(&self) -> &EngineKind {
        &self.kind
    }

    /// The underlying session, for callers that need DataFusion directly (tests, SQL).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// A scan of the review file at `url`, split into ranges that start at records; fails early
    /// on a missing file or a bad header. Finding the splits is a job of its own (the boundaries
    /// pass, see [`crate::exec::review`]): it runs where this engine runs plans and returns one
    /// small row per chunk of the file, never the file's bytes. On Ballista that job is named
    /// `{job_name}: record boundaries`.
    pub async fn review_records(&self, url: &Url, job_name: &str) -> Result<LogicalPlan, ClusterError> {
        let on_cluster = self.kind != EngineKind::Local;
        let started = std::time::Instant::now();
        let file = Arc::new(ReviewFile::open(ReviewLocation::new(url.clone()), self.ctx.runtime_env().as_ref()).await?);
        let summaries = if file.records_bytes() == 0 { Vec::new() } else { self.record_boundaries(&file, job_name, on_cluster).await? };
        let splits = compose(file.data_start, file.version.size, file.first_line, &summaries)
            .map_err(|e| ClusterError::engine("composing the record boundaries")(DataFusionError::External(Box::new(e))))?;
        let ms = started.elapsed().as_millis() as u64;
        tracing::debug!(splits = splits.len(), chunks = summaries.len(), ms, "{url}: record boundaries found");
        scan_of(ReviewCsvTable::new(file, ReviewPass::Records(Arc::new(splits)), on_cluster))
    }

    /// Runs the boundaries pass. It is cheap and changes nothing, so a failure worth another
    /// attempt (an executor lost before its rows were fetched, say) runs it again at once, up to
    /// [`BOUNDARY_ATTEMPTS`] times, rather than failing the whole task.
    async fn record_boundaries(&self, file: &Arc<ReviewFile>, job_name: &str, on_cluster: bool) -> Result<Vec<ChunkSummary>, ClusterError> {
        let mut attempt = 1;
        loop {
            let boundaries = ReviewCsvTable::new(file.clone(), ReviewPass::Boundaries, on_cluster);
            let doing = format!("finding the record boundaries of {}", file.location.as_str());
            let result = self.collect(scan_of(boundaries)?, &format!("{job_name}: record boundaries"), doing).await;
            match result {
                Ok(batches) => return summaries_of(&batches).map_err(ClusterError::engine("reading the record boundaries")),
                Err(e) if attempt < BOUNDARY_ATTEMPTS && e.is_retryable() => {
                    tracing::warn!(attempt, "{}; finding the record boundaries again", crate::retry::describe(&e));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A scan of the OLTP table's as-of snapshot in slices of one exported Postgres snapshot
    /// (see [`crate::exec::postgres`]); more slices on a cluster for a large table.
    pub fn postgres_slices(&self, extract: PgExtract) -> Result<LogicalPlan, ClusterError> {
        let table = PgSliceTable::new(extract, self.kind != EngineKind::Local);
        LogicalPlanBuilder::scan("user_purchase", provider_as_source(Arc::new(table)), None)
            .and_then(|b| b.build())
            .map_err(ClusterError::engine("planning the purchases extract"))
    }

    /// Copies the file at `from` to `to` in a job of one task, where this engine runs plans (on
    /// a cluster, an executor: the bytes never pass through this process); returns the bytes
    /// copied.
    pub async fn copy_file(&self, from: &Url, to: &Url, job_name: &str) -> Result<u64, ClusterError> {
        let table = CopyTable::new(FileCopy { from: from.to_string(), to: to.to_string() });
        let plan = LogicalPlanBuilder::scan("copy", provider_as_source(Arc::new(table)), None)
            .and_then(|b| b.build())
            .map_err(ClusterError::engine("planning the copy"))?;
        let batches = self.collect(plan, job_name, format!("copying {from} to {to}")).await?;
        let mut bytes = 0;
        for batch in &batches {
            let copied = batch
                .column(0)
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| ClusterError::engine("reading the copy's row")(DataFusionError::Internal("not UInt64".into())))?;
            bytes += copied.values().iter().sum::<u64>();
        }
        Ok(bytes)
    }

    /// A scan of the Parquet files under `url` (a partition directory) that ubm wrote with
    /// `schema`. Giving the schema spares this process reading the files' footers (DataFusion
    /// would fetch the last 512 KiB of each to infer it); the files are read where the plan runs.
    pub async fn parquet(&self, url: &Url, schema: &datafusion::arrow::datatypes::Schema) -> Result<LogicalPlan, ClusterError> {
        let df = self
            .ctx
            .read_parquet(url.as_str(), ParquetReadOptions::default().file_extension(".parquet").schema(schema))
            .await
            .map_err(ClusterError::engine(format!("opening the Parquet files under {url}")))?;
        Ok(df.into_unoptimized_plan())
    }

    /// A scan of exactly the Parquet files `files` (those a commit listed), with `schema`; no
    /// file at all is an empty table. `what` names them in an error.
    pub async fn parquet_files(&self, files: &[Url], schema: &datafusion::arrow::datatypes::Schema, what: &str) -> Result<LogicalPlan, ClusterError> {
        if files.is_empty() {
            let schema =
                datafusion::common::DFSchema::try_from(schema.clone()).map_err(ClusterError::engine(format!("planning the empty {what}")))?;
            return Ok(LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation { produce_one_row: false, schema: Arc::new(schema) }));
        }
        let paths: Vec<String> = files.iter().map(Url::to_string).collect();
        let df = self
            .ctx
            .read_parquet(paths, ParquetReadOptions::default().file_extension(".parquet").schema(schema))
            .await
            .map_err(ClusterError::engine(format!("opening the {} Parquet files of {what}", files.len())))?;
        Ok(df.into_unoptimized_plan())
    }

    /// Runs `plan` with every task writing its own rows as [`PartsSpec`] says (see
    /// [`crate::exec::parts`]): what comes back is one small report a task, never the rows.
    pub async fn write_parts(&self, plan: LogicalPlan, spec: PartsSpec, job_name: &str) -> Result<Vec<PartReport>, ClusterError> {
        let doing = format!("writing the part files of {job_name} into {}", spec.dir);
        let plan = WriteParts::plan(plan, spec).map_err(ClusterError::engine("planning the part writers"))?;
        let batches = self.collect(plan, job_name, doing).await?;
        PartReport::from_batches(&batches).map_err(ClusterError::engine("reading the part writers' reports"))
    }

    /// Runs `plan` to the end and keeps its rows (plans of a few rows only); `doing` names the
    /// work in an error.
    async fn collect(&self, plan: LogicalPlan, job_name: &str, doing: String) -> Result<Vec<RecordBatch>, ClusterError> {
        self.execute(plan, job_name).await?.try_collect().await.map_err(ClusterError::engine(doing))
    }

    /// Runs `plan` in this process, whatever the engine's kind, and streams its result back: for
    /// reading back a small result that this process can open itself (the staged metric, one
    /// row per customer, which a load into the warehouse streams through this process too). On a
    /// cluster such a plan would be a job of its own, whose scheduling rounds cost more than
    /// reading a few thousand rows (`docs/performance.md`, "Scale-out"). Only the planner differs
    /// from the cluster's session: Ballista sends work to its scheduler through its planner alone.
    pub async fn execute_here(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream, ClusterError> {
        let state = crate::exec::parts::with_ubm_planner(self.ctx.state());
        DataFrame::new(state, plan).execute_stream().await.map_err(ClusterError::engine("reading in this process"))
    }

    /// Runs `plan` and streams its result back to the caller. On Ballista, `job_name` names the
    /// job (the scheduler's job list and `ubm status` show it) and the job is followed until
    /// the stream ends.
    pub async fn execute(&self, plan: LogicalPlan, job_name: &str) -> Result<SendableRecordBatchStream, ClusterError> {
        let Some(jobs) = &self.jobs else {
            let df = self.ctx.execute_logical_plan(plan).await.map_err(ClusterError::engine("planning"))?;
            return df.execute_stream().await.map_err(ClusterError::engine("starting execution"));
        };
        let state = self.ctx.state();
        // Pull mode: Ballista's client knows the job id as soon as the scheduler accepts the job.
        // In push mode it learns it only with the first change of state, which never comes
        // while the job waits for a free executor, and a waiting job could not be cancelled.
        let config = state.config().clone().with_ballista_job_name(job_name).set_str(ballista_core::config::BALLISTA_CLIENT_PULL, "true");
        let state = SessionStateBuilder::new_from_existing(state).with_config(config).build();
        let task_context = Arc::new(TaskContext::from(&state));
        let physical = DataFrame::new(state, plan).create_physical_plan().await.map_err(ClusterError::engine("planning"))?;
        let stream = execute_stream(physical.clone(), task_context).map_err(ClusterError::engine("starting execution"))?;
        Ok(jobs.follow(physical, job_name, stream))
    }
}

/// The partitions for an engine of `kind` when none are asked for: the cluster's task slots on
/// a cluster (this machine's `cores` while no executor has registered yet), `cores` otherwise.
async fn size_for(kind: &EngineKind, api: Option<&SchedulerApi>, cores: usize) -> Result<Partitions, ClusterError> {
    let here = |why: &str| Partitions { count: cores.max(1), from: format!("this machine{why}") };
    let (EngineKind::Remote(_), Some(api)) = (kind, api) else { return Ok(here("")) };
    let slots: usize = api.executors().await?.iter().map(|e| e.specification.vcores as usize).sum();
    Ok(match slots {
        0 => here(" (no executor had registered with the cluster)"),
        slots => Partitions { count: slots, from: "cluster".to_string() },
    })
}

/// How many times the boundaries pass runs before its failure fails the task.
const BOUNDARY_ATTEMPTS: u32 = 3;

/// A logical scan of one pass over a review file.
fn scan_of(table: ReviewCsvTable) -> Result<LogicalPlan, ClusterError> {
    LogicalPlanBuilder::scan("movie_review", provider_as_source(Arc::new(table)), None)
        .and_then(|b| b.build())
        .map_err(ClusterError::engine("planning the review scan"))
}
