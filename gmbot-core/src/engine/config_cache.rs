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
//! Freshness is measured on the [`Clock`] port. The map is a [`GroupMap`]:
//! sharded (a read takes one shard's read lock, never a global one), single-flight on a
//! miss (concurrent misses of one group make one store query), and a load
//! that overlaps an invalidation is served to its callers but not kept, so an
//! invalidation is never lost to a query that read the old row.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::{EnforcedChannel, GroupId, GroupSettings, GroupState, ProtectedGroup};
use crate::store::{Store, StoreError};

use super::decision::NotEnforcedReason;
use super::group_map::GroupMap;

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

/// A cached lookup: the group's configuration, or `None` if the store does not know the group.
pub(crate) type CachedGroup = Option<Arc<GroupConfig>>;

type Loaded = Result<CachedGroup, Arc<StoreError>>;

/// Group id → configuration, with a TTL on the [`Clock`].
pub(crate) struct ConfigCache {
    entries: GroupMap<CachedGroup, Loaded>,
    ttl_ms: u64,
}

impl ConfigCache {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            entries: GroupMap::new(capacity),
            ttl_ms: millis(ttl),
        }
    }

    /// The group's configuration: from the cache while fresh at `now_ms`, else from the store.
    ///
    /// When the store fails and a stale snapshot exists, the snapshot is
    /// served (and retried after a few seconds): settings that are a little
    /// old are better than stopping enforcement while the database is away.
    #[inline]
    pub(crate) async fn get(
        &self,
        group: GroupId,
        now_ms: u64,
        store: &dyn Store,
        clock: &dyn Clock,
    ) -> Result<CachedGroup, Arc<StoreError>> {
        let stale = match self.entries.get(group, now_ms) {
            Some((config, true)) => return Ok(config),
            Some((config, false)) => Some(config),
            None => None,
        };
        self.load(group, stale, store, clock).await
    }

    async fn load(
        &self,
        group: GroupId,
        stale: Option<CachedGroup>,
        store: &dyn Store,
        clock: &dyn Clock,
    ) -> Result<CachedGroup, Arc<StoreError>> {
        let epoch = self.entries.epoch();
        let loaded = self
            .entries
            .load_once(group, async {
                let row = store.group(group).await.map_err(Arc::new)?;
                let config = row.map(|g| Arc::new(GroupConfig::new(g)));
                let now = clock.now_millis();
                self.entries.insert_unless_invalidated(
                    group,
                    config.clone(),
                    now,
                    now.saturating_add(self.ttl_ms),
                    epoch,
                );
                Ok(config)
            })
            .await;
        match (loaded, stale) {
            (Ok(config), _) => Ok(config),
            (Err(err), Some(stale)) => {
                log::warn!(
                    group_id = group.get(),
                    error:display = err;
                    "cannot reload the group's settings; using the cached ones"
                );
                let now = clock.now_millis();
                self.entries.insert_unless_invalidated(
                    group,
                    stale.clone(),
                    now,
                    now.saturating_add(millis(STALE_RETRY)),
                    self.entries.epoch(),
                );
                Ok(stale)
            }
            (Err(err), None) => Err(err),
        }
    }

    /// The cached configuration, fresh or stale, without touching the store.
    pub(crate) fn peek(&self, group: GroupId) -> Option<CachedGroup> {
        self.entries.get(group, 0).map(|(config, _)| config)
    }

    /// Forgets the group's configuration; the next lookup reads the store.
    pub(crate) fn invalidate(&self, group: GroupId) {
        self.entries.invalidate(group);
    }

    /// Forgets every group's configuration.
    pub(crate) fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
