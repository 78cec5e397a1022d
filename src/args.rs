//! Flags that several commands share, declared and validated once: dates, data locations,
//! engine, retries, polling, the scheduler's address.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use ubm_cluster::tls::ClusterTls;
use ubm_cluster::{EngineKind, SchedulerAddress};
use ubm_deploy::emr::PollPolicy;
use ubm_jobs::{RunDate, Semantics};
use ubm_pipeline::audit::AuditPolicy;
use ubm_pipeline::backfill::{Backfill, Redo};
use ubm_pipeline::sample::ensure_sample;
use ubm_pipeline::{Lake, Oltp, RetryPolicy, RunConfig, SecretUrl};

/// `--date D`, or `--from D1 --to D2` for a backfill.
#[derive(Debug, Args)]
pub struct DateArgs {
    /// The run date, YYYY-MM-DD. Conflicts with --from/--to.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub date: Option<RunDate>,
    /// First date of a backfill (inclusive); runs date by date up to --to.
    #[arg(long, requires = "to")]
    pub from: Option<RunDate>,
    /// Last date of a backfill (inclusive).
    #[arg(long, requires = "from")]
    pub to: Option<RunDate>,
}

impl DateArgs {
    /// The dates named, in order; `None` when neither form is given.
    pub fn named(&self) -> Result<Option<Vec<RunDate>>> {
        Ok(match (self.date, self.from, self.to) {
            (_, Some(from), Some(to)) if from > to => bail!("--from {from} is after --to {to}"),
            (_, Some(from), Some(to)) => Some(from.through(to)),
            (Some(date), _, _) => Some(vec![date]),
            _ => None,
        })
    }

    /// The dates named, or today (UTC) when none is.
    pub fn or_today(&self) -> Result<Vec<RunDate>> {
        Ok(self.named()?.unwrap_or_else(|| vec![RunDate::new(chrono::Utc::now().date_naive())]))
    }

    /// The dates named; naming none is an error.
    pub fn required(&self) -> Result<Vec<RunDate>> {
        self.named()?.ok_or_else(|| anyhow::anyhow!("name the date(s): --date D, or --from D1 --to D2"))
    }
}

/// Attempts per task before the run fails.
#[derive(Debug, Args)]
pub struct AttemptsArg {
    /// Attempts per task before the run fails (1 = no retry). Errors a retry cannot fix (a
    /// missing file, a bad header, a refused permission, a full disk) are never retried.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
}

/// How a failing task is retried.
#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub attempts: AttemptsArg,
    /// Wait before the first retry, in milliseconds; it doubles for each further retry.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_backoff_ms: u64,
}

impl RetryArgs {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy { attempts: self.attempts.attempts, first_backoff: Duration::from_millis(self.retry_backoff_ms) }
    }
}

/// Mutual TLS material, for a cluster started with `--tls`.
#[derive(Debug, Args)]
pub struct TlsArg {
    /// A TLS directory: ca.pem (the cluster's CA), cert.pem and key.pem (mode 0600).
    /// `ubm cluster certs --out DIR` makes DIR/node for the scheduler and executors and
    /// DIR/client for submitters. With it, every port speaks TLS only and every peer must
    /// present a certificate the cluster's CA signed.
    #[arg(long, env = "UBM_TLS_DIR", value_name = "DIR")]
    pub tls: Option<PathBuf>,
}

impl TlsArg {
    /// The material, loaded and checked; `None` without --tls.
    pub fn load(&self) -> Result<Option<Arc<ClusterTls>>> {
        Ok(self.tls.as_deref().map(ClusterTls::load).transpose()?)
    }
}

/// Where plans run.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Where plans run: `local` (in this process), `standalone` (an in-process Ballista
    /// scheduler and executor: the same plans, shipped as on a cluster), or the `df://HOST:PORT`
    /// of a scheduler started with `ubm cluster scheduler`.
    #[arg(long, default_value = "local", value_name = "local|standalone|df://HOST:PORT")]
    pub engine: EngineKind,
    #[command(flatten)]
    pub tls: TlsArg,
    #[command(flatten)]
    pub partitions: PartitionsArg,
}

/// How many partitions plans are split into.
#[derive(Debug, Args)]
pub struct PartitionsArg {
    /// Split the plans' scans into N partitions (the extract's slices, the review scan's ranges,
    /// the metric's scans). Default: as many as there are places to run them: this machine's cores
    /// in-process, the task slots of the cluster's executors on a cluster (asked of the scheduler
    /// when the run starts). The run report records what was used.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub partitions: Option<u16>,
}

