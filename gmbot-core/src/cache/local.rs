//! The in-process layer shared by the memory and layered caches: a bounded, sharded `quick_cache` map whose entries carry their logical expiry.
//!
//! Expiry is decided on the [`Clock`] port, not by a timer of the map, so a
//! test or a simulation that moves a `ManualClock` sees entries expire
//! exactly when the policy says. An expired entry answers as a miss and is
//! replaced by the reload that follows (or evicted first under pressure,
//! since nothing reads it any more); the memory it holds is bounded by the
//! capacity either way.
//!
//! Why `quick_cache` and not `moka`: on a hit, `quick_cache::sync::Cache::get`
//! takes one shard's read lock, finds the entry, marks it referenced and
//! copies the value out — no allocation and no deferred work. moka's `get`
//! also logs each read for its policy and drains that log inline on about
//! one read in 64 (a fixed flush point, and moka 0.12 has no background
//! housekeeper), which costs ~10,000 instructions on that read and set the
//! engine's p99 on a hit (see `docs/BENCHMARKS.md`). Here eviction (CLOCK-Pro
//! style, per shard) runs only on insert, i.e. on the miss path.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;
use quick_cache::OptionsBuilder;

use crate::clock::Clock;
use crate::domain::ChatMemberStatus;

use super::MembershipKey;

/// Most shards the map is split into: enough that two threads rarely touch
/// the same shard lock, few enough that each shard's eviction sees a useful
/// sample of the keys.
const MAX_SHARDS: u64 = 64;

/// Fewest entries a shard is made for; smaller capacities get fewer shards (down to one).
const MIN_SHARD_ENTRIES: u64 = 256;

/// A cached status and its logical expiry (clock millis).
#[derive(Debug, Clone, Copy)]
struct LocalEntry {
    status: ChatMemberStatus,
    expires_at_millis: u64,
}

/// The bounded in-process map.
pub(super) struct LocalLayer {
    entries: Cache<MembershipKey, LocalEntry>,
    clock: Arc<dyn Clock>,
}

/// `(shards, total capacity)` for at most `max_capacity` entries: a power of
/// two of shards, each of the same whole capacity, so the total never
/// exceeds `max_capacity` (it may fall short of it by less than one entry
/// per shard).
fn layout(max_capacity: u64) -> (u64, u64) {
    let max_capacity = max_capacity.max(1);
    let mut shards = MAX_SHARDS;
    while shards > 1 && max_capacity / shards < MIN_SHARD_ENTRIES {
        shards /= 2;
    }
    (shards, max_capacity / shards * shards)
}

impl LocalLayer {
    /// A layer holding at most `max_capacity` entries (least useful evicted first).
    pub(super) fn new(max_capacity: u64, clock: Arc<dyn Clock>) -> Self {
        let (shards, capacity) = layout(max_capacity);
        let items = usize::try_from(capacity).unwrap_or(usize::MAX);
        let shard_count = usize::try_from(shards).unwrap_or(1);
        let entries = match OptionsBuilder::new()
            .shards(shard_count)
            .estimated_items_capacity(items)
            .weight_capacity(capacity)
            .build()
        {
            Ok(options) => Cache::with_options(
                options,
                Default::default(),
                Default::default(),
                Default::default(),
            ),
            // Unreachable: both required options are set above.
            Err(_) => Cache::new(items),
        };
        Self { entries, clock }
    }

    /// The live status for `key`, if any. An entry past its logical expiry is a miss.
    #[inline]
    pub(super) fn get(&self, key: MembershipKey) -> Option<ChatMemberStatus> {
        let entry = self.entries.get(&key)?;
        (self.clock.now_millis() < entry.expires_at_millis).then_some(entry.status)
    }

    /// Stores `status` for `ttl` from now.
    pub(super) fn insert(&self, key: MembershipKey, status: ChatMemberStatus, ttl: Duration) {
        let ttl_millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let entry = LocalEntry {
            status,
            expires_at_millis: self.clock.now_millis().saturating_add(ttl_millis),
        };
        self.entries.insert(key, entry);
    }

    /// Forgets `key`.
    pub(super) fn remove(&self, key: MembershipKey) {
        self.entries.remove(&key);
    }

