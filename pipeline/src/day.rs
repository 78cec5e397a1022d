//! What a date of the lake is: complete, running, failed, mixed (partitions of different runs)
//! or damaged (files that differ from their commit, a record that cannot be read), read from
//! the run report, each partition's `_SUCCESS` and files, and the date's lease. A date that
//! cannot be read is shown as damaged with the reason; it never hides the other dates.

use std::collections::BTreeSet;

use chrono::Utc;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;
use ubm_jobs::RunDate;

use crate::error::{PipelineError, Result};
use crate::lake::{Lake, Table};
use crate::lease::{Host, current};
use crate::run_report::{RunReport, RunStatus};

/// Every table a run writes for its date.
pub const TABLES: [Table; 5] = [Table::RAW_REVIEWS, Table::STAGE_PURCHASES, Table::STAGE_REVIEWS, Table::REJECTS, Table::METRIC];

/// A date's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DayState {
    /// The report says succeeded and every partition was written by that run.
    Complete,
    /// A run of the date is under way (it holds a live lease).
    Running,
    /// The last run failed; the partitions that exist all come from one run.
    Failed,
    /// The partitions come from different runs, or do not match the report (a run stopped
    /// midway): rerun the date to heal it.
    Mixed,
    /// A committed partition's files differ from what its commit listed (a stray, missing or
    /// truncated file), or a record of the date (run report, `_SUCCESS`, lease) cannot be read:
    /// its numbers are not to be trusted until the date is run again.
    Damaged,
    /// The last run's checks held its table (`crate::audit`): nothing of it is published; the
    /// published table, if any, is the one before. `ubm publish` accepts it, a rerun replaces it.
    Held,
}

impl std::fmt::Display for DayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            DayState::Complete => "complete",
            DayState::Running => "running",
            DayState::Failed => "failed",
            DayState::Mixed => "mixed",
            DayState::Damaged => "damaged",
            DayState::Held => "held",
        })
    }
}

/// One partition of the date, and the run that wrote it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionState {
    pub table: &'static str,
    /// `None`: no committed partition. `Some("")`: committed before partitions named their run.
    pub run_id: Option<String>,
    /// How its files differ from what its commit listed, one line each (the file named).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// What `ubm status --lake` shows for a date.
#[derive(Debug, Clone, Serialize)]
pub struct DayStatus {
    pub date: String,
    pub state: DayState,
    /// The last run's report (`None` when the date has none).
    pub report: Option<RunReport>,
    pub partitions: Vec<PartitionState>,
    /// Who holds the date now, when a run does.
    pub holder: Option<String>,
    /// Why the state is what it is, in words.
    pub note: String,
}

/// What `ubm status --lake` shows for several dates: one line each.
pub fn table(days: &[DayStatus]) -> String {
    let mut text = format!("{:<10}  {:<9} {:<36}  NOTE\n", "DATE", "STATE", "RUN");
    for day in days {
        let run = day.report.as_ref().map_or("-", |r| r.run_id.as_str());
        text += &format!("{:<10}  {:<9} {:<36}  {}\n", day.date, day.state, run, day.note);
    }
    text
}

impl std::fmt::Display for DayStatus {
    /// The date's state, why, who holds it, and which run wrote each partition.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} {}: {}", self.date, self.state, self.note)?;
        if let Some(holder) = &self.holder {
            writeln!(f, "  held by {holder}")?;
        }
        if let Some(report) = &self.report {
            writeln!(f, "  report: run {} {} (started {})", report.run_id, report.status, report.started_at.format("%Y-%m-%d %H:%M:%S UTC"))?;
            for check in report.failed_checks() {
                writeln!(f, "  check {} failed ({}): {}", check.name, check.severity, check.detail)?;
            }
            if let Some(accepted) = &report.accepted {
                writeln!(
                    f,
                    "  published by {} at {}, accepting {}",
                    accepted.by,
                    accepted.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    accepted.checks.join(", ")
                )?;
            }
        }
        for partition in &self.partitions {
            let by = match partition.run_id.as_deref() {
                None => "no committed partition".to_string(),
                Some("") if !partition.problems.is_empty() => "damaged".to_string(),
                Some("") => "written before partitions named their run".to_string(),
                Some(run) => format!("run {run}"),
            };
            writeln!(f, "  {:<32} {by}", partition.table)?;
            for problem in &partition.problems {
                writeln!(f, "  {:<32}   damaged: {problem}", "")?;
            }
        }
        Ok(())
    }
}

