//! One run per date at a time, on any lake: a run holds its date's lease before it changes
//! anything, renews it while it lives, and checks it before every commit.
//!
//! # The protocol
//! A date's lease is a chain of immutable objects `<lake>/_leases/D/lease-GENERATION.json`; the
//! newest one says who holds the date (its run id, host, pid, expiry), or that it was released.
//! Every change of the lease creates the next generation only if it does not exist yet
//! (`PutMode::Create`: `If-None-Match: *` on S3, a hard link on a local disk), so of two writers
//! exactly one gets each generation, and no object is ever overwritten:
//! - **take**: a run that finds the newest record released, expired or held by a process of
//!   this host that no longer exists creates the next generation with its own run id (a live
//!   holder makes it wait, `--wait-for-lease`, or fail naming the holder);
//! - **renew**: every third of the lease's life the holder reads the newest record and, if it is
//!   still its own, creates the next generation with a later expiry;
//! - **release**: the holder creates the next generation marked released;
//! - **check** (before every commit and the run report): the newest record must be the run's
//!   own, unreleased, and its last renewal must have at least a sixth of the lease's life left
//!   on this host's clock.
//!
//! Fencing rests on the holder (the run id, in one process of one host), never on a generation
//! number: a run holds the date only while the newest record names it. A resumed cluster-mode
//! run keeps its run id but is another process, so the driver it replaced holds nothing. A run paused past its expiry (a sleeping laptop, a frozen
//! VM) finds, when it resumes, another run's record or a release on top of its own and stops,
//! committing nothing more; it never re-creates or overwrites a record. Lease objects deleted by
//! hand do not help a stale run either: the next record is then another run's, or there is none,
//! and both fail the check. A record's expiry is believed only up to the lease's life after the
//! store wrote it (the object's `last_modified`), so a holder whose clock runs ahead cannot block
//! its date for longer. What remains: a run paused between its last check and the end of its
//! partition swap (a local rename; a few requests on S3) could publish after a successor took
//! over. On a local lake that window is closed: the check and the swap happen under the date's
//! commit lock, which a takeover must hold too (`crate::lake::CommitLock`). On an object store the
//! sixth of the lease's life that the check demands is the bound on it, and `docs/lake.md` says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use ubm_jobs::RunDate;

use crate::error::{PipelineError, Result};
use crate::lake::{CommitFence, CommitLock, CommitPermit, Lake};

/// How long a run taking a date waits, at least, for a commit under way to finish.
const TAKE_LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long a commit waits for a takeover under way to finish (it then fails, as lost).
const COMMIT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long a lease lasts without renewal: `UBM_LEASE_TTL_SECONDS` (1 to 3600), 60 by default.
/// A run that dies on another host blocks its date this long at most; on the same host a dead
/// holder frees it at once. Every process that runs a date on one lake must use the same value.
pub fn lease_ttl() -> Duration {
    static TTL: OnceLock<Duration> = OnceLock::new();
    *TTL.get_or_init(|| match std::env::var("UBM_LEASE_TTL_SECONDS") {
        Err(_) => Duration::from_secs(60),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds @ 1..=3600) => Duration::from_secs(seconds),
            _ => {
                tracing::warn!("UBM_LEASE_TTL_SECONDS={text} is not a number of seconds from 1 to 3600; using 60");
                Duration::from_secs(60)
            }
        },
    })
}

/// How often a waiting run looks again.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// What a lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The run holding (or releasing) the date: the fencing token.
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    /// The holder's start time in clock ticks since boot (`/proc/PID/stat`), so that a reused
    /// pid is not taken for the holder.
    pub pid_start: Option<u64>,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The run gave the date up: the next run takes it at once.
    #[serde(default)]
    pub released: bool,
}

/// The newest record of a date's lease, as read from the lake.
#[derive(Debug, Clone)]
pub struct LeaseState {
    pub generation: u64,
    pub record: LeaseRecord,
    /// When the store wrote the record (its clock, not the writer's).
    pub written_at: DateTime<Utc>,
}

