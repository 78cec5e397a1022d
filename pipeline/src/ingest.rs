//! ingest: the day's vendor file into `<lake>/raw/movie_review/insert_date=D/`, and, where the
//! file can be read where it is, classify side by side with it.

use ubm_cluster::{Engine, EngineKind};
use ubm_jobs::RunDate;
use url::Url;

use crate::classify::{ClassifyCounts, ClassifyOutput, classify_into, classify_staged};
use crate::error::{PipelineError, Result};
use crate::lake::{Lake, RunStamp, Table};
use crate::task::{RetryPolicy, TaskReport, run_task, run_task_keeping_error};

/// ingest: copies the vendor file into the raw zone; returns the URL of the copy. A file in an
/// object store (the vendor's bucket) is copied on a cluster by an executor
/// ([`Engine::copy_file`]), so that its bytes never pass through the driver; a local file is
/// this machine's own (the executors may not see it), and in-process everything is local: this
/// process copies those.
pub(crate) async fn ingest(engine: &Engine, lake: &Lake, source: &Url, date: RunDate, stamp: &RunStamp) -> Result<Url> {
    ubm_cluster::store::require_regular_file(source).await.map_err(|e| PipelineError::BadInput {
        what: format!("the review file {}", source.to_file_path().map_or_else(|()| source.to_string(), |p| p.display().to_string())),
        reason: match e {
            ubm_cluster::ClusterError::BadLocation { reason, .. } => format!("{reason}; pass the vendor's file with --reviews"),
            other => other.to_string(),
        },
    })?;
    let store = ubm_cluster::store::object_store_for(source)?;
    let before = object_version(store.as_ref(), source).await?;
    let mut partition = lake.begin(Table::RAW_REVIEWS, date, stamp)?;
    let bytes = match (engine.kind(), source.scheme()) {
        (EngineKind::Local, _) | (_, "file") => partition.copy_in("movie_review.csv", source).await?,
        _ => {
            let target = partition.task_file("movie_review.csv")?;
            engine.copy_file(source, &target, &format!("ubm ingest {date}")).await?
        }
    };
    // A vendor still writing the file would leave a torn copy: the file must be the same
    // object (size, modification time, ETag on S3) after the copy as before it.
    if object_version(store.as_ref(), source).await? != before {
        return Err(PipelineError::Changed { url: source.to_string() });
    }
    partition.record_result(&IngestResult { bytes }, &[])?;
    let url = partition.commit().await?;
    tracing::info!(bytes, "ingested {source}");
    debug_assert_eq!(Some(&url), lake.partition_url(Table::RAW_REVIEWS, date).ok().as_ref());
    raw_copy(lake, date)
}

/// What ingest committed with the raw copy (see `crate::resume`).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) struct IngestResult {
    pub bytes: u64,
}

/// The raw copy of the vendor file that ingest commits for `date`.
pub(crate) fn raw_copy(lake: &Lake, date: RunDate) -> Result<Url> {
    lake.partition_url(Table::RAW_REVIEWS, date)?
        .join("movie_review.csv")
        .map_err(|e| PipelineError::Internal { what: format!("naming the raw copy: {e}") })
}

/// What identifies one version of an object: its size, modification time and ETag (a local
/// file's "ETag" is object_store's, made of its inode, size and modification time).
async fn object_version(store: &dyn object_store::ObjectStore, source: &Url) -> Result<(u64, chrono::DateTime<chrono::Utc>, Option<String>)> {
    let path = object_store::path::Path::from_url_path(source.path())
        .map_err(|e| PipelineError::BadInput { what: source.to_string(), reason: format!("not an object path: {e}") })?;
    let meta = object_store::ObjectStoreExt::head(store, &path).await.map_err(|e| PipelineError::Store {
        doing: "reading",
        url: source.to_string(),
        source: e,
    })?;
    Ok((meta.size, meta.last_modified, meta.e_tag))
}

