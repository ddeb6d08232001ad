//! The layered adapter: a small in-process L1 in front of the shared Redis cache.
//!
//! Most lookups are answered by the L1 without a network round trip; an L1
//! miss asks Redis (which another instance may have filled) before the
//! loader. An entry copied from Redis keeps the life it has left there, so
//! the L1 never outlives the shared entry. Invalidations go through Redis
//! pub/sub and clear the key in every instance's L1; when the listener loses
//! its subscription it clears the whole L1 on resubscribing, because anything
//! published in between was missed. Without Redis it degrades to the L1 and
//! the loader.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus::Registry;

use crate::clock::Clock;
use crate::domain::ChatMemberStatus;
use crate::telegram::TelegramResult;

use super::flight::{Flight, SingleFlight};
use super::local::LocalLayer;
use super::lookup;
use super::metrics::CacheMetrics;
use super::redis::{
    spawn_listener, CasOutcome, Fence, Invalidation, ListenerGuard, RedisLayer, RedisLookup, Writer,
};
use super::{
    CacheError, CacheLookup, CacheSource, MembershipCache, MembershipKey, MembershipLoader,
    RedisCacheConfig, TtlPolicy,
};

/// Settings of a [`LayeredCache`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayeredCacheConfig {
    /// The Redis layer (URL, key prefix, invalidation channel, timeout, TTLs).
    pub redis: RedisCacheConfig,
    /// The most entries the in-process L1 keeps.
    pub l1_capacity: u64,
}

impl LayeredCacheConfig {
    /// Defaults for `url`: those of [`RedisCacheConfig::new`] and a 100,000-entry L1.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            redis: RedisCacheConfig::new(url),
            l1_capacity: 100_000,
        }
    }
}

/// The layered adapter of [`MembershipCache`]: L1 (in-process) → Redis → loader.
pub struct LayeredCache {
    local: Arc<LocalLayer>,
    redis: RedisLayer,
    flight: Arc<SingleFlight>,
    ttl: TtlPolicy,
    metrics: CacheMetrics,
    listener: ListenerGuard,
}

impl std::fmt::Debug for LayeredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LayeredCache {
    /// A layered cache, counting into `registry` (one cache per registry).
    /// Succeeds even if Redis is down; waits up to a few call timeouts for
    /// the invalidation listener to subscribe. Must run inside a tokio runtime.
    pub async fn connect(
        config: LayeredCacheConfig,
        clock: Arc<dyn Clock>,
        registry: &Registry,
    ) -> Result<Self, CacheError> {
        if config.l1_capacity == 0 {
            return Err(CacheError::InvalidConfig(
                "the layered cache's L1 needs a capacity of at least one entry".into(),
            ));
        }
        let metrics = CacheMetrics::register(registry)?;
        let (redis, client) = RedisLayer::open(&config.redis, Arc::clone(&clock), metrics.clone())?;
        let local = Arc::new(LocalLayer::new(config.l1_capacity, clock));
        let flight = Arc::new(SingleFlight::default());
        let apply = {
            let local = Arc::clone(&local);
            let flight = Arc::clone(&flight);
            let metrics = metrics.clone();
            move |inv| match inv {
                Invalidation::Key(key) => {
                    metrics.invalidations_remote.inc();
                    flight.supersede(key);
                    local.remove(key);
                }
                Invalidation::All => {
                    flight.supersede_all();
                    local.clear();
                }
            }
        };
        let listener = spawn_listener(
            client,
            config.redis.invalidation_channel.clone(),
            redis.origin().to_owned(),
            config.redis.op_timeout,
            Arc::new(apply),
        );
        let cache = Self {
            local,
            redis,
            flight,
            ttl: config.redis.ttl,
            metrics,
            listener,
        };
        if cache.redis.ping().await.is_ok() {
            cache
                .listener
                .wait_subscribed(config.redis.op_timeout * 4)
                .await;
        }
        Ok(cache)
    }

