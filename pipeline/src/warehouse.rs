//! The SQL warehouse: `public.user_behavior_metric` in Postgres. Loading date D replaces exactly
//! the rows of D in one transaction. Redshift speaks the same protocol and DDL but has no
//! `pg_advisory_xact_lock`, which the load takes: it is not supported as is (and never was tested).

use datafusion::arrow::record_batch::RecordBatch;
use futures::{SinkExt, TryStreamExt};
use ubm_cluster::Engine;
use ubm_jobs::schema::AMOUNT_SPENT;

use crate::lake::{Lake, Table};

use crate::error::{PipelineError, Result};
use crate::oltp::{connect_postgres, postgres_error};
use crate::secret::SecretUrl;

/// The original DDL of the target table.
pub const METRIC_DDL: &str = "CREATE TABLE IF NOT EXISTS public.user_behavior_metric (
    customerid INTEGER, amount_spent DECIMAL(18, 5), review_score INTEGER,
    review_count INTEGER, insert_date DATE)";

/// Replaces date `date`'s rows of `public.user_behavior_metric` with the lake's committed metric
/// partition of `date`, streamed from its files; readers see the old day or the new day whole.
pub async fn load_metric(url: &SecretUrl, date: ubm_jobs::RunDate, engine: &Engine, lake: &Lake) -> Result<u64> {
    load_metric_from(url, date, engine, lake, Table::METRIC).await
}

/// [`load_metric`] from `table`'s partition (`ubm publish` loads the held table before it
/// publishes it in the lake).
pub async fn load_metric_from(url: &SecretUrl, date: ubm_jobs::RunDate, engine: &Engine, lake: &Lake, table: Table) -> Result<u64> {
    let partition = lake.partition_url(table, date)?;
    let files = lake.readable_files(table, date).await?;
    let metric = engine.parquet_files(&files, &*crate::metric::file_schema()?, "the metric partition").await?;
    let with_date = crate::metric::with_partition_column(metric, date)?;
    // Connect first: an unreachable warehouse fails before any job starts.
    let mut client = connect_postgres(url).await?;
    let reading = format!("reading {partition}");
    let mut rows = engine.execute(with_date, &format!("ubm load {date}")).await?;
    let loading = || postgres_error("loading public.user_behavior_metric", url);
    let tx = client.transaction().await.map_err(loading())?;
    // One load at a time per database, held until the transaction ends: two runs of a date
    // (from two lakes, say) would otherwise both delete the old rows and both insert theirs.
    // It also serializes the first CREATE TABLE, which Postgres does not make safe to race.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOAD_LOCK])
        .await
        .map_err(postgres_error("waiting for other loads of public.user_behavior_metric", url))?;
    tx.batch_execute(METRIC_DDL).await.map_err(postgres_error("creating public.user_behavior_metric", url))?;
    check_columns(&tx, url).await?;
    tx.execute("DELETE FROM public.user_behavior_metric WHERE insert_date = $1", &[&date.naive()])
        .await
        .map_err(postgres_error("removing the previous rows of the date", url))?;
    let sink = tx
        .copy_in("COPY public.user_behavior_metric (customerid, amount_spent, review_score, review_count, insert_date) FROM STDIN WITH (FORMAT csv)")
        .await
        .map_err(loading())?;
    futures::pin_mut!(sink);
    while let Some(batch) = rows.try_next().await.map_err(PipelineError::query(&reading))? {
        sink.send(bytes::Bytes::from(to_csv(&batch)?)).await.map_err(loading())?;
    }
    let rows = sink.finish().await.map_err(loading())?;
    tx.commit().await.map_err(postgres_error("committing the load of public.user_behavior_metric", url))?;
    Ok(rows)
}

/// The advisory lock key of metric loads ("ubm" and the table, as one 64-bit number).
const LOAD_LOCK: i64 = 0x0075_626d_5f75_626d;

/// Refuses a table whose columns cannot hold the day's values exactly (a `numeric(6,2)`
/// `amount_spent` would round every amount silently), before anything is deleted.
async fn check_columns(tx: &tokio_postgres::Transaction<'_>, url: &SecretUrl) -> Result<()> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text, numeric_precision::int4, numeric_scale::int4 \
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'user_behavior_metric'",
            &[],
        )
        .await
        .map_err(postgres_error("reading the columns of public.user_behavior_metric", url))?;
    let (precision, scale) = (i32::from(AMOUNT_SPENT.0), i32::from(AMOUNT_SPENT.1));
    for (column, wanted) in
        [("customerid", "integer"), ("amount_spent", "numeric"), ("review_score", "integer"), ("review_count", "integer"), ("insert_date", "date")]
    {
        let found = rows.iter().find(|r| r.get::<_, String>(0) == column);
        let problem = match found {
            None => Some("is missing".to_string()),
            Some(row) => {
                let data_type: String = row.get(1);
                let (p, s): (Option<i32>, Option<i32>) = (row.get(2), row.get(3));
                let holds = match wanted {
                    "integer" => matches!(data_type.as_str(), "integer" | "bigint"),
                    // Unconstrained numeric holds anything; numeric(p,s) must keep every digit.
                    "numeric" => data_type == "numeric" && p.zip(s).is_none_or(|(p, s)| s >= scale && p - s >= precision - scale),
                    _ => data_type == wanted,
                };
                let shown = match (p, s) {
                    (Some(p), Some(s)) if wanted == "numeric" => format!("{data_type}({p},{s})"),
                    _ => data_type,
                };
                (!holds).then(|| format!("is {shown}, which cannot hold the values exactly"))
            }
        };
        if let Some(problem) = problem {
            return Err(PipelineError::BadInput {
                what: format!("public.user_behavior_metric.{column} at {}", url.redacted()),
                reason: format!(
                    "{problem}: it must be {}; alter the table (nothing was deleted)",
                    if wanted == "numeric" { format!("numeric({precision},{scale}) or wider") } else { wanted.to_string() }
                ),
            });
        }
    }
    Ok(())
}

/// Arrow's CSV writer prints decimals exactly (`123.45000`) and dates as `YYYY-MM-DD`.
fn to_csv(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    arrow::csv::WriterBuilder::new()
        .with_header(false)
        .build(&mut out)
        .write(batch)
        .map_err(PipelineError::arrow("encoding the metric for the warehouse"))?;
    Ok(out)
}
