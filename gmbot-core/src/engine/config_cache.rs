//! The group-config cache: each group's settings and channels, read from the `Store` at most once per TTL.
//!
//! Every message needs its group's configuration, and the database must not
//! be on the hit path, so the engine keeps a snapshot per group for a short
//! time (30 s by default) and drops it at once when told the settings changed
//! ([`Engine::invalidate_group`](super::Engine::invalidate_group)). Groups the
//! store does not know are cached too (as "not enforced"): the bot sits in
//! many groups nobody protected, and each of their messages must not cost a
//! query either.
//!
//! Freshness is measured on the [`Clock`] port; moka is only the concurrent,
//! bounded map and the single flight (concurrent misses of one group make one
//! store query). A load that overlaps an invalidation is served to the callers
//! that waited for it but not kept, so an invalidation is never lost to a
//! query that read the old row.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::clock::Clock;
use crate::domain::{EnforcedChannel, GroupId, GroupSettings, GroupState, ProtectedGroup};
use crate::store::{Store, StoreError};

use super::decision::NotEnforcedReason;

/// After a failed reload, a stale snapshot is served for this long before the store is asked again.
const STALE_RETRY: Duration = Duration::from_secs(5);

/// One group's configuration as the engine uses it: the stored group, and its
/// channels as shared handles that verdicts can name without copying.
#[derive(Debug)]
pub struct GroupConfig {
    group: ProtectedGroup,
    channels: Box<[Arc<EnforcedChannel>]>,
}

impl GroupConfig {
    /// Wraps a group read from the store.
    pub fn new(group: ProtectedGroup) -> Self {
        let channels = group.channels.iter().cloned().map(Arc::new).collect();
        Self { group, channels }
    }

    /// The group as stored.
    pub fn group(&self) -> &ProtectedGroup {
        &self.group
    }

    /// The group's enforcement settings.
    pub fn settings(&self) -> &GroupSettings {
        &self.group.settings
    }

    /// The linked channels, in the order they were linked.
    pub fn channels(&self) -> &[Arc<EnforcedChannel>] {
        &self.channels
    }

    /// Why the group is not enforced, or `None` if it is.
    pub fn not_enforced(&self) -> Option<NotEnforcedReason> {
        match self.group.state {
            GroupState::Paused => Some(NotEnforcedReason::Paused),
            GroupState::Unprotected => Some(NotEnforcedReason::Unprotected),
            GroupState::Active if self.channels.is_empty() => Some(NotEnforcedReason::NoChannels),
            GroupState::Active => None,
        }
    }
}

/// A cached lookup: the group's configuration (`None`: unknown to the store) and when it goes stale.
#[derive(Debug)]
pub(crate) struct CachedGroup {
    pub(crate) config: Option<Arc<GroupConfig>>,
    expires_at_ms: u64,
}

/// Group id → configuration, with a TTL on the [`Clock`].
pub(crate) struct ConfigCache {
    entries: Cache<GroupId, Arc<CachedGroup>>,
    ttl_ms: u64,
    /// Bumped by every invalidation; a load that sees it move was concurrent with one.
    epoch: AtomicU64,
}

impl ConfigCache {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            entries: Cache::new(capacity),
            ttl_ms: millis(ttl),
            epoch: AtomicU64::new(0),
        }
    }

    /// The group's configuration: from the cache while fresh, else from the store.
    ///
    /// When the store fails and a stale snapshot exists, the snapshot is
    /// served (and retried after a few seconds): settings that are a little
    /// old are better than stopping enforcement while the database is away.
    pub(crate) async fn get(
        &self,
        group: GroupId,
        store: &dyn Store,
        clock: &dyn Clock,
    ) -> Result<Arc<CachedGroup>, Arc<StoreError>> {
        let stale = match self.entries.get(&group).await {
            Some(e) if clock.now_millis() < e.expires_at_ms => return Ok(e),
            other => other,
        };
        if stale.is_some() {
            // Without this, the single-flight lookup below would hand back the stale entry.
            self.entries.invalidate(&group).await;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let loaded = self
            .entries
            .try_get_with(group, async {
                let row = store.group(group).await?;
                Ok::<_, StoreError>(Arc::new(CachedGroup {
                    config: row.map(|g| Arc::new(GroupConfig::new(g))),
                    expires_at_ms: clock.now_millis().saturating_add(self.ttl_ms),
                }))
            })
            .await;
        if self.epoch.load(Ordering::Acquire) != epoch {
            // An invalidation ran while this load was in flight: the row may
            // predate the change, so serve it to this caller but do not keep it.
            self.entries.invalidate(&group).await;
        }
        match (loaded, stale) {
            (Ok(e), _) => Ok(e),
            (Err(err), Some(stale)) => {
                log::warn!(
                    group_id = group.get(),
                    error:display = err;
                    "cannot reload the group's settings; using the cached ones"
                );
                let retry = Arc::new(CachedGroup {
                    config: stale.config.clone(),
                    expires_at_ms: clock.now_millis().saturating_add(millis(STALE_RETRY)),
                });
                self.entries.insert(group, retry.clone()).await;
                Ok(retry)
            }
            (Err(err), None) => Err(err),
        }
    }

    /// The cached configuration, fresh or stale, without touching the store.
    pub(crate) async fn peek(&self, group: GroupId) -> Option<Arc<CachedGroup>> {
        self.entries.get(&group).await
    }

    /// Forgets the group's configuration; the next lookup reads the store.
    pub(crate) async fn invalidate(&self, group: GroupId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(&group).await;
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
