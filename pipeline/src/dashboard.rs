//! `ubm report`: one self-contained HTML page about a lake, for the people who use the table.
//!
//! It reads only what the lake holds: the files that commits of metric partitions listed in
//! their `_SUCCESS` (a partition without one, or whose files differ from it, is never read), the run reports under `_runs/`, and the committed rejects. The page
//! is one file: charts are inline SVG drawn here, styles are inline, nothing is fetched (a
//! Content-Security-Policy forbids it), so it opens from `file://`, S3 static hosting or an email
//! attachment. Every chart's numbers are also in a table, with exact values in `data-*`
//! attributes for tools (and for the test that checks them against DuckDB).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int32Type};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ubm_jobs::RunDate;
use ubm_jobs::schema::{AMOUNT_SPENT, col};

use crate::day::{DayState, DayStatus, dates, day_status};
use crate::error::{PipelineError, Result};
use crate::lake::{Lake, Table};
use crate::run_report::RunReport;
use crate::task::TaskStatus;

mod render;

/// One customer's row of the metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    pub customer_id: i32,
    /// `amount_spent` in units of 10^-5 (DECIMAL(18,5)), exact; `None` where the table holds
    /// NULL (every purchase of the customer had no price or quantity).
    pub amount: Option<i128>,
    pub review_score: i32,
    pub review_count: i32,
}

/// Rejected records that share a reason (numbers in it set aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectGroup {
    pub reason: String,
    pub count: u64,
    /// The first few line numbers, in file order.
    pub first_lines: Vec<u64>,
}

/// What the page shows of one date.
#[derive(Debug, Clone)]
pub struct DayData {
    pub status: DayStatus,
    /// The committed metric partition's rows, by amount spent, largest first (`None`: none).
    pub metric: Option<Vec<CustomerRow>>,
    pub rejects: Vec<RejectGroup>,
}

impl DayData {
    pub fn date(&self) -> &str {
        &self.status.date
    }

    /// Customers in the committed metric.
    pub fn customers(&self) -> Option<u64> {
        self.metric.as_ref().map(|rows| rows.len() as u64)
    }

    /// The sum of `amount_spent`, exact (units of 10^-5).
    pub fn total_spent(&self) -> Option<i128> {
        self.metric.as_ref().map(|rows| rows.iter().filter_map(|r| r.amount).sum())
    }

    /// The report whose counts go with the metric shown: the last run's when it wrote the
    /// committed metric (or when there is none), the published run's when a later run failed
    /// before replacing it; `None` when the metric is of neither (a mixed day).
    pub fn metric_report(&self) -> Option<&RunReport> {
        let report = self.status.report.as_ref()?;
        let metric = self.status.partitions.iter().find(|p| p.table == Table::METRIC.0);
        match metric.and_then(|p| p.run_id.as_deref()) {
            None => Some(report),
            Some(run) if run == report.run_id => Some(report),
            Some(run) => report.published.as_deref().filter(|published| published.run_id == run),
        }
    }

    /// Positive reviews over classified reviews, from the run report.
    pub fn positive_share(&self) -> Option<f64> {
        let counts = &self.metric_report()?.counts;
        (counts.reviews_classified > 0).then(|| counts.positive_reviews as f64 / counts.reviews_classified as f64)
    }

    /// Rejected records, when the run's classify succeeded (otherwise nothing was counted).
    pub fn rejected(&self) -> Option<u64> {
        let report = self.metric_report()?;
        let classified = report.tasks.iter().any(|t| t.name == "classify" && t.status == TaskStatus::Succeeded);
        classified.then_some(report.counts.reviews_rejected)
    }

    /// The run failed, is running, or left a mixed day: the page marks it.
    pub fn is_unhealthy(&self) -> bool {
        self.status.state != DayState::Complete
    }
}

/// Rows kept of a long reject group's line numbers.
const FIRST_LINES: usize = 5;

