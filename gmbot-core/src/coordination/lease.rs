//! Holding a lease: renewal in the background and the [`Fence`] a job checks, so that a holder that cannot renew stops before another instance can take over.
//!
//! The rule that makes this safe: a holder counts its lease from the moment it *sent* the
//! request that took or renewed it (Redis starts the lease's `PX` later, when it runs the
//! command), minus a margin for clock-rate drift. It renews every third of the time to live;
//! a renewal refused (another token holds the name) ends the lease at once; a renewal that
//! fails (Redis unreachable) is retried until that deadline, where the holder gives the
//! lease up on its own. So when another instance can take the name — after the key expired
//! in Redis — this holder's fence has already turned false and its job has been stopped.
//!
//! Limits, honestly: the fence is checked by the job, between steps (before each batch of
//! work, and by the loop running it, which drops the job when the fence falls). A Telegram
//! call or store write already sent when the fence falls still lands, and work the job
//! queued elsewhere (the outbox) is carried out; both are idempotent for the jobs that run
//! under a lease (reconciliation, the join gate's sweep, the warm-up). A process paused for
//! longer than the margin (a stop-the-world swap, `SIGSTOP`) can wake with its timers late;
//! the fence compares against the monotonic clock on every check, so the first check after
//! the pause sees the lease gone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{CoordinationError, LeaseStore};

/// One tenure of a named lease: what [`LeaseStore::renew`] and [`LeaseStore::release`] are
/// fenced by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease's name (e.g. `reconcile`).
    pub name: String,
    /// This tenure's token: only a call carrying it renews or releases the lease.
    pub token: String,
    /// Strictly greater than every earlier tenure's generation of this name.
    pub generation: u64,
    /// How long the lease lasts from each take or renewal.
    pub ttl: Duration,
    /// The store had no record of this name's earlier generations (a first start, or a Redis
    /// that lost its data): an earlier holder may still believe it holds the name, until
    /// its own deadline — at most one time to live away. [`HeldLease::ready`] waits that out.
    pub fresh: bool,
}

/// The job's view of a lease it runs under: `is_held` turns false for good as soon as the
/// lease may have ended. Cheap to clone and to check (an atomic load and a clock read).
#[derive(Debug, Clone)]
pub struct Fence {
    state: Option<Arc<FenceState>>,
}

#[derive(Debug)]
struct FenceState {
    generation: u64,
    origin: Instant,
    /// Milliseconds since `origin` until which the lease is certainly held.
    valid_until_ms: AtomicU64,
    lost: AtomicBool,
    lost_tx: watch::Sender<bool>,
}

/// The lease a job ran under was lost (or may have been): stop writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the lease (generation {generation}) is no longer held")]
pub struct LeaseLost {
    /// The generation that was lost.
    pub generation: u64,
}

impl Fence {
    /// A fence that is always held: for a job that runs without a lease (one instance).
    pub fn unfenced() -> Self {
        Self { state: None }
    }

    fn new(generation: u64, valid_until: Instant) -> Self {
        let origin = Instant::now();
        let (lost_tx, _) = watch::channel(false);
        let state = FenceState {
            generation,
            origin,
            valid_until_ms: AtomicU64::new(millis(valid_until.saturating_duration_since(origin))),
            lost: AtomicBool::new(false),
            lost_tx,
        };
        Self {
            state: Some(Arc::new(state)),
        }
    }

    /// The generation of the lease, `None` when unfenced.
    pub fn generation(&self) -> Option<u64> {
        self.state.as_ref().map(|s| s.generation)
    }

    /// Whether the lease is certainly still held now.
    pub fn is_held(&self) -> bool {
        let Some(s) = &self.state else { return true };
        if s.lost.load(Ordering::Acquire) {
            return false;
        }
        if millis(s.origin.elapsed()) >= s.valid_until_ms.load(Ordering::Acquire) {
            s.mark_lost();
            return false;
        }
        true
    }

    /// `Ok` while the lease is held; the job stops at the first `Err`.
    pub fn check(&self) -> Result<(), LeaseLost> {
        if self.is_held() {
            Ok(())
        } else {
            Err(LeaseLost {
                generation: self.generation().unwrap_or(0),
            })
        }
    }

    /// Completes once the lease is lost (never, when unfenced).
    pub async fn lost(&self) {
        let Some(s) = &self.state else {
            return std::future::pending().await;
        };
        let mut rx = s.lost_tx.subscribe();
        loop {
            if !self.is_held() {
                return;
            }
            let until = s.origin + Duration::from_millis(s.valid_until_ms.load(Ordering::Acquire));
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    fn extend_to(&self, until: Instant) {
        if let Some(s) = &self.state {
            let ms = millis(until.saturating_duration_since(s.origin));
            s.valid_until_ms.fetch_max(ms, Ordering::AcqRel);
        }
    }

    fn mark_lost(&self) {
        if let Some(s) = &self.state {
            s.mark_lost();
        }
    }
}

impl FenceState {
    fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            self.lost_tx.send_replace(true);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long before Redis could expire the lease its holder already treats it as gone: a tenth
/// of the time to live (clock-rate drift between hosts is far below that), at least 50 ms.
fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(50)).min(ttl / 2)
}

/// A lease this instance holds, renewed by a background task until released, lost or dropped.
///
/// Dropping it stops the renewal without releasing (as if the process died): the lease then
/// runs out in its store and another instance takes it over.
pub struct HeldLease {
    lease: Lease,
    fence: Fence,
    /// When the job may start: at once, or one time to live after a fresh take.
    ready_at: Instant,
    store: Arc<dyn LeaseStore>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HeldLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLease")
            .field("lease", &self.lease)
            .field("held", &self.fence.is_held())
            .finish_non_exhaustive()
    }
}

