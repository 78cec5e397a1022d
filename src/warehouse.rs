//! The SQL warehouse: `public.user_behavior_metric` in Postgres (Redshift speaks the same
//! protocol and DDL). Loading date D replaces exactly the rows of D in one transaction.

use anyhow::{Context, Result};
use datafusion::arrow::record_batch::RecordBatch;
use futures::SinkExt;

use crate::oltp::connect_postgres;
use crate::secret::SecretUrl;

/// The original DDL of the target table.
pub const METRIC_DDL: &str = "CREATE TABLE IF NOT EXISTS public.user_behavior_metric (
    customerid INTEGER, amount_spent DECIMAL(18, 5), review_score INTEGER,
    review_count INTEGER, insert_date DATE)";

/// Replaces date `date`'s rows of `public.user_behavior_metric` with `batches` (schema
/// [`ubm_jobs::schema::USER_BEHAVIOR_METRIC`]); readers see the old day or the new day whole.
pub async fn load_metric(url: &SecretUrl, date: ubm_jobs::RunDate, batches: &[RecordBatch]) -> Result<u64> {
    let mut client = connect_postgres(url).await?;
    client.batch_execute(METRIC_DDL).await.context("creating public.user_behavior_metric")?;
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM public.user_behavior_metric WHERE insert_date = $1", &[&date.naive()])
        .await
        .context("removing the previous rows of the date")?;
    let sink = tx
        .copy_in("COPY public.user_behavior_metric (customerid, amount_spent, review_score, review_count, insert_date) FROM STDIN WITH (FORMAT csv)")
        .await?;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(to_csv(batches)?)).await?;
    let rows = sink.finish().await.context("loading public.user_behavior_metric")?;
    tx.commit().await.context("committing the load of public.user_behavior_metric")?;
    Ok(rows)
}

/// Arrow's CSV writer prints decimals exactly (`123.45000`) and dates as `YYYY-MM-DD`.
fn to_csv(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new().with_header(false).build(&mut out);
        for batch in batches {
            writer.write(batch)?;
        }
    }
    Ok(out)
}