/// Everything the page shows, read from `lake`. A lake with no run report is an error: it is
/// empty, or not a lake.
pub async fn collect(lake: &Lake) -> Result<Vec<DayData>> {
    let dates = dates(lake).await?;
    if dates.is_empty() {
        return Err(PipelineError::BadInput {
            what: format!("lake {}", lake.root()),
            reason: "it has no run report under _runs/: it is empty, or not a ubm lake; run `ubm run --lake` first".to_string(),
        });
    }
    let mut days = Vec::with_capacity(dates.len());
    for date in dates {
        let status = day_status(lake, date).await?;
        let metric = read_metric(lake, date).await?;
        let rejects = read_rejects(lake, date).await?;
        days.push(DayData { status, metric, rejects });
    }
    Ok(days)
}

/// The page for `days` (in date order), made at `now`.
pub fn page(lake: &Lake, days: &[DayData], now: chrono::DateTime<chrono::Utc>) -> String {
    render::page(lake.root().as_ref(), days, now)
}

/// Makes the page and writes it to `out` (a path or URL) or `<lake>/_report/index.html`;
/// returns where it went.
pub async fn write(lake: &Lake, out: Option<&str>) -> Result<String> {
    let days = collect(lake).await?;
    let html = page(lake, &days, chrono::Utc::now());
    match out {
        Some(path) if !path.contains("://") => {
            tokio::fs::write(path, html).await.map_err(PipelineError::io("writing the report", std::path::Path::new(path)))?;
            Ok(path.to_string())
        }
        Some(url) => {
            let url = ubm_cluster::store::location_url(url)?;
            let store = ubm_cluster::store::object_store_for(&url)?;
            let path = Path::from_url_path(url.path())
                .map_err(|e| PipelineError::BadInput { what: url.to_string(), reason: format!("not an object path: {e}") })?;
            store.put(&path, html.into_bytes().into()).await.map_err(|source| PipelineError::Store {
                doing: "writing",
                url: url.to_string(),
                source,
            })?;
            Ok(url.to_string())
        }
        None => Ok(lake.put("_report/index.html", html.into_bytes()).await?.to_string()),
    }
}

