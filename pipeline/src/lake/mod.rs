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
//! during those few requests can see both sets (see `docs/lake.md`). `_SUCCESS` lists the
//! files the commit made the partition, and ubm's readers read only those.
//!
//! # Layout
//! - this file: [`Lake`] (where it is, paths, the store), its tables, a run's [`RunStamp`].
//! - `partition`: [`PartitionWrite`], a partition staged, then committed whole.
//! - `commit_lock`: [`CommitLock`], the date's lock around a local commit and a lease takeover.
//! - `manifest`: what `_SUCCESS` lists ([`SuccessMarker`]), and a partition checked against it.
//! - `tasks`: [`TaskOutput`], the directory a job's tasks write their part files into.
//! - `parquet_file`: [`ParquetFile`], a Parquet file written into a partition.
//! - `local`: the local file system's side of a commit (an atomic directory swap).

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use ubm_cluster::store::{location_url, object_store_for};
use ubm_jobs::RunDate;
use url::Url;

use crate::error::{PipelineError, Result};

mod commit_lock;
mod local;
mod manifest;
mod parquet_file;
mod partition;
mod tasks;

pub use commit_lock::CommitLock;
pub use local::sweep_run_staging;
pub use manifest::{Committed, CommittedFile, FileProblem, SuccessMarker};
pub use parquet_file::ParquetFile;
pub use partition::PartitionWrite;
pub use tasks::TaskOutput;

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
    /// The day's table when a check held it: committed like every partition, read by nobody
    /// but `ubm publish` (and whoever inspects it).
    pub const HELD_METRIC: Table = Table("held/user_behavior_metric");
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
                let dir = root
                    .to_file_path()
                    .map_err(|()| PipelineError::BadInput { what: format!("lake `{location}`"), reason: "not a local path".to_string() })?;
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
        self.root
            .join(relative)
            .map_err(|e| PipelineError::Internal { what: format!("`{relative}` cannot be placed under the lake {}: {e}", self.root) })
    }

    /// Object-store path of `url` (which is under this lake).
    fn path_of(&self, url: &Url) -> Result<Path> {
        Path::from_url_path(url.path()).map_err(|e| PipelineError::Store {
            doing: "naming",
            url: url.to_string(),
            source: object_store::Error::InvalidPath { source: e },
        })
    }

    /// Removes what runs of `date` other than `keep` (all, when `None`) staged: only the
    /// holder of the date's lease calls this, so those runs are dead, and their files were
    /// never committed. A resumed run removes its own earlier staging too.
    pub async fn remove_dead_staging(&self, date: RunDate, keep: Option<&str>) -> Result<usize> {
        let dir = self.object_path(&format!("_staging/{date}/"))?;
        let ours = keep.map(|run_id| self.object_path(&format!("_staging/{date}/{run_id}/"))).transpose()?;
        if let Some(local) = self.local_path(&dir) {
            let keep_name = ours.as_ref().map(local::run_id_dir_name).unwrap_or_default();
            return tokio::task::spawn_blocking(move || local::remove_local_except(&local, keep_name))
                .await
                .map_err(|e| PipelineError::Stopped { what: "removing dead staging", source: Some(e) })?;
        }
        let listed: Vec<Path> = self.store.list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(self.store_error("listing", &dir))?;
        let dead: Vec<&Path> = listed.iter().filter(|p| ours.as_ref().is_none_or(|ours| !p.prefix_matches(ours))).collect();
        for path in &dead {
            self.store.delete(path).await.map_err(self.store_error("deleting", path))?;
        }
        Ok(dead.len())
    }

    /// Removes `table`'s partition of `date`, its `_SUCCESS` first (a reader never takes what
    /// is left for a commit); returns how many objects went. Only the holder of the date's
    /// lease calls this.
    pub async fn remove_partition(&self, table: Table, date: RunDate) -> Result<usize> {
        let dir = self.path_of(&self.partition_url(table, date)?)?;
        let marker = dir.clone().join(SUCCESS);
        match self.store.delete(&marker).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.store_error("deleting", &marker)(e)),
        }
        if let Some(local) = self.local_path(&dir) {
            return tokio::task::spawn_blocking(move || local::remove_local_dir(&local))
                .await
                .map_err(|e| PipelineError::Stopped { what: "removing a partition", source: Some(e) })?;
        }
        let listed: Vec<Path> = self.store.list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(self.store_error("listing", &dir))?;
        for path in &listed {
            self.store.delete(path).await.map_err(self.store_error("deleting", path))?;
        }
        Ok(listed.len())
    }

    /// Notes the staging directory of the run `run_id` of `date` (on a local lake), so that
    /// the process's last step removes what a stopped run's in-flight writes leave there
    /// ([`sweep_run_staging`]).
    pub fn remember_run_staging(&self, date: RunDate, run_id: &str) -> Result<()> {
        let dir = self.object_path(&format!("_staging/{date}/{run_id}/"))?;
        if let Some(local) = self.local_path(&dir) {
            local::remember_run_staging(local);
        }
        Ok(())
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

    /// Whether the lake is a local directory (not an object store).
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// The local file of `relative` (a path under the lake's root), when the lake is local.
    pub(crate) fn local_file(&self, relative: &str) -> Result<Option<PathBuf>> {
        Ok(self.local_path(&self.object_path(relative)?))
    }

    fn local_path(&self, path: &Path) -> Option<PathBuf> {
        self.local_root.as_ref().map(|_| PathBuf::from(format!("/{}", path.as_ref())))
    }

    /// Removes the directory at `url` when the lake is local (nothing on an object store), for a
    /// `Drop`: on a blocking thread when a runtime is at hand, errors ignored.
    fn remove_local_dir_soon(&self, url: &Url) {
        let Some(dir) = self.path_of(url).ok().and_then(|p| self.local_path(&p)) else { return };
        let remove = move || drop(local::remove_local_dir(&dir));
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

/// What every commit asks first: whether its run may still commit. The lake only asks; the
/// date's lease (`crate::lease::Lease`) answers, so storage never depends on the policy that
/// decides who owns a date.
#[async_trait::async_trait]
pub trait CommitFence: Send + Sync {
    /// `Ok` while the run still holds what lets it commit, with a permit to keep until the
    /// commit is done (no other run can take the date over meanwhile, where the lake allows);
    /// the error says why not.
    async fn enter(&self) -> Result<CommitPermit>;
}

/// Kept by a commit until its swap is done: see [`CommitFence::enter`].
#[derive(Debug)]
pub struct CommitPermit {
    pub lock: Option<CommitLock>,
}

/// The run that writes a partition: its id goes into every `_SUCCESS` it writes, and its fence
/// (the date's lease, when it holds one) is checked before every commit.
#[derive(Clone)]
pub struct RunStamp {
    pub run_id: String,
    pub fence: Option<Arc<dyn CommitFence>>,
}

impl RunStamp {
    /// A run of its own that holds no lease (`ubm classify` into a directory of its own).
    pub fn unleased() -> RunStamp {
        RunStamp { run_id: uuid::Uuid::new_v4().to_string(), fence: None }
    }
}

impl std::fmt::Debug for RunStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStamp").field("run_id", &self.run_id).field("fenced", &self.fence.is_some()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path as FsPath;

    use object_store::memory::InMemory;

    use super::*;

    fn date() -> RunDate {
        "2011-12-31".parse().expect("date")
    }

    /// A one-row Parquet file holding `text`: what a commit accepts as a part file.
    fn parquet(text: &str) -> Vec<u8> {
        use datafusion::arrow::array::StringArray;
        let batch =
            datafusion::arrow::record_batch::RecordBatch::try_from_iter([("t", Arc::new(StringArray::from(vec![text])) as _)]).expect("batch");
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        bytes
    }

    async fn write_partition(lake: &Lake, files: &[(&str, &str)]) -> Url {
        let mut partition = lake.begin(Table::METRIC, date(), &RunStamp::unleased()).expect("begin");
        for (name, text) in files {
            partition.put(name, parquet(text)).await.expect("put");
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
        assert_eq!(std::fs::read(partition.join("part-00000.parquet")).expect("read"), parquet("new"));
        let staging = dir.path().join("_staging");
        assert!(dir_listing(&staging).is_empty(), "the swapped-out partition was removed");
    }

    #[tokio::test]
    async fn readers_read_only_the_files_a_commit_listed_and_refuse_a_changed_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let partition = write_partition(&lake, &[("part-00000.parquet", "a")]).await.to_file_path().expect("local");
        std::fs::write(partition.join("copy.parquet"), parquet("a")).expect("stray");
        let files = lake.readable_files(Table::METRIC, date()).await.expect("readable");
        let names: Vec<&str> = files.iter().filter_map(|u| u.path_segments()?.next_back()).collect();
        assert_eq!(names, ["part-00000.parquet"], "the stray copy is never read");
        let committed = lake.committed(Table::METRIC, date()).await.expect("read").expect("committed");
        assert_eq!(committed.rows(), Some(1), "the commit recorded the rows");
        assert_eq!(committed.problems.len(), 1, "the stray is named: {:?}", committed.problems);
        let file = std::fs::OpenOptions::new().write(true).open(partition.join("part-00000.parquet")).expect("open");
        file.set_len(10).expect("truncate");
        let err = lake.readable_files(Table::METRIC, date()).await.expect_err("a truncated file is refused");
        assert!(err.to_string().contains("part-00000.parquet is truncated"), "{err}");
    }

    #[tokio::test]
    async fn an_abandoned_local_write_is_removed_and_the_old_partition_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let url = write_partition(&lake, &[("part-00000.parquet", "kept")]).await;
        {
            let mut abandoned = lake.begin(Table::METRIC, date(), &RunStamp::unleased()).expect("begin");
            abandoned.put("part-00000.parquet", parquet("half")).await.expect("put");
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
        assert_eq!(std::fs::read(kept).expect("read"), parquet("kept"));
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
        assert_eq!(&got[..], &parquet("new")[..]);
    }

    /// A job's tasks wrote three files; two were reported (the third is what a failed or
    /// duplicate attempt leaves). Only the reported two reach the partition, under the
    /// contract's names in the order given, and nothing is left in the staging area.
    async fn only_reported_task_files_are_committed(lake: &Lake) -> Vec<(String, Vec<u8>)> {
        let stamp = RunStamp::unleased();
        let tasks = lake.task_output(date(), &stamp).expect("task output");
        for name in ["part-a.parquet", "part-b.parquet", "part-zombie.parquet"] {
            let path = lake.path_of(&tasks.file(name).expect("file")).expect("path");
            lake.store.put(&path, PutPayload::from(parquet(name))).await.expect("put");
        }
        assert!(tasks.file("../x").is_err() && tasks.file("a/b").is_err(), "only plain names are adopted");
        let mut partition = lake.begin(Table::METRIC, date(), &stamp).expect("begin");
        let twice = partition.adopt_parts(&tasks, &["part-a.parquet", "part-b.parquet", "part-a.parquet"], "part", ".parquet").await;
        assert!(matches!(twice, Err(PipelineError::Duplicate { .. })), "a file reported twice is refused: {twice:?}");
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
        assert_eq!(objects[1].1, parquet("part-b.parquet"), "the order given");
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
            async fn put_multipart_opts(
                &self,
                l: &Path,
                o: object_store::PutMultipartOptions,
            ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
                self.0.put_multipart_opts(l, o).await
            }
            async fn get_opts(&self, l: &Path, o: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
                self.0.get_opts(l, o).await
            }
            fn delete_stream(
                &self,
                l: futures::stream::BoxStream<'static, object_store::Result<Path>>,
            ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
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
        partition.put("part-00000.parquet", parquet("x")).await.expect("put");
        let err = partition.commit().await.expect_err("copy refused");
        assert!(!err.is_retryable(), "permission denied is final: {err}");
        assert!(err.describe().contains("publishing"), "{}", err.describe());
        let marker = Path::from("lake/warehouse/user_behavior_metric/insert_date=2011-12-31/_SUCCESS");
        assert!(store.head(&marker).await.is_err(), "no marker after a failed commit");
    }
}
