//! Update processing: de-duplication, the per-chat sequencer, a bounded number of concurrent
//! handlers, the update counters, and the graceful drain at shutdown.
//!
//! Transports hand converted updates to an [`UpdateSender`]: the webhook with
//! [`UpdateSender::try_offer`] (a full runtime is a 503, so Telegram retries later; with the
//! write-ahead on, it returns once the update is also kept in the store's update journal,
//! held by this instance — see [`WRITE_AHEAD_HOLD`] — so an instance killed before handling
//! it loses nothing: its holds stop being renewed and another instance's sweep takes the
//! rows over), long polling with [`UpdateSender::offer`] (waits for room, so a slow database slows
//! the polling instead of growing a backlog in memory). Every accepted update holds one of
//! `queue_capacity` slots until it is handled, which bounds the memory a raid can take.
//!
//! **Per-chat order, cross-chat concurrency** (the sequencer): updates with the same
//! [`Update::sequence_key`] — one chat's messages and membership changes, one user's button
//! presses — are handled one after another in arrival order (a demote then a promote of the
//! bot never apply reversed); different keys run concurrently, at most `workers` at a time.
//! Handlers never wait for a send budget (their actions go to the outbox), so one busy chat
//! holds at most one worker.
//!
//! With [`RedisClaims`] configured each update is claimed in Redis first (claims made together
//! share one pipelined round trip), so several webhook instances process it once.
//! [`UpdateSender::oldest_unfinished`] tells long polling which updates it may confirm: those
//! handled, and those kept in the store's update journal ([`UpdateSender::keep_backlog`]: a
//! backlog behind one busy chat is written to the store so polling can confirm it and fetch the
//! updates behind it). [`Runtime::shutdown`] stops taking updates, finishes what was accepted
//! within a deadline, keeps in the journal whatever it could not finish, and reports what it
//! did; [`UpdateSender::replay_journal`] takes those updates back at the next start. Handling is
//! at least once: an update whose handler was still running at the deadline is kept too, and is
//! handled again after the restart.

mod dedup;
pub mod journal;
mod latency;
mod shutdown;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use gmbot_core::domain::{GroupId, JournaledUpdate, UnixTime, UserId};

use crate::app::App;
use crate::handlers::{self, HandleError};
use crate::update::Update;

pub use self::dedup::{RecentIds, RedisClaims, MAX_CLAIM_BATCH};
pub use self::latency::{LatencyRecorder, LatencySummary};
pub use self::shutdown::Shutdown;

/// How updates reached the bot (the `transport` label of `gmbot_updates_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `getUpdates` long polling.
    Polling,
    /// Webhook POSTs.
    Webhook,
    /// Taken back from the update journal at start (received by either before a stop).
    Journal,
}

impl Transport {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Webhook => "webhook",
            Self::Journal => "journal",
        }
    }
}

/// Settings of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Updates handled concurrently (each from a different chat).
    pub workers: usize,
    /// Updates accepted and not yet handled; beyond it the webhook answers 503 and polling waits.
    pub queue_capacity: usize,
    /// Update ids remembered in-process for de-duplication.
    pub recent_ids: usize,
    /// Upper bound of the drain at shutdown (queue and in-flight updates).
    pub drain_timeout: Duration,
    /// Attempts after a store failure (database down), with growing pauses, before an update
    /// is given up (it was logged and counted by the handler each time).
    pub store_retries: u32,
    /// First pause before a retry; each further pause is four times longer.
    pub retry_base: Duration,
    /// Read-ahead loads running at once for updates queued behind others of their chat
    /// ([`READ_AHEAD`] by default; 0 turns read-ahead off).
    pub read_ahead: usize,
    /// Cross-instance de-duplication (`REDIS_URL` set).
    pub claims: Option<RedisClaims>,
    /// Exact receipt-to-handled latencies (load runs).
    pub latency: Option<LatencyRecorder>,
    /// A second recorder for the updates a predicate selects (load runs: e.g. the messages
    /// of subscribed members of groups that are not raided).
    pub latency_subset: Option<LatencySubset>,
    /// Write-ahead for webhook updates (`GMBOT_WEBHOOK_JOURNAL`, on in webhook mode): each
    /// one is kept in the update journal, held by this instance, before Telegram is told it
    /// arrived, so an instance killed with updates in memory loses none (see
    /// [`WRITE_AHEAD_HOLD`]).
    pub write_ahead: bool,
}

/// A recorder and the updates it records (see [`RuntimeConfig::latency_subset`]).
#[derive(Clone)]
pub struct LatencySubset {
    /// Where the samples go.
    pub recorder: LatencyRecorder,
    /// Which updates count.
    pub select: Arc<dyn Fn(&Update) -> bool + Send + Sync>,
}

impl std::fmt::Debug for LatencySubset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySubset").finish_non_exhaustive()
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: 64,
            queue_capacity: 10_000,
            recent_ids: 100_000,
            drain_timeout: Duration::from_secs(20),
            store_retries: 3,
            retry_base: Duration::from_millis(250),
            read_ahead: READ_AHEAD,
            claims: None,
            latency: None,
            latency_subset: None,
            write_ahead: false,
        }
    }
}

