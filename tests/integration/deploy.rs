//! `ubm deploy` against moto's EMR and S3, with `tests/peers/emr_harness.py` running the steps
//! here as EMR would on the master node, against a local cluster of `ubm cluster` processes
//! that run with the node TLS material `up` put in the bucket; and the bootstrap script run on
//! this machine for a master and a core node, with TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{Cluster, EmrHarness, Sample, TestDb, free_port, peer_python, text, ubm, wait_for_port};

const BUCKET: &str = "ubm-artifacts";
const REVIEWS: &str = "s3://vendor/daily/{date}/movie_review.csv";
const LAKE: &str = "s3://lake/ubm";

/// A deployment's surroundings: the harness, buckets with the vendor's files, the port of the
/// local cluster that plays the EMR nodes once `up` made its TLS material, and the state file.
struct Setup {
    harness: EmrHarness,
    scheduler_port: u16,
    nodes: Option<Cluster>,
    sample: Sample,
    state: String,
}

impl Setup {
    fn new(dates: &[&str]) -> Option<Setup> {
        Setup::with(EmrHarness::start()?, dates)
    }

    fn with(harness: EmrHarness, dates: &[&str]) -> Option<Setup> {
        let sample = Sample::new("0.01");
        let mut uploads = format!("s3.create_bucket(Bucket='{BUCKET}')\ns3.create_bucket(Bucket='vendor')\ns3.create_bucket(Bucket='lake')\n");
        for date in dates {
            uploads.push_str(&format!("s3.upload_file('{}', 'vendor', 'daily/{date}/movie_review.csv')\n", sample.reviews()));
        }
        harness.boto3(&uploads);
        let state = sample.dir.path().join("ubm-deploy.json").display().to_string();
        Some(Setup { harness, scheduler_port: free_port(), nodes: None, sample, state })
    }

    fn scheduler_port(&self) -> String {
        self.scheduler_port.to_string()
    }

