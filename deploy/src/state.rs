//! What `ubm deploy up` made, kept in a small JSON file so that `run`, `status` and `down` find
//! the cluster without flags. The file holds ids and locations, never credentials.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{DeployError, Result};

/// The default state file, in the working directory.
pub const DEFAULT_STATE_FILE: &str = "ubm-deploy.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployState {
    pub cluster_id: String,
    pub region: String,
    pub bucket: String,
    /// Where `up` uploaded the binary, scripts and node material: the deployment's own folder,
    /// `s3://BUCKET/ubm/deployments/ID/` (`s3://BUCKET/ubm/VERSION/` in files of ubm 0.x
    /// before it; `down --purge` deletes exactly this folder).
    pub artifacts: String,
    pub version: String,
    pub scheduler_port: u16,
    /// The review files and the lake the steps use unless told otherwise.
    pub reviews: String,
    pub lake: String,
    pub created_at: String,
    /// The cluster's mutual TLS: where the nodes fetched their material, and the client material
    /// kept on this machine. Absent in files of ubm versions before TLS.
    #[serde(default)]
    pub tls: Option<DeployTls>,
}

/// Where a deployment's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployTls {
    /// `s3://BUCKET/ubm/deployments/ID/tls/`: the node material (server-side encrypted).
    pub node_material: String,
    /// The folder made next to the state file: `client/` for `ubm submit --tls`, `ca/` to sign
    /// more.
    pub local_dir: String,
}

/// The folder of a deployment's TLS material, next to its state file: `ubm-deploy.json` →
/// `ubm-deploy-tls/`.
pub fn tls_dir_for(state_file: &Path) -> PathBuf {
    let stem = state_file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "ubm-deploy".to_string());
    state_file.with_file_name(format!("{stem}-tls"))
}

impl DeployState {
    /// What `ubm deploy status` shows: the cluster as EMR sees it, and what `up` recorded.
    pub fn describe(&self, view: &crate::emr::ClusterView) -> String {
        let mut text = format!("cluster {} ({}): {}\n", view.id, view.name, view.state.as_str());
        if let Some(reason) = &view.reason {
            text += &format!("  {reason}\n");
        }
        if let Some(dns) = &view.master_dns {
            text += &format!("  master node: {dns} (scheduler on port {})\n", self.scheduler_port);
        }
        if let Some(tls) = &self.tls {
            text += &format!("  mutual TLS: client material {}/client, node material {}\n", tls.local_dir, tls.node_material);
        }
        text += &format!("  region {}, ubm {} from {}\n", self.region, self.version, self.artifacts);
        text + &format!("  reviews {}, lake {}\n", self.reviews, self.lake)
    }

    /// Reads the state file; a missing file means no `deploy up` was run from here.
    pub async fn load(path: &Path) -> Result<DeployState> {
        let bytes = tokio::fs::read(path).await.map_err(|e| DeployError::State {
            path: path.display().to_string(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "no deployment recorded here: run `ubm deploy up` first, or pass --state with the file it wrote".to_string()
            } else {
                e.to_string()
            },
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| DeployError::State { path: path.display().to_string(), reason: format!("not a ubm deploy state file ({e})") })
    }

    /// Writes the state file whole (a temporary file renamed into place).
    pub async fn save(&self, path: &Path) -> Result<()> {
        let error = |e: std::io::Error| DeployError::State { path: path.display().to_string(), reason: e.to_string() };
        let json = serde_json::to_vec_pretty(self).map_err(|e| error(std::io::Error::other(e)))?;
        let partial = partial_path(path);
        tokio::fs::write(&partial, json).await.map_err(error)?;
        tokio::fs::rename(&partial, path).await.map_err(error)
    }

    /// Forgets the deployment (after `down`).
    pub async fn remove(path: &Path) -> Result<()> {
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DeployError::State { path: path.display().to_string(), reason: e.to_string() }),
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_round_trips_and_a_missing_file_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ubm-deploy.json");
        let err = DeployState::load(&path).await.expect_err("missing").to_string();
        assert!(err.contains("run `ubm deploy up` first"), "{err}");
        let state = DeployState {
            cluster_id: "j-1".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            artifacts: "s3://b/ubm/0.1.0/".into(),
            version: "0.1.0".into(),
            scheduler_port: 50050,
            reviews: "s3://vendor/{date}/movie_review.csv".into(),
            lake: "s3://lake/ubm".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            tls: Some(DeployTls { node_material: "s3://b/ubm/0.1.0/tls-1/".into(), local_dir: "ubm-deploy-tls".into() }),
        };
        state.save(&path).await.expect("save");
        assert_eq!(DeployState::load(&path).await.expect("load"), state);
        DeployState::remove(&path).await.expect("remove");
        assert!(!path.exists());
        assert_eq!(tls_dir_for(&path), dir.path().join("ubm-deploy-tls"));
    }
}