impl PartitionsArg {
    pub fn get(&self) -> Option<usize> {
        self.partitions.map(usize::from)
    }
}

impl EngineArgs {
    /// The engine, with the TLS material on a cluster's address; --tls without a cluster is
    /// refused rather than ignored.
    pub fn kind(&self) -> Result<EngineKind> {
        let tls = self.tls.load()?;
        Ok(match (&self.engine, tls) {
            (EngineKind::Remote(address), tls) => EngineKind::Remote(address.clone().with_tls(tls)),
            (_, Some(_)) => bail!("--tls (or UBM_TLS_DIR) is for a cluster: use it with --engine df://HOST:PORT"),
            (kind, None) => kind.clone(),
        })
    }
}

/// A scheduler's address, for the commands that talk to a cluster.
#[derive(Debug, Args)]
pub struct SchedulerArg {
    /// The scheduler started with `ubm cluster scheduler`.
    #[arg(long, env = "UBM_SCHEDULER", value_name = "df://HOST:PORT", value_parser = parse_scheduler)]
    pub scheduler: SchedulerAddress,
    #[command(flatten)]
    pub tls: TlsArg,
}

impl SchedulerArg {
    /// The scheduler's address with the TLS material, if any.
    pub fn address(&self) -> Result<SchedulerAddress> {
        Ok(self.scheduler.clone().with_tls(self.tls.load()?))
    }
}

/// A duration as people write it: `90` or `90s` seconds, `15m` minutes, `4h` hours, `2d` days.
pub fn parse_duration_seconds(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: give a number of seconds, or a number followed by s, m, h or d (90m, 4h)")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("`{text}`: give a number of seconds, or a number followed by s, m, h or d (90m, 4h)"))
}

pub fn parse_scheduler(text: &str) -> Result<SchedulerAddress, String> {
    text.parse().map_err(|e: ubm_cluster::ClusterError| e.to_string())
}

/// How patiently to follow something on AWS.
#[derive(Debug, Args)]
pub struct PollArgs {
    /// First wait between polls, in seconds; it doubles up to 60 s.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub poll_seconds: f64,
    /// Give up following after this long (what is followed goes on; `ubm deploy status` shows
    /// it). Default: 1800 for `up`; for `run`, each step's --step-timeout plus 300.
    #[arg(long, value_name = "SECONDS")]
    pub timeout_seconds: Option<u64>,
}

impl PollArgs {
    pub fn policy(&self, default_timeout_seconds: u64) -> Result<PollPolicy> {
        if !(self.poll_seconds > 0.0 && self.poll_seconds <= 600.0) {
            bail!("--poll-seconds {}: use a number above 0 and at most 600", self.poll_seconds);
        }
        let first = Duration::from_secs_f64(self.poll_seconds);
        let timeout = Duration::from_secs(self.timeout_seconds.unwrap_or(default_timeout_seconds));
        Ok(PollPolicy { first, max: first.max(Duration::from_secs(60)), timeout })
    }
}

