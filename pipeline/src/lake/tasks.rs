//! The directory the tasks of one job write their part files into, under the run's staging.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use ubm_jobs::RunDate;
use url::Url;

use super::local::remove_local_dir;
use super::{Lake, RunStamp};
use crate::error::{PipelineError, Result};

impl Lake {
    /// A fresh directory for the part files of one job's tasks ([`ubm_cluster::exec::parts`]), under
    /// the run's staging area. It never becomes a partition: the files the tasks report are
    /// adopted into one ([`PartitionWrite::adopt_parts`]) and the directory is removed with
    /// whatever else is in it (files of failed or duplicate task attempts).
    pub fn task_output(&self, date: RunDate, stamp: &RunStamp) -> Result<TaskOutput> {
        let url = self.join(&format!("_staging/{date}/{}/tasks-{}/", stamp.run_id, uuid::Uuid::new_v4()))?;
        Ok(TaskOutput { lake: self.clone(), url, removed: false })
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
