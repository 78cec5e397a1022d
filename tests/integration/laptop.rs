//! A laptop outside the cluster's network: the scheduler and its executors in a network
//! namespace of their own (`unshare -n`), only the scheduler's port forwarded out (socat over a
//! Unix socket), Postgres forwarded in the same way, the lake a shared directory. This is the
//! shape of an EMR cluster reached through `ssh -L 50050:localhost:50050`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Sample, TestDb, free_port, lake_tables, missing, text, ubm, ubm_ok, wait_until};

const DATE: &str = "2011-12-09";
/// The scheduler's port inside the namespace (the namespace's ports are its own).
const INSIDE_PORT: u16 = 50050;
/// The executors' address: one that exists only inside the namespace, so that nothing outside
/// can answer there whatever ports this machine has open.
const EXECUTOR_HOST: &str = "10.254.0.1";
/// Postgres as only the cluster's namespace sees it: nothing listens on this port outside.
const INSIDE_ONLY_POSTGRES_PORT: u16 = 55432;

/// A cluster in a network namespace of its own; `engine` is its scheduler as seen from outside.
struct IsolatedCluster {
    namespace: Child,
    forwarders: Vec<Child>,
    _sockets: tempfile::TempDir,
    engine: String,
}

impl IsolatedCluster {
    /// `None` (after saying why) when this machine cannot make namespaces or has no socat.
    fn start(executors: usize, scheduler_flags: &str) -> Option<IsolatedCluster> {
        for (tool, probe) in [("socat", vec!["-V"]), ("unshare", vec!["-n", "true"])] {
            if !Command::new(tool).args(&probe).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
                missing(&format!("`{tool}` cannot run here (a network namespace needs root and util-linux; socat is Debian's package)"));
                return None;
            }
        }
        let postgres = url::Url::parse(&crate::common::TestDb::admin()).expect("the test database's URL");
        let (pg_host, pg_port) = (postgres.host_str().unwrap_or_default().to_string(), postgres.port().unwrap_or(5432));
        if !matches!(pg_host.as_str(), "127.0.0.1" | "localhost") {
            missing(&format!("the laptop tests forward Postgres at 127.0.0.1 into the namespace, and UBM_TEST_POSTGRES names {pg_host}"));
            return None;
        }
        let sockets = tempfile::tempdir().expect("tempdir");
        let (scheduler_socket, postgres_socket) = (sockets.path().join("scheduler.sock"), sockets.path().join("postgres.sock"));
        let outside_port = free_port();
        let socat = |args: &[String]| spawn_group(Command::new("socat").args(args));
        // Postgres into the namespace, the scheduler's port out of it.
        let mut forwarders = vec![socat(&[format!("UNIX-LISTEN:{},fork", postgres_socket.display()), format!("TCP:127.0.0.1:{pg_port}")])];
        let ubm_exe = env!("CARGO_BIN_EXE_ubm");
        let mut script = format!(
            "set -e; ip link set lo up; ip addr add {EXECUTOR_HOST}/32 dev lo; \
             socat TCP-LISTEN:{pg_port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{pg} & \
             socat TCP-LISTEN:{INSIDE_ONLY_POSTGRES_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{pg} & \
             socat UNIX-LISTEN:{sched},fork TCP:127.0.0.1:{INSIDE_PORT} & \
             {ubm_exe} cluster scheduler --bind 127.0.0.1:{INSIDE_PORT} --state-dir {runs} {scheduler_flags} & \
             for i in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/{INSIDE_PORT}) 2>/dev/null && break; sleep 0.05; done; ",
            pg = postgres_socket.display(),
            sched = scheduler_socket.display(),
            runs = sockets.path().join("runs").display(),
        );
        for i in 0..executors {
            let port = 50060 + 10 * i;
            script += &format!(
                "{ubm_exe} cluster executor --scheduler 127.0.0.1:{INSIDE_PORT} --bind {EXECUTOR_HOST}:{port} --external-host {EXECUTOR_HOST} --insecure --slots 1 & "
            );
        }
        script += "wait";
        let namespace = spawn_group(Command::new("unshare").args(["-n", "bash", "-c", &script]));
        wait_until("the scheduler's socket", Duration::from_secs(30), || scheduler_socket.exists());
        forwarders.push(socat(&[
            format!("TCP-LISTEN:{outside_port},bind=127.0.0.1,fork,reuseaddr"),
            format!("UNIX-CONNECT:{}", scheduler_socket.display()),
        ]));
        let cluster = IsolatedCluster { namespace, forwarders, _sockets: sockets, engine: format!("df://127.0.0.1:{outside_port}") };
        wait_until(&format!("{executors} executors registered through the forwarded port"), Duration::from_secs(60), || {
            let out = ubm().args(["status", "--scheduler", &cluster.engine, "--executors", "--json"]).output().expect("status");
            out.status.success() && serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).is_ok_and(|e| e.len() == executors)
        });
        Some(cluster)
    }
}