impl LeaseState {
    /// Whether the run holding it may still be running: not released, not expired (an expiry
    /// is believed up to the lease's life after the store wrote the record), and, on this host,
    /// its process still exists.
    pub fn is_live(&self, now: DateTime<Utc>, here: &Host) -> bool {
        let record = &self.record;
        let believed = record.expires_at.min(self.written_at + lease_ttl());
        if record.released || now >= believed {
            return false;
        }
        if record.host == here.name {
            return ubm_cluster::process::start_time(record.pid).is_some_and(|start| record.pid_start.is_none_or(|s| s == start));
        }
        true
    }
}

impl LeaseRecord {
    /// Whether this record names the same holder as `held`: the same run in the same process.
    /// A resumed run keeps the id of the run it resumes, so the id alone would let the driver it
    /// replaced (were it still alive) pass every check of the new one.
    fn holds_as(&self, held: &LeaseRecord) -> bool {
        self.run_id == held.run_id && self.host == held.host && self.pid == held.pid && self.pid_start == held.pid_start
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
        Host { name, pid, pid_start: ubm_cluster::process::start_time(pid) }
    }
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

/// The newest record of `date`'s lease, if any.
pub async fn current(lake: &Lake, date: RunDate) -> Result<Option<LeaseState>> {
    // A generation listed may be removed before it is read, when a renewal or a take wrote a
    // newer one meanwhile: then the listing is read again (a few times; a lease changes only
    // every third of its life).
    let mut attempts = 0;
    let (generation, path, got) = loop {
        let Some(generation) = newest_generation(lake, date).await? else { return Ok(None) };
        let path = lake.object_path(&format!("{}{}", lease_dir(date), lease_name(generation)))?;
        match lake.store().get(&path).await {
            Ok(got) => break (generation, path, got),
            Err(object_store::Error::NotFound { .. }) if attempts < 5 => attempts += 1,
            // Removed by hand while being read, again and again: no lease to speak of.
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(lake.store_error("reading", &path)(e)),
        }
    };
    let written_at = got.meta.last_modified;
    let bytes = got.bytes().await.map_err(lake.store_error("reading", &path))?;
    let record = serde_json::from_slice(&bytes).map_err(|e| PipelineError::BadInput {
        what: format!("the lease {path}"),
        reason: format!("not a ubm lease ({e}); if no run of the date is active, delete the directory _leases/{date}/"),
    })?;
    Ok(Some(LeaseState { generation, record, written_at }))
}

async fn newest_generation(lake: &Lake, date: RunDate) -> Result<Option<u64>> {
    let dir = lake.object_path(&lease_dir(date))?;
    let listed: Vec<Path> = lake.store().list(Some(&dir)).map_ok(|m| m.location).try_collect().await.map_err(lake.store_error("listing", &dir))?;
    Ok(listed.iter().filter_map(generation_of).max())
}

/// The generation after `state`'s (1 when there is none), or an error when the name space is
/// used up (a lease named by hand with the largest number).
fn next_generation(lake: &Lake, date: RunDate, state: Option<&LeaseState>) -> Result<u64> {
    match state {
        None => Ok(1),
        Some(state) => state.generation.checked_add(1).filter(|g| *g < 10_000_000_000).ok_or_else(|| PipelineError::BadInput {
            what: format!("the lease of {date} in {}", lake.root()),
            reason: format!(
                "its newest generation is {}, the largest a lease can have; once no run of the date is active, delete the directory _leases/{date}/",
                state.generation
            ),
        }),
    }
}

/// The outcome of creating a lease generation.
enum Created {
    Yes,
    /// Another writer created that generation first.
    Taken,
}

/// Creates `generation` of `date`'s lease holding `record`, only if it does not exist yet.
async fn create(lake: &Lake, date: RunDate, generation: u64, record: &LeaseRecord) -> Result<Created> {
    let path = lake.object_path(&format!("{}{}", lease_dir(date), lease_name(generation)))?;
    let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match lake.store().put_opts(&path, encode(record)?, create).await {
        Ok(_) => Ok(Created::Yes),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::Taken),
        Err(e) => Err(lake.store_error("writing the lease", &path)(e)),
    }
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
    /// The run's newest record and when this host last renewed it.
    held: Mutex<Held>,
    /// Set once the newest record is not this run's: the date was taken over, released or
    /// removed. Never cleared.
    lost: AtomicBool,
}

