//! Single flight: concurrent misses of one key share one load; an event that arrives while a load runs wins over it.
//!
//! Telegram's `getChatMember` is rate limited and slow compared to a cache
//! hit; when a busy member's entry expires, every message they and the group
//! send in the next few hundred milliseconds would otherwise call it again.
//! The first caller of a missing key runs the load; the others wait for its
//! answer (success or error — an error is handed to every waiter and is not
//! cached). If that first caller is cancelled, a waiter takes over with its
//! own loader, so a dropped request never strands the others.
//!
//! A load asked Telegram at some instant; an event about the key seen after
//! the load began (a `chat_member` join or leave written with
//! [`insert`](super::MembershipCache::insert), an invalidation) may describe
//! a later state. Such an event *supersedes* every load of the key in
//! progress: their answers still reach their callers but are not cached, so
//! an older answer can never overwrite the event's. Besides the shared load
//! there can be solo loads of the same key (a recheck that must not join an
//! older load, see [`MembershipCache::refresh`](super::MembershipCache::refresh));
//! they are superseded the same way.
//!
//! Ordering: a load writes its answer into the in-process layer with
//! [`Flight::write_unless_superseded`], which holds the flight's lock while
//! it checks and writes; an event takes the same lock to mark the flight
//! before it writes its own entry. Either the load's write happens first and
//! the event's overwrites it, or the event's mark happens first and the load
//! writes nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use crate::telegram::TelegramResult;

use super::{CacheLookup, MembershipKey};

/// One load in progress (shared by its waiters, or solo).
#[derive(Debug, Default)]
pub(super) struct Flight {
    result: OnceCell<TelegramResult<CacheLookup>>,
    superseded: Mutex<bool>,
}

fn lock(m: &Mutex<bool>) -> MutexGuard<'_, bool> {
    // A bool cannot be left half-written by a panicking holder.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Flight {
    /// An event or an invalidation for the key arrived while this load ran:
    /// its answer may predate the change, so it must not be cached (it is
    /// still returned to the callers).
    pub(super) fn is_superseded(&self) -> bool {
        *lock(&self.superseded)
    }

    /// Marks the load superseded, waiting for a write of its own in progress to finish.
    fn supersede(&self) {
        *lock(&self.superseded) = true;
    }

    /// Runs `write` (an in-process insert: synchronous, short) unless the
    /// load was superseded, holding the flight's lock so that a concurrent
    /// event is ordered entirely before or after it. Returns whether it wrote.
    pub(super) fn write_unless_superseded(&self, write: impl FnOnce()) -> bool {
        let superseded = lock(&self.superseded);
        if *superseded {
            return false;
        }
        write();
        true
    }
}

/// The loads of one key in progress.
#[derive(Debug, Default)]
struct KeyFlights {
    /// The load concurrent lookups share.
    shared: Option<Arc<Flight>>,
    /// Loads that must not be shared (refreshes).
    solo: Vec<Arc<Flight>>,
}

impl KeyFlights {
    fn is_empty(&self) -> bool {
        self.shared.is_none() && self.solo.is_empty()
    }

    /// Supersedes every load and detaches the shared one; returns how many there were.
    fn supersede(&mut self) -> usize {
        if let Some(shared) = self.shared.take() {
            self.solo.push(shared);
        }
        for flight in &self.solo {
            flight.supersede();
        }
        self.solo.len()
    }
}

/// The loads in progress, by key. The lock is held only to find, add or
/// remove an entry (and to mark flights superseded), never across an await,
/// and only on the miss path.
#[derive(Debug, Default)]
pub(super) struct SingleFlight {
    in_flight: Mutex<HashMap<MembershipKey, KeyFlights>>,
}

/// Removes a solo flight from the map when its load ends or is dropped.
struct Registration<'a> {
    owner: &'a SingleFlight,
    key: MembershipKey,
    flight: Arc<Flight>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.owner.remove(self.key, &self.flight);
    }
}

