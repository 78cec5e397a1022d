//! `ubm report`: a self-contained HTML page whose numbers equal the lake (DuckDB recomputes
//! them), rendered by a real browser (headless Chromium) with no console error and no request.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Sample, missing, peer_python, peer_script, text, ubm, ubm_ok};

/// Values of attribute `name` in every tag of `html` that has attribute `key`.
fn rows<'a>(html: &'a str, key: &str) -> Vec<&'a str> {
    html.split('<').filter(|tag| tag.contains(&format!(" {key}=\""))).collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    let start = tag.find(&format!(" {name}=\"")).map(|i| i + name.len() + 3);
    start.and_then(|s| tag[s..].find('"').map(|e| &tag[s..s + e])).unwrap_or("")
}

/// A lake with a complete date, a failed date, and a complete date with rejected records.
fn lake_of_three_dates(sample: &Sample) -> String {
    let lake = sample.lake("lake");
    let inputs = sample.dir.path().join("daily");
    let reviews = std::fs::read(sample.reviews()).expect("reviews");
    for (date, extra) in [("2011-12-01", &b""[..]), ("2011-12-03", &b"1,two,fields,too,many\n2,\xff\xfe broken utf-8,3\n"[..])] {
        std::fs::create_dir_all(inputs.join(date)).expect("dir");
        std::fs::write(inputs.join(date).join("movie_review.csv"), [&reviews[..], extra].concat()).expect("write");
    }
    let pattern = inputs.join("{date}").join("movie_review.csv").display().to_string();
    for date in ["2011-12-01", "2011-12-02", "2011-12-03"] {
        let out = ubm()
            .args(["run", "--date", date, "--reviews", &pattern, "--oltp", &sample.sqlite(), "--lake", &lake, "--no-report"])
            .output()
            .expect("run");
        assert_eq!(out.status.success(), date != "2011-12-02", "{date}: {}", text(&out.stderr));
    }
    lake
}

/// Headless Chromium's rendering of `page`: the DOM it built, what it logged, and every URL it
/// asked for (from its net log). `None` (after saying why) when Chromium is missing outside CI.
fn render(page: &Path, dir: &Path) -> Option<(String, String, Vec<String>, PathBuf)> {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(chromium) = chromium else {
        missing("Chromium is not installed (Debian package `chromium`; .ci/run installs it)");
        return None;
    };
    let net_log = dir.join("net-log.json");
    let screenshot = dir.join("report.png");
    let url = format!("file://{}", page.display());
    let flags = |extra: &[String]| -> std::process::Output {
        Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs")
    };
    let dom = flags(&[format!("--log-net-log={}", net_log.display()), "--dump-dom".to_string()]);
    assert!(dom.status.success(), "chromium: {}", text(&dom.stderr));
    let shot = flags(&[format!("--screenshot={}", screenshot.display()), "--window-size=1280,2200".to_string()]);
    assert!(shot.status.success(), "chromium: {}", text(&shot.stderr));
    let requested = page_requests(&std::fs::read(&net_log).expect("net log"));
    Some((text(&dom.stdout), format!("{}{}", text(&dom.stderr), text(&shot.stderr)), requested, screenshot))
}

