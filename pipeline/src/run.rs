//! One run of the daily pipeline for date D: ingest, extract, classify, metric, load (several
//! dates: [`crate::backfill`]).
//!
//! ingest → classify and extract run concurrently; metric needs both; load needs metric.
//! In-process, a large local vendor file is classified while ingest copies it, and classify
//! commits only once ingest has ([`crate::ingest`]).
//! Every task is retried with exponential backoff before the run fails, unless its error says
//! another attempt cannot help (a missing file, a bad header, a refused permission: see
//! [`PipelineError::is_retryable`]). Every task writes a whole partition or nothing, so
//! rerunning a date is always safe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ubm_cluster::Engine;
use ubm_jobs::{RunDate, Semantics};
use url::Url;

use crate::audit::{AuditPolicy, CheckOutcome, DayFacts, audit};
use crate::classify::{ClassifyCounts, ClassifyOutput, classify_into};
use crate::error::{PipelineError, Result};
use crate::extract::extract;
use crate::ingest::{ingest, ingest_while_classifying, raw_copy, reads_source_directly};
use crate::lake::{CommitFence, Lake, RunStamp, Table};
use crate::lease::Lease;
use crate::metric::{MetricResult, kept_metric, metric};
use crate::oltp::Oltp;
use crate::resume::Kept;
use crate::run_report::{Counts, RunReport, RunStatus};
use crate::secret::SecretUrl;
use crate::task::{RetryPolicy, TaskReport, TaskStatus, retrying, run_task};

/// Everything a run needs besides the date.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The vendor file; `{date}` in it is replaced by the run date.
    pub reviews: String,
    /// Where `retail.user_purchase` is read from.
    pub oltp: Oltp,
    /// Where every table, the raw copy and the run report are written.
    pub lake: Lake,
    /// Also load the metric into this Postgres/Redshift database (`None`: the lake is the output).
    pub warehouse: Option<SecretUrl>,
    pub semantics: Semantics,
    pub retry: RetryPolicy,
    /// How long to wait for another run of the same date to finish (zero: fail at once).
    pub wait_for_lease: Duration,
    /// The run id of every date (`None`: a new one per date). A cluster-mode run keeps its id
    /// across restarts of its driver: a date that id already completed is not run again, and
    /// of a date it had begun, the tasks it committed are kept ([`crate::resume`]).
    pub run_id: Option<String>,
    /// The checks the day passes before it is published ([`crate::audit`]).
    pub audit: AuditPolicy,
}

/// The review file for `date`: `{date}` in the configured location is replaced.
pub fn reviews_for(location: &str, date: RunDate) -> Result<Url> {
    Ok(ubm_cluster::store::location_url(&location.replace("{date}", &date.to_string()))?)
}

/// Runs every task of `date` and writes the run report into the lake. Fails at once, changing
/// nothing, when another run holds the date (see [`crate::lease`]).
pub async fn run_date(engine: &Engine, config: &RunConfig, date: RunDate) -> Result<RunReport> {
    let run_id = config.run_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Taking the lease and writing the report meet the same outages as tasks: same retries.
    let (lease, _) = retrying("taking the date's lease", config.retry, || Lease::acquire(&config.lake, date, &run_id, config.wait_for_lease)).await;
    let lease = Arc::new(lease?);
    let fence: Arc<dyn CommitFence> = Arc::clone(&lease) as Arc<dyn CommitFence>;
    let stamp = RunStamp { run_id, fence: Some(fence) };
    let outcome = run_leased(engine, config, date, &stamp, &lease).await;
    drop(stamp);
    if let Ok(lease) = Arc::try_unwrap(lease) {
        lease.release().await;
    }
    outcome
}

