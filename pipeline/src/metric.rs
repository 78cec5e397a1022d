//! metric: the day's staged purchases and classified reviews into the warehouse table of the
//! lake, with the match counts of the run report.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, sum};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;
use ubm_cluster::Engine;
use ubm_cluster::exec::parts::{PartsKind, PartsSpec};
use ubm_jobs::metric::{INVALID_CID, NO_CUSTOMER, REVIEWS, review_cids, review_matches};
use ubm_jobs::schema::{CLASSIFIED, USER_BEHAVIOR_METRIC, USER_PURCHASE, col};
use ubm_jobs::{RunDate, Semantics, user_behavior_metric};
use url::Url;

use crate::classify::column;
use crate::error::{PipelineError, Result};
use crate::lake::{Lake, RunStamp, Table};

/// What metric wrote and counted.
pub(crate) struct MetricOutput {
    pub rows: u64,
    pub invalid_cid: u64,
    pub no_customer: u64,
    /// Where the table was committed: [`Table::METRIC`], or [`Table::HELD_METRIC`] when the
    /// run's checks held it.
    pub table: Table,
    pub partition: Url,
    /// The customers who spent most, for the summary: [`TOP_CUSTOMERS`] rows at most.
    pub top_customers: Vec<RecordBatch>,
}

/// How many of the day's customers the run's summary shows.
pub const TOP_CUSTOMERS: usize = 5;

/// Runs `plan` to the end and keeps its rows (plans of a few rows only).
async fn collect(engine: &Engine, plan: LogicalPlan, job: String) -> Result<Vec<RecordBatch>> {
    let stream = engine.execute(plan, &job).await?;
    stream.try_collect().await.map_err(PipelineError::query(job))
}

/// [`collect`] in this process ([`Engine::execute_here`]): for the staged metric's few rows.
async fn collect_here(engine: &Engine, plan: LogicalPlan, doing: String) -> Result<Vec<RecordBatch>> {
    let stream = engine.execute_here(plan).await?;
    stream.try_collect().await.map_err(PipelineError::query(doing))
}

/// metric: the day's staged purchases and reviews into the warehouse table of the lake. The
/// tasks that compute the table write it ([`ubm_cluster::exec::parts`]); the staged files are then
/// read back to check one row per customer before they are committed, to the table `audit`
/// picks from what was counted (the published table, or the held one: see `crate::audit`).
pub(crate) async fn metric(
    engine: &Engine,
    lake: &Lake,
    date: RunDate,
    semantics: Semantics,
    stamp: &RunStamp,
    audit: impl Fn(&MetricResult) -> Table,
) -> Result<MetricOutput> {
    // Only the files the commits listed: a stray copy in a partition is never read.
    let purchase_files = lake.readable_files(Table::STAGE_PURCHASES, date).await?;
    let purchases = engine.parquet_files(&purchase_files, &USER_PURCHASE, "the staged purchases").await?;
    let review_files = lake.readable_files(Table::STAGE_REVIEWS, date).await?;
    let classified = engine.parquet_files(&review_files, &CLASSIFIED, "the staged reviews").await?;
    let plan = user_behavior_metric(purchases.clone(), classified.clone(), date, semantics)
        .and_then(without_partition_column)
        .map_err(PipelineError::query("planning the metric"))?;
    // With the correct semantics the table's own review counts give the matched reviews, so
    // only the reviews' ids are scanned; the seed semantics multiply those counts, so there a
    // join of its own counts the matches.
    let matches = match semantics {
        Semantics::Correct => review_cids(classified),
        Semantics::Seed => review_matches(purchases, classified),
    }
    .map_err(PipelineError::query("planning the review matches"))?;
    let tasks = lake.task_output(date, stamp)?;
    // The match counts' job runs beside the table's, not after it, so that on a cluster it adds
    // no scheduling rounds of its own to the day. Both are waited for even when one fails: a job
    // dropped half-way would go on running on the cluster, and the table's tasks would go on
    // writing into the task directory that its failure removes.
    let job = format!("ubm metric {date}");
    let (reports, matches) = tokio::join!(
        engine.write_parts(plan, PartsSpec::new(tasks.url(), PartsKind::Rows), &job),
        collect(engine, matches, format!("ubm review matches {date}")),
    );
    let (reports, matches) = (reports?, matches?);
    let mut partition = lake.begin(Table::METRIC, date, stamp)?;
    let files: Vec<&str> = reports.iter().filter_map(|r| r.file.as_deref()).collect();
    if partition.adopt_parts(&tasks, &files, "part", ".parquet").await? == 0 {
        partition.parquet("part-00000.parquet", file_schema()?)?.close().await?;
    }
    tasks.remove().await?;
    let rows: u64 = reports.iter().map(|r| r.rows).sum();
    // The staged table (one row per customer) is read back here, in this process: as jobs on a
    // cluster, these two reads cost more in scheduling than in reading.
    let staged = engine.parquet(partition.staging_url(), &*file_schema()?).await?;
    let (matched, top_customers) = tokio::try_join!(
        check_staged_metric(engine, staged.clone(), rows, date),
        collect_here(engine, top_customers(staged, date)?, format!("reading the top customers of the staged metric of {date}")),
    )?;
    let match_rows: usize = matches.iter().map(RecordBatch::num_rows).sum();
    if match_rows != 1 {
        return Err(PipelineError::Internal { what: format!("the engine delivered {match_rows} rows for a one-row aggregate") });
    }
    let (reviews, invalid_cid) = (sum_of(&matches, REVIEWS)?, sum_of(&matches, INVALID_CID)?);
    let no_customer = match semantics {
        Semantics::Correct => {
            reviews.checked_sub(invalid_cid).and_then(|valid| valid.checked_sub(matched)).ok_or_else(|| PipelineError::Internal {
                what: format!(
                    "the metric counts {matched} matched reviews, more than the {reviews} reviews less {invalid_cid} without a customer id"
                ),
            })?
        }
        Semantics::Seed => sum_of(&matches, NO_CUSTOMER)?,
    };
    tracing::debug!(reviews, invalid_cid, no_customer, "matched reviews against customers");
    let counted = MetricResult { rows, invalid_cid, no_customer };
    partition.record_result(&counted, &[Table::STAGE_PURCHASES, Table::STAGE_REVIEWS])?;
    let table = audit(&counted);
    partition.divert(table);
    Ok(MetricOutput {
        rows,
        invalid_cid: counted.invalid_cid,
        no_customer: counted.no_customer,
        table,
        partition: partition.commit().await?,
        top_customers,
    })
}

