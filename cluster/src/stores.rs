//! Object stores for the locations users name: local paths and `s3://bucket/prefix`.
//!
//! One function builds the store for a URL so that the engine (reading inputs inside plans)
//! and the lake writer (writing outputs) always agree on credentials and endpoints.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::ClusterError;

/// Turns what a user typed (`data/x.csv`, `/abs/dir`, `file:///abs`, `s3://b/p`) into a URL.
/// Relative paths are resolved against the working directory; a directory need not exist yet.
pub fn location_url(location: &str) -> Result<Url, ClusterError> {
    if location.contains("://") {
        return Url::parse(location).map_err(|e| ClusterError::BadLocation {
            location: location.to_string(),
            reason: e.to_string(),
        });
    }
    let path = std::path::absolute(location).map_err(|e| ClusterError::BadLocation {
        location: location.to_string(),
        reason: e.to_string(),
    })?;
    Url::from_file_path(&path).map_err(|()| ClusterError::BadLocation {
        location: location.to_string(),
        reason: "not an absolute path".to_string(),
    })
}

/// The object store that serves `url`'s scheme and bucket.
///
/// `s3://` reads the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_SESSION_TOKEN`) and `AWS_ENDPOINT_URL` for an
/// S3-compatible endpoint such as moto or MinIO; a plain `http://` endpoint is allowed.
pub fn object_store_for(url: &Url) -> Result<Arc<dyn ObjectStore>, ClusterError> {
    match url.scheme() {
        "file" => Ok(Arc::new(LocalFileSystem::new())),
        "s3" | "s3a" => {
            let bucket = url.host_str().ok_or_else(|| ClusterError::BadLocation {
                location: url.to_string(),
                reason: "an s3:// location needs a bucket: s3://bucket/prefix".to_string(),
            })?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(|e| ClusterError::BadLocation {
                location: url.to_string(),
                reason: format!("cannot set up S3 access: {e}"),
            })?;
            Ok(Arc::new(store))
        }
        other => Err(ClusterError::BadLocation {
            location: url.to_string(),
            reason: format!("`{other}://` is not supported; use a local path or s3://bucket/prefix"),
        }),
    }
}
