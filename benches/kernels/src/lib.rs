//! ubm's kernels, compiled from their own source files in `jobs/src` (not copies), without the
//! rest of `ubm-jobs` and its DataFusion.

#[path = "../../../jobs/src/spark.rs"]
pub mod spark;

#[path = "../../../jobs/src/csv.rs"]
pub mod csv;
