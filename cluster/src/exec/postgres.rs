//! The OLTP extract as a scan that runs on the executors: `retail.user_purchase`'s as-of
//! snapshot read in slices, each slice a partition (so a task of its own on Ballista), every
//! slice in the same Postgres snapshot.
//!
//! The driver opens a `REPEATABLE READ` transaction, exports its snapshot
//! (`pg_export_snapshot()`) and keeps the transaction open while the slices run; each slice
//! imports it (`SET TRANSACTION SNAPSHOT`), so all of them see one database state, as one query
//! would. Slices are ranges of the table's physical blocks (`ctid`), not of a column's values
//! as Spark's JDBC reader takes them: the table has no key, Postgres 14+ reads a block range with
//! a TID range scan (no index needed, each slice reads only its blocks), and every row version
//! the snapshot sees lies in exactly one block, so every row is read exactly once. The first
//! slice starts at block 0 and the last has no end, so rows in blocks added after the table's
//! size was read are not missed. Rows stream from a binary `COPY` into Arrow, never through
//! text: `numeric` arrives as an exact decimal.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileOpenFuture, FileOpener, FileScanConfig, FileScanConfigBuilder, FileSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;
use ubm_jobs::purchases::{PurchaseBatch, price_thousandths};
use ubm_jobs::schema::USER_PURCHASE;

use crate::{ClusterError, TaskFailure};

/// On a cluster, about this much of the table per slice (as a Spark task takes 128 MiB).
const CLUSTER_SLICE_BYTES: u64 = 128 * 1024 * 1024;

/// What every slice needs to know; it travels to the executors.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgExtract {
    /// The database, with its password: what the slices connect to. Never shown.
    pub url: String,
    /// The database as it may be shown (no password), for error messages.
    pub shown: String,
    /// Rows with `invoice_date` before this day (`YYYY-MM-DD`, a validated date).
    pub before: String,
    /// The exported snapshot every slice reads in.
    pub snapshot: String,
    /// The table's size in blocks when the snapshot was taken.
    pub blocks: u64,
    /// The server's block size (`block_size`, 8 KiB unless Postgres was built otherwise).
    pub block_bytes: u64,
}

impl fmt::Debug for PgExtract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgExtract").field("db", &self.shown).field("before", &self.before).field("blocks", &self.blocks).finish()
    }
}

/// One slice: the blocks `[start, end)`; no `end` for the last slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub start: u64,
    pub end: Option<u64>,
}

impl PgExtract {
    /// `count` slices of about equal blocks that cover every block from 0 on.
    pub fn slices(&self, count: usize) -> Vec<Slice> {
        let count = (count as u64).clamp(1, self.blocks.max(1));
        let bounds: Vec<u64> = (0..=count).map(|i| self.blocks * i / count).collect();
        bounds.windows(2).enumerate().map(|(i, w)| Slice { start: w[0], end: (i as u64 + 1 < count).then_some(w[1]) }).collect()
    }

    /// The statement that reads `slice`. `before` is a validated date and the block numbers are
    /// integers, so formatting them in is safe; COPY takes no bind parameters.
    fn copy_statement(&self, slice: Slice) -> String {
        let end = slice.end.map(|end| format!(" AND ctid < '({end},0)'::tid")).unwrap_or_default();
        format!(
            "COPY (SELECT invoice_number::varchar, stock_code::varchar, detail::varchar, quantity::int4, \
             invoice_date::timestamp, unit_price::numeric, customer_id::int4, country::varchar \
             FROM retail.user_purchase WHERE invoice_date < DATE '{}' AND ctid >= '({},0)'::tid{end}) TO STDOUT (FORMAT binary)",
            self.before, slice.start
        )
    }
}

/// The extract as a table: scanning it plans one partition per slice.
#[derive(Debug)]
pub struct PgSliceTable {
    extract: PgExtract,
    /// Whether the scan runs on a cluster (more slices for a large table).
    on_cluster: bool,
}

