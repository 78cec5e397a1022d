//! `ubm status`: the dates of a lake (complete, running, failed or mixed); or, of a
//! scheduler, its cluster-mode runs, one run, the jobs it knows and one job's stages and tasks,
//! or the executors registered with it.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ubm_cluster::SchedulerAddress;
use ubm_cluster::engine::scheduler_api::{JobState, SchedulerApi, executors_table, jobs_table};
use ubm_cluster::runs::client::RunsApi;
use ubm_cluster::runs::service::is_run_id;
use ubm_cluster::runs::{RunState, runs_table};
use ubm_jobs::RunDate;
use ubm_pipeline::Lake;
use ubm_pipeline::day::{DayState, dates, day_status};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A run id (as `submit --deploy-mode cluster` printed it) or a job id (as `submit`
    /// printed it), with --scheduler. Without it, every job the scheduler remembers.
    pub job: Option<String>,
    /// With --scheduler: list its cluster-mode runs (date, state, jobs done, the job under way)
    /// instead of its jobs. A run's connection URLs are never shown.
    #[arg(long, requires = "scheduler", conflicts_with_all = ["job", "executors"])]
    pub runs: bool,
    /// The scheduler started with `ubm cluster scheduler`: show its jobs.
    #[arg(long, env = "UBM_SCHEDULER", value_name = "df://HOST:PORT", value_parser = crate::args::parse_scheduler, required_unless_present = "lake")]
    pub scheduler: Option<SchedulerAddress>,
    #[command(flatten)]
    pub tls: crate::args::TlsArg,
    /// A lake (directory or s3://bucket/prefix): show each date as complete, running, failed,
    /// mixed (partitions of different runs), damaged (a committed file missing, cut short or
    /// not listed by its commit, named; or a record that cannot be read) or held (a check
    /// failed: nothing published until `ubm publish`; the failed checks with their numbers).
    /// Exits 1 when a date shown is failed, mixed, damaged or held.
    #[arg(long, value_name = "DIR|URL")]
    pub lake: Option<String>,
    /// With --lake: only this date, with each partition and the run that wrote it.
    #[arg(long, requires = "lake")]
    pub date: Option<RunDate>,
    /// With --scheduler: list the executors registered with it (id, Flight address, slots,
    /// last heartbeat) instead of its jobs.
    #[arg(long, requires = "scheduler", conflicts_with = "job")]
    pub executors: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    if let Some(lake) = &args.lake {
        return lake_status(lake, args.date, args.json).await;
    }
    let Some(scheduler) = args.scheduler else { anyhow::bail!("name a lake (--lake) or a scheduler (--scheduler)") };
    let api = SchedulerApi::new(scheduler.with_tls(args.tls.load()?))?;
    let runs = RunsApi::new(api.clone());
    if args.runs {
        let runs = runs.list().await?;
        match (args.json, runs.is_empty()) {
            (true, _) => println!("{}", serde_json::to_string_pretty(&runs)?),
            (false, true) => println!("no cluster-mode runs at {} (`ubm submit --deploy-mode cluster` makes one)", api.scheduler()),
            (false, false) => print!("{}", runs_table(&runs)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = args.job.as_deref().filter(|id| is_run_id(id)) {
        let run = runs.get(id).await?.ok_or_else(|| anyhow::anyhow!("no run {id} at {} (`ubm status --runs` lists them)", api.scheduler()))?;
        match args.json {
            true => println!("{}", serde_json::to_string_pretty(&run)?),
            false => print!("{}", run.describe()),
        }
        return Ok(if matches!(run.state, RunState::Failed | RunState::Cancelled) { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }
    if args.executors {
        let executors = api.executors().await?;
        match (args.json, executors.is_empty()) {
            (true, _) => println!("{}", serde_json::to_string_pretty(&executors)?),
            (false, true) => println!("no executors registered with {}: start one with `ubm cluster executor --scheduler …`", api.scheduler()),
            (false, false) => print!("{}", executors_table(&executors)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(job_id) = args.job else {
        let mut jobs = api.jobs().await?;
        jobs.sort_by_key(|job| std::cmp::Reverse(job.start_time));
        match (args.json, jobs.is_empty()) {
            (true, _) => println!("{}", serde_json::to_string_pretty(&jobs)?),
            (false, true) => println!("no jobs at {} (a scheduler forgets finished jobs a few minutes after they end)", api.scheduler()),
            (false, false) => print!("{}", jobs_table(&jobs)),
        }
        return Ok(ExitCode::SUCCESS);
    };
    let progress = api.progress(&job_id).await?.ok_or_else(|| api.unknown_job(&job_id))?;
    let stages = api.stages(&job_id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"job": progress, "stages": stages}))?);
    } else {
        print!("{}", progress.describe(stages));
    }
    Ok(if progress.state == JobState::Failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The dates of `lake` (or just `date`), each with its state.
async fn lake_status(location: &str, date: Option<RunDate>, json: bool) -> Result<ExitCode> {
    let lake = Lake::open_existing(location).await?;
    let dates = match date {
        Some(date) => vec![date],
        None => dates(&lake).await?,
    };
    let mut days = Vec::with_capacity(dates.len());
    for date in dates {
        days.push(day_status(&lake, date).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&days)?);
    } else if days.is_empty() {
        println!("no runs in {} yet", lake.root());
    } else if date.is_some() {
        print!("{}", days[0]);
    } else {
        print!("{}", ubm_pipeline::day::table(&days));
    }
    let unhealthy = days.iter().any(|d| matches!(d.state, DayState::Failed | DayState::Mixed | DayState::Damaged | DayState::Held));
    Ok(if unhealthy { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