#[derive(Clone)]
struct Held {
    record: LeaseRecord,
    /// When this host's last renewal was created, on its monotonic clock (a paused process's
    /// pause counts): the lease is good until `renewed + ttl` here, whatever the wall clocks say.
    renewed: Instant,
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
            // Held while the lease is read and the next generation created: a run between its
            // last check and its swap holds it (see `crate::lake::CommitLock`), so no takeover lands
            // in that window.
            let limit = TAKE_LOCK_WAIT.max(deadline.saturating_duration_since(Instant::now()));
            let Some(lock) = CommitLock::acquire(lake, date, limit).await? else {
                let holder = format!("a run committing a partition of it (it holds _leases/{date}.lock in {})", lake.root());
                return Err(PipelineError::DateBusy { date: date.to_string(), holder });
            };
            let current = current(lake, date).await?;
            if let Some(state) = &current {
                // A retried take whose first attempt was created, but whose answer was lost: ours
                // while it is still live, renewed when the store wrote it. Only this process's:
                // a resumed run has the id of the run it resumes, whose driver may still be alive
                // and is then a holder like any other.
                let this_process = state.record.host == here.name && state.record.pid == here.pid && state.record.pid_start == here.pid_start;
                if state.record.run_id == run_id && this_process && state.is_live(Utc::now(), &here) {
                    let age = (Utc::now() - state.written_at).to_std().unwrap_or_default();
                    return Ok(Lease::held(lake, date, state.record.clone(), Instant::now().checked_sub(age).unwrap_or_else(Instant::now)));
                }
                if state.is_live(Utc::now(), &here) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(PipelineError::DateBusy { date: date.to_string(), holder: state.record.describe() });
                    }
                    drop(lock);
                    tokio::time::sleep(WAIT_POLL.min(left)).await;
                    continue;
                }
            }
            let generation = next_generation(lake, date, current.as_ref())?;
            let now = Utc::now();
            let record = LeaseRecord {
                run_id: run_id.to_string(),
                host: here.name.clone(),
                pid: here.pid,
                pid_start: here.pid_start,
                acquired_at: now,
                expires_at: now + lease_ttl(),
                released: false,
            };
            let started = Instant::now();
            match create(lake, date, generation, &record).await? {
                Created::Yes => {
                    if let Some(state) = current.as_ref().filter(|s| !s.record.released) {
                        tracing::warn!("took over the lease of {date} from {}, which stopped", state.record.describe());
                    }
                    remove_generations_before(lake, date, generation).await;
                    return Ok(Lease::held(lake, date, record, started));
                }
                // Another run took this generation first: look again.
                Created::Taken => continue,
            }
        }
    }

    /// The lease of `date` held with `record`, last renewed at `renewed`; its renewer starts.
    fn held(lake: &Lake, date: RunDate, record: LeaseRecord, renewed: Instant) -> Lease {
        let held = Held { record, renewed };
        let shared = Arc::new(Shared { lake: lake.clone(), date, held: Mutex::new(held), lost: AtomicBool::new(false) });
        let renewer = tokio::spawn(renew(Arc::clone(&shared)));
        Lease { shared, renewer }
    }

    /// Fails unless this run still holds its date: the newest record is its own and unreleased,
    /// and its last renewal has at least a sixth of the lease's life left on this host's
    /// monotonic clock. Called before every commit and before the run report is written.
    pub async fn check(&self) -> Result<()> {
        let shared = &self.shared;
        let lost = |why: String| PipelineError::LeaseLost { date: shared.date.to_string(), why };
        if shared.lost.load(Ordering::SeqCst) {
            return Err(lost("another run took the date over, or its lease was removed".to_string()));
        }
        let renewed = lock(&shared.held).renewed;
        if renewed.elapsed() + lease_ttl() / 6 >= lease_ttl() {
            shared.lost.store(true, Ordering::SeqCst);
            return Err(lost(format!("its lease was last renewed {:.0?} ago, too long to be sure no other run took the date", renewed.elapsed())));
        }
        shared.confirm().await?.map(|_| ()).map_err(lost)
    }

    /// [`Lease::check`] under the date's commit lock: the permit keeps every other run from
    /// taking the date over until the commit it guards is done.
    pub async fn enter(&self) -> Result<CommitPermit> {
        let date = self.shared.date;
        let Some(lock) = CommitLock::acquire(&self.shared.lake, date, COMMIT_LOCK_WAIT).await? else {
            // Not lost for good: the holder may be a takeover that finds this lease live.
            let why = format!("another run held the commit lock of {date} for {} s: a takeover is under way", COMMIT_LOCK_WAIT.as_secs());
            return Err(PipelineError::LeaseLost { date: date.to_string(), why });
        };
        self.check().await?;
        Ok(CommitPermit { lock: Some(lock) })
    }

    /// Gives the date up: the next run takes it at once.
    pub async fn release(mut self) {
        self.renewer.abort();
        // Its last renewal may still be on its way (a local disk's link runs on a blocking
        // thread): the release goes after it.
        let _ = (&mut self.renewer).await;
        let shared = &self.shared;
        let (lake, date) = (&shared.lake, shared.date);
        for _ in 0..3 {
            let Ok(Ok(newest)) = shared.confirm().await else {
                return; // not ours any more (or unreadable): it expires by itself
            };
            let record = LeaseRecord { released: true, ..newest.record.clone() };
            let created = match next_generation(lake, date, Some(&newest)) {
                Ok(next) => create(lake, date, next, &record).await.map(|created| (created, next)),
                Err(e) => Err(e),
            };
            match created {
                Ok((Created::Yes, next)) => return remove_generations_before(lake, date, next).await,
                // A renewal of ours landed first: release on top of it.
                Ok((Created::Taken, _)) => continue,
                Err(e) => return tracing::warn!("could not release the lease of {date} (it expires by itself): {}", e.describe()),
            }
        }
        tracing::warn!("could not release the lease of {date} (it expires by itself): it kept changing");
    }
}

