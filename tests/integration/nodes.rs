//! A scheduler or executor that cannot do its job says so at start-up, naming the port or the
//! directory, and exits non-zero: it never registers to fail every task, nor says "listening"
//! before it listens.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::{Cluster, free_port, text, ubm};

/// Runs `ubm` with `args`, which must end on its own within 30 s; returns its exit and output.
fn ends_on_its_own(args: &[&str]) -> (std::process::ExitStatus, String) {
    let clock = Instant::now();
    let mut child = ubm().args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("ubm starts");
    while child.try_wait().expect("wait").is_none() {
        if clock.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("`ubm {}` did not end within 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out.status, format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn an_executor_whose_port_is_taken_exits_non_zero_naming_it() {
    let cluster = Cluster::start(0);
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let (status, said) = ends_on_its_own(&["cluster", "executor", "--scheduler", &cluster.engine, "--bind", &address]);
    assert!(!status.success(), "{said}");
    assert!(said.contains(&address) && said.contains("Flight port") && said.contains("another process listens"), "{said}");
}

#[test]
fn an_executor_whose_work_dir_cannot_be_made_or_written_exits_non_zero_naming_it() {
    let cluster = Cluster::start(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let under_a_file = file.join("work").display().to_string();
    // /proc accepts no new directory, whoever asks (root included).
    let unwritable = "/proc/self/ubm-work".to_string();
    for work_dir in [under_a_file, unwritable] {
        let bind = format!("127.0.0.1:{}", free_port());
        let (status, said) = ends_on_its_own(&["cluster", "executor", "--scheduler", &cluster.engine, "--bind", &bind, "--work-dir", &work_dir]);
        assert!(!status.success(), "{work_dir}: {said}");
        assert!(said.contains(&work_dir) && said.contains("--work-dir cannot be used"), "{work_dir}: {said}");
    }
    let executors = text(&ubm().args(["status", "--scheduler", &cluster.engine, "--executors"]).output().expect("status").stdout);
    assert!(executors.contains("no executors registered"), "none of them registered:\n{executors}");
}

#[test]
fn a_scheduler_whose_port_is_taken_exits_non_zero_and_never_says_listening() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let (status, said) = ends_on_its_own(&["cluster", "scheduler", "--bind", &address]);
    assert!(!status.success(), "{said}");
    assert!(said.contains(&address) && said.contains("another process listens"), "{said}");
    assert!(!said.contains("listening on"), "{said}");
}
