//! `ubm deploy down`: terminate the cluster, forget it, and remove what only it could use.

use std::path::Path;

use crate::emr::Emr;
use crate::state::DeployState;
use crate::upload::ArtifactStore;
use crate::{DeployError, Result};

/// What `down` did, for the caller to show.
#[derive(Debug)]
pub struct Down {
    pub cluster_id: String,
    /// With `purge`: how many objects went, and from where.
    pub deleted: Option<(usize, String)>,
    /// The local TLS material removed (it opens nothing once the cluster is gone).
    pub tls_removed: Option<String>,
}

/// Terminates the cluster `state` (read from `state_file`) records; with `purge`, deletes what
/// `up` uploaded (the node material included); removes the local TLS material and the state file.
pub async fn down(state: DeployState, state_file: &Path, emr: &Emr, purge: bool) -> Result<Down> {
    if purge && !state.artifacts.contains("/ubm/deployments/") {
        return Err(DeployError::Usage(format!(
            "--purge: {} records the artifacts folder {}, which every deployment of ubm {} made before deployments had folders of \
             their own shares; nothing was terminated. Run `ubm deploy down` without --purge, and delete that folder by hand once no \
             cluster uses it",
            state_file.display(),
            state.artifacts,
            state.version
        )));
    }
    emr.terminate(&state.cluster_id).await?;
    let mut deleted = None;
    if purge {
        let bad = |source| DeployError::Cluster { doing: format!("opening the bucket {}", state.bucket), source: Box::new(source) };
        let url = ubm_cluster::store::location_url(&format!("s3://{}", state.bucket)).map_err(bad)?;
        let store = ubm_cluster::store::object_store_for(&url).map_err(bad)?;
        let count = ArtifactStore::at(store, &state.artifacts)?.delete_all().await?;
        deleted = Some((count, state.artifacts.clone()));
    }
    let mut tls_removed = None;
    if let Some(tls) = &state.tls {
        match tokio::fs::remove_dir_all(&tls.local_dir).await {
            Ok(()) => tls_removed = Some(tls.local_dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DeployError::File { doing: "removing the cluster's TLS material", path: tls.local_dir.clone(), source }),
        }
    }
    DeployState::remove(state_file).await?;
    Ok(Down { cluster_id: state.cluster_id, deleted, tls_removed })
}
