//! Where ubm's plans run: in-process DataFusion, an in-process Ballista, or a Ballista cluster,
//! behind one type ([`Engine`]).
//!
//! Also home to what every node needs to run the plans: ubm's review source
//! ([`review_source`]), the codecs that ship it ([`codec`]), the object stores ([`stores`],
//! [`registry`]) and the scheduler and executor processes that carry all of it ([`node`]).

pub mod codec;
pub mod engine;
pub mod jobs;
pub mod node;
pub mod registry;
pub mod review_source;
pub mod scheduler_api;
pub mod stores;

pub use engine::{Engine, EngineKind};

use datafusion::error::DataFusionError;

/// What can go wrong choosing or using a place to run plans.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A location a user named cannot be used.
    #[error("`{location}`: {reason}")]
    BadLocation { location: String, reason: String },
    /// An input could not be opened or is malformed; `reason` says which and what to do.
    #[error("{reason}")]
    Input { what: String, reason: String },
    /// The engine failed while doing `doing` (the source says how).
    #[error("{doing}")]
    Engine { doing: &'static str, source: DataFusionError },
    /// A Ballista job was cancelled (by `ubm cancel`, Ctrl-C or the scheduler's API).
    #[error("job {job_id} was cancelled")]
    Cancelled { job_id: String },
    /// The scheduler stopped answering while a job ran.
    #[error("the scheduler at {scheduler} stopped answering ({reason}); is it running? Nothing of the task was committed: rerun the date once the scheduler is back")]
    SchedulerLost { scheduler: String, reason: String },
    /// A scheduler or executor process failed while doing `doing`.
    #[error("{doing}")]
    Node { doing: &'static str, source: ballista_core::error::BallistaError },
}

impl ClusterError {
    /// An input error, worded without DataFusion's category prefixes.
    pub fn input(what: impl Into<String>, error: DataFusionError) -> ClusterError {
        let reason = match error {
            DataFusionError::Plan(m) | DataFusionError::Execution(m) | DataFusionError::Configuration(m) => m,
            other => other.to_string(),
        };
        ClusterError::Input { what: what.into(), reason }
    }

    /// Adapter for `map_err`: a scheduler or executor error while doing `doing`.
    pub fn node(doing: &'static str) -> impl FnOnce(ballista_core::error::BallistaError) -> ClusterError {
        move |source| ClusterError::Node { doing, source }
    }

    /// Adapter for `map_err`: an engine error while doing `doing`.
    pub fn engine(doing: &'static str) -> impl FnOnce(DataFusionError) -> ClusterError {
        move |source| ClusterError::Engine { doing, source }
    }
}