impl HeldLease {
    /// Takes `name` for `ttl` if it is free and starts renewing it; `Ok(None)` if another
    /// holder has it. Must run inside a tokio runtime.
    pub async fn acquire(
        store: Arc<dyn LeaseStore>,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Self>, CoordinationError> {
        let ttl = ttl.max(Duration::from_millis(100));
        let sent = Instant::now();
        let Some(lease) = store.try_acquire(name, ttl).await? else {
            return Ok(None);
        };
        let fence = Fence::new(lease.generation, sent + ttl - margin(ttl));
        if !fence.is_held() {
            // The answer took longer than the lease is certainly ours: give it back.
            let _ = store.release(&lease).await;
            return Ok(None);
        }
        let renewer = tokio::spawn(renew(Arc::clone(&store), lease.clone(), fence.clone()));
        let ready_at = if lease.fresh {
            log::info!(
                lease = lease.name.as_str(),
                generation = lease.generation;
                "lease {} taken in a store without its history (first start, or Redis lost its data): waiting one lease period before running its job",
                lease.name
            );
            sent + ttl
        } else {
            sent
        };
        Ok(Some(Self {
            lease,
            fence,
            ready_at,
            store,
            renewer: Some(renewer),
        }))
    }

    /// The fence the job checks.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// This tenure.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether the lease is certainly still held.
    pub fn is_held(&self) -> bool {
        self.fence.is_held()
    }

    /// Completes once the lease is lost.
    pub async fn lost(&self) {
        self.fence.lost().await;
    }

    /// Completes when the job may start: at once, or — for a [`fresh`](Lease::fresh) take —
    /// one time to live after it, when any earlier holder's own deadline has passed. Returns
    /// whether the lease is still held then.
    pub async fn ready(&self) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(self.ready_at) => self.is_held(),
            () = self.fence.lost() => false,
        }
    }

    /// Stops renewing and gives the lease up (if it is still ours), so another instance may
    /// take it at once.
    pub async fn release(mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        self.fence.mark_lost();
        if let Err(err) = self.store.release(&self.lease).await {
            log::info!(
                lease = self.lease.name.as_str(),
                error:display = err;
                "cannot release a lease; it runs out by itself"
            );
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        self.fence.mark_lost();
    }
}

/// Renews every third of the time to live; retries a failed renewal a few times before the
/// deadline; gives up at the deadline or at the first refusal.
async fn renew(store: Arc<dyn LeaseStore>, lease: Lease, fence: Fence) {
    let ttl = lease.ttl;
    let every = ttl / 3;
    let retry = (ttl / 10).max(Duration::from_millis(20));
    let mut next = Instant::now() + every;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = fence.lost() => break,
        }
        let sent = Instant::now();
        match store.renew(&lease).await {
            Ok(true) => {
                fence.extend_to(sent + ttl - margin(ttl));
                next = sent + every;
            }
            Ok(false) => {
                log::warn!(
                    lease = lease.name.as_str(),
                    generation = lease.generation;
                    "lease {} lost: another instance holds it now",
                    lease.name
                );
                fence.mark_lost();
                break;
            }
            Err(err) => {
                log::warn!(
                    lease = lease.name.as_str(),
                    generation = lease.generation,
                    error:display = err;
                    "cannot renew lease {}; retrying until it runs out",
                    lease.name
                );
                next = Instant::now() + retry;
            }
        }
        if !fence.is_held() {
            log::warn!(
                lease = lease.name.as_str(),
                generation = lease.generation;
                "lease {} given up: it could not be renewed in time",
                lease.name
            );
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::LocalCoordination;

    #[tokio::test(start_paused = true)]
    async fn a_fence_falls_at_its_deadline_and_when_marked() {
        let f = Fence::new(7, Instant::now() + Duration::from_secs(1));
        assert!(f.is_held());
        assert_eq!(f.generation(), Some(7));
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert!(f.check().is_ok());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(f.check(), Err(LeaseLost { generation: 7 }));
        // Extending a fallen fence does not raise it again.
        f.extend_to(Instant::now() + Duration::from_secs(10));
        assert!(!f.is_held());
        assert!(Fence::unfenced().is_held());
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_lease_is_renewed_and_excludes_others_until_released() {
        let store: Arc<dyn LeaseStore> = Arc::new(LocalCoordination::new());
        let ttl = Duration::from_secs(3);
        let a = HeldLease::acquire(Arc::clone(&store), "job", ttl)
            .await
            .expect("answers")
            .expect("free");
        assert!(HeldLease::acquire(Arc::clone(&store), "job", ttl)
            .await
            .expect("answers")
            .is_none());
        // Long past the first time to live: renewed all along.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(a.is_held());
        let first = a.lease().generation;
        a.release().await;
        let b = HeldLease::acquire(Arc::clone(&store), "job", ttl)
            .await
            .expect("answers")
            .expect("released, so free at once");
        assert!(b.lease().generation > first);
        // Dropped without release: the name frees itself after the time to live only.
        drop(b);
        assert!(HeldLease::acquire(Arc::clone(&store), "job", ttl)
            .await
            .expect("answers")
            .is_none());
        tokio::time::sleep(ttl).await;
        assert!(HeldLease::acquire(Arc::clone(&store), "job", ttl)
            .await
            .expect("answers")
            .is_some());
    }
}