/// What happened to an offered update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for processing.
    Queued,
    /// Seen before (same `update_id`): acknowledged, not processed again.
    Duplicate,
    /// The queue is full: refuse it so that it is delivered again later.
    Full,
    /// The bot is shutting down.
    Closed,
}

struct Received {
    update: Update,
    transport: Transport,
    at: Instant,
    /// The update's slot in the runtime, given back when it is handled.
    _slot: OwnedSemaphorePermit,
}

/// Where an accepted update stands with the update journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Its row is being written.
    Writing,
    /// It has a row: long polling may confirm it; its row is deleted once it is handled.
    Written,
    /// Handled while its row was being written: delete the row once written.
    HandledWhileWriting,
}

/// The per-chat sequencer's state: the updates waiting behind the one being handled, per
/// key (a key is present while a task works through it), every update accepted and not
/// yet finished (for polling's confirmation), and the update journal's bookkeeping.
#[derive(Default)]
struct Sequence {
    waiting: HashMap<i64, VecDeque<Received>>,
    queued: usize,
    /// update_id → how many accepted copies are unfinished (normally 1).
    unfinished: BTreeMap<i64, u32>,
    /// The head update of each key (taken off `waiting`, being or about to be handled): what a
    /// stop keeps besides the waiting ones.
    running: HashMap<i64, Update>,
    /// Unfinished updates with a row in the update journal.
    kept: HashMap<i64, Kept>,
    /// Handled updates whose journal rows are to be deleted.
    forget: Vec<i64>,
}

struct Shared {
    /// Where key tasks run: the webhook offers from the HTTP listener's own threads.
    handle: tokio::runtime::Handle,
    /// Read-ahead loads running (see [`UpdateSender::read_ahead`]).
    read_ahead: Arc<Semaphore>,
    seq: Mutex<Sequence>,
    slots: Arc<Semaphore>,
    slot_count: usize,
    workers: Arc<Semaphore>,
    worker_count: usize,
    stats: Stats,
    /// Set when a stop's drain deadline passed: key tasks stop at their next await and
    /// handle nothing more (what they did not finish is kept in the update journal).
    abandon: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sequence> {
        self.seq.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self, id: i64) {
        let mut s = self.lock();
        s.running.remove(&id);
        if let Some(n) = s.unfinished.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                s.unfinished.remove(&id);
                match s.kept.get(&id).copied() {
                    Some(Kept::Written) => {
                        s.kept.remove(&id);
                        s.forget.push(id);
                    }
                    Some(Kept::Writing) => {
                        s.kept.insert(id, Kept::HandledWhileWriting);
                    }
                    Some(Kept::HandledWhileWriting) | None => {}
                }
            }
        }
    }

    /// Writes `rows` (their ids already marked [`Kept::Writing`]) to the update journal
    /// within [`JOURNAL_CALL_TIMEOUT`], records the outcome for each, and counts them as kept.
    /// The error says why they were not kept.
    async fn write_kept(&self, app: &App, rows: &[JournaledUpdate]) -> Result<usize, String> {
        let ids: Vec<i64> = rows.iter().map(|r| r.update_id).collect();
        let written =
            tokio::time::timeout(JOURNAL_CALL_TIMEOUT, app.store().journal_updates(rows)).await;
        let outcome = match written {
            Ok(Ok(())) => Ok(ids.len()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!(
                "timed out after {} s",
                JOURNAL_CALL_TIMEOUT.as_secs()
            )),
        };
        self.written(&ids, outcome.is_ok());
        if let Ok(n) = outcome {
            app.metrics()
                .update_journal
                .with_label_values(&["kept"])
                .inc_by(n as u64);
        }
        outcome
    }

    /// Records the outcome of writing `ids` to the journal.
    fn written(&self, ids: &[i64], ok: bool) {
        let mut s = self.lock();
        for id in ids {
            match s.kept.get(id).copied() {
                Some(Kept::Writing) if ok => {
                    s.kept.insert(*id, Kept::Written);
                }
                Some(Kept::Writing) => {
                    s.kept.remove(id);
                }
                Some(Kept::HandledWhileWriting) => {
                    s.kept.remove(id);
                    if ok {
                        s.forget.push(*id);
                    }
                }
                Some(Kept::Written) | None => {}
            }
        }
    }
}

/// Counters of a runtime, for tests, the demo and load runs.
#[derive(Debug, Default)]
struct Stats {
    queued: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    claimed_elsewhere: AtomicU64,
}

/// A snapshot of a runtime's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuntimeStats {
    /// Updates accepted into the queue.
    pub queued: u64,
    /// Updates handled successfully.
    pub handled: u64,
    /// Updates whose handling failed (after retries).
    pub failed: u64,
    /// Updates skipped because another delivery claimed them in Redis.
    pub claimed_elsewhere: u64,
}

