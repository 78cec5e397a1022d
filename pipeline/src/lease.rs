//! One run per date at a time, on any lake: a run holds its date's lease before it changes
//! anything, renews it while it lives, and checks it before every commit.
//!
//! A lease is an object `<lake>/_leases/D/lease-GENERATION.json` holding the run id, host, pid
//! and expiry. It is taken by creating the next generation only if it does not exist
//! (`PutMode::Create`: `If-None-Match: *` on S3, a hard link on a local disk), so of two runs
//! that try at once exactly one gets it. The holder rewrites its own generation with a later
//! expiry every third of the lease's life. A run that finds a live lease waits
//! (`--wait-for-lease`) or fails naming the holder. A lease whose expiry has passed, or whose
//! holder is a process of this same host that no longer exists, is taken over by creating the
//! next generation. Fencing: before each commit the holder checks that no newer generation
//! exists and that its last renewal is still good, so a run that lost its lease (paused past its
//! expiry, say) never commits over the run that took the date.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use ubm_jobs::RunDate;

use crate::error::{PipelineError, Result};
use crate::lake::{CommitFence, Lake};

/// How long a lease lasts without renewal. A run that dies on another host blocks its date
/// this long at most; on the same host a dead holder frees it at once.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often a waiting run looks again.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// What a lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    /// The holder's start time in clock ticks since boot (`/proc/PID/stat`), so that a reused
    /// pid is not taken for the holder.
    pub pid_start: Option<u64>,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LeaseRecord {
    /// Whether the run holding it may still be running: not expired, and, on this host, its
    /// process still exists.
    pub fn is_live(&self, now: DateTime<Utc>, here: &Host) -> bool {
        if now >= self.expires_at {
            return false;
        }
        if self.host == here.name {
            return process_start(self.pid).is_some_and(|start| self.pid_start.is_none_or(|s| s == start));
        }
        true
    }

    /// The holder, in words.
    pub fn describe(&self) -> String {
        format!(
            "run {} (host {}, pid {}) since {}; its lease expires at {} unless renewed",
            self.run_id,
            self.host,
            self.pid,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.expires_at.format("%H:%M:%S UTC")
        )
    }
}

/// This process, as a lease names it.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pid: u32,
    pid_start: Option<u64>,
}

impl Host {
    pub fn current() -> Host {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|n| n.trim().to_string()).unwrap_or_default();
        let pid = std::process::id();
        Host { name, pid, pid_start: process_start(pid) }
    }
}

/// A process's start time (field 22 of `/proc/PID/stat`), `None` when it does not exist.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn lease_dir(date: RunDate) -> String {
    format!("_leases/{date}/")
}

fn lease_name(generation: u64) -> String {
    format!("lease-{generation:010}.json")
}

/// The generation a lease object's name carries.
fn generation_of(path: &Path) -> Option<u64> {
    path.filename()?.strip_prefix("lease-")?.strip_suffix(".json")?.parse().ok()
}

/// The newest lease of `date`, if any: its generation and what it holds.
pub async fn current(lake: &Lake, date: RunDate) -> Result<Option<(u64, LeaseRecord)>> {
    let Some(generation) = newest_generation(lake, date).await? else { return Ok(None) };
    let path = lake.object_path(&format!("{}{}", lease_dir(date), lease_name(generation)))?;
    let bytes = match lake.store().get(&path).await {
        Ok(got) => got.bytes().await.map_err(lake.store_error("reading", &path))?,
        // Released (deleted) between the listing and the read: no lease.
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(lake.store_error("reading", &path)(e)),
    };
    let record = serde_json::from_slice(&bytes).map_err(|e| PipelineError::BadInput {
        what: format!("the lease {path}"),
        reason: format!("not a ubm lease ({e}); if no run of the date is active, delete it"),
    })?;
    Ok(Some((generation, record)))
}

async fn newest_generation(lake: &Lake, date: RunDate) -> Result<Option<u64>> {
    let dir = lake.object_path(&lease_dir(date))?;
    let listed: Vec<Path> = lake.store().list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(lake.store_error("listing", &dir))?;
    Ok(listed.iter().filter_map(generation_of).max())
}

