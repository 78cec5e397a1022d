//! `ubm`: the `user_behavior_metric` pipeline as DataFusion plans.

mod cli;
mod cluster_cli;
mod datagen;
mod deploy_cli;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc_compat;
mod lake;
mod oltp;
mod pipeline;
mod secret;
mod submit;
mod summary;
mod warehouse;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(args.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default (`ubm=info`, or `ubm=debug` with -v).
fn init_logging(verbose: bool) {
    let default = if verbose { "ubm=debug,ubm_cluster=debug,warn" } else { "ubm=info,warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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