/// The transports' handle on the runtime. Cheap to clone.
#[derive(Clone)]
pub struct UpdateSender {
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    recent: Arc<RecentIds>,
    accepting: Arc<AtomicBool>,
    app: App,
    /// The write-ahead's group-commit writer ([`RuntimeConfig::write_ahead`]).
    writer: Option<Arc<JournalWriter>>,
}

impl std::fmt::Debug for UpdateSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateSender")
            .field("queued", &self.queue_len())
            .finish_non_exhaustive()
    }
}

impl UpdateSender {
    fn counted(&self, r: &Received) {
        let m = self.app.metrics();
        m.updates
            .with_label_values(&[r.update.kind.name(), r.transport.name()])
            .inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        m.last_update.set(now);
        self.shared.stats.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Puts an accepted update behind the others of its key, starting a task for the key if
    /// none is running.
    fn enqueue(&self, update: Update, transport: Transport, slot: OwnedSemaphorePermit) {
        let kept = transport == Transport::Journal;
        let writing = transport == Transport::Webhook && self.writer.is_some();
        let r = Received {
            update,
            transport,
            at: Instant::now(),
            _slot: slot,
        };
        self.counted(&r);
        let key = r.update.sequence_key();
        let id = r.update.id;
        let first = {
            let mut s = self.shared.lock();
            *s.unfinished.entry(id).or_insert(0) += 1;
            if kept {
                s.kept.insert(id, Kept::Written);
            } else if writing {
                s.kept.entry(id).or_insert(Kept::Writing);
            }
            match s.waiting.get_mut(&key) {
                Some(q) => {
                    self.read_ahead(&r.update);
                    q.push_back(r);
                    s.queued += 1;
                    None
                }
                None => {
                    s.waiting.insert(key, VecDeque::new());
                    s.running.insert(id, r.update.clone());
                    Some(r)
                }
            }
        };
        if let Some(first) = first {
            let shared = Arc::clone(&self.shared);
            let worker = Arc::clone(&self.worker);
            let handle = shared.handle.clone();
            handle.spawn(run_key(shared, worker, key, first));
        }
    }

    /// Read-ahead for an update queued behind others of its chat: its sender's memberships
    /// are loaded into the cache now (at most [`READ_AHEAD`] loads at a time; beyond, the
    /// update is simply verified in its turn), so a raided chat's updates, handled one after
    /// another, do not each wait for their own Telegram reads.
    fn read_ahead(&self, update: &Update) {
        let (crate::update::UpdateKind::Message(m) | crate::update::UpdateKind::EditedMessage(m)) =
            &update.kind
        else {
            return;
        };
        let (Ok(group), Some(from)) = (gmbot_core::domain::GroupId::new(m.chat.id.get()), &m.from)
        else {
            return;
        };
        if m.sender_chat.is_some() || from.is_bot {
            return;
        }
        let Ok(permit) = Arc::clone(&self.shared.read_ahead).try_acquire_owned() else {
            return;
        };
        let (app, user) = (self.app.clone(), from.id);
        self.shared.handle.spawn(async move {
            if app.engine().prefetch(group, user).await {
                crate::flows::enforce::read_status_ahead(&app, group, user).await;
            }
            drop(permit);
        });
    }

    /// Whether `update` is a message of a chat that already has its share of the queue waiting
    /// (a quarter of the capacity): the webhook refuses it (503, Telegram delivers it again
    /// later) so that one raided chat cannot fill the queue and leave no room for the others.
    /// Membership and bot-status changes are never refused for this (their order matters).
    fn over_chat_share(&self, update: &Update) -> bool {
        if !matches!(
            update.kind,
            crate::update::UpdateKind::Message(_) | crate::update::UpdateKind::EditedMessage(_)
        ) {
            return false;
        }
        let share = (self.shared.slot_count / 4).max(1);
        self.shared
            .lock()
            .waiting
            .get(&update.sequence_key())
            .is_some_and(|q| q.len() >= share)
    }

    /// Queues an update without waiting (the webhook's path).
    pub fn try_offer(&self, update: Update, transport: Transport) -> Offer {
        if !self.accepting.load(Ordering::Acquire) {
            return Offer::Closed;
        }
        let id = update.id;
        if self.over_chat_share(&update) {
            return Offer::Full;
        }
        if !self.recent.insert(id) {
            return Offer::Duplicate;
        }
        match Arc::clone(&self.shared.slots).try_acquire_owned() {
            Ok(slot) => {
                let row = match (&self.writer, transport) {
                    (Some(_), Transport::Webhook) => {
                        Some(journal::encode(&update, UnixTime::now()))
                    }
                    _ => None,
                };
                self.enqueue(update, transport, slot);
                if let (Some(writer), Some(row)) = (&self.writer, row) {
                    writer.write_and_wait(row);
                }
                Offer::Queued
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.recent.remove(id);
                Offer::Full
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                self.recent.remove(id);
                Offer::Closed
            }
        }
    }

    /// Queues an update, waiting for room (long polling's path).
    pub async fn offer(&self, update: Update, transport: Transport) -> Offer {
        if !self.accepting.load(Ordering::Acquire) {
            return Offer::Closed;
        }
        let id = update.id;
        if !self.recent.insert(id) {
            return Offer::Duplicate;
        }
        match Arc::clone(&self.shared.slots).acquire_owned().await {
            Ok(slot) if self.accepting.load(Ordering::Acquire) => {
                self.enqueue(update, transport, slot);
                Offer::Queued
            }
            _ => {
                self.recent.remove(id);
                Offer::Closed
            }
        }
    }

    /// The smallest `update_id` accepted, not yet handled and not kept in the update journal,
    /// if any: long polling confirms updates only below it, so a stop never loses an update
    /// Telegram was told is done.
    pub fn oldest_unfinished(&self) -> Option<i64> {
        let s = self.shared.lock();
        s.unfinished
            .keys()
            .find(|id| s.kept.get(id) != Some(&Kept::Written))
            .copied()
    }

    /// Keeps the updates waiting behind a busy chat in the store's update journal when there
    /// are at least `at_least` of them, so long polling may confirm them to Telegram and fetch
    /// what comes after (the updates of other chats). Returns how many it kept; 0 when there
    /// were fewer or the store failed (then they stay unconfirmed, as before).
    pub async fn keep_backlog(&self, at_least: usize) -> usize {
        let rows: Vec<JournaledUpdate> = {
            let mut s = self.shared.lock();
            let now = UnixTime::now();
            let s = &mut *s;
            let rows: Vec<JournaledUpdate> = s
                .waiting
                .values()
                .flatten()
                .filter(|r| !s.kept.contains_key(&r.update.id))
                .map(|r| journal::encode(&r.update, now))
                .collect();
            if rows.is_empty() || rows.len() < at_least {
                return 0;
            }
            for r in &rows {
                s.kept.insert(r.update_id, Kept::Writing);
            }
            rows
        };
        match self.shared.write_kept(&self.app, &rows).await {
            Ok(n) => {
                log::debug!(kept = n; "backlog kept in the update journal");
                n
            }
            Err(why) => {
                log::warn!(
                    waiting = rows.len(),
                    error:display = why;
                    "cannot keep the backlog in the update journal; it stays unconfirmed until handled"
                );
                0
            }
        }
    }

    /// Takes back the updates a previous run kept in the update journal and queues them,
    /// oldest first, ahead of new ones. At most `limit` are taken now without waiting for room
    /// (the start is not held up); if more remain, a background task goes on taking them as
    /// room frees up. Returns how many were queued now.
    pub async fn replay_journal(&self, limit: usize) -> usize {
        let first = limit.min(self.shared.slots.available_permits());
        let (taken, queued) = self.replay_batch(first, false).await;
        if taken == first && first > 0 {
            // Perhaps more: go on in the background, waiting for room as updates are handled.
            let this = self.clone();
            self.shared.handle.spawn(async move {
                loop {
                    let (taken, _) = this.replay_batch(journal::TAKE_BATCH, true).await;
                    if taken < journal::TAKE_BATCH || !this.accepting.load(Ordering::Acquire) {
                        break;
                    }
                }
            });
        }
        queued
    }

    /// One take from the journal: up to `limit` rows, queued; with `wait`, waiting for room.
    /// Returns (rows taken, updates queued).
    async fn replay_batch(&self, limit: usize, wait: bool) -> (usize, usize) {
        if limit == 0 {
            return (0, 0);
        }
        let now = UnixTime::now();
        let until = UnixTime(now.0 + journal::HOLD_SECONDS);
        let rows = match self
            .app
            .store()
            .take_journaled_updates(limit, now, until)
            .await
        {
            Ok(rows) => rows,
            Err(err) => {
                log::error!(
                    error:display = err;
                    "cannot read the update journal; updates kept by the last stop are handled at a later start"
                );
                return (0, 0);
            }
        };
        let taken = rows.len();
        let metrics = self.app.metrics().update_journal.clone();
        let mut queued = 0;
        let mut drop_rows = Vec::new();
        for row in rows {
            let update = match journal::decode(&row) {
                Ok(u) => u,
                Err(why) => {
                    metrics.with_label_values(&["unreadable"]).inc();
                    log::error!(
                        update_id = row.update_id,
                        error:display = why;
                        "an update kept in the journal cannot be read; dropped"
                    );
                    drop_rows.push(row.update_id);
                    continue;
                }
            };
            let id = update.id;
            if !self.recent.insert(id) {
                drop_rows.push(id);
                continue;
            }
            let slot = if wait {
                Arc::clone(&self.shared.slots).acquire_owned().await.ok()
            } else {
                Arc::clone(&self.shared.slots).try_acquire_owned().ok()
            };
            match slot {
                Some(slot) => {
                    self.enqueue(update, Transport::Journal, slot);
                    metrics.with_label_values(&["replayed"]).inc();
                    queued += 1;
                }
                // No room after all (or stopping): the row stays, held, for a later start.
                None => self.recent.remove(id),
            }
        }
        if !drop_rows.is_empty() {
            if let Err(err) = self.app.store().forget_journaled_updates(&drop_rows).await {
                log::warn!(error:display = err; "cannot delete unreadable or repeated journal rows");
            }
        }
        if queued > 0 {
            log::info!(updates = queued; "updates kept by the last stop taken back from the journal");
        }
        (taken, queued)
    }

    /// Updates accepted and not yet handled (waiting or being handled).
    pub fn queue_len(&self) -> usize {
        self.shared.slot_count - self.shared.slots.available_permits()
    }

    /// The runtime's capacity.
    pub fn queue_capacity(&self) -> usize {
        self.shared.slot_count
    }

    /// The app the updates are handled by.
    pub fn app(&self) -> &App {
        &self.app
    }
}

/// Works through one key's updates in order, one at a time, each under a worker permit;
/// ends when the key has nothing waiting.
async fn run_key(shared: Arc<Shared>, worker: Arc<Worker>, key: i64, first: Received) {
    let mut abandon = shared.abandon.subscribe();
    let mut next = Some(first);
    while let Some(r) = next {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = Arc::clone(&shared.workers).acquire_owned().await else {
            break;
        };
        let id = r.update.id;
        // A stop past its deadline abandons the update where it stands: it stays unfinished
        // (kept in the update journal for whoever handles it next), and no effect of it
        // starts after the stop handed it back.
        tokio::select! {
            biased;
            _ = abandon.wait_for(|abandoned| *abandoned) => return,
            () = worker.process(r) => {}
        }
        drop(permit);
        shared.finished(id);
        let mut s = shared.lock();
        next = s.waiting.get_mut(&key).and_then(VecDeque::pop_front);
        match &next {
            Some(r) => {
                s.queued -= 1;
                s.running.insert(r.update.id, r.update.clone());
            }
            None => {
                s.waiting.remove(&key);
            }
        }
    }
}

/// Watches a runtime's progress: counters, in-flight updates, whether it is idle.
#[derive(Clone)]
pub struct RuntimeMonitor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeMonitor")
            .field("stats", &self.stats())
            .finish()
    }
}