/// The files of a committed partition that its commit listed (`None` when it has no
/// `_SUCCESS`, or when its files differ from the commit: the day is then marked damaged and
/// none of its numbers are shown).
async fn committed_files(lake: &Lake, table: Table, date: RunDate) -> Result<Option<Vec<object_store::ObjectMeta>>> {
    match lake.committed(table, date).await {
        Ok(Some(committed)) if committed.problems.is_empty() => Ok(Some(committed.readable()?)),
        Ok(_) | Err(PipelineError::Damaged { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn read_metric(lake: &Lake, date: RunDate) -> Result<Option<Vec<CustomerRow>>> {
    let Some(files) = committed_files(lake, Table::METRIC, date).await? else { return Ok(None) };
    let mut rows = Vec::new();
    for file in files.iter().filter(|m| m.location.extension() == Some("parquet")) {
        // A day's metric is one row per customer: a few hundred kilobytes, read whole.
        let got = lake.store().get(&file.location).await.map_err(lake.store_error("reading", &file.location))?;
        let bytes = got.bytes().await.map_err(lake.store_error("reading", &file.location))?;
        let reading = |source| PipelineError::Parquet { url: file.location.to_string(), source };
        let batches = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(reading)?.build().map_err(reading)?;
        for batch in batches {
            let batch = batch.map_err(PipelineError::arrow(format!("reading {}", file.location)))?;
            rows.extend(customer_rows(&batch, file.location.as_ref())?);
        }
    }
    by_amount(&mut rows);
    Ok(Some(rows))
}

async fn read_rejects(lake: &Lake, date: RunDate) -> Result<Vec<RejectGroup>> {
    let Some(files) = committed_files(lake, Table::REJECTS, date).await? else { return Ok(Vec::new()) };
    let mut groups: BTreeMap<String, RejectGroup> = BTreeMap::new();
    for file in files.iter().filter(|m| m.location.extension() == Some("jsonl")) {
        let bytes = lake.store().get(&file.location).await.map_err(lake.store_error("reading", &file.location))?;
        let bytes = bytes.bytes().await.map_err(lake.store_error("reading", &file.location))?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let entry: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| PipelineError::BadInput { what: file.location.to_string(), reason: format!("a line is not JSON ({e})") })?;
            let reason = entry["reason"].as_str().unwrap_or("(no reason given)");
            let group =
                groups.entry(reason_kind(reason)).or_insert_with(|| RejectGroup { reason: reason_kind(reason), count: 0, first_lines: Vec::new() });
            group.count += 1;
            if group.first_lines.len() < FIRST_LINES
                && let Some(n) = entry["line"].as_u64()
            {
                group.first_lines.push(n);
            }
        }
    }
    let mut groups: Vec<RejectGroup> = groups.into_values().collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    Ok(groups)
}

/// The rows of a batch of the metric (`source` names it in errors), in its order.
pub fn customer_rows(batch: &datafusion::arrow::record_batch::RecordBatch, source: &str) -> Result<Vec<CustomerRow>> {
    let column = |name: &str| {
        batch.column_by_name(name).cloned().ok_or_else(|| PipelineError::BadInput {
            what: source.to_string(),
            reason: format!("has no column `{name}`: not a user_behavior_metric file"),
        })
    };
    let (ids, amounts, scores, counts) =
        (column(col::CUSTOMERID)?, column(col::AMOUNT_SPENT)?, column(col::REVIEW_SCORE)?, column(col::REVIEW_COUNT)?);
    let wrong = |name: &str| PipelineError::BadInput { what: source.to_string(), reason: format!("column `{name}` has another type") };
    let ids = ids.as_primitive_opt::<Int32Type>().ok_or_else(|| wrong(col::CUSTOMERID))?;
    let amounts = amounts.as_primitive_opt::<Decimal128Type>().filter(|a| a.scale() == AMOUNT_SPENT.1).ok_or_else(|| wrong(col::AMOUNT_SPENT))?;
    let scores = scores.as_primitive_opt::<Int32Type>().ok_or_else(|| wrong(col::REVIEW_SCORE))?;
    let counts = counts.as_primitive_opt::<Int32Type>().ok_or_else(|| wrong(col::REVIEW_COUNT))?;
    Ok((0..batch.num_rows())
        .filter(|i| ids.is_valid(*i))
        .map(|i| CustomerRow {
            customer_id: ids.value(i),
            amount: amounts.is_valid(i).then(|| amounts.value(i)),
            review_score: scores.value(i),
            review_count: counts.value(i),
        })
        .collect())
}

/// `rows` by amount spent, largest first, NULL last (ties by customer id).
pub fn by_amount(rows: &mut [CustomerRow]) {
    // `None` orders below every `Some`: descending puts it last.
    rows.sort_by(|a, b| b.amount.cmp(&a.amount).then(a.customer_id.cmp(&b.customer_id)));
}

/// A reason with its numbers set aside (`expected 3 fields …, found 5` → `… N fields …, found N`),
/// so that records rejected for the same reason count together.
fn reason_kind(reason: &str) -> String {
    let reason = reason.split(" (the record has ").next().unwrap_or(reason);
    let mut kind = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                kind.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            kind.push(c);
        }
    }
    kind
}

/// The failed tasks' errors of a day, for the run history.
pub fn day_error(day: &DayData) -> Option<String> {
    // What is wrong with the lake comes before what went wrong in the run.
    if day.status.state == DayState::Damaged {
        return Some(day.status.note.clone());
    }
    let report = day.status.report.as_ref()?;
    let errors: Vec<String> =
        report.tasks.iter().filter(|t| t.status == TaskStatus::Failed).filter_map(|t| t.error.as_ref().map(|e| format!("{}: {e}", t.name))).collect();
    if errors.is_empty() { (day.is_unhealthy()).then(|| day.status.note.clone()) } else { Some(errors.join("; ")) }
}

