//! Tasks that write their own rows: a plan's output, written as part files by the tasks that
//! compute it, wherever they run, with one small report row per task.
//!
//! [`WriteParts`] is a logical node over any plan; every engine plans it into
//! [`WritePartsExec`] ([`UbmQueryPlanner`]), and the codecs ship both. Each partition of the
//! input becomes one task that streams its rows into `part-<uuid>.parquet` (and, for classified
//! reviews, its unreadable records into `rejects-<uuid>.jsonl`) in the directory it is given,
//! then returns one [`PartReport`] row: the files and their counts. Names are fresh for every
//! attempt, so a task that Ballista runs again never overwrites what another attempt wrote; the
//! driver keeps the files the reports name and nothing else (`ubm_pipeline`'s commit).

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::compute::{cast, filter_record_batch, is_not_null, is_null, max, min};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use ubm_jobs::schema::{CLASSIFIED, col, parquet_properties};
use url::Url;

use crate::{ClusterError, TaskFailure};

/// What the tasks write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub enum PartsKind {
    /// Every row as it is, into Parquet.
    Rows,
    /// The classify plan's rows ([`ubm_jobs::classify_reviews`]): readable ones into the
    /// classified table's Parquet (`cid`, `positive_review`), unreadable ones into JSON lines
    /// (`line`, `reason`, `record` or `record_base64`), every one counted.
    Reviews,
}

/// Where and what the tasks of a [`WriteParts`] write; it travels to every task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsSpec {
    /// The directory the part files go into (a `file://` or `s3://` URL ending in `/`).
    pub dir: String,
    pub kind: PartsKind,
}

impl PartsSpec {
    pub fn new(dir: &Url, kind: PartsKind) -> Self {
        Self { dir: dir.to_string(), kind }
    }
}

/// What one task wrote and counted: one row of a [`WriteParts`] plan's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartReport {
    /// The Parquet file written, by name in the directory; `None` when the task had no rows.
    pub file: Option<String>,
    /// Rows in that file.
    pub rows: u64,
    /// The rejects file written, by name; `None` when nothing was rejected.
    pub rejects_file: Option<String>,
    pub rejected: u64,
    /// Rows the task read from its input (for reviews: records, readable or not).
    pub read: u64,
    pub null_reviews: u64,
    pub positive: u64,
    /// The least and greatest line of the records read (reviews only).
    pub lines: Option<(u64, u64)>,
}

mod report_col {
    pub const FILE: &str = "file";
    pub const ROWS: &str = "rows";
    pub const REJECTS_FILE: &str = "rejects_file";
    pub const REJECTED: &str = "rejected";
    pub const READ: &str = "read";
    pub const NULL_REVIEWS: &str = "null_reviews";
    pub const POSITIVE: &str = "positive";
    pub const FIRST_LINE: &str = "first_line";
    pub const LAST_LINE: &str = "last_line";
}

/// The schema of a [`WriteParts`] plan's output: one row per task.
pub static PART_REPORT: LazyLock<SchemaRef> = LazyLock::new(|| {
    use report_col::*;
    let count = |name| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        Field::new(FILE, DataType::Utf8, true),
        count(ROWS),
        Field::new(REJECTS_FILE, DataType::Utf8, true),
        count(REJECTED),
        count(READ),
        count(NULL_REVIEWS),
        count(POSITIVE),
        Field::new(FIRST_LINE, DataType::UInt64, true),
        Field::new(LAST_LINE, DataType::UInt64, true),
    ]))
});

impl PartReport {
    fn to_batch(&self) -> Result<RecordBatch> {
        let text = |v: &Option<String>| Arc::new(StringArray::from(vec![v.clone()])) as ArrayRef;
        let count = |v: u64| Arc::new(UInt64Array::from(vec![v])) as ArrayRef;
        let line = |v: Option<u64>| Arc::new(UInt64Array::from(vec![v])) as ArrayRef;
        let columns = vec![
            text(&self.file),
            count(self.rows),
            text(&self.rejects_file),
            count(self.rejected),
            count(self.read),
            count(self.null_reviews),
            count(self.positive),
            line(self.lines.map(|l| l.0)),
            line(self.lines.map(|l| l.1)),
        ];
        Ok(RecordBatch::try_new(PART_REPORT.clone(), columns)?)
    }

