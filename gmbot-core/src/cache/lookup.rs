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

/// Runs the loader, counts its outcome and, unless `flight` was invalidated
/// meanwhile, hands the loaded status to `store` to cache it.
pub(super) async fn load<S, Fut>(
    flight: &Flight,
    metrics: &CacheMetrics,
    loader: MembershipLoader<'_>,
    store: S,
) -> TelegramResult<CacheLookup>
where
    S: FnOnce(ChatMemberStatus) -> Fut,
    Fut: Future<Output = ()>,
{
    let loaded = loader.await;
    metrics.record_load(&loaded);
    let status = loaded?;
    if !flight.is_invalidated() {
        store(status).await;
    }
    Ok(CacheLookup {
        status,
        source: CacheSource::Loaded,
    })
}
