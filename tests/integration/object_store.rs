//! Inputs and outputs as object-store URLs: the whole run against S3 served by moto.

use crate::common::{Moto, Sample, text, ubm};

const DATE: &str = "2011-12-31";

#[test]
fn a_run_reads_and_writes_s3() {
    let Some(moto) = Moto::start() else { return };
    let sample = Sample::new("0.01");
    moto.boto3(&format!(
        "s3.create_bucket(Bucket='vendor')\ns3.create_bucket(Bucket='lake')\n\
         s3.upload_file('{}', 'vendor', 'daily/{DATE}/movie_review.csv')",
        sample.reviews()
    ));
    let output = ubm()
        .args([
            "run",
            "--date",
            DATE,
            "--reviews",
            "s3://vendor/daily/{date}/movie_review.csv",
            "--oltp",
            &sample.sqlite(),
            "--lake",
            "s3://lake/ubm",
            "--json",
            "--attempts",
            "1",
        ])
        .envs(moto.env())
        .output()
        .expect("ubm runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let counts = &reports[0]["counts"];
    assert_eq!(reports[0]["counts_reconcile"], true);
    assert_eq!(counts["review_records_read"], 1000);
    let local = crate::common::ubm_ok(&[
        "run",
        "--date",
        DATE,
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &sample.lake("local"),
        "--json",
    ]);
    let local: serde_json::Value = serde_json::from_slice(&local.stdout).expect("json");
    assert!(counts["metric_rows_written"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(counts, &local[0]["counts"], "S3 and the local disk give the same run");

    let keys = moto.boto3("for o in s3.list_objects_v2(Bucket='lake')['Contents']: print(o['Key'])");
    for expected in [
        format!("ubm/raw/movie_review/insert_date={DATE}/movie_review.csv"),
        format!("ubm/stage/movie_review/insert_date={DATE}/part-00000.parquet"),
        format!("ubm/stage/user_purchase/insert_date={DATE}/_SUCCESS"),
        format!("ubm/warehouse/user_behavior_metric/insert_date={DATE}/part-00000.parquet"),
        format!("ubm/warehouse/user_behavior_metric/insert_date={DATE}/_SUCCESS"),
        format!("ubm/_runs/{DATE}.json"),
    ] {
        assert!(keys.lines().any(|k| k == expected), "{expected} missing from the lake:\n{keys}");
    }
    assert!(!keys.lines().any(|k| k.starts_with("ubm/_staging/")), "staging is cleaned up:\n{keys}");

    // The same run on a cluster: the scheduler and executors read s3:// themselves.
    let cluster = crate::common::Cluster::builder(2).env(moto.env()).start();
    let output = ubm()
        .args([
            "run",
            "--date",
            DATE,
            "--reviews",
            "s3://vendor/daily/{date}/movie_review.csv",
            "--oltp",
            &sample.sqlite(),
            "--lake",
            "s3://lake/on-cluster",
            "--json",
            "--attempts",
            "1",
            "--engine",
            &cluster.engine,
        ])
        .envs(moto.env())
        .output()
        .expect("ubm runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let on_cluster: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(&on_cluster[0]["counts"], counts, "the cluster reads S3 like the client");
}

/// strace's arguments that trace every thread's socket reads into files `trace.TID`, one a
/// thread (`-ff`: a read that one thread's output would otherwise split into `<unfinished ...>`
/// and `<... resumed>` lines, the second without its socket, is then whole on one line).
pub fn strace_socket_reads(trace: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["-ff", "-qq", "-yy", "-e", "trace=read,readv,recvfrom,recvmsg", "-o"].map(Into::into).to_vec();
    args.push(trace.into());
    args
}

/// What the process traced by [`strace_socket_reads`] into `trace` received from sockets.
pub fn socket_bytes_received(trace: &std::path::Path) -> u64 {
    socket_bytes_by_peer(trace).values().sum()
}

/// What the process traced into `trace.TID` received, by the address it came from (`host:port`
/// of a TCP peer, `unix` for local sockets, `other` for a socket strace could not name): a
/// failing bound then names who sent the bytes.
pub fn socket_bytes_by_peer(trace: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let prefix = format!("{}.", trace.file_name().expect("a trace file name").to_string_lossy());
    let folder = trace.parent().expect("the trace's folder");
    let mut text = String::new();
    for entry in std::fs::read_dir(folder).expect("the trace's folder").flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).expect("strace output")));
        }
    }
    let mut by_peer = std::collections::BTreeMap::new();
    for line in text.lines().filter(|line| line.contains("<TCP") || line.contains("<UDP") || line.contains("<UNIX")) {
        let Some(bytes) = line.rsplit('=').next().and_then(|n| n.trim().split(' ').next()?.parse::<u64>().ok()) else { continue };
        // `read(7<TCPv6:[[::1]:5000->[::1]:50050]>, …`: the peer follows the arrow.
        let peer = if line.contains("<UNIX") {
            "unix"
        } else {
            line.split_once("->").and_then(|(_, rest)| rest.split_once("]>")).map_or("other", |(peer, _)| peer)
        };
        *by_peer.entry(peer.to_string()).or_insert(0) += bytes;
    }
    by_peer
}