/// The lease a run holds on its date; renewed in the background until released or dropped.
pub struct Lease {
    shared: Arc<Shared>,
    renewer: tokio::task::JoinHandle<()>,
}

/// What the run and its renewer share.
struct Shared {
    lake: Lake,
    date: RunDate,
    generation: u64,
    record: Mutex<LeaseRecord>,
    /// Set when a newer generation exists: the date was taken over.
    lost: AtomicBool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl Lease {
    /// Takes the lease of `date` for `run_id`, waiting up to `wait` for a live holder to finish.
    pub async fn acquire(lake: &Lake, date: RunDate, run_id: &str, wait: Duration) -> Result<Lease> {
        let here = Host::current();
        let deadline = Instant::now() + wait;
        loop {
            let current = current(lake, date).await?;
            if let Some((_, holder)) = &current
                && holder.is_live(Utc::now(), &here)
            {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(PipelineError::DateBusy { date: date.to_string(), holder: holder.describe() });
                }
                tokio::time::sleep(WAIT_POLL.min(left)).await;
                continue;
            }
            let generation = current.as_ref().map_or(1, |(g, _)| g + 1);
            let now = Utc::now();
            let record = LeaseRecord {
                run_id: run_id.to_string(),
                host: here.name.clone(),
                pid: here.pid,
                pid_start: here.pid_start,
                acquired_at: now,
                expires_at: now + LEASE_TTL,
            };
            let path = lake.object_path(&format!("{}{}", lease_dir(date), lease_name(generation)))?;
            let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
            match lake.store().put_opts(&path, encode(&record)?, create).await {
                Ok(_) => {
                    if let Some((_, taken_from)) = &current {
                        tracing::warn!("took over the lease of {date} from {}, which stopped", taken_from.describe());
                    }
                    remove_older_generations(lake, date, generation).await;
                    let shared = Arc::new(Shared { lake: lake.clone(), date, generation, record: Mutex::new(record), lost: AtomicBool::new(false) });
                    let renewer = tokio::spawn(renew(Arc::clone(&shared)));
                    return Ok(Lease { shared, renewer });
                }
                // Another run took this generation first: look again.
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(lake.store_error("taking the lease", &path)(e)),
            }
        }
    }

