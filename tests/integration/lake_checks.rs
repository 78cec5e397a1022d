//! What `ubm status --lake` and `ubm report` say of a lake someone changed after a run: a file
//! added to, removed from or cut short in a committed partition (each kind of partition), a
//! record that cannot be read, and a rerun that failed beside a published day.

use std::path::Path;
use std::process::Command;

use crate::common::{Sample, partition, text, ubm, ubm_ok};

const DATE: &str = "2011-12-09";

/// A lake with one complete day whose rejects partition has a file (two bad records added).
fn lake_with_one_day(sample: &Sample) -> String {
    let reviews = sample.dir.path().join("with-rejects.csv");
    let mut bytes = std::fs::read(sample.reviews()).expect("reviews");
    bytes.extend_from_slice(b"1,two,fields,too,many\n2,\xff\xfe broken utf-8,3\n");
    std::fs::write(&reviews, bytes).expect("write");
    let lake = sample.lake("base");
    ubm_ok(&["run", "--date", DATE, "--reviews", &reviews.display().to_string(), "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"]);
    lake
}

/// A copy of `lake` at `to`.
fn copy_lake(lake: &str, to: &Path) {
    let status = Command::new("cp").args(["-a", lake, &to.display().to_string()]).status().expect("cp");
    assert!(status.success());
}

/// The first file of a partition other than `_SUCCESS`.
fn first_file(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("partition")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "_SUCCESS")
        .collect();
    names.sort();
    names.into_iter().next().unwrap_or_else(|| panic!("{} has no file", dir.display()))
}

#[test]
fn a_stray_missing_or_truncated_file_in_any_partition_is_named_and_its_day_never_shown_as_complete() {
    let sample = Sample::new("0.01");
    let base = lake_with_one_day(&sample);
    let healthy = ubm().args(["status", "--lake", &base, "--date", DATE]).output().expect("status");
    assert!(healthy.status.success() && text(&healthy.stdout).contains("complete"), "{}", text(&healthy.stdout));
    let tables = ["raw/movie_review", "stage/user_purchase", "stage/movie_review", "rejects/movie_review", "warehouse/user_behavior_metric"];
    for table in tables {
        for damage in ["stray", "stray in a subfolder", "missing", "truncated"] {
            let case = sample.dir.path().join(format!("{}-{}", table.replace('/', "-"), damage.replace(' ', "-")));
            copy_lake(&base, &case);
            let lake = case.display().to_string();
            let dir = partition(&lake, table, DATE);
            let victim = first_file(&dir);
            let named = match damage {
                "stray" => {
                    std::fs::copy(dir.join(&victim), dir.join(format!("copy-{victim}"))).expect("copy");
                    format!("copy-{victim}")
                }
                "stray in a subfolder" => {
                    std::fs::create_dir(dir.join("old")).expect("mkdir");
                    std::fs::copy(dir.join(&victim), dir.join("old").join(&victim)).expect("copy");
                    format!("old/{victim}")
                }
                "missing" => {
                    std::fs::remove_file(dir.join(&victim)).expect("remove");
                    victim.clone()
                }
                _ => {
                    let file = std::fs::OpenOptions::new().write(true).open(dir.join(&victim)).expect("open");
                    let len = file.metadata().expect("metadata").len();
                    file.set_len(len / 2).expect("truncate");
                    victim.clone()
                }
            };
            let what = format!("{table}, {damage}");
            let status = ubm().args(["status", "--lake", &lake, "--date", DATE]).output().expect("status");
            let said = text(&status.stdout);
            assert!(!status.status.success(), "{what}: status exits non-zero\n{said}");
            assert!(said.contains("damaged") && said.contains(table) && said.contains(&named), "{what}: names the partition and the file\n{said}");
            let page_path = case.join("page.html");
            ubm_ok(&["report", "--lake", &lake, "--out", &page_path.display().to_string()]);
            let page = std::fs::read_to_string(&page_path).expect("page");
            assert!(page.contains("data-state=\"damaged\"") && page.contains(&named), "{what}: the page marks the day and names the file");
            if table == "warehouse/user_behavior_metric" {
                assert!(page.contains("data-figure=\"customers\" data-value=\"\""), "{what}: no customer count shown for a damaged metric");
            }
        }
    }
}

#[test]
fn a_record_that_cannot_be_read_marks_its_own_date_and_hides_no_other() {
    let sample = Sample::new("0.01");
    let lake = sample.lake("lake");
    for date in ["2011-12-08", DATE] {
        ubm_ok(&["run", "--date", date, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"]);
    }
    std::fs::write(Path::new(&lake).join("_runs/2011-12-08.json"), b"{ half a report").expect("write");
    let status = ubm().args(["status", "--lake", &lake]).output().expect("status");
    let said = text(&status.stdout);
    assert!(!status.status.success(), "{said}");
    let line = |date: &str| said.lines().find(|l| l.starts_with(date)).unwrap_or_default().to_string();
    assert!(line("2011-12-08").contains("damaged") && line("2011-12-08").contains("not a ubm run report"), "{said}");
    assert!(line(DATE).contains("complete"), "{said}");
    let page_path = sample.dir.path().join("page.html");
    ubm_ok(&["report", "--lake", &lake, "--out", &page_path.display().to_string()]);
    let page = std::fs::read_to_string(&page_path).expect("page");
    assert!(page.contains("data-state=\"complete\"") && page.contains("data-state=\"damaged\""), "both dates are on the page");

    let leases = Path::new(&lake).join("_leases").join(DATE);
    std::fs::create_dir_all(&leases).expect("mkdir");
    std::fs::write(leases.join("lease-0000009999.json"), b"not json").expect("write");
    let said = text(&ubm().args(["status", "--lake", &lake]).output().expect("status").stdout);
    assert!(line_of(&said, DATE).contains("damaged") && line_of(&said, DATE).contains("not a ubm lease"), "{said}");
    assert!(line_of(&said, "2011-12-08").contains("damaged"), "{said}");
    let rerun =
        ubm().args(["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake]).output().expect("run");
    let said = format!("{}{}", text(&rerun.stdout), text(&rerun.stderr));
    assert!(!rerun.status.success() && said.contains("not a ubm lease") && said.contains("delete the directory"), "{said}");
}

fn line_of(text: &str, date: &str) -> String {
    text.lines().find(|l| l.starts_with(date)).unwrap_or_default().to_string()
}

#[test]
fn a_failed_rerun_keeps_the_published_days_numbers_beside_its_table() {
    let sample = Sample::new("0.01");
    let lake = sample.lake("lake");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"]);
    let first = crate::common::report(&lake, DATE);
    let rerun = ubm()
        .args(["run", "--date", DATE, "--reviews", "/nonexistent/movie_review.csv", "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"])
        .output()
        .expect("run");
    assert!(!rerun.status.success());
    let second = crate::common::report(&lake, DATE);
    assert_eq!(second["status"], "failed");
    assert_eq!(second["published"]["run_id"], first["run_id"], "the failed run keeps the published day's report");
    let page_path = sample.dir.path().join("page.html");
    ubm_ok(&["report", "--lake", &lake, "--out", &page_path.display().to_string()]);
    let page = std::fs::read_to_string(&page_path).expect("page");
    let read = first["counts"]["review_records_read"].as_u64().expect("count");
    assert!(page.contains(&format!("data-figure=\"reviews_read\" data-value=\"{read}\"")), "the published day's counts are shown, not zeros");
    assert!(page.contains("data-figure=\"run_status\" data-value=\"failed\""), "the last run is shown as failed");
}