/// What metric committed with its partition (see `crate::resume`).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) struct MetricResult {
    pub rows: u64,
    pub invalid_cid: u64,
    pub no_customer: u64,
}

/// The output of a metric this run committed before its driver stopped: the counts from its
/// marker, the top customers read back from the committed files (in this process).
pub(crate) async fn kept_metric(engine: &Engine, lake: &Lake, date: RunDate, counted: MetricResult) -> Result<MetricOutput> {
    let files = lake.readable_files(Table::METRIC, date).await?;
    let committed = engine.parquet_files(&files, &*file_schema()?, "the committed metric").await?;
    let top_customers = collect_here(engine, top_customers(committed, date)?, format!("reading the top customers of the metric of {date}")).await?;
    Ok(MetricOutput {
        rows: counted.rows,
        invalid_cid: counted.invalid_cid,
        no_customer: counted.no_customer,
        table: Table::METRIC,
        partition: lake.partition_url(Table::METRIC, date)?,
        top_customers,
    })
}

/// The sum of column `name` over `batches`.
fn sum_of(batches: &[RecordBatch], name: &str) -> Result<u64> {
    let mut total = 0;
    for batch in batches {
        let values = cast(&column(batch, name)?, &DataType::Int64).map_err(PipelineError::arrow("summing the review matches"))?;
        total += values.as_primitive::<Int64Type>().iter().flatten().sum::<i64>() as u64;
    }
    Ok(total)
}

/// The metric's columns but the partition column: as with Spark's `partitionBy`, the date lives
/// in the directory name only.
fn without_partition_column(plan: LogicalPlan) -> datafusion::common::Result<LogicalPlan> {
    let columns: Vec<Expr> = file_columns().map(col).collect();
    LogicalPlanBuilder::from(plan).project(columns)?.build()
}

fn file_columns() -> impl Iterator<Item = &'static str> {
    USER_BEHAVIOR_METRIC.fields().iter().map(|f| f.name().as_str()).filter(|name| *name != col::INSERT_DATE)
}

