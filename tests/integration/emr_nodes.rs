//! EMR nodes as close as this machine allows: a master and a core node, each in a network
//! namespace of its own (`ip netns`), joined by a veth pair as nodes are by a VPC's subnet, each
//! resolving the other by the names a VPC's DNS would give (`/etc/netns/NAME/hosts`, which
//! `ip netns exec` puts in place of `/etc/hosts`), and each set up by `deploy/bootstrap.sh` as
//! EMR runs it. Addresses, ports and names then differ between nodes as on EMR: a port that is
//! not open, an address a node advertises that the other cannot reach, or a name the node
//! certificates do not carry fails here as it would there.
//!
//! The VPC here has a DNS of its own (`corp.test`), not Amazon's `*.ec2.internal`: with
//! `--tls-hosts '*.corp.test'` the cluster runs a day; with Amazon's default names it cannot
//! form, and the executor says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Sample, missing, text, ubm_ok};

const SCHEDULER_PORT: u16 = 50050;
const EXECUTOR_PORT: u16 = 50051;
const DATE: &str = "2011-12-09";

/// One node: its namespace, its address and DNS name, and its folders.
struct Node {
    namespace: String,
    name: String,
    dir: PathBuf,
}

/// Two namespaces joined by a veth pair, removed (with every process in them) when dropped.
struct Subnet {
    master: Node,
    core: Node,
}

impl Subnet {
    /// `None` (after saying why) when this machine cannot make network namespaces.
    fn make(root: &Path) -> Option<Subnet> {
        let probe = Command::new("ip").args(["netns", "list"]).output();
        if !probe.is_ok_and(|o| o.status.success()) || !Command::new("id").arg("-u").output().is_ok_and(|o| text(&o.stdout).trim() == "0") {
            missing("network namespaces (`ip netns`, as root; iproute2)");
            return None;
        }
        let tag = format!(
            "{}{}",
            std::process::id(),
            root.file_name().map(|n| n.to_string_lossy().chars().rev().take(4).collect::<String>()).unwrap_or_default()
        );
        let subnet = format!("10.{}.{}", 100 + std::process::id() % 100, std::process::id() % 250);
        let node = |role: &str, last: u8| Node {
            namespace: format!("ubm-{role}-{tag}"),
            name: format!("ip-{}-{last}.corp.test", subnet.replace('.', "-")),
            dir: root.join(role),
        };
        let made = Subnet { master: node("m", 1), core: node("c", 2) };
        let hosts = format!("127.0.0.1 localhost\n{subnet}.1 {}\n{subnet}.2 {}\n", made.master.name, made.core.name);
        let (veth_m, veth_c) = (format!("vm{tag}"), format!("vc{tag}"));
        let veth_m = &veth_m[..veth_m.len().min(15)];
        let veth_c = &veth_c[..veth_c.len().min(15)];
        for (node, veth, last) in [(&made.master, veth_m, 1), (&made.core, veth_c, 2)] {
            std::fs::create_dir_all(format!("/etc/netns/{}", node.namespace)).expect("/etc/netns");
            std::fs::write(format!("/etc/netns/{}/hosts", node.namespace), &hosts).expect("hosts");
            ip(&["netns", "add", &node.namespace]);
            if last == 1 {
                ip(&["link", "add", veth_m, "type", "veth", "peer", "name", veth_c]);
            }
            ip(&["link", "set", veth, "netns", &node.namespace]);
            let inside = |args: &[&str]| ip(&[&["-n", &node.namespace][..], args].concat());
            inside(&["addr", "add", &format!("{subnet}.{last}/24"), "dev", veth]);
            inside(&["link", "set", veth, "up"]);
            inside(&["link", "set", "lo", "up"]);
        }
        Some(made)
    }
}

impl Drop for Subnet {
    fn drop(&mut self) {
        for node in [&self.master, &self.core] {
            // Every process in the namespace (the services and their restart loops) goes first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &node.namespace]).output() {
                for pid in text(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &node.namespace]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", node.namespace));
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), text(&out.stderr));
}

