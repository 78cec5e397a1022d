//! The EMR API calls ubm makes: create the cluster, wait for it, add steps and follow them,
//! describe and terminate it. Credentials, region and endpoint come from the usual AWS sources
//! (`AWS_*` variables, profiles, instance roles; `AWS_ENDPOINT_URL` for moto or a VPC endpoint).

use std::time::{Duration, Instant};

use aws_sdk_emr::Client;
use aws_sdk_emr::config::Region;
use aws_sdk_emr::types::{
    ActionOnFailure, BootstrapActionConfig, ClusterState, HadoopJarStepConfig, InstanceGroupConfig, InstanceRoleType, JobFlowInstancesConfig,
    MarketType, ScriptBootstrapActionConfig, StepConfig, StepState, Tag,
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
        let group = |role: InstanceRoleType, name: &str, count: i32| {
            InstanceGroupConfig::builder()
                .name(name)
                .instance_role(role)
                .market(MarketType::OnDemand)
                .instance_type(&spec.instance_type)
                .instance_count(count)
                .build()
        };
        let instances = JobFlowInstancesConfig::builder()
            .instance_groups(group(InstanceRoleType::Master, "ubm scheduler", 1))
            .instance_groups(group(InstanceRoleType::Core, "ubm executors", spec.core_nodes))
            .keep_job_flow_alive_when_no_steps(true)
            .termination_protected(false)
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
                return Err(DeployError::ClusterGone { cluster_id: view.id, state: view.state, reason: view.reason });
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
        let added = self
            .client
            .add_job_flow_steps()
            .job_flow_id(cluster_id)
            .set_steps(Some(configs))
            .send()
            .await
            .map_err(aws_error(format!("adding steps to cluster {cluster_id}")))?;
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
