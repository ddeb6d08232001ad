//! Per-group counters for `/status`: verifications and their outcomes in this process.
//!
//! Prometheus labels must never carry a group id (one series per group would
//! grow without bound), so the numbers `/status` shows for one group live
//! here instead: small in-process counters, since this instance started,
//! bounded to [`MAX_GROUPS`] groups (the least recently active are dropped).
//! With several instances each counts its own share of the traffic.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use gmbot_core::domain::GroupId;
use gmbot_core::engine::VerificationResult;

/// At most this many groups are counted at once.
pub const MAX_GROUPS: usize = 50_000;

/// One group's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    /// Verifications made (every result).
    pub verifications: u64,
    /// Of which the sender was allowed (subscribed).
    pub allowed: u64,
    /// Of which the sender was exempt (admins, allow-list, bots, the channel's forwards).
    pub exempt: u64,
    /// Of which the sender was denied.
    pub denied: u64,
    /// Of which a channel could not be checked (the failure policy decided).
    pub unverifiable: u64,
    /// Channel memberships answered by the cache, without a Telegram call.
    pub cache_hits: u64,
    /// Recency stamp for eviction.
    touched: u64,
}

/// Per-group counters. Cheap to share behind the `App`'s `Arc`.
#[derive(Debug, Default)]
pub struct GroupStats {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    groups: HashMap<GroupId, GroupCounters>,
    clock: u64,
}

impl GroupStats {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counters stay usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one verification in `group`, and the cache hits it made.
    pub fn record(&self, group: GroupId, result: VerificationResult, cache_hits: u32) {
        let mut st = self.lock();
        st.clock += 1;
        let now = st.clock;
        if st.groups.len() >= MAX_GROUPS && !st.groups.contains_key(&group) {
            if let Some(oldest) = st
                .groups
                .iter()
                .min_by_key(|(_, c)| c.touched)
                .map(|(g, _)| *g)
            {
                st.groups.remove(&oldest);
            }
        }
        let c = st.groups.entry(group).or_default();
        c.touched = now;
        c.verifications += 1;
        c.cache_hits += u64::from(cache_hits);
        match result {
            VerificationResult::Allowed => c.allowed += 1,
            VerificationResult::Exempt => c.exempt += 1,
            VerificationResult::Denied => c.denied += 1,
            VerificationResult::Unverifiable => c.unverifiable += 1,
            VerificationResult::NotEnforced => {}
        }
    }

    /// The counters of one group (zero if nothing was counted).
    pub fn get(&self, group: GroupId) -> GroupCounters {
        self.lock().groups.get(&group).copied().unwrap_or_default()
    }

    /// Forgets a group (it migrated or was unprotected).
    pub fn forget(&self, group: GroupId) {
        self.lock().groups.remove(&group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_result_per_group() {
        let stats = GroupStats::new();
        let (a, b) = (GroupId(-1), GroupId(-2));
        stats.record(a, VerificationResult::Allowed, 2);
        stats.record(a, VerificationResult::Denied, 1);
        stats.record(b, VerificationResult::Exempt, 0);
        let ca = stats.get(a);
        assert_eq!((ca.verifications, ca.allowed, ca.denied), (2, 1, 1));
        assert_eq!((ca.cache_hits, stats.get(b).cache_hits), (3, 0));
        assert_eq!(stats.get(b).exempt, 1);
        stats.forget(a);
        assert_eq!(stats.get(a).verifications, 0);
    }
}
