//! A scheduler and executors as child processes of this one, for development and tests
//! (`ubm cluster local`): started on consecutive loopback ports, stopped together.

use std::path::Path;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::ClusterError;

/// The processes of a local cluster. Dropping it kills them; the kernel sends them SIGTERM if
/// this process dies without dropping it (`kill -9`), so no orphan keeps the ports.
pub struct LocalCluster {
    children: Vec<Child>,
    /// `127.0.0.1:PORT` of the scheduler.
    pub scheduler: String,
}

impl LocalCluster {
    /// Checks that `port` and the two ports after it for each executor are free, then starts
    /// `exe cluster scheduler` on `port` and `executors` × `exe cluster executor` after it.
    /// With `tls`, every process gets `--tls tls` (node material); with `pull`, `--pull`.
    pub async fn start(exe: &Path, port: u16, executors: u16, tls: Option<&Path>, pull: bool) -> Result<LocalCluster, ClusterError> {
        let last = u32::from(port) + 2 * u32::from(executors);
        let bad = |reason: String| ClusterError::BadLocation { location: format!("127.0.0.1:{port}"), reason };
        if last >= u32::from(u16::MAX) {
            return Err(bad(format!("leaves no room for {executors} executors (two ports each)")));
        }
        let ports: Vec<u16> = (port..=last as u16).collect();
        for p in &ports {
            if let Err(e) = tokio::net::TcpListener::bind(("127.0.0.1", *p)).await {
                return Err(bad(format!(
                    "port {p} on 127.0.0.1 is not free ({e}): is another cluster running? Pick others with --port (this cluster needs {port}-{last})"
                )));
            }
        }
        let scheduler = format!("127.0.0.1:{port}");
        let failed = |what: String| move |e: std::io::Error| bad(format!("starting {what}: {e}"));
        let mut node_flags: Vec<String> = tls.map(|dir| vec!["--tls".to_string(), dir.display().to_string()]).unwrap_or_default();
        if pull {
            node_flags.push("--pull".to_string());
        }
        let with_node_flags = |args: &[&str]| args.iter().map(|a| a.to_string()).chain(node_flags.iter().cloned()).collect::<Vec<String>>();
        let mut children =
            vec![child(exe, &with_node_flags(&["cluster", "scheduler", "--bind", &scheduler])).map_err(failed("the scheduler".into()))?];
        wait_for_port(&scheduler).await.map_err(bad)?;
        for (i, p) in ports[1..].iter().step_by(2).enumerate() {
            let bind = format!("127.0.0.1:{p}");
            let started = child(exe, &with_node_flags(&["cluster", "executor", "--scheduler", &scheduler, "--bind", &bind]));
            children.push(started.map_err(failed(format!("executor {}", i + 1)))?);
        }
        Ok(LocalCluster { children, scheduler })
    }

    /// Waits until one of the processes exits; returns which (0 is the scheduler) and how.
    pub async fn first_exit(&mut self) -> (usize, std::io::Result<std::process::ExitStatus>) {
        let (status, index, _) = futures::future::select_all(self.children.iter_mut().map(|c| Box::pin(c.wait()))).await;
        (index, status)
    }
}

/// A child that is killed when dropped, and sent SIGTERM by the kernel if this process dies.
fn child(exe: &Path, args: &[String]) -> std::io::Result<Child> {
    let mut command = Command::new(exe);
    command.args(args).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches nothing of this process's memory.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

async fn wait_for_port(address: &str) -> Result<(), String> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("nothing listens on {address} after 10 s"))
}
