//! The short human summary of a run, printed at the end of `ubm run` and `ubm submit`.
//!
//! Writing to a `String` cannot fail, so the results of `writeln!` are dropped.

use std::fmt::Write;

use crate::dashboard::{by_amount, customer_rows, exact};
use crate::error::Result;
use crate::{RunConfig, RunReport};

/// What the run did, whether the counts reconcile, where the table is and the top customers by
/// amount spent: the lines `ubm run` and `ubm submit` print at the end of a date.
pub fn summary(report: &RunReport, config: &RunConfig) -> Result<String> {
    let mut out = String::new();
    let c = &report.counts;
    let _ = writeln!(
        out,
        "ubm run {} — {} in {:.2}s ({} engine, {} semantics{})",
        report.run_date,
        report.status,
        report.duration_ms as f64 / 1000.0,
        report.engine,
        report.semantics,
        report.partitions.as_ref().map(|p| format!(", {} partitions from {}", p.count, p.from)).unwrap_or_default()
    );
    for task in &report.tasks {
        let note = match (&task.error, task.kept) {
            (Some(error), _) => format!(" — {error}"),
            (None, true) => " — kept: committed by this run before its driver restarted".to_string(),
            (None, false) => String::new(),
        };
        let _ = writeln!(out, "  {:<9} {:<10} {:>7} ms  attempts {}{note}", task.name, task.status, task.duration_ms, task.attempts);
    }
    let _ = writeln!(
        out,
        "  reviews:   {} read = {} classified + {} rejected ({}); {} positive, {} null kept as negative",
        c.review_records_read,
        c.reviews_classified,
        c.reviews_rejected,
        if report.counts_reconcile { "reconciled" } else { "DOES NOT RECONCILE" },
        c.positive_reviews,
        c.null_reviews
    );
    let _ = writeln!(
        out,
        "  matching:  {} reviews with a non-integer cid, {} with no purchasing customer",
        c.reviews_invalid_cid, c.reviews_without_customer
    );
    let _ = writeln!(out, "  purchases: {} rows in the as-of snapshot", c.purchase_rows_extracted);
    if let Some(partition) = &report.metric_partition {
        let _ = writeln!(out, "  table:     {} rows at {partition}", c.metric_rows_written);
    }
    for check in report.failed_checks() {
        let verdict = if check.holds() { "HELD" } else { "warning" };
        let _ = writeln!(out, "  check:     {} failed ({verdict}): {}", check.name, check.detail);
    }
    if report.status == crate::RunStatus::Held {
        let _ = writeln!(
            out,
            "  held:      nothing of {} is published; its table is in {}held/user_behavior_metric/insert_date={}/ \
             — look, then `ubm publish --date {} --lake {}`, or rerun (--check NAME=warn to let it through)",
            report.run_date,
            config.lake.root(),
            report.run_date,
            report.run_date,
            config.lake.root()
        );
    }
    if let (Some(rows), Some(w)) = (c.warehouse_rows_loaded, &config.warehouse) {
        let _ = writeln!(out, "  warehouse: {rows} rows loaded into public.user_behavior_metric at {w}");
    }
    top_customers(report, &mut out)?;
    let _ = writeln!(out, "  report:    {}_runs/{}.json (page: {}_report/index.html)", config.lake.root(), report.run_date, config.lake.root());
    Ok(out)
}

fn top_customers(report: &RunReport, out: &mut String) -> Result<()> {
    let mut rows = Vec::new();
    for batch in &report.top_customers {
        rows.extend(customer_rows(batch, "the day's metric")?);
    }
    if rows.is_empty() {
        return Ok(());
    }
    by_amount(&mut rows);
    let _ = writeln!(out, "  top customers by amount spent:");
    let _ = writeln!(out, "    {:>10} {:>16} {:>12} {:>12}", "customerid", "amount_spent", "review_score", "review_count");
    for r in rows.iter().take(5) {
        let _ = writeln!(
            out,
            "    {:>10} {:>16} {:>12} {:>12}",
            r.customer_id,
            r.amount.map_or_else(|| "NULL".to_string(), exact),
            r.review_score,
            r.review_count
        );
    }
    Ok(())
}