/// Distributed at both ends: reviews and lake on S3 (moto), purchases in Postgres, a cluster of
/// two executors, a review file 4× SF 1. The executors read the reviews and the purchases
/// (slices of one Postgres snapshot) and write the lake; the submitter receives counts, file
/// names and progress only: less than 4 MB from the network in all (its socket reads, counted
/// with strace). The committed tables equal an in-process run's on local files.
#[test]
fn a_cluster_run_from_postgres_and_s3_passes_no_rows_through_the_submitter() {
    let Some(db) = crate::common::TestDb::create() else { return };
    let Some(moto) = Moto::start() else { return };
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        return crate::common::missing("strace is not installed (apt-get install strace)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    crate::common::ubm_ok(&["datagen", "--scale", "4", "--seed", "11", "--out", &data.display().to_string(), "--oltp", &db.url()]);
    let reviews = data.join("movie_review.csv").display().to_string();
    moto.boto3(&format!(
        "s3.create_bucket(Bucket='vendor')\ns3.create_bucket(Bucket='lake')\ns3.upload_file('{reviews}', 'vendor', 'daily/{DATE}/movie_review.csv')"
    ));
    let local = dir.path().join("local").display().to_string();
    crate::common::ubm_ok(&["run", "--date", DATE, "--reviews", &reviews, "--oltp", &db.url(), "--lake", &local, "--no-report"]);

    let cluster = crate::common::Cluster::builder(2).env(moto.env()).start();
    let trace = dir.path().join("submit.strace");
    let output = std::process::Command::new("strace")
        .args(strace_socket_reads(&trace))
        .arg(env!("CARGO_BIN_EXE_ubm"))
        .args([
            "submit",
            "--scheduler",
            &cluster.engine,
            "--date",
            DATE,
            "--reviews",
            "s3://vendor/daily/{date}/movie_review.csv",
            "--oltp",
            &db.url(),
            "--lake",
            "s3://lake/ubm",
            "--no-report",
            "--attempts",
            "1",
        ])
        .envs(moto.env())
        .output()
        .expect("submit runs");
    assert!(output.status.success(), "{}\n{}", text(&output.stdout), text(&output.stderr));
    let by_peer = socket_bytes_by_peer(&trace);
    let received: u64 = by_peer.values().sum();
    eprintln!("the submitter received {received} bytes from the network: {by_peer:?} (scheduler {})", cluster.engine);
    // Nothing counted would mean strace's output was not understood, not a thin submitter.
    assert!(received > 0, "no socket reads found in {}", trace.display());
    assert!(received < 4_000_000, "the submitter received {received} bytes ({by_peer:?}): rows pass through it");

    let remote = dir.path().join("remote");
    moto.boto3(&format!(
        "import os\nfor o in s3.list_objects_v2(Bucket='lake', Prefix='ubm/')['Contents']:\n    \
         path = os.path.join('{}', o['Key'][len('ubm/'):])\n    os.makedirs(os.path.dirname(path), exist_ok=True)\n    \
         s3.download_file('lake', o['Key'], path)",
        remote.display()
    ));
    let remote = remote.display().to_string();
    assert!(
        std::fs::read_dir(crate::common::partition(&remote, "stage/user_purchase", DATE)).expect("purchases").count() > 2,
        "the extract ran as several slices"
    );
    for table in ["stage/user_purchase", "stage/movie_review", "warehouse/user_behavior_metric"] {
        let (ours, reference) = (crate::common::partition(&remote, table, DATE), crate::common::partition(&local, table, DATE));
        assert_eq!(crate::common::parquet_rows(&ours), crate::common::parquet_rows(&reference), "{table} differs from the in-process run");
    }
    assert_eq!(crate::common::report(&remote, DATE)["counts"], crate::common::report(&local, DATE)["counts"]);
}

/// A proxy in front of moto that fails chosen requests (`tests/peers/s3_faults.py`); killed on drop.
struct S3Faults {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    endpoint: String,
}

impl S3Faults {
    /// Fails the first `times` requests with `method` whose path holds `key_part` (-1: all).
    fn start(moto: &Moto, method: &str, key_part: &str, status: u16, times: i32) -> S3Faults {
        use std::io::BufRead;
        let python = crate::common::peer_python().expect("moto runs, so the peer Python exists");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let mut child = std::process::Command::new(python)
            .arg(crate::common::peer_script("s3_faults.py"))
            .args([&port.to_string(), &moto.endpoint, method, key_part, &status.to_string(), &times.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the fault proxy starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the fault proxy says it listens");
        assert_eq!(line.trim(), "listening", "the fault proxy did not start");
        S3Faults { child, stdout, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// The requests it failed, once it is stopped.
    fn failed(mut self) -> Vec<String> {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        rest.lines().map(str::to_string).collect()
    }
}

impl Drop for S3Faults {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lake's keys on moto.
fn lake_keys(moto: &Moto) -> Vec<String> {
    moto.boto3("for o in s3.list_objects_v2(Bucket='lake').get('Contents', []): print(o['Key'])").lines().map(str::to_string).collect()
}

/// S3 errors on the tasks' part-file uploads. A passing one (503, twice) is retried and the run
/// equals one without errors; a lasting one (403) fails the run with a message naming the file,
/// commits none of the day's reviews, and the next run heals the date.
#[test]
fn s3_errors_on_part_uploads_are_retried_or_fail_the_run_naming_the_file() {
    let Some(moto) = Moto::start() else { return };
    let sample = Sample::new("0.01");
    moto.boto3("s3.create_bucket(Bucket='lake')");
    let run = |endpoint: &str| {
        ubm()
            .args([
                "run",
                "--date",
                DATE,
                "--reviews",
                &sample.reviews(),
                "--oltp",
                &sample.sqlite(),
                "--lake",
                "s3://lake/ubm",
                "--json",
                "--attempts",
                "1",
            ])
            .envs(Moto::env_for(endpoint))
            .output()
            .expect("ubm runs")
    };
    let local = crate::common::ubm_ok(&[
        "run",
        "--date",
        DATE,
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &sample.lake("local"),
        "--json",
    ]);
    let local: serde_json::Value = serde_json::from_slice(&local.stdout).expect("json");

    // The tasks write their part files under `_staging/D/RUN/tasks-<uuid>/`.
    let passing = S3Faults::start(&moto, "PUT", "/tasks-", 503, 2);
    let output = run(&passing.endpoint);
    let failed = passing.failed();
    assert_eq!(failed.len(), 2, "two uploads failed: {failed:?}");
    assert!(output.status.success(), "a passing S3 error is retried:\n{}", text(&output.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(reports[0]["counts"], local[0]["counts"], "the retried run equals one without errors");

    let lasting = S3Faults::start(&moto, "PUT", "/tasks-", 403, -1);
    let output = run(&lasting.endpoint);
    let failed = lasting.failed();
    let stderr = text(&output.stderr);
    assert!(!failed.is_empty() && !output.status.success(), "a lasting S3 error fails the run:\n{stderr}");
    assert!(stderr.contains("/tasks-") && stderr.contains("/part-"), "the error names the file:\n{stderr}");
    eprintln!("the run with a lasting S3 error said:\n{stderr}");
    let keys = lake_keys(&moto);
    let first_run = reports[0]["run_id"].as_str().expect("run id");
    let marker = format!("ubm/stage/movie_review/insert_date={DATE}/_SUCCESS");
    let committed = moto.boto3(&format!("print(s3.get_object(Bucket='lake', Key='{marker}')['Body'].read().decode())"));
    assert!(committed.contains(first_run), "the failed run left the first run's reviews committed, not its own:\n{committed}\n{keys:?}");

    let output = run(&moto.endpoint);
    assert!(output.status.success(), "the next run heals the date:\n{}", text(&output.stderr));
    let keys = lake_keys(&moto);
    assert!(!keys.iter().any(|k| k.starts_with("ubm/_staging/")), "staging is cleaned up:\n{keys:?}");
}
