//! A whole day through the library, in this process, with no `ubm` binary: the same test in
//! each in-process mode (DataFusion, and Ballista standalone: scheduler and executor in this
//! process, plans serialized and shipped as on a cluster).

use std::path::Path;

use datafusion::arrow::record_batch::RecordBatch;
use ubm_cluster::{Engine, EngineKind};
use ubm_jobs::{RunDate, Semantics};
use ubm_pipeline::datagen::{DatagenConfig, generate};
use ubm_pipeline::{Lake, Oltp, RetryPolicy, RunConfig, RunReport, TaskStatus, run_date};

use crate::common::{batch_rows, parquet_rows, partition};

/// Sample data (SF 0.01, seed 7) and an embedded database, made through the library.
async fn sample(dir: &Path) -> (String, Oltp) {
    let config = DatagenConfig { scale: 0.01, seed: 7, out: dir.join("sample") };
    let generated = tokio::task::spawn_blocking(move || generate(&config)).await.expect("join").expect("datagen");
    let oltp = Oltp::Sqlite(dir.join("oltp.sqlite"));
    oltp.load_csv(&generated.purchases_csv).await.expect("load the embedded database");
    (generated.reviews_csv.display().to_string(), oltp)
}

async fn day_through_the_library(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (reviews, oltp) = sample(dir.path()).await;
    let lake_dir = dir.path().join("lake").display().to_string();
    let config = RunConfig {
        reviews,
        oltp,
        lake: Lake::open(&lake_dir).await.expect("lake"),
        warehouse: None,
        semantics: Semantics::Correct,
        retry: RetryPolicy::default(),
        wait_for_lease: std::time::Duration::ZERO,
    };
    let engine = Engine::start(kind.clone()).await.expect("engine");
    let date: RunDate = "2011-12-31".parse().expect("date");
    let report = run_date(&engine, &config, date).await.expect("the run completes");

    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.engine, kind.to_string());
    for task in &report.tasks {
        let expected = if task.name == "load" { TaskStatus::Skipped } else { TaskStatus::Succeeded };
        assert_eq!(task.status, expected, "{task:?}");
        assert!(task.status == TaskStatus::Skipped || task.attempts == 1, "{task:?}");
    }
    let counts = &report.counts;
    assert!(report.counts_reconcile);
    assert_eq!(counts.review_records_read, 1000, "SF 0.01 has 1,000 reviews");
    assert_eq!(counts.purchase_rows_extracted, 5419, "every purchase is before 2011-12-31");
    assert!(counts.metric_rows_written > 0, "{counts:?}");

    // The lake holds the rows the run counted; the report's top customers are the lake's
    // biggest spenders (ties by id); the report it wrote is this one.
    let lake_rows = parquet_rows(&partition(&lake_dir, "warehouse/user_behavior_metric", "2011-12-31"));
    assert_eq!(lake_rows.len() as u64, counts.metric_rows_written);
    let field = |row: &str, i: usize| row.split('|').nth(i).expect("field").to_string();
    let mut by_amount = lake_rows.clone();
    by_amount.sort_by(|a, b| {
        let amount = |r: &str| field(r, 1).parse::<f64>().expect("amount");
        let id = |r: &str| field(r, 0).parse::<i64>().expect("id");
        amount(b).total_cmp(&amount(a)).then(id(a).cmp(&id(b)))
    });
    let top: Vec<String> = report.top_customers.iter().flat_map(without_date).collect();
    assert_eq!(top, by_amount[..5.min(by_amount.len())]);
    let written: RunReport = serde_json::from_slice(
        &std::fs::read(Path::new(&lake_dir).join("_runs/2011-12-31.json")).expect("the run report"),
    )
    .expect("the run report reads back");
    assert_eq!(written.counts, report.counts);
    assert_eq!(written.status, report.status);
}

/// The metric's rows as the lake stores them: without the partition column `insert_date`.
fn without_date(batch: &RecordBatch) -> Vec<String> {
    let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| batch.schema().field(*i).name() != "insert_date").collect();
    batch_rows(&batch.project(&keep).expect("project"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_through_the_library_local() {
    day_through_the_library(EngineKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_through_the_library_standalone() {
    day_through_the_library(EngineKind::Standalone).await;
}
