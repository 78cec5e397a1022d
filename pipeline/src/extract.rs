//! extract: the as-of snapshot of `retail.user_purchase` (every row with `invoice_date < D + 1
//! day`) into the stage zone, `stage/user_purchase/insert_date=D/`.
//!
//! From Postgres the extract runs where the engine runs plans: in slices of one exported
//! snapshot, each slice a task that streams its rows straight into a part file
//! ([`ubm_cluster::exec::postgres`], [`ubm_cluster::exec::parts`]); on a cluster the rows never pass
//! through the driver. The embedded SQLite database is a file on the driver's machine, so it is
//! read here, on a thread of its own, while this task encodes Parquet.

use std::time::Instant;

use ubm_cluster::Engine;
use ubm_cluster::exec::parts::{PartsKind, PartsSpec};
use ubm_cluster::exec::postgres::PgExtract;
use ubm_jobs::RunDate;
use ubm_jobs::schema::USER_PURCHASE;

use crate::error::{PipelineError, Result};
use crate::lake::{Lake, RunStamp, Table};
use crate::oltp::{Oltp, connect_postgres, postgres_error};
use crate::secret::SecretUrl;

/// extract for `date`; returns the rows staged.
pub(crate) async fn extract(engine: &Engine, oltp: &Oltp, lake: &Lake, date: RunDate, stamp: &RunStamp) -> Result<u64> {
    let clock = Instant::now();
    let rows = match oltp {
        Oltp::Postgres(url) => extract_in_slices(engine, url, lake, date, stamp).await?,
        Oltp::Sqlite(db) => extract_here(db, lake, date, stamp).await?,
    };
    tracing::debug!(elapsed_ms = clock.elapsed().as_millis(), rows, "staged the snapshot from {oltp}");
    Ok(rows)
}

/// The Postgres extract: the snapshot is exported from a transaction this task keeps open
/// until every slice has read, then the slices' part files are committed as the partition.
async fn extract_in_slices(engine: &Engine, url: &SecretUrl, lake: &Lake, date: RunDate, stamp: &RunStamp) -> Result<u64> {
    let client = connect_postgres(url).await?;
    let snapshotting = || postgres_error("exporting a snapshot of retail.user_purchase", url);
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(snapshotting())?;
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), (pg_relation_size(to_regclass('retail.user_purchase')) \
             / current_setting('block_size')::int8)::int8, to_regclass('retail.user_purchase') IS NOT NULL, \
             current_setting('block_size')::int8",
            &[],
        )
        .await
        .map_err(snapshotting())?;
    let (snapshot, blocks, exists, block_bytes): (String, Option<i64>, bool, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    if !exists {
        return Err(PipelineError::BadInput {
            what: format!("the OLTP database {}", url.redacted()),
            reason: "it has no table retail.user_purchase; load one with `ubm datagen --oltp postgres://…`".to_string(),
        });
    }
    let extract = PgExtract {
        url: url.expose().to_string(),
        shown: url.redacted(),
        before: date.next_day().to_string(),
        snapshot,
        blocks: blocks.unwrap_or(0).max(0) as u64,
        block_bytes: block_bytes.max(1) as u64,
    };
    let tasks = lake.task_output(date, stamp)?;
    let plan = engine.postgres_slices(extract)?;
    let reports = engine.write_parts(plan, PartsSpec::new(tasks.url(), PartsKind::Rows), &format!("ubm extract {date}")).await?;
    tracing::debug!(?reports, "the extract slices' reports");
    // Every slice has read: the snapshot may go.
    client.batch_execute("COMMIT").await.map_err(postgres_error("ending the snapshot's transaction", url))?;
    let mut partition = lake.begin(Table::STAGE_PURCHASES, date, stamp)?;
    let files: Vec<&str> = reports.iter().filter_map(|r| r.file.as_deref()).collect();
    if partition.adopt_parts(&tasks, &files, "part", ".parquet").await? == 0 {
        partition.parquet("part-00000.parquet", USER_PURCHASE.clone())?.close().await?;
    }
    tasks.remove().await?;
    let rows = reports.iter().map(|r| r.rows).sum();
    partition.record_result(&rows, &[])?;
    partition.commit().await?;
    Ok(rows)
}

/// The SQLite extract: read on a thread of its own while this task encodes Parquet, through a
/// channel of a few batches.
async fn extract_here(db: &std::path::Path, lake: &Lake, date: RunDate, stamp: &RunStamp) -> Result<u64> {
    let (batches, mut received) = tokio::sync::mpsc::channel(4);
    let db = db.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || crate::oltp::extract_sqlite(&db, date, batches));
    let mut partition = lake.begin(Table::STAGE_PURCHASES, date, stamp)?;
    let mut file = partition.parquet("part-00000.parquet", USER_PURCHASE.clone())?;
    while let Some(batch) = received.recv().await {
        file.write(&batch).await?;
    }
    reader.await.map_err(|e| PipelineError::Stopped { what: "the OLTP reader", source: Some(e) })??;
    let rows = file.close().await?;
    partition.record_result(&rows, &[])?;
    partition.commit().await?;
    Ok(rows)
}
