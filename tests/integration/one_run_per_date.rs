//! One run per date, and a day published honestly: two runs of a date on one lake, two loads
//! into one warehouse, signals, `kill -9` at any moment, line endings, secrets.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Sample, TestDb, files_under, lake_tables, parquet_rows, partition, report, text, ubm, ubm_ok, wait_until};

const DATE: &str = "2011-12-31";

fn run_command(sample: &Sample, reviews: &str, lake: &str) -> Command {
    let mut command = ubm();
    command.args(["run", "--date", DATE, "--reviews", reviews, "--oltp", &sample.sqlite(), "--lake", lake, "--attempts", "1"]);
    command
}

/// `ubm status --lake LAKE --date D --json`, as JSON.
fn day(lake: &str) -> serde_json::Value {
    let out = ubm().args(["status", "--lake", lake, "--date", DATE, "--json"]).output().expect("status runs");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("status JSON")[0].clone()
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
}

/// Two runs of one date on one lake with different inputs, the second started at ten offsets
/// into the first: the day is always one run's whole (report, raw copy, staged tables, metric
/// agree) and the other run is refused with the holder named, never a mix.
#[test]
fn two_runs_of_a_date_on_one_lake_never_publish_a_mix() {
    let big = Sample::new("0.5");
    let small_dir = tempfile::tempdir().expect("tempdir");
    ubm_ok(&["datagen", "--scale", "0.05", "--seed", "9", "--out", &small_dir.path().display().to_string()]);
    let small = small_dir.path().join("movie_review.csv").display().to_string();
    let inputs = [(big.reviews(), 50_000u64), (small.clone(), 5_000u64)];
    for offset in 0..10u64 {
        let lake = big.lake(&format!("lake-{offset}"));
        let first = run_command(&big, &inputs[0].0, &lake).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("first");
        std::thread::sleep(Duration::from_millis(offset * 60));
        let second = run_command(&big, &inputs[1].0, &lake).output().expect("second");
        let first = first.wait_with_output().expect("first ends");
        assert!(first.status.success() || second.status.success(), "one of them runs the day");
        for refused in [&first, &second].into_iter().filter(|o| !o.status.success()) {
            let said = text(&refused.stderr);
            assert!(said.contains("is being run by run") && said.contains("--wait-for-lease"), "offset {offset}: {said}");
        }
        let state = day(&lake);
        assert_eq!(state["state"], "complete", "offset {offset}: {state}");
        let run = report(&lake, DATE);
        let read = run["counts"]["review_records_read"].as_u64().expect("count");
        let (input, _) =
            inputs.iter().find(|(_, reviews)| *reviews == read).unwrap_or_else(|| panic!("offset {offset}: {read} reviews is neither run's"));
        let raw = partition(&lake, "raw/movie_review", DATE).join("movie_review.csv");
        assert_eq!(std::fs::read(&raw).expect("raw copy"), std::fs::read(input).expect("input"), "offset {offset}: the raw copy is the run's input");
        assert_eq!(
            parquet_rows(&partition(&lake, "stage/movie_review", DATE)).len() as u64,
            run["counts"]["reviews_classified"].as_u64().expect("n")
        );
        assert_eq!(
            parquet_rows(&partition(&lake, "warehouse/user_behavior_metric", DATE)).len() as u64,
            run["counts"]["metric_rows_written"].as_u64().expect("n")
        );
    }
}

