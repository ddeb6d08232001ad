//! Update processing: a bounded queue in front of a bounded number of concurrent handlers,
//! `update_id` de-duplication, the update counters, and the graceful drain at shutdown.
//!
//! Transports hand converted updates to an [`UpdateSender`]: the webhook with
//! [`UpdateSender::try_offer`] (never blocks; a full queue is a 503, so Telegram retries
//! later), long polling with [`UpdateSender::offer`] (waits for room, so a slow database slows
//! the polling instead of growing a backlog in memory). A dispatcher task takes updates off
//! the queue and runs each one as its own task once a worker permit is free; with
//! [`RedisClaims`] configured each update is claimed in Redis first (claims made together
//! share one pipelined round trip), so several webhook instances process it once. [`Runtime::shutdown`] stops taking updates, finishes the queue
//! and what is in flight within a deadline, and reports what it did.

mod dedup;
mod latency;
mod shutdown;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Semaphore};

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
    /// Updates handled concurrently.
    pub workers: usize,
    /// Updates waiting for a worker; beyond it the webhook answers 503 and polling waits.
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

/// The transports' handle on the queue. Cheap to clone.
#[derive(Clone)]
pub struct UpdateSender {
    tx: mpsc::Sender<Received>,
    recent: Arc<RecentIds>,
    accepting: Arc<AtomicBool>,
    stats: Arc<Stats>,
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
    fn received(&self, update: Update, transport: Transport) -> Received {
        Received {
            update,
            transport,
            at: Instant::now(),
        }
    }