impl RuntimeMonitor {
    /// The counters so far.
    pub fn stats(&self) -> RuntimeStats {
        snapshot(&self.shared.stats)
    }

    /// Updates being handled right now.
    pub fn in_flight(&self) -> usize {
        self.shared.worker_count - self.shared.workers.available_permits()
    }

    /// Updates waiting behind another of their chat (or for a worker).
    pub fn queued(&self) -> usize {
        self.shared.lock().queued
    }

    /// Nothing waiting, nothing in flight, every accepted update accounted for.
    pub fn is_idle(&self) -> bool {
        let s = self.stats();
        self.shared.slots.available_permits() == self.shared.slot_count
            && s.queued == s.handled + s.failed + s.claimed_elsewhere
    }
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("update_id", &self.update.id)
            .field("transport", &self.transport)
            .finish()
    }
}

/// What [`Runtime::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Counters at the end.
    pub stats: RuntimeStats,
    /// Updates still queued or in flight when the deadline passed (0 after a clean drain).
    pub abandoned: usize,
    /// Of those, how many were kept in the update journal for the next start (all of them
    /// unless the store failed).
    pub kept: usize,
    /// How long the drain took.
    pub took: Duration,
}

/// The update processor. Dropping it without [`Runtime::shutdown`] abandons what is queued.
pub struct Runtime {
    sender: UpdateSender,
    stop: Shutdown,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.sender.shared.worker_count)
            .field("queued", &self.sender.queue_len())
            .finish_non_exhaustive()
    }
}