/// A child in a process group of its own, so that its whole tree can be stopped at once.
fn spawn_group(command: &mut Command) -> Child {
    command.stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().expect("starts")
}

impl Drop for IsolatedCluster {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.namespace).chain(self.forwarders.iter_mut()) {
            // SAFETY: kill(2) with a negative pid signals the child's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// Sample data with its purchases in a Postgres database of its own.
fn sample_in_postgres() -> Option<(Sample, TestDb)> {
    let db = TestDb::create()?;
    let sample = Sample::new("0.01");
    ubm_ok(&["datagen", "--scale", "0.01", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    Some((sample, db))
}

#[test]
fn a_laptop_outside_the_clusters_network_submits_through_the_schedulers_one_port() {
    let Some((sample, db)) = sample_in_postgres() else { return };
    let Some(cluster) = IsolatedCluster::start(2, "") else { return };
    let executor: std::net::SocketAddr = format!("{EXECUTOR_HOST}:50060").parse().expect("address");
    assert!(std::net::TcpStream::connect_timeout(&executor, Duration::from_secs(1)).is_err(), "an executor's port is not reachable from outside");
    let lake = sample.lake("lake");
    let out = ubm()
        .args(["submit", "--scheduler", &cluster.engine, "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &lake])
        .output()
        .expect("submit");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let local = sample.lake("local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &local]);
    assert_eq!(lake_tables(&lake, DATE), lake_tables(&local, DATE), "the cluster's day equals the in-process day");
}

#[test]
fn results_the_laptop_cannot_reach_are_named_as_unreachable_not_as_a_dead_executor() {
    let Some((sample, db)) = sample_in_postgres() else { return };
    let Some(cluster) = IsolatedCluster::start(1, "--no-flight-proxy") else { return };
    let lake = sample.lake("lake");
    let out = ubm()
        .args(["submit", "--scheduler", &cluster.engine, "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &lake])
        .args(["--attempts", "1"])
        .output()
        .expect("submit");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&format!("this machine cannot reach {EXECUTOR_HOST}:50060")), "{said}");
    assert!(!said.contains("stopped answering"), "{said}");
    assert!(Path::new(&lake).join("_runs").exists(), "the run reported its failure");
}

/// Cluster deploy mode through the same one port, with Postgres reachable only from inside the
/// cluster's namespace: the submitter returns in under 2 s having received under 256 KB (its
/// socket reads, counted with strace), the driver on the cluster runs the SF 1 day, and the
/// tables equal an in-process run's. A second run is followed with `--follow`, whose process
/// is killed (SIGKILL) mid-run: that day completes all the same.
#[test]
fn a_laptop_hands_the_run_to_the_cluster_and_may_go_away() {
    if Command::new("strace").arg("-V").output().is_err() {
        return missing("strace is not installed (apt-get install strace)");
    }
    let Some(db) = TestDb::create() else { return };
    let sample = Sample::new("1");
    ubm_ok(&["datagen", "--scale", "1", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &db.url()]);
    let Some(cluster) = IsolatedCluster::start(2, "") else { return };
    let inside_only = std::net::SocketAddr::from(([127, 0, 0, 1], INSIDE_ONLY_POSTGRES_PORT));
    assert!(std::net::TcpStream::connect_timeout(&inside_only, Duration::from_secs(1)).is_err(), "this Postgres port is the cluster's only");
    let mut oltp = url::Url::parse(&db.url()).expect("the test database's URL");
    oltp.set_port(Some(INSIDE_ONLY_POSTGRES_PORT)).expect("a port");
    let submit = |lake: &str| {
        let mut command = ubm();
        command.args(["submit", "--deploy-mode", "cluster", "--scheduler", &cluster.engine, "--date", DATE]);
        command.args(["--reviews", &sample.reviews(), "--oltp", oltp.as_str(), "--lake", lake]);
        command
    };

    let (lake, trace) = (sample.lake("lake"), sample.lake("submit.strace"));
    let started = std::time::Instant::now();
    let out = Command::new("strace")
        .args(crate::object_store::strace_socket_reads(Path::new(&trace)))
        .arg(env!("CARGO_BIN_EXE_ubm"))
        .args(submit(&lake).get_args())
        .output()
        .expect("submit");
    let took = started.elapsed();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert!(took < Duration::from_secs(2), "the submitter returned after {took:?}");
    let received = crate::object_store::socket_bytes_received(Path::new(&trace));
    assert!(received < 256 * 1024, "the submitter received {received} bytes");
    eprintln!("cluster mode, SF 1: the submitter returned in {:.3} s (under strace) having received {received} bytes", took.as_secs_f64());

    let followed_lake = sample.lake("followed");
    let mut follower = submit(&followed_lake).arg("--follow").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("follow");
    wait_until("a job of the followed run", Duration::from_secs(60), || {
        std::fs::read_dir(Path::new(&followed_lake).join("_leases")).is_ok_and(|mut d| d.next().is_some())
    });
    follower.kill().expect("kill the follower");
    follower.wait().expect("reap the follower");

    let local = sample.lake("local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &db.url(), "--lake", &local, "--no-report"]);
    for (lake, what) in [(&lake, "the returned submitter's run"), (&followed_lake, "the killed follower's run")] {
        wait_until(&format!("{what} ends"), Duration::from_secs(300), || {
            ubm().args(["status", "--lake", lake, "--date", DATE]).output().is_ok_and(|o| text(&o.stdout).contains("complete"))
        });
        assert_eq!(lake_tables(lake, DATE), lake_tables(&local, DATE), "{what} equals the in-process day");
    }
    let shown = ubm().args(["status", &id, "--scheduler", &cluster.engine]).output().expect("status");
    assert!(text(&shown.stdout).contains("succeeded"), "{}", text(&shown.stdout));
}

/// On a cluster with a local lake, classify reads the vendor's file where it is, beside ingest's
/// copy. Executors that cannot see that file (here: a mount namespace with an empty file system
/// over the vendor's folder, as executors on other machines sharing only the lake would be)
/// make classify read the raw copy instead: the day completes, equal to in-process.
#[test]
fn executors_that_cannot_see_the_vendor_file_classify_the_raw_copy() {
    if !Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success()) {
        return missing("`unshare -m` cannot run here (a mount namespace needs root and util-linux)");
    }
    let sample = Sample::new("0.01");
    let vendor = sample.dir.path().join("vendor");
    std::fs::create_dir_all(&vendor).expect("vendor folder");
    let reviews = vendor.join("movie_review.csv");
    std::fs::copy(sample.reviews(), &reviews).expect("the vendor's file");
    let reviews = reviews.display().to_string();
    let port = free_port();
    let mut scheduler = spawn_group(Command::new(env!("CARGO_BIN_EXE_ubm")).args(["cluster", "scheduler", "--bind", &format!("127.0.0.1:{port}")]));
    crate::common::wait_for_port(port);
    let executor = format!(
        "mount -t tmpfs none {} && exec {} cluster executor --scheduler 127.0.0.1:{port} --bind 127.0.0.1:{} --slots 2",
        vendor.display(),
        env!("CARGO_BIN_EXE_ubm"),
        free_port()
    );
    let mut executor = spawn_group(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &executor]));
    let engine = format!("df://127.0.0.1:{port}");
    wait_until("the executor registered", Duration::from_secs(30), || {
        let out = ubm().args(["status", "--scheduler", &engine, "--executors", "--json"]).output().expect("status");
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).is_ok_and(|e| e.len() == 1)
    });
    let lake = sample.lake("lake");
    let out = ubm()
        .args(["run", "--engine", &engine, "--date", DATE, "--reviews", &reviews, "--oltp", &sample.sqlite(), "--lake", &lake, "--attempts", "1"])
        .output()
        .expect("run");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for child in [&mut scheduler, &mut executor] {
        // SAFETY: kill(2) with a negative pid signals the child's own process group.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }
    assert!(out.status.success(), "{said}");
    assert!(said.contains("reads the raw copy instead"), "{said}");
    let local = sample.lake("local");
    ubm_ok(&["run", "--date", DATE, "--reviews", &reviews, "--oltp", &sample.sqlite(), "--lake", &local, "--no-report"]);
    assert_eq!(lake_tables(&lake, DATE), lake_tables(&local, DATE), "the day equals the in-process day");
}