/// Two runs of a date from two lakes into one warehouse, started together, five times: every
/// customer of the date is there once.
#[test]
fn concurrent_warehouse_loads_keep_each_customer_once() {
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("0.05");
    for trial in 0..5 {
        let runs: Vec<Child> = (0..2)
            .map(|i| {
                let lake = sample.lake(&format!("lake-{trial}-{i}"));
                run_command(&sample, &sample.reviews(), &lake).args(["--warehouse", &db.url()]).stdout(Stdio::null()).spawn().expect("run")
            })
            .collect();
        for run in runs {
            let out = run.wait_with_output().expect("run ends");
            assert!(out.status.success(), "trial {trial}: {}", text(&out.stderr));
        }
        let twice = db.query(&format!(
            "SELECT customerid FROM public.user_behavior_metric WHERE insert_date = '{DATE}' GROUP BY customerid HAVING count(*) > 1"
        ));
        assert!(twice.is_empty(), "trial {trial}: customers loaded twice: {twice:?}");
        let rows = db.query(&format!("SELECT count(*) FROM public.user_behavior_metric WHERE insert_date = '{DATE}'"));
        assert_eq!(rows[0], report(&sample.lake(&format!("lake-{trial}-0")), DATE)["counts"]["metric_rows_written"].to_string());
    }
    // A column that would round the money is refused before anything is deleted.
    db.query("ALTER TABLE public.user_behavior_metric ALTER COLUMN amount_spent TYPE numeric(12,2)");
    let before = db.query("SELECT count(*) FROM public.user_behavior_metric");
    let lake = sample.lake("lake-narrow");
    let out = run_command(&sample, &sample.reviews(), &lake).args(["--warehouse", &db.url()]).output().expect("run");
    assert!(!out.status.success());
    let load = report(&lake, DATE)["tasks"].as_array().expect("tasks").iter().find(|t| t["name"] == "load").expect("load").clone();
    assert_eq!(load["attempts"], 1, "{load}");
    assert!(load["error"].as_str().is_some_and(|e| e.contains("amount_spent") && e.contains("numeric(12,2)")), "{load}");
    assert_eq!(db.query("SELECT count(*) FROM public.user_behavior_metric"), before, "nothing was deleted");
}

/// The same reviews with LF, CRLF and CR-only line endings classify to equal tables.
#[test]
fn lf_crlf_and_cr_only_twins_give_equal_tables() {
    let sample = Sample::new("0.01");
    let lf = std::fs::read_to_string(sample.reviews()).expect("reviews");
    let mut tables = Vec::new();
    for (name, file) in [("lf", lf.clone()), ("crlf", lf.replace('\n', "\r\n")), ("cr", lf.replace('\n', "\r"))] {
        let input = sample.dir.path().join(format!("reviews-{name}.csv"));
        std::fs::write(&input, file).expect("write twin");
        let out_dir = sample.lake(&format!("classified-{name}"));
        let out = ubm_ok(&["classify", "--input", &input.display().to_string(), "--date", DATE, "--output", &out_dir, "--json"]);
        let counts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(counts["records_read"], 1000, "{name}: {counts}");
        tables.push((
            counts["positive_reviews"].clone(),
            counts["rejected"].clone(),
            parquet_rows(&Path::new(&out_dir).join(format!("insert_date={DATE}"))),
        ));
    }
    assert_eq!(tables[0], tables[1], "CRLF differs from LF");
    assert_eq!(tables[0], tables[2], "CR-only differs from LF");
}

/// No shape of a password given on the command line appears in stdout, stderr or the report.
#[test]
fn no_password_shape_reaches_output_or_report() {
    let sample = Sample::new("0.001");
    let secret = "Sup3rSecretPw";
    for (i, url) in [
        format!("POSTGRES://etl:{secret}@127.0.0.1:1/x"),
        format!("mysql://etl:{secret}@127.0.0.1:1/x"),
        format!("postgres://etl:p@ss#{secret}@127.0.0.1:1/x"),
        format!("postgres://etl:{secret}@host@127.0.0.1:1/x"),
        format!("host=127.0.0.1 port=1 user=etl password={secret}"),
    ]
    .iter()
    .enumerate()
    {
        for flag in ["--oltp", "--warehouse"] {
            let lake = sample.lake(&format!("lake-{i}-{}", flag.trim_start_matches('-')));
            let oltp = if flag == "--oltp" { url.clone() } else { sample.sqlite() };
            let mut command = ubm();
            command.args(["run", "--date", DATE, "--reviews", &sample.reviews(), "--lake", &lake, "--attempts", "1", "--oltp", &oltp]);
            if flag == "--warehouse" {
                command.args(["--warehouse", url]);
            }
            let out = command.output().expect("runs");
            assert!(!out.status.success(), "{flag} {i} cannot work");
            let run_report = std::fs::read_to_string(Path::new(&lake).join("_runs").join(format!("{DATE}.json"))).unwrap_or_default();
            let everything = format!("{}{}{run_report}", text(&out.stdout), text(&out.stderr));
            assert!(!everything.contains(secret), "{flag} shape {i} leaked: {everything}");
            assert!(everything.contains("***"), "{flag} shape {i}: the redacted value is shown: {everything}");
        }
    }
}

