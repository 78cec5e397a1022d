//! A partition being written: files are staged under `_staging/`, then replace the partition
//! whole at the commit (one directory swap on a local lake; copy, delete, marker last on an
//! object store).

use datafusion::arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use ubm_cluster::store::object_store_for;
use ubm_jobs::RunDate;
use ubm_jobs::schema::parquet_properties;
use url::Url;

use super::local::{copy_local, remove_swapped_out, swap_local};
use super::parquet_file::ParquetFile;
use super::tasks::TaskOutput;
use super::{Lake, RunStamp, SUCCESS, SuccessMarker, Table};
use crate::error::{PipelineError, Result};

impl Lake {
    /// Starts writing a new version of `table`'s partition for `date`, by the run `stamp`
    /// names, staged under `_staging/D/RUN/`.
    pub fn begin(&self, table: Table, date: RunDate, stamp: &RunStamp) -> Result<PartitionWrite> {
        let staging = self.join(&format!("_staging/{date}/{}/{}/", stamp.run_id, uuid::Uuid::new_v4()))?;
        Ok(PartitionWrite {
            lake: self.clone(),
            table,
            date,
            stamp: stamp.clone(),
            staging,
            files: Vec::new(),
            result: None,
            inputs: Vec::new(),
            committed: false,
        })
    }
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
    /// What the task counted, committed in the marker (see [`SuccessMarker::result`]).
    result: Option<serde_json::Value>,
    /// The partitions (of the same date) the task read, whose commit ids go into the marker.
    inputs: Vec<Table>,
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
    /// Records what the task counted and which partitions of the date it read; the commit
    /// writes both into the partition's marker (with the inputs' commit ids), so a resumed run
    /// finds them there with the files they describe.
    pub fn record_result(&mut self, result: &impl serde::Serialize, inputs: &[Table]) -> Result<()> {
        let value = serde_json::to_value(result).map_err(|source| PipelineError::Encoding { what: "a task's result", source })?;
        self.result = Some(value);
        self.inputs = inputs.to_vec();
        Ok(())
    }

    fn staged(&mut self, name: &str) -> Result<Path> {
        self.files.push(name.to_string());
        let url = self
            .staging
            .join(name)
            .map_err(|e| PipelineError::BadInput { what: format!("file name `{name}`"), reason: format!("cannot be placed in a partition: {e}") })?;
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

    /// Commits to `table` instead of the table the write began for: a day's table that a
    /// check held goes to [`Table::HELD_METRIC`].
    pub fn divert(&mut self, table: Table) {
        self.table = table;
    }

    /// Where the files are staged until the commit (a directory URL): a reader may check them
    /// there before they are committed.
    pub fn staging_url(&self) -> &Url {
        &self.staging
    }

    /// Moves the task files `names` (in `tasks`) into the partition as `{stem}-00000{ext}`,
    /// `{stem}-00001{ext}`, … in the order given: the names the contract gives part files.
    /// Returns how many.
    /// A file reported twice means a task's results were delivered twice: nothing is moved.
    pub async fn adopt_parts(&mut self, tasks: &TaskOutput, names: &[&str], stem: &str, ext: &str) -> Result<usize> {
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = names.iter().find(|name| !seen.insert(**name)) {
            return Err(PipelineError::Duplicate {
                what: format!("the report of the task file {twice}"),
                cause: "a stage delivered its results twice",
            });
        }
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
        let source_path = Path::from_url_path(source.path())
            .map_err(|e| PipelineError::BadInput { what: source.to_string(), reason: format!("not an object path: {e}") })?;
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

    /// The names of the partition's files but `_SUCCESS`, each once, in the order staged.
    fn file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::with_capacity(self.files.len());
        for name in self.files.iter().filter(|n| *n != SUCCESS) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Makes the staged files the partition, replacing any previous version whole, if this run
    /// still holds its date.
    pub async fn commit(mut self) -> Result<Url> {
        let staging_path = self.lake.path_of(&self.staging)?;
        let names = self.file_names();
        let files = Some(self.lake.manifest(&staging_path, &names).await?);
        let marker = self.staged(SUCCESS)?;
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for table in &self.inputs {
            if let Some(committed) = self.lake.committed(*table, self.date).await? {
                inputs.extend(committed.marker.commit);
            }
        }
        let marker_record = SuccessMarker {
            run_id: self.stamp.run_id.clone(),
            files,
            result: self.result.take(),
            commit: Some(uuid::Uuid::new_v4().to_string()),
            inputs,
        };
        let stamp = serde_json::to_vec(&marker_record).map_err(|source| PipelineError::Encoding { what: "the _SUCCESS marker", source })?;
        self.lake.store.put(&marker, PutPayload::from(stamp)).await.map_err(self.lake.store_error("writing", &marker))?;
        // Checked last before the swap; the permit is kept until the swap is done.
        let permit = match &self.stamp.fence {
            Some(fence) => Some(fence.enter().await?),
            None => None,
        };
        let target = self.lake.partition_url(self.table, self.date)?;
        let target_path = self.lake.path_of(&target)?;
        match (self.lake.local_path(&staging_path), self.lake.local_path(&target_path)) {
            (Some(staging), Some(target)) => {
                let swapped_out = staging.clone();
                tokio::task::spawn_blocking(move || swap_local(&staging, &target))
                    .await
                    .map_err(|e| PipelineError::Stopped { what: "the partition swap", source: Some(e) })??;
                drop(permit);
                // The partition is committed: an old copy left under `_staging/` is only litter,
                // which the next run of the date removes.
                match tokio::task::spawn_blocking(move || remove_swapped_out(&swapped_out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("{}", e.describe()),
                    Err(e) => tracing::warn!("removing the old partition stopped: {e}"),
                }
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
        for name in self.file_names() {
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