struct Worker {
    app: App,
    claims: Option<RedisClaims>,
    latency: Option<LatencyRecorder>,
    latency_subset: Option<LatencySubset>,
    shared: std::sync::Weak<Shared>,
    stop: Shutdown,
    store_retries: u32,
    retry_base: Duration,
    last_claim_warning: AtomicU64,
}

impl Runtime {
    /// Starts the runtime. Must run inside a tokio runtime.
    pub fn start(app: App, config: RuntimeConfig) -> Self {
        let worker_count = config.workers.max(1);
        let slot_count = config.queue_capacity.max(1);
        let shared = Arc::new(Shared {
            handle: tokio::runtime::Handle::current(),
            read_ahead: Arc::new(Semaphore::new(config.read_ahead)),
            seq: Mutex::new(Sequence::default()),
            slots: Arc::new(Semaphore::new(slot_count)),
            slot_count,
            workers: Arc::new(Semaphore::new(worker_count)),
            worker_count,
            stats: Stats::default(),
            abandon: tokio::sync::watch::Sender::new(false),
        });
        let stop = Shutdown::new();
        shared.handle.spawn(forget_handled_every(
            Arc::downgrade(&shared),
            app.clone(),
            stop.clone(),
        ));
        let worker = Arc::new(Worker {
            app: app.clone(),
            claims: config.claims,
            latency: config.latency,
            latency_subset: config.latency_subset,
            shared: Arc::downgrade(&shared),
            stop: stop.clone(),
            store_retries: config.store_retries,
            retry_base: config.retry_base,
            last_claim_warning: AtomicU64::new(0),
        });
        let writer = config.write_ahead.then(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            shared.handle.spawn(write_ahead_batches(
                Arc::downgrade(&shared),
                app.clone(),
                rx,
            ));
            Arc::new(JournalWriter { tx })
        });
        let sender = UpdateSender {
            shared,
            worker,
            recent: Arc::new(RecentIds::new(config.recent_ids)),
            accepting: Arc::new(AtomicBool::new(true)),
            app,
            writer,
        };
        if config.write_ahead {
            sender
                .shared
                .handle
                .spawn(hold_and_sweep(sender.clone(), stop.clone()));
        }
        Self {
            sender,
            stop,
            drain_timeout: config.drain_timeout,
        }
    }

    /// A handle for a transport.
    pub fn sender(&self) -> UpdateSender {
        self.sender.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> RuntimeStats {
        snapshot(&self.sender.shared.stats)
    }

    /// Updates being handled right now.
    pub fn in_flight(&self) -> usize {
        self.monitor().in_flight()
    }

    /// A handle that watches this runtime's progress (it outlives [`Runtime::shutdown`]).
    pub fn monitor(&self) -> RuntimeMonitor {
        RuntimeMonitor {
            shared: Arc::clone(&self.sender.shared),
        }
    }

    /// Stops taking updates (offers answer [`Offer::Closed`]), handles what was accepted, and
    /// returns when done or when the drain deadline passes.
    pub async fn shutdown(self) -> DrainReport {
        let started = Instant::now();
        self.sender.accepting.store(false, Ordering::Release);
        self.stop.trigger();
        let deadline = started + self.drain_timeout;
        let shared = &self.sender.shared;
        let all = u32::try_from(shared.slot_count).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout_at(
            deadline.into(),
            Arc::clone(&shared.slots).acquire_many_owned(all),
        )
        .await;
        let abandoned = match drained {
            Ok(Ok(_all_back)) => 0,
            _ => shared.slot_count - shared.slots.available_permits(),
        };
        let app = &self.sender.app;
        let kept = if abandoned > 0 {
            abandon_running(shared, app).await;
            keep_unfinished(shared, app).await
        } else {
            0
        };
        let _ = tokio::time::timeout(JOURNAL_CALL_TIMEOUT, forget_handled(shared, app)).await;
        let report = DrainReport {
            stats: snapshot(&shared.stats),
            abandoned,
            kept,
            took: started.elapsed(),
        };
        if abandoned > 0 {
            log::warn!(
                abandoned = abandoned,
                kept = kept,
                latency_ms = report.took.as_millis() as u64;
                "shutdown deadline passed with updates not handled; those kept in the update journal are handled at the next start"
            );
        } else {
            log::info!(
                handled = report.stats.handled,
                latency_ms = report.took.as_millis() as u64;
                "updates drained"
            );
        }
        report
    }
}

