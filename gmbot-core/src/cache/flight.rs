//! Single flight: concurrent misses of one key share one load.
//!
//! Telegram's `getChatMember` is rate limited and slow compared to a cache
//! hit; when a busy member's entry expires, every message they and the group
//! send in the next few hundred milliseconds would otherwise call it again.
//! The first caller of a missing key runs the load; the others wait for its
//! answer (success or error — an error is handed to every waiter and is not
//! cached). If that first caller is cancelled, a waiter takes over with its
//! own loader, so a dropped request never strands the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use crate::telegram::TelegramResult;

use super::{CacheLookup, MembershipKey};

/// One load in progress.
#[derive(Debug, Default)]
pub(super) struct Flight {
    result: OnceCell<TelegramResult<CacheLookup>>,
    invalidated: AtomicBool,
}

impl Flight {
    /// The key was invalidated while this load ran: its answer may predate
    /// the change, so it must not be cached (it is still returned to the callers).
    pub(super) fn is_invalidated(&self) -> bool {
        self.invalidated.load(Ordering::Acquire)
    }
}

/// The loads in progress, by key. The lock is held only to find or remove an
/// entry, never across an await, and only on the miss path.
#[derive(Debug, Default)]
pub(super) struct SingleFlight {
    in_flight: Mutex<HashMap<MembershipKey, Arc<Flight>>>,
}

impl SingleFlight {
    fn map(&self) -> MutexGuard<'_, HashMap<MembershipKey, Arc<Flight>>> {
        // The map stays consistent even if a holder panicked: every critical
        // section is a single insert, lookup or remove.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `load` unless a load of `key` is already running, in which case
    /// waits for that one's answer. `load` receives its [`Flight`] to check
    /// for an invalidation before it caches anything.
    pub(super) async fn run<F, Fut>(
        &self,
        key: MembershipKey,
        load: F,
    ) -> TelegramResult<CacheLookup>
    where
        F: FnOnce(Arc<Flight>) -> Fut,
        Fut: Future<Output = TelegramResult<CacheLookup>>,
    {
        let flight = Arc::clone(self.map().entry(key).or_default());
        let result = flight
            .result
            .get_or_init(|| load(Arc::clone(&flight)))
            .await
            .clone();
        let mut map = self.map();
        if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            map.remove(&key);
        }
        result
    }

    /// Marks a running load of `key`, if any, as invalidated.
    pub(super) fn invalidate(&self, key: MembershipKey) {
        if let Some(flight) = self.map().get(&key) {
            flight.invalidated.store(true, Ordering::Release);
        }
    }
}
