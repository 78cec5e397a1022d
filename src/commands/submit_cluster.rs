//! `ubm submit --deploy-mode cluster`: the run handed to a driver on the cluster (part of the
//! `submit` command).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ubm_cluster::ClusterError;
use ubm_cluster::engine::scheduler_api::SchedulerApi;
use ubm_cluster::runs::client::RunsApi;
use ubm_cluster::runs::{RunRequest, RunState, RunView, job_line};

use crate::args::{RunData, SchedulerArg};

/// How often `--follow` asks for the run's progress.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// How long `--follow` keeps asking a scheduler that does not answer (it may be restarting;
/// the run resumes then) before it gives up following.
const FOLLOW_PATIENCE: Duration = Duration::from_secs(300);

/// Hands the run `data` names to the cluster behind `scheduler`; follows it with `follow`.
pub async fn submit_to_cluster(scheduler: &SchedulerArg, data: &RunData, partitions: Option<u16>, follow: bool) -> Result<ExitCode> {
    let request = request_of(data, partitions)?;
    let runs = RunsApi::new(SchedulerApi::new(scheduler.address()?)?);
    let run = runs.submit(&request).await?;
    let hint = scheduler_flags(scheduler);
    if data.json && !follow {
        println!("{}", serde_json::to_string_pretty(&run)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("submitted run {} ({}) to {}: its driver runs on the cluster", run.id, run.dates(), runs.scheduler());
    if !follow {
        println!("{}", run.id);
        eprintln!("this machine may go away now; follow it: ubm status {} {hint}   cancel it: ubm cancel {} {hint}", run.id, run.id);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("following it (Ctrl-C stops following only; cancel it with: ubm cancel {} {hint})", run.id);
    let ended = follow_run(&runs, &run.id).await?;
    if data.json {
        println!("{}", serde_json::to_string_pretty(&ended)?);
    } else {
        print!("{}", ended.summary.as_deref().unwrap_or_default());
        for line in &ended.log_tail {
            eprintln!("  {line}");
        }
    }
    eprintln!("run {} {} ({})", ended.id, ended.state, ended.exit.as_deref().unwrap_or("ended"));
    Ok(if ended.state == RunState::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The request for the cluster: the flags of `ubm run` that name data the cluster reaches.
fn request_of(data: &RunData, partitions: Option<u16>) -> Result<RunRequest> {
    let (Some(reviews), Some(lake)) = (&data.reviews, &data.lake) else {
        bail!(
            "--deploy-mode cluster needs --reviews and --lake, named as the cluster's nodes reach them (an s3:// URL, or an \
             absolute path on a file system the nodes share): the sample data under --data-dir is this machine's"
        );
    };
    let dates = data.dates.or_today()?;
    let (Some(from), Some(to)) = (dates.first(), dates.last()) else { bail!("no date to run") };
    // Checked here, where the user is, not by the driver on the cluster.
    ubm_pipeline::audit::AuditPolicy::with(&data.checks)?;
    for (flag, location) in [("--reviews", reviews), ("--lake", lake)] {
        ubm_cluster::store::check_location(flag, location)?;
    }
    // `--oltp`/`--warehouse` may come from this machine's UBM_OLTP/UBM_WAREHOUSE: say so, since
    // they then replace the cluster's own.
    for (name, url) in [("UBM_OLTP", &data.oltp), ("UBM_WAREHOUSE", &data.warehouse)] {
        if let Some(url) = url
            && std::env::var(name).is_ok_and(|value| value == url.expose())
        {
            eprintln!("{name} of this machine goes to the cluster as the run's {} (unset it to use the scheduler's own)", url.redacted());
        }
    }
    Ok(RunRequest {
        from: from.to_string(),
        to: to.to_string(),
        reviews: reviews.clone(),
        lake: lake.clone(),
        oltp: data.oltp.as_ref().map(|url| url.expose().to_string()),
        warehouse: data.warehouse.as_ref().map(|url| url.expose().to_string()),
        semantics: data.semantics.to_string(),
        attempts: data.retry.attempts.attempts,
        retry_backoff_ms: data.retry.retry_backoff_ms,
        wait_for_lease: data.wait_for_lease,
        executor_wait: data.executor_wait,
        partitions,
        no_report: data.no_report,
        checks: data.checks.clone(),
        // A date named alone always runs; a range does what --redo says.
        redo: if data.dates.from.is_some() { data.redo.to_string() } else { "all".to_string() },
        keep_going: data.keep_going,
        parallel: data.parallel,
    })
}

/// `--scheduler X [--tls DIR]`, as the hints print it.
fn scheduler_flags(scheduler: &SchedulerArg) -> String {
    match &scheduler.tls.tls {
        Some(dir) => format!("--scheduler {} --tls {}", scheduler.scheduler, dir.display()),
        None => format!("--scheduler {}", scheduler.scheduler),
    }
}

/// Prints each job of run `id` as it changes until the run ends; rides out a scheduler that
/// stops answering for a while (a restart: the run resumes).
async fn follow_run(runs: &RunsApi, id: &str) -> Result<RunView> {
    let mut shown: HashMap<String, String> = HashMap::new();
    let mut unanswered_since: Option<Instant> = None;
    let mut starts = 0;
    loop {
        match runs.get(id).await {
            Ok(Some(run)) => {
                if unanswered_since.take().is_some() {
                    eprintln!("the scheduler answers again");
                }
                if starts != 0 && run.driver_starts > starts {
                    eprintln!("the run's driver started again (the scheduler restarted); the run resumes, keeping what it committed");
                }
                starts = run.driver_starts;
                for job in &run.progress.jobs {
                    let line = job_line(job);
                    if shown.get(&job.job_id) != Some(&line) {
                        eprintln!("  {line}");
                        shown.insert(job.job_id.clone(), line);
                    }
                }
                if run.state.has_ended() {
                    return Ok(run);
                }
            }
            Ok(None) => bail!("the scheduler at {} no longer knows run {id} (was it started with another --state-dir?)", runs.scheduler()),
            Err(e @ (ClusterError::SchedulerUnreachable { .. } | ClusterError::NoScheduler { .. })) => {
                let since = *unanswered_since.get_or_insert_with(|| {
                    eprintln!("the scheduler does not answer ({e}); still following, for up to {} s", FOLLOW_PATIENCE.as_secs());
                    Instant::now()
                });
                if since.elapsed() > FOLLOW_PATIENCE {
                    bail!(
                        "stopped following run {id}: the scheduler has not answered for {} s ({e}); the run goes on if the scheduler does",
                        FOLLOW_PATIENCE.as_secs()
                    );
                }
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
