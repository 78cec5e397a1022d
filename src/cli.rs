//! Command-line interface: flags parse once into typed configuration, then each command runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ubm_cluster::{Engine, EngineKind};
use ubm_jobs::{RunDate, Semantics};

use crate::datagen::{DatagenConfig, generate};
use crate::lake::{Lake, Table};
use crate::oltp::Oltp;
use crate::pipeline::{RetryPolicy, RunConfig, classify_into, reviews_for, run_date};
use crate::secret::SecretUrl;
use crate::summary;

#[derive(Debug, Parser)]
#[command(
    name = "ubm",
    version,
    about = "Builds the daily user_behavior_metric table from purchases and movie reviews",
    long_about = "Builds the daily user_behavior_metric table: a Spark-compatible review classifier \
and a purchases/reviews join, as DataFusion plans that run in-process or on Ballista.\n\n\
Start with `ubm run`: with no flags it makes sample data under ./ubm-data on first use and runs \
the whole pipeline on an embedded database, no servers needed."
)]
pub struct Cli {
    /// Log more (debug level). RUST_LOG overrides the log filter entirely.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daily pipeline (ingest, extract, classify, metric, load) for one date or a range.
    Run(RunArgs),
    /// Classify one review file into DIR/insert_date=D/ (Parquet + _SUCCESS) and its rejects.
    Classify(ClassifyArgs),
    /// Generate deterministic sample data (movie_review.csv, user_purchase.csv) and load the OLTP table.
    Datagen(DatagenArgs),
    /// Run a Ballista scheduler or executor that carries ubm's functions, codecs and object
    /// stores; point `ubm submit --scheduler df://HOST:PORT` at the scheduler.
    #[command(subcommand)]
    Cluster(crate::cluster_cli::ClusterCommand),
    /// Run the daily pipeline on a Ballista cluster from this machine, showing each job's id and
    /// progress; --detach returns once the first job is submitted.
    Submit(crate::submit::SubmitArgs),
    /// Show the jobs a scheduler knows, or one job's stages and tasks.
    Status(crate::submit::StatusArgs),
    /// Cancel a job on a scheduler; a run waiting for it fails and commits nothing.
    Cancel(crate::submit::CancelArgs),
    /// Run ubm on AWS EMR: `up` (cluster), `run` (daily steps), `status`, `down`, `steps`,
    /// `airflow-dag`.
    #[command(subcommand)]
    Deploy(crate::deploy_cli::DeployCommand),
}

#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Where plans run: `local` (in this process), `standalone` (an in-process Ballista
    /// scheduler and executor: the same plans, shipped as on a cluster), or the `df://HOST:PORT`
    /// of a scheduler started with `ubm cluster scheduler`.
    #[arg(long, default_value = "local", value_name = "local|standalone|df://HOST:PORT")]
    pub engine: EngineKind,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: RunData,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What to run and on which data: the flags `run` and `submit` share.
