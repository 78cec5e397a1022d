//! The lake: Hive-style partitions under a local directory or `s3://bucket/prefix`.
//!
//! ```text
//! <lake>/raw/movie_review/insert_date=D/movie_review.csv
//! <lake>/stage/user_purchase/insert_date=D/part-00000.parquet
//! <lake>/stage/movie_review/insert_date=D/part-00000.parquet …
//! <lake>/warehouse/user_behavior_metric/insert_date=D/part-00000.parquet …
//! <lake>/rejects/movie_review/insert_date=D/rejects-00000.jsonl …
//! <lake>/_runs/D.json
//! ```
//! A partition is written into a staging area first and then replaces the old one whole, with
//! an empty `_SUCCESS` in it. On a local lake the swap is one `renameat2(RENAME_EXCHANGE)`, so
//! a reader sees the old partition or the new one, never a mix, and a crash leaves the old one
//! in place. Object stores have no rename: there the new files are copied in under the
//! partition, then the old files are deleted, then `_SUCCESS` is written; a reader listing
//! during those few requests can see both sets (documented in the README).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use ubm_cluster::parts::parquet_properties;
use ubm_cluster::stores::{location_url, object_store_for};
use serde::{Deserialize, Serialize};
use ubm_jobs::RunDate;
use url::Url;

use crate::error::{PipelineError, Result};

/// A table of the lake, as `zone/name` relative to the lake's root (`""` is the root itself,
/// for `ubm classify --output DIR`, which writes `DIR/insert_date=D/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table(pub &'static str);

impl Table {
    pub const RAW_REVIEWS: Table = Table("raw/movie_review");
    pub const STAGE_PURCHASES: Table = Table("stage/user_purchase");
    pub const STAGE_REVIEWS: Table = Table("stage/movie_review");
    pub const METRIC: Table = Table("warehouse/user_behavior_metric");
    pub const REJECTS: Table = Table("rejects/movie_review");
}

/// Name of the marker written last into every partition.
pub const SUCCESS: &str = "_SUCCESS";

/// Where the lake is and how to reach it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    store: Arc<dyn ObjectStore>,
    /// The lake's directory when it is local: partitions are swapped with a directory rename.
    local_root: Option<PathBuf>,
}

impl Lake {
    /// Opens the lake at `location` (a path or `s3://bucket/prefix`); a local one is created.
    pub async fn open(location: &str) -> Result<Self> {
        let root = directory_url(location_url(location)?);
        let store = object_store_for(&root)?;
        let local_root = match root.scheme() {
            "file" => {
                let dir = root.to_file_path().map_err(|()| PipelineError::BadInput {
                    what: format!("lake `{location}`"),
                    reason: "not a local path".to_string(),
                })?;
                tokio::fs::create_dir_all(&dir).await.map_err(PipelineError::io("creating the lake directory", &dir))?;
                Some(dir)
            }
            _ => None,
        };
        Ok(Self { root, store, local_root })
    }

    /// Opens a lake that must already exist (for commands that only read one): a local
    /// directory that does not exist is an error naming it, and nothing is created.
    pub async fn open_existing(location: &str) -> Result<Self> {
        let root = directory_url(location_url(location)?);
        if let Ok(dir) = root.to_file_path()
            && !tokio::fs::metadata(&dir).await.is_ok_and(|m| m.is_dir())
        {
            return Err(PipelineError::BadInput {
                what: format!("lake `{location}`"),
                reason: format!("there is no directory {}; name the --lake that `ubm run` wrote", dir.display()),
            });
        }
        Self::open(location).await
    }

