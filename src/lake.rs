//! The lake: Hive-style partitions under a local directory or `s3://bucket/prefix`.
//!
//! ```text
//! <lake>/raw/movie_review/insert_date=D/movie_review.csv
//! <lake>/stage/user_purchase/insert_date=D/part-00000.parquet
//! <lake>/stage/movie_review/insert_date=D/part-00000.parquet
//! <lake>/warehouse/user_behavior_metric/insert_date=D/part-00000.parquet
//! <lake>/rejects/movie_review/insert_date=D/rejects.jsonl
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

use anyhow::{Context, Result, bail};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use ubm_cluster::stores::{location_url, object_store_for};
use ubm_jobs::RunDate;
use url::Url;

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
    pub fn open(location: &str) -> Result<Self> {
        let mut root = location_url(location)?;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let store = object_store_for(&root)?;
        let local_root = match root.scheme() {
            "file" => {
                let dir = root
                    .to_file_path()
                    .map_err(|()| anyhow::anyhow!("lake `{location}` is not a local path"))?;
                std::fs::create_dir_all(&dir).with_context(|| format!("creating the lake directory {}", dir.display()))?;
                Some(dir)
            }
            _ => None,
        };
        Ok(Self { root, store, local_root })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// URL of a partition directory, ending in `/`.
    pub fn partition_url(&self, table: Table, date: RunDate) -> Url {
        let relative = match table.0 {
            "" => format!("{}/", date.partition()),
            name => format!("{name}/{}/", date.partition()),
        };
        self.root.join(&relative).unwrap_or_else(|_| self.root.clone())
    }

    /// Object-store path of `url` (which is under this lake).
    fn path_of(&self, url: &Url) -> Result<Path> {
        Path::from_url_path(url.path()).with_context(|| format!("{url} is not a valid object path"))
    }

    /// Starts writing a new version of `table`'s partition for `date`.
    pub fn begin(&self, table: Table, date: RunDate) -> Result<PartitionWrite> {
        let staging = self.root.join(&format!("_staging/{}/", uuid::Uuid::new_v4()))?;
        Ok(PartitionWrite { lake: self.clone(), table, date, staging, files: Vec::new(), committed: false })
    }

    /// Writes a whole small object (the run report) in one request.
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<Url> {
        let url = self.root.join(relative)?;
        self.store
            .put(&self.path_of(&url)?, PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing {url}"))?;
        Ok(url)
    }
}

/// A partition being written: files go to a staging area until [`PartitionWrite::commit`].
#[derive(Debug)]
pub struct PartitionWrite {
    lake: Lake,
    table: Table,
    date: RunDate,
    staging: Url,
    files: Vec<String>,
    /// Whether the staged files became the partition; if not, dropping removes them.
    committed: bool,
}

impl Drop for PartitionWrite {
    /// A write that failed or was abandoned leaves nothing behind on a local lake. (On an
    /// object store the staged objects stay under `_staging/`, outside every table.)
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let staging = self.lake.path_of(&self.staging).and_then(|p| self.lake.local_path(&p));
        if let Ok(dir) = staging {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl PartitionWrite {
    fn staged(&mut self, name: &str) -> Result<Path> {
        self.files.push(name.to_string());
        self.lake.path_of(&self.staging.join(name)?)
    }

    /// Opens a snappy Parquet file `name` in the partition.
    pub fn parquet(&mut self, name: &str, schema: SchemaRef) -> Result<ParquetFile> {
        let path = self.staged(name)?;
        let sink = object_store::buffered::BufWriter::new(self.lake.store.clone(), path);
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let writer = AsyncArrowWriter::try_new(sink, schema, Some(props))?;
        Ok(ParquetFile { writer, rows: 0 })
    }

    /// Writes a whole file `name` from memory.
    pub async fn put(&mut self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.staged(name)?;
        self.lake.store.put(&path, PutPayload::from(bytes)).await.with_context(|| format!("writing {name}"))?;
        Ok(())
    }

    /// Copies the object at `source` (any supported location) into the partition as `name`,
    /// streaming it: a large vendor file is never held in memory whole.
    pub async fn copy_in(&mut self, name: &str, source: &Url) -> Result<u64> {
        let target = self.staged(name)?;
        if let (Ok(from), Some(_)) = (source.to_file_path(), &self.lake.local_root) {
            let to = self.lake.local_path(&target)?;
            return tokio::task::spawn_blocking(move || {
                if let Some(dir) = to.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::copy(&from, &to).with_context(|| format!("copying {} into the lake", from.display()))
            })
            .await?;
        }
        let source_store = object_store_for(source)?;
        let source_path = Path::from_url_path(source.path())?;
        let got = source_store.get(&source_path).await.with_context(|| format!("reading {source}"))?;
        let mut upload = object_store::WriteMultipart::new(self.lake.store.put_multipart(&target).await?);
        let mut bytes = 0u64;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.try_next().await.with_context(|| format!("reading {source}"))? {
            bytes += chunk.len() as u64;
            upload.write(&chunk);
        }
        upload.finish().await.with_context(|| format!("writing {name} into the lake"))?;
        Ok(bytes)
    }

    /// Makes the staged files the partition, replacing any previous version whole.
    pub async fn commit(mut self) -> Result<Url> {
        let marker = self.staged(SUCCESS)?;
        self.lake.store.put(&marker, PutPayload::default()).await?;
        let target = self.lake.partition_url(self.table, self.date);
        match &self.lake.local_root {
            Some(_) => self.swap_local(&target)?,
            None => self.swap_remote(&target).await?,
        }
        self.committed = true;
        Ok(target)
    }

    fn swap_local(&self, target: &Url) -> Result<()> {
        let staging = self.lake.local_path(&self.lake.path_of(&self.staging)?)?;
        let target = self.lake.local_path(&self.lake.path_of(target)?)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if target.exists() {
            exchange_dirs(&staging, &target)?;
            // `staging` now holds the old partition.
            std::fs::remove_dir_all(&staging).with_context(|| format!("removing the old partition {}", staging.display()))?;
        } else {
            std::fs::rename(&staging, &target)
                .with_context(|| format!("moving {} to {}", staging.display(), target.display()))?;
        }
        Ok(())
    }

    async fn swap_remote(&self, target: &Url) -> Result<()> {
        let store = &self.lake.store;
        let target_prefix = self.lake.path_of(target)?;
        let old: Vec<Path> = store.list(Some(&target_prefix)).map_ok(|m| m.location).try_collect().await?;
        let marker = target_prefix.clone().join(SUCCESS);
        if old.contains(&marker) {
            store.delete(&marker).await?;
        }
        let mut new = Vec::new();
        for name in self.files.iter().filter(|n| *n != SUCCESS) {
            let from = self.lake.path_of(&self.staging.join(name)?)?;
            let to = target_prefix.clone().join(name.as_str());
            store.copy(&from, &to).await.with_context(|| format!("publishing {name}"))?;
            store.delete(&from).await?;
            new.push(to);
        }
        for stale in old.iter().filter(|p| !new.contains(p) && **p != marker) {
            store.delete(stale).await.with_context(|| format!("removing the old {stale}"))?;
        }
        store.put(&marker, PutPayload::default()).await?;
        store.delete(&self.lake.path_of(&self.staging.join(SUCCESS)?)?).await?;
        Ok(())
    }
}

impl Lake {
    fn local_path(&self, path: &Path) -> Result<PathBuf> {
        match &self.local_root {
            Some(_) => Ok(PathBuf::from(format!("/{}", path.as_ref()))),
            None => bail!("{path} is not on a local lake"),
        }
    }
}

/// Swaps two directories in one step (Linux `renameat2` with `RENAME_EXCHANGE`).
fn exchange_dirs(a: &FsPath, b: &FsPath) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a_c = CString::new(a.as_os_str().as_bytes())?;
    let b_c = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, a_c.as_ptr(), libc::AT_FDCWD, b_c.as_ptr(), libc::RENAME_EXCHANGE)
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!("swapping {} and {}: {err}", a.display(), b.display());
    }
    Ok(())
}

/// A Parquet file being written into a partition.
pub struct ParquetFile {
    writer: AsyncArrowWriter<object_store::buffered::BufWriter>,
    rows: u64,
}

impl ParquetFile {
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).await?;
        Ok(())
    }

    /// Finishes the file; returns how many rows it holds.
    pub async fn close(self) -> Result<u64> {
        self.writer.close().await?;
        Ok(self.rows)
    }
}