/// The URLs the page itself asked for, from Chromium's net log: requests whose initiator is the
/// page (`null` for a file page). The browser's own background requests (time, updates,
/// accounts) carry the initiator `not an origin` and are not the page's doing.
fn page_requests(net_log: &[u8]) -> Vec<String> {
    let log: serde_json::Value = serde_json::from_slice(net_log).expect("net log JSON");
    let start_job = &log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| &e["type"] == start_job && e["params"]["initiator"] != "not an origin")
        .filter_map(|e| e["params"]["url"].as_str())
        .filter(|url| !url.starts_with("file://"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_report_shows_the_lakes_numbers_in_a_browser_with_nothing_fetched() {
    let sample = Sample::new("0.02");
    let lake = lake_of_three_dates(&sample);
    let page = sample.dir.path().join("report.html");
    ubm_ok(&["report", "--lake", &lake, "--out", &page.display().to_string()]);
    let size = std::fs::metadata(&page).expect("page").len();
    assert!(size < 2_000_000, "the page is {size} bytes");
    let html = std::fs::read_to_string(&page).expect("page");
    for forbidden in ["<script src", "<link", "http://", "https://", "@import", "url("] {
        assert!(!html.contains(forbidden), "the page refers outside itself: {forbidden}");
    }

    let Some(python) = peer_python() else { return };
    let peer = Command::new(python).arg(peer_script("dashboard_figures.py")).arg(&lake).output().expect("duckdb peer");
    assert!(peer.status.success(), "{}", text(&peer.stderr));
    let expected: serde_json::Value = serde_json::from_slice(&peer.stdout).expect("peer JSON");

    let Some((dom, logged, requested, screenshot)) = render(&page, sample.dir.path()) else { return };
    assert!(!logged.contains("CONSOLE"), "console messages: {logged}");
    assert!(requested.is_empty(), "the page made requests: {requested:?}");
    let shot = std::fs::metadata(&screenshot).expect("screenshot").len();
    // A blank 1280×2200 page compresses to a few kilobytes; charts and tables do not.
    assert!(shot > 40_000, "the screenshot looks blank ({shot} bytes)");

    let trend = rows(&dom, "data-positive-share");
    assert_eq!(trend.len(), 3, "one row per date");
    for row in trend {
        let date = attr(row, "data-date");
        let day = &expected["days"][date];
        assert_eq!(attr(row, "data-customers"), day["customers"], "{date} customers");
        assert_eq!(attr(row, "data-spent"), day["spent"], "{date} amount spent");
        assert_eq!(attr(row, "data-positive-share"), day["positive_share"], "{date} positive share");
        assert_eq!(attr(row, "data-rejected"), day["rejected"], "{date} rejected");
        let state = attr(row, "data-state");
        assert_eq!(state, if date == "2011-12-02" { "failed" } else { "complete" }, "{date}");
    }
    let top: Vec<(String, String)> =
        rows(&dom, "data-customer").iter().take(10).map(|r| (attr(r, "data-customer").to_string(), attr(r, "data-amount").to_string())).collect();
    let expected_top: Vec<(String, String)> = expected["top"]
        .as_array()
        .expect("top")
        .iter()
        .map(|r| (r[0].as_str().unwrap_or("").to_string(), r[1].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(top, expected_top, "the latest date's top customers");
    assert!(dom.contains("data-figure=\"customers\""), "key figures are shown");
    let rejects = rows(&dom, "data-count");
    assert_eq!(rejects.iter().map(|r| attr(r, "data-count").parse::<u64>().unwrap_or(0)).sum::<u64>(), 2, "both rejected records are listed");
    assert!(dom.contains("2011-12-02") && dom.contains("does not exist"), "the failed date is shown with its error");
}

#[test]
fn an_empty_lake_or_a_missing_one_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing_lake = dir.path().join("nowhere").display().to_string();
    let out = ubm().args(["report", "--lake", &missing_lake]).output().expect("runs");
    assert!(!out.status.success() && text(&out.stderr).contains("nowhere"), "{}", text(&out.stderr));
    assert!(!Path::new(&missing_lake).exists(), "nothing was created");
    let empty = dir.path().display().to_string();
    let out = ubm().args(["report", "--lake", &empty]).output().expect("runs");
    assert!(!out.status.success() && text(&out.stderr).contains("no run report"), "{}", text(&out.stderr));
}

#[test]
fn a_run_refreshes_the_lakes_report() {
    let sample = Sample::new("0.01");
    let lake = sample.lake("lake");
    ubm_ok(&["run", "--date", "2011-12-31", "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake]);
    let page = std::fs::read_to_string(Path::new(&lake).join("_report/index.html")).expect("the run wrote the page");
    assert!(page.contains("data-date=\"2011-12-31\""), "the page shows the run's date");
}
