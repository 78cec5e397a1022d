//! How one task reads its byte ranges of a review file: ubm's `FileSource`, whose opener reads
//! one range with a single GET (checked against the version the planner saw) and turns it into
//! a boundaries row or [`REVIEW_RECORDS`] rows (see the [`super`] module for the two passes).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, BinaryBuilder, StringBuilder, UInt8Array, UInt64Array, UInt64Builder};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileOpenFuture, FileOpener, FileScanConfig, FileSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::physical_plan::PhysicalExpr;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::{StreamExt, stream};
use object_store::{GetOptions, GetRange, ObjectStore};
use ubm_jobs::csv::{FieldText, RecordSpan, ReviewHeader, record_fields, records_from};
use ubm_jobs::schema::REVIEW_RECORDS;
use ubm_jobs::splits::{ChunkSummary, ScanState, Split, summarize};

use super::file::ReviewFile;
use super::{BOUNDARIES, ReviewPass};
use crate::{ClusterError, TaskFailure};

/// One task's reader of review-file ranges, for either pass.
#[derive(Clone)]
pub struct ReviewScanSource {
    file: Arc<ReviewFile>,
    pass: ReviewPass,
    table_schema: TableSchema,
    metrics: ExecutionPlanMetricsSet,
    batch_size: usize,
}

impl fmt::Debug for ReviewScanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReviewScanSource").field("file", &self.file.location.as_str()).field("pass", &self.pass).finish()
    }
}

impl ReviewScanSource {
    pub fn new(file: Arc<ReviewFile>, pass: ReviewPass) -> Self {
        let schema = match pass {
            ReviewPass::Boundaries => BOUNDARIES.clone(),
            ReviewPass::Records(_) => REVIEW_RECORDS.clone(),
        };
        Self { file, pass, table_schema: TableSchema::from(schema), metrics: ExecutionPlanMetricsSet::new(), batch_size: 8192 }
    }

    pub fn file(&self) -> &Arc<ReviewFile> {
        &self.file
    }

    pub fn pass(&self) -> &ReviewPass {
        &self.pass
    }
}

impl FileSource for ReviewScanSource {
    fn create_file_opener(&self, object_store: Arc<dyn ObjectStore>, _config: &FileScanConfig, _partition: usize) -> Result<Arc<dyn FileOpener>> {
        Ok(Arc::new(RangeOpener { store: object_store, file: self.file.clone(), pass: self.pass.clone(), batch_size: self.batch_size.max(1) }))
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        Arc::new(Self { batch_size, ..self.clone() })
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        "ubm-review-csv"
    }

    /// Ranges are cut at record boundaries by ubm, never by DataFusion's byte-size repartitioning.
    fn supports_repartitioning(&self) -> bool {
        false
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
}

/// Opens one range: reads it, then emits its rows.
struct RangeOpener {
    store: Arc<dyn ObjectStore>,
    file: Arc<ReviewFile>,
    pass: ReviewPass,
    batch_size: usize,
}

impl FileOpener for RangeOpener {
    fn open(&self, part: PartitionedFile) -> Result<FileOpenFuture> {
        let range = part.range.as_ref().ok_or_else(|| DataFusionError::Internal("a review range without its byte range".to_string()))?;
        let (start, end) = (u64::try_from(range.start), u64::try_from(range.end));
        let (Ok(start), Ok(end)) = (start, end) else {
            return Err(DataFusionError::Internal(format!("a negative review range {}..{}", range.start, range.end)));
        };
        let (store, file, pass, batch_size) = (self.store.clone(), self.file.clone(), self.pass.clone(), self.batch_size);
        // Every error of this range, raised here, carries its retry decision to the driver.
        Ok(Box::pin(async move {
            let bytes = read_range(store.as_ref(), &file, start, end).await.map_err(TaskFailure::raise)?;
            match pass {
                ReviewPass::Boundaries => {
                    let summary = summarize(&bytes, start, file.eol);
                    Ok(stream::once(async move { summary_batch(&summary).map_err(TaskFailure::wrap) }).boxed())
                }
                ReviewPass::Records(splits) => {
                    let line = splits
                        .binary_search_by_key(&start, |s| s.start)
                        .map(|i| splits[i].line)
                        .or_else(|_| if start == end { Ok(file.first_line) } else { Err(TaskFailure::wrap(unknown_split(&file, start))) })?;
                    let spans = records_from(&bytes, 0, line, file.eol);
                    check_ends_at_a_record(&bytes, &spans, &file, start, end).map_err(TaskFailure::wrap)?;
                    Ok(record_batches(bytes, Arc::new(spans), file, batch_size).map(|batch| batch.map_err(TaskFailure::wrap)).boxed())
                }
            }
        }))
    }
}

fn unknown_split(file: &ReviewFile, start: u64) -> DataFusionError {
    DataFusionError::Internal(format!("no split of {} starts at byte {start}", file.location.as_str()))
}

/// Reads `start..end` of the file if it is still the version the planner saw.
async fn read_range(store: &dyn ObjectStore, file: &ReviewFile, start: u64, end: u64) -> Result<Bytes, ClusterError> {
    if start >= end {
        return Ok(Bytes::new());
    }
    let version = &file.version;
    let options = GetOptions {
        range: Some(GetRange::Bounded(start..end)),
        if_match: version.e_tag.clone(),
        if_unmodified_since: version.e_tag.is_none().then_some(version.last_modified),
        ..GetOptions::default()
    };
    let url = file.location.as_str();
    let path = file.location.path().map_err(ClusterError::engine("naming the review file's object"))?;
    let changed = |how, source| ClusterError::Changed { url: url.to_string(), how, source };
    let failed = |source| ClusterError::Store { doing: "reading a range of", url: format!("{url} (bytes {start}..{end})"), source };
    let got = match store.get_opts(&path, options).await {
        Ok(got) => got,
        Err(e @ object_store::Error::Precondition { .. }) => return Err(changed("it is no longer the version the scan was planned on", Some(e))),
        Err(e) => return Err(failed(e)),
    };
    if got.meta.size != version.size {
        return Err(changed("its size is not the one the scan was planned on", None));
    }
    got.bytes().await.map_err(failed)
}

fn summary_batch(summary: &ChunkSummary) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(vec![summary.start])),
        Arc::new(UInt64Array::from(vec![summary.end])),
        Arc::new(UInt64Array::from(vec![summary.line_breaks])),
    ];
    for path in &summary.paths {
        columns.push(Arc::new(UInt8Array::from(vec![path.exit.code()])));
        columns.push(Arc::new(UInt64Array::from(vec![path.first_record_end])));
        columns.push(Arc::new(UInt64Array::from(vec![path.line_breaks_to_first_end])));
    }
    Ok(RecordBatch::try_new(BOUNDARIES.clone(), columns)?)
}

