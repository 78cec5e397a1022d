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
        let harness = EmrHarness::start()?;
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
        let port = self.scheduler_port();
        let out = self.deploy_ok(&[
            "up",
            "--bucket",
            BUCKET,
            "--reviews",
            REVIEWS,
            "--lake",
            LAKE,
            "--env-file",
            &env_file.display().to_string(),
            "--scheduler-port",
            &port,
            "--poll-seconds",
            "0.1",
            "--core-nodes",
            "2",
        ]);
        self.start_nodes();
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
    let left = setup.harness.boto3(&format!("print(s3.list_objects_v2(Bucket='{BUCKET}', Prefix='ubm/0').get('KeyCount'))"));
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

#[test]
fn the_bootstrap_script_starts_a_scheduler_and_an_executor_that_form_a_cluster() {
    let root = tempfile::tempdir().expect("tempdir");
    let scheduler_port = free_port();
    let executor_port = loop {
        let port = free_port();
        if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break port;
        }
    };
    let mut services = Services(Vec::new());
    let material = root.path().join("tls");
    crate::common::ubm_ok(&["cluster", "certs", "--out", &material.display().to_string()]);
    let node_material = format!("{}/", material.join("node").display());
    for (node, is_master) in [("master", true), ("core", false)] {
        let dir = root.path().join(node);
        let info = dir.join("info");
        std::fs::create_dir_all(&info).expect("info dir");
        std::fs::write(info.join("instance.json"), format!(r#"{{"isMaster": {is_master}, "instanceGroupId": "ig-1"}}"#)).expect("instance.json");
        std::fs::write(info.join("job-flow.json"), r#"{"jobFlowId": "j-TEST", "masterPrivateDnsName": "localhost"}"#).expect("job-flow.json");
        let env_file = dir.join("ubm.env");
        std::fs::write(&env_file, format!("UBM_SCHEDULER=df://localhost:{scheduler_port}\n")).expect("env");
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/bootstrap.sh"))
            .args([env!("CARGO_BIN_EXE_ubm"), &env_file.display().to_string(), &scheduler_port.to_string(), &node_material])
            .env("UBM_EMR_INFO_DIR", &info)
            .env("UBM_INSTALL_DIR", dir.join("bin"))
            .env("UBM_ETC_DIR", dir.join("etc"))
            .env("UBM_WORK_DIR", dir.join("work"))
            .env("UBM_LOG_DIR", dir.join("log"))
            .env("UBM_EXTERNAL_HOST", "localhost")
            .env("UBM_EXECUTOR_PORT", executor_port.to_string())
            .env("UBM_SERVICE_MANAGER", "loop")
            .output()
            .expect("bash runs");
        let name = if is_master { "ubm-scheduler" } else { "ubm-executor" };
        services.0.push(dir.join("work").join(format!("{name}.pid")));
        assert!(out.status.success(), "bootstrap on the {node} node: {}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("started {name} (loop)")), "{}", text(&out.stdout));
        assert!(text(&out.stdout).contains("--tls"), "the node runs with TLS: {}", text(&out.stdout));
        let key = std::fs::metadata(dir.join("etc/tls/key.pem")).expect("the node's key is installed");
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
        wait_for_port(if is_master { scheduler_port } else { executor_port });
    }
    std::thread::sleep(Duration::from_secs(1)); // the executor registers right after it listens

    // ubm-step loads the node's environment file and TLS material: no --scheduler, no --tls.
    let step = root.path().join("master/bin/ubm-step");
    let sample = Sample::new("0.01");
    let lake = sample.lake("lake");
    let out = Command::new(&step)
        .args(["submit", "--date", "2011-12-09", "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake])
        .output()
        .expect("ubm-step runs");
    assert!(out.status.success(), "a run on the bootstrapped cluster: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("completed: ubm metric 2011-12-09"), "{}", text(&out.stderr));

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
