//! The shared budget's task: reserves slots when calls wait, beats the heartbeat, falls back and returns.
//!
//! One task per dispatcher with a [`SharedBudget`](super::SharedBudget), so at
//! most one round trip is in flight and every bucket waiting at that moment
//! rides on it. Its phases:
//!
//! - **shared**: reserve when a grant pass asks (one round trip for every
//!   budget with waiters), heartbeat every `heartbeat_interval`. A failed
//!   round trip is tried again at once; a second failure in a row → fallback
//!   (a fallback is costly: each bucket waits out its gap, a group's 20/min
//!   `(N + 1) × 3 s`, so one slow answer must not cause it).
//! - **fallback**: the scheduler spends the slots it still holds, then `1/N`
//!   of each budget, each bucket starting only `horizon + grace + spread +
//!   (N + 1) × interval` after the failure (no slot reserved before the failure is
//!   still usable then, and the gap keeps any window from seeing both the
//!   shared budget's last slots and the local shares' first tokens in full).
//!   One warning in the log; probes every `probe_interval`.
//! - **settling**: the store answers again. If this instance spent (or could
//!   spend, before the settle ends) its local share, it records a resume
//!   mark `settle` ahead in the store (the store reserves nothing for anyone
//!   before `mark + (N + 1) × interval + grace + spread`); it keeps its local share for
//!   `settle`, by when every instance has probed and recorded its own, then
//!   returns to the shared budget with one info line.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::budget::{BudgetError, ReserveOptions};
use super::dispatcher::{BudgetLink, Shared};
use super::scheduler::Budget;

enum Phase {
    Shared,
    Fallback { next_probe: Instant },
    Settling { until: Instant },
}

fn outcome(e: &BudgetError) -> &'static str {
    match e {
        BudgetError::Protocol { .. } => "garbage",
        BudgetError::Unavailable { .. } | BudgetError::Config(_) => "unavailable",
    }
}

/// The `N` of a fallback: the larger of the configured count and the live
/// instances last counted (underestimating is what would exceed the budget).
fn instances(link: &BudgetLink, live: u32) -> u32 {
    link.options.instances.unwrap_or(1).max(live).max(1)
}

fn enter_fallback(
    shared: &Shared,
    link: &BudgetLink,
    live: u32,
    error: &BudgetError,
    failed: Instant,
) -> Phase {
    let n = instances(link, live);
    shared.lock().enter_fallback(failed, n);
    link.fallback.store(true, Ordering::Release);
    link.metrics.fallback.set(1);
    link.metrics.fallbacks.inc();
    link.metrics.instances.set(i64::from(n));
    log::warn!(
        budget = link.options.budget.target(), instances = n, error:display = error;
        "the shared Telegram budget is unreachable ({error}); this instance spends 1/{n} of \
         each budget until it answers again (no further warning until then)"
    );
    shared.wake.notify_one();
    Phase::Fallback {
        next_probe: Instant::now() + link.options.probe_interval,
    }
}

