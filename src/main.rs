//! `ubm`: the `user_behavior_metric` pipeline as DataFusion plans.

mod args;
mod commands;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc_compat;
mod output;
mod runner;
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as DataFusion's CLI: reused memory instead of fresh zeroed pages (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
struct Cli {
    /// Log more (debug level). RUST_LOG overrides the log filter entirely.
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    // SAFETY: the first thing ubm does: no other thread exists yet (the runtime starts below).
    if let Err(err) = unsafe { ubm_cluster::env_file::load_into_process() } {
        eprintln!("error: {}={err}", ubm_cluster::env_file::ENV_FILE_VARIABLE);
        return ExitCode::from(2);
    }
    let args = Cli::parse();
    init_logging(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(commands::dispatch(args.command));
    // Every task and blocking thread stops first (a file write under way finishes), then what
    // a stopped run left in its staging is removed for good.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    let swept = ubm_pipeline::lake::sweep_run_staging();
    if swept > 0 {
        tracing::info!("removed {swept} entries a stopped run's tasks wrote into its staging after it stopped");
    }
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", ubm_cluster::retry::describe(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default (ubm's crates at `info`, or `debug` with
/// -v; everything else at `warn`).
fn init_logging(verbose: bool) {
    let default = if verbose {
        "ubm=debug,ubm_pipeline=debug,ubm_cluster=debug,ubm_deploy=debug,warn"
    } else {
        "ubm=info,ubm_pipeline=info,ubm_deploy=info,warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let terminal = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || LogWriter { clear_line: terminal })
        .with_ansi(terminal)
        .with_target(false)
        .init();
}

/// Writes one log event to stderr. On a terminal it first clears the current line, where
/// `ubm submit` may be redrawing a job's progress, so that the two never run together.
struct LogWriter {
    clear_line: bool,
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut stderr = std::io::stderr().lock();
        if std::mem::take(&mut self.clear_line) {
            stderr.write_all(b"\r\x1b[2K")?;
        }
        stderr.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
