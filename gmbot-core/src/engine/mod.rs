//! The verification engine: may this sender speak in this group, and what follows if not.
//!
//! [`Engine::verify`] takes a group, a sender and a [`MessageContext`] and
//! returns a [`Verdict`]: a [`Decision`] (`Allow`, `Exempt`, `NotEnforced`,
//! `Deny { missing }`), the [`Action`]s the group's settings imply, and the
//! channels whose membership could not be determined. It talks to no one but
//! its ports: the frontend performs the actions through the dispatcher.
//!
//! ## Order of checks
//!
//! 1. **Group configuration** from the [`Store`], cached in process for a
//!    short TTL (30 s) and dropped by [`Engine::invalidate_group`]. A group
//!    that is unknown, unprotected, paused or has no channel is
//!    [`Decision::NotEnforced`].
//! 2. **Exemptions that need no I/O**: an anonymous admin posting as the group
//!    (`from` = GroupAnonymousBot *and* `sender_chat` = this group), the linked
//!    channel's automatic forwards (`from` = 777000 or `is_automatic_forward`),
//!    other bots if the group exempts them, allow-listed users.
//! 3. **Creator and admins**, from `getChatAdministrators`, cached 5 minutes
//!    (single flight; [`Engine::invalidate_admins`]). When the fetch fails the
//!    last good list is kept; with none, a sender who would be denied is let
//!    through with no action, since they may be an admin.
//! 4. **Every linked channel** must be joined: the membership cache's
//!    synchronous in-process lookup first, then its single-flight load through
//!    Telegram. `restricted` counts only with `is_member`. A membership that
//!    cannot be determined (bot not a channel admin, channel gone, Telegram
//!    failing) is never a verdict: the group's [`FailurePolicy`] decides, and
//!    the channel is listed in [`Verdict::unverifiable`] so the frontend can
//!    tell the admins.
//!
//! [`Engine::recheck`] (the "I've joined" button) runs the same checks but
//! asks Telegram directly for every channel and refreshes the cache with the
//! answer; an allowed recheck implies [`Action::Unrestrict`].
//!
//! ## The hit path
//!
//! With the group's configuration, its admin list and the sender's
//! memberships cached, a verdict costs three in-process map lookups and no
//! I/O: no database access, no global lock (per-group snapshots in sharded
//! maps, the cache's synchronous `get_local`), no boxed future and no heap allocation
//! (inline [`SmallVec`](smallvec::SmallVec) lists). Time comes from the
//! [`Clock`] port.
//!
//! [`FailurePolicy`]: crate::domain::FailurePolicy
//! [`Store`]: crate::store::Store

mod admins;
mod audit;
mod channel_faults;
mod config_cache;
mod context;
mod decision;
mod error;
mod group_map;
mod metrics;
mod verify;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::Registry;

use crate::cache::MembershipCache;
use crate::clock::Clock;
use crate::coordination::{GroupEvent, GroupEvents};
use crate::domain::GroupId;
use crate::store::Store;
use crate::telegram::TelegramApi;

use self::admins::AdminCache;
use self::channel_faults::ChannelFaults;
use self::config_cache::ConfigCache;
use self::metrics::EngineMetrics;

pub use self::config_cache::GroupConfig;
pub use self::context::MessageContext;
pub use self::decision::{
    Action, Actions, ChannelList, Decision, ExemptReason, NotEnforcedReason, UnverifiableChannel,
    UnverifiableList, Verdict, VerificationResult,
};
pub use self::error::EngineError;
pub use self::metrics::DURATION_BUCKETS;

/// Tunables of the engine's own caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// How long a group's configuration is used before the store is asked again (default 30 s).
    pub config_ttl: Duration,
    /// How long a group's admin list is used before Telegram is asked again (default 5 min).
    pub admin_ttl: Duration,
    /// After `getChatAdministrators` failed, how long to wait before asking again (default 30 s).
    pub admin_failure_ttl: Duration,
    /// After a channel failed for everyone (bot not its admin, channel gone),
    /// how long to answer "unknown" without asking Telegram (default 30 s; zero disables).
    pub channel_fault_ttl: Duration,
    /// Upper bound on the groups (and channels) each engine cache holds (default 100,000).
    pub max_groups: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            config_ttl: Duration::from_secs(30),
            admin_ttl: Duration::from_secs(300),
            admin_failure_ttl: Duration::from_secs(30),
            channel_fault_ttl: Duration::from_secs(30),
            max_groups: 100_000,
        }
    }
}

