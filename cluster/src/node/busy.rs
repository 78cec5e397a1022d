//! A file the scheduler touches while it works, for whoever decides that a node is idle.
//!
//! EMR's auto-termination ends a cluster that has been idle for its idle timeout, and it counts
//! YARN applications and steps, not Ballista jobs: a run driven from a laptop (client deploy
//! mode) or by a cluster-mode driver runs no step, so the cluster would look idle and could be
//! ended mid-run. EMR documents a marker for work it cannot see: touching
//! `/emr/metricscollector/isbusy` on the primary node tells it the cluster is busy. The
//! scheduler touches the file it is given (`ubm cluster scheduler --busy-file`, which the EMR
//! bootstrap sets) every [`TOUCH_EVERY`] while a job is pending or running, or while `also_busy`
//! says so (a cluster-mode run between its jobs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the scheduler looks at its jobs, and touches the file if there are some.
pub const TOUCH_EVERY: Duration = Duration::from_secs(15);

/// The file, and what else makes the scheduler busy.
#[derive(Clone)]
pub struct BusyMarker {
    pub path: PathBuf,
    pub also_busy: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for BusyMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusyMarker").field("path", &self.path).finish_non_exhaustive()
    }
}

impl BusyMarker {
    /// Touches the file every [`TOUCH_EVERY`] while `jobs()` (pending and running jobs) is not
    /// zero or `also_busy` holds; runs until the process ends.
    pub async fn keep_touching(self, jobs: impl Fn() -> usize) {
        let mut warned = false;
        loop {
            match self.touch_if_busy(jobs()) {
                Err(e) if !warned => {
                    tracing::warn!("cannot touch the busy marker {}: {e} (an idle-timeout may end the cluster mid-run)", self.path.display());
                    warned = true;
                }
                Err(_) => {}
                Ok(_) => warned = false,
            }
            tokio::time::sleep(TOUCH_EVERY).await;
        }
    }

    /// Touches the file when `jobs` is not zero or `also_busy` holds; says whether it did.
    pub fn touch_if_busy(&self, jobs: usize) -> std::io::Result<bool> {
        if jobs == 0 && !(self.also_busy)() {
            return Ok(false);
        }
        touch(&self.path).map(|()| true)
    }
}

/// Creates the file if it is missing and sets its modification time to now.
pub fn touch(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.set_modified(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_touched_only_while_there_is_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("isbusy");
        let run_under_way = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&run_under_way);
        let marker = BusyMarker { path: path.clone(), also_busy: Arc::new(move || seen.load(std::sync::atomic::Ordering::SeqCst)) };
        assert!(!marker.touch_if_busy(0).expect("no work"));
        assert!(!path.exists(), "no job, no marker");
        assert!(marker.touch_if_busy(2).expect("two jobs"));
        let first = std::fs::metadata(&path).and_then(|m| m.modified()).expect("the marker exists");
        std::thread::sleep(Duration::from_millis(20));
        run_under_way.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(marker.touch_if_busy(0).expect("a cluster-mode run between its jobs"));
        let second = std::fs::metadata(&path).and_then(|m| m.modified()).expect("the marker exists");
        assert!(second > first, "touched again: {first:?} then {second:?}");
    }
}
