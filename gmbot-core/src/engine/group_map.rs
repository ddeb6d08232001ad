//! `GroupMap`: the per-group snapshot map behind the config and admin caches — sharded, read-mostly, single-flight loads.
//!
//! Why not a general-purpose cache here: a profile of the hit path
//! (callgrind, `benches/engine_hit.rs`) showed a moka lookup at ~1,000–1,300
//! instructions — an eviction policy earns its keep for millions of (channel,
//! user) keys (see `cache/local.rs`), not for one entry per group that is read
//! on every message and replaced every few minutes. Here a
//! read is: hash the id, take one shard's read lock (never held across an
//! await, never global), clone an `Arc`. Writes happen only on a miss.
//!
//! Expiry is a timestamp on the [`Clock`](crate::clock::Clock) port stored
//! with each entry. The size is bounded: a full shard first drops its expired
//! entries, then an arbitrary one (the groups being read again come back on
//! the next miss).
//!
//! Loads are single-flight: concurrent misses of one group share one load.
//! An [`invalidate`](GroupMap::invalidate) that overlaps a load keeps that
//! load's answer out of the map (it is still handed to its callers), so an
//! invalidation is never undone by a read of the old data.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::OnceCell;

use crate::domain::GroupId;

/// Number of shards (a power of two): enough that two busy groups rarely share a lock.
const SHARDS: usize = 64;

/// A cached value and the clock millisecond at which it goes stale.
struct Slot<V> {
    value: V,
    expires_at_ms: u64,
}

/// Group ids are already well spread in their low bits; one multiply mixes them.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Shard<V> = RwLock<HashMap<GroupId, Slot<V>, BuildHasherDefault<IdHasher>>>;

/// Group id → `V` (an `Arc` snapshot), with per-entry expiry and
/// single-flight loading of an `L` (the load's answer, e.g. a `Result<V, E>`).
pub(crate) struct GroupMap<V, L = V> {
    shards: Box<[Shard<V>]>,
    per_shard: usize,
    epoch: AtomicU64,
    /// Loads in progress; touched only on a miss.
    flights: Mutex<HashMap<GroupId, Arc<OnceCell<L>>>>,
}

impl<V: Clone, L: Clone> GroupMap<V, L> {
    /// A map holding about `capacity` groups in all.
    pub(crate) fn new(capacity: u64) -> Self {
        let per_shard = usize::try_from(capacity / SHARDS as u64)
            .unwrap_or(usize::MAX)
            .max(1);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard,
            epoch: AtomicU64::new(0),
            flights: Mutex::default(),
        }
    }

    fn shard(&self, group: GroupId) -> &Shard<V> {
        let h = (group.get() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// The entry and whether it is still fresh at `now_ms`.
    #[inline]
    pub(crate) fn get(&self, group: GroupId, now_ms: u64) -> Option<(V, bool)> {
        let shard = self
            .shard(group)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get(&group)
            .map(|s| (s.value.clone(), now_ms < s.expires_at_ms))
    }

    /// The current invalidation epoch; pass it to [`Self::insert_unless_invalidated`].
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores `value` until `expires_at_ms`, unless an invalidation happened since `epoch` was read.
    pub(crate) fn insert_unless_invalidated(
        &self,
        group: GroupId,
        value: V,
        now_ms: u64,
        expires_at_ms: u64,
        epoch: u64,
    ) {
        let mut shard = self
            .shard(group)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the shard lock: an invalidation bumps the epoch before
        // it takes this lock, so it either sees this entry or stops it here.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(&group) {
            shard.retain(|_, s| now_ms < s.expires_at_ms);
            if shard.len() >= self.per_shard {
                if let Some(victim) = shard.keys().next().copied() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            group,
            Slot {
                value,
                expires_at_ms,
            },
        );
    }

    /// Forgets the group's entry; loads in flight will not store theirs.
    pub(crate) fn invalidate(&self, group: GroupId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.shard(group)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group);
    }

    /// Forgets every entry; loads in flight will not store theirs.
    pub(crate) fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Runs `load` unless a load of `group` is already running, in which case
    /// waits for that one's answer. If the running load's caller is cancelled,
    /// a waiter runs its own `load` instead, so nobody is stranded.
    pub(crate) async fn load_once<F>(&self, group: GroupId, load: F) -> L
    where
        F: Future<Output = L>,
    {
        let cell = self
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(group)
            .or_default()
            .clone();
        let value = cell.get_or_init(|| load).await.clone();
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(&group).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            flights.remove(&group);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_capacity_and_invalidation() {
        let map: GroupMap<Arc<u32>> = GroupMap::new(64);
        let g = GroupId(-1_001);
        map.insert_unless_invalidated(g, Arc::new(1), 0, 10, map.epoch());
        assert_eq!(map.get(g, 9).map(|(v, fresh)| (*v, fresh)), Some((1, true)));
        assert_eq!(map.get(g, 10).map(|(_, fresh)| fresh), Some(false));

        // A load that read its epoch before an invalidation does not store.
        let epoch = map.epoch();
        map.invalidate(g);
        map.insert_unless_invalidated(g, Arc::new(2), 0, 10, epoch);
        assert!(map.get(g, 0).is_none());

        // One entry per shard: a new group in a full shard evicts.
        for i in 0..1_000 {
            map.insert_unless_invalidated(GroupId(-i - 1), Arc::new(0), 0, 10, map.epoch());
        }
        let total: usize = map
            .shards
            .iter()
            .map(|s| s.read().map_or(0, |m| m.len()))
            .sum();
        assert!(total <= 64, "{total}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_loads_share_one_run() {
        let map: GroupMap<Arc<u32>> = GroupMap::new(64);
        let runs = AtomicU64::new(0);
        let g = GroupId(-7);
        let load = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            Arc::new(5)
        };
        let (a, b, c) = tokio::join!(
            map.load_once(g, load()),
            map.load_once(g, load()),
            map.load_once(g, load())
        );
        assert_eq!((*a, *b, *c), (5, 5, 5));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
