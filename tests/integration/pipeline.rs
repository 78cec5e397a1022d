//! The whole run: Postgres for real, idempotent reruns, both engines, backfills, secrets.

use std::path::Path;

use crate::common::{Sample, TestDb, files_under, lake_tables, partition, report, text, ubm, ubm_ok};

const DATE: &str = "2011-12-31";

#[test]
fn postgres_source_and_warehouse_and_a_rerun_changes_nothing() {
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("0.02");
    ubm_ok(&["datagen", "--scale", "0.02", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    let lake = sample.lake("lake");
    let run = || ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &lake, "--warehouse", &db.url()]);
    run();
    let warehouse_once = db.query("SELECT * FROM public.user_behavior_metric ORDER BY customerid");
    let lake_once = lake_tables(&lake, DATE);
    // Every file but the lease's, whose generation counts up with each run (one record stays,
    // beside the date's commit lock).
    let files = || -> Vec<String> {
        let all = files_under(Path::new(&lake));
        assert_eq!(all.iter().filter(|f| f.starts_with("_leases/") && f.ends_with(".json")).count(), 1, "one lease record is left: {all:?}");
        assert!(all.contains(&format!("_leases/{DATE}.lock")), "the commit lock stays, empty: {all:?}");
        all.into_iter().filter(|f| !f.starts_with("_leases/")).collect()
    };
    let files_once = files();
    run();
    assert_eq!(db.query("SELECT * FROM public.user_behavior_metric ORDER BY customerid"), warehouse_once);
    assert_eq!(lake_tables(&lake, DATE), lake_once);
    assert_eq!(files(), files_once, "a rerun leaves no extra files");

    let report = report(&lake, DATE);
    let counts = &report["counts"];
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["counts_reconcile"], true);
    assert_eq!(counts["purchase_rows_extracted"], 10838);
    assert_eq!(counts["warehouse_rows_loaded"], counts["metric_rows_written"]);
    assert_eq!(warehouse_once.len() as u64, counts["metric_rows_written"].as_u64().expect("rows"));
    // The exact decimal survives Postgres → Arrow → DECIMAL(18,5) → Postgres: every customer's
    // amount, in the lake and in the warehouse, equals the sum Postgres computes itself from the
    // source rows, to the last of the 5 decimals.
    let expected = db.query(&format!(
        "SELECT customer_id || '|' || CAST(SUM(quantity * unit_price) AS DECIMAL(18,5)) FROM retail.user_purchase \
         WHERE invoice_date < DATE '{DATE}' + 1 AND customer_id IN (SELECT customerid FROM public.user_behavior_metric) \
         GROUP BY customer_id ORDER BY customer_id"
    ));
    assert_eq!(expected.len(), warehouse_once.len(), "every metric customer has purchases");
    assert_eq!(db.query("SELECT customerid || '|' || amount_spent FROM public.user_behavior_metric ORDER BY customerid"), expected);
    let mut lake_amounts: Vec<(i64, String)> = lake_once[2]
        .1
        .iter()
        .map(|row| {
            let fields: Vec<&str> = row.split('|').collect();
            (fields[0].parse().expect("customerid"), format!("{}|{}", fields[0], fields[1]))
        })
        .collect();
    lake_amounts.sort();
    assert_eq!(lake_amounts.into_iter().map(|(_, row)| row).collect::<Vec<_>>(), expected, "the lake's amounts are Postgres's sums");

    // The embedded database gives the same tables as Postgres for the same data.
    let embedded = sample.lake("lake-sqlite");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &embedded]);
    assert_eq!(lake_tables(&embedded, DATE), lake_once);
}

#[test]
fn local_standalone_and_a_cluster_of_processes_give_identical_tables() {
    let sample = Sample::new("0.02");
    let cluster = crate::common::Cluster::start(2);
    let mut tables = Vec::new();
    for (name, engine) in [("local", "local"), ("standalone", "standalone"), ("cluster", cluster.engine.as_str())] {
        let lake = sample.lake(&format!("lake-{name}"));
        ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--engine", engine]);
        assert_eq!(report(&lake, DATE)["engine"], engine);
        tables.push(lake_tables(&lake, DATE));
    }
    assert!(tables[0][2].1.len() > 100, "the metric has rows");
    assert_eq!(tables[0], tables[1], "standalone differs from in-process");
    assert_eq!(tables[0], tables[2], "the cluster differs from in-process");
}