impl SingleFlight {
    fn map(&self) -> MutexGuard<'_, HashMap<MembershipKey, KeyFlights>> {
        // The map stays consistent even if a holder panicked: every critical
        // section is a single insert, lookup or remove.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets `flight` of `key`, if it is still registered.
    fn remove(&self, key: MembershipKey, flight: &Arc<Flight>) {
        let mut map = self.map();
        if let Some(flights) = map.get_mut(&key) {
            if flights
                .shared
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(f, flight))
            {
                flights.shared = None;
            }
            flights.solo.retain(|f| !Arc::ptr_eq(f, flight));
            if flights.is_empty() {
                map.remove(&key);
            }
        }
    }

    /// Runs `load` unless a load of `key` is already running, in which case
    /// waits for that one's answer. `load` receives its [`Flight`] to check
    /// for supersession before it caches anything.
    pub(super) async fn run<F, Fut>(
        &self,
        key: MembershipKey,
        load: F,
    ) -> TelegramResult<CacheLookup>
    where
        F: FnOnce(Arc<Flight>) -> Fut,
        Fut: Future<Output = TelegramResult<CacheLookup>>,
    {
        let flight = Arc::clone(
            self.map()
                .entry(key)
                .or_default()
                .shared
                .get_or_insert_default(),
        );
        let result = flight
            .result
            .get_or_init(|| load(Arc::clone(&flight)))
            .await
            .clone();
        // Removed once answered, not when a caller is dropped: a cancelled
        // caller leaves the flight to the others (one of them takes over the load).
        self.remove(key, &flight);
        result
    }

    /// Runs `load` on its own (never shared with, nor joined by, another
    /// caller), registered so that an event for `key` supersedes it too.
    pub(super) async fn run_solo<F, Fut, T>(&self, key: MembershipKey, load: F) -> T
    where
        F: FnOnce(Arc<Flight>) -> Fut,
        Fut: Future<Output = T>,
    {
        let flight = Arc::new(Flight::default());
        self.map()
            .entry(key)
            .or_default()
            .solo
            .push(Arc::clone(&flight));
        let _registration = Registration {
            owner: self,
            key,
            flight: Arc::clone(&flight),
        };
        load(flight).await
    }

    /// Marks every running load of `key` superseded; returns how many there were.
    ///
    /// The shared load is also detached: a lookup arriving from now on starts
    /// a new load (which sees the event's entry) instead of waiting for an
    /// answer that may predate the event.
    pub(super) fn supersede(&self, key: MembershipKey) -> usize {
        let mut map = self.map();
        map.get_mut(&key).map_or(0, KeyFlights::supersede)
    }

    /// Marks every running load of `key` but `own` superseded (a refresh
    /// about to cache an answer newer than theirs).
    pub(super) fn supersede_others(&self, key: MembershipKey, own: &Flight) {
        let mut map = self.map();
        let Some(flights) = map.get_mut(&key) else {
            return;
        };
        if let Some(shared) = flights.shared.take() {
            flights.solo.push(shared);
        }
        for flight in &flights.solo {
            if !std::ptr::eq(Arc::as_ptr(flight), own) {
                flight.supersede();
            }
        }
    }

    /// Marks every running load of every key superseded (events were missed,
    /// e.g. during a pub/sub outage); returns how many there were.
    pub(super) fn supersede_all(&self) -> usize {
        let mut map = self.map();
        map.values_mut().map(KeyFlights::supersede).sum()
    }

    /// Keys with a load in progress (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheSource;
    use crate::domain::{ChannelId, ChatMemberStatus, UserId};

    fn key(u: i64) -> MembershipKey {
        MembershipKey::new(ChannelId(-100), UserId(u))
    }

    fn loaded(status: ChatMemberStatus) -> TelegramResult<CacheLookup> {
        Ok(CacheLookup {
            status,
            source: CacheSource::Loaded,
        })
    }

    #[tokio::test]
    async fn supersede_reaches_shared_and_solo_loads_and_only_of_that_key() {
        let sf = SingleFlight::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<(bool, bool)>();
        let shared = sf.run(key(1), |flight| async move {
            let _ = rx.await;
            let wrote = flight.write_unless_superseded(|| {});
            let _ = seen_tx.send((flight.is_superseded(), wrote));
            loaded(ChatMemberStatus::Member)
        });
        let (other_tx, other_rx) = tokio::sync::oneshot::channel::<()>();
        let other = sf.run_solo(key(2), |flight| async move {
            let _ = other_rx.await;
            flight.is_superseded()
        });
        let driver = async {
            tokio::task::yield_now().await;
            assert_eq!(sf.len(), 2);
            assert_eq!(sf.supersede(key(1)), 1);
            assert_eq!(sf.supersede(key(3)), 0);
            let _ = tx.send(());
            let _ = other_tx.send(());
        };
        let (answer, other_superseded, ()) = tokio::join!(shared, other, driver);
        assert_eq!(answer.map(|l| l.status), Ok(ChatMemberStatus::Member));
        assert!(!other_superseded, "another key's load is not touched");
        assert_eq!(seen_rx.await.expect("seen"), (true, false));
        assert_eq!(sf.len(), 0, "finished loads leave the map");
    }

    #[tokio::test]
    async fn a_dropped_load_leaves_the_map() {
        let sf = SingleFlight::default();
        {
            let fut = sf.run_solo(key(1), |_| std::future::pending::<()>());
            tokio::pin!(fut);
            assert!(futures_util::poll!(&mut fut).is_pending());
            assert_eq!(sf.len(), 1);
        }
        assert_eq!(sf.len(), 0);
        assert_eq!(sf.supersede_all(), 0);
    }
}
