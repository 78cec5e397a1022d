//! The metric against an independent engine: DuckDB runs the contract's SQL texts on the same
//! staged inputs, and ubm's lake table must equal its result, for both semantics.

use std::process::Command;

use crate::common::{Sample, peer_python, peer_script, text, ubm_ok};

const DATE: &str = "2011-12-31";

/// A table's rows, every value as text.
type Rows = Vec<Vec<String>>;

/// DuckDB's rows and ubm's, and DuckDB's counts of the reviews of no integer id and of no
/// customer.
fn duckdb_vs_ubm(python: &std::path::Path, lake: &str, semantics: &str) -> (Rows, Rows, (u64, u64)) {
    let out = Command::new(python).arg(peer_script("duckdb_metric.py")).args([lake, DATE, semantics]).output().expect("python runs");
    assert!(out.status.success(), "DuckDB peer failed:\n{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = |key: &str| -> Rows {
        value[key]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_array().expect("row").iter().map(|v| v.as_str().unwrap_or("NULL").to_string()).collect())
            .collect()
    };
    let count = |key: &str| value["matches"][key].as_u64().unwrap_or_else(|| panic!("no count {key}: {value}"));
    (rows("duckdb"), rows("ubm"), (count("invalid_cid"), count("no_customer")))
}

/// The run report's counts of the reviews of no integer id and of no customer.
fn ubm_matches(lake: &str) -> (u64, u64) {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{lake}/_runs/{DATE}.json")).expect("the run report")).expect("json");
    let count = |key: &str| report["counts"][key].as_u64().unwrap_or_else(|| panic!("no count {key} in the run report"));
    (count("reviews_invalid_cid"), count("reviews_without_customer"))
}

#[test]
fn metric_equals_duckdb_for_correct_and_seed() {
    let Some(python) = peer_python() else { return };
    let sample = Sample::new("0.03");
    let mut results = Vec::new();
    for semantics in ["correct", "seed"] {
        let lake = sample.lake(&format!("lake-{semantics}"));
        ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--semantics", semantics]);
        let (duckdb, ours, matches) = duckdb_vs_ubm(&python, &lake, semantics);
        assert!(duckdb.len() > 100, "{semantics}: DuckDB found only {} customers", duckdb.len());
        assert_eq!(ours, duckdb, "{semantics}: ubm's table differs from DuckDB's");
        // The correct semantics derive the reviews of no customer from the table's own review
        // counts, the seed semantics count them with a join: both must say what DuckDB says.
        assert!(matches.1 > 0, "{semantics}: the sample has no review of an unknown customer to count");
        assert_eq!(ubm_matches(&lake), matches, "{semantics}: (reviews of no integer id, of no customer) differ from DuckDB's");
        eprintln!("{semantics}: {} rows equal to DuckDB", ours.len());
        results.push(ours);
    }
    // The original SQL's fan-out multiplies the numbers: the two semantics must differ.
    assert_ne!(results[0], results[1], "seed semantics must reproduce the fan-out");
    let multiplied = results[0].iter().zip(&results[1]).filter(|(c, s)| c[3] != s[3]).count();
    assert!(multiplied > 0, "seed review_count must be multiplied for customers with several purchase lines");
}
