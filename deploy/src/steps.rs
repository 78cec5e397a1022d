//! The daily run as EMR steps, in the shape of the original pipeline's
//! `clean_movie_review.json`: `command-runner.jar` running a command on the master node, with
//! an `ActionOnFailure`.
//!
//! Each step runs `ubm submit` on the master node against the scheduler there. Secrets (the
//! OLTP and warehouse URLs) never appear in step arguments, which anyone with read access to
//! the cluster sees in the EMR console: `ubm-step`, which the bootstrap script installs, loads
//! them from `/etc/ubm/env` (uploaded by `ubm deploy up --env-file`).
//!
//! A step's command is bounded: coreutils' `timeout` stops `ubm submit` with SIGTERM once the
//! step has run `--step-timeout` (ubm then cancels its jobs and removes its staging), and kills
//! it 60 s later if it has not ended. The bound is in the step itself, not in whoever watches
//! it: at step concurrency 1 a step that hangs holds back every later step, the next day's
//! too, whether it was added by `ubm deploy run`, by the Airflow DAG or by hand, and whether or
//! not anyone is still watching. A step stopped so fails with exit code 124.

use serde::Serialize;

use crate::DeployError;

/// Where the master node's wrapper around `ubm` lives (see [`crate::bootstrap`]).
pub const STEP_COMMAND: &str = "/usr/local/bin/ubm-step";

/// What every step of a run shares, checked once by [`StepPlan::new`].
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// The scheduler's port on the master node.
    scheduler_port: u16,
    /// The vendor's review file; `{date}` in it becomes the run date.
    reviews: String,
    /// The lake, s3://bucket/prefix (every node must reach it).
    lake: String,
    /// `correct` or `seed`.
    semantics: String,
    /// Attempts per task inside one step.
    attempts: u32,
    /// How long one step may run before it is stopped.
    step_timeout_seconds: u64,
}

/// The exit code of a step stopped by its bound (coreutils `timeout`).
pub const TIMED_OUT_EXIT_CODE: i32 = 124;

/// What a step that has been asked to stop gets before it is killed.
const KILL_AFTER: &str = "--kill-after=60";

/// The attempts per task a step may ask for (what `ubm run --attempts` accepts).
pub const ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=20;

impl StepPlan {
    /// A plan whose steps a node will accept: reviews and lake on S3 (every node must reach
    /// them) and attempts in [`ATTEMPTS`].
    pub fn new(scheduler_port: u16, reviews: &str, lake: &str, semantics: &str, attempts: u32, step_timeout_seconds: u64) -> crate::Result<StepPlan> {
        require_s3("--reviews", reviews)?;
        require_s3("--lake", lake)?;
        if !ATTEMPTS.contains(&attempts) {
            return Err(DeployError::Usage(format!("--attempts {attempts}: use {} to {}", ATTEMPTS.start(), ATTEMPTS.end())));
        }
        if step_timeout_seconds == 0 {
            return Err(DeployError::Usage("--step-timeout 0: a step needs some time; give seconds, minutes (90m) or hours (4h)".to_string()));
        }
        Ok(StepPlan {
            scheduler_port,
            reviews: reviews.to_string(),
            lake: lake.to_string(),
            semantics: semantics.to_string(),
            attempts,
            step_timeout_seconds,
        })
    }

    /// How long one step may run.
    pub fn step_timeout_seconds(&self) -> u64 {
        self.step_timeout_seconds
    }
}

/// Every EMR node must reach `location`, so it must be on S3.
pub fn require_s3(flag: &str, location: &str) -> crate::Result<()> {
    ubm_cluster::store::check_location(flag, location).map_err(|e| DeployError::Usage(e.to_string()))?;
    if !location.starts_with("s3://") {
        return Err(DeployError::Usage(format!("{flag} `{location}`: every EMR node must reach it, so use an s3:// location")));
    }
    Ok(())
}

/// One step, serialized in the shape of EMR's `AddJobFlowSteps` API (boto3, Airflow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepDefinition {
    pub name: String,
    pub action_on_failure: String,
    pub hadoop_jar_step: HadoopJarStep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HadoopJarStep {
    pub jar: String,
    pub args: Vec<String>,
}

/// `CANCEL_AND_WAIT`: a failed date cancels the dates after it (they would build on a broken
/// day, as `ubm run` stops a backfill) and keeps the cluster for the next try.
pub const ACTION_ON_FAILURE: &str = "CANCEL_AND_WAIT";

/// One step per date, in date order. `dates` are `YYYY-MM-DD` (or an Airflow template such as
/// `{{ ds }}`, which Airflow renders before the step is added).
pub fn daily_steps(dates: &[String], plan: &StepPlan) -> Vec<StepDefinition> {
    dates.iter().map(|date| step_for(date, plan)).collect()
}

fn step_for(date: &str, plan: &StepPlan) -> StepDefinition {
    let args = [
        "timeout",
        KILL_AFTER,
        &plan.step_timeout_seconds.to_string(),
        STEP_COMMAND,
        "submit",
        "--scheduler",
        &format!("df://localhost:{}", plan.scheduler_port),
        "--date",
        date,
        "--reviews",
        &plan.reviews,
        "--lake",
        &plan.lake,
        "--semantics",
        &plan.semantics,
        "--attempts",
        &plan.attempts.to_string(),
    ];
    StepDefinition {
        name: format!("ubm daily run {date}"),
        action_on_failure: ACTION_ON_FAILURE.to_string(),
        hadoop_jar_step: HadoopJarStep { jar: "command-runner.jar".to_string(), args: args.iter().map(|a| a.to_string()).collect() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> StepPlan {
        StepPlan::new(50050, "s3://vendor/{date}/movie_review.csv", "s3://lake/ubm", "correct", 3, 7200).expect("valid")
    }

    #[test]
    fn a_plan_the_node_would_refuse_is_refused_here() {
        let err = StepPlan::new(50050, "s3://v/r.csv", "s3://l", "correct", 0, 60).expect_err("0 attempts").to_string();
        assert!(err.contains("--attempts 0") && err.contains("1 to 20"), "{err}");
        let err = StepPlan::new(50050, "/local/r.csv", "s3://l", "correct", 3, 60).expect_err("local").to_string();
        assert!(err.contains("--reviews") && err.contains("s3://"), "{err}");
    }

    #[test]
    fn steps_have_the_shape_emr_takes() {
        let steps = daily_steps(&["2024-03-01".into(), "2024-03-02".into()], &plan());
        let json = serde_json::to_value(&steps).expect("json");
        assert_eq!(json[0]["Name"], "ubm daily run 2024-03-01");
        assert_eq!(json[0]["ActionOnFailure"], "CANCEL_AND_WAIT");
        assert_eq!(json[0]["HadoopJarStep"]["Jar"], "command-runner.jar");
        let args: Vec<&str> = json[1]["HadoopJarStep"]["Args"].as_array().expect("args").iter().filter_map(|a| a.as_str()).collect();
        assert_eq!(
            &args[..9],
            ["timeout", "--kill-after=60", "7200", STEP_COMMAND, "submit", "--scheduler", "df://localhost:50050", "--date", "2024-03-02"]
        );
        assert!(args.contains(&"s3://vendor/{date}/movie_review.csv"), "{args:?}");
    }

    #[test]
    fn no_secret_flag_ever_reaches_a_step() {
        let steps = daily_steps(&["2024-03-01".into()], &plan());
        let args = &steps[0].hadoop_jar_step.args;
        assert!(!args.iter().any(|a| a == "--oltp" || a == "--warehouse"), "{args:?}");
    }
}
