//! Where ubm's plans run: in-process DataFusion, an in-process Ballista, or a Ballista cluster,
//! behind one type ([`Engine`]), and what every node of such a cluster needs to run them.
//!
//! # Layout
//! - [`engine`]: the one place that decides where a plan runs; following a Ballista job and the
//!   scheduler's REST API; a scheduler's address.
//! - [`exec`]: ubm's own execution nodes (the review scan, the Postgres slices, the part
//!   writer, the file copy) and the codec that ships them to executors.
//! - [`node`]: the scheduler and executor processes that carry all of it (`ubm cluster`), and
//!   a local cluster of child processes.
//! - [`tls`]: mutual TLS between those processes and their clients; the CA and its material.
//! - [`store`]: object stores for the locations users name, and the registry every node uses.
//! - [`retry`]: whether a failed attempt is worth another, decided from the cause's type, also
//!   for a task whose error crossed from an executor ([`TaskFailure`]).
//! - [`env_file`]: the nodes' environment file, read by ubm itself (`UBM_ENV_FILE`).
//! - [`error`]: what can go wrong ([`ClusterError`]).

pub mod engine;
pub mod env_file;
pub mod error;
pub mod exec;
pub mod node;
pub mod process;
pub mod retry;
pub mod runs;
pub mod store;
pub mod tls;

pub use engine::address::SchedulerAddress;
pub use engine::{Engine, EngineKind, Partitions};
pub use error::ClusterError;
pub use retry::TaskFailure;
