//! Backfills that do what is left: complete dates skipped, several dates at once, past a failed
//! date when asked, one line per date at the end; two backfills over the same dates never run a
//! date twice at once.

use std::path::Path;

use crate::common::{Cluster, Sample, report, text, ubm, ubm_ok};

/// `count` consecutive dates from 2011-11-10, as YYYY-MM-DD.
fn dates(count: usize) -> Vec<String> {
    let first = chrono::NaiveDate::from_ymd_opt(2011, 11, 10).expect("date");
    (0..count).map(|i| (first + chrono::Days::new(i as u64)).format("%Y-%m-%d").to_string()).collect()
}

/// The vendor's file for every date of `dates` but `missing`, under `dir/DATE/`; the location
/// with `{date}`.
fn daily_reviews(sample: &Sample, dir: &Path, dates: &[String], missing: &str) -> String {
    for date in dates.iter().filter(|d| *d != missing) {
        std::fs::create_dir_all(dir.join(date)).expect("dir");
        std::fs::copy(sample.reviews(), dir.join(date).join("movie_review.csv")).expect("copy");
    }
    format!("{}/{{date}}/movie_review.csv", dir.display())
}

#[test]
fn a_backfill_runs_only_what_is_left_four_at_a_time_past_a_missing_file() {
    let sample = Sample::new("0.01");
    let all = dates(30);
    let missing = all[17].clone();
    let reviews = daily_reviews(&sample, &sample.dir.path().join("vendor"), &all, &missing);
    let lake = sample.lake("lake");
    let common = ["--reviews", &reviews, "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"];
    ubm_ok(&[&["run", "--from", &all[0], "--to", &all[9]][..], &common].concat());
    let complete_runs: Vec<serde_json::Value> = all[..10].iter().map(|d| report(&lake, d)["run_id"].clone()).collect();

    let range = ["--from", &all[0], "--to", &all[29], "--keep-going", "--parallel", "4"];
    let dry = ubm_ok(&[&["run", "--dry-run"][..], &range, &common].concat());
    let plan = text(&dry.stdout);
    assert!(plan.contains("20 of 30 dates would run, 4 at a time (--redo failed), going on past failures"), "{plan}");

    let cluster = Cluster::start(2);
    let out = ubm().args(["submit", "--scheduler", &cluster.engine]).args(range).args(common).output().expect("submit");
    let (table, progress) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "a failed date fails the backfill: {table}");
    assert!(table.contains("30 dates: 19 succeeded, 1 failed, 0 held, 10 skipped"), "{table}");
    let failed_line = table.lines().find(|l| l.starts_with(&missing)).expect("the missing date's line");
    assert!(failed_line.contains("failed") && failed_line.contains(&format!("{missing}/movie_review.csv")), "named: {failed_line}");
    for date in &all[..10] {
        let line = table.lines().find(|l| l.starts_with(date.as_str())).expect("a line per date");
        assert!(line.contains("skipped") && line.contains("complete"), "{line}");
    }
    assert!(progress.contains("[30/30]"), "progress counts the dates: {progress}");
    let reran: Vec<serde_json::Value> = all[..10].iter().map(|d| report(&lake, d)["run_id"].clone()).collect();
    assert_eq!(reran, complete_runs, "the complete dates were not run again");
    for date in all.iter().filter(|d| **d != missing) {
        assert_eq!(report(&lake, date)["status"], "succeeded", "{date}");
    }

    // Without --keep-going no date starts after the failure; --redo all runs the complete ones.
    let out = ubm().args(["run", "--from", &all[15], "--to", &all[19], "--redo", "all"]).args(common).output().expect("run");
    let table = text(&out.stdout);
    assert!(!out.status.success() && table.contains(&format!("{} ", all[19])), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&all[19]) && l.contains("not started: an earlier date failed")), "{table}");
}

#[test]
fn two_backfills_over_the_same_dates_never_run_a_date_twice_at_once() {
    let sample = Sample::new("0.01");
    let all = dates(12);
    let reviews = daily_reviews(&sample, &sample.dir.path().join("vendor"), &all, "none");
    let lake = sample.lake("lake");
    let backfill = |from: &str, to: &str| {
        ubm()
            .args(["run", "--from", from, "--to", to, "--keep-going", "--parallel", "2"])
            .args(["--reviews", &reviews, "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ubm runs")
    };
    let (first, second) = (backfill(&all[0], &all[7]), backfill(&all[4], &all[11]));
    for child in [first, second] {
        let out = child.wait_with_output().expect("ends");
        // A date the other backfill held is refused, never run beside it: the only failure.
        let table = text(&out.stdout);
        let date_lines = table.lines().filter(|l| l.len() > 10 && l.as_bytes()[4] == b'-' && l.as_bytes()[7] == b'-');
        for line in date_lines.filter(|l| l.contains(" failed ")) {
            assert!(line.contains("is being run by"), "only a date the other backfill held may fail: {line}");
        }
    }
    let status = ubm().args(["status", "--lake", &lake]).output().expect("status");
    let shown = text(&status.stdout);
    let complete = shown.lines().filter(|l| l.contains(" complete ")).count();
    assert_eq!(complete, 12, "every date complete, none mixed: {shown}");
}