    /// A lake at `root` served by `store`, committed the object-store way (copy, then delete):
    /// what an `s3://` lake does, over any store (an in-memory one in tests).
    pub fn on_store(root: Url, store: Arc<dyn ObjectStore>) -> Self {
        Self { root: directory_url(root), store, local_root: None }
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// URL of a partition directory, ending in `/`.
    pub fn partition_url(&self, table: Table, date: RunDate) -> Result<Url> {
        let relative = match table.0 {
            "" => format!("{}/", date.partition()),
            name => format!("{name}/{}/", date.partition()),
        };
        self.join(&relative)
    }

    /// `relative` under the lake's root; an error, never the root itself, when it cannot be
    /// joined (on S3 a commit would otherwise treat the whole lake as the old partition).
    fn join(&self, relative: &str) -> Result<Url> {
        self.root.join(relative).map_err(|e| PipelineError::Internal {
            what: format!("`{relative}` cannot be placed under the lake {}: {e}", self.root),
        })
    }

    /// Object-store path of `url` (which is under this lake).
    fn path_of(&self, url: &Url) -> Result<Path> {
        Path::from_url_path(url.path()).map_err(|e| PipelineError::Store {
            doing: "naming",
            url: url.to_string(),
            source: object_store::Error::InvalidPath { source: e },
        })
    }

    /// Starts writing a new version of `table`'s partition for `date`, by the run `stamp`
    /// names, staged under `_staging/D/RUN/`.
    pub fn begin(&self, table: Table, date: RunDate, stamp: &RunStamp) -> Result<PartitionWrite> {
        let staging = self.join(&format!("_staging/{date}/{}/{}/", stamp.run_id, uuid::Uuid::new_v4()))?;
        Ok(PartitionWrite { lake: self.clone(), table, date, stamp: stamp.clone(), staging, files: Vec::new(), committed: false })
    }

    /// A fresh directory for the part files of one job's tasks ([`ubm_cluster::parts`]), under
    /// the run's staging area. It never becomes a partition: the files the tasks report are
    /// adopted into one ([`PartitionWrite::adopt_parts`]) and the directory is removed with
    /// whatever else is in it (files of failed or duplicate task attempts).
    pub fn task_output(&self, date: RunDate, stamp: &RunStamp) -> Result<TaskOutput> {
        let url = self.join(&format!("_staging/{date}/{}/tasks-{}/", stamp.run_id, uuid::Uuid::new_v4()))?;
        Ok(TaskOutput { lake: self.clone(), url, removed: false })
    }

    /// Removes what runs of `date` other than `run_id` staged: only the holder of the date's
    /// lease calls this, so those runs are dead, and their files were never committed.
    pub async fn remove_dead_staging(&self, date: RunDate, run_id: &str) -> Result<usize> {
        let dir = self.object_path(&format!("_staging/{date}/"))?;
        let ours = self.object_path(&format!("_staging/{date}/{run_id}/"))?;
        if let Some(local) = self.local_path(&dir) {
            return tokio::task::spawn_blocking(move || remove_local_except(&local, run_id_dir_name(&ours)))
                .await
                .map_err(|e| PipelineError::Stopped { what: "removing dead staging", source: Some(e) })?;
        }
        let listed: Vec<Path> =
            self.store.list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(self.store_error("listing", &dir))?;
        let dead: Vec<&Path> = listed.iter().filter(|p| !p.prefix_matches(&ours)).collect();
        for path in &dead {
            self.store.delete(path).await.map_err(self.store_error("deleting", path))?;
        }
        Ok(dead.len())
    }

    /// The object-store path of `relative` (a path under the lake's root).
    pub(crate) fn object_path(&self, relative: &str) -> Result<Path> {
        self.path_of(&self.join(relative)?)
    }

    /// The store the lake is on.
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes a whole small object (the run report) in one request.
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<Url> {
        let url = self.join(relative)?;
        self.store.put(&self.path_of(&url)?, PutPayload::from(bytes)).await.map_err(|source| PipelineError::Store {
            doing: "writing",
            url: url.to_string(),
            source,
        })?;
        Ok(url)
    }

    fn local_path(&self, path: &Path) -> Option<PathBuf> {
        self.local_root.as_ref().map(|_| PathBuf::from(format!("/{}", path.as_ref())))
    }

    /// Removes the directory at `url` when the lake is local (nothing on an object store), for a
    /// `Drop`: on a blocking thread when a runtime is at hand, errors ignored.
    fn remove_local_dir_soon(&self, url: &Url) {
        let Some(dir) = self.path_of(url).ok().and_then(|p| self.local_path(&p)) else { return };
        let remove = move || drop(remove_local_dir(&dir));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }

    /// Adapter for `map_err`: a request for `path` (a path from the store's root) that failed.
    pub(crate) fn store_error(&self, doing: &'static str, path: &Path) -> impl FnOnce(object_store::Error) -> PipelineError + use<> {
        let mut url = self.root.clone();
        url.set_path(&format!("/{path}"));
        move |source| PipelineError::Store { doing, url: url.to_string(), source }
    }
}

/// `url` with a trailing `/`, so that joining a relative path goes under it.
fn directory_url(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url
}

/// The run that writes a partition: its id goes into every `_SUCCESS` it writes, and its lease
/// (when it holds one) is checked before every commit.
#[derive(Clone)]
pub struct RunStamp {
    pub run_id: String,
    pub lease: Option<Arc<crate::lease::Lease>>,
}

impl RunStamp {
    /// A run of its own that holds no lease (`ubm classify` into a directory of its own).
    pub fn unleased() -> RunStamp {
        RunStamp { run_id: uuid::Uuid::new_v4().to_string(), lease: None }
    }
}

impl std::fmt::Debug for RunStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStamp").field("run_id", &self.run_id).field("leased", &self.lease.is_some()).finish()
    }
}