#[derive(Debug, Args)]
pub struct RunData {
    /// The run date, YYYY-MM-DD. Defaults to today (UTC). Conflicts with --from/--to.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub date: Option<RunDate>,
    /// First date of a backfill (inclusive); runs date by date up to --to.
    #[arg(long, requires = "to")]
    pub from: Option<RunDate>,
    /// Last date of a backfill (inclusive).
    #[arg(long, requires = "from")]
    pub to: Option<RunDate>,
    /// The vendor's movie_review.csv: a path or s3:// URL. `{date}` in it becomes the run date
    /// (e.g. s3://vendor/{date}/movie_review.csv). Default: the sample under --data-dir.
    #[arg(long, value_name = "PATH|URL")]
    pub reviews: Option<String>,
    /// The OLTP database holding retail.user_purchase: postgres://user:pass@host:5432/db or
    /// sqlite://path. Default: the embedded sample database under --data-dir.
    #[arg(long, env = "UBM_OLTP", hide_env_values = true, value_name = "URL")]
    pub oltp: Option<Oltp>,
    /// The lake: a directory or s3://bucket/prefix. Default: <data-dir>/lake.
    #[arg(long, value_name = "DIR|URL")]
    pub lake: Option<String>,
    /// Also load public.user_behavior_metric into this Postgres (or Redshift) database,
    /// replacing the date's rows in one transaction. The lake table is always written.
    #[arg(long, env = "UBM_WAREHOUSE", hide_env_values = true, value_name = "postgres://…")]
    pub warehouse: Option<String>,
    /// `correct` aggregates each side then joins; `seed` reproduces the original SQL's
    /// fan-out (join first, then aggregate) so that old numbers can be reconciled.
    #[arg(long, default_value = "correct", value_name = "correct|seed")]
    pub semantics: Semantics,
    /// Attempts per task before the run fails (1 = no retry). Input errors are never retried.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// Wait before the first retry, in milliseconds; it doubles for each further retry.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_backoff_ms: u64,
    /// Folder for the embedded defaults (sample data, SQLite database, lake).
    #[arg(long, default_value = "ubm-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Scale factor of the sample data made on first use (1 = 541,909 purchases, 100,000 reviews).
    #[arg(long, default_value_t = 1.0, value_name = "SF")]
    pub sample_scale: f64,
    /// Print the run report(s) as JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// The review CSV (header with cid and review_str): a path or s3:// URL.
    #[arg(long, value_name = "PATH|URL")]
    pub input: String,
    /// The run date, YYYY-MM-DD: the partition insert_date=D is written.
    #[arg(long)]
    pub date: RunDate,
    /// Output table directory or s3:// prefix: writes DIR/insert_date=D/ and
    /// DIR/_rejects/insert_date=D/rejects.jsonl.
    #[arg(long, value_name = "DIR|URL")]
    pub output: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Print the counts as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DatagenArgs {
    /// Scale factor: 1 = 541,909 purchase lines and 100,000 reviews of about 1 KB.
    #[arg(long, default_value_t = 1.0, value_name = "SF")]
    pub scale: f64,
    /// Output directory for movie_review.csv and user_purchase.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Random seed; the same seed and scale always give the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also (re)create retail.user_purchase in this database and load it:
    /// postgres://… (through COPY) or sqlite://path.
    #[arg(long, env = "UBM_OLTP", hide_env_values = true, value_name = "URL")]
    pub oltp: Option<Oltp>,
}

pub async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Classify(args) => classify(args).await,
        Command::Datagen(args) => datagen(args).await,
        Command::Cluster(command) => crate::cluster_cli::dispatch(command).await,
        Command::Submit(args) => crate::submit::submit(args).await,
        Command::Status(args) => crate::submit::status(args).await,
        Command::Cancel(args) => crate::submit::cancel(args).await,
        Command::Deploy(command) => crate::deploy_cli::dispatch(command).await,
    }
}

/// A scale factor datagen can make: above 0, at most 1000 (about 100 GB of reviews).
fn check_scale(flag: &str, scale: f64) -> Result<()> {
    if !(scale > 0.0 && scale <= 1000.0) {
        bail!("{flag} {scale} is out of range: use a number above 0 and at most 1000");
    }
    Ok(())
}