/// The ports the engine works through.
#[derive(Clone)]
pub struct EnginePorts {
    /// Group configurations.
    pub store: Arc<dyn Store>,
    /// Memberships and admin lists.
    pub telegram: Arc<dyn TelegramApi>,
    /// The membership cache (memory, Redis or layered).
    pub cache: Arc<dyn MembershipCache>,
    /// Time for TTLs and mute deadlines.
    pub clock: Arc<dyn Clock>,
}

/// The verification engine. Cheap to clone: clones share caches and metrics.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    telegram: Arc<dyn TelegramApi>,
    cache: Arc<dyn MembershipCache>,
    clock: Arc<dyn Clock>,
    configs: ConfigCache,
    admins: AdminCache,
    faults: ChannelFaults,
    metrics: EngineMetrics,
    /// Where invalidations are published for the other instances (set once, if any).
    events: OnceLock<Arc<dyn GroupEvents>>,
}

impl Engine {
    /// Builds an engine and registers its metrics
    /// (`gmbot_verifications_total`, `gmbot_verification_duration_seconds`) into `registry`.
    ///
    /// Fails only if the registry already holds metrics of those names.
    pub fn new(
        ports: EnginePorts,
        config: EngineConfig,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let metrics = EngineMetrics::register(registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store: ports.store,
                telegram: ports.telegram,
                cache: ports.cache,
                clock: ports.clock,
                configs: ConfigCache::new(config.config_ttl, config.max_groups),
                admins: AdminCache::new(
                    config.admin_ttl,
                    config.admin_failure_ttl,
                    config.max_groups,
                ),
                faults: ChannelFaults::new(config.channel_fault_ttl, config.max_groups),
                metrics,
                events: OnceLock::new(),
            }),
        })
    }

    /// The group's configuration as the engine sees it (cached), `None` if the store does not know it.
    pub async fn group_config(
        &self,
        group: GroupId,
    ) -> Result<Option<Arc<GroupConfig>>, EngineError> {
        let inner = &*self.inner;
        inner
            .configs
            .get(
                group,
                inner.clock.now_millis(),
                &*inner.store,
                &*inner.clock,
            )
            .await
            .map_err(|source| EngineError::Store { group, source })
    }

    /// Publishes every invalidation from now on to `events`, so that the other instances
    /// drop their copies too (they feed what they hear to [`Engine::apply`]). Set once; a
    /// second call is ignored and returns `false`.
    pub fn publish_to(&self, events: Arc<dyn GroupEvents>) -> bool {
        self.inner.events.set(events).is_ok()
    }

    /// Drops the cached configuration of a group, and any remembered fault of
    /// its channels, here and (with [`Engine::publish_to`]) on every other instance: call it
    /// whenever the group's settings, state or channels change, so the next message sees
    /// the change.
    pub async fn invalidate_group(&self, group: GroupId) {
        self.drop_group(group).await;
        self.publish(GroupEvent::Config(group)).await;
    }

    /// Drops the cached admin list of a group, here and on every other instance: call it
    /// when an admin is promoted or demoted (a `chat_member` update in the group).
    pub async fn invalidate_admins(&self, group: GroupId) {
        self.inner.admins.invalidate(group);
        self.publish(GroupEvent::Admins(group)).await;
    }

    /// Applies an event another instance published (or a resubscription: every cached
    /// group and admin list is dropped), without publishing it again.
    pub async fn apply(&self, event: GroupEvent) {
        match event {
            GroupEvent::Config(group) => self.drop_group(group).await,
            GroupEvent::Admins(group) => self.inner.admins.invalidate(group),
            GroupEvent::Resync => {
                self.inner.configs.invalidate_all();
                self.inner.admins.invalidate_all();
                self.inner.faults.clear_all();
            }
        }
    }

    async fn drop_group(&self, group: GroupId) {
        let inner = &*self.inner;
        if let Some(cached) = inner.configs.peek(group) {
            for id in cached
                .iter()
                .flat_map(|c| c.channels())
                .filter_map(|c| c.id)
            {
                inner.faults.clear(id).await;
            }
        }
        inner.configs.invalidate(group);
    }

    async fn publish(&self, event: GroupEvent) {
        if let Some(events) = self.inner.events.get() {
            events.publish(event).await;
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}
