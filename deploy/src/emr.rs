//! The EMR API calls ubm makes: create the cluster, wait for it, add steps and follow them,
//! describe and terminate it. Credentials, region and endpoint come from the usual AWS sources
//! (`AWS_*` variables, profiles, instance roles; `AWS_ENDPOINT_URL` for moto or a VPC endpoint).

use std::time::{Duration, Instant};

use aws_sdk_emr::Client;
use aws_sdk_emr::config::Region;
use aws_sdk_emr::error::ProvideErrorMetadata;
use aws_sdk_emr::types::builders::JobFlowInstancesConfigBuilder;
use aws_sdk_emr::types::{
    ActionOnFailure, AutoTerminationPolicy, BootstrapActionConfig, ClusterState, EbsBlockDeviceConfig, EbsConfiguration, HadoopJarStepConfig,
    InstanceFleetConfig, InstanceFleetProvisioningSpecifications, InstanceFleetType, InstanceGroupConfig, InstanceRoleType, InstanceTypeConfig,
    JobFlowInstancesConfig, MarketType, ScriptBootstrapActionConfig, SpotProvisioningAllocationStrategy, SpotProvisioningSpecification,
    SpotProvisioningTimeoutAction, StepConfig, StepState, Tag, VolumeSpecification,
};

use crate::steps::StepDefinition;
use crate::{DeployError, Result};

/// What `ubm deploy up` asks EMR for.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    pub name: String,
    pub release_label: String,
    pub instance_type: String,
    pub core_nodes: i32,
    pub subnet: Option<String>,
    pub key_name: Option<String>,
    /// EMR's own logs (steps, bootstrap actions): `s3://BUCKET/ubm/logs/`.
    pub log_uri: String,
    pub bootstrap_script: String,
    pub bootstrap_args: Vec<String>,
    /// The IAM role EMR itself uses (EMR_DefaultRole) and the EC2 instance profile of the
    /// nodes (EMR_EC2_DefaultRole), as `aws emr create-default-roles` makes them.
    pub service_role: String,
    pub instance_profile: String,
    pub tags: Vec<(String, String)>,
    /// EMR's auto-termination: the cluster ends after this many idle seconds (60 to 604800);
    /// `None` keeps it until `down`.
    pub idle_timeout_seconds: Option<i64>,
    /// Whether EMR replaces core nodes YARN calls unhealthy (see `ubm deploy up --help`).
    pub replace_unhealthy_nodes: bool,
    /// A gp3 EBS volume of this many GB on every node (`/mnt`, where shuffle files go).
    pub ebs_gb: Option<i32>,
    /// Instance types EMR may choose from for the core nodes (instance fleets); empty: every
    /// node is `instance_type` (instance groups).
    pub core_types: Vec<String>,
    /// Core nodes on spot capacity (instance fleets), on demand when none is found in time.
    pub spot: bool,
}

/// Minutes EMR looks for spot capacity at launch before it takes on-demand nodes instead.
const SPOT_TIMEOUT_MINUTES: i32 = 10;

impl ClusterSpec {
    /// Instance fleets (several types, spot) rather than one instance group per role.
    fn uses_fleets(&self) -> bool {
        !self.core_types.is_empty() || self.spot
    }

    fn ebs(&self) -> Option<EbsConfiguration> {
        self.ebs_gb.map(|gb| {
            EbsConfiguration::builder()
                .ebs_block_device_configs(
                    EbsBlockDeviceConfig::builder()
                        .volume_specification(VolumeSpecification::builder().volume_type("gp3").size_in_gb(gb).build())
                        .volumes_per_instance(1)
                        .build(),
                )
                .build()
        })
    }

    /// One instance group per role, every node `instance_type`, on demand.
    fn instance_groups(&self, instances: JobFlowInstancesConfigBuilder) -> JobFlowInstancesConfigBuilder {
        let group = |role: InstanceRoleType, name: &str, count: i32| {
            InstanceGroupConfig::builder()
                .name(name)
                .instance_role(role)
                .market(MarketType::OnDemand)
                .instance_type(&self.instance_type)
                .instance_count(count)
                .set_ebs_configuration(self.ebs())
                .build()
        };
        instances.instance_groups(group(InstanceRoleType::Master, "ubm scheduler", 1)).instance_groups(group(
            InstanceRoleType::Core,
            "ubm executors",
            self.core_nodes,
        ))
    }

