//! The vendor's `movie_review.csv` as DataFusion tables, read by ubm's own RFC 4180 scanner in
//! byte ranges that many tasks read side by side, each in bounded memory.
//!
//! DataFusion's CSV reader cannot do what the contract asks: it fails the whole query on one
//! malformed record instead of rejecting it with its line number, and with
//! `newlines_in_values` it reads a file as one partition. ubm reads a review file in two passes,
//! each a plan of its own that runs wherever the engine runs plans
//! ([`crate::Engine::review_records`]):
//!
//! 1. **Boundaries** ([`ReviewPass::Boundaries`]): the file's records region is cut into
//!    chunks of [`ReviewFile::chunk_bytes`]; each task summarizes its chunks
//!    ([`ubm_jobs::splits::summarize`]) into one small row each. The planner composes the rows
//!    into splits that start at records ([`ubm_jobs::splits::compose`]).
//! 2. **Records** ([`ReviewPass::Records`]): each split is read and parsed into
//!    [`REVIEW_RECORDS`] rows, one row per record, readable or rejected, with its exact line.
//!
//! Both passes are `DataSourceExec`s over a `FileScanConfig` whose file groups are byte ranges
//! of the one file ([`crate::review_scan::ReviewScanSource`]), so Ballista gives each group to a
//! task of its own. A task holds one range at a time (about [`ReviewFile::chunk_bytes`], more
//! only for a record longer than that), whatever the file's size.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use ubm_jobs::csv::{ReviewHeader, parse_header, record_end, record_spans};
use ubm_jobs::schema::REVIEW_RECORDS;
use ubm_jobs::splits::{ScanState, Split, chunks, group_ranges, scan};
use url::Url;

use crate::ClusterError;
use crate::review_scan::{BOUNDARIES, ReviewScanSource};

/// The size of the chunks the boundaries pass summarizes in an object store, and so about the
/// size of a split: what one task holds in memory at a time, and the size of one ranged GET (S3's
/// guidance for byte-range reads is 8 to 16 MB). Against 16 MiB, `ubm classify` took the same
/// time at SF 1 and SF 16 and peaked 10 to 20 MB lower (3 runs each, by hand);
/// `benches/run.sh --scaling` compares the two after a change of this constant.
pub const CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// The chunk size for a local file, where a read costs no request: smaller chunks keep what a
/// task reads in the CPU's caches while it parses it, and balance the two cores' shares more
/// finely. `ubm classify` at SF 1, 21 interleaved runs: 122 ms against 128 ms with 8 MiB
/// (medians; 176 against 179 ms of CPU).
pub const LOCAL_CHUNK_BYTES: u64 = 2 * 1024 * 1024;

/// On a cluster, a task reads about this much of the file (several splits, one after another),
/// as Spark gives a task a 128 MiB split: enough tasks to spread a large file over every
/// executor, few enough that scheduling them costs little.
pub const CLUSTER_TASK_BYTES: u64 = 128 * 1024 * 1024;

/// In-process, the file is read by this many tasks per core: a core whose task finishes early
/// takes up another instead of waiting for its sibling (the threads are shared, the tasks are
/// not). `ubm classify` at SF 1, 15 interleaved runs: 117 ms with 2 against 130 ms with 1
/// (medians; the same CPU time); 4 were no faster than 2.
const TASKS_PER_CORE: usize = 2;

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

    pub(crate) fn store_url(&self) -> Result<ObjectStoreUrl> {
        ObjectStoreUrl::parse(&self.url[..url::Position::BeforePath])
    }

    pub(crate) fn path(&self) -> Result<Path> {
        Path::from_url_path(self.url.path()).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    fn bad_location(&self, error: DataFusionError) -> ClusterError {
        ClusterError::BadLocation { location: self.url.to_string(), reason: error.to_string() }
    }
}

/// Which version of the file the planner saw; every range is read only if the file is still
/// that version (an `If-Match` on its ETag, or `If-Unmodified-Since` without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion {
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub e_tag: Option<String>,
}

/// What every pass needs to know of a review file, found once by the planner from the file's
/// head: its header, its line terminator, where its records start and which version it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewFile {
    pub location: ReviewLocation,
    pub header: ReviewHeader,
    /// The byte that ends a record: `\n`, or `\r` in a CR-only file.
    pub eol: u8,
    /// Offset of the first byte after the header's line break (the size when there is none).
    pub data_start: u64,
    /// The line the record at `data_start` starts on.
    pub first_line: u64,
    pub version: FileVersion,
}

/// How much of the file is read to find the header; a longer header is read in larger steps.
const HEADER_PROBE_BYTES: u64 = 64 * 1024;