impl PgSliceTable {
    pub fn new(extract: PgExtract, on_cluster: bool) -> Self {
        Self { extract, on_cluster }
    }

    pub fn extract(&self) -> &PgExtract {
        &self.extract
    }

    pub fn on_cluster(&self) -> bool {
        self.on_cluster
    }

    /// How many slices: one per target partition in-process; on a cluster also at least one per
    /// [`CLUSTER_SLICE_BYTES`] of table.
    fn slice_count(&self, target_partitions: usize) -> usize {
        let by_size = self.extract.blocks.saturating_mul(self.extract.block_bytes).div_ceil(CLUSTER_SLICE_BYTES) as usize;
        if self.on_cluster { target_partitions.max(by_size) } else { target_partitions }.max(1)
    }
}

#[async_trait::async_trait]
impl TableProvider for PgSliceTable {
    fn schema(&self) -> SchemaRef {
        USER_PURCHASE.clone()
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
        let every_column = projection.is_none_or(|columns| columns.iter().copied().eq(0..USER_PURCHASE.fields().len()));
        if !every_column {
            return Err(DataFusionError::Internal("the purchases extract reads every column".to_string()));
        }
        let slices = self.extract.slices(self.slice_count(state.config().target_partitions()));
        Ok(pg_scan_exec(self.extract.clone(), &slices)?)
    }
}

/// The stand-in "file" a slice is: the table's name, with the slice's blocks as its byte range
/// (`i64::MAX` as the end of the last, open slice).
const TABLE_PATH: &str = "retail.user_purchase";

/// The scan of `slices`: a `DataSourceExec` over a `FileScanConfig` with one file group per
/// slice. Ballista gives each task only its own groups of such a scan; any other kind of leaf is
/// run whole by every task of its stage, which would read every slice once per task.
pub fn pg_scan_exec(extract: PgExtract, slices: &[Slice]) -> Result<Arc<DataSourceExec>> {
    let groups = slices
        .iter()
        .map(|slice| {
            let (start, end) = (i64::try_from(slice.start), slice.end.map_or(Ok(i64::MAX), i64::try_from));
            let (Ok(start), Ok(end)) = (start, end) else {
                return Err(DataFusionError::Internal(format!("a slice of blocks {slice:?} beyond what DataFusion can address")));
            };
            Ok(FileGroup::new(vec![PartitionedFile::new_with_range(TABLE_PATH.to_string(), 0, start, end)]))
        })
        .collect::<Result<Vec<_>>>()?;
    let source = Arc::new(PgSliceSource::new(extract));
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source).with_file_groups(groups).with_preserve_order(true).build();
    Ok(DataSourceExec::from_data_source(config))
}

/// The slices of a scan, read back from its file groups (for the codec).
pub fn slices_of(config: &FileScanConfig) -> Result<Vec<Slice>> {
    config.file_groups.iter().flat_map(|group| group.iter()).map(slice_of).collect()
}

/// The slice a stand-in file of [`pg_scan_exec`] is.
fn slice_of(part: &PartitionedFile) -> Result<Slice> {
    let range = part.range.as_ref().ok_or_else(|| DataFusionError::Internal("a slice without its blocks".to_string()))?;
    match (u64::try_from(range.start), u64::try_from(range.end)) {
        (Ok(start), Ok(end)) => Ok(Slice { start, end: (range.end != i64::MAX).then_some(end) }),
        _ => Err(DataFusionError::Internal("a slice of negative blocks".to_string())),
    }
}

/// The `FileSource` whose "files" are slices of the table.
#[derive(Clone)]
pub struct PgSliceSource {
    extract: PgExtract,
    table_schema: TableSchema,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for PgSliceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSliceSource").field("extract", &self.extract).finish()
    }
}

impl PgSliceSource {
    fn new(extract: PgExtract) -> Self {
        Self { extract, table_schema: TableSchema::from(USER_PURCHASE.clone()), metrics: ExecutionPlanMetricsSet::new() }
    }

    pub fn extract(&self) -> &PgExtract {
        &self.extract
    }
}