/// Read-ahead loads (Telegram reads for queued updates) running at once.
pub const READ_AHEAD: usize = 32;

/// Bound of one update-journal call at a stop.
const JOURNAL_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often handled updates' journal rows are deleted.
const FORGET_EVERY: Duration = Duration::from_millis(250);

/// Stops the key tasks still handling updates (at their next await) and waits, briefly,
/// for them to be gone. With several instances, the pending mute rows those updates may have
/// placed without queueing their calls are released to the other instances, which replay the
/// updates from the journal: otherwise they would find a young pending row and leave it to
/// this instance, which is stopping.
async fn abandon_running(shared: &Shared, app: &App) {
    shared.abandon.send_replace(true);
    let all = u32::try_from(shared.worker_count).unwrap_or(u32::MAX);
    let stopped = tokio::time::timeout(
        ABANDON_WAIT,
        Arc::clone(&shared.workers).acquire_many_owned(all),
    )
    .await;
    if !matches!(stopped, Ok(Ok(_))) {
        log::warn!("update handlers did not stop in time after the drain deadline");
    }
    if app.flows().shared().is_none() {
        // One instance: the next start's reconciliation takes up rows placed before it.
        return;
    }
    let members: Vec<(GroupId, UserId)> = {
        let s = shared.lock();
        s.running.values().filter_map(member_of).collect()
    };
    let _ = tokio::time::timeout(
        JOURNAL_CALL_TIMEOUT,
        crate::flows::enforce::release_unqueued(app, &members),
    )
    .await;
}

/// How long a stop waits for abandoned update handlers to stop.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

/// The group member an update may restrict: a message's sender, a joiner.
fn member_of(update: &Update) -> Option<(GroupId, UserId)> {
    use crate::update::UpdateKind;
    let (chat, user) = match &update.kind {
        UpdateKind::Message(m) | UpdateKind::EditedMessage(m) => (m.chat.id, m.from.as_ref()?.id),
        UpdateKind::ChatMember(c) => (c.chat.id, c.user.id),
        _ => return None,
    };
    Some((GroupId::new(chat.get()).ok()?, user))
}

