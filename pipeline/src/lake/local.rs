//! The local file system's side of the lake: a partition swapped in with one
//! `renameat2(RENAME_EXCHANGE)`, and staging removed on a blocking thread.

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;

use object_store::path::Path;

use crate::error::{PipelineError, Result};

/// Removes a local directory and its contents, then its parents while they are empty; returns
/// how many files it held (a missing directory held none).
pub(super) fn remove_local_dir(dir: &FsPath) -> Result<usize> {
    let files = match std::fs::read_dir(dir) {
        Ok(entries) => entries.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(PipelineError::io("listing", dir)(e)),
    };
    std::fs::remove_dir_all(dir).map_err(PipelineError::io("removing", dir))?;
    remove_empty_parents(dir);
    Ok(files)
}

/// The last segment of a staging directory's path (the run id).
pub(super) fn run_id_dir_name(path: &Path) -> String {
    path.filename().map(str::to_string).unwrap_or_default()
}

/// Removes every directory in `dir` but `keep` (a missing `dir` has nothing to remove).
pub(super) fn remove_local_except(dir: &FsPath, keep: String) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(PipelineError::io("listing", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(PipelineError::io("listing", dir))?;
        if entry.file_name().to_string_lossy() != keep {
            std::fs::remove_dir_all(entry.path()).map_err(PipelineError::io("removing dead staging", &entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Copies a local file into a local lake, on a blocking thread.
pub(super) async fn copy_local(from: PathBuf, to: PathBuf) -> Result<u64> {
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(PipelineError::io("creating", dir))?;
        }
        std::fs::copy(&from, &to).map_err(PipelineError::io("copying into the lake", &from))
    })
    .await
    .map_err(|e| PipelineError::Stopped { what: "the copy into the lake", source: Some(e) })?
}

/// The local commit: the staged directory replaces the partition in one rename. The old
/// partition, if any, is left under the staging name for [`remove_swapped_out`].
pub(super) fn swap_local(staging: &FsPath, target: &FsPath) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(PipelineError::io("creating", parent))?;
    }
    if target.exists() {
        exchange_dirs(staging, target)
    } else {
        std::fs::rename(staging, target).map_err(PipelineError::io("moving a staged partition to", target))
    }
}

/// Removes what a swap left under the staging name (the old partition) and the staging
/// directories above it once empty. Outside the commit lock: nothing reads it any more.
pub(super) fn remove_swapped_out(staging: &FsPath) -> Result<()> {
    match std::fs::remove_dir_all(staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PipelineError::io("removing the old partition", staging)(e)),
    }
    remove_empty_parents(staging);
    Ok(())
}

/// Removes the run's and the date's staging directories above `staging` once they are empty
/// (`_staging/D/RUN/ID/`): a directory still in use is not empty, and stays.
fn remove_empty_parents(staging: &FsPath) {
    for parent in staging.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
    }
}

/// Swaps two directories in one step (Linux `renameat2` with `RENAME_EXCHANGE`).
fn exchange_dirs(a: &FsPath, b: &FsPath) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = |p: &FsPath| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| PipelineError::BadInput { what: p.display().to_string(), reason: "a path with a NUL byte".to_string() })
    };
    let (a_c, b_c) = (c_path(a)?, c_path(b)?);
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a_c.as_ptr(), libc::AT_FDCWD, b_c.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 {
        return Err(PipelineError::io("swapping a staged partition with", b)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The local staging directories of this process's runs (`_staging/D/RUN/`), removed once more
/// when the process ends (see [`sweep_run_staging`]).
static RUN_STAGING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Notes a run's local staging directory for [`sweep_run_staging`].
pub(super) fn remember_run_staging(dir: PathBuf) {
    RUN_STAGING.lock().unwrap_or_else(|p| p.into_inner()).insert(dir);
}

/// Removes what is left in the staging directories of this process's runs; returns how many
/// files that was. For the end of the process, once its runtime has stopped: a run stopped by a
/// signal drops its writes, but a task's file write already under way on a blocking thread may
/// land after the drop removed the staging; only when every such thread has finished is the
/// removal final. A run that finished normally left nothing there, so this removes nothing.
pub fn sweep_run_staging() -> usize {
    let dirs = std::mem::take(&mut *RUN_STAGING.lock().unwrap_or_else(|p| p.into_inner()));
    dirs.iter().map(|dir| remove_local_dir(dir).unwrap_or(0)).sum()
}
