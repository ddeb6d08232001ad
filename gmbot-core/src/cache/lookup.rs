//! The lookup steps every adapter with a single flight shares: answering from
//! the L1 (counted as a hit or a miss) and running the loader inside a flight.

use std::future::Future;

use crate::domain::ChatMemberStatus;
use crate::telegram::TelegramResult;

use super::flight::Flight;
use super::local::LocalLayer;
use super::metrics::{CacheMetrics, LayerResult};
use super::{CacheLookup, CacheSource, MembershipKey, MembershipLoader};

/// The L1's entry for `key`, counted as an L1 hit when there is one.
#[inline]
pub(super) fn local_hit(
    local: &LocalLayer,
    metrics: &CacheMetrics,
    key: MembershipKey,
) -> Option<ChatMemberStatus> {
    let status = local.get(key)?;
    metrics.l1.record(LayerResult::Hit);
    Some(status)
}

/// The L1's answer before any flight starts; `None` is counted as an L1 miss.
pub(super) fn before_flight(
    local: &LocalLayer,
    metrics: &CacheMetrics,
    key: MembershipKey,
) -> Option<CacheLookup> {
    if let Some(status) = local_hit(local, metrics, key) {
        return Some(CacheLookup {
            status,
            source: CacheSource::L1,
        });
    }
    metrics.l1.record(LayerResult::Miss);
    None
}

/// The L1's answer inside a flight: a load that finished just before this
/// flight began has filled the entry.
pub(super) fn in_flight(local: &LocalLayer, key: MembershipKey) -> Option<CacheLookup> {
    local.get(key).map(|status| CacheLookup {
        status,
        source: CacheSource::L1,
    })
}

/// Runs the loader and counts its outcome; `store` then caches the answer
/// (each adapter decides how, checking `flight` for supersession). A
/// superseded load is counted and stores nothing.
pub(super) async fn load<S, Fut>(
    flight: &Flight,
    metrics: &CacheMetrics,
    loader: MembershipLoader<'_>,
    store: S,
) -> TelegramResult<CacheLookup>
where
    S: FnOnce(ChatMemberStatus) -> Fut,
    Fut: Future<Output = bool>,
{
    let loaded = loader.await;
    metrics.record_load(&loaded);
    let status = loaded?;
    if flight.is_superseded() || !store(status).await {
        metrics.superseded.inc();
    }
    Ok(CacheLookup {
        status,
        source: CacheSource::Loaded,
    })
}

/// A solo load (a refresh): runs the loader and counts it like [`load`].
pub(super) async fn refresh<S, Fut>(
    flight: &Flight,
    metrics: &CacheMetrics,
    loader: MembershipLoader<'_>,
    store: S,
) -> TelegramResult<ChatMemberStatus>
where
    S: FnOnce(ChatMemberStatus) -> Fut,
    Fut: Future<Output = bool>,
{
    load(flight, metrics, loader, store).await.map(|l| l.status)
}