/// Keeps every update accepted and not handled (waiting, or with its handler still running) in
/// the update journal, making rows this run took back available again. Returns how many.
async fn keep_unfinished(shared: &Shared, app: &App) -> usize {
    let now = UnixTime::now();
    let rows: Vec<JournaledUpdate> = {
        let mut s = shared.lock();
        let rows: Vec<JournaledUpdate> = s
            .waiting
            .values()
            .flatten()
            .map(|r| &r.update)
            .chain(s.running.values())
            .map(|u| journal::encode(u, now))
            .collect();
        for r in &rows {
            s.kept.entry(r.update_id).or_insert(Kept::Writing);
        }
        rows
    };
    if rows.is_empty() {
        return 0;
    }
    match shared.write_kept(app, &rows).await {
        Ok(n) => n,
        Err(why) => {
            log::error!(
                updates = rows.len(),
                error:display = why;
                "cannot keep the unhandled updates in the update journal; they are lost unless Telegram delivers them again"
            );
            0
        }
    }
}

/// How long a webhook update's write-ahead row is held by the instance that wrote it; renewed
/// every [`WRITE_AHEAD_RENEW`] while the update is unfinished. An instance that dies stops
/// renewing: at most this long after, another instance's sweep takes the row and handles it.
pub const WRITE_AHEAD_HOLD: Duration = Duration::from_secs(15);

/// How often the write-ahead holds are renewed, and the journal swept for rows whose holder
/// died.
pub const WRITE_AHEAD_RENEW: Duration = Duration::from_secs(4);

/// The longest an HTTP thread waits for its update's write-ahead row before answering
/// anyway (the update is queued already; only a crash before it is handled would lose it).
const WRITE_AHEAD_WAIT: Duration = Duration::from_secs(3);

/// Rows written in one store call at most.
const WRITE_AHEAD_BATCH: usize = 512;

/// One write-ahead row and the HTTP thread waiting for it.
type AheadRow = (JournaledUpdate, std::sync::mpsc::SyncSender<bool>);

/// Group commit for the write-ahead: HTTP threads hand their rows to one task, which writes
/// whatever has gathered in one store call and tells each thread when its row is in.
struct JournalWriter {
    tx: tokio::sync::mpsc::UnboundedSender<AheadRow>,
}

impl JournalWriter {
    /// Hands `row` to the writer and blocks the calling (HTTP) thread until it is written,
    /// failed, or [`WRITE_AHEAD_WAIT`] passed. Never call it on a tokio worker thread.
    fn write_and_wait(&self, row: JournaledUpdate) -> bool {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.tx.send((row, done)).is_err() {
            return false;
        }
        wait.recv_timeout(WRITE_AHEAD_WAIT).unwrap_or(false)
    }
}

/// The group-commit task behind [`JournalWriter`].
async fn write_ahead_batches(
    shared: std::sync::Weak<Shared>,
    app: App,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<AheadRow>,
) {
    let mut batch: Vec<AheadRow> = Vec::new();
    while rx.recv_many(&mut batch, WRITE_AHEAD_BATCH).await > 0 {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let rows: Vec<JournaledUpdate> = batch.iter().map(|(r, _)| r.clone()).collect();
        let ids: Vec<i64> = rows.iter().map(|r| r.update_id).collect();
        let until = UnixTime::now().plus(WRITE_AHEAD_HOLD);
        let written = match tokio::time::timeout(
            JOURNAL_CALL_TIMEOUT,
            app.store().journal_held_updates(&rows, until),
        )
        .await
        {
            Ok(Ok(written)) => Some(written),
            _ => None,
        };
        let ok = written.is_some();
        let written = written.unwrap_or_default();
        // An id kept already (another instance wrote it: a delivery repeated after its answer
        // was lost) is that instance's row: this one neither renews nor deletes it.
        let mine: std::collections::HashSet<i64> = written.iter().copied().collect();
        let others: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !mine.contains(id))
            .collect();
        shared.written(&written, true);
        shared.written(&others, false);
        app.metrics()
            .update_journal
            .with_label_values(&[if ok { "written_ahead" } else { "unkept" }])
            .inc_by(ids.len() as u64);
        if !ok {
            log::warn!(
                updates = ids.len();
                "cannot keep webhook updates in the update journal before answering; they are handled, but an instance killed before that would lose them"
            );
        }
        for (_, done) in batch.drain(..) {
            let _ = done.try_send(ok);
        }
    }
}

