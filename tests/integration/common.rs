//! Shared fixtures: the `ubm` binary, sample data, the Python peers and a Postgres database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Under CI a missing service or peer is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips the calling test outside CI (saying why, loudly), fails it under CI.
pub fn missing(what: &str) {
    if in_ci() {
        panic!("CI=true and {what}: nothing may be skipped in CI");
    }
    eprintln!("\n*** SKIPPED: {what} (run the tests with tests/run.sh to have it) ***\n");
}

pub fn ubm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ubm"))
}

/// Runs `ubm args…`, failing the test with its output when it does not succeed.
pub fn ubm_ok(args: &[&str]) -> Output {
    let output = ubm().args(args).output().expect("ubm starts");
    assert!(
        output.status.success(),
        "ubm {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Generated sample data in a temporary directory (`movie_review.csv`, `user_purchase.csv`,
/// and an embedded database `oltp.sqlite` loaded with the purchases).
pub struct Sample {
    pub dir: tempfile::TempDir,
}

impl Sample {
    pub fn new(scale: &str) -> Sample {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = format!("sqlite://{}", dir.path().join("oltp.sqlite").display());
        ubm_ok(&["datagen", "--scale", scale, "--out", &dir.path().display().to_string(), "--seed", "7", "--oltp", &sqlite]);
        Sample { dir }
    }

    pub fn reviews(&self) -> String {
        self.dir.path().join("movie_review.csv").display().to_string()
    }

    pub fn sqlite(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("oltp.sqlite").display())
    }

    /// A fresh lake directory inside the sample's directory.
    pub fn lake(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// The Python with pyspark and duckdb that `tests/run.sh` sets up, if any.
pub fn peer_python() -> Option<PathBuf> {
    match std::env::var_os("UBM_PYTHON").map(PathBuf::from) {
        Some(python) if python.exists() => Some(python),
        _ => {
            missing("UBM_PYTHON does not name a Python with pyspark and duckdb");
            None
        }
    }
}

pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(name)
}

/// A database of its own on the local Postgres, dropped at the end of the test.
pub struct TestDb {
    pub name: String,
    admin: String,
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn admin_url() -> String {
    std::env::var("UBM_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn psql(url: &str, sql: &str) -> Output {
    Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]).output().expect("psql runs")
}

impl TestDb {
    /// The URL of the server's admin database (`UBM_TEST_POSTGRES`, or the local Postgres).
    pub fn admin() -> String {
        admin_url()
    }

    /// `None` (after saying why) when Postgres is not reachable outside CI.
    pub fn create() -> Option<TestDb> {
        let admin = admin_url();
        let name = format!("ubm_test_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
        let out = Command::new("psql").args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")]).output();
        match out {
            Ok(o) if o.status.success() => Some(TestDb { name, admin }),
            Ok(o) => {
                missing(&format!("Postgres at {admin} refused CREATE DATABASE: {}", text(&o.stderr)));
                None
            }
            Err(e) => {
                missing(&format!("psql cannot run: {e}"));
                None
            }
        }
    }

    pub fn url(&self) -> String {
        let base = self.admin.rsplit_once('/').map_or(self.admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }

    /// Rows of `sql`, one string per row, fields separated by `|`.
    pub fn query(&self, sql: &str) -> Vec<String> {
        let out = psql(&self.url(), sql);
        assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_string).collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = psql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// The rejects of a committed partition `dir`: its `rejects-NNNNN.jsonl` parts, in name order
/// (which is the file's order), as one text.
pub fn rejects_text(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("rejects-")) && p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).expect("rejects part")).collect()
}

/// Every row of the Parquet files in `dir` as text (`a|b|c`), sorted, for whole-table
/// comparisons.
pub fn parquet_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no parquet files in {}", dir.display());
    for file in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("open parquet"))
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            rows.extend(batch_rows(&batch.expect("batch")));
        }
    }
    rows.sort();
    rows
}

pub fn batch_rows(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<_> = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter")).collect();
    (0..batch.num_rows()).map(|i| formatters.iter().map(|f| f.value(i).to_string()).collect::<Vec<_>>().join("|")).collect()
}