    fn counted(&self, r: &Received) {
        let m = self.app.metrics();
        m.updates
            .with_label_values(&[r.update.kind.name(), r.transport.name()])
            .inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        m.last_update.set(now);
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
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
        match self.tx.try_reserve() {
            Ok(permit) => {
                let r = self.received(update, transport);
                self.counted(&r);
                permit.send(r);
                Offer::Queued
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                self.recent.remove(id);
                Offer::Full
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
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
        match self.tx.reserve().await {
            Ok(permit) => {
                let r = self.received(update, transport);
                self.counted(&r);
                permit.send(r);
                Offer::Queued
            }
            Err(_) => {
                self.recent.remove(id);
                Offer::Closed
            }
        }
    }

    /// Updates waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The queue's capacity.
    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// The app the updates are handled by.
    pub fn app(&self) -> &App {
        &self.app
    }
}

/// Watches a runtime's progress: counters, in-flight updates, whether it is idle.
#[derive(Clone, Debug)]
pub struct RuntimeMonitor {
    stats: Arc<Stats>,
    workers: Arc<Semaphore>,
    worker_count: usize,
    tx: mpsc::WeakSender<Received>,
}

impl RuntimeMonitor {
    /// The counters so far.
    pub fn stats(&self) -> RuntimeStats {
        snapshot(&self.stats)
    }

    /// Updates being handled right now.
    pub fn in_flight(&self) -> usize {
        self.worker_count - self.workers.available_permits()
    }

    /// Updates waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// Nothing queued, nothing in flight, every queued update accounted for.
    pub fn is_idle(&self) -> bool {
        let s = self.stats();
        self.queued() == 0
            && self.in_flight() == 0
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

/// The update processor. Dropping it without [`Runtime::shutdown`] abandons the queue.
pub struct Runtime {
    sender: UpdateSender,
    stop: Shutdown,
    dispatcher: tokio::task::JoinHandle<()>,
    workers: Arc<Semaphore>,
    worker_count: usize,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.worker_count)
            .field("queued", &self.sender.queue_len())
            .finish_non_exhaustive()
    }
}

struct Worker {
    app: App,
    claims: Option<RedisClaims>,
    latency: Option<LatencyRecorder>,
    stats: Arc<Stats>,
    stop: Shutdown,
    store_retries: u32,
    retry_base: Duration,
    last_claim_warning: AtomicU64,
}

impl Runtime {
    /// Starts the dispatcher. Must run inside a tokio runtime.
    pub fn start(app: App, config: RuntimeConfig) -> Self {
        let worker_count = config.workers.max(1);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(Stats::default());
        let stop = Shutdown::new();
        let workers = Arc::new(Semaphore::new(worker_count));
        let worker = Arc::new(Worker {
            app: app.clone(),
            claims: config.claims,
            latency: config.latency,
            stats: Arc::clone(&stats),
            stop: stop.clone(),
            store_retries: config.store_retries,
            retry_base: config.retry_base,
            last_claim_warning: AtomicU64::new(0),
        });
        let dispatcher = tokio::spawn(dispatch(rx, Arc::clone(&workers), worker, stop.clone()));
        let sender = UpdateSender {
            tx,
            recent: Arc::new(RecentIds::new(config.recent_ids)),
            accepting: Arc::new(AtomicBool::new(true)),
            stats,
            app,
        };
        Self {
            sender,
            stop,
            dispatcher,
            workers,
            worker_count,
            drain_timeout: config.drain_timeout,
        }
    }

    /// A handle for a transport.
    pub fn sender(&self) -> UpdateSender {
        self.sender.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> RuntimeStats {
        snapshot(&self.sender.stats)
    }

    /// Updates being handled right now.
    pub fn in_flight(&self) -> usize {
        self.worker_count - self.workers.available_permits()
    }

    /// A handle that watches this runtime's progress (it outlives [`Runtime::shutdown`]).
    pub fn monitor(&self) -> RuntimeMonitor {
        RuntimeMonitor {
            stats: Arc::clone(&self.sender.stats),
            workers: Arc::clone(&self.workers),
            worker_count: self.worker_count,
            tx: self.sender.tx.downgrade(),
        }
    }

    /// Stops taking updates (offers answer [`Offer::Closed`]), handles what is queued and in
    /// flight, and returns when done or when the drain deadline passes.
    pub async fn shutdown(self) -> DrainReport {
        let started = Instant::now();
        self.sender.accepting.store(false, Ordering::Release);
        self.stop.trigger();
        let deadline = started + self.drain_timeout;
        let mut dispatcher = self.dispatcher;
        let drained = tokio::time::timeout_at(deadline.into(), &mut dispatcher).await;
        let in_flight = tokio::time::timeout_at(
            deadline.into(),
            self.workers
                .acquire_many(u32::try_from(self.worker_count).unwrap_or(u32::MAX)),
        )
        .await;
        let queued_left = self.sender.queue_len();
        let abandoned = match (drained, in_flight) {
            (Ok(_), Ok(_)) => 0,
            _ => {
                dispatcher.abort();
                queued_left + (self.worker_count - self.workers.available_permits())
            }
        };
        let report = DrainReport {
            stats: snapshot(&self.sender.stats),
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
                "update queue drained"
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

/// Takes updates off the queue and runs each on its own task under a worker permit. After
/// the stop signal it closes the queue (nothing new gets in) and keeps going until it is empty.
async fn dispatch(
    mut rx: mpsc::Receiver<Received>,
    workers: Arc<Semaphore>,
    worker: Arc<Worker>,
    stop: Shutdown,
) {
    let mut closing = false;
    loop {
        let next = tokio::select! {
            biased;
            () = stop.wait(), if !closing => {
                rx.close();
                closing = true;
                continue;
            }
            next = rx.recv() => next,
        };
        let Some(received) = next else { break };
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = Arc::clone(&workers).acquire_owned().await else {
            break;
        };
        let worker = Arc::clone(&worker);
        tokio::spawn(async move {
            worker.process(received).await;
            drop(permit);
        });
    }
}

impl Worker {
    async fn process(&self, r: Received) {
        let id = r.update.id;
        if let Some(claims) = &self.claims {
            match claims.claim(id).await {
                Ok(true) => {}
                Ok(false) => {
                    self.stats.claimed_elsewhere.fetch_add(1, Ordering::Relaxed);
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
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
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
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
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
