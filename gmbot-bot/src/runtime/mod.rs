//! Update processing: de-duplication, the per-chat sequencer, a bounded number of concurrent
//! handlers, the update counters, and the graceful drain at shutdown.
//!
//! Transports hand converted updates to an [`UpdateSender`]: the webhook with
//! [`UpdateSender::try_offer`] (never blocks; a full runtime is a 503, so Telegram retries
//! later), long polling with [`UpdateSender::offer`] (waits for room, so a slow database slows
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
//! [`UpdateSender::oldest_unfinished`] tells long polling which updates it may confirm: only
//! those handled. [`Runtime::shutdown`] stops taking updates, finishes what was accepted
//! within a deadline, and reports what it did.

mod dedup;
mod latency;
mod shutdown;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
}

impl Transport {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Webhook => "webhook",
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
    /// Cross-instance de-duplication (`REDIS_URL` set).
    pub claims: Option<RedisClaims>,
    /// Exact receipt-to-handled latencies (load runs).
    pub latency: Option<LatencyRecorder>,
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
            claims: None,
            latency: None,
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

/// The per-chat sequencer's state: the updates waiting behind the one being handled, per
/// key (a key is present while a task works through it), and every update accepted and not
/// yet finished (for polling's confirmation).
#[derive(Default)]
struct Sequence {
    waiting: HashMap<i64, VecDeque<Received>>,
    queued: usize,
    /// update_id → how many accepted copies are unfinished (normally 1).
    unfinished: BTreeMap<i64, u32>,
}

struct Shared {
    /// Where key tasks run: the webhook offers from the HTTP listener's own threads.
    handle: tokio::runtime::Handle,
    seq: Mutex<Sequence>,
    slots: Arc<Semaphore>,
    slot_count: usize,
    workers: Arc<Semaphore>,
    worker_count: usize,
    stats: Stats,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sequence> {
        self.seq.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self, id: i64) {
        let mut s = self.lock();
        if let Some(n) = s.unfinished.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                s.unfinished.remove(&id);
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
            match s.waiting.get_mut(&key) {
                Some(q) => {
                    q.push_back(r);
                    s.queued += 1;
                    None
                }
                None => {
                    s.waiting.insert(key, VecDeque::new());
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

    /// Queues an update without waiting (the webhook's path).
    pub fn try_offer(&self, update: Update, transport: Transport) -> Offer {
        if !self.accepting.load(Ordering::Acquire) {
            return Offer::Closed;
        }
        let id = update.id;
        if !self.recent.insert(id) {
            return Offer::Duplicate;
        }
        match Arc::clone(&self.shared.slots).try_acquire_owned() {
            Ok(slot) => {
                self.enqueue(update, transport, slot);
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

    /// The smallest `update_id` accepted and not yet handled, if any: long polling confirms
    /// updates only below it, so a stop never loses an update Telegram was told is done.
    pub fn oldest_unfinished(&self) -> Option<i64> {
        self.shared.lock().unfinished.keys().next().copied()
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
    let mut next = Some(first);
    while let Some(r) = next {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = Arc::clone(&shared.workers).acquire_owned().await else {
            break;
        };
        let id = r.update.id;
        worker.process(r).await;
        drop(permit);
        shared.finished(id);
        let mut s = shared.lock();
        next = s.waiting.get_mut(&key).and_then(VecDeque::pop_front);
        match next {
            Some(_) => s.queued -= 1,
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
            seq: Mutex::new(Sequence::default()),
            slots: Arc::new(Semaphore::new(slot_count)),
            slot_count,
            workers: Arc::new(Semaphore::new(worker_count)),
            worker_count,
            stats: Stats::default(),
        });
        let stop = Shutdown::new();
        let worker = Arc::new(Worker {
            app: app.clone(),
            claims: config.claims,
            latency: config.latency,
            shared: Arc::downgrade(&shared),
            stop: stop.clone(),
            store_retries: config.store_retries,
            retry_base: config.retry_base,
            last_claim_warning: AtomicU64::new(0),
        });
        let sender = UpdateSender {
            shared,
            worker,
            recent: Arc::new(RecentIds::new(config.recent_ids)),
            accepting: Arc::new(AtomicBool::new(true)),
            app,
        };
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
        let report = DrainReport {
            stats: snapshot(&shared.stats),
            abandoned,
            took: started.elapsed(),
        };
        if abandoned > 0 {
            log::warn!(
                abandoned = abandoned,
                latency_ms = report.took.as_millis() as u64;
                "shutdown deadline passed with updates not handled"
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
        if let Some(claims) = &self.claims {
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
