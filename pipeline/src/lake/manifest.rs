//! What a commit made a partition: its `_SUCCESS` lists every file with its size (and, for
//! Parquet, its rows), and every reader checks the partition against that list.
//!
//! A file someone copied into a committed partition (a stray), a part file deleted or cut
//! short: each would change the numbers of whoever reads the directory. Readers of ubm read
//! only the listed files and refuse a listed file whose size differs; `ubm status` and
//! `ubm report` name every difference. Sizes catch a missing, truncated or replaced-by-another-
//! size file; a file rewritten in place at the same size is not caught (a checksum would need
//! every byte read back on every check; see `docs/lake.md`).

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use serde::{Deserialize, Serialize};
use ubm_jobs::RunDate;
use url::Url;

use super::{Lake, SUCCESS, Table};
use crate::error::{PipelineError, Result};

/// What a partition's `_SUCCESS` holds: the run that wrote it and the files it committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessMarker {
    pub run_id: String,
    /// `None` in markers written before commits listed their files: such a partition is read
    /// as a directory, as then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<CommittedFile>>,
    /// What the task that committed the partition counted (rows, matches, ...), committed with
    /// it, so that a run resumed after its driver stopped keeps the task without redoing it
    /// (`crate::resume`). `None` in markers of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// This commit's own id (a new one for every commit, a recommit of the same run included),
    /// and the ids of the commits of the partitions the task read: a resumed run keeps a task
    /// only if its inputs are still the versions it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// One file of a committed partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    /// The file's name in the partition.
    pub name: String,
    pub bytes: u64,
    /// Rows of a Parquet file (from its footer); `None` for other files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// How a committed partition differs from what its commit listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FileProblem {
    /// A listed file is gone.
    Missing { name: String, bytes: u64 },
    /// A listed file is shorter than committed: cut short.
    Truncated { name: String, bytes: u64, found: u64 },
    /// A listed file is longer than committed: replaced or appended to.
    Grown { name: String, bytes: u64, found: u64 },
    /// A file the commit did not list (also in a subfolder): readers of the directory would
    /// read it too.
    Stray { name: String, found: u64 },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing { name, bytes } => write!(f, "{name} is missing (committed with {bytes} bytes)"),
            FileProblem::Truncated { name, bytes, found } => write!(f, "{name} is truncated ({found} of the {bytes} bytes committed)"),
            FileProblem::Grown { name, bytes, found } => write!(f, "{name} has changed ({found} bytes, committed with {bytes})"),
            FileProblem::Stray { name, found } => write!(f, "{name} is a stray file ({found} bytes) that no commit wrote"),
        }
    }
}

/// A committed partition as found: its marker and how its files differ from it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub marker: SuccessMarker,
    pub problems: Vec<FileProblem>,
    /// Where the partition is, ending in `/`.
    pub url: Url,
    /// The partition's files other than `_SUCCESS`, by name (relative to the partition).
    found: BTreeMap<String, ObjectMeta>,
}

impl Committed {
    /// The files a reader reads: the listed ones (every file but `_SUCCESS` when the marker
    /// predates listing). An error naming the partition and the file when one differs from its
    /// commit; stray files are left unread.
    pub fn readable(&self) -> Result<Vec<ObjectMeta>> {
        if let Some(problem) = self.problems.iter().find(|p| !matches!(p, FileProblem::Stray { .. })) {
            return Err(PipelineError::Damaged { partition: self.url.to_string(), problem: problem.to_string() });
        }
        Ok(match &self.marker.files {
            Some(files) => files.iter().filter_map(|f| self.found.get(&f.name).cloned()).collect(),
            None => self.found.values().cloned().collect(),
        })
    }

    /// The rows the commit recorded, when it recorded them for every file.
    pub fn rows(&self) -> Option<u64> {
        self.marker.files.as_ref()?.iter().map(|f| f.rows).sum()
    }
}