/// The dates the lake has a run report for, in order.
pub async fn dates(lake: &Lake) -> Result<Vec<RunDate>> {
    let dir = lake.object_path("_runs/")?;
    let listed: Vec<_> = lake.store().list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(lake.store_error("listing", &dir))?;
    let mut dates: Vec<RunDate> = listed.iter().filter_map(|p| p.filename()?.strip_suffix(".json")?.parse().ok()).collect();
    dates.sort();
    Ok(dates)
}

/// The state of `date` in `lake`. A record that cannot be read (a run report, a `_SUCCESS`, a
/// lease that is not ubm's) makes the date damaged, with the reason; only a failing store is an
/// error.
pub async fn day_status(lake: &Lake, date: RunDate) -> Result<DayStatus> {
    let mut unreadable = Vec::new();
    let report = readable(read_json::<RunReport>(lake, &format!("_runs/{date}.json")).await, &mut unreadable)?.flatten();
    let mut partitions = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let partition = match lake.committed(table, date).await {
            Ok(None) => PartitionState { table: table.0, run_id: None, problems: Vec::new() },
            Ok(Some(c)) => {
                PartitionState { table: table.0, run_id: Some(c.marker.run_id), problems: c.problems.iter().map(ToString::to_string).collect() }
            }
            Err(PipelineError::Damaged { problem, .. }) => PartitionState { table: table.0, run_id: Some(String::new()), problems: vec![problem] },
            Err(e) => return Err(e),
        };
        partitions.push(partition);
    }
    let lease = readable(current(lake, date).await, &mut unreadable)?.flatten();
    let live = lease.filter(|state| state.is_live(Utc::now(), &Host::current()));
    let holder = live.as_ref().map(|state| state.record.describe());
    let (state, note) = match unreadable.is_empty() {
        true => judge(report.as_ref(), &partitions, live.as_ref().map(|s| s.record.run_id.as_str())),
        false => (DayState::Damaged, unreadable.join("; ")),
    };
    Ok(DayStatus { date: date.to_string(), state, report, partitions, holder, note })
}

