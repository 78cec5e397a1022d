//! Where ubm's plans run: in-process DataFusion, an in-process Ballista, or a Ballista cluster,
//! behind one type ([`Engine`]).
//!
//! Also home to what every node needs to run the plans: ubm's review source
//! ([`review_source`]), the codecs that ship it ([`codec`]), the object stores ([`stores`],
//! [`registry`]) and the scheduler and executor processes that carry all of it ([`node`]), with
//! mutual TLS between them ([`tls`], material from [`certs`]); and the tasks that write their own
//! rows into the lake ([`parts`]), read the OLTP table in slices ([`pg_slices`]) and copy the
//! vendor's file ([`copy`]).

pub mod address;
pub mod certs;
pub mod codec;
pub mod copy;
pub mod engine;
pub mod error;
pub mod jobs;
pub mod local;
pub mod node;
pub mod parts;
pub mod pg_slices;
pub mod registry;
pub mod retry;
pub mod review_scan;
pub mod review_source;
pub mod scheduler_api;
pub mod stores;
pub mod tls;

pub use address::SchedulerAddress;
pub use engine::{Engine, EngineKind};
pub use error::ClusterError;
