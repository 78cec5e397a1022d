//! On a local lake, the last check of a run's lease and the swap it guards happen under one
//! exclusive lock of the date (`flock(2)` on `<lake>/_leases/D.lock`), which a run taking the
//! date over holds too while it reads the lease and creates its generation. A run paused between
//! its check and its swap (a sleeping laptop, a frozen VM) then holds the lock: no other run can
//! take the date over until it has finished the swap, and once a takeover has happened, every
//! later check of the paused run fails. That closes the window the lease's check alone leaves
//! (see `crate::lease`). On an object store there is no such lock; there the window stays,
//! bounded by a sixth of the lease's life (`docs/lake.md`).
//!
//! The lock is advisory and of this host's kernel (a shared file system that supports `flock`,
//! such as NFS v4, extends it to its clients); every ubm process that runs a date takes it.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ubm_jobs::RunDate;

use super::Lake;
use crate::error::{PipelineError, Result};

/// How often a run waiting for the lock tries again.
const POLL: Duration = Duration::from_millis(20);

/// The date's commit lock, held until dropped (closing the file releases it).
#[derive(Debug)]
pub struct CommitLock {
    _file: Option<std::fs::File>,
}

impl CommitLock {
    /// Holds `date`'s commit lock of `lake`, waiting up to `limit` for another run to finish
    /// its commit or its takeover; `Ok(None)` when it did not come within `limit`. Nothing to
    /// hold on an object store: `Ok(Some)` at once.
    pub async fn acquire(lake: &Lake, date: RunDate, limit: Duration) -> Result<Option<CommitLock>> {
        let Some(path) = lake.local_file(&format!("_leases/{date}.lock"))? else { return Ok(Some(CommitLock { _file: None })) };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(PipelineError::io("creating", dir))?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(PipelineError::io("opening", &path))?;
        let deadline = Instant::now() + limit;
        loop {
            // SAFETY: the descriptor is open for the whole call (`file` outlives it).
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(CommitLock { _file: Some(file) }));
            }
            let error = std::io::Error::last_os_error();
            if unsupported(&error) {
                // A file system without flock (NFS without its lock service, some FUSE mounts):
                // the lake then has what an object store has, the lease alone.
                tracing::warn!("{} cannot be locked ({error}); commits of {date} go without the commit lock", path.display());
                return Ok(Some(CommitLock { _file: None }));
            }
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(PipelineError::io("locking", &path)(error));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether `error` says the file system has no `flock`.
fn unsupported(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)) || error.kind() == std::io::ErrorKind::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_next_gets_it_once_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let date: RunDate = "2011-12-31".parse().expect("date");
        let first = CommitLock::acquire(&lake, date, Duration::ZERO).await.expect("lock").expect("free");
        let second = CommitLock::acquire(&lake, date, Duration::from_millis(100)).await.expect("lock");
        assert!(second.is_none(), "held by the first");
        drop(first);
        assert!(CommitLock::acquire(&lake, date, Duration::ZERO).await.expect("lock").is_some(), "free again");
    }
}
