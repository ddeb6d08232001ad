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

use std::future::Future;
use std::time::Duration;

use gmbot_core::warm::{WarmConfig, WarmPorts, WarmScope, WarmUp};
use tokio::task::JoinHandle;

use crate::app::App;

/// How long [`WarmUpGuard::stop`] waits for the task before aborting it.
const STOP_WAIT: Duration = Duration::from_secs(2);

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
    let task = tokio::spawn(async move {
        match warm.run(WarmScope::All, shutdown).await {
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
    });
    WarmUpGuard { task: Some(task) }
}