    /// The reports in `batches` (a [`WriteParts`] plan's output).
    pub fn from_batches(batches: &[RecordBatch]) -> Result<Vec<PartReport>> {
        use report_col::*;
        let mut reports = Vec::new();
        for batch in batches {
            let text = |name| -> Result<StringArray> { Ok(column(batch, name)?.as_string_opt::<i32>().ok_or_else(|| not_of_type(name))?.clone()) };
            let numbers =
                |name| -> Result<UInt64Array> { Ok(column(batch, name)?.as_primitive_opt::<UInt64Type>().ok_or_else(|| not_of_type(name))?.clone()) };
            let (file, rejects_file) = (text(FILE)?, text(REJECTS_FILE)?);
            let (rows, rejected, read, nulls, positive) =
                (numbers(ROWS)?, numbers(REJECTED)?, numbers(READ)?, numbers(NULL_REVIEWS)?, numbers(POSITIVE)?);
            let (first, last) = (numbers(FIRST_LINE)?, numbers(LAST_LINE)?);
            let name = |names: &StringArray, i: usize| names.is_valid(i).then(|| names.value(i).to_string());
            for i in 0..batch.num_rows() {
                reports.push(PartReport {
                    file: name(&file, i),
                    rows: rows.value(i),
                    rejects_file: name(&rejects_file, i),
                    rejected: rejected.value(i),
                    read: read.value(i),
                    null_reviews: nulls.value(i),
                    positive: positive.value(i),
                    lines: (first.is_valid(i) && last.is_valid(i)).then(|| (first.value(i), last.value(i))),
                });
            }
        }
        Ok(reports)
    }
}

fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| DataFusionError::Internal(format!("the rows have no column `{name}`")))
}

fn not_of_type(name: &str) -> DataFusionError {
    DataFusionError::Internal(format!("the column `{name}` is not of the type ubm writes"))
}

/// The logical node: `input`'s rows written by the tasks that compute them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WriteParts {
    input: LogicalPlan,
    spec: PartsSpec,
    schema: DFSchemaRef,
}

impl WriteParts {
    /// `input` written as [`PartsSpec`] says; the plan's output is one [`PartReport`] row a task.
    pub fn plan(input: LogicalPlan, spec: PartsSpec) -> Result<LogicalPlan> {
        let schema = Arc::new(DFSchema::try_from(PART_REPORT.as_ref().clone())?);
        Ok(LogicalPlan::Extension(Extension { node: Arc::new(WriteParts { input, spec, schema }) }))
    }

    pub fn spec(&self) -> &PartsSpec {
        &self.spec
    }

    /// The node of `node`, when it is one.
    pub fn of(node: &dyn UserDefinedLogicalNode) -> Option<&WriteParts> {
        node.as_any().downcast_ref::<WriteParts>()
    }
}

impl PartialOrd for WriteParts {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.spec.partial_cmp(&other.spec) {
            Some(Ordering::Equal) => self.input.partial_cmp(&other.input),
            order => order,
        }
    }
}

impl UserDefinedLogicalNodeCore for WriteParts {
    fn name(&self) -> &str {
        "WriteParts"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WriteParts: {:?} into {}", self.spec.kind, self.spec.dir)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        if inputs.len() != 1 {
            return Err(DataFusionError::Internal(format!("WriteParts takes one input, not {}", inputs.len())));
        }
        Ok(WriteParts { input: inputs.swap_remove(0), spec: self.spec.clone(), schema: self.schema.clone() })
    }
}

/// DataFusion's planner, which also plans [`WriteParts`]. Every session that plans ubm's plans
/// has it: the in-process engine's, and a Ballista scheduler's ([`crate::node::session_state`]).
#[derive(Debug, Default)]
pub struct UbmQueryPlanner;

#[async_trait::async_trait]
impl QueryPlanner for UbmQueryPlanner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn datafusion::catalog::Session) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(WritePartsPlanner)]).create_physical_plan(plan, session).await
    }
}

/// Sets [`UbmQueryPlanner`] on `state`.
pub fn with_ubm_planner(state: SessionState) -> SessionState {
    datafusion::execution::SessionStateBuilder::new_from_existing(state).with_query_planner(Arc::new(UbmQueryPlanner)).build()
}

struct WritePartsPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for WritePartsPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = WriteParts::of(node) else { return Ok(None) };
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal("WriteParts takes one input".to_string()));
        };
        Ok(Some(Arc::new(WritePartsExec::new(input.clone(), node.spec.clone())?)))
    }
}