async fn datagen(args: DatagenArgs) -> Result<ExitCode> {
    check_scale("--scale", args.scale)?;
    let clock = std::time::Instant::now();
    let config = DatagenConfig { scale: args.scale, seed: args.seed, out: args.out };
    let generated = tokio::task::spawn_blocking(move || generate(&config)).await??;
    eprintln!(
        "wrote {} reviews to {} and {} purchase lines to {} in {:.1}s",
        generated.reviews,
        generated.reviews_csv.display(),
        generated.purchases,
        generated.purchases_csv.display(),
        clock.elapsed().as_secs_f64()
    );
    if let Some(oltp) = args.oltp {
        let rows = oltp.load_csv(&generated.purchases_csv).await?;
        eprintln!("loaded {rows} rows into user_purchase at {oltp}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn classify(args: ClassifyArgs) -> Result<ExitCode> {
    let engine = Engine::start(args.engine.engine).await?;
    let lake = Lake::open(&args.output)?;
    let source = reviews_for(&args.input, args.date)?;
    let counts = classify_into(&engine, &lake, &source, args.date, Table(""), Table("_rejects")).await?;
    let partition = counts.partition.as_ref().map(|u| u.to_string()).unwrap_or_default();
    if args.json {
        let json = serde_json::json!({
            "records_read": counts.read, "classified": counts.classified, "rejected": counts.rejected,
            "null_reviews": counts.null_reviews, "positive_reviews": counts.positive, "partition": partition,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "classified {} of {} records ({} positive, {} null reviews kept as negative), {} rejected\npartition: {partition}",
            counts.classified, counts.read, counts.positive, counts.null_reviews, counts.rejected
        );
        if counts.rejected > 0 {
            println!("rejects:   {}rejects.jsonl", lake.partition_url(Table("_rejects"), args.date));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The embedded defaults: sample data and SQLite under `data_dir`, made on first use.
async fn ensure_sample(data_dir: &Path, scale: f64) -> Result<(PathBuf, PathBuf)> {
    let sample = data_dir.join("sample");
    let reviews = sample.join("movie_review.csv");
    let db = data_dir.join("oltp.sqlite");
    if reviews.is_file() && db.is_file() {
        return Ok((reviews, db));
    }
    check_scale("--sample-scale", scale)?;
    eprintln!("making sample data (scale {scale}) under {} on first use…", data_dir.display());
    let config = DatagenConfig { scale, seed: 42, out: sample };
    let generated = tokio::task::spawn_blocking(move || generate(&config)).await??;
    let partial = db.with_extension("sqlite.partial");
    Oltp::Sqlite(partial.clone()).load_csv(&generated.purchases_csv).await?;
    std::fs::rename(&partial, &db).with_context(|| format!("moving {} into place", db.display()))?;
    Ok((generated.reviews_csv, db))
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let json = args.data.json;
    let (dates, config) = run_config(args.data).await?;
    let engine = Engine::start(args.engine.engine).await?.with_job_observer(std::sync::Arc::new(crate::submit::LogJobs));
    run_dates(&engine, &config, dates, json).await
}

/// The dates `--date D` or `--from D1 --to D2` name, in order; `None` when neither is given.
pub fn named_dates(date: Option<RunDate>, from: Option<RunDate>, to: Option<RunDate>) -> Result<Option<Vec<RunDate>>> {
    Ok(match (date, from, to) {
        (_, Some(from), Some(to)) if from > to => bail!("--from {from} is after --to {to}"),
        (_, Some(from), Some(to)) => Some(from.through(to)),
        (Some(date), _, _) => Some(vec![date]),
        _ => None,
    })
}

/// The dates and configuration the data flags name; makes the sample data when a default
/// needs it.
pub async fn run_config(data: RunData) -> Result<(Vec<RunDate>, RunConfig)> {
    let today = || vec![RunDate::new(chrono::Utc::now().date_naive())];
    let dates = named_dates(data.date, data.from, data.to)?.unwrap_or_else(today);
    if let Some(w) = &data.warehouse
        && !(w.starts_with("postgres://") || w.starts_with("postgresql://"))
    {
        bail!("--warehouse `{}` is not a postgres:// URL", crate::secret::redact(w));
    }
    let (reviews, oltp) = match (data.reviews, data.oltp) {
        (Some(reviews), Some(oltp)) => (reviews, oltp),
        (reviews, oltp) => {
            let (sample_reviews, db) = ensure_sample(&data.data_dir, data.sample_scale).await?;
            (
                reviews.unwrap_or_else(|| sample_reviews.display().to_string()),
                oltp.unwrap_or(Oltp::Sqlite(db)),
            )
        }
    };
    let lake_location = data.lake.unwrap_or_else(|| data.data_dir.join("lake").display().to_string());
    let config = RunConfig {
        reviews,
        oltp,
        lake: Lake::open(&lake_location)?,
        warehouse: data.warehouse.map(SecretUrl::new),
        semantics: data.semantics,
        retry: RetryPolicy { attempts: data.attempts, first_backoff: Duration::from_millis(data.retry_backoff_ms) },
    };
    Ok((dates, config))
}

/// Runs `dates` in order on `engine`, stopping at the first failed date, and prints the
/// reports. Ctrl-C cancels the engine's running jobs and leaves every partition as it was.
pub async fn run_dates(engine: &Engine, config: &RunConfig, dates: Vec<RunDate>, json: bool) -> Result<ExitCode> {
    let all_dates = async {
        let mut reports = Vec::new();
        for date in dates {
            let report = run_date(engine, config, date).await?;
            let failed = report.status != "succeeded";
            reports.push(report);
            if failed {
                break; // later dates of a backfill would build on a broken day
            }
        }
        anyhow::Ok(reports)
    };
    // Kept alive through the Ctrl-C branch, so that its jobs are cancelled while they are still
    // followed; dropping it then removes its unfinished staging. Committed partitions stay.
    tokio::pin!(all_dates);
    let reports = tokio::select! {
        done = &mut all_dates => done?,
        _ = tokio::signal::ctrl_c() => {
            for job in engine.cancel_running_jobs().await {
                eprintln!("cancelled job {job}");
            }
            bail!("interrupted: every partition is either replaced whole or as it was; rerun the date to finish it");
        }
    };
    engine.settle_jobs().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            summary::print(report, config)?;
        }
    }
    let all_ok = reports.iter().all(|r| r.status == "succeeded");
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