/// Runs until aborted (the dispatcher's task guard does it).
pub(super) async fn run(shared: Arc<Shared>) {
    let Some(link) = shared.budget.as_ref() else {
        return;
    };
    let options = &link.options;
    let reserve_options = |n: u32| ReserveOptions {
        horizon: options.horizon,
        grace: options.grace + options.spread,
        resume_gap: n.saturating_add(1),
    };
    let mut phase = Phase::Shared;
    let mut next_beat = Instant::now();
    let mut live = 0u32;
    // The first of consecutive failures (the fallback's gaps count from it).
    let mut failing: Option<Instant> = None;
    loop {
        match phase {
            Phase::Shared => {
                if Instant::now() >= next_beat {
                    next_beat = Instant::now() + options.heartbeat_interval;
                    match options
                        .budget
                        .heartbeat(&link.instance, options.heartbeat_lifetime)
                        .await
                    {
                        Ok(beat) => {
                            failing = None;
                            link.metrics.round_trip("ok", None);
                            live = beat.live_instances;
                            link.metrics.instances.set(i64::from(instances(link, live)));
                            if let Some(p) = beat.paused_for {
                                shared.lock().pause_all(Instant::now() + p);
                                shared.wake.notify_one();
                            }
                        }
                        Err(e) => {
                            link.metrics.round_trip(outcome(&e), None);
                            match failing {
                                Some(first) => {
                                    phase = enter_fallback(&shared, link, live, &e, first);
                                    failing = None;
                                }
                                None => {
                                    failing = Some(Instant::now());
                                    next_beat = Instant::now();
                                }
                            }
                            continue;
                        }
                    }
                }
                let requests = shared.lock().slot_requests(Instant::now());
                if !requests.is_empty() {
                    let asks: Vec<_> = requests.iter().map(|(_, r)| r.clone()).collect();
                    let sent = Instant::now();
                    let result = options
                        .budget
                        .reserve(&asks, reserve_options(instances(link, live)))
                        .await;
                    let received = Instant::now();
                    match result {
                        Ok(answer) => {
                            failing = None;
                            link.metrics
                                .round_trip("ok", Some((received - sent).as_secs_f64()));
                            let mut sched = shared.lock();
                            if let Some(p) = answer.paused_for {
                                sched.pause_all(received + p);
                            }
                            for ((budget, _), r) in requests.iter().zip(&answer.reservations) {
                                link.metrics.reserved(r.slots.len());
                                sched.add_slots(*budget, sent, received, &r.slots, r.retry_in);
                                if let (Some(p), Budget::Message(chat)) = (r.paused_for, budget) {
                                    sched.pause_chat(*chat, received + p);
                                }
                            }
                            drop(sched);
                            shared.wake.notify_one();
                        }
                        Err(e) => {
                            link.metrics.round_trip(outcome(&e), None);
                            match failing {
                                Some(first) => {
                                    phase = enter_fallback(&shared, link, live, &e, first);
                                    failing = None;
                                }
                                None => {
                                    // Try again at once: the next grant pass asks again.
                                    failing = Some(received);
                                    next_beat = Instant::now();
                                    shared.wake.notify_one();
                                }
                            }
                        }
                    }
                    continue;
                }
                tokio::select! {
                    () = link.wake.notified() => {}
                    () = tokio::time::sleep_until(next_beat) => {}
                }
            }
            Phase::Fallback { next_probe } => {
                tokio::time::sleep_until(next_probe).await;
                let retry = Phase::Fallback {
                    next_probe: Instant::now() + options.probe_interval,
                };
                match options
                    .budget
                    .heartbeat(&link.instance, options.heartbeat_lifetime)
                    .await
                {
                    Ok(beat) => {
                        link.metrics.round_trip("ok", None);
                        live = beat.live_instances;
                        // Taken before the mark is sent, so the mark (the store's now
                        // + settle) is no earlier than the end of this instance's share.
                        let until = Instant::now() + options.settle;
                        let spends = shared.lock().fallback_spends_before(until);
                        phase = if spends {
                            match options.budget.resume(options.settle).await {
                                Ok(()) => {
                                    link.metrics.round_trip("ok", None);
                                    Phase::Settling { until }
                                }
                                Err(e) => {
                                    link.metrics.round_trip(outcome(&e), None);
                                    retry
                                }
                            }
                        } else {
                            Phase::Settling { until }
                        };
                    }
                    Err(e) => {
                        link.metrics.round_trip(outcome(&e), None);
                        phase = retry;
                    }
                }
            }
            Phase::Settling { until } => {
                tokio::time::sleep_until(until).await;
                shared.lock().leave_fallback();
                link.fallback.store(false, Ordering::Release);
                link.metrics.fallback.set(0);
                log::info!(
                    budget = options.budget.target();
                    "the shared Telegram budget at {} answers again; this instance is back on it",
                    options.budget.target()
                );
                phase = Phase::Shared;
                next_beat = Instant::now();
                shared.wake.notify_one();
            }
        }
    }
}
