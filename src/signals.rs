//! The signals that stop a command: Ctrl-C (SIGINT) and SIGTERM (what `kill`, systemd and
//! container runtimes send). Both get the same orderly stop.

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

/// Resolves with the signal's name once SIGINT or SIGTERM arrives. Fails only when the
/// handlers cannot be installed.
pub async fn stop_requested() -> Result<&'static str> {
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    })
}