impl FileSource for PgSliceSource {
    fn create_file_opener(&self, _store: Arc<dyn ObjectStore>, _config: &FileScanConfig, _partition: usize) -> Result<Arc<dyn FileOpener>> {
        Ok(Arc::new(SliceOpener { extract: self.extract.clone() }))
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, _batch_size: usize) -> Arc<dyn FileSource> {
        Arc::new(self.clone())
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        "ubm-postgres-slices"
    }

    /// Slices are cut by ubm; DataFusion's byte-size repartitioning knows nothing of blocks.
    fn supports_repartitioning(&self) -> bool {
        false
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
}

struct SliceOpener {
    extract: PgExtract,
}

impl FileOpener for SliceOpener {
    fn open(&self, part: PartitionedFile) -> Result<FileOpenFuture> {
        let slice = slice_of(&part)?;
        let extract = self.extract.clone();
        Ok(Box::pin(async move {
            let (sender, receiver) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
            tokio::spawn(async move {
                if let Err(e) = read_slice(&extract, slice, &sender).await {
                    let _ = sender.send(Err(TaskFailure::raise(e))).await;
                }
            });
            Ok(futures::stream::unfold(receiver, |mut rows| async move { rows.recv().await.map(|batch| (batch, rows)) }).boxed())
        }))
    }
}

impl Slice {
    /// The slice as errors name it.
    fn name(&self) -> String {
        format!("the slice of blocks {}..{}", self.start, self.end.map_or(String::from("the end"), |e| e.to_string()))
    }
}

/// Reads one slice in the exported snapshot and sends its rows in batches; stops early when
/// nobody receives them any more (the task was cancelled). Every error keeps its cause: the
/// SQLSTATE of a Postgres error decides whether the task is worth another attempt.
async fn read_slice(extract: &PgExtract, slice: Slice, out: &tokio::sync::mpsc::Sender<Result<RecordBatch>>) -> Result<(), ClusterError> {
    let failed = |doing| move |source| pg_error(doing, extract, slice, source);
    let (client, connection) = tokio_postgres::connect(&extract.url, tokio_postgres::NoTls).await.map_err(failed("connecting to read"))?;
    let connection = tokio::spawn(connection);
    let begin = format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'", extract.snapshot.replace('\'', "''"));
    client.batch_execute(&begin).await.map_err(failed("joining the run's snapshot (its driver may have stopped) to read"))?;
    let copy = client.copy_out(&extract.copy_statement(slice)).await.map_err(failed("reading"))?;
    let types = [Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::INT4, Type::TIMESTAMP, Type::NUMERIC, Type::INT4, Type::VARCHAR];
    let rows = BinaryCopyOutStream::new(copy, &types);
    futures::pin_mut!(rows);
    let mut batch = PurchaseBatch::new();
    let mut sent_any = false;
    while let Some(row) = rows.try_next().await.map_err(failed("reading"))? {
        append_row(&mut batch, &row).map_err(|e| e.naming(extract, slice))?;
        if let Some(full) = batch.row_done().map_err(building)? {
            sent_any = true;
            if out.send(Ok(full)).await.is_err() {
                return Ok(()); // the consumer stopped (the task was cancelled)
            }
        }
    }
    if let Some(last) = batch.last(sent_any).map_err(building)? {
        let _ = out.send(Ok(last)).await;
    }
    client.batch_execute("COMMIT").await.map_err(failed("ending the transaction that read"))?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// A Postgres error of `slice`, naming it and the database (its password left out).
fn pg_error(doing: &'static str, extract: &PgExtract, slice: Slice, source: tokio_postgres::Error) -> ClusterError {
    ClusterError::Postgres { doing, slice: slice.name(), db: extract.shown.clone(), source }
}

/// Why a row could not be appended; named with its slice only when it happens (the row loop
/// allocates nothing for it).
enum RowError {
    Decoding(tokio_postgres::Error),
    Price { invoice: Option<String>, reason: ubm_jobs::purchases::PriceError },
}

