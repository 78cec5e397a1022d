//! The short human summary printed at the end of `ubm run`.

use anyhow::Result;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int32Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use ubm_jobs::schema::col;

use crate::pipeline::{RunConfig, RunReport};

/// Prints what the run did, whether the counts reconcile, where the table is and the top
/// customers by amount spent.
pub fn print(report: &RunReport, config: &RunConfig) -> Result<()> {
    let c = &report.counts;
    println!("ubm run {} — {} in {:.2}s ({} engine, {} semantics)", report.run_date, report.status, report.duration_ms as f64 / 1000.0, report.engine, report.semantics);
    for task in &report.tasks {
        let note = task.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default();
        println!("  {:<9} {:<10} {:>7} ms  attempts {}{note}", task.name, task.status, task.duration_ms, task.attempts);
    }
    println!(
        "  reviews:   {} read = {} classified + {} rejected ({}); {} positive, {} null kept as negative",
        c.review_records_read,
        c.reviews_classified,
        c.reviews_rejected,
        if report.counts_reconcile { "reconciled" } else { "DOES NOT RECONCILE" },
        c.positive_reviews,
        c.null_reviews
    );
    println!(
        "  matching:  {} reviews with a non-integer cid, {} with no purchasing customer",
        c.reviews_invalid_cid, c.reviews_without_customer
    );
    println!("  purchases: {} rows in the as-of snapshot", c.purchase_rows_extracted);
    if let Some(partition) = &report.metric_partition {
        println!("  table:     {} rows at {partition}", c.metric_rows_written);
    }
    if let (Some(rows), Some(w)) = (c.warehouse_rows_loaded, &config.warehouse) {
        println!("  warehouse: {rows} rows loaded into public.user_behavior_metric at {w}");
    }
    print_top_customers(report)?;
    println!("  report:    {}_runs/{}.json", config.lake.root(), report.run_date);
    Ok(())
}

fn print_top_customers(report: &RunReport) -> Result<()> {
    let mut rows: Vec<(i128, String, i32, i32, i32)> = Vec::new();
    for batch in &report.metric {
        let (Some(id), Some(amount), Some(score), Some(count)) = (
            batch.column_by_name(col::CUSTOMERID),
            batch.column_by_name(col::AMOUNT_SPENT),
            batch.column_by_name(col::REVIEW_SCORE),
            batch.column_by_name(col::REVIEW_COUNT),
        ) else {
            continue;
        };
        let formatter = ArrayFormatter::try_new(amount.as_ref(), &FormatOptions::default())?;
        let (id, raw, score, count) = (
            id.as_primitive::<Int32Type>(),
            amount.as_primitive::<Decimal128Type>(),
            score.as_primitive::<Int32Type>(),
            count.as_primitive::<Int32Type>(),
        );
        for i in 0..batch.num_rows() {
            if raw.is_valid(i) {
                rows.push((raw.value(i), formatter.value(i).to_string(), id.value(i), score.value(i), count.value(i)));
            }
        }
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    if rows.is_empty() {
        return Ok(());
    }
    println!("  top customers by amount spent:");
    println!("    {:>10} {:>16} {:>12} {:>12}", "customerid", "amount_spent", "review_score", "review_count");
    for (_, amount, id, score, count) in rows.iter().take(5) {
        println!("    {id:>10} {amount:>16} {score:>12} {count:>12}");
    }
    Ok(())
}
