//! `ubm deploy up`: upload ubm, create the EMR cluster, record it, wait until it is ready.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;

use crate::artifacts::{LeanBinary, environment_file};
use crate::emr::{ClusterSpec, ClusterView, Emr, PollPolicy};
use crate::state::DeployState;
use crate::steps::require_s3;
use crate::upload::ArtifactStore;
use crate::{DeployError, Result};

/// What `up` is asked for.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The bucket for the binary, scripts and EMR's logs (under `ubm/`), and its store.
    pub bucket: String,
    /// The review files and the lake the steps use (both `s3://`).
    pub reviews: String,
    pub lake: String,
    /// The cluster: name, release, nodes, network, roles, scheduler port. Its bootstrap script,
    /// arguments, log URI and tags are filled in by [`up`].
    pub cluster: ClusterSpec,
    /// The ubm binary the nodes run (checked for their architecture by the caller).
    pub binary: PathBuf,
    /// KEY=VALUE lines the nodes get (secrets), kept out of step arguments.
    pub env_file: Option<PathBuf>,
    pub scheduler_port: u16,
    /// Where the deployment is recorded for `run`, `status` and `down`.
    pub state_file: PathBuf,
    pub poll: PollPolicy,
}

/// What `up` tells its caller as it goes.
#[derive(Debug)]
pub enum UpEvent<'a> {
    Uploading { url: String },
    Uploaded { name: &'a str, sent: u64, total: u64 },
    Creating(&'a ClusterSpec),
    Created { cluster_id: &'a str },
    ClusterState(&'a ClusterView),
}

/// Uploads ubm, creates the cluster, records it before waiting (so that `down` finds it even if
/// the wait is interrupted), and waits until steps can run.
pub async fn up(
    deployment: Deployment,
    emr: &Emr,
    region: String,
    bucket_store: Arc<dyn ObjectStore>,
    mut on_event: impl FnMut(UpEvent),
) -> Result<ClusterView> {
    require_s3("--lake", &deployment.lake)?;
    require_s3("--reviews", &deployment.reviews)?;
    if tokio::fs::try_exists(&deployment.state_file).await.unwrap_or(false) {
        let known = DeployState::load(&deployment.state_file).await?;
        return Err(DeployError::Usage(format!(
            "{} already records cluster {}: run `ubm deploy down` first, or pass another --state file",
            deployment.state_file.display(),
            known.cluster_id
        )));
    }
    let env = environment_file(deployment.env_file.as_deref(), &region).await?;
    let version = env!("CARGO_PKG_VERSION");
    let artifacts = ArtifactStore::new(bucket_store, &deployment.bucket, version);
    on_event(UpEvent::Uploading { url: artifacts.url() });
    let binary = LeanBinary::of(&deployment.binary).await?;
    let uploaded = artifacts.upload_file("ubm", binary.path(), |sent, total| on_event(UpEvent::Uploaded { name: "ubm", sent, total })).await;
    binary.remove().await;
    let binary_url = uploaded?;
    let bootstrap_url = artifacts.put("bootstrap.sh", crate::bootstrap::BOOTSTRAP_SH.as_bytes().to_vec()).await?;
    let env_url = artifacts.put("ubm.env", env).await?;

    let spec = ClusterSpec {
        log_uri: format!("s3://{}/ubm/logs/", deployment.bucket),
        bootstrap_script: bootstrap_url,
        bootstrap_args: crate::bootstrap::bootstrap_args(&binary_url, Some(&env_url), deployment.scheduler_port),
        tags: vec![("ubm-version".to_string(), version.to_string())],
        ..deployment.cluster
    };
    on_event(UpEvent::Creating(&spec));
    let cluster_id = emr.create_cluster(&spec).await?;
    let state = DeployState {
        cluster_id: cluster_id.clone(),
        region,
        bucket: deployment.bucket.clone(),
        artifacts: artifacts.url(),
        version: version.to_string(),
        scheduler_port: deployment.scheduler_port,
        reviews: deployment.reviews.clone(),
        lake: deployment.lake.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    state.save(&deployment.state_file).await?;
    on_event(UpEvent::Created { cluster_id: &cluster_id });
    emr.wait_ready(&cluster_id, deployment.poll, |view| on_event(UpEvent::ClusterState(view))).await
}
