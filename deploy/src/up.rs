//! `ubm deploy up`: upload ubm, create the EMR cluster, record it, wait until it is ready.

use std::path::{Path, PathBuf};

use crate::artifacts::{LeanBinary, environment_file};
use crate::emr::{ClusterSpec, ClusterView, Emr, PollPolicy};
use crate::state::{DeployState, DeployTls};
use crate::steps::require_s3;
use crate::upload::{ArtifactStore, new_deployment_prefix};
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
    /// Where the cluster's TLS material is made (`ubm cluster certs` layout): `node/` is
    /// uploaded for the nodes and then removed here; `client/` and `ca/` stay.
    pub tls_dir: PathBuf,
    /// The names the node certificates carry beside localhost; empty for EMR's own private
    /// host names (see [`default_tls_hosts`]).
    pub tls_hosts: Vec<String>,
}

/// The nodes' names in a VPC with Amazon's DNS: `*.ec2.internal` in us-east-1,
/// `*.REGION.compute.internal` elsewhere.
pub fn default_tls_hosts(region: &str) -> Vec<String> {
    vec!["*.ec2.internal".to_string(), format!("*.{region}.compute.internal")]
}

/// What `up` tells its caller as it goes; [`UpEvent::line`] gives the line to show.
#[derive(Debug)]
pub enum UpEvent<'a> {
    Uploading {
        url: String,
    },
    Uploaded {
        name: &'a str,
        sent: u64,
        total: u64,
    },
    /// The node material went to the bucket (server-side encrypted).
    TlsUploaded {
        url: &'a str,
    },
    Creating(&'a ClusterSpec),
    Created {
        cluster_id: &'a str,
    },
    ClusterState(&'a ClusterView),
}

impl UpEvent<'_> {
    /// The line to show: none for an upload that moved less than a quarter since the last line
    /// shown; `shown` is that upload percentage, updated here.
    pub fn line(&self, shown: &mut u64) -> Option<String> {
        Some(match self {
            UpEvent::Uploading { url } => format!("uploading ubm {} to {url}", env!("CARGO_PKG_VERSION")),
            UpEvent::Uploaded { name, sent, total } => {
                let percent = if *total == 0 { 100 } else { sent * 100 / total };
                if percent < *shown + 25 && sent != total {
                    return None;
                }
                *shown = percent;
                format!("  {name}: {} of {} MB", sent / 1_000_000, total / 1_000_000)
            }
            UpEvent::TlsUploaded { url } => format!("  node TLS material: {url} (server-side encrypted)"),
            UpEvent::Creating(spec) => {
                let core_types = if spec.core_types.is_empty() { spec.instance_type.clone() } else { spec.core_types.join(" or ") };
                let market = if spec.spot { "spot" } else { "on-demand" };
                format!(
                    "creating EMR cluster `{}`: 1 master {} + {} core {core_types} nodes ({market}), {}",
                    spec.name, spec.instance_type, spec.core_nodes, spec.release_label
                )
            }
            UpEvent::Created { cluster_id } => format!("cluster {cluster_id} created; waiting until it is ready"),
            UpEvent::ClusterState(view) => {
                let reason = view.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                format!("  {}: {}{reason}", view.id, view.state.as_str())
            }
        })
    }
}