/// A split other than the file's last must end with the line break that ends its last record;
/// anything else means the splits do not belong to these bytes, and reading on would cut a
/// record in two.
fn check_ends_at_a_record(bytes: &[u8], spans: &[RecordSpan], file: &ReviewFile, start: u64, end: u64) -> Result<()> {
    let at_end_of_file = end == file.version.size;
    let ends_a_record = bytes.last() == Some(&file.eol) && spans.last().is_none_or(|s| s.closed);
    if at_end_of_file || ends_a_record {
        return Ok(());
    }
    Err(DataFusionError::Execution(format!(
        "bytes {start}..{end} of the review file {} end inside a record, so the splits planned for it do not match \
         its bytes; rerun the date (if it happens again, report it with the file)",
        file.location.as_str()
    )))
}

/// The range's records, parsed `batch_size` at a time as the stream is polled.
fn record_batches(
    bytes: Bytes,
    spans: Arc<Vec<RecordSpan>>,
    file: Arc<ReviewFile>,
    batch_size: usize,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    let starts: Vec<usize> = (0..spans.len()).step_by(batch_size).collect();
    stream::iter(starts).map(move |from| {
        let to = (from + batch_size).min(spans.len());
        records_to_batch(&bytes, &spans[from..to], &file.header)
    })
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
        let outcome = record_fields(bytes, span, &mut fields).map_err(|r| r.reason).and_then(|()| {
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
                append_text(&mut cid, fields[header.cid]);
                append_text(&mut review, fields[header.review_str]);
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
        vec![Arc::new(line.finish()), Arc::new(cid.finish()), Arc::new(review.finish()), Arc::new(reason.finish()), Arc::new(raw.finish())],
    )?)
}

/// Appends a field's value, written piece by piece when it has doubled quotes: most reviews
/// quote something, and building each one as a string first cost an allocation or more per
/// review (profiled).
fn append_text(column: &mut StringBuilder, text: Option<FieldText<'_>>) {
    use std::fmt::Write;
    match text {
        None => column.append_null(),
        Some(FieldText::Plain(value)) => column.append_value(value),
        Some(escaped) => {
            for piece in escaped.pieces() {
                // Writing to a StringBuilder's value buffer cannot fail.
                let _ = column.write_str(piece);
            }
            column.append_value("");
        }
    }
}