/// What a partition's `_SUCCESS` holds: the run that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessMarker {
    pub run_id: String,
}

/// A partition being written: files go to a staging area until [`PartitionWrite::commit`].
#[derive(Debug)]
pub struct PartitionWrite {
    lake: Lake,
    table: Table,
    date: RunDate,
    stamp: RunStamp,
    staging: Url,
    files: Vec<String>,
    /// Whether the staged files became the partition; if not, dropping removes them.
    committed: bool,
}

impl Drop for PartitionWrite {
    /// A write that failed or was abandoned leaves nothing behind on a local lake (on a
    /// blocking thread when a runtime is at hand). On an object store the staged objects stay
    /// under `_staging/`, outside every table.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        self.lake.remove_local_dir_soon(&self.staging);
    }
}

impl PartitionWrite {
    fn staged(&mut self, name: &str) -> Result<Path> {
        self.files.push(name.to_string());
        let url = self.staging.join(name).map_err(|e| PipelineError::BadInput {
            what: format!("file name `{name}`"),
            reason: format!("cannot be placed in a partition: {e}"),
        })?;
        self.lake.path_of(&url)
    }

    /// Opens a snappy Parquet file `name` in the partition.
    pub fn parquet(&mut self, name: &str, schema: SchemaRef) -> Result<ParquetFile> {
        let path = self.staged(name)?;
        let url = self.staging.join(name).map_or_else(|_| name.to_string(), |u| u.to_string());
        let sink = object_store::buffered::BufWriter::new(self.lake.store.clone(), path);
        let writer = AsyncArrowWriter::try_new(sink, schema, Some(parquet_properties()))
            .map_err(|source| PipelineError::Parquet { url: url.clone(), source })?;
        Ok(ParquetFile { writer, rows: 0, url })
    }

    /// Where the files are staged until the commit (a directory URL): a reader may check them
    /// there before they are committed.
    pub fn staging_url(&self) -> &Url {
        &self.staging
    }

    /// Moves the task files `names` (in `tasks`) into the partition as `{stem}-00000{ext}`,
    /// `{stem}-00001{ext}`, … in the order given: the names the contract gives part files.
    /// Returns how many.
    pub async fn adopt_parts(&mut self, tasks: &TaskOutput, names: &[&str], stem: &str, ext: &str) -> Result<usize> {
        for (i, name) in names.iter().enumerate() {
            let from = self.lake.path_of(&tasks.file(name)?)?;
            let to = self.staged(&format!("{stem}-{i:05}{ext}"))?;
            // One rename on a local lake; a server-side copy and a delete on S3.
            self.lake.store.rename(&from, &to).await.map_err(self.lake.store_error("moving a task's file to", &to))?;
        }
        Ok(names.len())
    }

    /// Writes a whole file `name` from memory.
    pub async fn put(&mut self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.staged(name)?;
        self.lake.store.put(&path, PutPayload::from(bytes)).await.map_err(self.lake.store_error("writing", &path))?;
        Ok(())
    }

