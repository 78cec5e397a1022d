//! Write, audit, publish: a day whose checks fail is held, nothing of it published, until a
//! person publishes it as it was staged; a check set to `warn` publishes with the warning.

use std::path::Path;
use std::process::Command;

use crate::common::{Sample, TestDb, parquet_rows, partition, report, text, ubm, ubm_ok};

const DATE: &str = "2011-12-09";

/// A copy of the review file `from` in which 3 of every 10 records have a field too many.
fn with_garbage(from: &str, to: &Path) {
    let script = "import csv, sys\n\
        rows = list(csv.reader(open(sys.argv[1], newline='')))\n\
        out = csv.writer(open(sys.argv[2], 'w', newline=''), lineterminator='\\n')\n\
        out.writerow(rows[0])\n\
        for i, row in enumerate(rows[1:]):\n\
        \x20   out.writerow(row + ['one field too many'] if i % 10 < 3 else row)\n";
    let out = Command::new("python3").args(["-c", script, from]).arg(to).output().expect("python3 runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The files of a partition and their rows, for comparing two partitions' contents.
fn rows_of(dir: &Path) -> Vec<String> {
    let mut rows = parquet_rows(dir);
    rows.sort();
    rows
}

fn run(sample: &Sample, reviews: &str, lake: &str, extra: &[&str]) -> std::process::Output {
    ubm()
        .args(["run", "--date", DATE, "--reviews", reviews, "--oltp", &sample.sqlite(), "--lake", lake, "--no-report"])
        .args(extra)
        .output()
        .expect("ubm runs")
}

#[test]
fn a_day_of_garbage_reviews_is_held_then_published_exactly_as_staged() {
    let sample = Sample::new("0.01");
    let lake = sample.lake("lake");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"]);
    let published = partition(&lake, "warehouse/user_behavior_metric", DATE);
    let before = rows_of(&published);
    let marker_before = std::fs::read(published.join("_SUCCESS")).expect("marker");

    let garbage = sample.dir.path().join("garbage.csv");
    with_garbage(&sample.reviews(), &garbage);
    let held = run(&sample, garbage.to_str().expect("utf-8"), &lake, &[]);
    let said = format!("{}{}", text(&held.stdout), text(&held.stderr));
    assert!(!held.status.success(), "a held day exits non-zero: {said}");
    let day = report(&lake, DATE);
    assert_eq!(day["status"], "held", "{day:#}");
    let rejects = day["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "rejects").expect("the rejects check").clone();
    assert_eq!((rejects["passed"].as_bool(), rejects["severity"].as_str()), (Some(false), Some("error")), "{rejects}");
    assert!(rejects["detail"].as_str().is_some_and(|d| d.contains("30.") && d.contains("bound 10.0%")), "{rejects}");
    // Nothing of it published: the earlier table and its marker are as they were.
    assert_eq!(std::fs::read(published.join("_SUCCESS")).expect("marker"), marker_before, "the published marker is untouched");
    assert_eq!(rows_of(&published), before);
    let held_dir = partition(&lake, "held/user_behavior_metric", DATE);
    let staged = rows_of(&held_dir);
    assert!(!staged.is_empty() && staged != before, "the held table is kept for inspection, and differs");
    let status = ubm().args(["status", "--lake", &lake, "--date", DATE]).output().expect("status");
    let shown = text(&status.stdout);
    assert!(!status.status.success() && shown.contains("held") && shown.contains("check rejects failed (error)"), "{shown}");
    assert!(shown.contains(&format!("ubm publish --date {DATE}")), "status says what to do: {shown}");
    let page = ubm_ok(&["report", "--lake", &lake]);
    let html = std::fs::read_to_string(text(&page.stdout).trim().trim_start_matches("file://")).expect("the page");
    assert!(html.contains("data-check=\"rejects\" data-severity=\"error\""), "the page shows the failed check");

    // Published after a look: exactly what was staged, the acceptance on record.
    let out = ubm_ok(&["publish", "--date", DATE, "--lake", &lake, "--by", "analyst@example"]);
    assert!(text(&out.stdout).contains("accepting rejects (by analyst@example)"), "{}", text(&out.stdout));
    assert_eq!(rows_of(&published), staged, "the published table is the held one, not recomputed");
    assert!(!held_dir.exists(), "the held copy is gone once published");
    let day = report(&lake, DATE);
    assert_eq!(day["status"], "succeeded");
    assert_eq!(day["accepted"]["by"], "analyst@example");
    assert_eq!(day["accepted"]["checks"], serde_json::json!(["rejects"]));
    let status = ubm().args(["status", "--lake", &lake, "--date", DATE]).output().expect("status");
    assert!(status.status.success() && text(&status.stdout).contains("complete"), "{}", text(&status.stdout));
    let again = ubm().args(["publish", "--date", DATE, "--lake", &lake]).output().expect("publish");
    assert!(!again.status.success() && text(&again.stderr).contains("only a day its checks held"), "{}", text(&again.stderr));

    // The same day with the check a warning: published, the warning in the report.
    let warned = run(&sample, garbage.to_str().expect("utf-8"), &lake, &["--check", "rejects=warn"]);
    assert!(warned.status.success(), "{}", text(&warned.stderr));
    let day = report(&lake, DATE);
    assert_eq!(day["status"], "succeeded");
    let rejects = day["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "rejects").expect("rejects").clone();
    assert_eq!((rejects["passed"].as_bool(), rejects["severity"].as_str()), (Some(false), Some("warn")), "{rejects}");
    let bad = ubm().args(["run", "--date", DATE, "--check", "reject=warn", "--lake", &lake]).output().expect("run");
    assert!(!bad.status.success() && text(&bad.stderr).contains("no check `reject`"), "{}", text(&bad.stderr));
}

#[test]
fn an_empty_purchases_table_holds_the_day_naming_the_source() {
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("0.01");
    ubm_ok(&["datagen", "--scale", "0.01", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    db.query("DELETE FROM retail.user_purchase");
    let lake = sample.lake("lake");
    let out = ubm()
        .args(["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &lake, "--no-report"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "{}", text(&out.stderr));
    let day = report(&lake, DATE);
    assert_eq!(day["status"], "held", "{day:#}");
    let zero = day["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "purchases_zero").expect("purchases_zero").clone();
    assert_eq!(zero["passed"], false);
    let detail = zero["detail"].as_str().expect("detail");
    assert!(detail.contains("0 purchase rows") && detail.contains("retail.user_purchase") && detail.contains("postgres://"), "{detail}");
    assert!(!Path::new(&partition(&lake, "warehouse/user_behavior_metric", DATE)).join("_SUCCESS").exists(), "nothing published");
}