/// The run of `date` once it holds the date's lease.
async fn run_leased(engine: &Engine, config: &RunConfig, date: RunDate, stamp: &RunStamp, lease: &Lease) -> Result<RunReport> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let lake = &config.lake;
    let policy = config.retry;
    lake.remember_run_staging(date, &stamp.run_id)?;
    // A resumed run's own staging is a stopped driver's too: none of it is adopted.
    let kept = match &config.run_id {
        Some(run_id) => retrying("finding what this run committed before", policy, || Kept::find(lake, date, run_id)).await.0?,
        None => Kept::default(),
    };
    let keep_staging_of = if config.run_id.is_some() { None } else { Some(stamp.run_id.as_str()) };
    if !kept.names().is_empty() {
        tracing::info!("resuming run {} of {date}: keeping {}, committed before its driver stopped", stamp.run_id, kept.names().join(", "));
    }
    match lake.remove_dead_staging(date, keep_staging_of).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!("removed the staging of {removed} stopped run(s) of {date}"),
        Err(e) => tracing::warn!("could not remove the staging of stopped runs of {date}: {}", e.describe()),
    }
    let mut report = RunReport {
        run_date: date.to_string(),
        run_id: stamp.run_id.clone(),
        status: RunStatus::Running,
        started_at,
        duration_ms: 0,
        engine: engine.kind().to_string(),
        partitions: Some(engine.partitions().clone()),
        semantics: config.semantics.to_string(),
        reviews: config.reviews.clone(),
        oltp: config.oltp.to_string(),
        lake: lake.root().to_string(),
        warehouse: config.warehouse.as_ref().map(|w| w.redacted()),
        tasks: Vec::new(),
        counts: Counts::default(),
        counts_reconcile: true,
        metric_partition: None,
        published: published_before(lake, date).await,
        checks: Vec::new(),
        accepted: None,
        top_customers: Vec::new(),
    };
    retrying("writing the run report", policy, || write_report(lake, lease, &report)).await.0?;

    let review_side = async {
        let source = match reviews_for(&config.reviews, date) {
            Ok(source) => source,
            Err(e) => return (TaskReport::failed_before_start("ingest", &e), TaskReport::skipped("classify", "ingest failed"), None),
        };
        if let Some(counts) = kept.classify.clone() {
            return (TaskReport::kept("ingest"), TaskReport::kept("classify"), Some(counts));
        }
        if kept.ingest.is_none() && reads_source_directly(engine, lake, &source).await {
            return ingest_while_classifying(engine, lake, &source, date, policy, stamp).await;
        }
        let (ingest, raw) = match kept.ingest {
            Some(_) => (TaskReport::kept("ingest"), raw_copy(lake, date).ok()),
            None => run_task("ingest", policy, || ingest(engine, lake, &source, date, stamp)).await,
        };
        let Some(raw) = raw else {
            return (ingest, TaskReport::skipped("classify", "ingest failed"), None);
        };
        let (classify, counts) =
            run_task("classify", policy, || classify_into(engine, &raw, ClassifyOutput::staged_reviews(lake, date, stamp))).await;
        (ingest, classify, counts)
    };
    let purchase_side = async {
        match kept.extract {
            Some(rows) => (TaskReport::kept("extract"), Some(rows)),
            None => run_task("extract", policy, || extract(engine, &config.oltp, lake, date, stamp)).await,
        }
    };
    let ((ingest, classify, classified), (extract, purchases)) = tokio::join!(review_side, purchase_side);

    let mut tasks = vec![ingest, extract, classify];
    let mut counts = Counts { purchase_rows_extracted: purchases.unwrap_or(0), ..review_counts(classified.as_ref()) };
    let mut top_customers = Vec::new();
    let mut metric_partition = None;
    let mut held = false;
    let mut checks = Vec::new();
    if classified.is_some() && purchases.is_some() {
        let previous = last_complete_day(lake, date).await;
        let purchases_source = match &config.oltp {
            Oltp::Postgres(_) => format!("retail.user_purchase in {}", config.oltp),
            Oltp::Sqlite(_) => format!("user_purchase in {}", config.oltp),
        };
        let audited = |m: &MetricResult| {
            let counts = with_metric(&counts, m);
            let previous = previous.as_ref().map(|(d, c)| (d.as_str(), c));
            audit(&config.audit, DayFacts { counts: &counts, previous, purchases_source: &purchases_source })
        };
        let table_for = |m: &MetricResult| if audited(m).iter().any(CheckOutcome::holds) { Table::HELD_METRIC } else { Table::METRIC };
        let (mut task, metric) = match kept.metric {
            Some(counted) => run_task("metric", policy, || kept_metric(engine, lake, date, counted)).await,
            None => run_task("metric", policy, || metric(engine, lake, date, config.semantics, stamp, table_for)).await,
        };
        task.kept = kept.metric.is_some();
        tasks.push(task);
        if let Some(m) = metric {
            let counted = MetricResult { rows: m.rows, invalid_cid: m.invalid_cid, no_customer: m.no_customer };
            // A metric kept from before a driver restart was published: it passed its checks then.
            if kept.metric.is_none() {
                checks = audited(&counted);
            }
            counts = with_metric(&counts, &counted);
            held = m.table == Table::HELD_METRIC;
            if held {
                tracing::warn!("{date} is held by its checks: its table is in {} and nothing of it is published", m.partition);
            } else {
                metric_partition = Some(m.partition.to_string());
                // An earlier run's held table is stale once the day is published.
                if let Err(e) = lake.remove_partition(Table::HELD_METRIC, date).await {
                    tracing::warn!("could not remove an earlier run's held table of {date}: {}", e.describe());
                }
            }
            top_customers = m.top_customers;
        }
    } else {
        tasks.push(TaskReport::skipped("metric", "classify or extract failed"));
    }
    tasks.push(match (&config.warehouse, metric_partition.is_some()) {
        (None, _) => TaskReport::skipped("load", "no --warehouse configured; the lake table is the output"),
        (Some(_), false) if held => TaskReport::skipped("load", "the day is held by its checks (ubm publish loads it once accepted)"),
        (Some(_), false) => TaskReport::skipped("load", "metric failed"),
        (Some(url), true) => {
            let (task, rows) = run_task("load", policy, || crate::warehouse::load_metric(url, date, engine, lake)).await;
            counts.warehouse_rows_loaded = rows;
            task
        }
    });

    let failed = tasks.iter().any(|t| t.status == TaskStatus::Failed) || (metric_partition.is_none() && !held);
    report.status = match (failed, held) {
        (true, _) => RunStatus::Failed,
        (false, true) => RunStatus::Held,
        (false, false) => RunStatus::Succeeded,
    };
    report.checks = checks;
    report.duration_ms = clock.elapsed().as_millis();
    report.counts_reconcile = counts.reconcile();
    report.tasks = tasks;
    report.counts = counts;
    report.metric_partition = metric_partition;
    report.top_customers = top_customers;
    if report.succeeded() {
        report.published = None;
    }
    retrying("writing the run report", policy, || write_report(lake, lease, &report)).await.0?;
    Ok(report)
}

