//! classify: a review file into the classified table and its rejects, both committed whole.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use ubm_cluster::Engine;
use ubm_cluster::exec::parts::{PartReport, PartsKind, PartsSpec};
use ubm_jobs::schema::CLASSIFIED;
use ubm_jobs::{RunDate, classify_reviews};
use url::Url;

use crate::error::{PipelineError, Result};
use crate::lake::{Lake, PartitionWrite, RunStamp, Table};

/// What classify wrote and counted; committed with the classified partition (see
/// `crate::resume`), which names the partition itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassifyCounts {
    pub read: u64,
    pub classified: u64,
    pub rejected: u64,
    pub null_reviews: u64,
    pub positive: u64,
    #[serde(skip)]
    pub partition: Option<Url>,
}

/// Where one classify writes: the classified table and its rejects, for one date of one run.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyOutput<'a> {
    pub lake: &'a Lake,
    pub date: RunDate,
    /// The classified rows (`cid`, `positive_review`).
    pub classified: Table,
    /// The unreadable records, one JSON object a line, with line number, reason and the record.
    pub rejects: Table,
    pub stamp: &'a RunStamp,
}

impl<'a> ClassifyOutput<'a> {
    /// The daily run's tables: `stage/movie_review` and its rejects.
    pub(crate) fn staged_reviews(lake: &'a Lake, date: RunDate, stamp: &'a RunStamp) -> Self {
        Self { lake, date, classified: Table::STAGE_REVIEWS, rejects: Table::REJECTS, stamp }
    }
}

/// classify: the review file at `source` into `output`, both partitions committed whole.
pub async fn classify_into(engine: &Engine, source: &Url, output: ClassifyOutput<'_>) -> Result<ClassifyCounts> {
    classify_staged(engine, source, output).await?.commit().await
}

/// What classify wrote, staged: the partitions replace the lake's only on [`StagedClassify::commit`].
pub(crate) struct StagedClassify {
    counts: ClassifyCounts,
    classified: PartitionWrite,
    rejects: PartitionWrite,
    rejects_url: Url,
}

impl StagedClassify {
    /// Replaces the rejects partition, then the classified one.
    pub(crate) async fn commit(self) -> Result<ClassifyCounts> {
        let (mut counts, mut classified) = (self.counts, self.classified);
        self.rejects.commit().await?;
        classified.record_result(&counts, &[Table::RAW_REVIEWS])?;
        counts.partition = Some(classified.commit().await?);
        if counts.rejected > 0 {
            tracing::warn!(rejected = counts.rejected, "records could not be read; see {}", self.rejects_url);
        }
        Ok(counts)
    }
}

/// classify, up to the commit: the tasks that classify the file's ranges write the part files
/// ([`ubm_cluster::exec::parts`]); this checks their reports and stages the files they name.
pub(crate) async fn classify_staged(engine: &Engine, source: &Url, output: ClassifyOutput<'_>) -> Result<StagedClassify> {
    let ClassifyOutput { lake, date, classified: out, rejects, stamp } = output;
    let job_name = format!("ubm classify {date}");
    let plan = classify_reviews(engine.review_records(source, &job_name).await?).map_err(PipelineError::query("planning classify"))?;
    let tasks = lake.task_output(date, stamp)?;
    let mut reports = engine.write_parts(plan, PartsSpec::new(tasks.url(), PartsKind::Reviews), &job_name).await?;
    let counts = count_review_parts(&mut reports)?;
    let mut partition = lake.begin(out, date, stamp)?;
    let files: Vec<&str> = reports.iter().filter_map(|r| r.file.as_deref()).collect();
    if partition.adopt_parts(&tasks, &files, "part", ".parquet").await? == 0 {
        // A day without a readable review still has a table to read: one file, no rows.
        partition.parquet("part-00000.parquet", CLASSIFIED.clone())?.close().await?;
    }
    let mut rejects_partition = lake.begin(rejects, date, stamp)?;
    let rejected: Vec<&str> = reports.iter().filter_map(|r| r.rejects_file.as_deref()).collect();
    rejects_partition.adopt_parts(&tasks, &rejected, "rejects", ".jsonl").await?;
    let strays = tasks.remove().await?;
    if strays > 0 {
        tracing::info!(files = strays, "removed the files of task attempts that did not count (retried or duplicated tasks)");
    }
    Ok(StagedClassify { counts, classified: partition, rejects: rejects_partition, rejects_url: lake.partition_url(rejects, date)? })
}

/// The counts of a classify from its tasks' reports, which it sorts into file order. Every
/// record has a line of its own and each task reads one contiguous range of the file, so the
/// tasks' line ranges must not overlap: an overlap means the engine delivered records twice
/// (as happened when Ballista ran a multi-partition scan whole in every task), and the task
/// fails (and is retried) instead of committing doubled numbers.
fn count_review_parts(reports: &mut [PartReport]) -> Result<ClassifyCounts> {
    reports.sort_by_key(|r| r.lines);
    tracing::debug!(?reports, "the classify tasks' reports");
    let mut counts = ClassifyCounts::default();
    let mut last_line: Option<u64> = None;
    for report in reports.iter() {
        if report.read != report.rows + report.rejected {
            return Err(PipelineError::Internal {
                what: format!("a task read {} records but wrote {} classified and {} rejected", report.read, report.rows, report.rejected),
            });
        }
        if let Some((first, last)) = report.lines {
            if last_line.is_some_and(|previous| first <= previous) {
                return Err(PipelineError::Duplicate {
                    what: format!("the record on line {first}"),
                    cause: "a task read more than its share of the input",
                });
            }
            last_line = Some(last);
        }
        counts.read += report.read;
        counts.classified += report.rows;
        counts.rejected += report.rejected;
        counts.null_reviews += report.null_reviews;
        counts.positive += report.positive;
    }
    Ok(counts)
}

/// A column of a plan's output, by name.
pub(crate) fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| PipelineError::Internal { what: format!("the plan's output has no column `{name}`") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(lines: Option<(u64, u64)>, rows: u64, rejected: u64) -> PartReport {
        PartReport { rows, rejected, read: rows + rejected, lines, ..PartReport::default() }
    }

    #[test]
    fn task_reports_are_counted_in_file_order_and_overlapping_lines_refused() {
        let mut reports = vec![part(Some((40, 90)), 30, 1), part(None, 0, 0), part(Some((2, 39)), 20, 0)];
        let counts = count_review_parts(&mut reports).expect("disjoint");
        assert_eq!((counts.read, counts.classified, counts.rejected), (51, 50, 1));
        assert_eq!(reports[2].lines, Some((40, 90)), "sorted by first line");
        let err = count_review_parts(&mut [part(Some((2, 50)), 10, 0), part(Some((50, 90)), 5, 0)]).expect_err("line 50 twice");
        assert!(err.to_string().contains("line 50 twice"), "{err}");
        let mut miscounted = [PartReport { read: 3, rows: 1, ..PartReport::default() }];
        assert!(count_review_parts(&mut miscounted).is_err(), "read = classified + rejected in every task");
    }
}