    /// The URL a task writes the partition's file `name` to (see `crate::ingest`); the file
    /// is part of the partition once written.
    pub fn task_file(&mut self, name: &str) -> Result<Url> {
        self.staged(name)?;
        self.staging.join(name).map_err(|e| PipelineError::Internal { what: format!("naming `{name}` in {}: {e}", self.staging) })
    }

    /// Copies the object at `source` (any supported location) into the partition as `name`,
    /// streaming it: a large vendor file is never held in memory whole.
    pub async fn copy_in(&mut self, name: &str, source: &Url) -> Result<u64> {
        let target = self.staged(name)?;
        if let (Ok(from), Some(to)) = (source.to_file_path(), self.lake.local_path(&target)) {
            return copy_local(from, to).await;
        }
        let source_store = object_store_for(source)?;
        let source_path = Path::from_url_path(source.path()).map_err(|e| PipelineError::BadInput {
            what: source.to_string(),
            reason: format!("not an object path: {e}"),
        })?;
        let read_error = |source_error| PipelineError::Store { doing: "reading", url: source.to_string(), source: source_error };
        let got = source_store.get(&source_path).await.map_err(read_error)?;
        let upload = self.lake.store.put_multipart(&target).await.map_err(self.lake.store_error("writing", &target))?;
        let mut upload = object_store::WriteMultipart::new(upload);
        let mut bytes = 0u64;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.try_next().await.map_err(read_error)? {
            bytes += chunk.len() as u64;
            upload.write(&chunk);
        }
        upload.finish().await.map_err(self.lake.store_error("writing", &target))?;
        Ok(bytes)
    }

    /// Makes the staged files the partition, replacing any previous version whole, if this run
    /// still holds its date.
    pub async fn commit(mut self) -> Result<Url> {
        if let Some(lease) = &self.stamp.lease {
            lease.check().await?;
        }
        let marker = self.staged(SUCCESS)?;
        let stamp = serde_json::to_vec(&SuccessMarker { run_id: self.stamp.run_id.clone() }).map_err(|source| PipelineError::Report { source })?;
        self.lake.store.put(&marker, PutPayload::from(stamp)).await.map_err(self.lake.store_error("writing", &marker))?;
        let target = self.lake.partition_url(self.table, self.date)?;
        let staging_path = self.lake.path_of(&self.staging)?;
        let target_path = self.lake.path_of(&target)?;
        match (self.lake.local_path(&staging_path), self.lake.local_path(&target_path)) {
            (Some(staging), Some(target)) => {
                tokio::task::spawn_blocking(move || swap_local(&staging, &target))
                    .await
                    .map_err(|e| PipelineError::Stopped { what: "the partition swap", source: Some(e) })??;
            }
            _ => self.swap_remote(&target_path).await?,
        }
        self.committed = true;
        Ok(target)
    }

    /// The object-store commit: the old marker goes first, so that a reader checking for
    /// `_SUCCESS` never reads a mix; then each new file is copied in, the old files that are not
    /// overwritten are deleted, and the marker is written last.
    async fn swap_remote(&self, target_prefix: &Path) -> Result<()> {
        let store = &self.lake.store;
        let old: Vec<Path> =
            store.list(Some(target_prefix)).map_ok(|m| m.location).try_collect().await.map_err(self.lake.store_error("listing", target_prefix))?;
        let marker = target_prefix.clone().join(SUCCESS);
        if old.contains(&marker) {
            store.delete(&marker).await.map_err(self.lake.store_error("deleting", &marker))?;
        }
        let mut new = Vec::new();
        for name in self.files.iter().filter(|n| *n != SUCCESS) {
            let from = self.lake.path_of(&self.staging)?.join(name.as_str());
            let to = target_prefix.clone().join(name.as_str());
            store.copy(&from, &to).await.map_err(self.lake.store_error("publishing", &to))?;
            store.delete(&from).await.map_err(self.lake.store_error("deleting", &from))?;
            new.push(to);
        }
        for stale in old.iter().filter(|p| !new.contains(p) && **p != marker) {
            store.delete(stale).await.map_err(self.lake.store_error("removing the old", stale))?;
        }
        let staged_marker = self.lake.path_of(&self.staging)?.join(SUCCESS);
        store.copy(&staged_marker, &marker).await.map_err(self.lake.store_error("writing", &marker))?;
        store.delete(&staged_marker).await.map_err(self.lake.store_error("deleting", &staged_marker))?;
        Ok(())
    }
}