/// The physical node: each input partition written by the task that runs it.
#[derive(Debug)]
pub struct WritePartsExec {
    input: Arc<dyn ExecutionPlan>,
    spec: PartsSpec,
    dir: Url,
    properties: Arc<PlanProperties>,
}

impl WritePartsExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: PartsSpec) -> Result<Self> {
        let dir = Url::parse(&spec.dir).map_err(|e| DataFusionError::Internal(format!("the part files' directory `{}`: {e}", spec.dir)))?;
        if !dir.path().ends_with('/') {
            return Err(DataFusionError::Internal(format!("the part files' directory `{dir}` does not end in `/`")));
        }
        if spec.kind == PartsKind::Reviews {
            for name in [col::LINE, col::CID, col::POSITIVE_REVIEW, col::REVIEW_IS_NULL, col::REJECT_REASON, col::REJECTED_RECORD] {
                input.schema().index_of(name)?;
            }
        }
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(PART_REPORT.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self { input, spec, dir, properties: Arc::new(properties) })
    }

    pub fn spec(&self) -> &PartsSpec {
        &self.spec
    }
}

impl DisplayAs for WritePartsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WritePartsExec: {:?} into {}", self.spec.kind, self.spec.dir)
    }
}

impl ExecutionPlan for WritePartsExec {
    fn name(&self) -> &str {
        "WritePartsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// One file per input partition as it comes: a repartition below would only mix the
    /// review ranges (and their line numbers) across files.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!("WritePartsExec takes one input, not {}", children.len())));
        }
        Ok(Arc::new(WritePartsExec::new(children.swap_remove(0), self.spec.clone())?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let store = context.runtime_env().object_store_registry.get_store(&self.dir)?;
        let dir = Path::from_url_path(self.dir.path()).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let writer = PartWriter { store, dir, dir_url: self.dir.clone(), id: uuid::Uuid::new_v4().to_string() };
        let kind = self.spec.kind;
        let report = futures::stream::once(async move { writer.write(kind, input).await?.to_batch() });
        Ok(Box::pin(RecordBatchStreamAdapter::new(PART_REPORT.clone(), report)))
    }
}

/// One task's files.
struct PartWriter {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    dir_url: Url,
    /// Fresh for every attempt: names never collide with another attempt's.
    id: String,
}

impl PartWriter {
    async fn write(self, kind: PartsKind, mut input: SendableRecordBatchStream) -> Result<PartReport> {
        let mut files = OpenFiles::default();
        // The input's own errors pass as they are: Ballista reads a shuffle input's fetch
        // failure from its type to rerun a lost executor's stage. This writer's are wrapped.
        while let Some(batch) = input.try_next().await? {
            self.take(kind, batch, &mut files).await.map_err(TaskFailure::wrap)?;
        }
        self.close(files).await.map_err(TaskFailure::wrap)
    }

    /// Counts `batch` and writes its rows (and its rejected records) into the task's files.
    async fn take(&self, kind: PartsKind, batch: RecordBatch, files: &mut OpenFiles) -> Result<()> {
        files.report.read += batch.num_rows() as u64;
        let rows = match kind {
            PartsKind::Rows => batch,
            PartsKind::Reviews => {
                let (classified, bad) = self.split_reviews(&batch, &mut files.report)?;
                if let Some(bad) = bad {
                    let (file, name) = files.rejects.get_or_insert_with(|| self.open_rejects());
                    file.write_all(&rejects_json(&bad)?).await.map_err(|e| self.io_error("writing", name, e))?;
                }
                classified
            }
        };
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let (writer, _) = match files.parquet.as_mut() {
            Some(open) => open,
            None => files.parquet.insert(self.open_parquet(rows.schema())?),
        };
        files.report.rows += rows.num_rows() as u64;
        writer.write(&rows).await?;
        Ok(())
    }

    /// Finishes the task's files; the report names them.
    async fn close(&self, files: OpenFiles) -> Result<PartReport> {
        let OpenFiles { mut report, parquet, rejects } = files;
        if let Some((writer, name)) = parquet {
            writer.close().await?;
            report.file = Some(name);
        }
        if let Some((mut file, name)) = rejects {
            file.shutdown().await.map_err(|e| self.io_error("finishing", &name, e))?;
            report.rejects_file = Some(name);
        }
        Ok(report)
    }