pub(crate) fn file_schema() -> Result<Arc<Schema>> {
    let schema = USER_BEHAVIOR_METRIC.clone();
    let indices: Vec<usize> = file_columns().filter_map(|name| schema.index_of(name).ok()).collect();
    Ok(Arc::new(schema.project(&indices).map_err(PipelineError::arrow("dropping the partition column"))?))
}

/// The [`TOP_CUSTOMERS`] customers of `metric` (the day's files) who spent most, ties by id,
/// with the date.
fn top_customers(metric: LogicalPlan, date: RunDate) -> Result<LogicalPlan> {
    let top = LogicalPlanBuilder::from(metric)
        // Largest first and NULL last, as the summary and the page list them.
        .sort(vec![col(col::AMOUNT_SPENT).sort(false, false), col(col::CUSTOMERID).sort(true, true)])
        .and_then(|b| b.limit(0, Some(TOP_CUSTOMERS)))
        .and_then(|b| b.build())
        .map_err(PipelineError::query("planning the top customers"))?;
    with_partition_column(top, date)
}

/// Rows of the metric's files (no `insert_date`) as rows of the table: the date put back.
pub(crate) fn with_partition_column(files: LogicalPlan, date: RunDate) -> Result<LogicalPlan> {
    let date = lit(ScalarValue::Date32(Some(date.days_since_epoch()))).alias(col::INSERT_DATE);
    LogicalPlanBuilder::from(files)
        .project(file_columns().map(col).chain([date]))
        .and_then(|b| b.build())
        .map_err(PipelineError::query("putting the date back into the metric's rows"))
}

/// Checks the staged metric before its commit: one row per customer, and the rows the tasks
/// reported, so a file written twice or lost is never published. Returns the sum of the rows'
/// review counts (with the correct semantics, the reviews that matched a customer), read in the
/// same pass.
async fn check_staged_metric(engine: &Engine, staged: LogicalPlan, reported: u64, date: RunDate) -> Result<u64> {
    let plan = LogicalPlanBuilder::from(staged)
        .aggregate(
            Vec::<Expr>::new(),
            vec![count(lit(1)).alias("rows"), count_distinct(col(col::CUSTOMERID)).alias("customers"), sum(col(col::REVIEW_COUNT)).alias("reviews")],
        )
        .and_then(|b| b.build())
        .map_err(PipelineError::query("planning the check of the staged metric"))?;
    let batches = collect_here(engine, plan, format!("checking the staged metric of {date}")).await?;
    let (rows, customers) = (sum_of(&batches, "rows")?, sum_of(&batches, "customers")?);
    if rows != reported {
        return Err(PipelineError::Internal { what: format!("the metric's tasks reported {reported} rows, but their files hold {rows}") });
    }
    if customers != rows {
        return Err(PipelineError::Duplicate {
            what: format!("{} rows of the same customers", rows - customers),
            cause: "a customer was aggregated in two tasks",
        });
    }
    sum_of(&batches, "reviews")
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::Field;
    use ubm_cluster::EngineKind;

    use super::*;

    /// Rows of the staged metric for customers `ids`, each with `ids[i] * 10` reviews.
    fn customers(engine: &Engine, ids: &[i32]) -> LogicalPlan {
        let schema =
            Arc::new(Schema::new(vec![Field::new(col::CUSTOMERID, DataType::Int32, true), Field::new(col::REVIEW_COUNT, DataType::Int32, true)]));
        let reviews: Vec<i32> = ids.iter().map(|id| id * 10).collect();
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(ids.to_vec())), Arc::new(Int32Array::from(reviews))]).expect("batch");
        engine.context().read_batch(batch).expect("plan").into_unoptimized_plan()
    }

    #[tokio::test]
    async fn staged_metric_files_with_a_customer_twice_or_rows_unreported_are_refused() {
        let engine = Engine::start(EngineKind::Local).await.expect("engine");
        let date: RunDate = "2011-12-31".parse().expect("date");
        let matched = check_staged_metric(&engine, customers(&engine, &[1, 2, 3]), 3, date).await.expect("one row each");
        assert_eq!(matched, 60, "the reviews of the table's rows add up");
        let err = check_staged_metric(&engine, customers(&engine, &[1, 2, 2]), 3, date).await.expect_err("2 twice");
        assert!(err.to_string().contains("twice"), "{err}");
        let err = check_staged_metric(&engine, customers(&engine, &[1, 2, 3]), 2, date).await.expect_err("a file nobody reported");
        assert!(err.to_string().contains("reported 2 rows"), "{err}");
    }
}
