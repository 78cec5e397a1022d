//! Resuming a run whose driver stopped: a cluster-mode run whose scheduler (and the driver
//! beside it) was killed and started again runs the date once more under the same run id, and
//! keeps every task whose partition that run had already committed.
//!
//! A task is kept when its last partition's `_SUCCESS` names the run and carries the task's
//! result (what it counted), written by the same commit as the files: the partition and the
//! numbers the run report needs cannot disagree. A task whose commit had not happened is run
//! again from the start; the extract then reads a new snapshot of the OLTP table (the old one
//! ended with the stopped driver's transaction). classify commits its rejects before its
//! classified rows: stopped between the two, it is run again and commits the rejects once more,
//! whole. The warehouse load is one transaction that replaces the date's rows: it runs again, and
//! replacing the rows twice leaves them as once.

use serde::de::DeserializeOwned;
use ubm_jobs::RunDate;

use crate::classify::ClassifyCounts;
use crate::ingest::IngestResult;
use crate::lake::{Lake, Table};
use crate::metric::MetricResult;

/// What a run had committed of `date` before its driver stopped.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    pub ingest: Option<IngestResult>,
    pub classify: Option<ClassifyCounts>,
    pub extract: Option<u64>,
    pub metric: Option<MetricResult>,
}

impl Kept {
    /// The tasks `run_id` committed of `date`, read from the partitions' markers. Nothing is
    /// kept of a partition that cannot be read or whose files differ from its commit: that task
    /// runs again.
    pub(crate) async fn find(lake: &Lake, date: RunDate, run_id: &str) -> Kept {
        let (ingest, classify, extract, metric) = tokio::join!(
            committed_by(lake, Table::RAW_REVIEWS, date, run_id),
            committed_by(lake, Table::STAGE_REVIEWS, date, run_id),
            committed_by(lake, Table::STAGE_PURCHASES, date, run_id),
            committed_by(lake, Table::METRIC, date, run_id),
        );
        let mut kept = Kept { ingest, classify, extract, metric };
        // classify read the raw copy, metric both staged tables: a kept task whose input is
        // redone would mix two versions of the day.
        if kept.ingest.is_none() {
            kept.classify = None;
        }
        if kept.classify.is_none() || kept.extract.is_none() {
            kept.metric = None;
        }
        if let Some(classify) = kept.classify.as_mut() {
            classify.partition = lake.partition_url(Table::STAGE_REVIEWS, date).ok();
        }
        kept
    }

    /// The names of the kept tasks, for the log.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let present = [
            ("ingest", self.ingest.is_some()),
            ("classify", self.classify.is_some()),
            ("extract", self.extract.is_some()),
            ("metric", self.metric.is_some()),
        ];
        present.into_iter().filter(|(_, kept)| *kept).map(|(name, _)| name).collect()
    }
}

/// The result `run_id` committed with `table`'s partition of `date`, if that run committed it,
/// its files are as committed, and the result reads as a `T`.
async fn committed_by<T: DeserializeOwned>(lake: &Lake, table: Table, date: RunDate, run_id: &str) -> Option<T> {
    let committed = match lake.committed(table, date).await {
        Ok(committed) => committed?,
        Err(e) => {
            tracing::warn!("{} of {date} cannot be read; its task runs again: {}", table.0, e.describe());
            return None;
        }
    };
    if committed.marker.run_id != run_id || !committed.problems.is_empty() {
        return None;
    }
    let result = committed.marker.result?;
    serde_json::from_value(result)
        .map_err(|e| tracing::warn!("the result committed with {} of {date} does not read ({e}); its task runs again", table.0))
        .ok()
}