    /// A master fleet of one on-demand `instance_type` node, and a core fleet of `core_nodes`
    /// nodes of any of `core_types` (or `instance_type`), on spot when asked, where EMR finds
    /// capacity in the subnet's zone.
    fn instance_fleets(&self, instances: JobFlowInstancesConfigBuilder) -> JobFlowInstancesConfigBuilder {
        let typed = |instance_type: &str| InstanceTypeConfig::builder().instance_type(instance_type).set_ebs_configuration(self.ebs()).build();
        let master = InstanceFleetConfig::builder()
            .name("ubm scheduler")
            .instance_fleet_type(InstanceFleetType::Master)
            .target_on_demand_capacity(1)
            .instance_type_configs(typed(&self.instance_type))
            .build();
        let core_types = if self.core_types.is_empty() { std::slice::from_ref(&self.instance_type) } else { &self.core_types[..] };
        let mut core = InstanceFleetConfig::builder()
            .name("ubm executors")
            .instance_fleet_type(InstanceFleetType::Core)
            .set_instance_type_configs(Some(core_types.iter().map(|t| typed(t)).collect()));
        core = if self.spot {
            let spot = SpotProvisioningSpecification::builder()
                .timeout_duration_minutes(SPOT_TIMEOUT_MINUTES)
                .timeout_action(SpotProvisioningTimeoutAction::SwitchToOnDemand)
                .allocation_strategy(SpotProvisioningAllocationStrategy::PriceCapacityOptimized)
                .build();
            core.target_spot_capacity(self.core_nodes)
                .launch_specifications(InstanceFleetProvisioningSpecifications::builder().spot_specification(spot).build())
        } else {
            core.target_on_demand_capacity(self.core_nodes)
        };
        instances.instance_fleets(master).instance_fleets(core.build())
    }
}

/// Where EMR puts the bootstrap action's log of the node EMR's failure `reason` names
/// ("On the master instance (i-0abc…), bootstrap action 1 returned a non-zero return code"),
/// or of every node, under the cluster's log URI. EMR copies node logs there every 5 minutes.
pub fn bootstrap_log_hint(log_uri: &str, cluster_id: &str, reason: Option<&str>) -> String {
    let nodes = format!("{}/{cluster_id}/node", log_uri.trim_end_matches('/'));
    let instance = reason.and_then(|reason| {
        reason
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .find(|word| word.strip_prefix("i-").is_some_and(|hex| hex.len() >= 8 && hex.chars().all(|c| c.is_ascii_hexdigit())))
    });
    match instance {
        Some(instance) => {
            format!("the bootstrap log of {instance}: {nodes}/{instance}/bootstrap-actions/1/stderr.gz (EMR copies node logs there every 5 minutes)")
        }
        None => format!("each node's bootstrap log: {nodes}/INSTANCE/bootstrap-actions/1/stderr.gz (EMR copies node logs there every 5 minutes)"),
    }
}

/// A cluster as `describe` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub id: String,
    pub name: String,
    /// The SDK's own state (a state newer than this SDK arrives as `Unknown`).
    pub state: ClusterState,
    pub reason: Option<String>,
    pub master_dns: Option<String>,
}

impl ClusterView {
    /// Waiting or running: steps can run.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, ClusterState::Waiting | ClusterState::Running)
    }

    /// Terminating, terminated, or terminated with errors: no step will run on it again.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, ClusterState::Terminating | ClusterState::Terminated | ClusterState::TerminatedWithErrors)
    }
}

/// A step as `describe` sees it, with EMR's failure details when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    pub id: String,
    pub name: String,
    /// The SDK's own state.
    pub state: StepState,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub log_file: Option<String>,
}

impl StepView {
    pub fn is_terminal(&self) -> bool {
        matches!(self.state, StepState::Completed | StepState::Cancelled | StepState::Failed | StepState::Interrupted)
    }

    /// A terminal state other than COMPLETED as an error carrying EMR's explanation.
    pub fn into_result(self) -> Result<StepView> {
        if self.state == StepState::Completed {
            return Ok(self);
        }
        Err(DeployError::StepFailed {
            step_id: self.id,
            name: self.name,
            state: self.state,
            reason: self.reason,
            message: self.message,
            log_file: self.log_file,
        })
    }
}

/// How patiently to poll: the wait starts at `first` and doubles up to `max`; after `timeout`
/// the poll gives up.
#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    pub first: Duration,
    pub max: Duration,
    pub timeout: Duration,
}

/// The EMR API in one region.
#[derive(Clone)]
pub struct Emr {
    client: Client,
}

fn aws_error<E: std::error::Error + Send + Sync + 'static>(doing: impl Into<String>) -> impl FnOnce(E) -> DeployError {
    let doing = doing.into();
    move |e| DeployError::Aws { doing, source: Box::new(e) }
}