impl ReviewFile {
    /// Reads and checks the file's header, so that a file with no header or without
    /// `cid`/`review_str` fails before any work starts.
    pub async fn open(location: ReviewLocation, runtime: &RuntimeEnv) -> Result<Self, ClusterError> {
        crate::stores::require_regular_file(&location.url).await?;
        let store = runtime.object_store(location.store_url().map_err(|e| location.bad_location(e))?).map_err(|e| location.bad_location(e))?;
        let path = location.path().map_err(|e| location.bad_location(e))?;
        let failed = |doing, source| ClusterError::Store { doing, url: location.url.to_string(), source };
        let meta = store.head(&path).await.map_err(|e| failed("cannot read the review file", e))?;
        let version = FileVersion { size: meta.size, last_modified: meta.last_modified, e_tag: meta.e_tag };
        let mut probe = HEADER_PROBE_BYTES;
        loop {
            let head = read_head(store.as_ref(), &path, probe.min(version.size)).await.map_err(|e| failed("reading the review file", e))?;
            let whole = head.len() as u64 == version.size;
            match header_and_data_start(&head, whole, &location) {
                Ok(Some((header, eol, data_start))) => {
                    let first_line = 1 + memchr::memchr_iter(eol, &head[..data_start as usize]).count() as u64;
                    return Ok(Self { location, header, eol, data_start, first_line, version });
                }
                Ok(None) => probe *= 8, // the header goes on past the probe: read more
                Err(e) => return Err(e),
            }
        }
    }

    /// The size of the chunks the file is summarized in, and so about the size of its splits.
    pub fn chunk_bytes(&self) -> u64 {
        if self.location.url.scheme() == "file" { LOCAL_CHUNK_BYTES } else { CHUNK_BYTES }
    }

    /// The size of the file's records region.
    pub fn records_bytes(&self) -> u64 {
        self.version.size.saturating_sub(self.data_start)
    }
}

async fn read_head(store: &dyn ObjectStore, path: &Path, end: u64) -> object_store::Result<Bytes> {
    if end == 0 { Ok(Bytes::new()) } else { store.get_range(path, 0..end).await }
}

/// The header, the line terminator and where the records start, or `None` when `head` ends
/// inside the header and more of the file must be read.
fn header_and_data_start(head: &[u8], whole: bool, location: &ReviewLocation) -> Result<Option<(ReviewHeader, u8, u64)>, ClusterError> {
    let eol = record_end(head);
    let first = record_spans(first_line_or_record(head, eol)).into_iter().next();
    let mut header_end = None;
    if let Some(first) = first {
        scan(&head[first.start..], ScanState::FieldStart, eol, |at| {
            header_end = Some((first.start + at + 1) as u64);
            false
        });
    }
    let data_start = match header_end {
        Some(end) => end,
        None if whole => head.len() as u64,
        None => return Ok(None),
    };
    let header_bytes = &head[..data_start as usize];
    let header = parse_header(header_bytes, record_spans(header_bytes).first())
        .map_err(|source| ClusterError::BadHeader { url: location.as_str().to_string(), source })?;
    Ok(Some((header, eol, data_start)))
}

/// The bytes up to the first line break when the header has no quoted line break (the usual
/// case), so that finding the header does not walk the whole probe.
fn first_line_or_record(bytes: &[u8], eol: u8) -> &[u8] {
    match memchr::memchr(eol, bytes) {
        Some(i) if !bytes[..i].contains(&b'"') => &bytes[..=i],
        _ => bytes,
    }
}

/// The two passes over a review file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewPass {
    /// One [`BOUNDARIES`] row per chunk of [`ReviewFile::chunk_bytes`].
    Boundaries,
    /// [`REVIEW_RECORDS`] rows, reading these splits (the composed boundaries).
    Records(Arc<Vec<Split>>),
}

/// The byte ranges of one pass, with the line each starts on (0 where the pass needs none).
fn ranges_of(file: &ReviewFile, pass: &ReviewPass) -> Vec<Split> {
    match pass {
        ReviewPass::Boundaries => chunks(file.data_start, file.version.size, file.chunk_bytes())
            .into_iter()
            .map(|(start, end)| Split { start, end, line: 0 })
            .collect(),
        ReviewPass::Records(splits) => splits.as_ref().clone(),
    }
}

/// A pass over a review file as a table.
#[derive(Debug)]
pub struct ReviewCsvTable {
    file: Arc<ReviewFile>,
    pass: ReviewPass,
    /// Whether the plan runs on a Ballista cluster, where tasks are spread over executors (see
    /// [`ReviewCsvTable::task_count`]).
    on_cluster: bool,
}

impl ReviewCsvTable {
    pub fn new(file: Arc<ReviewFile>, pass: ReviewPass, on_cluster: bool) -> Self {
        Self { file, pass, on_cluster }
    }