/// Writes `<lake>/_runs/D.json`, if this run still holds the date.
pub(crate) async fn write_report(lake: &Lake, lease: &Lease, report: &RunReport) -> Result<()> {
    let _permit = lease.enter().await?;
    let json = serde_json::to_vec_pretty(report).map_err(|source| PipelineError::Encoding { what: "the run report", source })?;
    lake.put(&format!("_runs/{}.json", report.run_date), json).await?;
    Ok(())
}

/// The report of `date` when the run id of `config` completed it already (a cluster-mode run
/// whose driver restarted after that date was done).
pub(crate) async fn completed_by_this_run(config: &RunConfig, date: RunDate) -> Option<RunReport> {
    let run_id = config.run_id.as_deref()?;
    let report = crate::day::read_json::<RunReport>(&config.lake, &format!("_runs/{date}.json")).await.ok()??;
    (report.run_id == run_id && report.succeeded()).then(|| {
        tracing::info!("{date} was completed by this run before its driver restarted; not run again");
        report
    })
}

/// The report of the day published before this run (see [`RunReport::published`]); `None`
/// when there is none or the last report cannot be read (said in the log).
async fn published_before(lake: &Lake, date: RunDate) -> Option<Box<RunReport>> {
    match crate::day::read_json::<RunReport>(lake, &format!("_runs/{date}.json")).await {
        Ok(last) => last?.into_published(),
        Err(e) => {
            tracing::warn!("the last run report of {date} cannot be read; this run's report replaces it: {}", e.describe());
            None
        }
    }
}

/// `counts` with what the metric counted.
fn with_metric(counts: &Counts, metric: &MetricResult) -> Counts {
    Counts {
        metric_rows_written: metric.rows,
        reviews_invalid_cid: metric.invalid_cid,
        reviews_without_customer: metric.no_customer,
        ..counts.clone()
    }
}

/// The counts of the last date before `date` whose run succeeded, for the checks that compare
/// a day with the one before; `None` when there is none (or the reports cannot be read).
async fn last_complete_day(lake: &Lake, date: RunDate) -> Option<(String, Counts)> {
    let dates = crate::day::dates(lake).await.ok()?;
    for earlier in dates.iter().rev().filter(|d| **d < date) {
        if let Ok(Some(report)) = crate::day::read_json::<RunReport>(lake, &format!("_runs/{earlier}.json")).await
            && let Some(published) = report.into_published()
        {
            return Some((earlier.to_string(), published.counts));
        }
    }
    None
}

/// The review counts of a classify that succeeded; zero when it did not.
fn review_counts(classified: Option<&ClassifyCounts>) -> Counts {
    let Some(c) = classified else { return Counts::default() };
    Counts {
        review_records_read: c.read,
        reviews_classified: c.classified,
        reviews_rejected: c.rejected,
        null_reviews: c.null_reviews,
        positive_reviews: c.positive,
        ..Counts::default()
    }
}
