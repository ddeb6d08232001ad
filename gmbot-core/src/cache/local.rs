//! The in-process layer shared by the memory and layered caches: a bounded `moka` map whose entries carry their logical expiry.
//!
//! Expiry is decided on the [`Clock`] port, not by moka's own timer, so a
//! test or a simulation that moves a `ManualClock` sees entries expire
//! exactly when the policy says. moka's per-entry expiry is set to the same
//! lifetime on the real clock and only frees the memory of dead entries.
//! `moka::sync::Cache::get` takes no lock and does not allocate, which is
//! what makes [`LocalLayer::get`] fit the engine's hit path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::clock::Clock;
use crate::domain::ChatMemberStatus;

use super::MembershipKey;

/// A cached status, its logical expiry (clock millis) and the lifetime it was given.
#[derive(Debug, Clone, Copy)]
struct LocalEntry {
    status: ChatMemberStatus,
    expires_at_millis: u64,
    ttl: Duration,
}

/// moka's physical expiry: the entry's own lifetime, so memory is reclaimed.
struct PhysicalExpiry;

impl Expiry<MembershipKey, LocalEntry> for PhysicalExpiry {
    fn expire_after_create(
        &self,
        _key: &MembershipKey,
        value: &LocalEntry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &MembershipKey,
        value: &LocalEntry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The bounded in-process map.
pub(super) struct LocalLayer {
    entries: Cache<MembershipKey, LocalEntry>,
    clock: Arc<dyn Clock>,
}

impl LocalLayer {
    /// A layer holding at most `max_capacity` entries (least useful evicted first).
    pub(super) fn new(max_capacity: u64, clock: Arc<dyn Clock>) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_capacity)
            .expire_after(PhysicalExpiry)
            .build();
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
            ttl,
        };
        self.entries.insert(key, entry);
    }

    /// Forgets `key`.
    pub(super) fn remove(&self, key: MembershipKey) {
        self.entries.invalidate(&key);
    }

    /// Forgets everything (after missed invalidations, e.g. a pub/sub outage).
    pub(super) fn clear(&self) {
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::{ChannelId, UnixTime, UserId};

    #[test]
    fn logical_expiry_follows_the_clock() {
        let clock = ManualClock::new(UnixTime(0));
        let layer = LocalLayer::new(100, Arc::new(clock.clone()));
        let key = MembershipKey::new(ChannelId(-100), UserId(1));
        layer.insert(key, ChatMemberStatus::Member, Duration::from_secs(10));
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(layer.get(key), Some(ChatMemberStatus::Member));
        clock.advance(Duration::from_millis(1));
        assert_eq!(layer.get(key), None);
        layer.insert(key, ChatMemberStatus::Left, Duration::from_secs(1));
        assert_eq!(layer.get(key), Some(ChatMemberStatus::Left));
        layer.remove(key);
        assert_eq!(layer.get(key), None);
    }
}