/// SIGTERM mid-run, at several moments: a message, a non-zero exit, and no staging left, not
/// even a part file a task was writing when the signal came.
#[test]
fn sigterm_mid_run_leaves_no_staging() {
    let sample = Sample::new("2");
    let mut landed = 0;
    for delay_ms in [0, 150, 400, 900] {
        let lake = sample.lake(&format!("lake-{delay_ms}"));
        let mut run = run_command(&sample, &sample.reviews(), &lake).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("run");
        let staging = Path::new(&lake).join("_staging");
        wait_until("the run stages something", Duration::from_secs(60), || !files_under(&staging).is_empty());
        std::thread::sleep(Duration::from_millis(delay_ms));
        if run.try_wait().expect("try_wait").is_some() {
            eprintln!("{delay_ms} ms: the run ended before the signal; moment not judged");
            assert!(files_under(&staging).is_empty(), "staging left behind by a run that ended");
            continue;
        }
        landed += 1;
        signal(&run, "TERM");
        let out = run.wait_with_output().expect("run ends");
        assert!(!out.status.success(), "{delay_ms} ms");
        assert!(text(&out.stderr).contains("interrupted by SIGTERM"), "{delay_ms} ms: {}", text(&out.stderr));
        assert_eq!(files_under(&staging), Vec::<String>::new(), "staging left behind ({delay_ms} ms after the first staged file)");
    }
    assert!(landed >= 3, "only {landed} signals landed inside the run");
}

/// A key in a `--lake` or `--reviews` URL, in four shapes (s3, file, an upper-case scheme, a
/// secret with `/` and `+`): refused before anything is written, named by its flag, and shown
/// nowhere: not in the output, nor in any file of the lake.
#[test]
fn a_key_in_a_lake_or_review_url_is_refused_and_shown_nowhere() {
    let sample = Sample::new("0.001");
    let (key, secret) = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMIK7MDENG");
    let target = sample.lake("target");
    let shapes = [
        format!("s3://{key}:{secret}@bucket/ubm"),
        format!("file://{key}:{secret}@localhost{target}"),
        format!("S3://{key}:{secret}@bucket/ubm"),
        format!("s3://{key}:{secret}/a+b@bucket/ubm"),
    ];
    for (i, shape) in shapes.iter().enumerate() {
        for flag in ["--lake", "--reviews"] {
            let lake = sample.lake(&format!("lake-{i}{flag}"));
            let (reviews, lake_arg) = if flag == "--lake" { (sample.reviews(), shape.clone()) } else { (shape.clone(), lake.clone()) };
            let out =
                ubm().args(["run", "--date", DATE, "--reviews", &reviews, "--oltp", &sample.sqlite(), "--lake", &lake_arg]).output().expect("runs");
            let mut everything = format!("{}{}", text(&out.stdout), text(&out.stderr));
            for dir in [&lake, &target] {
                for file in files_under(Path::new(dir)) {
                    everything += &std::fs::read_to_string(Path::new(dir).join(&file)).unwrap_or_default();
                }
            }
            assert!(!out.status.success(), "{flag} {shape}: refused");
            assert!(!everything.contains(secret) && !everything.contains(key), "{flag} shape {i} leaked: {everything}");
            assert!(everything.contains(flag) && everything.contains("must not carry a user name"), "{flag} shape {i}: {everything}");
            assert!(!Path::new(&lake).join("_runs").exists(), "{flag} shape {i}: nothing was written");
        }
        for command in [vec!["status", "--lake", shape.as_str()], vec!["report", "--lake", shape.as_str()]] {
            let out = ubm().args(&command).output().expect("runs");
            let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(!out.status.success() && !said.contains(secret) && !said.contains(key), "{command:?}: {said}");
        }
    }
}

