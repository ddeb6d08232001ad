//! Seen-member batching: every member who writes is recorded, without a database round trip per message.
//!
//! [`SeenRecorder::record`] only updates an in-memory map (latest time per
//! (group, user)); a background task writes the map with one
//! [`Store::record_seen_many`] call every `flush_interval`, as soon as
//! `max_batch` distinct members are waiting, and once more on shutdown. A
//! member who writes a hundred times a second costs one row per flush.
//!
//! If the process dies, the sightings of the last interval are lost: they
//! are bookkeeping (who might be muted on a strict leave), not enforcement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gmbot_core::domain::{GroupId, UnixTime, UserId};
use gmbot_core::store::{Store, StoreResult};
use prometheus::IntCounterVec;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How many sightings may wait in memory when the store keeps failing; beyond
/// it new members are dropped (the map is bookkeeping, never worth running out of memory).
const MAX_PENDING: usize = 1_000_000;

/// Coalesces sightings in memory and writes them in batches. Cheap to clone.
#[derive(Clone)]
pub struct SeenRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    pending: Mutex<HashMap<(GroupId, UserId), UnixTime>>,
    wake: Notify,
    max_batch: usize,
    store: Arc<dyn Store>,
    errors: IntCounterVec,
}

impl std::fmt::Debug for SeenRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenRecorder")
            .field("pending", &self.pending_len())
            .field("max_batch", &self.inner.max_batch)
            .finish_non_exhaustive()
    }
}

impl SeenRecorder {
    /// A recorder writing to `store`; failed flushes count in `errors{kind="seen_flush"}`.
    pub(crate) fn new(store: Arc<dyn Store>, max_batch: usize, errors: IntCounterVec) -> Self {
        Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                max_batch: max_batch.max(1),
                store,
                errors,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(GroupId, UserId), UnixTime>> {
        // The map holds plain values: a panic elsewhere cannot leave it inconsistent.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `user` wrote in `group` at `at`. In memory only; never waits.
    pub fn record(&self, group: GroupId, user: UserId, at: UnixTime) {
        let len = {
            let mut pending = self.lock();
            if let Some(t) = pending.get_mut(&(group, user)) {
                *t = (*t).max(at);
                return;
            }
            if pending.len() >= MAX_PENDING {
                return;
            }
            pending.insert((group, user), at);
            pending.len()
        };
        if len >= self.inner.max_batch {
            self.inner.wake.notify_one();
        }
    }

    /// Whether a sighting of `user` in `group` is waiting to be written.
    pub fn is_pending(&self, group: GroupId, user: UserId) -> bool {
        self.lock().contains_key(&(group, user))
    }

    /// Sightings waiting to be written.
    pub fn pending_len(&self) -> usize {
        self.lock().len()
    }

    /// Writes everything waiting, in one store call. On failure the rows go
    /// back into the map (merged with newer sightings) for the next flush.
    pub async fn flush(&self) -> StoreResult<usize> {
        let batch: Vec<(GroupId, UserId, UnixTime)> = {
            let mut pending = self.lock();
            if pending.is_empty() {
                return Ok(0);
            }
            std::mem::take(&mut *pending)
                .into_iter()
                .map(|((g, u), t)| (g, u, t))
                .collect()
        };
        match self.inner.store.record_seen_many(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(err) => {
                let mut pending = self.lock();
                for (g, u, t) in batch {
                    if pending.len() >= MAX_PENDING {
                        break;
                    }
                    let e = pending.entry((g, u)).or_insert(t);
                    *e = (*e).max(t);
                }
                Err(err)
            }
        }
    }

    /// Starts the flush task: every `interval`, when a batch is full, and a
    /// last time when `shutdown` turns true.
    pub(crate) fn spawn(
        &self,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stop = tokio::select! {
                    _ = tick.tick() => false,
                    () = this.inner.wake.notified() => false,
                    changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
                };
                this.flush_logged().await;
                if stop {
                    break;
                }
            }
        })
    }

    async fn flush_logged(&self) {
        match self.flush().await {
            Ok(0) => {}
            Ok(n) => log::debug!(rows = n; "seen members written"),
            Err(err) => {
                self.inner.errors.with_label_values(&["seen_flush"]).inc();
                log::warn!(
                    pending = self.pending_len(),
                    error:display = err;
                    "cannot write seen members; will retry"
                );
            }
        }
    }
}