/// The run report `<lake>/_runs/D.json`.
pub fn report(lake: &str, date: &str) -> serde_json::Value {
    let path = Path::new(lake).join("_runs").join(format!("{date}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("report is JSON")
}

pub fn partition(lake: &str, table: &str, date: &str) -> PathBuf {
    Path::new(lake).join(table).join(format!("insert_date={date}"))
}

/// Runs a boto3 snippet against the moto server at `endpoint`, with `s3` and `emr` bound to
/// clients; returns what it printed.
fn boto3_at(endpoint: &str, code: &str) -> String {
    let python = peer_python().expect("python");
    let script = format!(
        "import boto3\nkw = dict(endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='testing', \
         aws_secret_access_key='testing')\ns3 = boto3.client('s3', **kw)\nemr = boto3.client('emr', **kw)\n{code}"
    );
    let out = Command::new(python).args(["-c", &script]).output().expect("python runs");
    assert!(out.status.success(), "boto3: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A moto S3 server on a free loopback port, stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    /// `None` (after saying why) when the peer venv is missing outside CI.
    pub fn start() -> Option<Moto> {
        let python = peer_python()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto starts");
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        wait_for_port(port);
        Some(moto)
    }

    /// The variables a client needs to use this server as S3.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        Moto::env_for(&self.endpoint)
    }

    /// The variables that point AWS clients at a moto server at `endpoint`.
    pub fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Runs a boto3 snippet against this server (see [`boto3_at`]).
    pub fn boto3(&self, code: &str) -> String {
        boto3_at(&self.endpoint, code)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto serving the EMR and S3 APIs, with `tests/peers/emr_harness.py` playing EMR's part:
/// steps added to a cluster run here, one at a time, with `ubm` as the node's `ubm-step`.
pub struct EmrHarness {
    child: std::process::Child,
    pub endpoint: String,
    /// While this file exists, no step starts.
    pub pause_file: PathBuf,
    /// The step logs, as EMR's `LogFile` names them.
    pub log_dir: tempfile::TempDir,
}

impl EmrHarness {
    /// `None` (after saying why) when the peer venv is missing outside CI.
    pub fn start() -> Option<EmrHarness> {
        EmrHarness::start_playing(env!("CARGO_BIN_EXE_ubm"))
    }

    /// The harness with `program` playing the node's `ubm-step` (`true`, for a test of how
    /// steps are added rather than of what they do).
    pub fn start_playing(program: &str) -> Option<EmrHarness> {
        let python = peer_python()?;
        // A free port can be taken by another test between the probe and the bind: the harness
        // then fails to start, and another port is tried.
        for _ in 0..5 {
            if let Some(harness) = EmrHarness::start_on(&python, free_port(), program) {
                return Some(harness);
            }
        }
        panic!("the EMR harness did not start on any of 5 ports");
    }

    /// The harness on `port`, once it says `ready` (so that the port is surely its own).
    fn start_on(python: &Path, port: u16, program: &str) -> Option<EmrHarness> {
        use std::io::BufRead;
        let log_dir = tempfile::tempdir().expect("tempdir");
        let pause_file = log_dir.path().join("pause");
        let mut child = Command::new(python)
            .arg(peer_script("emr_harness.py"))
            .args(["--port", &port.to_string(), "--ubm", program])
            .arg("--log-dir")
            .arg(log_dir.path())
            .arg("--pause-file")
            .arg(&pause_file)
            // moto's recorder keeps what it records in this file (by default in the working
            // directory, shared by every harness).
            .env("MOTO_RECORDER_FILEPATH", log_dir.path().join("moto_recording"))
            .envs(Moto::env_for(&format!("http://127.0.0.1:{port}")))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the EMR harness starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first_line = String::new();
        let ready = std::io::BufReader::new(stdout).read_line(&mut first_line).is_ok() && first_line.trim() == "ready";
        let harness = EmrHarness { child, endpoint: format!("http://127.0.0.1:{port}"), pause_file, log_dir };
        ready.then_some(harness)
    }

    /// The variables `ubm deploy` and the cluster need to use this server as AWS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        Moto::env_for(&self.endpoint)
    }

    /// Runs a boto3 snippet against this server (see [`boto3_at`]).
    pub fn boto3(&self, code: &str) -> String {
        boto3_at(&self.endpoint, code)
    }

    /// Starts moto's recorder: every request from now on is kept (see [`EmrHarness::recorded`]).
    pub fn start_recording(&self) {
        self.boto3(&format!(
            "import urllib.request\nurllib.request.urlopen(urllib.request.Request('{}/moto-api/recorder/start-recording', method='POST'))",
            self.endpoint
        ));
    }

    /// The requests moto's recorder kept, as JSON objects (method, url, headers, body), each
    /// body as text (the recorder keeps some in base64).
    pub fn recorded(&self) -> Vec<serde_json::Value> {
        let lines = self.boto3(&format!(
            "import base64, json, urllib.request\n\
             for line in urllib.request.urlopen('{}/moto-api/recorder/download-recording').read().decode().splitlines():\n\
             \x20   entry = json.loads(line)\n\
             \x20   if entry.get('body_encoded'):\n\
             \x20       entry['body'] = base64.b64decode(entry['body']).decode('utf-8', 'replace')\n\
             \x20   print(json.dumps(entry))",
            self.endpoint
        ));
        lines.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a recorded request is JSON")).collect()
    }
}

impl Drop for EmrHarness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Ballista cluster of `ubm cluster` processes on loopback: one scheduler and `executors`
/// executors, killed when dropped.
pub struct Cluster {
    children: Vec<std::process::Child>,
    pub engine: String,
    /// How the scheduler was started, to start it again the same way.
    scheduler_command: Vec<String>,
    env: Vec<(&'static str, String)>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// Polls `condition` every 10 ms until it holds; fails the test naming `what` after `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The tables a run of `date` writes into `lake` (staged purchases, classified reviews, the
/// metric), each as its sorted rows.
pub fn lake_tables(lake: &str, date: &str) -> Vec<(String, Vec<String>)> {
    ["stage/user_purchase", "stage/movie_review", "warehouse/user_behavior_metric"]
        .iter()
        .map(|t| (t.to_string(), parquet_rows(&partition(lake, t, date))))
        .collect()
}

/// Every file under `dir`, as sorted paths relative to it (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.display().to_string());
            }
        }
    }
    files.sort();
    files
}

pub fn wait_for_port(port: u16) {
    wait_until(&format!("something listens on {port}"), std::time::Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// A cluster of `ubm cluster` processes on loopback, built with [`Cluster::builder`]; dropping
/// it kills them.
pub struct ClusterBuilder {
    executors: usize,
    env: Vec<(&'static str, String)>,
    scheduler_args: Vec<String>,
    executor_args: Vec<String>,
    scheduler_port: Option<u16>,
    /// The TLS directory every process gets (and the readiness check presents).
    tls: Option<String>,
}

impl ClusterBuilder {
    /// Every process gets `env` (e.g. the S3 endpoint and credentials).
    pub fn env(mut self, env: Vec<(&'static str, String)>) -> Self {
        self.env = env;
        self
    }

    /// Extra arguments for the scheduler.
    pub fn scheduler_args(mut self, args: &[&str]) -> Self {
        self.scheduler_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Extra arguments for every executor (e.g. `--slots 1`).
    pub fn executor_args(mut self, args: &[&str]) -> Self {
        self.executor_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The scheduler on `port` instead of a free one.
    pub fn scheduler_port(mut self, port: u16) -> Self {
        self.scheduler_port = Some(port);
        self
    }

    /// Every process serves and connects with the TLS material in `dir` (node material).
    pub fn tls(mut self, dir: &str) -> Self {
        self.tls = Some(dir.to_string());
        self
    }

    /// Starts the scheduler, then the executors; returns once every executor has registered
    /// with the scheduler (asked of it with `ubm status --executors`).
    pub fn start(self) -> Cluster {
        let scheduler_port = self.scheduler_port.unwrap_or_else(free_port);
        let scheduler = format!("127.0.0.1:{scheduler_port}");
        let tls: Vec<String> = self.tls.iter().flat_map(|dir| ["--tls".to_string(), dir.clone()]).collect();
        let spawn = |args: Vec<String>| {
            ubm()
                .args(args)
                .envs(self.env.iter().cloned())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("ubm starts")
        };
        let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let scheduler_command = [words(&["cluster", "scheduler", "--bind", &scheduler]), tls.clone(), self.scheduler_args.clone()].concat();
        let mut cluster = Cluster {
            children: vec![spawn(scheduler_command.clone())],
            engine: format!("df://{scheduler}"),
            scheduler_command,
            env: self.env.clone(),
        };
        wait_for_port(scheduler_port);
        for _ in 0..self.executors {
            // The executor's gRPC service takes the port after its Flight port.
            let port = loop {
                let p = free_port();
                if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                    break p;
                }
            };
            let bind = format!("127.0.0.1:{port}");
            let args =
                [words(&["cluster", "executor", "--scheduler", &scheduler, "--bind", &bind]), tls.clone(), self.executor_args.clone()].concat();
            cluster.children.push(spawn(args));
        }
        let registered = || {
            let out = ubm().args(["status", "--scheduler", &cluster.engine, "--executors", "--json"]).args(&tls).output().expect("ubm status runs");
            let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
            listed.len() >= self.executors
        };
        wait_until(&format!("{} executor(s) registered with {}", self.executors, cluster.engine), std::time::Duration::from_secs(30), registered);
        cluster
    }
}

impl Cluster {
    /// A cluster of a scheduler and `executors` executors, plaintext on loopback.
    pub fn builder(executors: usize) -> ClusterBuilder {
        ClusterBuilder { executors, env: Vec::new(), scheduler_args: Vec::new(), executor_args: Vec::new(), scheduler_port: None, tls: None }
    }

    /// The same, started with nothing more.
    pub fn start(executors: usize) -> Cluster {
        Cluster::builder(executors).start()
    }
}

impl Cluster {
    /// Stops the scheduler at once (kill -9), leaving the executors running.
    pub fn kill_scheduler(&mut self) {
        let scheduler = &mut self.children[0];
        scheduler.kill().expect("kill the scheduler");
        scheduler.wait().expect("reap the scheduler");
    }

    /// Starts the scheduler again with the flags it was first started with (as systemd's
    /// `Restart=` does), and returns once its port accepts connections.
    pub fn restart_scheduler(&mut self) {
        let scheduler = ubm()
            .args(&self.scheduler_command)
            .envs(self.env.iter().cloned())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ubm starts");
        self.children[0] = scheduler;
        let port: u16 = self.engine.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the scheduler's port");
        wait_for_port(port);
    }

    /// Process ids of the scheduler and the executors.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(std::process::Child::id).collect()
    }

    /// Process ids of the executors (the scheduler is the first child).
    pub fn executor_pids(&self) -> Vec<u32> {
        self.children.iter().skip(1).map(std::process::Child::id).collect()
    }
}

/// CPU time a process has used so far, in clock ticks (Linux `/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12) // utime + stime
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
