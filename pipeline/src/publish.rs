//! `ubm publish`: a day its checks held, published exactly as its run staged it, once a person
//! has looked at it.
//!
//! The held table (`held/user_behavior_metric/insert_date=D/`, committed by the run like every
//! partition) is copied into the published table by the commit protocol every partition uses,
//! under the run's own id and the date's lease, so the day is then complete as if its checks
//! had passed; nothing is recomputed. The warehouse is loaded first, from the held table (a day
//! whose run loads a warehouse is refused without one), so that a failed load publishes
//! nothing. The run report records who accepted which failed checks, and when; the held copy
//! is removed last.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ubm_cluster::Engine;
use ubm_jobs::RunDate;

use crate::error::{PipelineError, Result};
use crate::lake::{CommitFence, Lake, RunStamp, Table};
use crate::lease::Lease;
use crate::run::write_report;
use crate::run_report::{Acceptance, RunReport, RunStatus};
use crate::secret::SecretUrl;
use crate::task::{RetryPolicy, TaskReport, run_task};

/// What `ubm publish` is asked for.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub lake: Lake,
    pub date: RunDate,
    /// Load the published day into this warehouse too.
    pub warehouse: Option<SecretUrl>,
    /// Who accepts the day (recorded in the report).
    pub by: String,
    pub retry: RetryPolicy,
    pub wait_for_lease: Duration,
}

/// Publishes the held day of `request`; returns its report, now `succeeded`.
pub async fn publish(engine: &Engine, request: &PublishRequest) -> Result<RunReport> {
    let (lake, date) = (&request.lake, request.date);
    let report = held_report(lake, date).await?;
    let lease = Arc::new(Lease::acquire(lake, date, &report.run_id, request.wait_for_lease).await?);
    let fence: Arc<dyn CommitFence> = Arc::clone(&lease) as Arc<dyn CommitFence>;
    let stamp = RunStamp { run_id: report.run_id.clone(), fence: Some(fence) };
    let outcome = publish_leased(engine, request, report, &stamp, &lease).await;
    drop(stamp);
    if let Ok(lease) = Arc::try_unwrap(lease) {
        lease.release().await;
    }
    outcome
}

/// The date's report, which must say held.
async fn held_report(lake: &Lake, date: RunDate) -> Result<RunReport> {
    let what = format!("{date} in {}", lake.root());
    let report = crate::day::read_json::<RunReport>(lake, &format!("_runs/{date}.json"))
        .await?
        .ok_or_else(|| PipelineError::BadInput { what: what.clone(), reason: "no run report: the date was never run, so nothing is held".into() })?;
    if report.status != RunStatus::Held {
        return Err(PipelineError::BadInput {
            what,
            reason: format!(
                "its last run ({}) {}: only a day its checks held is published by hand; rerun the date instead",
                report.run_id, report.status
            ),
        });
    }
    Ok(report)
}

async fn publish_leased(engine: &Engine, request: &PublishRequest, mut report: RunReport, stamp: &RunStamp, lease: &Lease) -> Result<RunReport> {
    let (lake, date) = (&request.lake, request.date);
    // The report may have changed while the lease was awaited (a rerun).
    let current = held_report(lake, date).await?;
    if current.run_id != report.run_id {
        return Err(PipelineError::BadInput { what: format!("{date}"), reason: format!("was run again ({}) while publish waited", current.run_id) });
    }
    if report.warehouse.is_some() && request.warehouse.is_none() {
        return Err(PipelineError::BadInput {
            what: format!("ubm publish --date {date}"),
            reason: format!(
                "its run loads into a warehouse ({}): pass --warehouse (or UBM_WAREHOUSE) so that the warehouse gets the day the lake publishes",
                report.warehouse.as_deref().unwrap_or_default()
            ),
        });
    }
    let held = lake.committed(Table::HELD_METRIC, date).await?.filter(|held| held.marker.run_id == report.run_id).ok_or_else(|| {
        PipelineError::BadInput {
            what: format!("{date} in {}", lake.root()),
            reason: format!("the report says held, but no held table of run {} is there: rerun the date", report.run_id),
        }
    })?;
    report.tasks.retain(|t| t.name != "publish" && t.name != "load");
    // The warehouse first, from the held table: if it fails, nothing is published anywhere and
    // the day stays held for another `ubm publish`. Loading replaces the date's rows, so a
    // publish stopped after it and run again loads the same rows once more.
    let load = match &request.warehouse {
        None => TaskReport::skipped("load", "no --warehouse configured; the lake table is the output"),
        Some(url) => {
            let (task, rows) =
                run_task("load", request.retry, || crate::warehouse::load_metric_from(url, date, engine, lake, Table::HELD_METRIC)).await;
            report.counts.warehouse_rows_loaded = rows;
            task
        }
    };
    let loaded = load.status != crate::TaskStatus::Failed;
    report.tasks.push(load);
    if !loaded {
        write_report(lake, lease, &report).await?;
        return Err(PipelineError::Internal {
            what: format!(
                "loading the held table of {date} into the warehouse failed; nothing was published and the day stays held (see its report)"
            ),
        });
    }
    let (task, published) = run_task("publish", request.retry, || copy_into_metric(lake, date, stamp, held.marker.result.clone())).await;
    report.tasks.push(task);
    let Some(partition) = published else {
        write_report(lake, lease, &report).await?;
        return Err(PipelineError::Internal { what: format!("publishing the held table of {date} failed; the day stays held (see its report)") });
    };
    let accepted: Vec<String> = report.checks.iter().filter(|c| c.holds()).map(|c| c.name.clone()).collect();
    report.accepted = Some(Acceptance { by: request.by.clone(), at: Utc::now(), checks: accepted });
    report.metric_partition = Some(partition);
    report.status = RunStatus::Succeeded;
    report.published = None;
    write_report(lake, lease, &report).await?;
    // Last: until the report says published, the held copy is what a second publish reads.
    if let Err(e) = lake.remove_partition(Table::HELD_METRIC, date).await {
        tracing::warn!("{date} is published; its held copy could not be removed (the next run of the date removes it): {}", e.describe());
    }
    Ok(report)
}

/// Copies the held table's files into a new version of the published one, with the counts the
/// run committed with it; returns the published partition.
async fn copy_into_metric(lake: &Lake, date: RunDate, stamp: &RunStamp, result: Option<serde_json::Value>) -> Result<String> {
    let files = lake.readable_files(Table::HELD_METRIC, date).await?;
    let mut partition = lake.begin(Table::METRIC, date, stamp)?;
    for file in &files {
        let name = file.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default().to_string();
        partition.copy_in(&name, file).await?;
    }
    partition.record_result(&result, &[Table::STAGE_PURCHASES, Table::STAGE_REVIEWS])?;
    Ok(partition.commit().await?.to_string())
}
