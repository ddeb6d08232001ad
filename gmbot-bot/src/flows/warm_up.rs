//! The cache warm-up at start: the most recently seen members re-verified in the background, so the first messages after a restart hit the cache.
//!
//! Runs once, right after the bot starts receiving updates, with the bounds of
//! `GMBOT_WARM_*` ([`WarmConfig`]); `GMBOT_WARM_MAX_MEMBERS=0` turns it off.
//! Its Telegram calls go through the dispatcher's bulk lane and it waits
//! while live calls are queued (see [`gmbot_core::warm`]), so it never
//! delays live traffic; at shutdown it stops at once (loads in flight are
//! dropped; a live lookup that shared one takes it over).
//!
//! With Redis, keys another instance (or `gmbot cache warm`) already put
//! there cost no Telegram call: the warm-up only copies them into this
//! instance's in-process layer.
//!
//! With several instances sharing Redis, one warms: the one that takes the `warm-up`
//! lease. The others wait (trying again every eighth of a lease period) and stop as soon
//! as the holder marks the warm-up done (`claim:warm-up:done`, kept 10 minutes); if the
//! holder dies mid-way, its lease runs out and another instance warms instead. The warm-up
//! stops when its lease's fence falls.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gmbot_core::coordination::HeldLease;
use gmbot_core::warm::{WarmConfig, WarmPorts, WarmReport, WarmScope, WarmUp};
use tokio::task::JoinHandle;

use crate::app::App;

/// How long [`WarmUpGuard::stop`] waits for the task before aborting it.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// How long a finished warm-up keeps the other instances from warming.
const DONE_FOR: Duration = Duration::from_secs(600);

/// The lease and the claim that make one instance warm.
const LEASE: &str = "warm-up";
const DONE: &str = "warm-up:done";

/// The warm-up task; stop it with [`WarmUpGuard::stop`] (dropping the guard aborts it).
#[derive(Debug)]
pub struct WarmUpGuard {
    task: Option<JoinHandle<()>>,
}

impl WarmUpGuard {
    /// Waits (briefly: the task watches the same shutdown signal) for the
    /// warm-up to end, then aborts it if it has not.
    pub async fn stop(mut self) {
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for WarmUpGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the warm-up of every enforced group, stopping at `shutdown`. A
/// config with `max_members == 0` starts nothing.
pub fn spawn_warm_up(
    app: &App,
    config: WarmConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> WarmUpGuard {
    if config.max_members == 0 {
        return WarmUpGuard { task: None };
    }
    let ports = WarmPorts {
        store: app.store().clone(),
        cache: app.cache().clone(),
        dispatcher: app.dispatcher().clone(),
        clock: app.clock().clone(),
    };
    let warm = match WarmUp::new(ports, config) {
        Ok(w) => w,
        Err(err) => {
            log::warn!(error:display = err; "cache warm-up not started");
            return WarmUpGuard { task: None };
        }
    };
    let app = app.clone();
    let task = tokio::spawn(async move {
        if app.flows().shared().is_none() {
            report(warm.run(WarmScope::All, shutdown).await);
            return;
        }
        warm_once_across_instances(&app, &warm, shutdown).await;
    });
    WarmUpGuard { task: Some(task) }
}

fn report(result: Result<WarmReport, gmbot_core::warm::WarmError>) {
    match result {
        Ok(r) => log::info!(
            groups = r.groups,
            members = r.members,
            keys = r.keys,
            cached = r.cached,
            loaded = r.loaded,
            failed = r.failed,
            stop = r.stop.map_or("", |s| s.as_str()),
            elapsed_ms = u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX);
            "cache warm-up finished: {} members, {} keys ({} already cached, {} loaded, {} failed) in {:.1} s",
            r.members, r.keys, r.cached, r.loaded, r.failed, r.elapsed.as_secs_f64()
        ),
        Err(err) => log::warn!(error:display = err; "cache warm-up failed"),
    }
}

/// Warms under the `warm-up` lease unless another instance warmed in the last 10 minutes.
async fn warm_once_across_instances(
    app: &App,
    warm: &WarmUp,
    shutdown: impl Future<Output = ()> + Send,
) {
    let Some(shared) = app.flows().shared() else {
        return;
    };
    let (leases, claims, ttl) = (
        shared.leases().clone(),
        shared.claims().clone(),
        shared.lease_ttl(),
    );
    let stopped = AtomicBool::new(false);
    tokio::pin!(shutdown);
    loop {
        if claims.is_claimed(DONE).await.unwrap_or(false) {
            log::info!("cache warm-up skipped: another instance warmed the shared cache");
            return;
        }
        let held = match HeldLease::acquire(leases.clone(), LEASE, ttl).await {
            Ok(Some(held)) => held,
            Ok(None) | Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(ttl / 8) => continue,
                    () = &mut shutdown => return,
                }
            }
        };
        let ready = tokio::select! {
            ready = held.ready() => ready,
            () = &mut shutdown => {
                held.release().await;
                return;
            }
        };
        if !ready {
            continue;
        }
        let fence = held.fence();
        let stop = async {
            tokio::select! {
                () = &mut shutdown => stopped.store(true, Ordering::Release),
                () = fence.lost() => {}
            }
        };
        report(warm.run(WarmScope::All, stop).await);
        if stopped.load(Ordering::Acquire) {
            held.release().await;
            return;
        }
        if fence.is_held() {
            if let Err(err) = claims.claim(DONE, DONE_FOR).await {
                log::info!(error:display = err; "cannot mark the warm-up done; another instance may warm again");
            }
            held.release().await;
            return;
        }
        log::warn!("cache warm-up stopped: its lease was lost; another instance finishes it");
    }
}