impl RowError {
    fn naming(self, extract: &PgExtract, slice: Slice) -> ClusterError {
        match self {
            RowError::Decoding(source) => pg_error("decoding a row of", extract, slice, source),
            RowError::Price { invoice, reason } => ClusterError::BadValue {
                what: format!(
                    "unit_price of the row with invoice_number {} in {} of retail.user_purchase at {}",
                    invoice.as_deref().unwrap_or("NULL"),
                    slice.name(),
                    extract.shown
                ),
                reason: reason.to_string(),
            },
        }
    }
}

/// Appends one row of the binary `COPY` to `batch`. A `unit_price` wider than the contract's
/// `numeric(8,3)` is refused, never staged.
fn append_row(batch: &mut PurchaseBatch, row: &tokio_postgres::binary_copy::BinaryCopyOutRow) -> Result<(), RowError> {
    let invoice: Option<&str> = row.try_get(0).map_err(RowError::Decoding)?;
    batch.invoice_number.append_option(invoice);
    batch.stock_code.append_option(row.try_get::<Option<&str>>(1).map_err(RowError::Decoding)?);
    batch.detail.append_option(row.try_get::<Option<&str>>(2).map_err(RowError::Decoding)?);
    batch.quantity.append_option(row.try_get::<Option<i32>>(3).map_err(RowError::Decoding)?);
    let at: Option<chrono::NaiveDateTime> = row.try_get(4).map_err(RowError::Decoding)?;
    batch.invoice_date.append_option(at.map(|t| t.and_utc().timestamp_micros()));
    let price: Option<Decimal> = row.try_get(5).map_err(RowError::Decoding)?;
    let thousandths = price.map(price_thousandths).transpose().map_err(|reason| RowError::Price { invoice: invoice.map(str::to_string), reason })?;
    batch.unit_price.append_option(thousandths);
    batch.customer_id.append_option(row.try_get::<Option<i32>>(6).map_err(RowError::Decoding)?);
    batch.country.append_option(row.try_get::<Option<&str>>(7).map_err(RowError::Decoding)?);
    Ok(())
}

fn building(source: ArrowError) -> ClusterError {
    ClusterError::engine("building a batch of purchases")(DataFusionError::ArrowError(Box::new(source), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(blocks: u64) -> PgExtract {
        PgExtract { url: String::new(), shown: String::new(), before: "2012-01-01".into(), snapshot: "s".into(), blocks, block_bytes: 8192 }
    }

    #[test]
    fn slices_cover_every_block_once_and_the_last_is_open() {
        for (blocks, count) in [(0, 4), (1, 4), (10, 3), (100, 7), (7, 7)] {
            let slices = extract(blocks).slices(count);
            assert!(!slices.is_empty() && slices.len() <= count.max(1));
            assert_eq!(slices[0].start, 0);
            assert_eq!(slices.last().and_then(|s| s.end), None, "the last slice has no end");
            for pair in slices.windows(2) {
                assert_eq!(pair[0].end, Some(pair[1].start), "{blocks} blocks in {count}: {slices:?}");
                assert!(pair[1].start > pair[0].start);
            }
        }
        assert!(extract(10).copy_statement(Slice { start: 3, end: Some(6) }).contains("ctid >= '(3,0)'::tid AND ctid < '(6,0)'::tid"));
        assert!(!extract(10).copy_statement(Slice { start: 6, end: None }).contains("ctid <"));
    }

    #[test]
    fn a_large_table_gets_a_slice_per_128_mib_on_a_cluster() {
        let blocks = 5 * CLUSTER_SLICE_BYTES / 8192;
        assert_eq!(PgSliceTable::new(extract(blocks), true).slice_count(2), 5);
        assert_eq!(PgSliceTable::new(extract(blocks), false).slice_count(2), 2);
        let large_blocks = PgExtract { block_bytes: 32 * 1024, ..extract(blocks) };
        assert_eq!(PgSliceTable::new(large_blocks, true).slice_count(2), 20, "a server built with 32 KiB blocks");
    }
}
