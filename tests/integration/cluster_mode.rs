//! Cluster deploy mode: the run handed to a driver beside the scheduler, which outlives the
//! submitter and the scheduler's own restarts (`ubm submit --deploy-mode cluster`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Cluster, Sample, TestDb, files_under, lake_tables, partition, text, ubm, ubm_ok, wait_until};

const DATE: &str = "2011-12-09";

/// A cluster (pulling executors, as on EMR with TLS) whose scheduler keeps its runs in `state`.
fn cluster(state: &Path, executors: usize) -> Cluster {
    let state = state.display().to_string();
    Cluster::builder(executors).scheduler_args(&["--pull", "--state-dir", &state]).executor_args(&["--pull", "--slots", "1"]).start()
}

/// Submits a cluster-mode run of DATE; returns its id.
fn submit(cluster: &Cluster, sample: &Sample, oltp: &str, lake: &str) -> String {
    let out = ubm()
        .args(["submit", "--deploy-mode", "cluster", "--scheduler", &cluster.engine, "--date", DATE])
        .args(["--reviews", &sample.reviews(), "--oltp", oltp, "--lake", lake])
        .output()
        .expect("submit");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// The run as `ubm status RUN --json` shows it.
fn run_view(cluster: &Cluster, id: &str) -> Option<serde_json::Value> {
    let out = ubm().args(["status", id, "--scheduler", &cluster.engine, "--json"]).output().expect("status");
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits until the run has ended; returns how it is shown then.
fn wait_for_end(cluster: &Cluster, id: &str, state: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(run) = run_view(cluster, id)
            && run["state"] != "running"
        {
            return run;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(state.join(id).join("driver.log")).unwrap_or_default();
            panic!("run {id} did not end within 300 s; its driver's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The names of the jobs the run's driver has submitted so far.
fn job_names(cluster: &Cluster, id: &str) -> Vec<String> {
    let Some(run) = run_view(cluster, id) else { return Vec::new() };
    run["progress"]["jobs"]
        .as_array()
        .map(|jobs| jobs.iter().filter_map(|j| j["job_name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The partitions a task commits last, and the task.
const LAST_PARTITIONS: [(&str, &str); 4] = [
    ("raw/movie_review", "ingest"),
    ("stage/user_purchase", "extract"),
    ("stage/movie_review", "classify"),
    ("warehouse/user_behavior_metric", "metric"),
];

/// Each committed partition of DATE in `lake` that completes a task, and its marker's inode: a
/// partition committed again gets a new marker. (classify's rejects are left out: a classify
/// stopped between its two commits commits them once more, as documented.)
fn committed_markers(lake: &str) -> Vec<(String, u64)> {
    LAST_PARTITIONS
        .iter()
        .map(|(table, _)| *table)
        .filter_map(|table| {
            let marker = partition(lake, table, DATE).join("_SUCCESS");
            std::fs::metadata(&marker).ok().map(|m| (table.to_string(), m.ino()))
        })
        .collect()
}

/// A moment of a run to kill its scheduler at.
struct Moment {
    name: &'static str,
    reached: fn(&Cluster, &str, &str) -> bool,
}

const MOMENTS: [Moment; 5] = [
    Moment { name: "right after the submitter returned", reached: |_, _, _| true },
    Moment { name: "once the first job was submitted", reached: |c, id, _| !job_names(c, id).is_empty() },
    Moment { name: "once the extract had committed", reached: |_, _, lake| partition(lake, "stage/user_purchase", DATE).join("_SUCCESS").exists() },
    Moment { name: "once classify had committed", reached: |_, _, lake| partition(lake, "stage/movie_review", DATE).join("_SUCCESS").exists() },
    Moment { name: "once the metric's job was submitted", reached: |c, id, _| job_names(c, id).iter().any(|n| n.starts_with("ubm metric")) },
];

/// The scheduler (and the driver beside it) killed with SIGKILL at five moments of an SF 1
/// run and started again at once with the same flags: the executors rejoin, the run resumes
/// under its id, keeps every partition it had committed (the same marker, not a second
/// commit), and ends complete with tables equal to an undisturbed run's, leaving no staging.
#[test]
fn a_cluster_mode_run_survives_its_scheduler_killed_at_five_moments() {
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("1");
    ubm_ok(&["datagen", "--scale", "1", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    let reference = sample.lake("undisturbed");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &reference, "--no-report"]);
    let expected = lake_tables(&reference, DATE);

    let state = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(state.path(), 2);
    for (i, moment) in MOMENTS.iter().enumerate() {
        let lake = sample.lake(&format!("lake-{i}"));
        let id = submit(&cluster, &sample, &db.url(), &lake);
        wait_until(&format!("run {id}: {}", moment.name), Duration::from_secs(120), || (moment.reached)(&cluster, &id, &lake));
        cluster.kill_scheduler();
        let before = committed_markers(&lake);
        let killed = Instant::now();
        cluster.restart_scheduler();
        assert!(killed.elapsed() < Duration::from_secs(5), "the scheduler restarts within 5 s");

        let run = wait_for_end(&cluster, &id, state.path());
        let log = std::fs::read_to_string(state.path().join(&id).join("driver.log")).unwrap_or_default();
        assert_eq!(run["state"], "succeeded", "killed {}: {run:#}\n{log}", moment.name);
        assert_eq!(run["driver_starts"], 2, "killed {}: one more driver, started by the restarted scheduler", moment.name);
        assert_eq!(lake_tables(&lake, DATE), expected, "killed {}: the day equals an undisturbed run's", moment.name);
        let after: Vec<(String, u64)> = committed_markers(&lake).into_iter().filter(|(t, _)| before.iter().any(|(b, _)| b == t)).collect();
        assert_eq!(after, before, "killed {}: a partition committed before the kill is kept, not committed again", moment.name);
        let report = crate::common::report(&lake, DATE);
        assert_eq!(report["run_id"], id, "the resumed run reports under the run's id");
        let kept: Vec<&str> =
            report["tasks"].as_array().expect("tasks").iter().filter(|t| t["kept"] == true).filter_map(|t| t["name"].as_str()).collect();
        for (table, _) in &before {
            let task = LAST_PARTITIONS.iter().find(|(t, _)| t == table).map(|(_, task)| *task).expect("a task's partition");
            assert!(kept.contains(&task), "killed {}: {task} had committed {table}, so the resumed run keeps it: {report:#}", moment.name);
        }
        eprintln!("killed {}: the resumed run kept {kept:?}", moment.name);
        assert!(files_under(&Path::new(&lake).join("_staging").join(DATE)).is_empty(), "killed {}: no staging left", moment.name);
    }
}

/// `ubm cancel RUN` stops the driver, which cancels its jobs and removes its staging; the run
/// is shown cancelled with the driver's last lines.
#[test]
fn cancelling_a_cluster_mode_run_stops_it_and_leaves_no_staging() {
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("1");
    ubm_ok(&["datagen", "--scale", "1", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    let state = tempfile::tempdir().expect("tempdir");
    let cluster = cluster(state.path(), 1);
    let lake = sample.lake("lake");
    let id = submit(&cluster, &sample, &db.url(), &lake);
    wait_until("the run's first job", Duration::from_secs(60), || !job_names(&cluster, &id).is_empty());
    let out = ubm().args(["cancel", &id, "--scheduler", &cluster.engine]).output().expect("cancel");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("cancelled"), "{}", text(&out.stdout));
    let run = run_view(&cluster, &id).expect("the run is shown");
    assert_eq!(run["state"], "cancelled", "{run:#}");
    assert!(files_under(&Path::new(&lake).join("_staging").join(DATE)).is_empty(), "no staging left");
    assert!(!partition(&lake, "warehouse/user_behavior_metric", DATE).join("_SUCCESS").exists(), "no metric published");
    let again = ubm().args(["cancel", &id, "--scheduler", &cluster.engine]).output().expect("cancel");
    assert!(!again.status.success() && text(&again.stderr).contains("already ended"), "{}", text(&again.stderr));
}

/// A password in the OLTP URL reaches the driver and nothing else: not `status` (list or one
/// run), not the driver's command line, log or summary, not the run's state or progress; it is
/// kept only in a 0600 file while the run goes, removed when it ends.
#[test]
fn a_cluster_mode_runs_password_is_shown_nowhere_and_kept_only_in_a_private_file_while_it_runs() {
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("0.1");
    ubm_ok(&["datagen", "--scale", "0.1", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    // Trust authentication takes any password: the URL works, and the secret is recognisable.
    let secret = "pw-Zq7-never-shown";
    let mut url = url::Url::parse(&db.url()).expect("the test database's URL");
    url.set_password(Some(secret)).expect("a URL that takes a password");
    let state = tempfile::tempdir().expect("tempdir");
    let cluster = cluster(state.path(), 1);
    let lake = sample.lake("lake");
    let id = submit(&cluster, &sample, url.as_str(), &lake);
    let run_dir = state.path().join(&id);
    let request = run_dir.join("request.json");
    let mode = std::fs::metadata(&request).expect("the request is kept while the run goes").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the request file is readable by its owner only");
    assert_eq!(std::fs::metadata(&run_dir).expect("run folder").permissions().mode() & 0o777, 0o700);
    let driver: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("state.json")).expect("state")).expect("json");
    if let Some(pid) = driver["pid"].as_u64() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(secret), "the driver's command line holds no secret");
    }
    let listed = ubm().args(["status", "--runs", "--scheduler", &cluster.engine, "--json"]).output().expect("status");
    assert!(!text(&listed.stdout).contains(secret), "{}", text(&listed.stdout));
    let run = wait_for_end(&cluster, &id, state.path());
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let shown = ubm().args(["status", &id, "--scheduler", &cluster.engine]).output().expect("status");
    assert!(text(&shown.stdout).contains("succeeded"), "{}", text(&shown.stdout));
    for out in [&shown.stdout, &shown.stderr] {
        assert!(!text(out).contains(secret), "{}", text(out));
    }
    assert!(!request.exists(), "the request (with the secret) is removed once the run has ended");
    for file in files_under(&run_dir) {
        let path: PathBuf = run_dir.join(&file);
        let content = std::fs::read(&path).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&content).contains(secret), "{file} holds the secret");
    }
    for file in files_under(Path::new(&lake)) {
        let content = std::fs::read(Path::new(&lake).join(&file)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&content).contains(secret), "the lake's {file} holds the secret");
    }
}

/// What the scheduler refuses before any driver starts, each with what to do.
#[test]
fn a_cluster_mode_request_the_cluster_cannot_run_is_refused_saying_why() {
    let state = tempfile::tempdir().expect("tempdir");
    let cluster = cluster(state.path(), 1);
    let submit = |extra: &[&str]| {
        let out =
            ubm().args(["submit", "--deploy-mode", "cluster", "--scheduler", &cluster.engine, "--date", DATE]).args(extra).output().expect("submit");
        assert!(!out.status.success(), "{}", text(&out.stdout));
        text(&out.stderr)
    };
    assert!(submit(&[]).contains("needs --reviews and --lake"));
    let said = submit(&["--reviews", "data/movie_review.csv", "--lake", "/tmp/lake", "--oltp", "postgres://u@h/db"]);
    assert!(said.contains("relative path") && said.contains("--reviews"), "{said}");
    let said = submit(&["--reviews", "/data/movie_review.csv", "--lake", "/tmp/lake"]);
    assert!(said.contains("no OLTP database") && said.contains("UBM_OLTP"), "{said}");
    let said = submit(&["--reviews", "/r.csv", "--lake", "/tmp/lake", "--oltp", "postgres://u@h/db", "--detach"]);
    assert!(said.contains("--detach"), "{said}");
    assert_eq!(files_under(state.path()), [".scheduler.lock"], "nothing kept of a refused request");
}

/// The default `--state-dir` is relative (`ubm-runs`): the drivers, which work in their runs'
/// folders, still find their progress file and TLS material; and a second scheduler with the
/// same folder refuses to start instead of resuming the first one's runs.
#[test]
fn a_relative_state_dir_works_and_belongs_to_one_scheduler() {
    let sample = Sample::new("0.01");
    let home = tempfile::tempdir().expect("tempdir");
    let port = crate::common::free_port();
    let spawn = |args: &[String]| {
        ubm()
            .args(args)
            .current_dir(home.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ubm starts")
    };
    let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let mut scheduler = spawn(&words(&["cluster", "scheduler", "--bind", &format!("127.0.0.1:{port}"), "--state-dir", "runs"]));
    crate::common::wait_for_port(port);
    let executor_port = crate::common::free_port();
    let mut executor = spawn(&words(&[
        "cluster",
        "executor",
        "--scheduler",
        &format!("127.0.0.1:{port}"),
        "--bind",
        &format!("127.0.0.1:{executor_port}"),
        "--slots",
        "1",
    ]));
    let engine = format!("df://127.0.0.1:{port}");
    let lake = sample.lake("lake");
    let out = ubm()
        .args(["submit", "--deploy-mode", "cluster", "--scheduler", &engine, "--date", DATE, "--follow"])
        .args(["--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake])
        .output()
        .expect("submit");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let runs = home.path().join("runs");
    let id = std::fs::read_dir(&runs)
        .expect("the runs' folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'));
    let id = id.expect("a run's folder");
    assert!(out.status.success(), "{said}\n{}", std::fs::read_to_string(runs.join(&id).join("driver.log")).unwrap_or_default());
    assert!(said.contains("reconciled"), "--follow prints the run's summary: {said}");
    assert!(runs.join(&id).join("progress.json").exists(), "the driver wrote its progress where the scheduler reads it");

    let second_port = crate::common::free_port();
    let second = ubm()
        .args(["cluster", "scheduler", "--bind", &format!("127.0.0.1:{second_port}"), "--state-dir", "runs"])
        .current_dir(home.path())
        .output()
        .expect("a second scheduler");
    assert!(!second.status.success(), "a second scheduler on the same state folder must not start");
    assert!(text(&second.stderr).contains("another scheduler keeps its runs"), "{}", text(&second.stderr));
    for child in [&mut scheduler, &mut executor] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
