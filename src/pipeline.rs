//! One run of the daily pipeline for date D: ingest, extract, classify, metric, load.
//!
//! ingest → classify and extract run concurrently; metric needs both; load needs metric.
//! In-process, a large local vendor file is classified while ingest copies it, and classify
//! commits only once ingest has (`ingest_while_classifying`).
//! Every task is retried with exponential backoff before the run fails, except when the
//! error is the input's fault (a missing file, a bad header): retrying cannot fix those.
//! Every task writes a whole partition or nothing, so rerunning a date is always safe.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch, is_not_null, is_null};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use futures::TryStreamExt;
use serde::Serialize;
use ubm_cluster::{ClusterError, Engine};
use ubm_jobs::metric::{INVALID_CID, NO_CUSTOMER, REVIEWS, review_matches};
use ubm_jobs::schema::{CLASSIFIED, USER_PURCHASE, col};
use ubm_jobs::{RunDate, Semantics, classify_reviews, user_behavior_metric};
use url::Url;

use crate::lake::{Lake, PartitionWrite, Table};
use crate::oltp::Oltp;
use crate::secret::SecretUrl;

/// An error that is the input's fault: the run fails at once instead of retrying.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// How often and how patiently a failing task is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; it doubles for every further one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 3, first_backoff: Duration::from_secs(1) }
    }
}

/// Everything a run needs besides the date.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The vendor file; `{date}` in it is replaced by the run date.
    pub reviews: String,
    pub oltp: Oltp,
    pub lake: Lake,
    pub warehouse: Option<SecretUrl>,
    pub semantics: Semantics,
    pub retry: RetryPolicy,
}

/// One task's outcome, as the run report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub name: &'static str,
    /// `succeeded`, `failed`, or `skipped` (a task it needs failed, or nothing to do).
    pub status: &'static str,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_ms: u128,
    pub attempts: u32,
    pub error: Option<String>,
}

/// The counts of a run; the review counts reconcile: read = classified + rejected.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub review_records_read: u64,
    pub reviews_classified: u64,
    pub reviews_rejected: u64,
    pub null_reviews: u64,
    pub positive_reviews: u64,
    /// Reviews whose cid is not an integer (`abc`, `12.0`, empty): they match no customer.
    pub reviews_invalid_cid: u64,
    /// Reviews with an integer cid that bought nothing in the snapshot.
    pub reviews_without_customer: u64,
    pub purchase_rows_extracted: u64,
    pub metric_rows_written: u64,
    pub warehouse_rows_loaded: Option<u64>,
}

/// What a run did, written to `<lake>/_runs/D.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_date: String,
    pub status: &'static str,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u128,
    pub engine: String,
    pub semantics: String,
    pub reviews: String,
    pub oltp: String,
    pub lake: String,
    pub warehouse: Option<String>,
    pub tasks: Vec<TaskReport>,
    pub counts: Counts,
    /// `review_records_read == reviews_classified + reviews_rejected`.
    pub counts_reconcile: bool,
    /// Where the day's table is in the lake.
    pub metric_partition: Option<String>,
    /// The day's rows, for the summary (not serialized: the lake holds them).
    #[serde(skip)]
    pub metric: Vec<RecordBatch>,
}

/// What classify wrote and counted.
#[derive(Debug, Clone, Default)]
pub struct ClassifyCounts {
    pub read: u64,
    pub classified: u64,
    pub rejected: u64,
    pub null_reviews: u64,
    pub positive: u64,
    pub partition: Option<Url>,
}

/// Errors a retry cannot fix: the input's fault, or a job someone cancelled on purpose.
fn is_final_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<InputError>().is_some()
            || matches!(
                e.downcast_ref::<ClusterError>(),
                Some(ClusterError::Input { .. } | ClusterError::BadLocation { .. } | ClusterError::Cancelled { .. })
            )
    })
}