    /// The task's Parquet file, opened at its first row.
    fn open_parquet(&self, schema: SchemaRef) -> Result<(AsyncArrowWriter<BufWriter>, String)> {
        let name = format!("part-{}.parquet", self.id);
        let sink = BufWriter::new(self.store.clone(), self.dir.clone().join(name.as_str()));
        Ok((AsyncArrowWriter::try_new(sink, schema, Some(parquet_properties()))?, name))
    }

    /// The task's rejects file, opened at its first rejected record.
    fn open_rejects(&self) -> (BufWriter, String) {
        let name = format!("rejects-{}.jsonl", self.id);
        (BufWriter::new(self.store.clone(), self.dir.clone().join(name.as_str())), name)
    }

    /// The classified rows of `batch` (the classified table's schema) and its rejected ones,
    /// counted into `report`.
    fn split_reviews(&self, batch: &RecordBatch, report: &mut PartReport) -> Result<(RecordBatch, Option<RecordBatch>)> {
        let lines = column(batch, col::LINE)?;
        let lines = lines.as_primitive_opt::<UInt64Type>().ok_or_else(|| not_of_type(col::LINE))?;
        // A task may read its ranges in any order: its lines are the span from the least to
        // the greatest.
        if let (Some(least), Some(greatest)) = (min(lines), max(lines)) {
            report.lines = Some(report.lines.map_or((least, greatest), |(from, to)| (from.min(least), to.max(greatest))));
        }
        let reasons = column(batch, col::REJECT_REASON)?;
        let good = filter_record_batch(batch, &is_null(reasons.as_ref())?)?;
        report.positive += true_count(&good, col::POSITIVE_REVIEW)?;
        report.null_reviews += true_count(&good, col::REVIEW_IS_NULL)?;
        let cid = cast(&column(&good, col::CID)?, &DataType::Utf8)?;
        let classified = RecordBatch::try_new(CLASSIFIED.clone(), vec![cid, column(&good, col::POSITIVE_REVIEW)?])?;
        if reasons.null_count() == batch.num_rows() {
            return Ok((classified, None));
        }
        let bad = filter_record_batch(batch, &is_not_null(reasons.as_ref())?)?;
        report.rejected += bad.num_rows() as u64;
        Ok((classified, Some(bad)))
    }

    fn io_error(&self, doing: &'static str, name: &str, source: std::io::Error) -> DataFusionError {
        DataFusionError::External(Box::new(ClusterError::Write { doing, url: format!("{}{name}", self.dir_url), source }))
    }
}

/// A task's files while it writes them, and what it counted.
#[derive(Default)]
struct OpenFiles {
    report: PartReport,
    /// The Parquet writer and its file's name, from the first row on.
    parquet: Option<(AsyncArrowWriter<BufWriter>, String)>,
    /// The rejects file and its name, from the first rejected record on.
    rejects: Option<(BufWriter, String)>,
}

fn true_count(batch: &RecordBatch, name: &str) -> Result<u64> {
    let values = column(batch, name)?;
    let flags: &BooleanArray = values.as_boolean_opt().ok_or_else(|| not_of_type(name))?;
    Ok(flags.true_count() as u64)
}

/// One JSON line per rejected record: `line`, `reason` and the record, as text when it is UTF-8
/// and as `record_base64` otherwise, so that nothing of it is lost.
fn rejects_json(bad: &RecordBatch) -> Result<Vec<u8>> {
    let lines = column(bad, col::LINE)?;
    let lines = lines.as_primitive_opt::<UInt64Type>().ok_or_else(|| not_of_type(col::LINE))?;
    let reasons = column(bad, col::REJECT_REASON)?;
    let reasons = reasons.as_string_opt::<i32>().ok_or_else(|| not_of_type(col::REJECT_REASON))?;
    let records = column(bad, col::REJECTED_RECORD)?;
    let records = records.as_binary_opt::<i32>().ok_or_else(|| not_of_type(col::REJECTED_RECORD))?;
    let mut out = Vec::new();
    for i in 0..bad.num_rows() {
        let raw = records.value(i);
        let mut entry = serde_json::json!({"line": lines.value(i), "reason": reasons.value(i)});
        match std::str::from_utf8(raw) {
            Ok(text) => entry["record"] = text.into(),
            Err(_) => entry["record_base64"] = base64::engine::general_purpose::STANDARD.encode(raw).into(),
        }
        serde_json::to_writer(&mut out, &entry).map_err(|e| DataFusionError::External(Box::new(e)))?;
        out.push(b'\n');
    }
    Ok(out)
}