impl Shared {
    /// `Ok(Ok(newest))` while the newest record of the date is this run's own and unreleased;
    /// `Ok(Err(why))`, marking the lease lost, when it is not. An error of the store (the lease
    /// could not be read) is neither: it is returned as it is, and may pass.
    async fn confirm(&self) -> Result<std::result::Result<LeaseState, String>> {
        let held = lock(&self.held).record.clone();
        let why = match current(&self.lake, self.date).await? {
            Some(state) if state.record.holds_as(&held) && !state.record.released => return Ok(Ok(state)),
            Some(state) if state.record.holds_as(&held) => "it was released".to_string(),
            Some(state) => format!("another run took the date over: {}", state.record.describe()),
            None => "its lease was removed from the lake".to_string(),
        };
        self.lost.store(true, Ordering::SeqCst);
        Ok(Err(why))
    }
}

/// Renews the lease every third of its life, until aborted: while the newest record is still
/// this run's, creates the next generation with a later expiry. Stops, marking the lease lost,
/// as soon as the newest record is not its own.
async fn renew(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(lease_ttl() / 3).await;
        let newest = match shared.confirm().await {
            Ok(Ok(newest)) => newest,
            Ok(Err(why)) => {
                tracing::warn!("the lease of {} is lost: {why}", shared.date);
                return;
            }
            Err(e) => {
                tracing::warn!("renewing the lease of {} failed (trying again): {}", shared.date, e.describe());
                continue;
            }
        };
        // The newest generation, not the one last renewed: a renewal whose answer was lost may
        // have been written all the same.
        let record = LeaseRecord { expires_at: Utc::now() + lease_ttl(), ..newest.record.clone() };
        let next = match next_generation(&shared.lake, shared.date, Some(&newest)) {
            Ok(next) => next,
            Err(e) => {
                shared.lost.store(true, Ordering::SeqCst);
                tracing::warn!("the lease of {} cannot be renewed: {}", shared.date, e.describe());
                return;
            }
        };
        let started = Instant::now();
        match create(&shared.lake, shared.date, next, &record).await {
            Ok(Created::Yes) => {
                *lock(&shared.held) = Held { record, renewed: started };
                remove_generations_before(&shared.lake, shared.date, next).await;
            }
            Ok(Created::Taken) => {
                shared.lost.store(true, Ordering::SeqCst);
                tracing::warn!("the lease of {} is lost: another run wrote generation {next} first", shared.date);
                return;
            }
            Err(e) => tracing::warn!("renewing the lease of {} failed (trying again): {}", shared.date, e.describe()),
        }
    }
}

