//! The vendor's `movie_review.csv` as a DataFusion table, read by ubm's own RFC 4180 scanner.
//!
//! DataFusion's CSV reader cannot do what the contract asks: it fails the whole query on one
//! malformed record instead of rejecting it with its line number, its schema inference fails on
//! quoted line breaks, and with `newlines_in_values` it reads a file on one core. This source
//! cuts the file into records once ([`ubm_jobs::csv::record_spans`], a `memchr2` walk that is
//! cheap next to parsing) and then parses and emits the records on every partition in
//! parallel. It yields [`REVIEW_RECORDS`]: one row per record, readable or rejected.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{BinaryBuilder, StringBuilder, UInt64Builder};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::physical_plan::{DisplayAs, PhysicalExpr, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt, stream};
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::path::Path;
use tokio::sync::OnceCell;
use ubm_jobs::csv::{RecordSpan, ReviewHeader, parse_header, parse_record, record_spans};
use ubm_jobs::schema::REVIEW_RECORDS;
use url::Url;

use crate::ClusterError;

/// Where the review file is: a `file://` or `s3://` URL, resolved through the session's
/// object-store registry on whichever node runs the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewLocation {
    url: Url,
}

impl ReviewLocation {
    /// The review file at `url`.
    pub fn new(url: Url) -> Self {
        Self { url }
    }