/// `cluster local` takes its scheduler and executors down with it, on SIGTERM and on kill -9.
#[test]
fn cluster_local_leaves_no_process_behind() {
    for how in ["TERM", "KILL"] {
        let (cluster, port) = start_local_cluster();
        let ports = [port, port + 1, port + 2];
        // A second cluster on the same ports is refused before it starts anything.
        let again = ubm().args(["cluster", "local", "--executors", "1", "--port", &port.to_string()]).output().expect("again");
        assert!(!again.status.success() && text(&again.stderr).contains(&format!("port {port}")), "{}", text(&again.stderr));
        signal(&cluster, how);
        let _ = cluster.wait_with_output();
        wait_until(&format!("SIGKILL/SIGTERM ({how}) frees every port"), Duration::from_secs(15), || {
            ports.iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        });
    }
}

/// `ubm cluster local` with one executor on three consecutive free ports. Other tests take
/// ephemeral ports meanwhile, and the cluster (rightly) refuses a taken one: then it is tried on
/// other ports.
fn start_local_cluster() -> (Child, u16) {
    for _ in 0..10 {
        let port = crate::common::free_port();
        if (1..=2).any(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_err()) {
            continue;
        }
        let mut cluster =
            ubm().args(["cluster", "local", "--executors", "1", "--port", &port.to_string()]).stderr(Stdio::null()).spawn().expect("cluster local");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if (0..=2).all(|i| std::net::TcpStream::connect(("127.0.0.1", port + i)).is_ok()) {
                return (cluster, port);
            }
            if cluster.try_wait().expect("try_wait").is_some() || Instant::now() > deadline {
                let _ = cluster.kill();
                let _ = cluster.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("cluster local did not start on any of 10 port ranges");
}

/// `kill -9` of a run at ten moments: `ubm status` names the day mixed whenever the killed run
/// had started it, and a rerun always ends in a complete day equal to an undisturbed run.
#[test]
fn kill_9_at_any_moment_then_a_rerun_heals_the_day() {
    let sample = Sample::new("0.5");
    let reference = sample.lake("reference");
    let clock = Instant::now();
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &reference]);
    let duration = clock.elapsed();
    let tables = |lake: &str| lake_tables(lake, DATE);
    let expected = tables(&reference);
    let lake = sample.lake("lake");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake]);
    let mut mixed = 0;
    for moment in 0..10u32 {
        let run = run_command(&sample, &sample.reviews(), &lake).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("run");
        std::thread::sleep(duration.mul_f64((f64::from(moment) + 0.5) / 10.0));
        signal(&run, "KILL");
        let _ = run.wait_with_output();
        let state = day(&lake);
        let killed_midway = report(&lake, DATE)["status"] == "running";
        assert!(state["state"] == "mixed" || (!killed_midway && state["state"] == "complete"), "moment {moment}: {state}");
        if state["state"] == "mixed" {
            mixed += 1;
        }
        let rerun: Output = run_command(&sample, &sample.reviews(), &lake).output().expect("rerun");
        assert!(rerun.status.success(), "moment {moment}: the rerun takes the dead run's date: {}", text(&rerun.stderr));
        assert_eq!(day(&lake)["state"], "complete", "moment {moment}");
        assert_eq!(tables(&lake), expected, "moment {moment}");
        let staging = files_under(&Path::new(&lake).join("_staging"));
        assert!(staging.is_empty(), "moment {moment}: the dead run's staging was removed: {staging:?}");
    }
    assert!(mixed > 0, "no kill landed inside a run");
}