impl Emr {
    /// A client with credentials, endpoint and region from the usual AWS sources (`AWS_*`
    /// variables, the profile's config file, the instance's metadata); `region` overrides only
    /// the region. Returns the client and the region it uses; no region anywhere is an error.
    pub async fn connect(region: Option<&str>) -> Result<(Emr, String)> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_string()));
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| DeployError::Usage("no AWS region: pass --region, set AWS_REGION, or set one in your AWS profile".to_string()))?;
        Ok((Emr { client: Client::new(&config) }, region))
    }

    /// Creates the cluster and returns its id. The cluster stays up between steps.
    pub async fn create_cluster(&self, spec: &ClusterSpec) -> Result<String> {
        let instances = JobFlowInstancesConfig::builder();
        let instances = if spec.uses_fleets() { spec.instance_fleets(instances) } else { spec.instance_groups(instances) };
        let instances = instances
            .keep_job_flow_alive_when_no_steps(true)
            .termination_protected(false)
            .unhealthy_node_replacement(spec.replace_unhealthy_nodes)
            .set_ec2_subnet_id(spec.subnet.clone())
            .set_ec2_key_name(spec.key_name.clone())
            .build();
        let bootstrap = BootstrapActionConfig::builder()
            .name("start ubm scheduler and executors")
            .script_bootstrap_action(
                ScriptBootstrapActionConfig::builder().path(&spec.bootstrap_script).set_args(Some(spec.bootstrap_args.clone())).build(),
            )
            .build();
        let mut request = self
            .client
            .run_job_flow()
            .name(&spec.name)
            .release_label(&spec.release_label)
            .log_uri(&spec.log_uri)
            .instances(instances)
            .bootstrap_actions(bootstrap)
            .service_role(&spec.service_role)
            .job_flow_role(&spec.instance_profile)
            .set_auto_termination_policy(spec.idle_timeout_seconds.map(|seconds| AutoTerminationPolicy::builder().idle_timeout(seconds).build()))
            .visible_to_all_users(true);
        for (key, value) in &spec.tags {
            request = request.tags(Tag::builder().key(key).value(value).build());
        }
        let created = request.send().await.map_err(aws_error("creating the EMR cluster (RunJobFlow)"))?;
        created
            .job_flow_id()
            .map(str::to_string)
            .ok_or_else(|| DeployError::AwsAnswer { doing: "creating the EMR cluster".into(), missing: "EMR returned no cluster id" })
    }

    pub async fn describe_cluster(&self, cluster_id: &str) -> Result<ClusterView> {
        let answer =
            self.client.describe_cluster().cluster_id(cluster_id).send().await.map_err(aws_error(format!("describing cluster {cluster_id}")))?;
        let cluster = answer
            .cluster()
            .ok_or_else(|| DeployError::AwsAnswer { doing: format!("describing cluster {cluster_id}"), missing: "no such cluster" })?;
        let status = cluster.status();
        Ok(ClusterView {
            id: cluster_id.to_string(),
            name: cluster.name().unwrap_or_default().to_string(),
            state: status.and_then(|s| s.state()).cloned().unwrap_or_else(|| ClusterState::from("UNKNOWN")),
            reason: status.and_then(|s| s.state_change_reason()).and_then(|r| r.message()).map(str::to_string),
            master_dns: cluster.master_public_dns_name().map(str::to_string),
        })
    }

    /// Polls the cluster until steps can run, calling `on_change` at every new state. Fails if
    /// it terminates instead, or after `policy.timeout`.
    pub async fn wait_ready(&self, cluster_id: &str, policy: PollPolicy, mut on_change: impl FnMut(&ClusterView)) -> Result<ClusterView> {
        let mut backoff = Backoff::new(policy, format!("cluster {cluster_id} to be ready"));
        let mut last_state = None;
        loop {
            let view = self.describe_cluster(cluster_id).await?;
            if last_state.as_ref() != Some(&view.state) {
                on_change(&view);
                last_state = Some(view.state.clone());
            }
            if view.is_ended() {
                return Err(DeployError::ClusterGone { cluster_id: view.id, state: view.state, reason: view.reason, logs: None });
            }
            if view.is_ready() {
                return Ok(view);
            }
            backoff.wait().await?;
        }
    }

    /// Adds the steps in order; returns their ids.
    pub async fn add_steps(&self, cluster_id: &str, steps: &[StepDefinition]) -> Result<Vec<String>> {
        let configs: Vec<StepConfig> = steps.iter().map(step_config).collect();
        let added = self.client.add_job_flow_steps().job_flow_id(cluster_id).set_steps(Some(configs)).send().await.map_err(|e| {
            // EMR's refusal for its limit of active steps is a ValidationException whose
            // message says so (the SDK models no error of its own for it).
            let limit = e.as_service_error().and_then(|s| s.message()).is_some_and(|m| m.contains("Maximum number of active steps"));
            if limit {
                DeployError::StepLimit { cluster_id: cluster_id.to_string() }
            } else {
                aws_error(format!("adding steps to cluster {cluster_id}"))(e)
            }
        })?;
        Ok(added.step_ids().to_vec())
    }

    pub async fn describe_step(&self, cluster_id: &str, step_id: &str) -> Result<StepView> {
        let answer = self
            .client
            .describe_step()
            .cluster_id(cluster_id)
            .step_id(step_id)
            .send()
            .await
            .map_err(aws_error(format!("describing step {step_id}")))?;
        let step = answer.step().ok_or_else(|| DeployError::AwsAnswer { doing: format!("describing step {step_id}"), missing: "no such step" })?;
        let status = step.status();
        let failure = status.and_then(|s| s.failure_details());
        Ok(StepView {
            id: step_id.to_string(),
            name: step.name().unwrap_or_default().to_string(),
            state: status.and_then(|s| s.state()).cloned().unwrap_or_else(|| StepState::from("UNKNOWN")),
            reason: failure.and_then(|f| f.reason()).map(str::to_string),
            message: failure.and_then(|f| f.message()).map(str::to_string),
            log_file: failure.and_then(|f| f.log_file()).map(str::to_string),
        })
    }

    /// Polls a step to a terminal state, calling `on_change` at every new state.
    pub async fn wait_step(&self, cluster_id: &str, step_id: &str, policy: PollPolicy, mut on_change: impl FnMut(&StepView)) -> Result<StepView> {
        let mut backoff = Backoff::new(policy, format!("step {step_id}"));
        let mut last_state = None;
        loop {
            let view = self.describe_step(cluster_id, step_id).await?;
            if last_state.as_ref() != Some(&view.state) {
                on_change(&view);
                last_state = Some(view.state.clone());
            }
            if view.is_terminal() {
                return Ok(view);
            }
            backoff.wait().await?;
        }
    }

    pub async fn terminate(&self, cluster_id: &str) -> Result<()> {
        self.client.terminate_job_flows().job_flow_ids(cluster_id).send().await.map_err(aws_error(format!("terminating cluster {cluster_id}")))?;
        Ok(())
    }
}

