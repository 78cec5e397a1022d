//! The short human summary printed at the end of `ubm run`.

use anyhow::Result;
use ubm_pipeline::dashboard::{by_amount, customer_rows, exact};
use ubm_pipeline::{RunConfig, RunReport};

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
    println!("  report:    {}_runs/{}.json (page: {}_report/index.html)", config.lake.root(), report.run_date, config.lake.root());
    Ok(())
}

fn print_top_customers(report: &RunReport) -> Result<()> {
    let mut rows = Vec::new();
    for batch in &report.metric {
        rows.extend(customer_rows(batch, "the day's metric")?);
    }
    if rows.is_empty() {
        return Ok(());
    }
    by_amount(&mut rows);
    println!("  top customers by amount spent:");
    println!("    {:>10} {:>16} {:>12} {:>12}", "customerid", "amount_spent", "review_score", "review_count");
    for r in rows.iter().take(5) {
        println!("    {:>10} {:>16} {:>12} {:>12}", r.customer_id, exact(r.amount), r.review_score, r.review_count);
    }
    Ok(())
}
