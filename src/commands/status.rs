//! `ubm status`: the dates of a lake (complete, running, failed or mixed), or the jobs a
//! scheduler knows and one job's stages and tasks.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ubm_cluster::SchedulerAddress;
use ubm_cluster::scheduler_api::{JobProgress, JobState, SchedulerApi, tasks_done};
use ubm_jobs::RunDate;
use ubm_pipeline::Lake;
use ubm_pipeline::day::{DayState, dates, day_status};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A job id (as `submit` printed it), with --scheduler. Without it, every job the scheduler
    /// remembers.
    pub job: Option<String>,
    /// The scheduler started with `ubm cluster scheduler`: show its jobs.
    #[arg(long, env = "UBM_SCHEDULER", value_name = "df://HOST:PORT", value_parser = crate::args::parse_scheduler, required_unless_present = "lake")]
    pub scheduler: Option<SchedulerAddress>,
    #[command(flatten)]
    pub tls: crate::args::TlsArg,
    /// A lake (directory or s3://bucket/prefix): show each date as complete, running, failed or
    /// mixed (partitions of different runs). Exits 1 when a date shown is failed or mixed.
    #[arg(long, value_name = "DIR|URL")]
    pub lake: Option<String>,
    /// With --lake: only this date, with each partition and the run that wrote it.
    #[arg(long, requires = "lake")]
    pub date: Option<RunDate>,
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
    let Some(job_id) = args.job else {
        let mut jobs = api.jobs().await?;
        jobs.sort_by_key(|job| std::cmp::Reverse(job.start_time));
        if args.json {
            println!("{}", serde_json::to_string_pretty(&jobs)?);
        } else if jobs.is_empty() {
            println!("no jobs at {} (a scheduler forgets finished jobs a few minutes after they end)", api.scheduler());
        } else {
            println!("{:<14} {:<10} {:>7} {:>9}  NAME", "JOB", "STATE", "STAGES", "SECONDS");
            for job in &jobs {
                let end = if job.end_time > 0 { job.end_time } else { now_ms() };
                let seconds = end.saturating_sub(job.start_time) as f64 / 1000.0;
                let stages = format!("{}/{}", job.completed_stages, job.num_stages);
                println!("{:<14} {:<10} {:>7} {:>9.1}  {}", job.job_id, job.status, stages, seconds, job.job_name);
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let progress = api.progress(&job_id).await?.ok_or_else(|| api.unknown_job(&job_id))?;
    if args.json {
        let stages = api.stages(&job_id).await?;
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"job": job_json(&progress), "stages": stages}))?);
    } else {
        print_job(&api, &progress).await?;
    }
    Ok(if progress.state == JobState::Failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn job_json(p: &JobProgress) -> serde_json::Value {
    serde_json::json!({
        "job_id": p.job_id, "job_name": p.job_name, "state": p.state.to_string(), "detail": p.detail,
        "stages_done": p.stages_done, "stages": p.stages, "tasks_done": p.tasks_done, "tasks": p.tasks,
        "started_ms": p.started_ms, "ended_ms": p.ended_ms,
    })
}

async fn print_job(api: &SchedulerApi, p: &JobProgress) -> Result<()> {
    println!("job {} ({}): {}", p.job_id, p.job_name, p.state);
    println!("  stages {}/{} done, tasks {}/{} done", p.stages_done, p.stages, p.tasks_done, p.tasks);
    if p.state == JobState::Failed || p.state == JobState::Other {
        println!("  {}", p.detail);
    }
    if let Some(mut stages) = api.stages(&p.job_id).await? {
        stages.stages.sort_by_key(|stage| stage.stage_id.parse::<u64>().unwrap_or(u64::MAX));
        for stage in &stages.stages {
            let done = tasks_done(stage);
            println!(
                "  stage {:<4} {:<12} tasks {}/{}, rows in {} out {}",
                stage.stage_id,
                stage.stage_status,
                done,
                stage.tasks.len(),
                stage.input_rows,
                stage.output_rows
            );
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
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
        println!("{:<10}  {:<9} {:<36}  NOTE", "DATE", "STATE", "RUN");
        for day in &days {
            let run = day.report.as_ref().map_or("-", |r| r.run_id.as_str());
            println!("{:<10}  {:<9} {:<36}  {}", day.date, day.state, run, day.note);
        }
    }
    let unhealthy = days.iter().any(|d| matches!(d.state, DayState::Failed | DayState::Mixed));
    Ok(if unhealthy { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
