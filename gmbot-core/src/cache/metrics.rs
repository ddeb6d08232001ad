//! The cache's Prometheus counters: requests by layer and result, loads, invalidations, Redis health.
//!
//! Labels are bounded sets (`layer`, `result`, `origin`); no group, channel
//! or user id ever becomes a label. Counters are resolved once at
//! construction so that counting on the hit path is one atomic add.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::CacheError;

/// A result of one layer's lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LayerResult {
    Hit,
    Miss,
    Error,
}

/// The counters of one layer.
#[derive(Debug, Clone)]
pub(super) struct LayerCounters {
    hit: IntCounter,
    miss: IntCounter,
    error: IntCounter,
}

impl LayerCounters {
    fn new(requests: &IntCounterVec, layer: &str) -> Self {
        Self {
            hit: requests.with_label_values(&[layer, "hit"]),
            miss: requests.with_label_values(&[layer, "miss"]),
            error: requests.with_label_values(&[layer, "error"]),
        }
    }

    /// Counts one lookup.
    #[inline]
    pub(super) fn record(&self, result: LayerResult) {
        match result {
            LayerResult::Hit => self.hit.inc(),
            LayerResult::Miss => self.miss.inc(),
            LayerResult::Error => self.error.inc(),
        }
    }
}

/// Every counter a cache adapter records into.
#[derive(Debug, Clone)]
pub(super) struct CacheMetrics {
    pub(super) l1: LayerCounters,
    pub(super) redis: LayerCounters,
    pub(super) loads_ok: IntCounter,
    pub(super) loads_error: IntCounter,
    pub(super) invalidations_local: IntCounter,
    pub(super) invalidations_remote: IntCounter,
    pub(super) superseded: IntCounter,
    pub(super) redis_up: IntGauge,
    pub(super) redis_outages: IntCounter,
}

impl CacheMetrics {
    /// Creates the counters and registers them into `registry`.
    pub(super) fn register(registry: &Registry) -> Result<Self, CacheError> {
        let requests = IntCounterVec::new(
            Opts::new(
                "gmbot_cache_requests_total",
                "Membership cache lookups by layer (l1, redis) and result (hit, miss, error).",
            ),
            &["layer", "result"],
        )?;
        let loads = IntCounterVec::new(
            Opts::new(
                "gmbot_cache_loads_total",
                "Membership loads (Telegram calls) made on a cache miss, by result (ok, error).",
            ),
            &["result"],
        )?;
        let invalidations = IntCounterVec::new(
            Opts::new(
                "gmbot_cache_invalidations_total",
                "Membership cache invalidations, by origin (local call, remote via Redis pub/sub).",
            ),
            &["origin"],
        )?;
        let superseded = IntCounter::new(
            "gmbot_cache_loads_superseded_total",
            "Loads whose answer was not cached because an event or invalidation of the key \
             arrived while they ran (the event's entry is kept).",
        )?;
        let redis_up = IntGauge::new(
            "gmbot_cache_redis_up",
            "1 while the cache's Redis answers, 0 during an outage (always 1 without Redis).",
        )?;
        let redis_outages = IntCounter::new(
            "gmbot_cache_redis_outages_total",
            "Times the cache lost Redis and fell back to the in-process layer and the loader.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(loads.clone()))?;
        registry.register(Box::new(invalidations.clone()))?;
        registry.register(Box::new(superseded.clone()))?;
        registry.register(Box::new(redis_up.clone()))?;
        registry.register(Box::new(redis_outages.clone()))?;
        redis_up.set(1);
        Ok(Self {
            l1: LayerCounters::new(&requests, "l1"),
            redis: LayerCounters::new(&requests, "redis"),
            loads_ok: loads.with_label_values(&["ok"]),
            loads_error: loads.with_label_values(&["error"]),
            invalidations_local: invalidations.with_label_values(&["local"]),
            invalidations_remote: invalidations.with_label_values(&["remote"]),
            superseded,
            redis_up,
            redis_outages,
        })
    }

    /// Counts one load by its outcome.
    pub(super) fn record_load<T, E>(&self, result: &Result<T, E>) {
        if result.is_ok() {
            self.loads_ok.inc();
        } else {
            self.loads_error.inc();
        }
    }
}