/// `Ok(Some(value))`, or `Ok(None)` with the reason kept in `unreadable` when a record could not
/// be read as ubm's; a store's failure stays an error.
fn readable<T>(read: Result<T>, unreadable: &mut Vec<String>) -> Result<Option<T>> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(e @ (PipelineError::BadInput { .. } | PipelineError::Damaged { .. })) => {
            unreadable.push(e.to_string());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The rules of [`DayState`].
fn judge(report: Option<&RunReport>, partitions: &[PartitionState], live_run: Option<&str>) -> (DayState, String) {
    let writers: BTreeSet<&str> = partitions.iter().filter_map(|p| p.run_id.as_deref()).collect();
    if let Some(damaged) = partitions.iter().find(|p| !p.problems.is_empty()) {
        let more = partitions.iter().map(|p| p.problems.len()).sum::<usize>() - 1;
        let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
        return (DayState::Damaged, format!("{}: {}{more}; rerun the date to rewrite it", damaged.table, damaged.problems[0]));
    }
    let Some(report) = report else {
        return (DayState::Mixed, "no run report: the partitions were not written by a finished run".to_string());
    };
    let all_by_report = partitions.iter().all(|p| p.run_id.as_deref() == Some(report.run_id.as_str()));
    match report.status {
        RunStatus::Running if live_run == Some(report.run_id.as_str()) => (DayState::Running, format!("run {} is under way", report.run_id)),
        RunStatus::Running => (DayState::Mixed, format!("run {} stopped before it finished; rerun the date to make it whole", report.run_id)),
        RunStatus::Succeeded if all_by_report => (DayState::Complete, format!("every partition by run {}", report.run_id)),
        RunStatus::Held => {
            let why: Vec<String> = report.checks.iter().filter(|c| c.holds()).map(|c| format!("{} ({})", c.name, c.detail)).collect();
            (DayState::Held, format!("held by its checks: {}; look, then `ubm publish --date {}` or rerun", why.join("; "), report.run_date))
        }
        RunStatus::Failed if writers.len() <= 1 => {
            let why = report.tasks.iter().find_map(|t| t.error.clone().filter(|_| t.status == crate::TaskStatus::Failed));
            (DayState::Failed, why.unwrap_or_else(|| "the run failed".to_string()))
        }
        _ => (
            DayState::Mixed,
            format!("partitions from {} runs, the report from run {}; rerun the date to make it whole", writers.len(), report.run_id),
        ),
    }
}

async fn read_bytes(lake: &Lake, relative: &str) -> Result<Option<bytes::Bytes>> {
    let path = lake.object_path(relative)?;
    match lake.store().get(&path).await {
        Ok(got) => Ok(Some(got.bytes().await.map_err(lake.store_error("reading", &path))?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(lake.store_error("reading", &path)(e)),
    }
}

pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(lake: &Lake, relative: &str) -> Result<Option<T>> {
    let Some(bytes) = read_bytes(lake, relative).await? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PipelineError::BadInput { what: format!("{}{relative}", lake.root()), reason: format!("not a ubm run report ({e})") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(run_id: &str, status: RunStatus) -> RunReport {
        serde_json::from_value(serde_json::json!({
            "run_date": "2011-12-31", "run_id": run_id, "status": status, "started_at": "2026-01-01T00:00:00Z",
            "duration_ms": 0, "engine": "local", "semantics": "correct", "reviews": "r", "oltp": "o", "lake": "l",
            "warehouse": null, "tasks": [], "counts": crate::Counts::default(), "counts_reconcile": true, "metric_partition": null,
        }))
        .expect("report")
    }

    fn written_by(runs: [&str; 5]) -> Vec<PartitionState> {
        TABLES.iter().zip(runs).map(|(t, r)| PartitionState { table: t.0, run_id: Some(r.to_string()), problems: Vec::new() }).collect()
    }

    #[test]
    fn a_day_is_complete_only_when_every_partition_is_the_reports_run() {
        let all_b = written_by(["b"; 5]);
        let mix = written_by(["b", "a", "b", "b", "a"]);
        assert_eq!(judge(Some(&report("b", RunStatus::Succeeded)), &all_b, None).0, DayState::Complete);
        assert_eq!(judge(Some(&report("b", RunStatus::Succeeded)), &mix, None).0, DayState::Mixed);
        assert_eq!(judge(Some(&report("b", RunStatus::Running)), &mix, Some("b")).0, DayState::Running);
        // Killed before its first commit: the old day's partitions, the new run's report.
        assert_eq!(judge(Some(&report("b", RunStatus::Running)), &written_by(["a"; 5]), None).0, DayState::Mixed);
        assert_eq!(judge(Some(&report("b", RunStatus::Failed)), &written_by(["a"; 5]), None).0, DayState::Failed);
        assert_eq!(judge(Some(&report("b", RunStatus::Failed)), &mix, None).0, DayState::Mixed);
        assert_eq!(judge(None, &all_b, None).0, DayState::Mixed);
        let mut damaged = all_b.clone();
        damaged[4].problems.push("copy.parquet is a stray file (9 bytes) that no commit wrote".to_string());
        let (state, note) = judge(Some(&report("b", RunStatus::Succeeded)), &damaged, None);
        assert_eq!(state, DayState::Damaged);
        assert!(note.starts_with("warehouse/user_behavior_metric: copy.parquet is a stray file"), "{note}");
    }
}
