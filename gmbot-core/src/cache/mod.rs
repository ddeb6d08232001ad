//! The `MembershipCache` port: what the engine remembers about (channel, user) subscriptions, and its adapters.
//!
//! Telegram's `getChatMember` is the expensive, rate-limited call behind every
//! verification; the cache is what keeps a busy group from costing one call
//! per message. Entries live 600 s for a member and 60 s for a non-member,
//! each with ±15 % uniform jitter ([`TtlPolicy`]) so that entries written
//! together do not expire together.
//!
//! Adapters, one file each:
//! - [`MemoryCache`] — in-process, bounded ([`quick_cache`]); the default.
//! - [`RedisCache`] — shared by every instance through Redis.
//! - [`LayeredCache`] — a small in-process L1 in front of Redis; a Redis
//!   invalidation clears the L1 of every instance (pub/sub).
//!
//! Every adapter:
//! - measures expiry on the [`Clock`](crate::clock::Clock) port (the logical
//!   expiry is stored with the value; the backend's own TTL is only a backstop
//!   that frees memory), so tests and simulations control time;
//! - coalesces concurrent misses of one key into one loader call (single
//!   flight); a loader error reaches every waiter and is never cached;
//! - lets an event win over an older answer: an [`insert`](MembershipCache::insert)
//!   or an invalidation that arrives while a load of the key runs keeps that
//!   load's answer out of every layer (with Redis, a compare-and-set on the
//!   value the load saw guards against instances racing each other);
//! - keeps working without Redis: a Redis failure degrades to the in-process
//!   layer and the loader, is logged once per outage, and heals by itself.
//!
//! Two ways of keeping entries true ([`CacheMode`]): short TTLs that expire
//! (the default: 600 s / 60 s, a seen join or leave invalidates), or events —
//! a member lives for hours (6 h; a non-member 10 min), every `chat_member`
//! join and leave of a linked channel writes the new status, and the long
//! TTL is only a safety net for a missed event.
//!
//! The engine's hit path is [`MembershipCache::get_local`]: synchronous, no
//! allocation, no lock. Only on a miss does it pay for the boxed
//! [`MembershipCache::get_or_load`].

mod flight;
mod layered;
mod local;
mod lookup;
mod memory;
mod metrics;
mod mode;
mod redis;
mod ttl;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::domain::{ChannelId, ChatMemberStatus, UserId};
use crate::telegram::TelegramResult;

pub use self::layered::{LayeredCache, LayeredCacheConfig};
pub use self::memory::{MemoryCache, MemoryCacheConfig};
pub use self::mode::{CacheMode, CacheModeParseError};
pub use self::redis::{RedisCache, RedisCacheConfig};
pub use self::ttl::TtlPolicy;

/// What is cached: one user's status in one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MembershipKey {
    /// The channel the user must be subscribed to.
    pub channel: ChannelId,
    /// The user.
    pub user: UserId,
}

impl MembershipKey {
    /// The key for `user` in `channel`.
    pub const fn new(channel: ChannelId, user: UserId) -> Self {
        Self { channel, user }
    }
}

impl fmt::Display for MembershipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.user)
    }
}

/// Which layer answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheSource {
    /// The in-process layer (memory cache, or the L1 of the layered cache).
    L1,
    /// Redis.
    Redis,
    /// Nobody had it: the loader (Telegram) answered, and the answer is now cached.
    Loaded,
}

impl CacheSource {
    /// Served from a cache layer rather than the loader.
    pub fn is_hit(self) -> bool {
        !matches!(self, Self::Loaded)
    }
}

/// The answer to [`MembershipCache::get_or_load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLookup {
    /// The user's status in the channel.
    pub status: ChatMemberStatus,
    /// Where it came from. Callers that waited on another caller's load see
    /// the source that load had.
    pub source: CacheSource,
}

/// The future a caller hands to [`MembershipCache::get_or_load`] to fetch a
/// missing status (in the bot: Telegram's `getChatMember`). It runs at most
/// once per miss, whatever the number of concurrent callers.
pub type MembershipLoader<'a> =
    Pin<Box<dyn Future<Output = TelegramResult<ChatMemberStatus>> + Send + 'a>>;

/// Why a cache could not be built. Lookups themselves never fail because of
/// the cache: a broken backend degrades to the loader.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL `{url}`: {source}")]
    InvalidRedisUrl {
        /// The URL as given, without its password.
        url: String,
        /// What the Redis client objected to.
        #[source]
        source: ::redis::RedisError,
    },
    /// Redis did not answer (only from explicit checks such as [`RedisCache::ping`]).
    #[error("Redis is unreachable: {0}")]
    Unavailable(String),
    /// The cache's metrics could not be registered (for example, a second
    /// cache registered into the same registry).
    #[error("cannot register the cache metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A configuration value is out of range.
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(String),
}

/// The membership cache port: a (channel, user) → [`ChatMemberStatus`] map
/// with TTLs, single-flight loading and cross-process invalidation.
///
/// Used as `Arc<dyn MembershipCache>`.
#[async_trait]
pub trait MembershipCache: Send + Sync + 'static {
    /// The hit path: the in-process layer only, synchronously, without
    /// allocating or locking. `None` on a miss, an expired entry, or for an
    /// adapter without an in-process layer — then call [`Self::get_or_load`].
    fn get_local(&self, key: MembershipKey) -> Option<ChatMemberStatus>;

    /// Looks the key up in every layer and, if nobody has a live entry, runs
    /// `loader` and caches its answer. Concurrent callers of one missing key
    /// share one loader run (the other callers' loaders are dropped unpolled).
    /// A loader error is returned to every waiter and is not cached.
    async fn get_or_load(
        &self,
        key: MembershipKey,
        loader: MembershipLoader<'_>,
    ) -> TelegramResult<CacheLookup>;

    /// Asks `loader` afresh, bypassing every layer and never sharing a load
    /// already in flight (which may predate what the caller knows: "I've
    /// joined" was pressed), and caches the answer with the TTL its kind
    /// gets — unless an [`insert`](Self::insert) or
    /// [`invalidate`](Self::invalidate) of the key arrived while it ran. A
    /// loader error is returned and nothing is cached.
    async fn refresh(
        &self,
        key: MembershipKey,
        loader: MembershipLoader<'_>,
    ) -> TelegramResult<ChatMemberStatus>;

    /// Stores a status an event reported (a `chat_member` update), with the
    /// TTL its kind gets. The event is newer than any load of the key in
    /// flight: those loads' answers are not cached (in this instance, and,
    /// with Redis, in every instance and in Redis itself), so they cannot
    /// overwrite it. With Redis the change is published: every instance's
    /// in-process layer forgets its copy.
    async fn insert(&self, key: MembershipKey, status: ChatMemberStatus);

    /// Forgets the key in every layer and, with Redis, in every instance
    /// (pub/sub). A load of this key already in flight does not repopulate it.
    async fn invalidate(&self, key: MembershipKey);
}