    /// `location` is a URL (`s3://bucket/key`, `file:///abs/path`).
    pub fn parse(location: &str) -> Result<Self> {
        let url = Url::parse(location).map_err(|e| {
            DataFusionError::Configuration(format!("`{location}` is not a URL of a review file: {e}"))
        })?;
        Ok(Self { url })
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    fn store_url(&self) -> Result<ObjectStoreUrl> {
        ObjectStoreUrl::parse(&self.url[..url::Position::BeforePath])
    }

    fn path(&self) -> Result<Path> {
        Path::from_url_path(self.url.path()).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    fn store(&self, runtime: &RuntimeEnv) -> Result<Arc<dyn ObjectStore>> {
        runtime.object_store(self.store_url()?)
    }

    /// Reads the first [`HEADER_PROBE_BYTES`] of the file (all of it when it is shorter).
    async fn read_head(&self, store: &dyn ObjectStore) -> Result<Bytes, ClusterError> {
        let path = self.path().map_err(|e| self.bad_location(e))?;
        let failed = |doing, source| ClusterError::Store { doing, url: self.url.to_string(), source };
        let meta = store.head(&path).await.map_err(|e| failed("cannot read the review file", e))?;
        let end = meta.size.min(HEADER_PROBE_BYTES);
        if end == 0 {
            return Ok(Bytes::new());
        }
        store.get_range(&path, 0..end).await.map_err(|e| failed("reading the review file", e))
    }

    /// Reads the whole file; a missing file is named in the error.
    async fn read(&self, store: &dyn ObjectStore) -> Result<Bytes> {
        let path = self.path()?;
        let failed = |doing: &str, e| DataFusionError::ObjectStore(Box::new(e)).context(format!("{doing} {}", self.url));
        let got = store.get(&path).await.map_err(|e| failed("cannot read the review file", e))?;
        got.bytes().await.map_err(|e| failed("cannot read the review file", e))
    }

    fn bad_location(&self, error: DataFusionError) -> ClusterError {
        ClusterError::BadLocation { location: self.url.to_string(), reason: error.to_string() }
    }
}

/// A review file as a table. Creating one reads and checks the header, so that a file with no
/// header or without `cid`/`review_str` fails before any work starts.
#[derive(Debug)]
pub struct ReviewCsvTable {
    location: ReviewLocation,
    header: ReviewHeader,
    /// Scan in one partition. Ballista restricts each task to its share of a stage's
    /// partitions by rewriting the leaf scans it knows (file and memory scans); any other leaf
    /// is left whole, so every task of a multi-partition ReviewCsvExec would read every
    /// partition and deliver rows twice. With one partition there is one task; the stage
    /// above is still spread over the cluster after the engine repartitions.
    single_partition: bool,
}

/// How much of the file is read to find the header; a longer header is read whole.
const HEADER_PROBE_BYTES: u64 = 64 * 1024;

impl ReviewCsvTable {
    /// Opens `location` through the object stores registered in `runtime` and checks its header.
    /// `single_partition` is for Ballista (see the field's comment).
    pub async fn open(location: ReviewLocation, runtime: &RuntimeEnv, single_partition: bool) -> Result<Self, ClusterError> {
        crate::stores::require_regular_file(&location.url).await?;
        let store = location.store(runtime).map_err(|e| location.bad_location(e))?;
        let head = location.read_head(store.as_ref()).await?;
        let header = match header_of(&head, &location) {
            Err(_) if head.len() as u64 == HEADER_PROBE_BYTES => {
                let whole = location.read(store.as_ref()).await.map_err(ClusterError::engine("reading the review file's header"))?;
                header_of(&whole, &location)?
            }
            other => other?,
        };
        Ok(Self { location, header, single_partition })
    }

    /// Rebuilds a table from what [`crate::codec`] shipped; the header was checked already.
    pub fn from_parts(location: ReviewLocation, header: ReviewHeader, single_partition: bool) -> Self {
        Self { location, header, single_partition }
    }

    pub fn single_partition(&self) -> bool {
        self.single_partition
    }

    pub fn location(&self) -> &ReviewLocation {
        &self.location
    }

    pub fn header(&self) -> &ReviewHeader {
        &self.header
    }
}

fn header_of(bytes: &[u8], location: &ReviewLocation) -> Result<ReviewHeader, ClusterError> {
    let first = record_spans(first_line_or_record(bytes)).into_iter().next();
    parse_header(bytes, first.as_ref()).map_err(|source| ClusterError::BadHeader { url: location.as_str().to_string(), source })
}

/// The bytes up to the first line feed when the header has no quoted line break (the usual
/// case), so that finding the header does not walk the whole probe.
fn first_line_or_record(bytes: &[u8]) -> &[u8] {
    match memchr::memchr(b'\n', bytes) {
        Some(i) if !bytes[..i].contains(&b'"') => &bytes[..=i],
        _ => bytes,
    }
}

#[async_trait::async_trait]
impl TableProvider for ReviewCsvTable {
    fn schema(&self) -> SchemaRef {
        REVIEW_RECORDS.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = if self.single_partition { 1 } else { state.config().target_partitions().max(1) };
        Ok(Arc::new(ReviewCsvExec::new(
            self.location.clone(),
            self.header.clone(),
            partitions,
            projection.cloned(),
        )?))
    }
}

/// The file's bytes and its record boundaries, loaded once per plan instance and shared by its
/// partitions (on a cluster, once per executor that runs a partition of it).
#[derive(Debug)]
struct LoadedFile {
    bytes: Bytes,
    /// Every record but the header.
    records: Vec<RecordSpan>,
}

/// What every partition of one scan shares: the file, its header and, once read, its bytes.
#[derive(Debug)]
struct Scan {
    location: ReviewLocation,
    header: ReviewHeader,
    loaded: OnceCell<Arc<LoadedFile>>,
}

impl Scan {
    async fn load(&self, context: &TaskContext) -> Result<Arc<LoadedFile>> {
        let loaded = self
            .loaded
            .get_or_try_init(|| async {
                let store = self.location.store(context.runtime_env().as_ref())?;
                let bytes = self.location.read(store.as_ref()).await?;
                let mut records = record_spans(&bytes);
                let header = if records.is_empty() { None } else { Some(records.remove(0)) };
                if header.map(|h| h.start) != Some(self.header.start) {
                    return Err(DataFusionError::Execution(format!(
                        "the review file {} changed while it was being read; rerun the task",
                        self.location.as_str()
                    )));
                }
                // Text after the header that yields no record would be a silently empty day.
                let after_header = header.map_or(&bytes[..], |h| &bytes[h.end.min(bytes.len())..]);
                if records.is_empty() && after_header.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(DataFusionError::Plan(format!(
                        "the review file {} has text after its header but no record could be read from it; \
                         check its line endings and quoting",
                        self.location.as_str()
                    )));
                }
                Ok::<_, DataFusionError>(Arc::new(LoadedFile { bytes, records }))
            })
            .await?;
        Ok(loaded.clone())
    }
}

/// Scans a review file in `partitions` parallel slices of its records.
#[derive(Debug)]
pub struct ReviewCsvExec {
    scan: Arc<Scan>,
    partitions: usize,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ReviewCsvExec {
    pub fn new(
        location: ReviewLocation,
        header: ReviewHeader,
        partitions: usize,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(REVIEW_RECORDS.project(p)?),
            None => REVIEW_RECORDS.clone(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let scan = Arc::new(Scan { location, header, loaded: OnceCell::new() });
        Ok(Self { scan, partitions, projection, schema, properties })
    }

    pub fn location(&self) -> &ReviewLocation {
        &self.scan.location
    }

    pub fn header(&self) -> &ReviewHeader {
        &self.scan.header
    }

    pub fn partitions(&self) -> usize {
        self.partitions
    }

    pub fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }

    /// For the codec: whether `plan` is one of ours.
    pub fn downcast(plan: &dyn ExecutionPlan) -> Option<&ReviewCsvExec> {
        (plan as &dyn Any).downcast_ref::<ReviewCsvExec>()
    }
}

impl DisplayAs for ReviewCsvExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ReviewCsvExec: file={}, partitions={}", self.location().as_str(), self.partitions)
    }
}

