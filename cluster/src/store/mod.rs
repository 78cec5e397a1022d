//! Object stores for the locations users name: local paths and `s3://bucket/prefix`.
//!
//! One function builds the store for a URL so that the engine (reading inputs inside plans)
//! and the lake writer (writing outputs) always agree on credentials, endpoints and retries.

pub mod registry;

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;

use crate::ClusterError;

/// Turns what a user typed (`data/x.csv`, `/abs/dir`, `file:///abs`, `s3://b/p`) into a URL.
/// Relative paths are resolved against the working directory; a directory need not exist yet.
pub fn location_url(location: &str) -> Result<Url, ClusterError> {
    let bad = |reason: String| ClusterError::BadLocation { location: location.to_string(), reason };
    if location.contains("://") {
        return Url::parse(location).map_err(|e| bad(e.to_string()));
    }
    let path = std::path::absolute(location).map_err(|e| bad(e.to_string()))?;
    Url::from_file_path(&path).map_err(|()| bad("not an absolute path".to_string()))
}

/// How many times, and for how long, the S3 client retries one request before the error reaches
/// ubm (which may then retry the whole task). Set by `UBM_STORE_MAX_RETRIES` (default 10) and
/// `UBM_STORE_RETRY_TIMEOUT_SECONDS` (default 180), object_store's own defaults; the backoff
/// starts at 100 ms and doubles up to 15 s.
pub fn retry_config() -> Result<RetryConfig, ClusterError> {
    let defaults = RetryConfig::default();
    let max_retries = setting("UBM_STORE_MAX_RETRIES", defaults.max_retries, |v| v.parse::<usize>().ok())?;
    let timeout = setting("UBM_STORE_RETRY_TIMEOUT_SECONDS", defaults.retry_timeout, |v| {
        v.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
    })?;
    Ok(RetryConfig { backoff: BackoffConfig::default(), max_retries, retry_timeout: timeout })
}

/// The environment variable `name` parsed by `parse`, or `default` when it is not set.
fn setting<T>(name: &'static str, default: T, parse: impl Fn(&str) -> Option<T>) -> Result<T, ClusterError> {
    match std::env::var(name) {
        Ok(value) => {
            parse(value.trim()).ok_or_else(|| ClusterError::BadSetting { name, value, reason: "expected a number of at least 0".to_string() })
        }
        Err(_) => Ok(default),
    }
}

/// The object store that serves `url`'s scheme and bucket.
///
/// `s3://` reads the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_SESSION_TOKEN`) and `AWS_ENDPOINT_URL` for an
/// S3-compatible endpoint such as moto or MinIO; a plain `http://` endpoint is allowed.
pub fn object_store_for(url: &Url) -> Result<Arc<dyn ObjectStore>, ClusterError> {
    let bad = |reason: String| ClusterError::BadLocation { location: url.to_string(), reason };
    match url.scheme() {
        "file" => Ok(Arc::new(LocalFileSystem::new())),
        "s3" | "s3a" => {
            let store = s3_builder(url)?.build().map_err(|e| bad(format!("cannot set up S3 access: {e}")))?;
            Ok(Arc::new(store))
        }
        other => Err(bad(format!("`{other}://` is not supported; use a local path or s3://bucket/prefix"))),
    }
}

/// An S3 store whose every upload asks for server-side encryption: SSE-S3 (AES256) unless the
/// environment chooses another (`AWS_SERVER_SIDE_ENCRYPTION=aws:kms` with `AWS_SSE_KMS_KEY_ID`).
/// For what `ubm deploy up` puts in its bucket: the nodes' keys, the environment file.
pub fn encrypted_object_store_for(url: &Url) -> Result<Arc<dyn ObjectStore>, ClusterError> {
    let bad = |reason: String| ClusterError::BadLocation { location: url.to_string(), reason };
    if !matches!(url.scheme(), "s3" | "s3a") {
        return Err(bad("server-side encryption is for s3:// locations".to_string()));
    }
    let mut builder = s3_builder(url)?;
    if std::env::var("AWS_SERVER_SIDE_ENCRYPTION").is_err() {
        // object_store does not export the key's enum; its name is the public form.
        let key: AmazonS3ConfigKey = "aws_server_side_encryption".parse().map_err(|e| bad(format!("{e}")))?;
        builder = builder.with_config(key, "AES256");
    }
    Ok(Arc::new(builder.build().map_err(|e| bad(format!("cannot set up S3 access: {e}")))?))
}

fn s3_builder(url: &Url) -> Result<AmazonS3Builder, ClusterError> {
    let bucket = url.host_str().ok_or_else(|| ClusterError::BadLocation {
        location: url.to_string(),
        reason: "an s3:// location needs a bucket: s3://bucket/prefix".to_string(),
    })?;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry_config()?);
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        builder = builder.with_region("us-east-1");
    }
    Ok(builder)
}

/// Fails unless `url` names a regular file (for local files; an `s3://` object always is).
/// A directory, a FIFO (which would block a reader without a writer), a socket, a device, a
/// missing file or a symlink loop is named as such, before anything opens it.
pub async fn require_regular_file(url: &Url) -> Result<(), ClusterError> {
    let Ok(path) = url.to_file_path() else { return Ok(()) };
    let bad = |reason: String| ClusterError::BadLocation { location: path.display().to_string(), reason };
    let metadata = match tokio::fs::metadata(&path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(bad("it does not exist".to_string())),
        Err(e) if e.raw_os_error() == Some(40) => return Err(bad("a symbolic link loop (ELOOP)".to_string())),
        Err(e) => return Err(bad(format!("cannot be read: {e}"))),
    };
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let kind = if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a device or other special file"
    };
    Err(bad(format!("it is {kind}, not a regular file: pass the file itself")))
}
