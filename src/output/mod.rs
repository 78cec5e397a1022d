//! What commands print while a run goes: job progress.

pub mod progress;