    /// What the bootstrap action does on the nodes: fetch the node material `up` uploaded (from
    /// the folder the state file records) and start the scheduler and executors with it.
    fn start_nodes(&mut self) -> PathBuf {
        let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&self.state).expect("state")).expect("json");
        let url = recorded["tls"]["node_material"].as_str().expect("the state records the node material").to_string();
        let (bucket, prefix) = url.trim_start_matches("s3://").split_once('/').expect("bucket/prefix");
        let node = self.sample.dir.path().join("node-tls");
        std::fs::create_dir_all(&node).expect("node dir");
        let fetched = self.harness.boto3(&format!(
            "import os\nfor n in ['ca.pem', 'cert.pem', 'key.pem']:\n    h = s3.head_object(Bucket='{bucket}', Key='{prefix}' + n)\n    print(n, h.get('ServerSideEncryption'))\n    s3.download_file('{bucket}', '{prefix}' + n, '{dir}/' + n)\nos.chmod('{dir}/key.pem', 0o600)\n",
            dir = node.display()
        ));
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            assert!(fetched.contains(&format!("{name} AES256")), "{name} is stored server-side encrypted: {fetched}");
        }
        self.nodes = Some(Cluster::builder(2).scheduler_port(self.scheduler_port).env(self.harness.env()).tls(node.to_str().expect("utf-8")).start());
        node
    }

    /// `ubm deploy ARGS --state S` with the harness as AWS.
    fn deploy(&self, args: &[&str]) -> Output {
        ubm().arg("deploy").args(args).args(["--state", &self.state]).envs(self.harness.env()).output().expect("ubm deploy runs")
    }

    fn deploy_ok(&self, args: &[&str]) -> Output {
        let out = self.deploy(args);
        assert!(out.status.success(), "ubm deploy {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
        out
    }

    fn up(&mut self, env_file: &Path) -> Output {
        let out = self.up_without_nodes(env_file, &self.state.clone(), &[]);
        self.start_nodes();
        out
    }

    /// `up` recorded in `state`, with `extra` flags; no local cluster plays the nodes.
    fn up_without_nodes(&self, env_file: &Path, state: &str, extra: &[&str]) -> Output {
        let port = self.scheduler_port();
        let mut args = vec![
            "up",
            "--bucket",
            BUCKET,
            "--reviews",
            REVIEWS,
            "--lake",
            LAKE,
            "--env-file",
            env_file.to_str().expect("utf-8"),
            "--scheduler-port",
            &port,
            "--poll-seconds",
            "0.1",
            "--core-nodes",
            "2",
            "--state",
            state,
        ];
        args.extend(extra);
        let out = ubm().arg("deploy").args(&args).envs(self.harness.env()).output().expect("ubm deploy runs");
        assert!(out.status.success(), "ubm deploy up failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
        out
    }
}

#[test]
fn up_runs_two_dates_into_the_warehouse_then_down_removes_everything() {
    let dates = ["2011-12-08", "2011-12-09"];
    let Some(db) = TestDb::create() else { return };
    let Some(mut setup) = Setup::new(&dates) else { return };
    let env_file = setup.sample.dir.path().join("ubm.env");
    std::fs::write(&env_file, format!("# on the nodes\nUBM_OLTP={}\nUBM_WAREHOUSE={}\n", setup.sample.sqlite(), db.url())).expect("env file");

    let up = setup.up(&env_file);
    let said = text(&up.stdout);
    assert!(said.contains("is WAITING") && said.contains("mutual TLS"), "{said}{}", text(&up.stderr));
    // On this machine: the client material and the CA; the node key went to the bucket only.
    let local_tls = setup.sample.dir.path().join("ubm-deploy-tls");
    assert!(local_tls.join("client/key.pem").exists() && local_tls.join("ca/key.pem").exists(), "client material kept");
    assert!(!local_tls.join("node").exists(), "the node key is not kept here");
    let node_key = std::fs::read_to_string(setup.sample.dir.path().join("node-tls/key.pem")).expect("node key");
    assert!(!std::fs::read_to_string(&setup.state).expect("state").contains("PRIVATE KEY"), "no key in the state file");
    assert!(!said.contains("PRIVATE KEY") && !text(&up.stderr).contains("PRIVATE KEY"), "no key in the output");
    let uploaded = setup.harness.boto3(&format!("for o in s3.list_objects_v2(Bucket='{BUCKET}')['Contents']: print(o['Key'])"));
    for name in ["ubm", "bootstrap.sh", "ubm.env"] {
        assert!(uploaded.lines().any(|k| k.ends_with(&format!("/{name}"))), "{name} not uploaded:\n{uploaded}");
    }
    let again = setup.deploy(&["up", "--bucket", BUCKET, "--reviews", REVIEWS, "--lake", LAKE]);
    assert!(!again.status.success() && text(&again.stderr).contains("already records cluster"), "{}", text(&again.stderr));

    let steps: serde_json::Value = serde_json::from_slice(&setup.deploy_ok(&["steps", "--date", dates[0]]).stdout).expect("json");
    assert_eq!(steps[0]["HadoopJarStep"]["Jar"], "command-runner.jar");
    assert_eq!(steps[0]["ActionOnFailure"], "CANCEL_AND_WAIT");
    assert!(!steps.to_string().contains("sqlite://"), "no secret in step arguments: {steps}");
    assert!(!steps.to_string().contains("PRIVATE KEY") && !steps.to_string().contains(node_key.trim()), "no key in step arguments");

    let run = setup.deploy_ok(&["run", "--from", dates[0], "--to", dates[1], "--poll-seconds", "0.2"]);
    let said = text(&run.stdout);
    for date in dates {
        assert!(said.contains(&format!("(ubm daily run {date}) completed")), "{said}");
    }
    let loaded = db.query("SELECT insert_date, count(*) > 0 FROM public.user_behavior_metric GROUP BY 1 ORDER BY 1");
    assert_eq!(loaded, vec![format!("{}|t", dates[0]), format!("{}|t", dates[1])]);

    let status = text(&setup.deploy_ok(&["status"]).stdout);
    assert!(status.contains("RUNNING") || status.contains("WAITING"), "{status}");
    let dag = setup.sample.dir.path().join("ubm_dag.py");
    setup.deploy_ok(&["airflow-dag", "--out", &dag.display().to_string()]);
    check_python_syntax(&dag);

    // A submitter on this machine reaches the scheduler with the client material, and only so.
    let client = local_tls.join("client").display().to_string();
    let scheduler = format!("df://127.0.0.1:{}", setup.scheduler_port);
    ubm()
        .args(["status", "--scheduler", &scheduler, "--tls", &client])
        .output()
        .map(|o| assert!(o.status.success(), "{}", text(&o.stderr)))
        .expect("status");
    let plain = ubm().args(["status", "--scheduler", &scheduler]).output().expect("status");
    assert!(!plain.status.success() && text(&plain.stderr).contains("accepts only TLS"), "{}", text(&plain.stderr));

    let down = text(&setup.deploy_ok(&["down", "--purge"]).stdout);
    // The binary, the bootstrap script, the environment file and the three files of node material.
    assert!(down.contains("terminating cluster") && down.contains("deleted 6 objects"), "{down}");
    assert!(!local_tls.exists(), "down removes the terminated cluster's TLS material");
    assert!(!Path::new(&setup.state).exists(), "the state file is removed");
    let states = setup.harness.boto3("print([c['Status']['State'] for c in emr.list_clusters()['Clusters']])");
    assert!(states.contains("TERMINAT"), "{states}");
    let left = setup.harness.boto3(&format!("print(s3.list_objects_v2(Bucket='{BUCKET}', Prefix='ubm/deployments/').get('KeyCount'))"));
    assert_eq!(left.trim(), "0", "--purge deletes the artifacts");
}

fn check_python_syntax(file: &Path) {
    let Some(python) = peer_python() else { return };
    let out = Command::new(python).args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"]).arg(file).output().expect("python");
    assert!(out.status.success(), "the DAG is not valid Python: {}", text(&out.stderr));
}

#[test]
fn a_failing_step_shows_emrs_reason_and_a_slow_one_hits_the_timeout() {
    let date = "2011-12-09";
    let Some(mut setup) = Setup::new(&[date]) else { return };
    let env_file = setup.sample.dir.path().join("ubm.env");
    std::fs::write(&env_file, format!("UBM_OLTP={}\n", setup.sample.sqlite())).expect("env file");
    setup.up(&env_file);

    let failed = setup.deploy(&["run", "--date", date, "--reviews", "s3://vendor/missing/{date}.csv", "--poll-seconds", "0.2", "--attempts", "1"]);
    let said = text(&failed.stderr);
    assert!(!failed.status.success(), "{said}");
    assert!(said.contains("ended FAILED: The step's command exited with code 1."), "{said}");
    assert!(said.contains("missing/2011-12-09.csv"), "EMR's message names the input: {said}");
    assert!(said.contains(&format!("log: {}", setup.harness.log_dir.path().display())), "{said}");

    std::fs::write(&setup.harness.pause_file, "").expect("pause the harness");
    let clock = Instant::now();
    let slow = setup.deploy(&["run", "--date", date, "--poll-seconds", "0.2", "--timeout-seconds", "2"]);
    let said = text(&slow.stderr);
    assert!(!slow.status.success(), "{said}");
    assert!(said.contains("gave up waiting for step") && said.contains("after 2 s"), "{said}");
    assert!(clock.elapsed() < Duration::from_secs(30), "the poll stops at its timeout");
    std::fs::remove_file(&setup.harness.pause_file).expect("resume");
    setup.deploy_ok(&["down"]);
}

/// Kills the process groups the bootstrap script's loops lead, whatever the test's outcome.
struct Services(Vec<std::path::PathBuf>);

impl Drop for Services {
    fn drop(&mut self) {
        for pid_file in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(pid_file) {
                let _ = Command::new("kill").args(["-9", "--", &format!("-{}", pid.trim())]).status();
            }
        }
    }
}

