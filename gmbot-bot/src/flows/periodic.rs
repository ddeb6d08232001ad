//! A background job run at once and then every interval, until a shutdown future completes
//! or its guard stops it: the loop behind reconciliation and the join gate's sweep.

use std::future::Future;
use std::time::Duration;

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
/// `shutdown` completes or the guard is stopped. `name` names the task in logs.
pub(crate) fn spawn<F, Fut>(
    name: &'static str,
    app: App,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    job: F,
) -> PeriodicGuard
where
    F: Fn(App) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut shutdown => break,
                _ = &mut stop_rx => break,
            }
            job(app.clone()).await;
        }
    });
    PeriodicGuard {
        name,
        stop: Some(stop_tx),
        task: Some(task),
    }
}
