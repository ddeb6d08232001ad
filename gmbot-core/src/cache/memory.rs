//! The in-process membership cache: bounded, per-instance, the default when no Redis is configured.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus::Registry;

use crate::clock::Clock;
use crate::domain::ChatMemberStatus;
use crate::telegram::TelegramResult;

use super::flight::SingleFlight;
use super::local::LocalLayer;
use super::lookup;
use super::metrics::CacheMetrics;
use super::{CacheError, CacheLookup, MembershipCache, MembershipKey, MembershipLoader, TtlPolicy};

/// Settings of a [`MemoryCache`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryCacheConfig {
    /// The most entries kept; beyond it the least useful are evicted.
    /// Each entry costs about 100 bytes (93 measured at 500,000 entries).
    pub max_capacity: u64,
    /// Lifetimes and jitter.
    pub ttl: TtlPolicy,
}

impl Default for MemoryCacheConfig {
    /// 500,000 entries (enough for every active (channel, user) pair of a
    /// few hundred busy groups over a member TTL), default TTLs.
    fn default() -> Self {
        Self {
            max_capacity: 500_000,
            ttl: TtlPolicy::default(),
        }
    }
}

/// The in-process adapter of [`MembershipCache`].
pub struct MemoryCache {
    local: LocalLayer,
    flight: SingleFlight,
    ttl: TtlPolicy,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl MemoryCache {
    /// A cache on `clock`, counting into `registry` (one cache per registry).
    pub fn new(
        config: MemoryCacheConfig,
        clock: Arc<dyn Clock>,
        registry: &Registry,
    ) -> Result<Self, CacheError> {
        config.ttl.validate()?;
        if config.max_capacity == 0 {
            return Err(CacheError::InvalidConfig(
                "the memory cache needs a capacity of at least one entry".into(),
            ));
        }
        Ok(Self {
            local: LocalLayer::new(config.max_capacity, clock),
            flight: SingleFlight::default(),
            ttl: config.ttl,
            metrics: CacheMetrics::register(registry)?,
        })
    }
}

#[async_trait]
impl MembershipCache for MemoryCache {
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
                let flight = &*flight;
                lookup::load(flight, &self.metrics, loader, |status| async move {
                    flight.write_unless_superseded(|| {
                        self.local.insert(key, status, self.ttl.ttl(status));
                    })
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
                let flight = &*flight;
                lookup::refresh(flight, &self.metrics, loader, |status| async move {
                    // Newer than the loads in flight: they must not overwrite it.
                    self.flight.supersede_others(key, flight);
                    flight.write_unless_superseded(|| {
                        self.local.insert(key, status, self.ttl.ttl(status));
                    })
                })
                .await
            })
            .await
    }

    async fn insert(&self, key: MembershipKey, status: ChatMemberStatus) {
        self.flight.supersede(key);
        self.local.insert(key, status, self.ttl.ttl(status));
    }

    async fn invalidate(&self, key: MembershipKey) {
        self.metrics.invalidations_local.inc();
        self.flight.supersede(key);
        self.local.remove(key);
    }
}
