//! classify: a review file into the classified table and its rejects, both committed whole.

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch, is_not_null, is_null};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use futures::TryStreamExt;
use ubm_cluster::Engine;
use ubm_jobs::schema::{CLASSIFIED, col};
use ubm_jobs::{RunDate, classify_reviews};
use url::Url;

use crate::error::{PipelineError, Result};
use crate::lake::{Lake, PartitionWrite, RunStamp, Table};

/// What classify wrote and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassifyCounts {
    pub read: u64,
    pub classified: u64,
    pub rejected: u64,
    pub null_reviews: u64,
    pub positive: u64,
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
        let mut counts = self.counts;
        self.rejects.commit().await?;
        counts.partition = Some(self.classified.commit().await?);
        if counts.rejected > 0 {
            tracing::warn!(rejected = counts.rejected, "records could not be read; see {}", self.rejects_url);
        }
        Ok(counts)
    }
}

/// classify, up to the commit: runs the plan and stages both partitions.
pub(crate) async fn classify_staged(engine: &Engine, source: &Url, output: ClassifyOutput<'_>) -> Result<StagedClassify> {
    let ClassifyOutput { lake, date, classified: out, rejects, stamp } = output;
    let job_name = format!("ubm classify {date}");
    let plan = classify_reviews(engine.review_records(source, &job_name).await?).map_err(PipelineError::query("planning classify"))?;
    let mut stream = engine.execute(plan, &job_name).await?;
    let mut partition = lake.begin(out, date, stamp)?;
    let mut file = partition.parquet("part-00000.parquet", CLASSIFIED.clone())?;
    let mut counts = ClassifyCounts::default();
    let mut rejected = Vec::new();
    let mut seen = LineSet::default();
    let classifying = format!("classifying {source}");
    while let Some(batch) = stream.try_next().await.map_err(PipelineError::query(&classifying))? {
        seen.insert_all(&batch)?;
        counts.read += batch.num_rows() as u64;
        let reasons = column(&batch, col::REJECT_REASON)?;
        let good = filter_record_batch(&batch, &is_null(reasons.as_ref()).map_err(arrow_error)?).map_err(arrow_error)?;
        counts.classified += good.num_rows() as u64;
        counts.positive += true_count(&good, col::POSITIVE_REVIEW)?;
        counts.null_reviews += true_count(&good, col::REVIEW_IS_NULL)?;
        let cid = cast(&column(&good, col::CID)?, &DataType::Utf8).map_err(arrow_error)?;
        let classified = RecordBatch::try_new(CLASSIFIED.clone(), vec![cid, column(&good, col::POSITIVE_REVIEW)?]).map_err(arrow_error)?;
        file.write(&classified).await?;
        if reasons.null_count() < batch.num_rows() {
            let bad = filter_record_batch(&batch, &is_not_null(reasons.as_ref()).map_err(arrow_error)?).map_err(arrow_error)?;
            counts.rejected += bad.num_rows() as u64;
            append_rejects(&bad, &mut rejected)?;
        }
    }
    file.close().await?;
    // Partitions finish in any order; a person reads rejects in file order.
    rejected.sort_by_key(|(line, _)| *line);
    let rejected: Vec<u8> = rejected.into_iter().flat_map(|(_, entry)| entry).collect();
    let mut rejects_partition = lake.begin(rejects, date, stamp)?;
    rejects_partition.put("rejects.jsonl", rejected).await?;
    Ok(StagedClassify { counts, classified: partition, rejects: rejects_partition, rejects_url: lake.partition_url(rejects, date)? })
}

fn arrow_error(source: datafusion::arrow::error::ArrowError) -> PipelineError {
    PipelineError::Arrow { doing: "splitting classified and rejected records".to_string(), source }
}

/// The line numbers of the records received so far. Every record of the file has its own
/// line, so a line seen twice means the engine delivered rows twice (as happened when Ballista
/// ran a multi-partition scan of its own whole in every task). The task then
/// fails (and is retried) instead of writing doubled numbers.
#[derive(Default)]
pub(crate) struct LineSet {
    bits: Vec<u64>,
}

impl LineSet {
    pub(crate) fn insert_all(&mut self, batch: &RecordBatch) -> Result<()> {
        let lines = column(batch, col::LINE)?;
        let lines = lines.as_primitive_opt::<UInt64Type>().ok_or_else(|| not_of_type(col::LINE, "UInt64"))?;
        for line in lines.values().iter().map(|l| *l as usize) {
            let (word, bit) = (line / 64, 1u64 << (line % 64));
            if word >= self.bits.len() {
                self.bits.resize(word + 1, 0);
            }
            if self.bits[word] & bit != 0 {
                return Err(PipelineError::Duplicate { what: format!("the record on line {line}") });
            }
            self.bits[word] |= bit;
        }
        Ok(())
    }
}

/// A column of a plan's output, by name.
pub(crate) fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| PipelineError::Internal { what: format!("the plan's output has no column `{name}`") })
}

pub(crate) fn not_of_type(name: &str, expected: &str) -> PipelineError {
    PipelineError::Internal { what: format!("the plan's column `{name}` is not {expected}") }
}

fn true_count(batch: &RecordBatch, name: &str) -> Result<u64> {
    let values = column(batch, name)?;
    let flags: &BooleanArray = values.as_boolean_opt().ok_or_else(|| not_of_type(name, "boolean"))?;
    Ok(flags.true_count() as u64)
}

/// One JSON line per rejected record: `line`, `reason` and the record, as text when it is
/// UTF-8 and as `record_base64` otherwise, so that nothing of it is lost. Kept with its line
/// number for sorting.
fn append_rejects(bad: &RecordBatch, out: &mut Vec<(u64, Vec<u8>)>) -> Result<()> {
    let lines = column(bad, col::LINE)?;
    let lines = lines.as_primitive_opt::<UInt64Type>().ok_or_else(|| not_of_type(col::LINE, "UInt64"))?;
    let reasons = column(bad, col::REJECT_REASON)?;
    let reasons = reasons.as_string_opt::<i32>().ok_or_else(|| not_of_type(col::REJECT_REASON, "Utf8"))?;
    let records = column(bad, col::REJECTED_RECORD)?;
    let records = records.as_binary_opt::<i32>().ok_or_else(|| not_of_type(col::REJECTED_RECORD, "Binary"))?;
    for i in 0..bad.num_rows() {
        let raw = records.value(i);
        let mut entry = serde_json::json!({"line": lines.value(i), "reason": reasons.value(i)});
        match std::str::from_utf8(raw) {
            Ok(text) => entry["record"] = text.into(),
            Err(_) => entry["record_base64"] = base64::engine::general_purpose::STANDARD.encode(raw).into(),
        }
        let mut json = entry.to_string().into_bytes();
        json.push(b'\n');
        out.push((lines.value(i), json));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::UInt64Array;
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn lines(values: &[u64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(col::LINE, DataType::UInt64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(values.to_vec()))]).expect("batch")
    }

    #[test]
    fn a_record_delivered_twice_is_refused_across_batches() {
        let mut seen = LineSet::default();
        seen.insert_all(&lines(&[2, 3, 700])).expect("first delivery");
        seen.insert_all(&lines(&[4, 65, 64])).expect("new lines");
        let err = seen.insert_all(&lines(&[5, 700])).expect_err("line 700 again");
        assert!(err.to_string().contains("line 700 twice"), "{err}");
    }
}
