//! Where ubm's plans run: in-process DataFusion or Ballista, behind one type ([`Engine`]).
//!
//! Also home to what every node needs to run the plans: ubm's review source
//! ([`review_source`]), the codecs that ship it ([`codec`]) and the object stores
//! ([`stores`]).

pub mod codec;
pub mod engine;
pub mod review_source;
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
    /// An input could not be opened or is malformed (its own message says which and how).
    #[error("{what}: {source}")]
    Input { what: String, source: DataFusionError },
    /// The engine failed while doing `doing`.
    #[error("{doing}: {source}")]
    Engine { doing: &'static str, source: DataFusionError },
}

impl ClusterError {
    /// Adapter for `map_err`: an engine error while doing `doing`.
    pub fn engine(doing: &'static str) -> impl FnOnce(DataFusionError) -> ClusterError {
        move |source| ClusterError::Engine { doing, source }
    }
}