/// `amount` (units of 10^-5) with thousands separators and two decimals, for people.
pub fn money(amount: i128) -> String {
    let cents = (amount + if amount >= 0 { 500 } else { -500 }) / 1000;
    let (sign, cents) = if cents < 0 { ("-", -cents) } else { ("", cents) };
    format!("{sign}{}.{:02}", grouped((cents / 100) as u128), cents % 100)
}

/// `amount` (units of 10^-5) exactly, as DECIMAL(18,5) prints it.
pub fn exact(amount: i128) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{sign}{}.{:05}", abs / 100_000, abs % 100_000)
}

/// An integer with thousands separators.
pub fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text safe inside HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_and_tools_expect() {
        assert_eq!(money(123_456_789_012), "1,234,567.89");
        assert_eq!(money(-150_000), "-1.50");
        assert_eq!(exact(123_456_789_012), "1234567.89012");
        assert_eq!(exact(-5), "-0.00005");
        assert_eq!(grouped(4372), "4,372");
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn names_and_errors_from_a_run_report_reach_the_page_escaped() {
        let hostile = "<img src=x onerror=alert(1)>";
        let report: RunReport = serde_json::from_value(serde_json::json!({
            "run_date": "2011-12-31", "run_id": hostile, "status": "failed", "started_at": "2026-01-01T00:00:00Z",
            "duration_ms": 5, "engine": "local", "semantics": "correct", "reviews": hostile, "oltp": "o", "lake": "l",
            "warehouse": null, "counts": crate::Counts::default(), "counts_reconcile": true, "metric_partition": null,
            "tasks": [{"name": hostile, "status": "failed", "started_at": null, "duration_ms": 50, "attempts": 1, "error": hostile}],
        }))
        .expect("report");
        let status = DayStatus {
            date: "2011-12-31".into(),
            state: DayState::Failed,
            report: Some(report),
            partitions: Vec::new(),
            holder: None,
            note: hostile.into(),
        };
        let html = render::page(hostile, &[DayData { status, metric: None, rejects: Vec::new() }], chrono::Utc::now());
        assert!(!html.contains("<img"), "every value from a report is escaped");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; 0.05"), "the task's name is shown, escaped");
    }

    #[test]
    fn a_null_amount_is_listed_last_and_never_as_zero() {
        use datafusion::arrow::array::{Decimal128Array, Int32Array};
        let schema = crate::metric::file_schema().expect("schema");
        let amounts = Decimal128Array::from(vec![None, Some(500_000), Some(0)]).with_precision_and_scale(18, 5).expect("decimal");
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
            schema,
            vec![
                std::sync::Arc::new(Int32Array::from(vec![1, 2, 3])),
                std::sync::Arc::new(amounts),
                std::sync::Arc::new(Int32Array::from(vec![1, 1, 0])),
                std::sync::Arc::new(Int32Array::from(vec![1, 1, 1])),
            ],
        )
        .expect("batch");
        let mut rows = customer_rows(&batch, "test").expect("rows");
        by_amount(&mut rows);
        let order: Vec<(i32, Option<i128>)> = rows.iter().map(|r| (r.customer_id, r.amount)).collect();
        assert_eq!(order, [(2, Some(500_000)), (3, Some(0)), (1, None)]);
    }

    #[test]
    fn reasons_with_different_numbers_count_together() {
        assert_eq!(reason_kind("expected 3 fields as in the header, found 5; x"), reason_kind("expected 3 fields as in the header, found 12; x"));
        assert_eq!(reason_kind("invalid UTF-8 at byte 17 of the record"), "invalid UTF-N at byte N of the record");
        let long = "a quote (the record has 99 bytes; the first 5 are kept; SHA-256 of all: ab)";
        assert_eq!(reason_kind(long), "a quote");
    }
}
