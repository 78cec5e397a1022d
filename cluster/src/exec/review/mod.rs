//! The vendor's `movie_review.csv` as DataFusion tables, read by ubm's own RFC 4180 scanner in
//! byte ranges that many tasks read side by side, each in bounded memory.
//!
//! DataFusion's CSV reader cannot do what the contract asks: it fails the whole query on one
//! malformed record instead of rejecting it with its line number, and with
//! `newlines_in_values` it reads a file as one partition. ubm reads a review file in two passes,
//! each a plan of its own that runs wherever the engine runs plans
//! ([`crate::Engine::review_records`]):
//!
//! 1. **Boundaries** ([`ReviewPass::Boundaries`]): the file's records region is cut into
//!    chunks of [`file::ReviewFile::chunk_bytes`]; each task summarizes its chunks
//!    ([`ubm_jobs::splits::summarize`]) into one small row each. The planner composes the rows
//!    into splits that start at records ([`ubm_jobs::splits::compose`]).
//! 2. **Records** ([`ReviewPass::Records`]): each split is read and parsed into
//!    [`REVIEW_RECORDS`] rows, one row per record, readable or rejected, with its exact line.
//!
//! Both passes are `DataSourceExec`s over a `FileScanConfig` whose file groups are byte ranges
//! of the one file ([`scan::ReviewScanSource`]), so Ballista gives each group to a
//! task of its own. A task holds one range at a time (about [`file::ReviewFile::chunk_bytes`], more
//! only for a record longer than that), whatever the file's size.
//!
//! # Layout
//! - [`file`]: the file as the planner finds it (location, header, version).
//! - [`scan`]: how one task reads its ranges (the `FileSource` and its opener).
//! - [`table`]: a pass as a table, cut into the tasks' file groups.

pub mod file;
pub mod scan;
pub mod table;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use ubm_jobs::splits::{ScanState, Split};

/// The boundaries pass's rows: one per chunk, its [`ChunkSummary`]. For each entry state `i`
/// (in [`ScanState::ALL`]'s order): `exit_i`, `first_end_i`, `breaks_i`.
pub static BOUNDARIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("start", DataType::UInt64, false),
        Field::new("end", DataType::UInt64, false),
        Field::new("line_breaks", DataType::UInt64, false),
    ];
    for i in 0..ScanState::ALL.len() {
        fields.push(Field::new(format!("exit_{i}"), DataType::UInt8, false));
        fields.push(Field::new(format!("first_end_{i}"), DataType::UInt64, true));
        fields.push(Field::new(format!("breaks_{i}"), DataType::UInt64, false));
    }
    Arc::new(Schema::new(fields))
});

/// The two passes over a review file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewPass {
    /// One [`BOUNDARIES`] row per chunk of [`file::ReviewFile::chunk_bytes`].
    Boundaries,
    /// [`ubm_jobs::schema::REVIEW_RECORDS`] rows, reading these splits (the composed boundaries).
    Records(Arc<Vec<Split>>),
}