/// A directory the tasks of one job write their part files into, see [`Lake::task_output`].
/// Dropping it without [`TaskOutput::remove`] removes it on a local lake; on an object store
/// what is left stays under `_staging/`, outside every table, until the next run of the date
/// removes it.
#[derive(Debug)]
pub struct TaskOutput {
    lake: Lake,
    url: Url,
    removed: bool,
}

impl TaskOutput {
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL of the file `name` a task reported; a name that is not a plain file name (one a
    /// task of ubm's would never report) is refused.
    pub fn file(&self, name: &str) -> Result<Url> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(PipelineError::Internal { what: format!("a task reported the file `{name}`, which is not a file name") });
        }
        self.url.join(name).map_err(|e| PipelineError::Internal { what: format!("a task's file `{name}` under {}: {e}", self.url) })
    }

    /// Removes the directory and everything still in it; returns how many files that was.
    pub async fn remove(mut self) -> Result<usize> {
        self.removed = true;
        let dir = self.lake.path_of(&self.url)?;
        if let Some(local) = self.lake.local_path(&dir) {
            return tokio::task::spawn_blocking(move || remove_local_dir(&local))
                .await
                .map_err(|e| PipelineError::Stopped { what: "removing a task directory", source: Some(e) })?;
        }
        let listed: Vec<Path> =
            self.lake.store.list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(self.lake.store_error("listing", &dir))?;
        for path in &listed {
            self.lake.store.delete(path).await.map_err(self.lake.store_error("deleting", path))?;
        }
        Ok(listed.len())
    }
}

impl Drop for TaskOutput {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        self.lake.remove_local_dir_soon(&self.url);
    }
}

/// Removes a local directory and its contents, then its parents while they are empty; returns
/// how many files it held (a missing directory held none).
fn remove_local_dir(dir: &FsPath) -> Result<usize> {
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
fn run_id_dir_name(path: &Path) -> String {
    path.parts().last().map(|p| p.as_ref().to_string()).unwrap_or_default()
}

/// Removes every directory in `dir` but `keep` (a missing `dir` has nothing to remove).
fn remove_local_except(dir: &FsPath, keep: String) -> Result<usize> {
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
async fn copy_local(from: PathBuf, to: PathBuf) -> Result<u64> {
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(PipelineError::io("creating", dir))?;
        }
        std::fs::copy(&from, &to).map_err(PipelineError::io("copying into the lake", &from))
    })
    .await
    .map_err(|e| PipelineError::Stopped { what: "the copy into the lake", source: Some(e) })?
}

