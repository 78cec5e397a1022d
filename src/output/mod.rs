//! What commands print: job progress while a run goes, the summary when it ends.

pub mod progress;
pub mod summary;
