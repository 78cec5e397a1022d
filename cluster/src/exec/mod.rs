//! ubm's own execution nodes: the work its plans do that DataFusion's built-in nodes cannot,
//! each runnable in-process and on a Ballista executor alike.
//!
//! # Layout
//! - [`review`]: the vendor's review file read in byte ranges by many tasks (two passes).
//! - [`postgres`]: the OLTP extract in slices of one exported Postgres snapshot.
//! - [`parts`]: the part writer that ends classify and metric: each task writes its own files
//!   into the lake and returns one small report row.
//! - [`copy`]: the vendor file copied into the lake's raw zone on an executor.
//! - [`codec`]: how these nodes travel to a scheduler and its executors.
//!
//! Every error these nodes raise is wrapped where it is raised in a
//! [`crate::retry::TaskFailure`], so that its retry decision reaches the driver from an executor.

pub mod codec;
pub mod copy;
pub mod parts;
pub mod postgres;
pub mod review;