/// A node's folders and EMR's files for the bootstrap script, under `dir`.
fn fake_node(dir: &Path, is_master: bool) -> std::path::PathBuf {
    let info = dir.join("info");
    std::fs::create_dir_all(&info).expect("info dir");
    std::fs::write(info.join("instance.json"), format!(r#"{{"isMaster": {is_master}, "instanceGroupId": "ig-1"}}"#)).expect("instance.json");
    std::fs::write(info.join("job-flow.json"), r#"{"jobFlowId": "j-TEST", "masterPrivateDnsName": "localhost"}"#).expect("job-flow.json");
    info
}

/// `bootstrap.sh BINARY ENV PORT TLS` as EMR would run it on the node under `dir`, its EMR
/// paths moved under `dir`, services run by the `loop` manager.
fn bootstrap(dir: &Path, is_master: bool, args: [&str; 4], executor_port: u16, wait_seconds: u32) -> Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/bootstrap.sh"))
        .args(args)
        .env("UBM_EMR_INFO_DIR", fake_node(dir, is_master))
        .env("UBM_INSTALL_DIR", dir.join("bin"))
        .env("UBM_ETC_DIR", dir.join("etc"))
        .env("UBM_WORK_DIR", dir.join("work"))
        .env("UBM_LOG_DIR", dir.join("log"))
        .env("UBM_EXTERNAL_HOST", "localhost")
        .env("UBM_EXECUTOR_PORT", executor_port.to_string())
        .env("UBM_SERVICE_MANAGER", "loop")
        .env("UBM_BUSY_FILE", dir.join("emr-metricscollector-isbusy"))
        .env("UBM_BOOTSTRAP_WAIT_SECONDS", wait_seconds.to_string())
        .output()
        .expect("bash runs")
}

/// A port free for an executor, whose task port (the next one) is free too.
fn free_executor_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

#[test]
fn the_bootstrap_script_starts_a_scheduler_and_an_executor_that_form_a_cluster() {
    let root = tempfile::tempdir().expect("tempdir");
    let scheduler_port = free_port();
    let executor_port = free_executor_port();
    let mut services = Services(Vec::new());
    let material = root.path().join("tls");
    crate::common::ubm_ok(&["cluster", "certs", "--out", &material.display().to_string()]);
    let node_material = format!("{}/", material.join("node").display());
    // The OLTP database sits in a folder whose name holds what a shell or systemd would
    // change or run ($, ;, a backtick command, quotes, spaces, a trailing space): the day runs
    // only if the step and the service both get these bytes exactly.
    let sample = Sample::new("0.01");
    let injected = root.path().join("the shell ran part of the value");
    let hostile = root.path().join(format!("p a$HOME;`touch '{}'`\"q'x ", injected.display()));
    std::fs::create_dir_all(&hostile).expect("hostile folder");
    let database = hostile.join("oltp.sqlite ");
    std::fs::copy(sample.sqlite().trim_start_matches("sqlite://"), &database).expect("copy the database");
    let oltp = format!("sqlite://{}", database.display());
    for (node, is_master) in [("master", true), ("core", false)] {
        let dir = root.path().join(node);
        std::fs::create_dir_all(&dir).expect("node dir");
        let env_file = dir.join("ubm.env");
        std::fs::write(&env_file, format!("UBM_SCHEDULER=df://localhost:{scheduler_port}\nUBM_OLTP={oltp}\n")).expect("env");
        let out = bootstrap(
            &dir,
            is_master,
            [env!("CARGO_BIN_EXE_ubm"), &env_file.display().to_string(), &scheduler_port.to_string(), &node_material],
            executor_port,
            30,
        );
        let name = if is_master { "ubm-scheduler" } else { "ubm-executor" };
        services.0.push(dir.join("work").join(format!("{name}.pid")));
        let said = text(&out.stdout);
        assert!(out.status.success(), "bootstrap on the {node} node: {said}{}", text(&out.stderr));
        assert!(said.contains(&format!("started {name} (loop")), "{said}");
        assert!(said.contains("--tls"), "the node runs with TLS: {said}");
        assert!(said.contains(&format!("installed ubm {}", env!("CARGO_PKG_VERSION"))), "the binary was run once: {said}");
        let port = if is_master { scheduler_port } else { executor_port };
        assert!(said.contains(&format!("{name} listens on port {port}")), "the script waits for its service: {said}");
        if is_master {
            assert!(said.contains("--busy-file"), "the scheduler marks the node busy for EMR's idle timeout: {said}");
        }
        let key = std::fs::metadata(dir.join("etc/tls/key.pem")).expect("the node's key is installed");
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
    }
    std::thread::sleep(Duration::from_secs(1)); // the executor registers right after it listens

    // ubm-step reads the node's environment file and TLS material: no --scheduler, --tls or --oltp.
    let step = root.path().join("master/bin/ubm-step");
    let lake = sample.lake("lake");
    let out = Command::new(&step)
        .args(["submit", "--date", "2011-12-09", "--reviews", &sample.reviews(), "--lake", &lake])
        .output()
        .expect("ubm-step runs");
    assert!(out.status.success(), "a step on the bootstrapped cluster: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("completed: ubm metric 2011-12-09"), "{}", text(&out.stderr));
    // A cluster-mode run sends no OLTP URL: the scheduler's service uses the one it read.
    let client = material.join("client").display().to_string();
    let scheduler = format!("df://localhost:{scheduler_port}");
    let lake = sample.lake("lake-cluster-mode");
    let out = ubm()
        .args(["submit", "--deploy-mode", "cluster", "--follow", "--scheduler", &scheduler, "--tls", &client, "--date", "2011-12-09"])
        .args(["--reviews", &sample.reviews(), "--lake", &lake])
        .env_remove("UBM_OLTP")
        .output()
        .expect("submit");
    assert!(out.status.success(), "a cluster-mode run with the service's OLTP: {}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(crate::common::lake_tables(&lake, "2011-12-09"), crate::common::lake_tables(&sample.lake("lake"), "2011-12-09"));
    assert!(!injected.exists(), "no part of a value was run");

    // The scheduler is a service: killed, it comes back.
    // Anchored on the binary, so that the loop around it (whose command line holds the same
    // words) survives.
    let scheduler = format!("^{}/ubm cluster scheduler", root.path().join("master/bin").display());
    let killed = Command::new("pkill").args(["-9", "-f", "--", &scheduler]).status().expect("pkill");
    assert!(killed.success(), "the scheduler process was found");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", scheduler_port)).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_port(scheduler_port);
    let log = std::fs::read_to_string(root.path().join("master/log/ubm-scheduler.log")).unwrap_or_default();
    assert!(log.contains("ubm-scheduler exited"), "the loop restarted it:\n{log}");
}

#[test]
fn a_node_whose_binary_or_service_cannot_run_fails_its_bootstrap() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut services = Services(Vec::new());

    // A binary built for another system: the script says so and fails, so EMR fails the cluster.
    let foreign = root.path().join("ubm-macos");
    std::fs::write(&foreign, [0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1, 3, 0, 0, 0, 2, 0, 0, 0]).expect("write");
    let dir = root.path().join("foreign");
    let out = bootstrap(&dir, true, [foreign.to_str().expect("utf-8"), "-", &free_port().to_string(), "-"], free_executor_port(), 5);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("does not run on this node"), "{}", text(&out.stderr));
    assert!(!dir.join("work/ubm-scheduler.pid").exists(), "no service was started");

    // An environment file ubm cannot read fails the node before any service starts.
    let dir = root.path().join("bad-env");
    std::fs::create_dir_all(&dir).expect("dir");
    let env_file = dir.join("ubm.env");
    std::fs::write(&env_file, "UBM_OLTP=sqlite:///x\nexport UBM_WAREHOUSE=postgres://u:hunter2@db/x\n").expect("env");
    let out =
        bootstrap(&dir, true, [env!("CARGO_BIN_EXE_ubm"), env_file.to_str().expect("utf-8"), &free_port().to_string(), "-"], free_executor_port(), 5);
    let told = text(&out.stderr);
    assert!(!out.status.success() && told.contains("line 2") && !told.contains("hunter2"), "{told}");

    // A service that cannot start (its TLS material is damaged): the script waits, bounded,
    // then fails with the service's own last lines.
    let damaged = root.path().join("damaged-tls");
    std::fs::create_dir_all(&damaged).expect("dir");
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(damaged.join(name), "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    }
    let port = free_port();
    let dir = root.path().join("damaged");
    let clock = Instant::now();
    let tls_url = format!("{}/", damaged.display());
    let out = bootstrap(&dir, true, [env!("CARGO_BIN_EXE_ubm"), "-", &port.to_string(), &tls_url], free_executor_port(), 3);
    services.0.push(dir.join("work/ubm-scheduler.pid"));
    let told = text(&out.stderr);
    assert!(!out.status.success(), "{}{told}", text(&out.stdout));
    assert!(told.contains(&format!("ubm-scheduler does not listen on port {port} after 3 s")), "{told}");
    assert!(told.contains("ubm-scheduler exited") && told.contains("pem"), "the service's own reason follows: {told}");
    assert!(clock.elapsed() < Duration::from_secs(30), "the wait is bounded");
}

/// EMR 7 nodes run Amazon Linux 2023, whose glibc is 2.34: a binary asking for a newer symbol
/// version does not start there (see src/glibc_compat.rs).
#[test]
fn the_binary_needs_no_glibc_newer_than_emr_7s() {
    let out = match Command::new("objdump").arg("-T").arg(env!("CARGO_BIN_EXE_ubm")).output() {
        Ok(out) if out.status.success() => out,
        _ => return crate::common::missing("objdump (binutils) cannot read the binary"),
    };
    let mut newest = (0u32, 0u32);
    for version in text(&out.stdout).split("GLIBC_").skip(1) {
        let digits: String = version.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let mut parts = digits.split('.').filter_map(|p| p.parse::<u32>().ok());
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        newest = newest.max(found);
    }
    assert!(newest <= (2, 34), "the binary needs GLIBC_{}.{}; Amazon Linux 2023 has 2.34", newest.0, newest.1);
    assert!(newest >= (2, 2), "no glibc version found in the binary's dynamic symbols");
}

/// The keys under `ubm/deployments/` in the artifacts bucket, grouped by deployment folder.
fn deployment_folders(harness: &EmrHarness) -> std::collections::BTreeMap<String, Vec<String>> {
    let keys =
        harness.boto3(&format!("for o in s3.list_objects_v2(Bucket='{BUCKET}', Prefix='ubm/deployments/').get('Contents', []): print(o['Key'])"));
    let mut folders = std::collections::BTreeMap::<String, Vec<String>>::new();
    for key in keys.lines() {
        let rest = key.strip_prefix("ubm/deployments/").expect("under ubm/deployments/");
        let (folder, name) = rest.split_once('/').expect("FOLDER/NAME");
        folders.entry(folder.to_string()).or_default().push(name.to_string());
    }
    folders
}

#[test]
fn two_deployments_in_one_bucket_keep_their_own_files_and_ask_emr_for_what_was_chosen() {
    let Some(setup) = Setup::new(&[]) else { return };
    let env_file = setup.sample.dir.path().join("ubm.env");
    std::fs::write(&env_file, format!("UBM_OLTP={}\n", setup.sample.sqlite())).expect("env file");
    let second_state = setup.sample.dir.path().join("second.json").display().to_string();
    setup.up_without_nodes(&env_file, &setup.state, &[]);
    let choices = [
        "--idle-timeout",
        "none",
        "--replace-unhealthy-nodes",
        "--ebs-gb",
        "64",
        "--tls-hosts",
        "*.corp.test,scheduler.corp.test",
        "--core-types",
        "m5.xlarge,m5a.xlarge,m6i.xlarge",
        "--spot",
    ];
    setup.up_without_nodes(&env_file, &second_state, &choices);

    let folders = deployment_folders(&setup.harness);
    assert_eq!(folders.len(), 2, "each deployment has a folder of its own: {folders:?}");
    for names in folders.values() {
        let mut names = names.clone();
        names.sort();
        assert_eq!(names, ["bootstrap.sh", "tls/ca.pem", "tls/cert.pem", "tls/key.pem", "ubm", "ubm.env"]);
    }
    let recorded = |state: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(state).expect("state")).expect("json") };
    let (first, second) = (recorded(&setup.state), recorded(&second_state));
    assert_ne!(first["artifacts"], second["artifacts"]);

    // What EMR was asked (moto keeps none of it; the harness kept each RunJobFlow as sent).
    let asked = |n: usize| -> serde_json::Value {
        let path = setup.harness.log_dir.path().join(format!("run_job_flow/{n}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("the harness kept the request")).expect("json")
    };
    let (default, chosen) = (asked(1), asked(2));
    assert_eq!(default["AutoTerminationPolicy"]["IdleTimeout"], 25 * 3600, "the default idle timeout: {default}");
    assert_eq!(default["Instances"]["UnhealthyNodeReplacement"], false, "{default}");
    assert_eq!(default["Instances"]["KeepJobFlowAliveWhenNoSteps"], true, "{default}");
    assert!(
        default["BootstrapActions"][0]["ScriptBootstrapAction"]["Path"]
            .as_str()
            .expect("path")
            .starts_with(first["artifacts"].as_str().expect("url"))
    );
    assert!(chosen.get("AutoTerminationPolicy").is_none(), "--idle-timeout none: {chosen}");
    assert_eq!(chosen["Instances"]["UnhealthyNodeReplacement"], true, "{chosen}");
    assert_eq!(default["Instances"]["InstanceGroups"].as_array().map(Vec::len), Some(2), "one type: instance groups: {default}");
    assert!(chosen["Instances"].get("InstanceGroups").is_none(), "fleets and groups never mix: {chosen}");
    let fleets = chosen["Instances"]["InstanceFleets"].as_array().expect("instance fleets");
    let (master, core) = (&fleets[0], &fleets[1]);
    assert_eq!((master["InstanceFleetType"].as_str(), master["TargetOnDemandCapacity"].as_i64()), (Some("MASTER"), Some(1)), "{master}");
    assert_eq!((core["InstanceFleetType"].as_str(), core["TargetSpotCapacity"].as_i64()), (Some("CORE"), Some(2)), "{core}");
    assert_eq!(core["LaunchSpecifications"]["SpotSpecification"]["TimeoutAction"], "SWITCH_TO_ON_DEMAND", "{core}");
    let types: Vec<&str> = core["InstanceTypeConfigs"].as_array().expect("types").iter().filter_map(|t| t["InstanceType"].as_str()).collect();
    assert_eq!(types, ["m5.xlarge", "m5a.xlarge", "m6i.xlarge"]);
    for fleet in fleets {
        for typed in fleet["InstanceTypeConfigs"].as_array().expect("types") {
            let volume = &typed["EbsConfiguration"]["EbsBlockDeviceConfigs"][0]["VolumeSpecification"];
            assert_eq!((volume["VolumeType"].as_str(), volume["SizeInGB"].as_i64()), (Some("gp3"), Some(64)), "{typed}");
        }
    }
    // A Graviton type among x86_64 ones cannot run this binary: refused before anything is made.
    let mixed = ubm()
        .args(["deploy", "up", "--bucket", BUCKET, "--reviews", REVIEWS, "--lake", LAKE, "--core-types", "m5.xlarge,m6g.xlarge"])
        .args(["--state", &setup.sample.dir.path().join("third.json").display().to_string()])
        .envs(setup.harness.env())
        .output()
        .expect("up");
    let told = text(&mixed.stderr);
    assert!(!mixed.status.success() && told.contains("m6g.xlarge nodes run Linux on aarch64"), "{told}");

    // The node certificates name the hosts of each VPC's DNS.
    let names = |state: &serde_json::Value| -> String {
        let url = state["tls"]["node_material"].as_str().expect("node material");
        let (bucket, prefix) = url.trim_start_matches("s3://").split_once('/').expect("bucket/prefix");
        setup.harness.boto3(&format!(
            "from cryptography import x509\nbody = s3.get_object(Bucket='{bucket}', Key='{prefix}cert.pem')['Body'].read()\n\
             print(sorted(x509.load_pem_x509_certificate(body).extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)))"
        ))
    };
    let (default_names, chosen_names) = (names(&first), names(&second));
    assert!(default_names.contains("'*.ec2.internal'") && default_names.contains("'*.us-east-1.compute.internal'"), "{default_names}");
    assert!(
        chosen_names.contains("'*.corp.test'") && chosen_names.contains("'scheduler.corp.test'") && chosen_names.contains("'localhost'"),
        "{chosen_names}"
    );
    assert!(!chosen_names.contains("ec2.internal"), "--tls-hosts replaces Amazon's names: {chosen_names}");

    // `down --purge` removes its own folder and nothing of the other deployment's.
    let down = ubm().args(["deploy", "down", "--purge", "--state", &setup.state]).envs(setup.harness.env()).output().expect("down");
    assert!(down.status.success() && text(&down.stdout).contains("deleted 6 objects"), "{}{}", text(&down.stdout), text(&down.stderr));
    let left = deployment_folders(&setup.harness);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(second["artifacts"].as_str().expect("url").contains(left.keys().next().expect("folder")), "the second deployment's files stay");
    let down = ubm().args(["deploy", "down", "--purge", "--state", &second_state]).envs(setup.harness.env()).output().expect("down");
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(deployment_folders(&setup.harness).is_empty());
}

#[test]
fn a_400_date_backfill_never_asks_emr_for_more_than_256_active_steps() {
    // The steps run `true`: this test is about how steps reach EMR, not what they do (the
    // other tests run real days).
    let Some(harness) = EmrHarness::start_playing("true") else { return };
    let Some(setup) = Setup::with(harness, &[]) else { return };
    let env_file = setup.sample.dir.path().join("ubm.env");
    std::fs::write(&env_file, format!("UBM_OLTP={}\n", setup.sample.sqlite())).expect("env file");
    setup.up_without_nodes(&env_file, &setup.state, &[]);

    setup.harness.start_recording();
    let run = setup.deploy(&["run", "--from", "2023-01-01", "--to", "2024-02-04", "--poll-seconds", "0.05"]);
    let (said, told) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "{said}{told}");
    assert_eq!(said.lines().filter(|l| l.contains(") completed [")).count(), 400, "{said}");
    assert!(said.contains("(ubm daily run 2024-02-04) completed [400/400]"), "the last date last: {said}");
    assert!(told.contains("144 more date(s) wait for room"), "{told}");

    let mut batches = Vec::new();
    for request in setup.harness.recorded() {
        let target = request["headers"]["X-Amz-Target"].as_str().unwrap_or_default();
        if target.ends_with(".AddJobFlowSteps") {
            let body: serde_json::Value = serde_json::from_str(request["body"].as_str().expect("body")).expect("a JSON body");
            batches.push(body["Steps"].as_array().expect("steps").len());
        }
    }
    assert_eq!(batches.iter().sum::<usize>(), 400, "{batches:?}");
    assert_eq!(batches[0], 256, "the first call fills the room: {batches:?}");
    assert!(batches.iter().all(|n| *n <= 256), "{batches:?}");
    let most: usize =
        std::fs::read_to_string(setup.harness.log_dir.path().join("max_active_steps")).expect("recorded").trim().parse().expect("a number");
    assert!(most <= 256, "at most 256 steps were ever active at once, as EMR allows: {most}");
}

/// A Postgres session that holds `LOCK TABLE … ACCESS EXCLUSIVE` on the purchases until dropped:
/// every read of the table waits, as behind a long migration.
struct TableLock(std::process::Child);

impl TableLock {
    fn hold(db: &TestDb) -> TableLock {
        use std::io::Write;
        let mut child = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &db.url()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql starts");
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"BEGIN;\nLOCK TABLE retail.user_purchase IN ACCESS EXCLUSIVE MODE;\n").expect("lock");
        stdin.flush().expect("flush");
        crate::common::wait_until("the lock is held", Duration::from_secs(10), || {
            db.query("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'user_purchase' AND l.mode = 'AccessExclusiveLock' AND l.granted")
                == vec!["1".to_string()]
        });
        TableLock(child)
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_step_that_hangs_is_stopped_at_its_bound_and_the_next_day_runs() {
    let dates = ["2011-12-08", "2011-12-09"];
    let Some(db) = TestDb::create() else { return };
    let Some(mut setup) = Setup::new(&dates) else { return };
    crate::common::ubm_ok(&["datagen", "--scale", "0.01", "--seed", "7", "--out", &setup.sample.lake("pg-data"), "--oltp", &db.url()]);
    let env_file = setup.sample.dir.path().join("ubm.env");
    std::fs::write(&env_file, format!("UBM_OLTP={}\n", db.url())).expect("env file");
    setup.up(&env_file);

    let lock = TableLock::hold(&db);
    let clock = Instant::now();
    let hung = setup.deploy(&["run", "--date", dates[0], "--step-timeout", "5s", "--poll-seconds", "0.2"]);
    let told = text(&hung.stderr);
    assert!(!hung.status.success(), "{told}");
    assert!(told.contains("exited with code 124") && told.contains("ran longer than --step-timeout (5 s)"), "{told}");
    assert!(clock.elapsed() < Duration::from_secs(60), "stopped at its bound, not killed a minute later: {:?}", clock.elapsed());
    let step_log =
        std::fs::read_to_string(told.split("log: ").nth(1).and_then(|l| l.split_whitespace().next()).expect("EMR's log file")).expect("log");
    assert!(step_log.contains("SIGTERM"), "ubm was asked to stop and said so: {step_log}");
    drop(lock);

    // Nothing of the stopped day holds the cluster back: the next day's step runs.
    let next = setup.deploy_ok(&["run", "--date", dates[1], "--poll-seconds", "0.2"]);
    assert!(text(&next.stdout).contains(&format!("(ubm daily run {}) completed", dates[1])), "{}", text(&next.stdout));
    setup.deploy_ok(&["down"]);
}