/// Every [`WRITE_AHEAD_RENEW`]: renews this instance's holds on its unfinished journaled
/// updates, and takes the rows whose holder stopped renewing (an instance that died), until
/// the runtime stops.
async fn hold_and_sweep(sender: UpdateSender, stop: Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WRITE_AHEAD_RENEW) => {}
            () = stop.wait() => return,
        }
        if !sender.accepting.load(Ordering::Acquire) {
            return;
        }
        let ids: Vec<i64> = {
            let s = sender.shared.lock();
            s.kept
                .iter()
                .filter(|(_, k)| **k == Kept::Written)
                .map(|(id, _)| *id)
                .collect()
        };
        let until = UnixTime::now().plus(WRITE_AHEAD_HOLD);
        if let Err(err) = sender.app.store().hold_journaled_updates(&ids, until).await {
            log::warn!(updates = ids.len(), error:display = err; "cannot renew the hold on unfinished journaled updates; another instance may take them over");
        }
        let room = sender.shared.slots.available_permits() / 2;
        let (_, queued) = sender
            .replay_batch(room.min(journal::TAKE_BATCH), false)
            .await;
        if queued > 0 {
            log::info!(updates = queued; "updates another instance accepted and did not finish taken over from the update journal");
        }
    }
}

/// Deletes the journal rows of updates handled since the last call.
async fn forget_handled(shared: &Shared, app: &App) {
    let ids = std::mem::take(&mut shared.lock().forget);
    if ids.is_empty() {
        return;
    }
    if let Err(err) = app.store().forget_journaled_updates(&ids).await {
        log::warn!(
            rows = ids.len(),
            error:display = err;
            "cannot delete handled updates from the update journal; will retry (unless the bot stops first: then they are handled again at the next start)"
        );
        let mut s = shared.lock();
        if s.forget.len() < MAX_FORGET_BACKLOG {
            s.forget.extend(ids);
        }
    }
}

/// Handled ids waiting for deletion kept across store failures; beyond, the rows stay (and
/// are handled again after a restart).
const MAX_FORGET_BACKLOG: usize = 100_000;

/// Runs [`forget_handled`] every [`FORGET_EVERY`] until the runtime stops (the stop runs it
/// once more after the drain).
async fn forget_handled_every(shared: std::sync::Weak<Shared>, app: App, stop: Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(FORGET_EVERY) => {}
            () = stop.wait() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        forget_handled(&shared, &app).await;
    }
}

fn snapshot(s: &Stats) -> RuntimeStats {
    RuntimeStats {
        queued: s.queued.load(Ordering::Relaxed),
        handled: s.handled.load(Ordering::Relaxed),
        failed: s.failed.load(Ordering::Relaxed),
        claimed_elsewhere: s.claimed_elsewhere.load(Ordering::Relaxed),
    }
}

impl Worker {
    fn count(&self, which: impl Fn(&Stats) -> &AtomicU64) {
        if let Some(shared) = self.shared.upgrade() {
            which(&shared.stats).fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn process(&self, r: Received) {
        let id = r.update.id;
        // A replayed update was taken from the journal by this instance alone (the store
        // holds it for the taker); its Redis claim, if any, is from before the stop.
        let claims = self
            .claims
            .as_ref()
            .filter(|_| r.transport != Transport::Journal);
        if let Some(claims) = claims {
            match claims.claim(id).await {
                Ok(true) => {}
                Ok(false) => {
                    self.count(|s| &s.claimed_elsewhere);
                    if r.transport == Transport::Webhook {
                        self.app
                            .metrics()
                            .webhook_rejections
                            .with_label_values(&["duplicate"])
                            .inc();
                    }
                    log::debug!(update_id = id; "update already claimed by another delivery");
                    return;
                }
                // Redis down: handling an update twice is better than not at all.
                Err(e) => self.claim_failed(id, &e),
            }
        }
        let (group_id, user_id) = r.update.subject();
        let context = crate::sentry::EventContext {
            update_id: Some(id),
            group_id,
            user_id,
        };
        let mut attempt = 0;
        loop {
            // The context tags any error or panic reported while handling it.
            let handled =
                crate::sentry::scoped(context, handlers::handle(&self.app, r.update.clone()));
            match handled.await {
                Ok(()) => {
                    self.count(|s| &s.handled);
                    break;
                }
                Err(HandleError::Store(_)) | Err(HandleError::Engine(_))
                    if attempt < self.store_retries && !self.stop.is_triggered() =>
                {
                    let pause = self.retry_base * 4u32.saturating_pow(attempt);
                    attempt += 1;
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.stop.wait() => {}
                    }
                }
                // Logged and counted by the handler.
                Err(_) => {
                    self.count(|s| &s.failed);
                    break;
                }
            }
        }
        if let Some(latency) = &self.latency {
            latency.record(r.at.elapsed());
        }
        if let Some(subset) = &self.latency_subset {
            if (subset.select)(&r.update) {
                subset.recorder.record(r.at.elapsed());
            }
        }
    }

    fn claim_failed(&self, id: i64, e: &redis::RedisError) {
        self.app
            .metrics()
            .errors
            .with_label_values(&["dedup_redis"])
            .inc();
        // One warning per 10 s at most: at thousands of updates per second a dead Redis would
        // otherwise flood the log.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_claim_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_claim_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                update_id = id,
                error:display = e;
                "cannot claim updates in Redis; handling them without cross-instance de-duplication"
            );
        }
    }
}
