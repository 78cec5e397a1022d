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
use crate::error::Result;
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

/// A partition the run committed: what its task counted, its commit id and its inputs'.
struct KeptPartition<T> {
    result: T,
    commit: String,
    inputs: Vec<String>,
}

impl Kept {
    /// The tasks `run_id` committed of `date`, read from the partitions' markers. A task is kept
    /// only with the very versions of its inputs it read (their commit ids, recorded in its
    /// marker): a classify over a raw copy committed again, or a metric over an extract redone
    /// since, runs again. A partition whose files differ from its commit is not kept. An error
    /// reading a marker fails (a retry reads again): treating it as "not committed" could
    /// redo an input under a kept task.
    pub(crate) async fn find(lake: &Lake, date: RunDate, run_id: &str) -> Result<Kept> {
        let (ingest, classify, extract, metric) = tokio::try_join!(
            committed_by::<IngestResult>(lake, Table::RAW_REVIEWS, date, run_id),
            committed_by::<ClassifyCounts>(lake, Table::STAGE_REVIEWS, date, run_id),
            committed_by::<u64>(lake, Table::STAGE_PURCHASES, date, run_id),
            committed_by::<MetricResult>(lake, Table::METRIC, date, run_id),
        )?;
        let classify = classify.filter(|c| c.read(&[commit_of(&ingest)]));
        let staged = [commit_of(&extract), commit_of(&classify)];
        let metric = metric.filter(|m| m.read(&staged));
        let mut kept = Kept {
            ingest: ingest.map(|p| p.result),
            classify: classify.map(|p| p.result),
            extract: extract.map(|p| p.result),
            metric: metric.map(|p| p.result),
        };
        if let Some(classify) = kept.classify.as_mut() {
            classify.partition = Some(lake.partition_url(Table::STAGE_REVIEWS, date)?);
        }
        Ok(kept)
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

/// The commit id of a kept partition, if there is one.
fn commit_of<T>(part: &Option<KeptPartition<T>>) -> Option<&str> {
    part.as_ref().map(|p| p.commit.as_str())
}

impl<T> KeptPartition<T> {
    /// Whether its task read exactly these commits of its inputs (all of which still stand).
    fn read(&self, inputs: &[Option<&str>]) -> bool {
        inputs.iter().all(Option::is_some) && self.inputs.iter().map(String::as_str).eq(inputs.iter().flatten().copied())
    }
}

/// What `run_id` committed with `table`'s partition of `date`, if that run committed it, its
/// files are as committed, and its marker has a commit id and a result that reads as a `T`.
async fn committed_by<T: DeserializeOwned>(lake: &Lake, table: Table, date: RunDate, run_id: &str) -> Result<Option<KeptPartition<T>>> {
    let Some(committed) = lake.committed(table, date).await? else { return Ok(None) };
    let marker = committed.marker;
    if marker.run_id != run_id || !committed.problems.is_empty() {
        return Ok(None);
    }
    let (Some(result), Some(commit)) = (marker.result, marker.commit) else { return Ok(None) };
    Ok(serde_json::from_value(result)
        .map_err(|e| tracing::warn!("the result committed with {} of {date} does not read ({e}); its task runs again", table.0))
        .ok()
        .map(|result| KeptPartition { result, commit, inputs: marker.inputs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::RunStamp;

    fn date() -> RunDate {
        "2011-12-31".parse().expect("date")
    }

    /// Commits `table` for `stamp`'s run with `result` and the given inputs, as a task does.
    async fn commit(lake: &Lake, table: Table, stamp: &RunStamp, result: &impl serde::Serialize, inputs: &[Table]) {
        let mut partition = lake.begin(table, date(), stamp).expect("begin");
        partition.put("part.txt", b"x".to_vec()).await.expect("put");
        partition.record_result(result, inputs).expect("result");
        partition.commit().await.expect("commit");
    }

    async fn whole_day(lake: &Lake, stamp: &RunStamp) {
        commit(lake, Table::RAW_REVIEWS, stamp, &IngestResult { bytes: 5 }, &[]).await;
        commit(lake, Table::STAGE_PURCHASES, stamp, &7u64, &[]).await;
        commit(lake, Table::STAGE_REVIEWS, stamp, &ClassifyCounts { read: 3, classified: 3, ..Default::default() }, &[Table::RAW_REVIEWS]).await;
        let metric = MetricResult { rows: 2, invalid_cid: 0, no_customer: 1 };
        commit(lake, Table::METRIC, stamp, &metric, &[Table::STAGE_PURCHASES, Table::STAGE_REVIEWS]).await;
    }

    #[tokio::test]
    async fn every_task_a_run_committed_is_kept_and_another_runs_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let stamp = RunStamp::unleased();
        whole_day(&lake, &stamp).await;
        let kept = Kept::find(&lake, date(), &stamp.run_id).await.expect("markers read");
        assert_eq!(kept.names(), ["ingest", "classify", "extract", "metric"]);
        assert_eq!(kept.extract, Some(7));
        assert_eq!(kept.classify.as_ref().map(|c| c.read), Some(3));
        let other = Kept::find(&lake, date(), "another run").await.expect("markers read");
        assert!(other.names().is_empty());
    }

    #[tokio::test]
    async fn a_task_whose_input_was_committed_again_since_is_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let stamp = RunStamp::unleased();
        whole_day(&lake, &stamp).await;
        // A resumed driver redid the extract (a new snapshot), then stopped before the metric.
        commit(&lake, Table::STAGE_PURCHASES, &stamp, &8u64, &[]).await;
        let kept = Kept::find(&lake, date(), &stamp.run_id).await.expect("markers read");
        assert_eq!(kept.names(), ["ingest", "classify", "extract"], "the metric read the old extract: it runs again");
        assert_eq!(kept.extract, Some(8));
        // The raw copy committed again: classify, and so the metric, run again.
        commit(&lake, Table::RAW_REVIEWS, &stamp, &IngestResult { bytes: 5 }, &[]).await;
        let kept = Kept::find(&lake, date(), &stamp.run_id).await.expect("markers read");
        assert_eq!(kept.names(), ["ingest", "extract"]);
    }
}
