//! What ubm computes: the review classifier and the `user_behavior_metric` join as pure
//! DataFusion plan builders, with the schemas and the Spark-compatible semantics they rely on.
//!
//! Nothing here does I/O, creates a runtime or a `SessionContext`: callers pass sources in as
//! `LogicalPlan`s and decide where the result runs (see the `ubm-cluster` crate).

pub mod classify;
pub mod csv;
pub mod date;
pub mod metric;
pub mod purchases;
pub mod schema;
pub mod spark;
pub mod splits;
pub mod udf;

pub use classify::classify_reviews;
pub use date::RunDate;
pub use metric::{Semantics, user_behavior_metric};
