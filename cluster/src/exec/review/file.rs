//! A review file as the planner finds it: where it is, its header, where its records start,
//! and the version every range must still be when a task reads it.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use ubm_jobs::csv::{ReviewHeader, parse_header, record_end, record_spans};
use ubm_jobs::splits::{ScanState, scan};
use url::Url;

use crate::ClusterError;

/// The size of the chunks the boundaries pass summarizes in an object store, and so about the
/// size of a split: what one task holds in memory at a time, and the size of one ranged GET (S3's
/// guidance for byte-range reads is 8 to 16 MB). Against 16 MiB, `ubm classify` took the same
/// time at SF 1 and SF 16 and peaked 10 to 20 MB lower (3 runs each, by hand);
/// `benches/run.sh --scaling` compares the two after a change of this constant.
pub const CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// The chunk size for a local file, where a read costs no request: smaller chunks keep what a
/// task reads in the CPU's caches while it parses it, and balance the two cores' shares more
/// finely. `ubm classify` at SF 1, 21 interleaved runs: 122 ms against 128 ms with 8 MiB
/// (medians; 176 against 179 ms of CPU).
pub const LOCAL_CHUNK_BYTES: u64 = 2 * 1024 * 1024;

/// Where the review file is: a `file://` or `s3://` URL, resolved through the session's
/// object-store registry on whichever node runs the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewLocation {
    url: Url,
}

impl ReviewLocation {
    /// The review file at `url`.
    pub fn new(url: Url) -> Self {
        Self { url }
    }

    /// `location` is a URL (`s3://bucket/key`, `file:///abs/path`).
    pub fn parse(location: &str) -> Result<Self> {
        let url = Url::parse(location).map_err(|e| DataFusionError::Configuration(format!("`{location}` is not a URL of a review file: {e}")))?;
        Ok(Self { url })
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    pub(crate) fn store_url(&self) -> Result<ObjectStoreUrl> {
        ObjectStoreUrl::parse(&self.url[..url::Position::BeforePath])
    }

    pub(crate) fn path(&self) -> Result<Path> {
        Path::from_url_path(self.url.path()).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    fn bad_location(&self, error: DataFusionError) -> ClusterError {
        ClusterError::BadLocation { location: self.url.to_string(), reason: error.to_string() }
    }
}

/// Which version of the file the planner saw; every range is read only if the file is still
/// that version (an `If-Match` on its ETag, or `If-Unmodified-Since` without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion {
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub e_tag: Option<String>,
}

/// What every pass needs to know of a review file, found once by the planner from the file's
/// head: its header, its line terminator, where its records start and which version it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewFile {
    pub location: ReviewLocation,
    pub header: ReviewHeader,
    /// The byte that ends a record: `\n`, or `\r` in a CR-only file.
    pub eol: u8,
    /// Offset of the first byte after the header's line break (the size when there is none).
    pub data_start: u64,
    /// The line the record at `data_start` starts on.
    pub first_line: u64,
    pub version: FileVersion,
}

/// How much of the file is read to find the header; a longer header is read in larger steps.
const HEADER_PROBE_BYTES: u64 = 64 * 1024;

impl ReviewFile {
    /// Reads and checks the file's header, so that a file with no header or without
    /// `cid`/`review_str` fails before any work starts.
    pub async fn open(location: ReviewLocation, runtime: &RuntimeEnv) -> Result<Self, ClusterError> {
        crate::store::require_regular_file(&location.url).await?;
        let store = runtime.object_store(location.store_url().map_err(|e| location.bad_location(e))?).map_err(|e| location.bad_location(e))?;
        let path = location.path().map_err(|e| location.bad_location(e))?;
        let failed = |doing, source| ClusterError::Store { doing, url: location.url.to_string(), source };
        let meta = store.head(&path).await.map_err(|e| failed("cannot read the review file", e))?;
        let version = FileVersion { size: meta.size, last_modified: meta.last_modified, e_tag: meta.e_tag };
        let mut probe = HEADER_PROBE_BYTES;
        loop {
            let head = read_head(store.as_ref(), &path, probe.min(version.size)).await.map_err(|e| failed("reading the review file", e))?;
            let whole = head.len() as u64 == version.size;
            match header_and_data_start(&head, whole, &location) {
                Ok(Some((header, eol, data_start))) => {
                    let first_line = 1 + memchr::memchr_iter(eol, &head[..data_start as usize]).count() as u64;
                    return Ok(Self { location, header, eol, data_start, first_line, version });
                }
                Ok(None) => probe *= 8, // the header goes on past the probe: read more
                Err(e) => return Err(e),
            }
        }
    }

    /// The size of the chunks the file is summarized in, and so about the size of its splits.
    pub fn chunk_bytes(&self) -> u64 {
        if self.location.url.scheme() == "file" { LOCAL_CHUNK_BYTES } else { CHUNK_BYTES }
    }

    /// The size of the file's records region.
    pub fn records_bytes(&self) -> u64 {
        self.version.size.saturating_sub(self.data_start)
    }
}

async fn read_head(store: &dyn ObjectStore, path: &Path, end: u64) -> object_store::Result<Bytes> {
    if end == 0 { Ok(Bytes::new()) } else { store.get_range(path, 0..end).await }
}

/// The header, the line terminator and where the records start, or `None` when `head` ends
/// inside the header and more of the file must be read.
fn header_and_data_start(head: &[u8], whole: bool, location: &ReviewLocation) -> Result<Option<(ReviewHeader, u8, u64)>, ClusterError> {
    let eol = record_end(head);
    let first = record_spans(first_line_or_record(head, eol)).into_iter().next();
    let mut header_end = None;
    if let Some(first) = first {
        scan(&head[first.start..], ScanState::FieldStart, eol, |at| {
            header_end = Some((first.start + at + 1) as u64);
            false
        });
    }
    let data_start = match header_end {
        Some(end) => end,
        None if whole => head.len() as u64,
        None => return Ok(None),
    };
    let header_bytes = &head[..data_start as usize];
    let header = parse_header(header_bytes, record_spans(header_bytes).first())
        .map_err(|source| ClusterError::BadHeader { url: location.as_str().to_string(), source })?;
    Ok(Some((header, eol, data_start)))
}

/// The bytes up to the first line break when the header has no quoted line break (the usual
/// case), so that finding the header does not walk the whole probe.
fn first_line_or_record(bytes: &[u8], eol: u8) -> &[u8] {
    match memchr::memchr(eol, bytes) {
        Some(i) if !bytes[..i].contains(&b'"') => &bytes[..=i],
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> ReviewLocation {
        ReviewLocation::parse("file:///r.csv").expect("url")
    }

    #[test]
    fn the_header_ends_at_its_line_break_even_when_quoted() {
        let head = b"cid,\"review\nstr\",review_str\n1,a,b\n";
        let (header, eol, start) = header_and_data_start(head, true, &location()).expect("ok").expect("found");
        assert_eq!((header.cid, header.review_str, eol, start), (0, 2, b'\n', 28));
        assert!(header_and_data_start(b"cid,review_str,x", false, &location()).expect("ok").is_none(), "read on");
        let (_, _, start) = header_and_data_start(b"cid,review_str", true, &location()).expect("ok").expect("found");
        assert_eq!(start, 14, "a header alone: no records");
    }
}