fn step_config(step: &StepDefinition) -> StepConfig {
    StepConfig::builder()
        .name(&step.name)
        .action_on_failure(ActionOnFailure::from(step.action_on_failure.as_str()))
        .hadoop_jar_step(HadoopJarStepConfig::builder().jar(&step.hadoop_jar_step.jar).set_args(Some(step.hadoop_jar_step.args.clone())).build())
        .build()
}

/// The waits between polls: `policy.first`, then twice as long each time up to `policy.max`,
/// until `policy.timeout` has passed since the first poll.
struct Backoff {
    policy: PollPolicy,
    what: String,
    deadline: Instant,
    next: Duration,
}

impl Backoff {
    fn new(policy: PollPolicy, what: String) -> Self {
        Self { policy, what, deadline: Instant::now() + policy.timeout, next: policy.first }
    }

    /// Sleeps until the next poll, or fails once the timeout has passed.
    async fn wait(&mut self) -> Result<()> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(DeployError::Timeout(format!(
                "gave up waiting for {} after {} s (raise --timeout-seconds to wait longer; nothing was cancelled)",
                self.what,
                self.policy.timeout.as_secs()
            )));
        }
        tokio::time::sleep(self.next.min(self.deadline - now)).await;
        self.next = (self.next * 2).min(self.policy.max);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_bootstrap_points_at_the_nodes_log() {
        let reason = "On the master instance (i-02093432d9c865f08), bootstrap action 1 returned a non-zero return code";
        let hint = bootstrap_log_hint("s3://b/ubm/logs/", "j-ABC", Some(reason));
        assert!(hint.contains("s3://b/ubm/logs/j-ABC/node/i-02093432d9c865f08/bootstrap-actions/1/stderr.gz"), "{hint}");
        let hint = bootstrap_log_hint("s3://b/ubm/logs/", "j-ABC", Some("Terminated by user request"));
        assert!(hint.contains("s3://b/ubm/logs/j-ABC/node/INSTANCE/bootstrap-actions/1/stderr.gz"), "{hint}");
    }

    #[tokio::test]
    async fn poll_backs_off_and_gives_up_at_its_timeout() {
        let policy = PollPolicy { first: Duration::from_millis(10), max: Duration::from_millis(40), timeout: Duration::from_millis(200) };
        let mut backoff = Backoff::new(policy, "nothing".to_string());
        let mut calls = 0;
        let started = Instant::now();
        let err = loop {
            calls += 1;
            if let Err(e) = backoff.wait().await {
                break e.to_string();
            }
        };
        assert!(err.contains("gave up waiting for nothing"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        // 10 + 20 + 40 + 40 + … ms: far fewer calls than a fixed 10 ms poll would make.
        assert!((4..=9).contains(&calls), "{calls} calls");
    }
}