/// What to run and on which data: the flags `run` and `submit` share.
#[derive(Debug, Args)]
pub struct RunData {
    #[command(flatten)]
    pub dates: DateArgs,
    /// The vendor's movie_review.csv: a path or s3:// URL. `{date}` in it becomes the run date
    /// (e.g. s3://vendor/{date}/movie_review.csv). Default: the sample under --data-dir.
    #[arg(long, value_name = "PATH|URL")]
    pub reviews: Option<String>,
    /// The OLTP database holding retail.user_purchase: postgres://user:pass@host:5432/db or
    /// sqlite://path. Default: the embedded sample database under --data-dir.
    #[arg(long, env = "UBM_OLTP", hide_env_values = true, value_name = "URL")]
    pub oltp: Option<SecretUrl>,
    /// The lake: a directory or s3://bucket/prefix. Default: <data-dir>/lake.
    #[arg(long, value_name = "DIR|URL")]
    pub lake: Option<String>,
    /// Also load public.user_behavior_metric into this Postgres (or Redshift) database,
    /// replacing the date's rows in one transaction. The lake table is always written.
    #[arg(long, env = "UBM_WAREHOUSE", hide_env_values = true, value_name = "postgres://…")]
    pub warehouse: Option<SecretUrl>,
    /// `correct` aggregates each side then joins; `seed` reproduces the original SQL's
    /// fan-out (join first, then aggregate) so that old numbers can be reconciled.
    #[arg(long, default_value = "correct", value_name = "correct|seed")]
    pub semantics: Semantics,
    #[command(flatten)]
    pub retry: RetryArgs,
    /// When another run holds the date (on the same lake), wait up to this many seconds for it
    /// to finish instead of failing at once.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub wait_for_lease: u64,
    /// On a cluster: how long a job waits for an executor when the scheduler has none (all
    /// stopped, or none started yet) before the run fails and frees the date. No effect
    /// in-process.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub executor_wait: u64,
    /// Folder for the embedded defaults (sample data, SQLite database, lake).
    #[arg(long, default_value = "ubm-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Scale factor of the sample data made on first use (1 = 541,909 purchases, 100,000 reviews).
    #[arg(long, default_value_t = 1.0, value_name = "SF")]
    pub sample_scale: f64,
    /// Print the run report(s) as JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Do not refresh the lake's HTML report (<lake>/_report/index.html) after the run.
    #[arg(long)]
    pub no_report: bool,
    /// Change a check the day passes before it is published: NAME=SEVERITY[:BOUND], repeatable.
    /// A failed `error` check holds the day (nothing published, exit code 1, the table kept in
    /// held/ until `ubm publish` accepts it); `warn` publishes with the warning in the report;
    /// `off` skips it. Checks and defaults: rejects=error:0.1 (share of unreadable review
    /// records), reviews_change=warn:0.5 and purchases_change=warn:0.5 (change from the last
    /// complete day), no_customer=warn:0.9 (share of reviews matching no customer),
    /// purchases_zero=error, metric_rows_zero=error, reconcile=error (read = classified +
    /// rejected).
    #[arg(long = "check", value_name = "NAME=SEVERITY[:BOUND]")]
    pub checks: Vec<String>,
    /// Which dates of --from/--to run (Airflow's reprocess behavior): `failed`, every date that
    /// is not complete (never run, failed, mixed, damaged or held); `none`, only dates never
    /// run; `all`, the complete ones too. A date named with --date always runs.
    #[arg(long, default_value = "failed", value_name = "failed|none|all", requires = "from")]
    pub redo: Redo,
    /// Go on with the other dates of --from/--to when one fails (by default no date starts
    /// after a failure). The table at the end names every date's outcome.
    #[arg(long, requires = "from")]
    pub keep_going: bool,
    /// Run up to N dates of --from/--to at once, each under its own lease (a date is never run
    /// twice at the same time, by this command or another); on a cluster their jobs share the
    /// executors, which a day of mostly fixed latency leaves idle.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64), requires = "from")]
    pub parallel: u16,
    /// Print which dates would run and which would be skipped, and why; run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl RunData {
    /// How the dates run: a date named alone always runs; a range as --redo, --keep-going and
    /// --parallel say.
    pub fn backfill(&self) -> Backfill {
        if self.dates.from.is_none() {
            return Backfill::one_date();
        }
        Backfill { redo: self.redo, keep_going: self.keep_going, parallel: usize::from(self.parallel) }
    }

    /// The dates and configuration the flags name; makes the sample data when a default
    /// needs it.
    pub async fn into_config(self) -> Result<(Vec<RunDate>, RunConfig)> {
        let dates = self.dates.or_today()?;
        let audit = AuditPolicy::with(&self.checks)?;
        // Checked before anything else happens; their errors never show a password.
        let oltp = self.oltp.map(|url| Oltp::from_url("--oltp", url)).transpose()?;
        let warehouse = self.warehouse.map(|url| url.into_postgres("--warehouse")).transpose()?;
        for (flag, location) in [("--reviews", &self.reviews), ("--lake", &self.lake)] {
            if let Some(location) = location {
                ubm_cluster::store::check_location(flag, location)?;
            }
        }
        let (reviews, oltp) = match (self.reviews, oltp) {
            (Some(reviews), Some(oltp)) => (reviews, oltp),
            (reviews, oltp) => {
                let sample = ensure_sample(&self.data_dir, self.sample_scale).await?;
                (reviews.unwrap_or_else(|| sample.reviews.display().to_string()), oltp.unwrap_or(Oltp::Sqlite(sample.database)))
            }
        };
        let lake = self.lake.unwrap_or_else(|| self.data_dir.join("lake").display().to_string());
        let config = RunConfig {
            reviews,
            oltp,
            lake: Lake::open(&lake).await?,
            warehouse,
            semantics: self.semantics,
            retry: self.retry.policy(),
            wait_for_lease: Duration::from_secs(self.wait_for_lease),
            run_id: None,
            audit,
        };
        Ok((dates, config))
    }
}