/// `bootstrap.sh` on `node`, in its namespace, as EMR runs it there.
fn bootstrap(node: &Node, master: &Node, is_master: bool, env_file: &Path, tls: &Path) -> Output {
    let info = node.dir.join("info");
    std::fs::create_dir_all(&info).expect("info");
    std::fs::write(info.join("instance.json"), format!(r#"{{"isMaster": {is_master}}}"#)).expect("instance.json");
    std::fs::write(info.join("job-flow.json"), format!(r#"{{"masterPrivateDnsName": "{}"}}"#, master.name)).expect("job-flow.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/bootstrap.sh");
    Command::new("ip")
        .args(["netns", "exec", &node.namespace, "bash"])
        .arg(script)
        .args([env!("CARGO_BIN_EXE_ubm"), env_file.to_str().expect("utf-8"), &SCHEDULER_PORT.to_string(), &format!("{}/", tls.display())])
        .env("UBM_EMR_INFO_DIR", &info)
        .env("UBM_INSTALL_DIR", node.dir.join("bin"))
        .env("UBM_ETC_DIR", node.dir.join("etc"))
        .env("UBM_WORK_DIR", node.dir.join("work"))
        .env("UBM_LOG_DIR", node.dir.join("log"))
        .env("UBM_EXTERNAL_HOST", &node.name)
        .env("UBM_EXECUTOR_PORT", EXECUTOR_PORT.to_string())
        .env("UBM_SERVICE_MANAGER", "loop")
        .env("UBM_BUSY_FILE", node.dir.join("isbusy"))
        .env("UBM_BOOTSTRAP_WAIT_SECONDS", "20")
        .output()
        .expect("bootstrap runs")
}

/// The cluster's node material for certificates naming `hosts`.
fn node_material(root: &Path, hosts: &str) -> PathBuf {
    let out = root.join(format!("tls-{}", hosts.replace(['*', ','], "_")));
    ubm_ok(&["cluster", "certs", "--out", out.to_str().expect("utf-8"), "--hosts", hosts]);
    out.join("node")
}

/// Both nodes bootstrapped with the node material for `hosts`: the subnet, the master's step
/// command, and the core node's bootstrap.
fn two_nodes(root: &Path, sample: &Sample, hosts: &str) -> Option<(Subnet, PathBuf, Output)> {
    let subnet = Subnet::make(root)?;
    let tls = node_material(root, hosts);
    let mut core_bootstrap = None;
    for (node, is_master) in [(&subnet.master, true), (&subnet.core, false)] {
        std::fs::create_dir_all(&node.dir).expect("node dir");
        let env_file = node.dir.join("ubm.env");
        std::fs::write(&env_file, format!("UBM_OLTP={}\nUBM_SCHEDULER=df://localhost:{SCHEDULER_PORT}\n", sample.sqlite())).expect("env file");
        let out = bootstrap(node, &subnet.master, is_master, &env_file, &tls);
        if is_master {
            assert!(out.status.success(), "bootstrap of {}: {}{}", node.name, text(&out.stdout), text(&out.stderr));
        } else {
            core_bootstrap = Some(out);
        }
    }
    let step = subnet.master.dir.join("bin/ubm-step");
    Some((subnet, step, core_bootstrap.expect("the core node was bootstrapped")))
}

/// `ubm-step ARGS` on the master node, as an EMR step runs it.
fn step_on_master(subnet: &Subnet, step: &Path, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", &subnet.master.namespace]).arg(step).args(args).stdin(Stdio::null()).output().expect("step runs")
}

/// The executors the master's scheduler knows, as `ubm status --executors --json` lists them.
fn executors_registered(subnet: &Subnet, step: &Path) -> Vec<serde_json::Value> {
    let out = step_on_master(subnet, step, &["status", "--executors", "--json"]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
}

#[test]
fn nodes_in_a_vpc_with_its_own_dns_run_a_day_when_the_certificates_carry_its_names() {
    let root = tempfile::tempdir().expect("tempdir");
    let sample = Sample::new("0.01");
    let Some((subnet, step, core)) = two_nodes(root.path(), &sample, "*.corp.test") else { return };
    assert!(core.status.success(), "bootstrap of the core node: {}{}", text(&core.stdout), text(&core.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    let executors = loop {
        let executors = executors_registered(&subnet, &step);
        if !executors.is_empty() {
            break executors;
        }
        assert!(Instant::now() < deadline, "the core node's executor never registered with the master's scheduler");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(executors[0].to_string().contains(&subnet.core.name), "the executor is known by its DNS name: {executors:?}");
    let lake = sample.lake("lake");
    let out = step_on_master(&subnet, &step, &["submit", "--date", DATE, "--reviews", &sample.reviews(), "--lake", &lake]);
    assert!(out.status.success(), "a step on the master node: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("completed: ubm metric {DATE}")), "{}", text(&out.stderr));
}

#[test]
fn certificates_for_amazons_names_do_not_form_a_cluster_in_a_vpc_with_its_own_dns() {
    let root = tempfile::tempdir().expect("tempdir");
    let sample = Sample::new("0.01");
    // What `ubm deploy up` makes without --tls-hosts (in us-east-1).
    let Some((subnet, step, core)) = two_nodes(root.path(), &sample, "*.ec2.internal") else { return };
    // The core node either fails its bootstrap (EMR then fails the cluster) or its executor
    // keeps saying why it cannot join; either way the reason is the certificate.
    let log = subnet.core.dir.join("log/ubm-executor.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let said = loop {
        let said = format!("{}{}", text(&core.stderr), std::fs::read_to_string(&log).unwrap_or_default());
        if said.to_lowercase().contains("certificate") {
            break said;
        }
        assert!(Instant::now() < deadline, "the core node never said why it cannot reach the scheduler:\n{said}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(said.contains(&subnet.master.name), "the reason names the scheduler it could not verify:\n{said}");
    assert!(executors_registered(&subnet, &step).is_empty(), "no executor joined");
}