/// Makes the cluster's CA, uploads ubm and the node material (server-side encrypted), creates
/// the cluster, records it before waiting (so that `down` finds it even if the wait is
/// interrupted), and waits until steps can run.
pub async fn up(deployment: Deployment, emr: &Emr, region: String, mut on_event: impl FnMut(UpEvent)) -> Result<ClusterView> {
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
    // Everything up puts in the bucket (the binary, the secrets, the node keys) is encrypted at rest.
    let bad_bucket = |source| DeployError::Cluster { doing: format!("--bucket {}", deployment.bucket), source: Box::new(source) };
    let bucket_url = ubm_cluster::store::location_url(&format!("s3://{}", deployment.bucket)).map_err(bad_bucket)?;
    let bucket_store = ubm_cluster::store::encrypted_object_store_for(&bucket_url).map_err(bad_bucket)?;
    let tls_hosts = if deployment.tls_hosts.is_empty() { default_tls_hosts(&region) } else { deployment.tls_hosts.clone() };
    make_cluster_tls(&deployment.tls_dir, tls_hosts).await?;
    let env = environment_file(deployment.env_file.as_deref(), &region).await?;
    let version = env!("CARGO_PKG_VERSION");
    let artifacts = ArtifactStore::new(bucket_store, &deployment.bucket, &new_deployment_prefix());
    on_event(UpEvent::Uploading { url: artifacts.url() });
    let binary = LeanBinary::of(&deployment.binary).await?;
    let uploaded = artifacts.upload_file("ubm", binary.path(), |sent, total| on_event(UpEvent::Uploaded { name: "ubm", sent, total })).await;
    binary.remove().await;
    let binary_url = uploaded?;
    let bootstrap_url = artifacts.put("bootstrap.sh", crate::bootstrap::BOOTSTRAP_SH.as_bytes().to_vec()).await?;
    let env_url = artifacts.put("ubm.env", env).await?;
    let tls_url = upload_node_material(&artifacts, &deployment.tls_dir).await?;
    on_event(UpEvent::TlsUploaded { url: &tls_url });

    let spec = ClusterSpec {
        log_uri: format!("s3://{}/ubm/logs/", deployment.bucket),
        bootstrap_script: bootstrap_url,
        bootstrap_args: crate::bootstrap::bootstrap_args(&binary_url, Some(&env_url), deployment.scheduler_port, Some(&tls_url)),
        tags: vec![("ubm-version".to_string(), version.to_string()), ("ubm-artifacts".to_string(), artifacts.url())],
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
        tls: Some(DeployTls { node_material: tls_url, local_dir: deployment.tls_dir.display().to_string() }),
    };
    state.save(&deployment.state_file).await?;
    on_event(UpEvent::Created { cluster_id: &cluster_id });
    let ready = emr.wait_ready(&cluster_id, deployment.poll, |view| on_event(UpEvent::ClusterState(view))).await;
    ready.map_err(|error| match error {
        DeployError::ClusterGone { cluster_id, state, reason, logs: None } => {
            let logs = Some(crate::emr::bootstrap_log_hint(&spec.log_uri, &cluster_id, reason.as_deref()));
            DeployError::ClusterGone { cluster_id, state, reason, logs }
        }
        other => other,
    })
}

/// Uploads `tls_dir/node/{ca,cert,key}.pem` under the deployment's folder (`tls/`), then
/// removes the local copy of the
/// node key: from now on it lives in the bucket and on the nodes only. Returns the folder's URL.
async fn upload_node_material(artifacts: &ArtifactStore, tls_dir: &Path) -> Result<String> {
    let node = tls_dir.join("node");
    let folder = "tls";
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        let path = node.join(name);
        let bytes = tokio::fs::read(&path).await.map_err(|source| DeployError::File {
            doing: "reading the node's TLS material",
            path: path.display().to_string(),
            source,
        })?;
        artifacts.put(&format!("{folder}/{name}"), bytes).await?;
    }
    tokio::fs::remove_dir_all(&node).await.map_err(|source| DeployError::File {
        doing: "removing the uploaded node material",
        path: node.display().to_string(),
        source,
    })?;
    Ok(artifacts.url_of(&format!("{folder}/")))
}

/// A CA of the cluster's own and its key pairs, in `dir`. Node certificates name `hosts` (the
/// names nodes have in the VPC's DNS) and localhost, where steps reach the scheduler. Material
/// left by an `up` that failed before recording a cluster belongs to no cluster and is replaced.
async fn make_cluster_tls(dir: &Path, hosts: Vec<String>) -> Result<()> {
    if tokio::fs::try_exists(dir).await.unwrap_or(false) {
        tokio::fs::remove_dir_all(dir).await.map_err(|source| DeployError::File {
            doing: "removing the material of an `up` that did not finish",
            path: dir.display().to_string(),
            source,
        })?;
    }
    ubm_cluster::tls::certs::make(&ubm_cluster::tls::certs::CertsRequest::new(dir.to_path_buf(), hosts)).map_err(|source| DeployError::Cluster {
        doing: format!("making the cluster's TLS material in {}", dir.display()),
        source: Box::new(source),
    })?;
    Ok(())
}
