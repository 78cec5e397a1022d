//! `ubm deploy run`: adds the dates' steps to the cluster and follows each to its end, in date
//! order, never holding more than EMR's limit of active steps.
//!
//! EMR refuses an `AddJobFlowSteps` call that would make more than 256 steps PENDING, RUNNING or
//! CANCEL_PENDING on one cluster (a `ValidationException`, "Maximum number of active steps … for
//! cluster exceeded"), so a backfill of more dates than that cannot be added in one call. This
//! run never has more than 256 of its own steps added and not yet seen ended; when steps others
//! added fill the cluster, EMR's refusal is taken as "no room yet": the batch is halved and tried
//! again once a step ends. (Counting the cluster's active steps first would page through
//! `ListSteps` while the list changes under it, and a page's marker can then be refused.)

use std::collections::VecDeque;

use crate::emr::{Emr, PollPolicy, StepView};
use crate::steps::StepDefinition;
use crate::{DeployError, Result};

/// EMR's limit of PENDING, RUNNING and CANCEL_PENDING steps per cluster.
pub const ACTIVE_STEP_LIMIT: usize = 256;

/// What [`run_steps`] tells its caller as it goes.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// Steps added in one call; `left` dates wait for room.
    Added { steps: &'a [(String, String)], left: usize },
    /// EMR refused `batch` more steps for its limit: steps others added hold the cluster.
    Full { batch: usize },
    /// A step changed state.
    State(&'a StepView),
    /// A step completed.
    Completed(&'a StepView),
}

/// Adds `steps` in order, at most as many at a time as the cluster has room for, and waits for
/// each in order. Stops at the first step that does not complete: EMR cancels the ones added
/// after it (their `ActionOnFailure` is CANCEL_AND_WAIT), and the ones not added yet are not
/// added; the error names the step, and how many dates were never added.
pub async fn run_steps(
    emr: &Emr,
    cluster_id: &str,
    steps: Vec<StepDefinition>,
    policy: PollPolicy,
    mut on_event: impl FnMut(RunEvent),
) -> Result<()> {
    let mut queue: VecDeque<StepDefinition> = steps.into();
    // This run's steps added and not yet seen ended, in order.
    let mut added: VecDeque<(String, String)> = VecDeque::new();
    let mut batch_cap = ACTIVE_STEP_LIMIT;
    let mut refused_since: Option<std::time::Instant> = None;
    loop {
        let room = ACTIVE_STEP_LIMIT.saturating_sub(added.len()).min(queue.len()).min(batch_cap);
        if room > 0 {
            let batch: Vec<StepDefinition> = queue.iter().take(room).cloned().collect();
            match emr.add_steps(cluster_id, &batch).await {
                Ok(ids) => {
                    queue.drain(..room);
                    batch_cap = ACTIVE_STEP_LIMIT;
                    refused_since = None;
                    let named: Vec<(String, String)> = ids.into_iter().zip(batch.into_iter().map(|step| step.name)).collect();
                    on_event(RunEvent::Added { steps: &named, left: queue.len() });
                    added.extend(named);
                }
                Err(DeployError::StepLimit { .. }) => {
                    on_event(RunEvent::Full { batch: room });
                    batch_cap = (room / 2).max(1);
                    if added.is_empty() {
                        // Only others' steps hold the cluster: wait for room, as long as a step may take.
                        let since = *refused_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= policy.timeout {
                            return Err(DeployError::Timeout(format!(
                                "cluster {cluster_id} has held EMR's limit of {ACTIVE_STEP_LIMIT} active steps (others' steps) for {} s: no room to add this run's",
                                policy.timeout.as_secs()
                            )));
                        }
                        tokio::time::sleep(policy.first).await;
                        continue;
                    }
                }
                Err(other) => return Err(other),
            }
        }
        let Some((id, _name)) = added.pop_front() else { return Ok(()) };
        let view = emr.wait_step(cluster_id, &id, policy, |view| on_event(RunEvent::State(view))).await?;
        match view.into_result() {
            Ok(view) => on_event(RunEvent::Completed(&view)),
            Err(failed) if queue.is_empty() => return Err(failed),
            Err(failed) => {
                return Err(DeployError::NotAdded { failed: Box::new(failed), not_added: queue.iter().map(|s| s.name.clone()).collect() });
            }
        }
    }
}