    /// `PING`: whether Redis answers now (for readiness checks).
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.redis.ping().await
    }

    /// Whether the last Redis call succeeded.
    pub fn is_redis_up(&self) -> bool {
        self.redis.is_up()
    }

    /// Whether the invalidation listener is subscribed.
    pub fn is_subscribed(&self) -> bool {
        self.listener.is_subscribed()
    }

    /// Waits until the invalidation listener is subscribed, at most `within`.
    pub async fn wait_subscribed(&self, within: Duration) -> bool {
        self.listener.wait_subscribed(within).await
    }
}

#[async_trait]
impl MembershipCache for LayeredCache {
    #[inline]
    fn get_local(&self, key: MembershipKey) -> Option<ChatMemberStatus> {
        lookup::local_hit(&self.local, &self.metrics, key)
    }

    async fn get_or_load(
        &self,
        key: MembershipKey,
        loader: MembershipLoader<'_>,
    ) -> TelegramResult<CacheLookup> {
        if let Some(hit) = lookup::before_flight(&self.local, &self.metrics, key) {
            return Ok(hit);
        }
        self.flight
            .run(key, |flight| async move {
                if let Some(hit) = lookup::in_flight(&self.local, key) {
                    return Ok(hit);
                }
                let fence = match self.redis.get(key).await {
                    RedisLookup::Hit { status, remaining } => {
                        flight.write_unless_superseded(|| {
                            self.local.insert(key, status, remaining);
                        });
                        return Ok(CacheLookup {
                            status,
                            source: CacheSource::Redis,
                        });
                    }
                    other => other.into_fence(),
                };
                let flight = &*flight;
                lookup::load(flight, &self.metrics, loader, |status| async move {
                    self.store(flight, key, &fence, status, Writer::Load).await
                })
                .await
            })
            .await
    }

    async fn refresh(
        &self,
        key: MembershipKey,
        loader: MembershipLoader<'_>,
    ) -> TelegramResult<ChatMemberStatus> {
        self.flight
            .run_solo(key, |flight| async move {
                let fence = self.redis.fence(key).await;
                let flight = &*flight;
                lookup::refresh(flight, &self.metrics, loader, |status| async move {
                    self.store(flight, key, &fence, status, Writer::Event).await
                })
                .await
            })
            .await
    }

    async fn insert(&self, key: MembershipKey, status: ChatMemberStatus) {
        let ttl = self.ttl.ttl(status);
        self.flight.supersede(key);
        self.local.insert(key, status, ttl);
        self.redis.set_event(key, status, ttl).await;
    }

    async fn invalidate(&self, key: MembershipKey) {
        self.metrics.invalidations_local.inc();
        self.flight.supersede(key);
        self.local.remove(key);
        self.redis.invalidate(key).await;
    }
}

impl LayeredCache {
    /// Caches a load's (or a refresh's) answer: in Redis by compare-and-set
    /// against what the load saw there — a refused write means another
    /// instance or an event wrote meanwhile, and theirs stands — then in the
    /// L1 unless an event superseded the load. If Redis did not answer at all,
    /// the L1 still takes it (Redis is an accelerator; the L1 alone is what
    /// the memory cache would do). A refresh is newer than the loads in
    /// flight when it answers: it supersedes them.
    async fn store(
        &self,
        flight: &Flight,
        key: MembershipKey,
        fence: &Fence,
        status: ChatMemberStatus,
        writer: Writer,
    ) -> bool {
        if flight.is_superseded() {
            return false;
        }
        let ttl = self.ttl.ttl(status);
        let outcome = match writer {
            Writer::Load => self.redis.set_loaded(key, fence, status, ttl).await,
            Writer::Event => {
                self.flight.supersede_others(key, flight);
                self.redis.set_refreshed(key, fence, status, ttl).await
            }
        };
        match outcome {
            CasOutcome::Refused => false,
            CasOutcome::Written | CasOutcome::Unavailable => {
                flight.write_unless_superseded(|| self.local.insert(key, status, ttl))
            }
        }
    }
}
