//! The metric against an independent engine: DuckDB runs the contract's SQL texts on the same
//! staged inputs, and ubm's lake table must equal its result, for both semantics.

use std::process::Command;

use crate::common::{Sample, peer_python, peer_script, text, ubm_ok};

const DATE: &str = "2011-12-31";

fn duckdb_vs_ubm(python: &std::path::Path, lake: &str, semantics: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let out = Command::new(python).arg(peer_script("duckdb_metric.py")).args([lake, DATE, semantics]).output().expect("python runs");
    assert!(out.status.success(), "DuckDB peer failed:\n{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = |key: &str| -> Vec<Vec<String>> {
        value[key]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_array().expect("row").iter().map(|v| v.as_str().unwrap_or("NULL").to_string()).collect())
            .collect()
    };
    (rows("duckdb"), rows("ubm"))
}

#[test]
fn metric_equals_duckdb_for_correct_and_seed() {
    let Some(python) = peer_python() else { return };
    let sample = Sample::new("0.03");
    let mut results = Vec::new();
    for semantics in ["correct", "seed"] {
        let lake = sample.lake(&format!("lake-{semantics}"));
        ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--semantics", semantics]);
        let (duckdb, ours) = duckdb_vs_ubm(&python, &lake, semantics);
        assert!(duckdb.len() > 100, "{semantics}: DuckDB found only {} customers", duckdb.len());
        assert_eq!(ours, duckdb, "{semantics}: ubm's table differs from DuckDB's");
        eprintln!("{semantics}: {} rows equal to DuckDB", ours.len());
        results.push(ours);
    }
    // The original SQL's fan-out multiplies the numbers: the two semantics must differ.
    assert_ne!(results[0], results[1], "seed semantics must reproduce the fan-out");
    let multiplied = results[0].iter().zip(&results[1]).filter(|(c, s)| c[3] != s[3]).count();
    assert!(multiplied > 0, "seed review_count must be multiplied for customers with several purchase lines");
}