/// Runs `work` until it succeeds, the attempts run out, or it fails for a reason a retry
/// cannot fix.
async fn run_task<T, F, Fut>(name: &'static str, policy: RetryPolicy, mut work: F) -> (TaskReport, Option<T>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started_at = Utc::now();
    let clock = Instant::now();
    let mut attempts = 0;
    let mut backoff = policy.first_backoff;
    tracing::info!(task = name, "started");
    let outcome = loop {
        attempts += 1;
        match work().await {
            Ok(value) => break Ok(value),
            Err(err) if attempts < policy.attempts.max(1) && !is_final_error(&err) => {
                tracing::warn!(task = name, attempt = attempts, "failed, retrying in {backoff:?}: {err:#}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(err) => break Err(err),
        }
    };
    let duration_ms = clock.elapsed().as_millis();
    let (status, error, value) = match outcome {
        Ok(value) => {
            tracing::info!(task = name, duration_ms, attempts, "succeeded");
            ("succeeded", None, Some(value))
        }
        Err(err) => {
            tracing::error!(task = name, attempts, "failed: {err:#}");
            ("failed", Some(format!("{err:#}")), None)
        }
    };
    (TaskReport { name, status, started_at: Some(started_at), duration_ms, attempts, error }, value)
}

fn skipped(name: &'static str, why: &str) -> TaskReport {
    TaskReport { name, status: "skipped", started_at: None, duration_ms: 0, attempts: 0, error: Some(why.to_string()) }
}

/// A task that could not even start (its input cannot be named): failed, with no attempt.
fn failed_before_start(name: &'static str, err: &anyhow::Error) -> TaskReport {
    TaskReport { status: "failed", error: Some(format!("{err:#}")), ..skipped(name, "") }
}

/// The review file for `date`: `{date}` in the configured location is replaced.
pub fn reviews_for(location: &str, date: RunDate) -> Result<Url> {
    Ok(ubm_cluster::stores::location_url(&location.replace("{date}", &date.to_string()))?)
}

/// Runs every task of `date` and writes the run report into the lake.
pub async fn run_date(engine: &Engine, config: &RunConfig, date: RunDate) -> Result<RunReport> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let lake = &config.lake;
    let policy = config.retry;

    let review_side = async {
        let source = match reviews_for(&config.reviews, date) {
            Ok(source) => source,
            Err(e) => return (failed_before_start("ingest", &e), skipped("classify", "ingest failed"), None),
        };
        if reads_source_directly(engine, &source) {
            return ingest_while_classifying(engine, lake, &source, date, policy).await;
        }
        let (ingest, raw) = run_task("ingest", policy, || ingest(lake, &source, date)).await;
        let Some(raw) = raw else {
            return (ingest, skipped("classify", "ingest failed"), None);
        };
        let (classify, counts) = run_task("classify", policy, || {
            classify_into(engine, lake, &raw, date, Table::STAGE_REVIEWS, Table::REJECTS)
        })
        .await;
        (ingest, classify, counts)
    };
    let purchase_side = run_task("extract", policy, || extract(&config.oltp, lake, date));
    let ((ingest, classify, classified), (extract, purchases)) = tokio::join!(review_side, purchase_side);

    let mut tasks = vec![ingest, extract, classify];
    let mut counts = Counts::default();
    if let Some(c) = &classified {
        counts.review_records_read = c.read;
        counts.reviews_classified = c.classified;
        counts.reviews_rejected = c.rejected;
        counts.null_reviews = c.null_reviews;
        counts.positive_reviews = c.positive;
    }
    counts.purchase_rows_extracted = purchases.unwrap_or(0);

    let mut metric_rows = Vec::new();
    let mut metric_partition = None;
    if classified.is_some() && purchases.is_some() {
        let (report, metric) = run_task("metric", policy, || metric(engine, lake, date, config.semantics)).await;
        tasks.push(report);
        if let Some(m) = metric {
            counts.metric_rows_written = m.rows;
            counts.reviews_invalid_cid = m.invalid_cid;
            counts.reviews_without_customer = m.no_customer;
            metric_partition = Some(m.partition.to_string());
            metric_rows = m.batches;
        }
    } else {
        tasks.push(skipped("metric", "classify or extract failed"));
    }
    tasks.push(match (&config.warehouse, metric_partition.is_some()) {
        (None, _) => skipped("load", "no --warehouse configured; the lake table is the output"),
        (Some(_), false) => skipped("load", "metric failed"),
        (Some(url), true) => {
            let (report, rows) = run_task("load", policy, || crate::warehouse::load_metric(url, date, &metric_rows)).await;
            counts.warehouse_rows_loaded = rows;
            report
        }
    });

    let failed = tasks.iter().any(|t| t.status == "failed") || metric_partition.is_none();
    let report = RunReport {
        run_date: date.to_string(),
        status: if failed { "failed" } else { "succeeded" },
        started_at,
        duration_ms: clock.elapsed().as_millis(),
        engine: engine.kind().to_string(),
        semantics: config.semantics.to_string(),
        reviews: config.reviews.clone(),
        oltp: config.oltp.to_string(),
        lake: lake.root().to_string(),
        warehouse: config.warehouse.as_ref().map(|w| w.redacted()),
        counts_reconcile: counts.review_records_read == counts.reviews_classified + counts.reviews_rejected,
        tasks,
        counts,
        metric_partition,
        metric: metric_rows,
    };
    let json = serde_json::to_vec_pretty(&report)?;
    lake.put(&format!("_runs/{date}.json"), json).await.context("writing the run report")?;
    Ok(report)
}

/// ingest: the day's vendor file into `<lake>/raw/movie_review/insert_date=D/`.
async fn ingest(lake: &Lake, source: &Url, date: RunDate) -> Result<Url> {
    if let Ok(path) = source.to_file_path()
        && !path.is_file()
    {
        return Err(InputError(format!(
            "the review file {} does not exist; pass the vendor's file with --reviews",
            path.display()
        ))
        .into());
    }
    let mut partition = lake.begin(Table::RAW_REVIEWS, date)?;
    let bytes = partition.copy_in("movie_review.csv", source).await?;
    let url = partition.commit().await?;
    tracing::info!(bytes, "ingested {source}");
    Ok(url.join("movie_review.csv")?)
}

/// In-process, a large local vendor file is classified where it is while ingest copies it into
/// the lake, which takes the copy off the critical path. A cluster reads the lake's copy instead,
/// which every executor can reach. Below this size the copy is short and the three tasks side by
/// side only contend for the cores. Measured with `ubm run`: SF 1 (95 MB) 0.31 s one after the
/// other vs 0.33 s side by side; SF 8 (764 MB) 3.1 s vs 2.3 s.
const CLASSIFY_WHILE_INGESTING_FROM_BYTES: u64 = 256 * 1024 * 1024;

fn reads_source_directly(engine: &Engine, source: &Url) -> bool {
    *engine.kind() == ubm_cluster::EngineKind::Local
        && file_version(source).is_some_and(|(len, _)| len >= CLASSIFY_WHILE_INGESTING_FROM_BYTES)
}

/// The size and modification time of a local file, to tell whether it changed meanwhile.
fn file_version(source: &Url) -> Option<(u64, std::time::SystemTime)> {
    let metadata = std::fs::metadata(source.to_file_path().ok()?).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// ingest and classify side by side on the vendor's local file. classify commits only after
/// ingest did, and only if the file did not change while both read it, so that the raw zone
/// always holds the bytes that were classified.
async fn ingest_while_classifying(
    engine: &Engine,
    lake: &Lake,
    source: &Url,
    date: RunDate,
    policy: RetryPolicy,
) -> (TaskReport, TaskReport, Option<ClassifyCounts>) {
    let before = file_version(source);
    let ((ingest_report, raw), (mut classify_report, staged)) = tokio::join!(
        run_task("ingest", policy, || ingest(lake, source, date)),
        run_task("classify", policy, || classify_staged(engine, lake, source, date, Table::STAGE_REVIEWS, Table::REJECTS)),
    );
    let (Some(_), Some(staged)) = (raw, staged) else {
        if ingest_report.status == "failed" {
            return (ingest_report, skipped("classify", "ingest failed; nothing of classify was committed"), None);
        }
        return (ingest_report, classify_report, None);
    };
    if file_version(source) != before {
        let why = format!("{source} changed while it was read; nothing of classify was committed: rerun the date");
        classify_report.status = "failed";
        classify_report.error = Some(why);
        return (ingest_report, classify_report, None);
    }
    match staged.commit().await {
        Ok(counts) => (ingest_report, classify_report, Some(counts)),
        Err(e) => {
            classify_report.status = "failed";
            classify_report.error = Some(format!("committing: {e:#}"));
            (ingest_report, classify_report, None)
        }
    }
}

/// extract: the as-of snapshot of `retail.user_purchase` into the stage zone. The source is
/// read on its own task while this one encodes Parquet, through a channel of a few batches.
async fn extract(oltp: &Oltp, lake: &Lake, date: RunDate) -> Result<u64> {
    let clock = Instant::now();
    let (batches, mut received) = tokio::sync::mpsc::channel(4);
    let source = oltp.clone();
    let reader = tokio::spawn(async move { source.extract(date, batches).await });
    let mut partition = lake.begin(Table::STAGE_PURCHASES, date)?;
    let mut file = partition.parquet("part-00000.parquet", USER_PURCHASE.clone())?;
    while let Some(batch) = received.recv().await {
        file.write(&batch).await?;
    }
    reader.await.context("the OLTP reader panicked")??;
    let rows = file.close().await?;
    partition.commit().await?;
    tracing::debug!(elapsed_ms = clock.elapsed().as_millis(), rows, "staged the snapshot from {oltp}");
    Ok(rows)
}

/// classify: the review file at `source` into `out` (classified rows) and `rejects`
/// (unreadable records, one JSON object a line, with line number, reason and the record).
pub async fn classify_into(
    engine: &Engine,
    lake: &Lake,
    source: &Url,
    date: RunDate,
    out: Table,
    rejects: Table,
) -> Result<ClassifyCounts> {
    classify_staged(engine, lake, source, date, out, rejects).await?.commit().await
}

/// What classify wrote, staged: the partitions replace the lake's only on [`StagedClassify::commit`].
struct StagedClassify {
    counts: ClassifyCounts,
    classified: PartitionWrite,
    rejects: PartitionWrite,
    rejects_url: Url,
}

impl StagedClassify {
    /// Replaces the rejects partition, then the classified one.
    async fn commit(self) -> Result<ClassifyCounts> {
        let mut counts = self.counts;
        self.rejects.commit().await?;
        counts.partition = Some(self.classified.commit().await?);
        if counts.rejected > 0 {
            tracing::warn!(rejected = counts.rejected, "records could not be read; see {}", self.rejects_url);
        }
        Ok(counts)
    }
}

/// classify, up to the commit: runs the plan and stages both partitions.
async fn classify_staged(
    engine: &Engine,
    lake: &Lake,
    source: &Url,
    date: RunDate,
    out: Table,
    rejects: Table,
) -> Result<StagedClassify> {
    let plan = classify_reviews(engine.review_records(source).await?)?;
    let mut stream = engine.execute(plan, &format!("ubm classify {date}")).await?;
    let mut partition = lake.begin(out, date)?;
    let mut file = partition.parquet("part-00000.parquet", CLASSIFIED.clone())?;
    let mut counts = ClassifyCounts::default();
    let mut rejected = Vec::new();
    let mut seen = LineSet::default();
    while let Some(batch) = stream.try_next().await.with_context(|| format!("classifying {source}"))? {
        seen.insert_all(&batch)?;
        counts.read += batch.num_rows() as u64;
        let reasons = column(&batch, col::REJECT_REASON)?;
        let good = filter_record_batch(&batch, &is_null(reasons.as_ref())?)?;
        counts.classified += good.num_rows() as u64;
        counts.positive += true_count(&good, col::POSITIVE_REVIEW)?;
        counts.null_reviews += true_count(&good, col::REVIEW_IS_NULL)?;
        let classified = RecordBatch::try_new(
            CLASSIFIED.clone(),
            vec![cast(&column(&good, col::CID)?, &DataType::Utf8)?, column(&good, col::POSITIVE_REVIEW)?],
        )?;
        file.write(&classified).await?;
        if reasons.null_count() < batch.num_rows() {
            let bad = filter_record_batch(&batch, &is_not_null(reasons.as_ref())?)?;
            counts.rejected += bad.num_rows() as u64;
            append_rejects(&bad, &mut rejected)?;
        }
    }
    file.close().await?;
    // Partitions finish in any order; a person reads rejects in file order.
    rejected.sort_by_key(|(line, _)| *line);
    let rejected: Vec<u8> = rejected.into_iter().flat_map(|(_, entry)| entry).collect();
    let mut rejects_partition = lake.begin(rejects, date)?;
    rejects_partition.put("rejects.jsonl", rejected).await?;
    Ok(StagedClassify { counts, classified: partition, rejects: rejects_partition, rejects_url: lake.partition_url(rejects, date) })
}

/// The line numbers of the records received so far. Every record of the file has its own
/// line, so a line seen twice means the engine delivered rows twice (as happened when Ballista
/// ran a multi-partition review scan whole in every task; see `ReviewCsvTable`). The task then
/// fails (and is retried) instead of writing doubled numbers.
#[derive(Default)]
struct LineSet {
    bits: Vec<u64>,
}

impl LineSet {
    fn insert_all(&mut self, batch: &RecordBatch) -> Result<()> {
        let lines = column(batch, col::LINE)?;
        let lines = lines.as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>().context("line")?;
        for line in lines.values().iter().map(|l| *l as usize) {
            let (word, bit) = (line / 64, 1u64 << (line % 64));
            if word >= self.bits.len() {
                self.bits.resize(word + 1, 0);
            }
            if self.bits[word] & bit != 0 {
                anyhow::bail!(
                    "the engine delivered the record on line {line} twice; refusing to write doubled \
                     numbers (a task read more than its share of the file: please report this)"
                );
            }
            self.bits[word] |= bit;
        }
        Ok(())
    }
}

/// The metric has one row per customer; more means the engine delivered rows twice.
fn check_one_row_per_customer(batches: &[RecordBatch]) -> Result<()> {
    let mut customers = std::collections::HashSet::new();
    for batch in batches {
        let ids = column(batch, col::CUSTOMERID)?;
        let ids = ids.as_primitive_opt::<datafusion::arrow::datatypes::Int32Type>().context("customerid")?;
        for id in ids.iter().flatten() {
            if !customers.insert(id) {
                anyhow::bail!("the engine delivered customer {id} twice; refusing to write doubled numbers");
            }
        }
    }
    Ok(())
}

fn column(batch: &RecordBatch, name: &str) -> Result<datafusion::arrow::array::ArrayRef> {
    batch.column_by_name(name).cloned().with_context(|| format!("the plan's output has no column `{name}`"))
}

fn true_count(batch: &RecordBatch, name: &str) -> Result<u64> {
    let values = column(batch, name)?;
    let flags: &BooleanArray = values.as_boolean_opt().with_context(|| format!("`{name}` is not boolean"))?;
    Ok(flags.true_count() as u64)
}

/// One JSON line per rejected record: `line`, `reason` and the record, as text when it is
/// UTF-8 and as `record_base64` otherwise, so that nothing of it is lost. Kept with its line
/// number for sorting.
fn append_rejects(bad: &RecordBatch, out: &mut Vec<(u64, Vec<u8>)>) -> Result<()> {
    let lines = column(bad, col::LINE)?;
    let lines = lines.as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>().context("line")?;
    let reasons = column(bad, col::REJECT_REASON)?;
    let reasons = reasons.as_string_opt::<i32>().context("reject_reason")?;
    let records = column(bad, col::REJECTED_RECORD)?;
    let records = records.as_binary_opt::<i32>().context("rejected_record")?;
    for i in 0..bad.num_rows() {
        let raw = records.value(i);
        let mut entry = serde_json::json!({"line": lines.value(i), "reason": reasons.value(i)});
        match std::str::from_utf8(raw) {
            Ok(text) => entry["record"] = text.into(),
            Err(_) => entry["record_base64"] = base64::engine::general_purpose::STANDARD.encode(raw).into(),
        }
        let mut json = serde_json::to_vec(&entry)?;
        json.push(b'\n');
        out.push((lines.value(i), json));
    }
    Ok(())
}

struct MetricOutput {
    rows: u64,
    invalid_cid: u64,
    no_customer: u64,
    partition: Url,
    batches: Vec<RecordBatch>,
}

/// metric: the day's staged purchases and reviews into the warehouse table of the lake.
async fn metric(engine: &Engine, lake: &Lake, date: RunDate, semantics: Semantics) -> Result<MetricOutput> {
    let purchases = engine.parquet(&lake.partition_url(Table::STAGE_PURCHASES, date)).await?;
    let classified = engine.parquet(&lake.partition_url(Table::STAGE_REVIEWS, date)).await?;
    let plan = user_behavior_metric(purchases.clone(), classified.clone(), date, semantics)?;
    let batches: Vec<RecordBatch> = engine.execute(plan, &format!("ubm metric {date}")).await?.try_collect().await?;
    check_one_row_per_customer(&batches)?;
    let matches: Vec<RecordBatch> =
        engine.execute(review_matches(purchases, classified)?, &format!("ubm review matches {date}")).await?.try_collect().await?;
    let match_rows: usize = matches.iter().map(RecordBatch::num_rows).sum();
    anyhow::ensure!(match_rows == 1, "the engine delivered {match_rows} rows for a one-row aggregate");
    let sum_of = |name: &str| -> Result<u64> {
        let mut total = 0;
        for batch in &matches {
            let values = cast(&column(batch, name)?, &DataType::Int64)?;
            total += values.as_primitive::<Int64Type>().iter().flatten().sum::<i64>() as u64;
        }
        Ok(total)
    };
    let reviews = sum_of(REVIEWS)?;
    tracing::debug!(reviews, "matched reviews against customers");
    let mut partition = lake.begin(Table::METRIC, date)?;
    // As Spark's partitionBy, the partition column lives in the directory name only.
    let schema = ubm_jobs::schema::USER_BEHAVIOR_METRIC.clone();
    let without_date: Vec<usize> = (0..schema.fields().len()).filter(|i| schema.field(*i).name() != col::INSERT_DATE).collect();
    let mut file = partition.parquet("part-00000.parquet", std::sync::Arc::new(schema.project(&without_date)?))?;
    for batch in &batches {
        file.write(&batch.project(&without_date)?).await?;
    }
    let rows = file.close().await?;
    Ok(MetricOutput {
        rows,
        invalid_cid: sum_of(INVALID_CID)?,
        no_customer: sum_of(NO_CUSTOMER)?,
        partition: partition.commit().await?,
        batches,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn lines(values: &[u64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(col::LINE, DataType::UInt64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(values.to_vec()))]).expect("batch")
    }

    fn customers(values: &[i32]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(col::CUSTOMERID, DataType::Int32, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(values.to_vec()))]).expect("batch")
    }

    #[test]
    fn a_record_delivered_twice_is_refused_across_batches() {
        let mut seen = LineSet::default();
        seen.insert_all(&lines(&[2, 3, 700])).expect("first delivery");
        seen.insert_all(&lines(&[4, 65, 64])).expect("new lines");
        let err = seen.insert_all(&lines(&[5, 700])).expect_err("line 700 again");
        assert!(err.to_string().contains("line 700 twice"), "{err}");
    }

    #[test]
    fn a_customer_delivered_twice_is_refused() {
        check_one_row_per_customer(&[customers(&[1, 2]), customers(&[3])]).expect("distinct");
        let err = check_one_row_per_customer(&[customers(&[1, 2]), customers(&[2])]).expect_err("2 again");
        assert!(err.to_string().contains("customer 2 twice"), "{err}");
    }
}
