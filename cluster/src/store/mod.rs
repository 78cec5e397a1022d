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
///
/// A URL that carries a user name or key (`s3://KEY:SECRET@bucket/…`, any scheme) is refused:
/// ubm never uses them (S3 credentials come from the environment, a profile or the instance
/// role), and a location is written into run reports, logs and the report page. The error shows
/// the location with everything before its last `@` hidden, whatever the URL's shape.
pub fn location_url(location: &str) -> Result<Url, ClusterError> {
    let bad = |reason: String| ClusterError::BadLocation { location: hide_user_info(location), reason };
    if location.contains("://") {
        // An `@` after the scheme in a URL that does not parse is most likely a key holding `/`
        // or `:`: say what to do about the key, not about the parse.
        let has_user_info = location.split_once("://").is_some_and(|(_, rest)| rest.contains('@'));
        let url = Url::parse(location).map_err(|e| match has_user_info {
            true => bad(format!("{CREDENTIALS_IN_URL} (nor does it parse: {e})")),
            false => bad(format!("not a URL ({e})")),
        })?;
        if !url.username().is_empty() || url.password().is_some() || (matches!(url.scheme(), "s3" | "s3a") && url.port().is_some()) {
            return Err(bad(CREDENTIALS_IN_URL.to_string()));
        }
        return Ok(url);
    }
    let path = std::path::absolute(location).map_err(|e| bad(e.to_string()))?;
    Url::from_file_path(&path).map_err(|()| bad("not an absolute path".to_string()))
}

/// Why a location with user info is refused, and what to do instead.
const CREDENTIALS_IN_URL: &str = "a location must not carry a user name, key or port before its bucket or path: ubm would write it into \
     the run report, the logs and the report page, and never uses it; give S3 credentials through AWS_ACCESS_KEY_ID and \
     AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance role, and an endpoint through AWS_ENDPOINT_URL";

/// Checks a location flag's value (`{date}` in it allowed) before anything is written, so that a
/// key in it reaches no report: [`location_url`]'s rules, the flag named.
pub fn check_location(flag: &str, location: &str) -> Result<(), ClusterError> {
    location_url(location).map(drop).map_err(|e| match e {
        ClusterError::BadLocation { location, reason } => ClusterError::BadLocation { location: format!("{flag} {location}"), reason },
        other => other,
    })
}

/// `text` with everything between `://` and its last `@` replaced by `***`: a location as it may
/// be shown in an error even when it does not parse (a key may hold `/`, `@` or `:`).
pub fn hide_user_info(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else { return text.to_string() };
    let start = scheme_end + 3;
    match text[start..].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_with_a_key_is_refused_and_never_shown() {
        for given in [
            "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/ubm",
            "S3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/ubm",
            "file://AKIAEXAMPLE:wJalrXUtnFEMI@localhost/tmp/lake",
            "s3://AKIAEXAMPLE:wJal/rX@Ut:nFEMI@bucket/ubm",
            "s3://AKIAEXAMPLE:1234/wJalrXUtnFEMI@bucket/ubm",
            "s3://AKIAEXAMPLE@bucket/ubm",
        ] {
            let err = check_location("--lake", given).expect_err(given).to_string();
            assert!(!err.contains("AKIAEXAMPLE") && !err.contains("wJal") && !err.contains("FEMI"), "{given}: {err}");
            assert!(err.contains("--lake"), "{given}: {err}");
        }
        assert!(location_url("s3://bucket/team@x/{date}/movie_review.csv").is_ok(), "an @ in a path is a path");
        assert_eq!(hide_user_info("/data/lake"), "/data/lake");
    }
}