/// A run paused past its lease (SIGSTOP, as a laptop that sleeps or a frozen VM would pause it)
/// while another run takes the date over, completes and releases it: resumed, the paused run
/// fails saying it lost the date and commits nothing more, and the day is the other run's whole.
/// Paused at three moments of its run (early: ingest and extract; classify; the metric and its
/// commits), and once more with its lease files deleted while it is paused.
#[test]
fn a_paused_run_that_lost_its_lease_never_commits() {
    // Short leases, so that a pause outlives one within the test.
    const TTL: &str = "2";
    let paused_input = Sample::new("1");
    let other_dir = tempfile::tempdir().expect("tempdir");
    ubm_ok(&["datagen", "--scale", "0.05", "--seed", "9", "--out", &other_dir.path().display().to_string()]);
    let other_reviews = other_dir.path().join("movie_review.csv").display().to_string();
    let reference = paused_input.lake("reference");
    ubm_ok(&["run", "--date", DATE, "--reviews", &other_reviews, "--oltp", &paused_input.sqlite(), "--lake", &reference, "--no-report"]);
    let expected = lake_tables(&reference, DATE);
    // The shortest of three runs: the first reads a cold page cache, and a run timed slower than
    // the runs it times would place the pauses after their end.
    let duration = (0..3)
        .map(|i| {
            let clock = Instant::now();
            let lake = paused_input.lake(&format!("timing-{i}"));
            ubm_ok(&["run", "--date", DATE, "--reviews", &paused_input.reviews(), "--oltp", &paused_input.sqlite(), "--lake", &lake, "--no-report"]);
            clock.elapsed()
        })
        .min()
        .expect("three timings");

    let mut landed = 0;
    for (moment, fraction, delete_lease) in [("early", 0.15, false), ("classify", 0.45, false), ("metric", 0.7, false), ("lease deleted", 0.45, true)]
    {
        let lake = paused_input.lake(&format!("lake-{}", moment.replace(' ', "-")));
        let mut paused = run_command(&paused_input, &paused_input.reviews(), &lake)
            .arg("--no-report")
            .env("UBM_LEASE_TTL_SECONDS", TTL)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the run to pause");
        std::thread::sleep(duration.mul_f64(fraction));
        if paused.try_wait().expect("try_wait").is_some() {
            eprintln!("{moment}: the run ended before it could be paused; moment not judged");
            continue;
        }
        signal(&paused, "STOP");
        landed += 1;
        if delete_lease {
            std::fs::remove_dir_all(Path::new(&lake).join(format!("_leases/{DATE}"))).expect("delete the paused run's lease");
        }
        let other_run = || {
            run_command(&paused_input, &other_reviews, &lake)
                .args(["--wait-for-lease", "20", "--no-report"])
                .env("UBM_LEASE_TTL_SECONDS", TTL)
                .output()
                .expect("the other run")
        };
        let mut other = other_run();
        // Paused inside a commit's swap, the run holds the date's lock, which blocks every
        // takeover until the swap is done (docs/lake.md). Resumed, it finishes that swap, then
        // finds its lease lost; the other run then takes the date and replaces the day whole.
        let inside_commit = !other.status.success() && text(&other.stderr).contains("committing a partition of it");
        signal(&paused, "CONT");
        let resumed = paused.wait_with_output().expect("the paused run ends");
        if inside_commit {
            eprintln!("{moment}: paused inside a commit; the other run ran again once it was resumed");
            other = other_run();
        }
        assert!(other.status.success(), "{moment}: the other run takes the date once the lease expires: {}", text(&other.stderr));
        let said = text(&resumed.stderr);
        assert!(!resumed.status.success(), "{moment}: the resumed run must not succeed:\n{said}");
        assert!(said.contains("lost the lease"), "{moment}: it says it lost the date:\n{said}");
        let state = day(&lake);
        assert_eq!(state["state"], "complete", "{moment}: {state}");
        assert_eq!(lake_tables(&lake, DATE), expected, "{moment}: the day is the other run's whole");
    }
    assert!(landed >= 3, "only {landed} pauses landed inside the run");
}