    pub fn file(&self) -> &Arc<ReviewFile> {
        &self.file
    }

    pub fn pass(&self) -> &ReviewPass {
        &self.pass
    }

    pub fn on_cluster(&self) -> bool {
        self.on_cluster
    }

    /// How many tasks (file groups) read the file. In-process [`TASKS_PER_CORE`] per target
    /// partition (each reads its share, one range at a time); on a cluster at least one per
    /// [`CLUSTER_TASK_BYTES`], so that every executor gets a share of a large file.
    fn task_count(&self, target_partitions: usize) -> usize {
        let by_size = self.file.records_bytes().div_ceil(CLUSTER_TASK_BYTES) as usize;
        if self.on_cluster { target_partitions.max(by_size) } else { target_partitions * TASKS_PER_CORE }.max(1)
    }
}

/// One range of the file as DataFusion's `PartitionedFile`, with the version it must be.
pub(crate) fn part_file(file: &ReviewFile, start: u64, end: u64) -> Result<PartitionedFile> {
    let (Ok(start), Ok(end)) = (i64::try_from(start), i64::try_from(end)) else {
        return Err(DataFusionError::Internal(format!("the range {start}..{end} is beyond what DataFusion can address")));
    };
    let mut part = PartitionedFile::new_with_range(file.location.path()?.to_string(), file.version.size, start, end);
    part.object_meta.last_modified = file.version.last_modified;
    part.object_meta.e_tag = file.version.e_tag.clone();
    Ok(part)
}

/// The file groups of a scan: `ranges` cut into `tasks` runs of consecutive ranges. A file with
/// no records still gets one (empty) range, so that the plan has a partition.
pub(crate) fn file_groups(file: &ReviewFile, ranges: &[Split], tasks: usize) -> Result<Vec<FileGroup>> {
    if ranges.is_empty() {
        let end = file.version.size;
        return Ok(vec![FileGroup::new(vec![part_file(file, end, end)?])]);
    }
    group_ranges(ranges, tasks, |r| r.end - r.start)
        .into_iter()
        .map(|g| Ok(FileGroup::new(g.iter().map(|r| part_file(file, r.start, r.end)).collect::<Result<_>>()?)))
        .collect()
}

/// The scan of one pass: a `DataSourceExec` over `groups`.
pub(crate) fn scan_exec(file: Arc<ReviewFile>, pass: ReviewPass, groups: Vec<FileGroup>) -> Result<Arc<DataSourceExec>> {
    let store_url = file.location.store_url()?;
    let source = Arc::new(ReviewScanSource::new(file, pass));
    // Each group is read by its own partition, in order: DataFusion would otherwise let an idle
    // partition take ranges from a sibling's group (work stealing), and a task's records would
    // no longer be one contiguous stretch of lines, which the part writers' reports and the
    // rejects' file order rely on (see `crate::parts`).
    let config = FileScanConfigBuilder::new(store_url, source).with_file_groups(groups).with_preserve_order(true).build();
    Ok(DataSourceExec::from_data_source(config))
}

#[async_trait::async_trait]
impl TableProvider for ReviewCsvTable {
    fn schema(&self) -> SchemaRef {
        match self.pass {
            ReviewPass::Boundaries => BOUNDARIES.clone(),
            ReviewPass::Records(_) => REVIEW_RECORDS.clone(),
        }
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
        let tasks = self.task_count(state.config().target_partitions());
        let groups = file_groups(&self.file, &ranges_of(&self.file, &self.pass), tasks)?;
        let exec: Arc<dyn ExecutionPlan> = scan_exec(self.file.clone(), self.pass.clone(), groups)?;
        let Some(projection) = projection else { return Ok(exec) };
        let schema = exec.schema();
        let columns = projection
            .iter()
            .map(|&i| {
                let name = schema.field(i).name().clone();
                (Arc::new(Column::new(&name, i)) as Arc<dyn datafusion::physical_expr::PhysicalExpr>, name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(columns, exec)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> ReviewLocation {
        ReviewLocation::parse("file:///r.csv").expect("url")
    }

    #[test]
    fn the_header_ends_at_its_line_break_even_when_quoted() {
        let head = b"cid,\"review\nstr\",review_str\n1,a,b\n";
        let (header, eol, start) = header_and_data_start(head, true, &location()).expect("ok").expect("found");
        assert_eq!((header.cid, header.review_str, eol, start), (0, 2, b'\n', 28));
        assert!(header_and_data_start(b"cid,review_str,x", false, &location()).expect("ok").is_none(), "read on");
        let (_, _, start) = header_and_data_start(b"cid,review_str", true, &location()).expect("ok").expect("found");
        assert_eq!(start, 14, "a header alone: no records");
    }
}
