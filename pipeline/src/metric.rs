//! metric: the day's staged purchases and classified reviews into the warehouse table of the
//! lake, with the match counts of the run report.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type};
use futures::TryStreamExt;
use ubm_cluster::Engine;
use ubm_jobs::metric::{INVALID_CID, NO_CUSTOMER, REVIEWS, review_matches};
use ubm_jobs::schema::{USER_BEHAVIOR_METRIC, col};
use ubm_jobs::{RunDate, Semantics, user_behavior_metric};
use url::Url;

use crate::classify::{column, not_of_type};
use crate::error::{PipelineError, Result};
use crate::lake::{Lake, RunStamp, Table};

/// What metric wrote and counted.
pub(crate) struct MetricOutput {
    pub rows: u64,
    pub invalid_cid: u64,
    pub no_customer: u64,
    pub partition: Url,
    pub batches: Vec<RecordBatch>,
}

/// Runs `plan` to the end and keeps its rows.
async fn collect(engine: &Engine, plan: datafusion::logical_expr::LogicalPlan, job: String) -> Result<Vec<RecordBatch>> {
    let stream = engine.execute(plan, &job).await?;
    stream.try_collect().await.map_err(PipelineError::query(job))
}

/// metric: the day's staged purchases and reviews into the warehouse table of the lake.
pub(crate) async fn metric(engine: &Engine, lake: &Lake, date: RunDate, semantics: Semantics, stamp: &RunStamp) -> Result<MetricOutput> {
    let purchases = engine.parquet(&lake.partition_url(Table::STAGE_PURCHASES, date)?).await?;
    let classified = engine.parquet(&lake.partition_url(Table::STAGE_REVIEWS, date)?).await?;
    let plan = user_behavior_metric(purchases.clone(), classified.clone(), date, semantics)
        .map_err(PipelineError::query("planning the metric"))?;
    let batches = collect(engine, plan, format!("ubm metric {date}")).await?;
    check_one_row_per_customer(&batches)?;
    let plan = review_matches(purchases, classified).map_err(PipelineError::query("planning the review matches"))?;
    let matches = collect(engine, plan, format!("ubm review matches {date}")).await?;
    let match_rows: usize = matches.iter().map(RecordBatch::num_rows).sum();
    if match_rows != 1 {
        return Err(PipelineError::Internal { what: format!("the engine delivered {match_rows} rows for a one-row aggregate") });
    }
    let sum_of = |name: &str| -> Result<u64> {
        let mut total = 0;
        for batch in &matches {
            let values = cast(&column(batch, name)?, &DataType::Int64).map_err(PipelineError::arrow("summing the review matches"))?;
            total += values.as_primitive::<Int64Type>().iter().flatten().sum::<i64>() as u64;
        }
        Ok(total)
    };
    tracing::debug!(reviews = sum_of(REVIEWS)?, "matched reviews against customers");
    let mut partition = lake.begin(Table::METRIC, date, stamp)?;
    // As Spark's partitionBy, the partition column lives in the directory name only.
    let schema = USER_BEHAVIOR_METRIC.clone();
    let without_date: Vec<usize> = (0..schema.fields().len()).filter(|i| schema.field(*i).name() != col::INSERT_DATE).collect();
    let projecting = || PipelineError::arrow("dropping the partition column");
    let file_schema = Arc::new(schema.project(&without_date).map_err(projecting())?);
    let mut file = partition.parquet("part-00000.parquet", file_schema)?;
    for batch in &batches {
        file.write(&batch.project(&without_date).map_err(projecting())?).await?;
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

/// The metric has one row per customer; more means the engine delivered rows twice.
fn check_one_row_per_customer(batches: &[RecordBatch]) -> Result<()> {
    let mut customers = std::collections::HashSet::new();
    for batch in batches {
        let ids = column(batch, col::CUSTOMERID)?;
        let ids = ids.as_primitive_opt::<Int32Type>().ok_or_else(|| not_of_type(col::CUSTOMERID, "Int32"))?;
        for id in ids.iter().flatten() {
            if !customers.insert(id) {
                return Err(PipelineError::Duplicate { what: format!("customer {id}") });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn customers(values: &[i32]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(col::CUSTOMERID, DataType::Int32, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(values.to_vec()))]).expect("batch")
    }

    #[test]
    fn a_customer_delivered_twice_is_refused() {
        check_one_row_per_customer(&[customers(&[1, 2]), customers(&[3])]).expect("distinct");
        let err = check_one_row_per_customer(&[customers(&[1, 2]), customers(&[2])]).expect_err("2 again");
        assert!(err.to_string().contains("customer 2 twice"), "{err}");
    }
}