/// The summaries in the boundaries pass's rows.
pub fn summaries_of(batches: &[RecordBatch]) -> Result<Vec<ChunkSummary>> {
    let mut out = Vec::new();
    for batch in batches {
        let u64s = |name: &str| -> Result<UInt64Array> {
            let column = batch.column_by_name(name).ok_or_else(|| bad_row(format!("no column {name}")))?;
            column.as_any().downcast_ref::<UInt64Array>().cloned().ok_or_else(|| bad_row(format!("{name} is not UInt64")))
        };
        let u8s = |name: &str| -> Result<UInt8Array> {
            let column = batch.column_by_name(name).ok_or_else(|| bad_row(format!("no column {name}")))?;
            column.as_any().downcast_ref::<UInt8Array>().cloned().ok_or_else(|| bad_row(format!("{name} is not UInt8")))
        };
        let (start, end, breaks) = (u64s("start")?, u64s("end")?, u64s("line_breaks")?);
        let mut paths = Vec::new();
        for i in 0..ScanState::ALL.len() {
            paths.push((u8s(&format!("exit_{i}"))?, u64s(&format!("first_end_{i}"))?, u64s(&format!("breaks_{i}"))?));
        }
        for row in 0..batch.num_rows() {
            let mut summary_paths =
                [ubm_jobs::splits::ChunkPath { exit: ScanState::FieldStart, first_record_end: None, line_breaks_to_first_end: 0 }; 4];
            for (i, (exit, first, to_first)) in paths.iter().enumerate() {
                let exit = ScanState::from_code(exit.value(row)).ok_or_else(|| bad_row(format!("exit state {}", exit.value(row))))?;
                let first_record_end = (!datafusion::arrow::array::Array::is_null(first, row)).then(|| first.value(row));
                summary_paths[i] = ubm_jobs::splits::ChunkPath { exit, first_record_end, line_breaks_to_first_end: to_first.value(row) };
            }
            out.push(ChunkSummary { start: start.value(row), end: end.value(row), line_breaks: breaks.value(row), paths: summary_paths });
        }
    }
    Ok(out)
}

fn bad_row(what: String) -> DataFusionError {
    DataFusionError::Internal(format!("a record-boundary row cannot be read: {what}"))
}

/// The splits a records pass reads, for the codec: only those `groups` start.
pub fn splits_in(splits: &[Split], starts: impl IntoIterator<Item = u64>) -> Vec<Split> {
    starts.into_iter().filter_map(|s| splits.binary_search_by_key(&s, |x| x.start).ok().map(|i| splits[i])).collect()
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

    fn file(size: u64) -> ReviewFile {
        let header = ReviewHeader { field_count: 2, cid: 0, review_str: 1, start: 0 };
        let location = crate::exec::review::file::ReviewLocation::parse("file:///r.csv").expect("url");
        let version = crate::exec::review::file::FileVersion { size, last_modified: chrono::Utc::now(), e_tag: None };
        ReviewFile { location, header, eol: b'\n', data_start: 0, first_line: 1, version }
    }

    #[test]
    fn a_split_that_ends_inside_a_record_is_refused() {
        let check = |bytes: &[u8], size: u64| {
            let spans = records_from(bytes, 0, 2, b'\n');
            check_ends_at_a_record(bytes, &spans, &file(size), 0, bytes.len() as u64)
        };
        assert!(check(b"1,a\n2,b\n", 100).is_ok());
        assert!(check(b"1,a\n2,b", 100).is_err(), "cut mid-record");
        assert!(check(b"1,a\n2,\"b\n", 100).is_err(), "cut inside a quoted field, at a line break");
        assert!(check(b"1,a\n2,b", 7).is_ok(), "the file's last record needs no line break");
    }

    /// The vendor rewrites the file between planning and reading: the read is refused, naming
    /// the file, instead of parsing bytes of another version with the old splits.
    #[test]
    fn a_range_of_a_file_that_changed_since_planning_is_refused() {
        // Removed when the test ends, however it ends.
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("movie_review.csv");
        std::fs::write(&path, b"cid,review_str\n1,good\n2,bad\n").expect("write");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let url = url::Url::from_file_path(&path).expect("url");
            let env = crate::node::runtime().expect("runtime env");
            let file = ReviewFile::open(crate::exec::review::file::ReviewLocation::new(url), env.as_ref()).await.expect("opens");
            let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
            let read = read_range(store.as_ref(), &file, file.data_start, file.version.size).await.expect("unchanged");
            assert_eq!(&read[..], b"1,good\n2,bad\n");
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::write(&path, b"cid,review_str\n1,gold\n2,bad\n").expect("rewrite, same size");
            let err = read_range(store.as_ref(), &file, file.data_start, file.version.size).await.expect_err("changed");
            assert!(err.to_string().contains("changed while it was being read") && err.to_string().contains("movie_review.csv"), "{err}");
            // Retried by its type, also once it has crossed from an executor as text.
            assert!(matches!(err, ClusterError::Changed { .. }) && err.is_retryable(), "{err:?}");
            let sent = format!("Job j failed: {:?}", TaskFailure::raise(err));
            let crossed = TaskFailure::find_in(&sent).expect("tagged");
            assert_eq!(crossed.retry(), crate::retry::Retry::Worth);
        });
    }

    #[test]
    fn a_summary_survives_its_row() {
        let summary = summarize(b"1,\"a\n\",b\n2,c\n3", 100, b'\n');
        let back = summaries_of(&[summary_batch(&summary).expect("row")]).expect("read");
        assert_eq!(back, vec![summary]);
    }
}