/// Whether classify reads the vendor's file where it is, beside ingest's copy, instead of
/// waiting for the copy and reading that: the copy is one serial step (one process copies the
/// whole file), which would otherwise sit in front of every classify task.
/// - In-process, a large local file (below [`CLASSIFY_WHILE_INGESTING_FROM_BYTES`] the copy is
///   short and the tasks side by side only contend for the cores).
/// - On a cluster, a file in an object store, which every executor reads; and a local file when
///   the lake is local too (the executors write into the lake, so they share this machine's file
///   system). Should the executors not see the file after all, classify reads the copy once it is
///   committed ([`ingest_while_classifying`]).
pub(crate) async fn reads_source_directly(engine: &Engine, lake: &Lake, source: &Url) -> bool {
    match (engine.kind(), source.scheme()) {
        (EngineKind::Local, _) => source_version(source).await.is_some_and(|(len, _, _)| len >= CLASSIFY_WHILE_INGESTING_FROM_BYTES),
        (_, "file") => lake.is_local(),
        _ => true,
    }
}

/// In-process, below this size ingest and classify run one after the other. Measured with `ubm
/// run`: SF 1 (95 MB) 0.31 s one after the other vs 0.33 s side by side; SF 8 (764 MB) 3.1 s vs
/// 2.3 s.
const CLASSIFY_WHILE_INGESTING_FROM_BYTES: u64 = 256 * 1024 * 1024;

/// The version of the vendor's file (size, modification time, ETag), to tell whether it
/// changed meanwhile; `None` when it cannot be read.
async fn source_version(source: &Url) -> Option<(u64, chrono::DateTime<chrono::Utc>, Option<String>)> {
    let store = ubm_cluster::store::object_store_for(source).ok()?;
    object_version(store.as_ref(), source).await.ok()
}

/// ingest and classify side by side on the vendor's file. classify commits only after ingest
/// did, and only if the file did not change while both read it, so that the raw zone always
/// holds the bytes that were classified. A classify that could not read the file where it is
/// (executors that do not see a local path) reads ingest's copy instead.
pub(crate) async fn ingest_while_classifying(
    engine: &Engine,
    lake: &Lake,
    source: &Url,
    date: RunDate,
    policy: RetryPolicy,
    stamp: &RunStamp,
) -> (TaskReport, TaskReport, Option<ClassifyCounts>) {
    let before = source_version(source).await;
    let ((ingest_report, raw), (mut classify_report, staged)) = tokio::join!(
        run_task("ingest", policy, || ingest(engine, lake, source, date, stamp)),
        run_task_keeping_error("classify", policy, || classify_staged(engine, source, ClassifyOutput::staged_reviews(lake, date, stamp))),
    );
    let Some(raw) = raw else {
        return (ingest_report, TaskReport::skipped("classify", "ingest failed; nothing of classify was committed"), None);
    };
    let staged = match staged {
        Ok(staged) => staged,
        // A cancelled job, no executor, a failure a retry could fix: nothing else is tried.
        Err(e) if e.stops_the_run() || e.is_retryable() => return (ingest_report, classify_report, None),
        Err(e) => {
            tracing::warn!("classify of {source} where it is failed ({}); it reads the raw copy instead", e.describe());
            let (classify_report, counts) =
                run_task("classify", policy, || classify_into(engine, &raw, ClassifyOutput::staged_reviews(lake, date, stamp))).await;
            return (ingest_report, classify_report, counts);
        }
    };
    // A version that cannot be read either time is a change: the window is not known to be quiet.
    let after = source_version(source).await;
    if before.is_none() || after != before {
        let changed = PipelineError::Changed { url: source.to_string() };
        classify_report.fail(format!("{}: rerun the date", changed.describe()));
        return (ingest_report, classify_report, None);
    }
    match staged.commit().await {
        Ok(counts) => (ingest_report, classify_report, Some(counts)),
        Err(e) => {
            classify_report.fail(format!("committing: {}", e.describe()));
            (ingest_report, classify_report, None)
        }
    }
}
