//! What `ubm deploy up` puts in the bucket, under a folder of the deployment's own
//! (`ubm/deployments/ID/`): the binary, the bootstrap script, the environment file and the node
//! TLS material, and how `down --purge` removes them again.
//!
//! Each deployment has its own folder, not one per ubm version: EMR reruns the bootstrap action
//! on every node it adds or replaces, so a second `up` that overwrote a shared folder would hand
//! the first cluster's new nodes another cluster's binary, secrets and keys, and a `down --purge`
//! would delete files a running cluster still needs.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{DeployError, Result};

/// The bucket and the folder of one deployment in it.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

/// Chunk size for reading the binary: a multipart part each.
const CHUNK: usize = 8 * 1024 * 1024;

/// A new deployment's folder: when it was made, and a random tail (two `up`s in one second
/// still differ).
pub fn new_deployment_prefix() -> String {
    let tail = uuid::Uuid::new_v4().simple().to_string();
    format!("ubm/deployments/{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), &tail[..8])
}

impl ArtifactStore {
    /// `store` serves `bucket`; artifacts go under `prefix` (no slash at either end).
    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) -> Self {
        Self { store, bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() }
    }

    /// The store of the folder `url` (`s3://BUCKET/PREFIX/`, as [`ArtifactStore::url`] gives it).
    pub fn at(store: Arc<dyn ObjectStore>, url: &str) -> Result<Self> {
        let (bucket, prefix) = url
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(bucket, prefix)| !bucket.is_empty() && !prefix.trim_matches('/').is_empty())
            .ok_or_else(|| DeployError::Usage(format!("{url}: not the s3://BUCKET/FOLDER/ of a deployment's artifacts")))?;
        Ok(Self::new(store, bucket, prefix))
    }

    /// `s3://BUCKET/PREFIX/`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}/", self.bucket, self.prefix)
    }

    /// The s3:// URL of the artifact `name`.
    pub fn url_of(&self, name: &str) -> String {
        format!("s3://{}/{}/{name}", self.bucket, self.prefix)
    }

    fn key(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{name}", self.prefix))
    }

    /// Uploads a local file as `name`, in parts, calling `progress(sent, total)` after each.
    pub async fn upload_file(&self, name: &str, local: &std::path::Path, mut progress: impl FnMut(u64, u64)) -> Result<String> {
        let url = self.url_of(name);
        let reading = |source| DeployError::File { doing: "reading", path: local.display().to_string(), source };
        let failed = |source| DeployError::Storage { doing: "uploading to", url: url.clone(), source };
        let mut file = tokio::fs::File::open(local).await.map_err(reading)?;
        let total = file.metadata().await.map_err(reading)?.len();
        let mut writer = BufWriter::new(Arc::clone(&self.store), self.key(name));
        let mut buffer = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let read = file.read(&mut buffer).await.map_err(reading)?;
            if read == 0 {
                break;
            }
            writer.write_all(&buffer[..read]).await.map_err(|e| failed(object_store_error(e)))?;
            sent += read as u64;
            progress(sent, total);
        }
        writer.shutdown().await.map_err(|e| failed(object_store_error(e)))?;
        Ok(url)
    }

    /// Uploads `bytes` as `name`.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<String> {
        let url = self.url_of(name);
        self.store.put(&self.key(name), bytes.into()).await.map_err(|source| DeployError::Storage {
            doing: "uploading to",
            url: url.clone(),
            source,
        })?;
        Ok(url)
    }

    /// Deletes everything under the folder (and nothing else); returns how many objects went.
    pub async fn delete_all(&self) -> Result<usize> {
        let failed = |source| DeployError::Storage { doing: "deleting", url: self.url(), source };
        let prefix = ObjectPath::from(self.prefix.as_str());
        // object_store lists whole path segments under `prefix`: `ubm/deployments/A` never
        // matches `ubm/deployments/AB/…`.
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(failed)?;
        for object in &objects {
            self.store.delete(&object.location).await.map_err(failed)?;
        }
        Ok(objects.len())
    }
}

/// The object-store error a `BufWriter` carries inside the I/O error it returns.
fn object_store_error(error: std::io::Error) -> object_store::Error {
    match error.downcast::<object_store::Error>() {
        Ok(inner) => inner,
        Err(other) => object_store::Error::Generic { store: "S3", source: Box::new(other) },
    }
}