impl Lake {
    /// `table`'s partition of `date` as committed: `None` when it has no `_SUCCESS` (never
    /// committed, or an object-store commit under way). A listing that straddles a commit
    /// (the marker gone between the listing and its read, or files that differ from it) is
    /// taken again, twice at most, before the partition is judged.
    pub async fn committed(&self, table: Table, date: RunDate) -> Result<Option<Committed>> {
        let url = self.partition_url(table, date)?;
        let dir = self.path_of(&url)?;
        for attempt in 1..=LISTINGS {
            let listed: Vec<ObjectMeta> = self.store.list(Some(&dir)).try_collect().await.map_err(self.store_error("listing", &dir))?;
            let relative =
                |meta: &ObjectMeta| meta.location.prefix_match(&dir).map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"));
            let mut found: BTreeMap<String, ObjectMeta> = listed.into_iter().filter_map(|m| Some((relative(&m)?, m))).collect();
            let Some(marker_meta) = found.remove(SUCCESS) else { return Ok(None) };
            let bytes = match self.store.get(&marker_meta.location).await {
                Ok(got) => got.bytes().await.map_err(self.store_error("reading", &marker_meta.location))?,
                Err(object_store::Error::NotFound { .. }) if attempt < LISTINGS => continue,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.store_error("reading", &marker_meta.location)(e)),
            };
            let marker = read_marker(&bytes, &url)?;
            let problems = compare(marker.files.as_deref(), &found);
            if problems.is_empty() || attempt == LISTINGS {
                return Ok(Some(Committed { marker, problems, url, found }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    /// The files of `table`'s committed partition of `date` as URLs, for a query; an error when
    /// it is not committed or a listed file differs from its commit.
    pub async fn readable_files(&self, table: Table, date: RunDate) -> Result<Vec<Url>> {
        let Some(committed) = self.committed(table, date).await? else {
            let url = self.partition_url(table, date)?;
            return Err(PipelineError::BadInput {
                what: format!("partition {url}"),
                reason: format!("it has no {SUCCESS}: it was never committed; run the date again"),
            });
        };
        committed.readable()?.iter().map(|meta| self.url_of(&meta.location)).collect()
    }

    /// The URL of an object of this lake's store.
    fn url_of(&self, path: &Path) -> Result<Url> {
        let mut url = self.root.clone();
        url.set_path(&format!("/{path}"));
        Ok(url)
    }

    /// The list a commit writes into `_SUCCESS`: each staged file (in `dir`) with its size and,
    /// for Parquet, its rows.
    pub(super) async fn manifest(&self, dir: &Path, names: &[String]) -> Result<Vec<CommittedFile>> {
        // A few requests a file, several files at a time: on S3 each is a round trip.
        futures::stream::iter(names.iter().map(|name| self.committed_file(dir, name))).buffered(8).try_collect().await
    }

    /// One staged file's entry of the manifest.
    async fn committed_file(&self, dir: &Path, name: &str) -> Result<CommittedFile> {
        let path = dir.clone().join(name);
        let meta = self.store.head(&path).await.map_err(self.store_error("checking the staged", &path))?;
        let rows = match name.ends_with(".parquet") {
            true => Some(self.parquet_rows(&meta).await?),
            false => None,
        };
        Ok(CommittedFile { name: name.to_string(), bytes: meta.size, rows })
    }

    /// The rows of a Parquet file, from its footer (two small range requests).
    async fn parquet_rows(&self, meta: &ObjectMeta) -> Result<u64> {
        let (path, size) = (&meta.location, meta.size);
        let unreadable = |why: String| PipelineError::Internal { what: format!("the staged file {path} is not a Parquet file ubm wrote: {why}") };
        if size < FOOTER_SIZE {
            return Err(unreadable(format!("{size} bytes, shorter than a footer")));
        }
        let tail = self.store.get_range(path, size - FOOTER_SIZE..size).await.map_err(self.store_error("reading the footer of", path))?;
        let footer = FooterTail::try_from(&tail[..]).map_err(|e| unreadable(e.to_string()))?;
        let length = footer.metadata_length() as u64;
        if length + FOOTER_SIZE > size {
            return Err(unreadable(format!("its footer claims {length} bytes of {size}")));
        }
        let encoded = self
            .store
            .get_range(path, size - FOOTER_SIZE - length..size - FOOTER_SIZE)
            .await
            .map_err(self.store_error("reading the footer of", path))?;
        let metadata = ParquetMetaDataReader::decode_metadata(&encoded).map_err(|e| unreadable(e.to_string()))?;
        let rows = metadata.file_metadata().num_rows();
        u64::try_from(rows).map_err(|_| unreadable(format!("it says it has {rows} rows")))
    }
}

/// How many times a partition is listed before it is judged (see [`Lake::committed`]).
const LISTINGS: u32 = 3;

/// The fixed end of every Parquet file: the metadata's length and the magic `PAR1`.
const FOOTER_SIZE: u64 = 8;

fn read_marker(bytes: &[u8], partition: &Url) -> Result<SuccessMarker> {
    // Markers of the first versions were empty: a run id nobody has, no file list.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(SuccessMarker { run_id: String::new(), files: None, result: None, commit: None, inputs: Vec::new() });
    }
    serde_json::from_slice(bytes)
        .map_err(|e| PipelineError::Damaged { partition: partition.to_string(), problem: format!("its {SUCCESS} is not a ubm commit record ({e})") })
}

/// How the files `found` differ from the list `committed` (nothing to compare without one).
fn compare(committed: Option<&[CommittedFile]>, found: &BTreeMap<String, ObjectMeta>) -> Vec<FileProblem> {
    let Some(committed) = committed else { return Vec::new() };
    let mut problems = Vec::new();
    for file in committed {
        let (name, bytes) = (file.name.clone(), file.bytes);
        match found.get(&file.name).map(|m| m.size) {
            None => problems.push(FileProblem::Missing { name, bytes }),
            Some(found) if found < bytes => problems.push(FileProblem::Truncated { name, bytes, found }),
            Some(found) if found > bytes => problems.push(FileProblem::Grown { name, bytes, found }),
            Some(_) => {}
        }
    }
    for (name, meta) in found {
        if !committed.iter().any(|f| &f.name == name) {
            problems.push(FileProblem::Stray { name: name.clone(), found: meta.size });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, size: u64) -> (String, ObjectMeta) {
        let location = Path::from(format!("p/{name}"));
        (name.to_string(), ObjectMeta { location, last_modified: chrono::Utc::now(), size, e_tag: None, version: None })
    }

    fn file(name: &str, bytes: u64) -> CommittedFile {
        CommittedFile { name: name.to_string(), bytes, rows: None }
    }

    #[test]
    fn every_difference_from_the_commit_is_named() {
        let committed = [file("part-00000.parquet", 100), file("part-00001.parquet", 100), file("part-00002.parquet", 100)];
        let found: BTreeMap<_, _> =
            [meta("part-00000.parquet", 100), meta("part-00001.parquet", 40), meta("copy.parquet", 100), meta("sub/part-00000.parquet", 1)]
                .into_iter()
                .collect();
        let problems: Vec<String> = compare(Some(&committed), &found).iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "part-00001.parquet is truncated (40 of the 100 bytes committed)",
                "part-00002.parquet is missing (committed with 100 bytes)",
                "copy.parquet is a stray file (100 bytes) that no commit wrote",
                "sub/part-00000.parquet is a stray file (1 bytes) that no commit wrote",
            ]
        );
        assert!(compare(None, &found).is_empty(), "a marker without a list has nothing to compare");
    }

    #[test]
    fn markers_of_every_version_are_read() {
        let url = Url::parse("file:///lake/t/insert_date=2011-12-31/").expect("url");
        assert_eq!(read_marker(b"", &url).expect("empty").run_id, "");
        assert_eq!(read_marker(br#"{"run_id":"r"}"#, &url).expect("run id").files, None);
        let listed = read_marker(br#"{"run_id":"r","files":[{"name":"a.parquet","bytes":3,"rows":1}]}"#, &url).expect("listed");
        assert_eq!(listed.files, Some(vec![CommittedFile { name: "a.parquet".into(), bytes: 3, rows: Some(1) }]));
        let err = read_marker(b"{not json", &url).expect_err("garbage");
        assert!(err.to_string().contains("insert_date=2011-12-31") && err.to_string().contains("not a ubm commit record"), "{err}");
    }
}