impl ExecutionPlan for ReviewCsvExec {
    fn name(&self) -> &str {
        "ReviewCsvExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("ReviewCsvExec has no children".to_string()))
        }
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let scan = self.scan.clone();
        let partitions = self.partitions;
        let projection = self.projection.clone();
        let batch_size = context.session_config().batch_size().max(1);
        let batches = stream::once(async move {
            let file = scan.load(&context).await?;
            let (from, to) = slice_of(file.records.len(), partition, partitions);
            let chunks: Vec<(usize, usize)> =
                (from..to).step_by(batch_size).map(|start| (start, (start + batch_size).min(to))).collect();
            Ok::<_, DataFusionError>(stream::iter(chunks).map(move |(start, end)| {
                let batch = records_to_batch(&file.bytes, &file.records[start..end], &scan.header)?;
                match &projection {
                    Some(p) => Ok(batch.project(p)?),
                    None => Ok(batch),
                }
            }))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

/// Partition `partition` of `partitions` takes records `from..to`, an even share.
fn slice_of(records: usize, partition: usize, partitions: usize) -> (usize, usize) {
    (records * partition / partitions, records * (partition + 1) / partitions)
}

/// A rejected record is kept whole up to this many bytes. A longer one keeps its start, and its
/// reason says its full length and SHA-256, so that one broken 200 MB line does not become a
/// 200 MB line of rejects.
pub const REJECT_KEEP_BYTES: usize = 64 * 1024;

/// For a record over [`REJECT_KEEP_BYTES`]: what the reason adds about the bytes not kept.
fn bounded(record: &[u8]) -> Option<String> {
    use sha2::Digest;
    if record.len() <= REJECT_KEEP_BYTES {
        return None;
    }
    let digest: String = sha2::Sha256::digest(record).iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("(the record has {} bytes; the first {REJECT_KEEP_BYTES} are kept; SHA-256 of all: {digest})", record.len()))
}

/// Parses `spans` into one batch of [`REVIEW_RECORDS`].
fn records_to_batch(bytes: &[u8], spans: &[RecordSpan], header: &ReviewHeader) -> Result<RecordBatch> {
    let n = spans.len();
    let mut line = UInt64Builder::with_capacity(n);
    let mut cid = StringBuilder::with_capacity(n, n * 8);
    let mut review = StringBuilder::with_capacity(n, spans.iter().map(|s| s.end - s.start).sum());
    let mut reason = StringBuilder::new();
    let mut raw = BinaryBuilder::new();
    let mut fields = Vec::with_capacity(header.field_count);
    for span in spans {
        line.append_value(span.line);
        let outcome = parse_record(bytes, span, &mut fields).map_err(|r| r.reason).and_then(|()| {
            if fields.len() == header.field_count {
                Ok(())
            } else {
                Err(format!(
                    "expected {} fields as in the header, found {}; a field holding a comma or a \
                     line break must be quoted",
                    header.field_count,
                    fields.len()
                ))
            }
        });
        match outcome {
            Ok(()) => {
                cid.append_option(fields[header.cid].as_deref());
                review.append_option(fields[header.review_str].as_deref());
                reason.append_null();
                raw.append_null();
            }
            Err(why) => {
                cid.append_null();
                review.append_null();
                let record = &bytes[span.start..span.end];
                match bounded(record) {
                    None => {
                        reason.append_value(why);
                        raw.append_value(record);
                    }
                    Some(note) => {
                        reason.append_value(format!("{why} {note}"));
                        raw.append_value(&record[..REJECT_KEEP_BYTES]);
                    }
                }
            }
        }
    }
    Ok(RecordBatch::try_new(
        REVIEW_RECORDS.clone(),
        vec![
            Arc::new(line.finish()),
            Arc::new(cid.finish()),
            Arc::new(review.finish()),
            Arc::new(reason.finish()),
            Arc::new(raw.finish()),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_rejected_record_keeps_its_start_length_and_hash() {
        assert_eq!(bounded(&vec![b'x'; REJECT_KEEP_BYTES]), None, "up to the bound it is kept whole");
        let note = bounded(&vec![b'x'; 200_000]).expect("over the bound");
        assert!(note.contains("200000 bytes") && note.contains("SHA-256 of all: "), "{note}");
        assert_eq!(note.rsplit(' ').next().map(|h| h.trim_end_matches(')').len()), Some(64), "{note}");
    }

    #[test]
    fn slices_cover_every_record_once() {
        for records in [0, 1, 7, 100] {
            for partitions in 1..5 {
                let mut next = 0;
                for p in 0..partitions {
                    let (from, to) = slice_of(records, p, partitions);
                    assert_eq!(from, next);
                    next = to;
                }
                assert_eq!(next, records);
            }
        }
    }
}