/// Deletes the generations before `generation` (best effort: a left one is only clutter; the
/// newest is never deleted, so generations keep counting up).
async fn remove_generations_before(lake: &Lake, date: RunDate, generation: u64) {
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
    async fn enter(&self) -> Result<CommitPermit> {
        Lease::enter(self).await
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
        assert_eq!(current(&lake, date()).await.expect("read").expect("held").record.run_id, "run-2");
        second.release().await;
    }

    #[tokio::test]
    async fn a_dead_holder_is_taken_over_and_fenced_out() {
        let lake = lake();
        let old = Lease::acquire(&lake, date(), "run-1", Duration::ZERO).await.expect("free date");
        // The holder "dies": its lease names a process of this host that does not exist.
        let mut record = current(&lake, date()).await.expect("read").expect("held").record;
        record.pid = u32::MAX;
        let path = lake.object_path(&format!("{}{}", lease_dir(date()), lease_name(1))).expect("path");
        lake.store().put(&path, encode(&record).expect("json")).await.expect("put");
        let new = Lease::acquire(&lake, date(), "run-2", Duration::ZERO).await.expect("taken over");
        let fenced = old.check().await.expect_err("the old run may not commit");
        assert!(fenced.describe().contains("took the date over"), "{}", fenced.describe());
        new.check().await.expect("the new run may");
        assert_eq!(newest_generation(&lake, date()).await.expect("list"), Some(2));
    }

    /// A holder paused between its last check and its swap (its permit held, its lease expired):
    /// a run taking the date over waits until the swap is done, and the paused run's next commit
    /// fails. A local lake: the commit lock is a file lock.
    #[tokio::test]
    async fn a_takeover_waits_for_a_commit_under_way_and_a_commit_after_a_takeover_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).await.expect("lake");
        let paused = Lease::acquire(&lake, date(), "run-a", Duration::ZERO).await.expect("free date");
        let permit = paused.enter().await.expect("run-a may commit");
        expire_newest(&lake).await;
        let taker = {
            let lake = lake.clone();
            tokio::spawn(async move { Lease::acquire(&lake, date(), "run-b", Duration::ZERO).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!taker.is_finished(), "no takeover while run-a's swap is under way");
        drop(permit);
        let taken = taker.await.expect("join").expect("run-b takes the date once the swap is done");
        let fenced = paused.enter().await.expect_err("run-a may not commit again");
        assert!(fenced.describe().contains("lost the lease"), "{}", fenced.describe());
        taken.enter().await.expect("run-b may commit");
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

    /// Marks the newest record of `date` expired, as a holder paused past its lease would leave it.
    async fn expire_newest(lake: &Lake) {
        let state = current(lake, date()).await.expect("read").expect("held");
        let record = LeaseRecord { expires_at: Utc::now() - chrono::Duration::seconds(1), ..state.record };
        let path = lake.object_path(&format!("{}{}", lease_dir(date()), lease_name(state.generation))).expect("path");
        lake.store().put(&path, encode(&record).expect("json")).await.expect("put");
    }

    #[tokio::test]
    async fn a_paused_holder_never_commits_after_another_run_took_the_date_and_released_it() {
        let lake = lake();
        let paused = Lease::acquire(&lake, date(), "run-a", Duration::ZERO).await.expect("free date");
        expire_newest(&lake).await;
        let other = Lease::acquire(&lake, date(), "run-b", Duration::ZERO).await.expect("the expired lease is taken over");
        other.check().await.expect("the new holder may commit");
        other.release().await;
        // Every generation before the release is gone: the paused run's own among them.
        assert_eq!(newest_generation(&lake, date()).await.expect("list"), Some(3));
        let fenced = paused.check().await.expect_err("the resumed run may not commit");
        assert!(matches!(fenced, PipelineError::LeaseLost { .. }), "{}", fenced.describe());
        assert!(fenced.describe().contains("released") || fenced.describe().contains("took the date over"), "{}", fenced.describe());
        assert!(paused.check().await.is_err(), "lost for good");
        paused.release().await;
        assert_eq!(newest_generation(&lake, date()).await.expect("list"), Some(3), "a run that lost the date writes no lease");
    }

    #[tokio::test]
    async fn a_holder_whose_lease_was_removed_never_commits_even_when_the_next_run_restarts_the_count() {
        let lake = lake();
        let first = Lease::acquire(&lake, date(), "run-a", Duration::ZERO).await.expect("free date");
        let dir = lake.object_path(&lease_dir(date())).expect("dir");
        let listed: Vec<Path> = lake.store().list(Some(&dir)).map_ok(|m| m.location).try_collect().await.expect("list");
        for path in &listed {
            lake.store().delete(path).await.expect("delete");
        }
        let removed = first.check().await.expect_err("no lease, no commit");
        assert!(removed.describe().contains("removed"), "{}", removed.describe());
        let second = Lease::acquire(&lake, date(), "run-b", Duration::ZERO).await.expect("the date looks free");
        assert_eq!(current(&lake, date()).await.expect("read").expect("held").generation, 1, "the count restarted");
        assert!(first.check().await.is_err(), "the same generation number is another run's");
        second.check().await.expect("the new run holds the date");
    }

    #[test]
    fn an_expiry_beyond_the_lease_life_is_not_believed() {
        let here = Host::current();
        let now = Utc::now();
        let record = LeaseRecord {
            run_id: "run-a".into(),
            host: "another-host".into(),
            pid: 1,
            pid_start: None,
            acquired_at: now,
            expires_at: now + chrono::Duration::days(1),
            released: false,
        };
        let fresh = LeaseState { generation: 1, record: record.clone(), written_at: now };
        assert!(fresh.is_live(now, &here), "written just now: live for the lease's life");
        let stale = LeaseState { generation: 1, record, written_at: now - chrono::Duration::from_std(lease_ttl()).expect("ttl") };
        assert!(!stale.is_live(now, &here), "a day-long expiry written a lease's life ago is not believed");
    }

    #[tokio::test]
    async fn a_lease_at_the_largest_generation_is_refused_with_what_to_do() {
        let lake = lake();
        let path = lake.object_path(&format!("{}{}", lease_dir(date()), lease_name(9_999_999_999))).expect("path");
        let now = Utc::now();
        let record = LeaseRecord {
            run_id: "run-a".into(),
            host: "another-host".into(),
            pid: 1,
            pid_start: None,
            acquired_at: now,
            expires_at: now,
            released: true,
        };
        lake.store().put(&path, encode(&record).expect("json")).await.expect("put");
        let refused = Lease::acquire(&lake, date(), "run-b", Duration::ZERO).await.err().expect("no generation left");
        assert!(refused.describe().contains("delete the directory _leases/2011-12-31/"), "{}", refused.describe());
    }
}
