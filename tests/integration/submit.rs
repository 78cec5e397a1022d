//! `ubm submit`, `ubm status` and `ubm cancel` against a real cluster of `ubm cluster`
//! processes: job ids and progress, detaching, cancelling (by command and by Ctrl-C), and the
//! errors of a failing job, a dead scheduler and a wrong address.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::{Cluster, Moto, Sample, parquet_rows, partition, report, text, ubm, ubm_ok};

const DATE: &str = "2011-12-09";

/// The job id of the first `job ID submitted: NAME` line naming `name`.
fn job_id(log: &str, name: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let (id, rest) = line.strip_prefix("job ")?.split_once(" submitted: ")?;
        (rest.trim() == name).then(|| id.to_string())
    })
}

/// Waits until `path` holds a submitted job called `name`, and returns its id.
fn wait_for_job(path: &Path, name: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(id) = job_id(&log, name) {
            return id;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("submit ended ({status}) before submitting `{name}`:\n{log}");
        }
        assert!(Instant::now() < deadline, "no job `{name}` submitted after 60 s:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ubm submit` attached, its output going to `log`.
fn spawn_submit(scheduler: &str, sample: &Sample, lake: &str, log: &Path, extra: &[&str]) -> Child {
    let file = std::fs::File::create(log).expect("log file");
    ubm()
        .args(["submit", "--scheduler", scheduler, "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite()])
        .args(["--lake", lake])
        .args(extra)
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("ubm submit starts")
}

#[test]
fn submit_runs_the_day_as_cluster_jobs_and_status_shows_them() {
    let sample = Sample::new("0.05");
    let local = sample.lake("local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &local]);
    let cluster = Cluster::start(2);
    let lake = sample.lake("submitted");
    let out = ubm_ok(&[
        "submit",
        "--scheduler",
        &cluster.engine,
        "--date",
        DATE,
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &lake,
    ]);
    let log = text(&out.stderr);
    let classify = job_id(&log, &format!("ubm classify {DATE}")).unwrap_or_else(|| panic!("no classify job id:\n{log}"));
    let metric = job_id(&log, &format!("ubm metric {DATE}")).unwrap_or_else(|| panic!("no metric job id:\n{log}"));
    assert!(log.contains(&format!("job {classify} completed: ubm classify {DATE}")), "{log}");
    assert!(log.contains(&format!("job {metric} completed: ubm metric {DATE}")), "{log}");
    // Not a terminal: progress comes as plain lines, with stages and tasks.
    assert!(log.contains(&format!("job {classify} ubm classify {DATE}: ")) && log.contains(", tasks "), "{log}");
    assert!(!log.contains('\r'), "no terminal control characters in a log:\n{log}");
    let table = "warehouse/user_behavior_metric";
    assert_eq!(parquet_rows(&partition(&lake, table, DATE)), parquet_rows(&partition(&local, table, DATE)));
    assert_eq!(report(&lake, DATE)["counts"], report(&local, DATE)["counts"]);
    assert_eq!(report(&lake, DATE)["engine"], cluster.engine.as_str());

    let jobs = text(&ubm_ok(&["status", "--scheduler", &cluster.engine]).stdout);
    for (id, name) in [(&classify, "classify"), (&metric, "metric")] {
        let line = jobs.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("{id} not listed:\n{jobs}"));
        assert!(line.contains("Completed") && line.contains(&format!("ubm {name} {DATE}")), "{line}");
    }
    let one = text(&ubm_ok(&["status", &classify, "--scheduler", &cluster.engine]).stdout);
    assert!(one.starts_with(&format!("job {classify} (ubm classify {DATE}): completed")), "{one}");
    assert!(one.contains("stage "), "{one}");
    let json: serde_json::Value =
        serde_json::from_slice(&ubm_ok(&["status", &classify, "--scheduler", &cluster.engine, "--json"]).stdout).expect("json");
    assert_eq!(json["job"]["state"], "completed");
    assert_eq!(json["job"]["stages_done"], json["job"]["stages"]);

    let again = ubm().args(["cancel", &classify, "--scheduler", &cluster.engine]).output().expect("ubm cancel");
    assert!(!again.status.success(), "a completed job cannot be cancelled");
    assert!(text(&again.stderr).contains("was not cancelled"), "{}", text(&again.stderr));
    let unknown = ubm().args(["status", "nosuchjob", "--scheduler", &cluster.engine]).output().expect("ubm status");
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no job `nosuchjob`"), "{}", text(&unknown.stderr));
}

/// A scheduler without executors keeps every job waiting: the run is reliably mid-job.
#[test]
fn a_detached_run_is_cancelled_from_another_process_and_commits_nothing() {
    let sample = Sample::new("0.01");
    let cluster = Cluster::start(0);
    let lake = sample.lake("lake");
    let log = sample.dir.path().join("detached.log");
    let log_arg = log.display().to_string();
    let clock = Instant::now();
    let out = ubm_ok(&[
        "submit",
        "--detach",
        "--log",
        &log_arg,
        "--scheduler",
        &cluster.engine,
        "--date",
        DATE,
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &lake,
    ]);
    assert!(clock.elapsed() < Duration::from_secs(30), "detach returns once the job is submitted");
    let said = text(&out.stdout);
    let job = job_id_from_detach(&said);
    let pid: u32 = said.split("(pid ").nth(1).and_then(|r| r.split(')').next()).and_then(|p| p.parse().ok()).expect(&said);

    let status = text(&ubm_ok(&["status", &job, "--scheduler", &cluster.engine]).stdout);
    assert!(status.contains(": queued") || status.contains(": running"), "{status}");
    let cancelled = text(&ubm_ok(&["cancel", &job, "--scheduler", &cluster.engine]).stdout);
    assert!(cancelled.contains(&format!("cancelled job {job}")), "{cancelled}");
    assert!(cancelled.contains("commits nothing of that job") && cancelled.contains("earlier tasks committed stay"), "{cancelled}");

    wait_gone(pid, Duration::from_secs(60));
    let written = std::fs::read_to_string(&log).expect("log");
    assert!(written.contains(&format!("job {job} failed")), "{written}");
    let run = report(&lake, DATE);
    assert_eq!(run["status"], "failed");
    let classify = run["tasks"].as_array().expect("tasks").iter().find(|t| t["name"] == "classify").expect("classify").clone();
    assert_eq!(classify["attempts"], 1, "a cancelled job is not retried: {classify}");
    assert!(classify["error"].as_str().is_some_and(|e| e.contains("cancelled")), "{classify}");
    assert!(!partition(&lake, "warehouse/user_behavior_metric", DATE).exists(), "nothing committed");
    assert!(!partition(&lake, "stage/movie_review", DATE).exists(), "nothing committed");
}

fn job_id_from_detach(said: &str) -> String {
    said.strip_prefix("submitted job ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("detach did not name the job:\n{said}"))
        .to_string()
}

/// Waits until process `pid` (not our child) has exited.
fn wait_gone(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, None | Some("Z")) {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} still runs after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_on_submit_cancels_its_job() {
    let sample = Sample::new("0.01");
    let cluster = Cluster::start(0);
    let log = sample.dir.path().join("submit.log");
    let mut submit = spawn_submit(&cluster.engine, &sample, &sample.lake("lake"), &log, &[]);
    // Without executors the first job, the review file's record boundaries, waits forever.
    let job = wait_for_job(&log, &format!("ubm classify {DATE}: record boundaries"), &mut submit);
    let sent = Command::new("kill").args(["-INT", &submit.id().to_string()]).status().expect("kill runs");
    assert!(sent.success());
    let status = wait_exit(&mut submit, Duration::from_secs(30));
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(!status.success(), "an interrupted submit fails:\n{said}");
    assert!(said.contains(&format!("cancelled job {job}")) && said.contains("interrupted"), "{said}");
    let after = ubm().args(["status", &job, "--scheduler", &cluster.engine]).output().expect("ubm status");
    assert!(!after.status.success(), "status of a cancelled job exits non-zero");
    assert!(text(&after.stdout).contains(": failed") && text(&after.stdout).contains("Cancelled"), "{}", text(&after.stdout));
}

#[test]
fn a_dead_scheduler_fails_the_submit_with_a_clear_error() {
    let sample = Sample::new("0.01");
    let mut cluster = Cluster::start(0);
    let log = sample.dir.path().join("submit.log");
    let mut submit = spawn_submit(&cluster.engine, &sample, &sample.lake("lake"), &log, &["--attempts", "2", "--retry-backoff-ms", "100"]);
    wait_for_job(&log, &format!("ubm classify {DATE}: record boundaries"), &mut submit);
    cluster.kill_scheduler();
    let status = wait_exit(&mut submit, Duration::from_secs(60));
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(!status.success(), "{said}");
    assert!(said.contains(&format!("the scheduler at {} stopped answering", cluster.engine)), "{said}");
}

#[test]
fn a_failing_job_exits_non_zero_with_the_schedulers_error() {
    // The executors look for S3 at another endpoint than the submitter: the review file the
    // submitter put in the lake does not exist for them, and the classify job fails there.
    let Some(lake_s3) = Moto::start() else { return };
    let Some(other_s3) = Moto::start() else { return };
    let sample = Sample::new("0.01");
    lake_s3.boto3("s3.create_bucket(Bucket='lake')");
    let cluster = Cluster::builder(1).env(other_s3.env()).start();
    let out = ubm()
        .args(["submit", "--scheduler", &cluster.engine, "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite()])
        .args(["--lake", "s3://lake/ubm", "--attempts", "1"])
        .envs(lake_s3.env())
        .output()
        .expect("ubm submit");
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    // The first job of classify, which reads the file on the executors, is the one that fails.
    let job = job_id(&said, &format!("ubm classify {DATE}: record boundaries")).unwrap_or_else(|| panic!("no job id:\n{said}"));
    let failure = said.lines().find(|l| l.starts_with(&format!("job {job} failed"))).unwrap_or_else(|| panic!("{said}"));
    assert!(failure.contains("raw/movie_review/insert_date=2011-12-09/movie_review.csv"), "names the file: {failure}");
    let status = ubm().args(["status", &job, "--scheduler", &cluster.engine]).output().expect("ubm status");
    assert!(!status.status.success() && text(&status.stdout).contains(": failed"), "{}", text(&status.stdout));
}

#[test]
fn a_wrong_scheduler_address_is_a_clear_error() {
    let nobody = "df://127.0.0.1:9";
    let submit = ubm().args(["submit", "--scheduler", nobody, "--date", DATE, "--reviews", "x.csv", "--oltp", "sqlite://x"]).output().expect("ubm");
    assert!(!submit.status.success());
    assert!(text(&submit.stderr).contains("no Ballista scheduler answers"), "{}", text(&submit.stderr));
    let no_scheme = ubm().args(["submit", "--scheduler", "127.0.0.1:50050", "--date", DATE]).output().expect("ubm");
    assert!(text(&no_scheme.stderr).contains("use df://HOST:PORT"), "{}", text(&no_scheme.stderr));
    for command in [vec!["status"], vec!["cancel", "abc"]] {
        let out = ubm().args(&command).args(["--scheduler", nobody]).output().expect("ubm");
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("the scheduler does not answer"), "{command:?}: {}", text(&out.stderr));
    }
}

/// A scheduler with no executor: the run says its job waits, gives up after the bound it was
/// given (naming it), exits non-zero and frees the date, so the next run of it starts at once.
#[test]
fn a_submit_to_a_cluster_without_executors_gives_up_after_its_bound_and_frees_the_date() {
    let sample = Sample::new("0.01");
    let cluster = Cluster::start(0);
    let lake = sample.lake("lake");
    let help = text(&ubm_ok(&["submit", "--help"]).stdout);
    assert!(help.contains("--executor-wait") && help.contains("[default: 60]"), "{help}");
    let clock = Instant::now();
    let out = ubm()
        .args(["submit", "--scheduler", &cluster.engine, "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite()])
        .args(["--lake", &lake, "--executor-wait", "3"])
        .output()
        .expect("ubm submit");
    let took = clock.elapsed();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(took < Duration::from_secs(30), "the bound holds: {took:?}\n{said}");
    assert!(said.contains("waits for one, up to 3 s"), "the wait is said while it lasts:\n{said}");
    assert!(said.contains("no executor is registered with the scheduler") && said.contains("waited 3 s"), "{said}");
    assert_eq!(report(&lake, DATE)["status"], "failed");
    let status = text(&ubm().args(["status", "--lake", &lake, "--date", DATE]).output().expect("ubm status").stdout);
    assert!(status.contains("failed") && !status.contains("held by"), "the date is free:\n{status}");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake]);
    assert_eq!(report(&lake, DATE)["status"], "succeeded");
}

/// A cluster's work is split by the cluster's task slots (asked of the scheduler when the run
/// starts), not by the submitting machine's cores; `--partitions` overrides it; the run report
/// and the summary say what was used.
#[test]
fn a_cluster_run_is_split_by_the_clusters_slots_and_the_report_says_so() {
    let sample = Sample::new("0.01");
    let cluster = Cluster::builder(3).executor_args(&["--slots", "1"]).start();
    for (flag, count, from) in [(None, 3, "cluster"), (Some("5"), 5, "--partitions")] {
        let lake = sample.lake(&format!("lake-{count}"));
        let mut submit = ubm();
        submit.args(["submit", "--scheduler", &cluster.engine, "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite()]);
        submit.args(["--lake", &lake]);
        if let Some(n) = flag {
            submit.args(["--partitions", n]);
        }
        let out = submit.output().expect("submit");
        let said = text(&out.stdout);
        assert!(out.status.success(), "{said}{}", text(&out.stderr));
        let run = report(&lake, DATE);
        assert_eq!(run["partitions"]["count"], count, "{run}");
        assert_eq!(run["partitions"]["from"], from, "{run}");
        assert!(said.contains(&format!("{count} partitions from {from}")), "the summary says it:\n{said}");
    }
    let local = sample.lake("local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &local]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(report(&local, DATE)["partitions"], serde_json::json!({"count": cores, "from": "this machine"}));
}

/// The jobs the scheduler remembers, by name: each job's stages, each stage's task count.
fn stage_tasks_by_job(engine: &str) -> Vec<(String, Vec<usize>)> {
    let jobs = ubm().args(["status", "--scheduler", engine, "--json"]).output().expect("status");
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&jobs.stdout).expect("the jobs as JSON");
    jobs.iter()
        .filter_map(|job| {
            let (id, name) = (job["job_id"].as_str()?, job["job_name"].as_str()?.to_string());
            let out = ubm().args(["status", id, "--scheduler", engine, "--json"]).output().expect("status of a job");
            let shown: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let stages = shown["stages"]["stages"].as_array()?.iter().map(|s| s["tasks"].as_array().map_or(0, Vec::len)).collect();
            Some((name, stages))
        })
        .collect()
}

/// On 3 one-slot executors, with purchases in Postgres, the extract runs in at least 3 slices
/// and the metric's two scans in at least 3 tasks each, every task writing one partition of the
/// shuffle that one task finishes (the day's aggregates are a few thousand rows, not worth a
/// hash-shuffled stage: `docs/performance.md`): the cluster's slots size the work, not the
/// submitting machine's 2 cores.
#[test]
fn three_executors_run_the_extract_in_three_slices_and_the_metric_scans_in_three_partitions() {
    let Some(db) = crate::common::TestDb::create() else { return };
    let sample = Sample::new("0.1");
    ubm_ok(&["datagen", "--scale", "0.1", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    let cluster = Cluster::builder(3).executor_args(&["--slots", "1"]).start();
    let lake = sample.lake("lake");
    ubm_ok(&["submit", "--scheduler", &cluster.engine, "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &lake]);
    let jobs = stage_tasks_by_job(&cluster.engine);
    let stages_of = |name: &str| jobs.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone()).unwrap_or_default();
    let extract = stages_of(&format!("ubm extract {DATE}"));
    assert!(extract.iter().any(|&tasks| tasks >= 3), "the extract's slices: {extract:?} (jobs: {jobs:?})");
    let metric = stages_of(&format!("ubm metric {DATE}"));
    assert_eq!(metric.iter().filter(|&&tasks| tasks >= 3).count(), 2, "the metric's scans, purchases and reviews, and nothing else: {metric:?}");
    assert!(metric.contains(&1), "one task should finish the metric's aggregates (no hash-shuffled stage of 3): {metric:?}");
}