    /// Fails unless this run still holds its date: no newer generation exists and its last
    /// renewal has not run out. Called before every commit.
    pub async fn check(&self) -> Result<()> {
        let shared = &self.shared;
        let lost = |why: String| PipelineError::LeaseLost { date: shared.date.to_string(), why };
        if shared.lost.load(Ordering::SeqCst) {
            return Err(lost("another run took the date over".to_string()));
        }
        let expires_at = lock(&shared.record).expires_at;
        // A margin for clock differences between this host and the next run's.
        if Utc::now() + LEASE_TTL / 6 >= expires_at {
            return Err(lost(format!("its lease could not be renewed before {expires_at}")));
        }
        match newest_generation(&shared.lake, shared.date).await? {
            Some(newest) if newest > shared.generation => {
                shared.lost.store(true, Ordering::SeqCst);
                Err(lost("another run took the date over".to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Gives the date up: the next run takes it at once.
    pub async fn release(self) {
        self.renewer.abort();
        let shared = &self.shared;
        let name = format!("{}{}", lease_dir(shared.date), lease_name(shared.generation));
        if let Ok(path) = shared.lake.object_path(&name)
            && let Err(e) = shared.lake.store().delete(&path).await
        {
            tracing::warn!("could not release the lease {path} (it expires by itself): {e}");
        }
    }
}

/// Rewrites the lease with a later expiry every third of its life, until aborted; marks it
/// lost when a newer generation appears.
async fn renew(shared: Arc<Shared>) {
    let Ok(path) = shared.lake.object_path(&format!("{}{}", lease_dir(shared.date), lease_name(shared.generation))) else { return };
    loop {
        tokio::time::sleep(LEASE_TTL / 3).await;
        if let Ok(Some(newest)) = newest_generation(&shared.lake, shared.date).await
            && newest > shared.generation
        {
            shared.lost.store(true, Ordering::SeqCst);
            return;
        }
        let mut record = lock(&shared.record).clone();
        record.expires_at = Utc::now() + LEASE_TTL;
        let Ok(payload) = encode(&record) else { return };
        match shared.lake.store().put(&path, payload).await {
            Ok(_) => *lock(&shared.record) = record,
            Err(e) => tracing::warn!("renewing the lease of {} failed (trying again): {e}", shared.date),
        }
    }
}

/// Deletes the generations before `generation`, whose holders are gone (best effort: a left
/// one is only clutter).
async fn remove_older_generations(lake: &Lake, date: RunDate, generation: u64) {
    let Ok(dir) = lake.object_path(&lease_dir(date)) else { return };
    let Ok(listed) = lake.store().list(Some(&dir)).map_ok(|m| m.location).try_collect::<Vec<Path>>().await else { return };
    for old in listed.iter().filter(|p| generation_of(p).is_some_and(|g| g < generation)) {
        let _ = lake.store().delete(old).await;
    }
}

fn encode(record: &LeaseRecord) -> Result<PutPayload> {
    serde_json::to_vec_pretty(record).map(PutPayload::from).map_err(|source| PipelineError::Encoding { what: "the lease record", source })
}

/// A poisoned lock still guards a whole record (it is replaced in one assignment).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The lake asks the lease before every commit.
#[async_trait::async_trait]
impl CommitFence for Lease {
    async fn check(&self) -> Result<()> {
        Lease::check(self).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use url::Url;

    use super::*;

    fn lake() -> Lake {
        Lake::on_store(Url::parse("s3://bucket/lake").expect("url"), Arc::new(InMemory::new()))
    }

    fn date() -> RunDate {
        "2011-12-31".parse().expect("date")
    }

    #[tokio::test]
    async fn a_second_run_is_refused_while_the_first_holds_the_date_then_gets_it() {
        let lake = lake();
        let first = Lease::acquire(&lake, date(), "run-1", Duration::ZERO).await.expect("free date");
        let refused = Lease::acquire(&lake, date(), "run-2", Duration::ZERO).await.err().expect("held");
        let said = refused.to_string();
        assert!(said.contains("run run-1") && said.contains("--wait-for-lease"), "{said}");
        assert!(!refused.is_retryable(), "a busy date is not retried by the task loop");
        first.check().await.expect("still held");
        first.release().await;
        let second = Lease::acquire(&lake, date(), "run-2", Duration::ZERO).await.expect("released");
        assert_eq!(current(&lake, date()).await.expect("read").expect("held").1.run_id, "run-2");
        second.release().await;
    }

    #[tokio::test]
    async fn a_dead_holder_is_taken_over_and_fenced_out() {
        let lake = lake();
        let old = Lease::acquire(&lake, date(), "run-1", Duration::ZERO).await.expect("free date");
        // The holder "dies": its lease names a process of this host that does not exist.
        let mut record = current(&lake, date()).await.expect("read").expect("held").1;
        record.pid = u32::MAX;
        let path = lake.object_path(&format!("{}{}", lease_dir(date()), lease_name(1))).expect("path");
        lake.store().put(&path, encode(&record).expect("json")).await.expect("put");
        let new = Lease::acquire(&lake, date(), "run-2", Duration::ZERO).await.expect("taken over");
        let fenced = old.check().await.expect_err("the old run may not commit");
        assert!(fenced.to_string().contains("took the date over"), "{fenced}");
        new.check().await.expect("the new run may");
        assert_eq!(newest_generation(&lake, date()).await.expect("list"), Some(2));
    }

    #[tokio::test]
    async fn a_run_waits_for_a_lease_that_is_released() {
        let lake = lake();
        let first = Lease::acquire(&lake, date(), "run-1", Duration::ZERO).await.expect("free date");
        let waiting = {
            let lake = lake.clone();
            tokio::spawn(async move { Lease::acquire(&lake, date(), "run-2", Duration::from_secs(10)).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.release().await;
        waiting.await.expect("join").expect("the waiting run gets the date");
    }
}
