//! A background job run at once and then every interval, until a shutdown future completes
//! or its guard stops it: the loop behind reconciliation and the join gate's sweep — on one
//! instance at a time when several share Redis.
//!
//! Alone (no shared state, see [`shared`](super::shared)), the job runs on this instance
//! with a [`Fence::unfenced`] fence, as it always did. Shared, the loop first takes the
//! job's lease (`lease:{name}`, `GMBOT_LEASE_SECONDS`), tries again every eighth of a lease
//! period while another instance holds it, and runs the job only while it holds the lease:
//! the job gets the lease's [`Fence`] and checks it before each batch, and the loop drops a
//! run in progress the moment the fence falls (a renewal refused, or not possible in time).
//! It then competes for the lease again. A holder that dies without releasing is replaced
//! once its lease runs out: within one lease period and an eighth. At shutdown the lease is
//! released, so another instance takes over at its next try.

use std::future::Future;
use std::time::Duration;

use gmbot_core::coordination::{Fence, HeldLease};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::App;

/// A periodic task; stop it with [`PeriodicGuard::stop`] (a run in progress finishes first;
/// dropping the guard aborts it).
#[derive(Debug)]
pub struct PeriodicGuard {
    name: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PeriodicGuard {
    /// Stops the task after the run in progress, if any, and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(err) = task.await {
                log::warn!(task = self.name, error:display = err; "a periodic task ended abnormally");
            }
        }
    }
}

impl Drop for PeriodicGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs `job` now and then every `interval` (missed ticks are delayed, never bunched) until
/// `shutdown` completes or the guard is stopped — under the lease `name` when the app shares
/// state with other instances. `name` names the task in logs and its lease.
pub(crate) fn spawn<F, Fut>(
    name: &'static str,
    app: App,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    job: F,
) -> PeriodicGuard
where
    F: Fn(App, Fence) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                _ = stop_rx => {}
            }
        };
        tokio::pin!(stop);
        if app.flows().shared().is_some() {
            leased(name, &app, interval, stop, &job).await;
        } else {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = &mut stop => break,
                }
                job(app.clone(), Fence::unfenced()).await;
            }
        }
    });
    PeriodicGuard {
        name,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// Takes `name`'s lease whenever it is free and runs the job every `interval` while it holds
/// it, until `stop`.
async fn leased<F, Fut>(
    name: &'static str,
    app: &App,
    interval: Duration,
    mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    job: &F,
) where
    F: Fn(App, Fence) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(shared) = app.flows().shared() else {
        return;
    };
    let (store, ttl) = (shared.leases().clone(), shared.lease_ttl());
    let retry = ttl / 8;
    loop {
        let held = loop {
            match HeldLease::acquire(store.clone(), name, ttl).await {
                Ok(Some(held)) => break held,
                Ok(None) => {}
                Err(err) => {
                    log::debug!(task = name, error:display = err; "cannot ask for the lease; trying again")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = &mut stop => return,
            }
        };
        log::info!(
            task = name,
            generation = held.lease().generation;
            "{name}: this instance holds the lease and runs the job"
        );
        let ready = tokio::select! {
            ready = held.ready() => ready,
            () = &mut stop => {
                held.release().await;
                return;
            }
        };
        if !ready {
            continue;
        }
        shared.set_held(name, true);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = held.lost() => break,
                () = &mut stop => {
                    shared.set_held(name, false);
                    held.release().await;
                    return;
                }
            }
            shared.count_run(name);
            let run = job(app.clone(), held.fence());
            tokio::select! {
                () = run => {}
                () = held.lost() => {
                    log::warn!(
                        task = name,
                        generation = held.lease().generation;
                        "{name}: lease lost during a run; the run is stopped here"
                    );
                    break;
                }
            }
        }
        shared.set_held(name, false);
        log::info!(task = name; "{name}: lease lost; competing for it again");
    }
}