#[test]
fn an_unreachable_scheduler_is_a_clear_error_before_any_work() {
    let sample = Sample::new("0.001");
    let lake = sample.lake("lake");
    let output = ubm()
        .args(["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--engine", "df://127.0.0.1:1"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("df://127.0.0.1:1") && stderr.contains("ubm cluster scheduler"), "{stderr}");
    assert!(!Path::new(&lake).join("raw").exists(), "no task ran");
}

#[test]
fn a_backfill_runs_every_date_on_its_own_snapshot() {
    let sample = Sample::new("0.01");
    let lake = sample.lake("lake");
    let out = ubm_ok(&[
        "run",
        "--from",
        "2011-06-01",
        "--to",
        "2011-06-03",
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &lake,
        "--json",
    ]);
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let extracted: Vec<u64> =
        reports.as_array().expect("reports").iter().map(|r| r["counts"]["purchase_rows_extracted"].as_u64().expect("count")).collect();
    assert_eq!(extracted.len(), 3);
    assert!(extracted[0] < extracted[2], "the as-of snapshot grows with the date: {extracted:?}");
    assert!(extracted[0] < 5419, "a mid-year snapshot is not the whole table");
    for date in ["2011-06-01", "2011-06-02", "2011-06-03"] {
        assert!(partition(&lake, "warehouse/user_behavior_metric", date).join("_SUCCESS").exists());
    }
}

#[test]
fn passwords_never_reach_errors_logs_or_reports() {
    let sample = Sample::new("0.001");
    let lake = sample.lake("lake");
    let secret = "Sup3rSecretPw";
    let url = format!("postgres://ubm:{secret}@127.0.0.1:1/nothing");
    let output = ubm()
        .args([
            "run",
            "--date",
            DATE,
            "--reviews",
            &sample.reviews(),
            "--oltp",
            &url,
            "--lake",
            &lake,
            "--warehouse",
            &url,
            "--attempts",
            "2",
            "--retry-backoff-ms",
            "10",
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success(), "an unreachable database fails the run");
    let everything = format!("{}{}{}", text(&output.stdout), text(&output.stderr), report(&lake, DATE));
    assert!(everything.contains("postgres://ubm:***@127.0.0.1:1/nothing"), "the redacted URL is shown: {everything}");
    assert!(!everything.contains(secret), "the password leaked: {everything}");
    assert_eq!(report(&lake, DATE)["tasks"][1]["attempts"], 2, "a connection error is retried");
}

#[test]
fn no_flags_runs_on_embedded_defaults() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let output = ubm().args(["run", "--date", DATE]).current_dir(cwd.path()).output().expect("runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = text(&output.stdout);
    assert!(summary.contains("reconciled") && summary.contains("top customers"), "{summary}");
    let lake = cwd.path().join("ubm-data/lake").display().to_string();
    let counts = &report(&lake, DATE)["counts"];
    assert_eq!(counts["review_records_read"], 100_000);
    assert_eq!(counts["purchase_rows_extracted"], 541_909);
}

/// Ballista gives each task a plan restricted to its partitions, rewriting only the leaf scans
/// it knows; ubm's review scan must not be read once per task. With one-slot executors every
/// partition is a task of its own: the run must give exactly the in-process numbers.
#[test]
fn one_slot_executors_read_every_record_once() {
    let sample = Sample::new("0.01");
    let local = sample.lake("lake-local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &local]);
    let cluster = crate::common::Cluster::builder(2).executor_args(&["--slots", "1"]).start();
    let lake = sample.lake("lake-one-slot");
    ubm_ok(&[
        "run",
        "--date",
        DATE,
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &lake,
        "--engine",
        &cluster.engine,
        "--attempts",
        "1",
    ]);
    assert_eq!(report(&lake, DATE)["counts"], report(&local, DATE)["counts"]);
    assert_eq!(lake_tables(&lake, DATE), lake_tables(&local, DATE));
}

/// A review file of 4x SF 1 (quoted line breaks included) on three one-slot executors: the stage
/// that reads it runs as at least three tasks, each of which reads rows, and the tables equal an
/// in-process run's.
#[test]
fn three_one_slot_executors_share_one_review_file() {
    let sample = Sample::new("4");
    let local = sample.lake("lake-local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &local, "--no-report"]);
    let cluster = crate::common::Cluster::builder(3).executor_args(&["--slots", "1"]).start();
    let lake = sample.lake("lake-cluster");
    ubm_ok(&[
        "run",
        "--date",
        DATE,
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &lake,
        "--engine",
        &cluster.engine,
        "--attempts",
        "1",
        "--no-report",
    ]);
    assert_eq!(report(&lake, DATE)["counts"], report(&local, DATE)["counts"]);
    assert_eq!(lake_tables(&lake, DATE), lake_tables(&local, DATE));

    let scheduler = cluster.engine.as_str();
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_slice(&ubm_ok(args).stdout).expect("status --json") };
    let jobs = json(&["status", "--scheduler", scheduler, "--json"]);
    let classify = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["job_name"].as_str().is_some_and(|n| n.starts_with("ubm classify")))
        .expect("the classify job");
    let job = json(&["status", "--scheduler", scheduler, classify["job_id"].as_str().expect("id"), "--json"]);
    let stages = job["stages"]["stages"].as_array().expect("stages");
    let scan =
        stages.iter().find(|s| s["stage_plan"].as_str().is_some_and(|p| p.contains("ubm-review-csv"))).expect("a stage that reads the review file");
    let rows: Vec<u64> = scan["tasks"].as_array().expect("tasks").iter().map(|t| t["output_rows"].as_u64().unwrap_or(0)).collect();
    eprintln!("review-reading tasks and the rows each produced: {rows:?}");
    assert!(rows.len() >= 3 && rows.iter().all(|r| *r > 0), "the review file should be read by at least 3 tasks that each read rows: {rows:?}");
}

/// A Postgres connection lost while a slice of the extract streams rows (its backend terminated,
/// as a failover or an idle-session killer would end it): the run fails with a message naming the
/// slice and the table, commits none of the day's purchases, and the next run of the date succeeds.
#[test]
fn a_postgres_connection_lost_mid_slice_fails_the_run_naming_the_slice() {
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("0.02");
    // SF 1 of purchases (541,909 rows): a slice streams long enough to be caught mid-way.
    ubm_ok(&["datagen", "--scale", "1", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    let lake = sample.lake("lake");
    let run = || {
        let mut command = ubm();
        command.args(["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &lake, "--attempts", "1", "--no-report"]);
        command
    };
    let mut child = run().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("runs");
    let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'COPY (SELECT%ctid >=%'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let terminated: u32 = db.query(terminate).first().and_then(|n| n.parse().ok()).unwrap_or(0);
        if terminated > 0 {
            eprintln!("terminated {terminated} slice connection(s) mid-stream");
            break;
        }
        assert!(child.try_wait().expect("run status").is_none(), "the run ended before any slice was seen streaming");
        assert!(std::time::Instant::now() < deadline, "no slice started streaming within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("run ends");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "the run succeeded although a slice lost its connection:\n{stderr}");
    assert!(stderr.contains("reading the slice of blocks") && stderr.contains("retail.user_purchase"), "the error names the slice:\n{stderr}");
    assert!(!partition(&lake, "stage/user_purchase", DATE).exists(), "nothing of the purchases was committed");

    let rerun = run().output().expect("rerun");
    assert!(rerun.status.success(), "the next run heals the day:\n{}", text(&rerun.stderr));
    let expected = db.query(&format!("SELECT count(*) FROM retail.user_purchase WHERE invoice_date < DATE '{DATE}' + 1"));
    assert_eq!(report(&lake, DATE)["counts"]["purchase_rows_extracted"].to_string(), expected[0]);
}

/// kill -9 of the executor running the review scan: the scheduler notices (short timeouts for
/// the test), runs the task again on the other executor, and the run ends with the right table.
#[test]
fn a_run_survives_the_loss_of_an_executor() {
    let sample = Sample::new("2");
    let local = sample.lake("lake-local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &local]);
    let cluster = crate::common::Cluster::builder(2)
        .scheduler_args(&["--executor-timeout-seconds", "3", "--expire-dead-executor-interval-seconds", "1"])
        .executor_args(&["--slots", "1", "--heartbeat-seconds", "1"])
        .start();
    let lake = sample.lake("lake-cluster");
    let run = ubm()
        .args([
            "run",
            "--date",
            DATE,
            "--reviews",
            &sample.reviews(),
            "--oltp",
            &sample.sqlite(),
            "--lake",
            &lake,
            "--engine",
            &cluster.engine,
            "--attempts",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runs");
    // Wait for classify: the raw partition is committed just before it starts.
    let raw = partition(&lake, "raw/movie_review", DATE).join("_SUCCESS");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !raw.exists() {
        assert!(std::time::Instant::now() < deadline, "classify never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The executor that burns CPU now is the one scanning the reviews (about a second of CPU at
    // this scale): kill it once it has used 100 ms, however loaded the machine is.
    let pids = cluster.executor_pids();
    let before: Vec<u64> = pids.iter().map(|p| crate::common::cpu_ticks(*p)).collect();
    let (busiest, used) = loop {
        let used: Vec<(u32, u64)> = pids.iter().zip(&before).map(|(p, b)| (*p, crate::common::cpu_ticks(*p) - b)).collect();
        let (pid, ticks) = used.iter().copied().max_by_key(|(_, t)| *t).expect("executors");
        if ticks >= 10 {
            break (pid, used);
        }
        assert!(std::time::Instant::now() < deadline, "no executor started working: {used:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    eprintln!("executor CPU ticks since classify started: {used:?}; killing {busiest}");
    let killed = std::process::Command::new("kill").args(["-9", &busiest.to_string()]).status().expect("kill");
    assert!(killed.success());
    let output = run.wait_with_output().expect("run ends");
    assert!(output.status.success(), "the run failed after an executor was lost:\n{}", text(&output.stdout));
    assert_eq!(report(&lake, DATE)["counts"], report(&local, DATE)["counts"]);
    assert_eq!(lake_tables(&lake, DATE), lake_tables(&local, DATE));
}

/// In-process, a vendor file of 256 MiB or more is classified where it is while ingest copies it
/// into the lake (pipeline/src/ingest.rs, `ingest_while_classifying`); on Ballista (standalone
/// here) any local file is, the lake being local. The tables are equal. (A run that classifies
/// the lake's copy after ingest, because its executors cannot see the file, is
/// `laptop::executors_that_cannot_see_the_vendor_file_classify_the_raw_copy`.)
#[test]
fn a_large_vendor_file_is_classified_while_ingest_copies_it() {
    let sample = Sample::new("3");
    let source_len = std::fs::metadata(sample.reviews()).expect("reviews").len();
    assert!(source_len >= 256 * 1024 * 1024, "SF 3 makes {source_len} bytes of reviews");
    let mut tables = Vec::new();
    for engine in ["local", "standalone"] {
        let lake = sample.lake(&format!("lake-{engine}"));
        ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake, "--engine", engine]);
        let run = report(&lake, DATE);
        let task = |name: &str| run["tasks"].as_array().expect("tasks").iter().find(|t| t["name"] == name).expect("task").clone();
        let started = |t: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(t["started_at"].as_str().expect("start")).expect("time");
        let (ingest, classify) = (task("ingest"), task("classify"));
        let ingest_end = started(&ingest) + chrono::Duration::milliseconds(ingest["duration_ms"].as_i64().expect("ms"));
        let side_by_side = started(&classify) < ingest_end;
        assert!(side_by_side, "{engine}: ingest {ingest}, classify {classify}");
        let raw = partition(&lake, "raw/movie_review", DATE).join("movie_review.csv");
        assert_eq!(std::fs::metadata(&raw).expect("raw copy").len(), source_len, "the raw zone holds the whole file");
        tables.push(lake_tables(&lake, DATE));
    }
    assert_eq!(tables[0], tables[1]);
}