    /// Forgets everything (after missed invalidations, e.g. a pub/sub outage).
    pub(super) fn clear(&self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::{ChannelId, UnixTime, UserId};

    fn key(user: i64) -> MembershipKey {
        MembershipKey::new(ChannelId(-100), UserId(user))
    }

    #[test]
    fn logical_expiry_follows_the_clock() {
        let clock = ManualClock::new(UnixTime(0));
        let layer = LocalLayer::new(100, Arc::new(clock.clone()));
        layer.insert(key(1), ChatMemberStatus::Member, Duration::from_secs(10));
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(layer.get(key(1)), Some(ChatMemberStatus::Member));
        clock.advance(Duration::from_millis(1));
        assert_eq!(layer.get(key(1)), None);
        layer.insert(key(1), ChatMemberStatus::Left, Duration::from_secs(1));
        assert_eq!(layer.get(key(1)), Some(ChatMemberStatus::Left));
        layer.remove(key(1));
        assert_eq!(layer.get(key(1)), None);
    }

    #[test]
    fn layout_never_exceeds_the_capacity() {
        for cap in [
            0,
            1,
            2,
            255,
            256,
            511,
            512,
            1_000,
            10_000,
            100_000,
            500_000,
            1 << 40,
        ] {
            let (shards, total) = layout(cap);
            assert!(
                shards.is_power_of_two() && shards <= MAX_SHARDS,
                "{cap}: {shards} shards"
            );
            assert!(total <= cap.max(1), "{cap}: total {total}");
            assert!(
                total >= cap.max(1) - (shards - 1),
                "{cap}: total {total} wastes too much"
            );
            assert_eq!(total % shards, 0, "{cap}: uneven shards");
        }
        assert_eq!(layout(500_000).0, MAX_SHARDS);
        assert_eq!(layout(300).0, 1);
    }

    #[test]
    fn size_stays_bounded_and_recent_hot_keys_survive() {
        let clock = ManualClock::new(UnixTime(0));
        for cap in [1_u64, 100, 5_000] {
            let layer = LocalLayer::new(cap, Arc::new(clock.clone()));
            let (shards, total) = layout(cap);
            assert_eq!(layer.entries.num_shards() as u64, shards, "cap {cap}");
            assert_eq!(layer.entries.capacity(), total, "cap {cap}");
            let hot = key(0);
            layer.insert(hot, ChatMemberStatus::Member, Duration::from_secs(60));
            for u in 1..=i64::try_from(cap * 10).expect("small") {
                layer.insert(key(u), ChatMemberStatus::Member, Duration::from_secs(60));
                // Keep one key in use: a frequently read entry is not the one evicted.
                if cap > 1 {
                    assert_eq!(layer.get(hot), Some(ChatMemberStatus::Member), "cap {cap}");
                }
                assert!(
                    layer.entries.len() as u64 <= total,
                    "cap {cap}: over capacity"
                );
            }
            assert!(
                layer.entries.len() as u64 >= total / 2,
                "cap {cap}: only {} entries kept",
                layer.entries.len()
            );
        }
    }

    #[test]
    fn clear_forgets_everything() {
        let clock = ManualClock::new(UnixTime(0));
        let layer = LocalLayer::new(10_000, Arc::new(clock));
        for u in 0..1_000 {
            layer.insert(key(u), ChatMemberStatus::Member, Duration::from_secs(60));
        }
        assert_eq!(layer.get(key(7)), Some(ChatMemberStatus::Member));
        layer.clear();
        assert!((0..1_000).all(|u| layer.get(key(u)).is_none()));
        assert_eq!(layer.entries.len(), 0);
    }

    #[test]
    fn concurrent_readers_and_writers_agree() {
        let clock = ManualClock::new(UnixTime(0));
        let layer = Arc::new(LocalLayer::new(1_000, Arc::new(clock)));
        let handles: Vec<_> = (0..4_i64)
            .map(|t| {
                let layer = Arc::clone(&layer);
                std::thread::spawn(move || {
                    for i in 0..5_000_i64 {
                        let k = key(t * 10_000 + i % 500);
                        let status = if i % 2 == 0 {
                            ChatMemberStatus::Member
                        } else {
                            ChatMemberStatus::Left
                        };
                        layer.insert(k, status, Duration::from_secs(60));
                        // Only this thread writes this key: it reads what it wrote, or
                        // nothing if the entry was evicted meanwhile.
                        let got = layer.get(k);
                        assert!(got.is_none() || got == Some(status), "{k}: {got:?}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker thread");
        }
        assert!(layer.entries.len() <= 1_000);
    }
}