/// The local commit: the staged directory replaces the partition in one rename, then the old
/// partition (now under the staging name) is removed.
fn swap_local(staging: &FsPath, target: &FsPath) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(PipelineError::io("creating", parent))?;
    }
    if target.exists() {
        exchange_dirs(staging, target)?;
        // `staging` now holds the old partition.
        std::fs::remove_dir_all(staging).map_err(PipelineError::io("removing the old partition", staging))?;
    } else {
        std::fs::rename(staging, target).map_err(PipelineError::io("moving a staged partition to", target))?;
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
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, a_c.as_ptr(), libc::AT_FDCWD, b_c.as_ptr(), libc::RENAME_EXCHANGE)
    };
    if rc != 0 {
        return Err(PipelineError::io("swapping a staged partition with", b)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A Parquet file being written into a partition.
pub struct ParquetFile {
    writer: AsyncArrowWriter<object_store::buffered::BufWriter>,
    rows: u64,
    /// Where it is staged, for error messages.
    url: String,
}

impl ParquetFile {
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let url = &self.url;
        self.writer.write(batch).await.map_err(|source| PipelineError::Parquet { url: url.clone(), source })
    }

    /// Finishes the file; returns how many rows it holds.
    pub async fn close(self) -> Result<u64> {
        let url = self.url;
        self.writer.close().await.map_err(|source| PipelineError::Parquet { url, source })?;
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn date() -> RunDate {
        "2011-12-31".parse().expect("date")
    }

    async fn write_partition(lake: &Lake, files: &[(&str, &str)]) -> Url {
        let mut partition = lake.begin(Table::METRIC, date(), &RunStamp::unleased()).expect("begin");
        for (name, text) in files {
            partition.put(name, text.as_bytes().to_vec()).await.expect("put");
        }
        partition.commit().await.expect("commit")
    }

    fn dir_listing(dir: &FsPath) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_local_commit_replaces_the_partition_whole_and_leaves_no_staging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let first = write_partition(&lake, &[("part-00000.parquet", "old"), ("part-00001.parquet", "old")]).await;
        let partition = first.to_file_path().expect("local");
        assert_eq!(dir_listing(&partition), ["_SUCCESS", "part-00000.parquet", "part-00001.parquet"]);
        write_partition(&lake, &[("part-00000.parquet", "new")]).await;
        assert_eq!(dir_listing(&partition), ["_SUCCESS", "part-00000.parquet"], "the old second file is gone");
        assert_eq!(std::fs::read_to_string(partition.join("part-00000.parquet")).expect("read"), "new");
        let staging = dir.path().join("_staging");
        assert!(dir_listing(&staging).is_empty(), "the swapped-out partition was removed");
    }

    #[tokio::test]
    async fn an_abandoned_local_write_is_removed_and_the_old_partition_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let url = write_partition(&lake, &[("part-00000.parquet", "kept")]).await;
        {
            let mut abandoned = lake.begin(Table::METRIC, date(), &RunStamp::unleased()).expect("begin");
            abandoned.put("part-00000.parquet", b"half".to_vec()).await.expect("put");
        }
        // The removal runs on a blocking thread; give it a moment.
        for _ in 0..100 {
            if dir_listing(&dir.path().join("_staging")).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(dir_listing(&dir.path().join("_staging")).is_empty());
        let kept = url.to_file_path().expect("local").join("part-00000.parquet");
        assert_eq!(std::fs::read_to_string(kept).expect("read"), "kept");
    }

    #[tokio::test]
    async fn an_object_store_commit_copies_then_deletes_and_writes_the_marker_last() {
        let store = Arc::new(InMemory::new());
        let lake = Lake::on_store(Url::parse("s3://bucket/lake").expect("url"), store.clone());
        write_partition(&lake, &[("part-00000.parquet", "old"), ("part-00001.parquet", "old")]).await;
        write_partition(&lake, &[("part-00000.parquet", "new")]).await;
        let mut objects: Vec<String> = store.list(None).map_ok(|m| m.location.to_string()).try_collect().await.expect("list");
        objects.sort();
        let partition = "lake/warehouse/user_behavior_metric/insert_date=2011-12-31";
        assert_eq!(objects, [format!("{partition}/_SUCCESS"), format!("{partition}/part-00000.parquet")], "no staging left, no stale file");
        let got = store.get(&Path::from(format!("{partition}/part-00000.parquet"))).await.expect("get").bytes().await.expect("bytes");
        assert_eq!(&got[..], b"new");
    }

    /// A job's tasks wrote three files; two were reported (the third is what a failed or
    /// duplicate attempt leaves). Only the reported two reach the partition, under the
    /// contract's names in the order given, and nothing is left in the staging area.
    async fn only_reported_task_files_are_committed(lake: &Lake) -> Vec<(String, Vec<u8>)> {
        let stamp = RunStamp::unleased();
        let tasks = lake.task_output(date(), &stamp).expect("task output");
        for name in ["part-a.parquet", "part-b.parquet", "part-zombie.parquet"] {
            let path = lake.path_of(&tasks.file(name).expect("file")).expect("path");
            lake.store.put(&path, PutPayload::from(name.as_bytes().to_vec())).await.expect("put");
        }
        assert!(tasks.file("../x").is_err() && tasks.file("a/b").is_err(), "only plain names are adopted");
        let mut partition = lake.begin(Table::METRIC, date(), &stamp).expect("begin");
        assert_eq!(partition.adopt_parts(&tasks, &["part-b.parquet", "part-a.parquet"], "part", ".parquet").await.expect("adopt"), 2);
        assert_eq!(tasks.remove().await.expect("remove"), 1, "the unreported file is removed");
        partition.commit().await.expect("commit");
        let mut objects = Vec::new();
        let root = lake.path_of(lake.root()).expect("root");
        let listed: Vec<Path> = lake.store.list(Some(&root)).map_ok(|m| m.location).try_collect().await.expect("list");
        for path in listed {
            let bytes = lake.store.get(&path).await.expect("get").bytes().await.expect("bytes");
            objects.push((path.to_string(), bytes.to_vec()));
        }
        objects.sort();
        objects
    }

    #[tokio::test]
    async fn only_reported_task_files_reach_a_local_or_object_store_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let objects = only_reported_task_files_are_committed(&local).await;
        let names: Vec<&str> = objects.iter().map(|(p, _)| p.rsplit('/').next().unwrap_or_default()).collect();
        assert_eq!(names, ["_SUCCESS", "part-00000.parquet", "part-00001.parquet"]);
        assert_eq!(objects[1].1, b"part-b.parquet", "the order given");
        assert!(dir_listing(&dir.path().join("_staging")).is_empty(), "no staging left");

        let store = Arc::new(InMemory::new());
        let remote = Lake::on_store(Url::parse("s3://bucket/lake").expect("url"), store);
        let objects = only_reported_task_files_are_committed(&remote).await;
        let partition = "lake/warehouse/user_behavior_metric/insert_date=2011-12-31";
        let paths: Vec<String> = objects.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(paths, [format!("{partition}/_SUCCESS"), format!("{partition}/part-00000.parquet"), format!("{partition}/part-00001.parquet")]);
    }

    #[tokio::test]
    async fn a_failed_object_store_commit_leaves_no_marker() {
        // A store that refuses every copy: the old marker is gone, no new one is written, so a
        // reader that checks `_SUCCESS` reads nothing rather than a mix.
        #[derive(Debug)]
        struct NoCopy(InMemory);
        impl std::fmt::Display for NoCopy {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("NoCopy")
            }
        }
        #[async_trait::async_trait]
        impl ObjectStore for NoCopy {
            async fn put_opts(&self, l: &Path, p: PutPayload, o: object_store::PutOptions) -> object_store::Result<object_store::PutResult> {
                self.0.put_opts(l, p, o).await
            }
            async fn put_multipart_opts(&self, l: &Path, o: object_store::PutMultipartOptions) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
                self.0.put_multipart_opts(l, o).await
            }
            async fn get_opts(&self, l: &Path, o: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
                self.0.get_opts(l, o).await
            }
            fn delete_stream(&self, l: futures::stream::BoxStream<'static, object_store::Result<Path>>) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
                self.0.delete_stream(l)
            }
            fn list(&self, p: Option<&Path>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
                self.0.list(p)
            }
            async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<object_store::ListResult> {
                self.0.list_with_delimiter(p).await
            }
            async fn copy_opts(&self, _: &Path, to: &Path, _: object_store::CopyOptions) -> object_store::Result<()> {
                Err(object_store::Error::PermissionDenied { path: to.to_string(), source: "copy refused".into() })
            }
        }
        let store = Arc::new(NoCopy(InMemory::new()));
        let lake = Lake::on_store(Url::parse("s3://bucket/lake").expect("url"), store.clone());
        let mut partition = lake.begin(Table::METRIC, date(), &RunStamp::unleased()).expect("begin");
        partition.put("part-00000.parquet", b"x".to_vec()).await.expect("put");
        let err = partition.commit().await.expect_err("copy refused");
        assert!(!err.is_retryable(), "permission denied is final: {err}");
        assert!(err.describe().contains("publishing"), "{}", err.describe());
        let marker = Path::from("lake/warehouse/user_behavior_metric/insert_date=2011-12-31/_SUCCESS");
        assert!(store.head(&marker).await.is_err(), "no marker after a failed commit");
    }
}
