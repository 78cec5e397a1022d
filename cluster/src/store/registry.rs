//! An object-store registry that builds the store for a URL the first time it is asked for.
//!
//! DataFusion's default registry knows only the local file system; a plan that names
//! `s3://bucket/...` fails on any node where nobody registered that bucket first. Ballista
//! executors and schedulers never see ubm's code that registers stores, so every node gets this
//! registry instead: it asks [`crate::store::object_store_for`], the same function the client
//! and the lake writer use, and caches the answer.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use url::Url;

use crate::store::object_store_for;

/// Local files and, on first use, any bucket `object_store_for` can reach.
#[derive(Debug, Default)]
pub struct UbmObjectStoreRegistry {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for UbmObjectStoreRegistry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        let store = object_store_for(url).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let base = Url::parse(&url[..url::Position::BeforePath]).map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.known.register_store(&base, store.clone());
        Ok(store)
    }
}
