//! Graceful shutdown end to end: on the signal the bot stops taking updates, finishes the
//! update in flight (here held up by a slow Telegram), and stops cleanly.

mod e2e_support;

use std::time::{Duration, Instant};

use gmbot_bot::sim::{Fault, FaultKind};

use e2e_support::{settle, start, wait_until, world, Backend, Transport};

async fn in_flight_work_finishes(transport: Transport) {
    let w = world();
    let backend = Backend::sqlite();
    let bot = start(&w.sim, &backend, transport).await;
    // Bob's join first (webhook deliveries may arrive in any order): otherwise check on join
    // mutes him before he can write.
    settle(&w.sim, &bot.monitor).await;
    w.sim
        .post(w.group, w.owner, "/protect @e2e_news")
        .expect("owner posts");
    settle(&w.sim, &bot.monitor).await;

    // Telegram is slow to delete: the deletion of Bob's message is in flight for a while
    // (the handler queued it in the outbox and returned).
    w.sim.inject(Fault::on(
        "deleteMessage",
        FaultKind::Delay(Duration::from_millis(1500)),
    ));
    let msg = w.sim.post(w.group, w.bob, "anyone?").expect("bob posts");
    let sim = &w.sim;
    wait_until("the deletion is in flight", || {
        !sim.calls_to("deleteMessage").is_empty()
    })
    .await;

    let started = Instant::now();
    let report = bot.stop().await;
    let took = started.elapsed();
    assert_eq!(report.drain.abandoned, 0, "{report:?}");
    assert!(took < Duration::from_secs(20), "stopped in {took:?}");
    assert!(
        w.sim.message(w.group, msg).is_some_and(|m| m.deleted),
        "the deletion in flight was finished"
    );
    assert!(!w.sim.can_post(w.group, w.bob), "and muted the member");
    assert_eq!(report.drain.stats.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_shutdown_finishes_in_flight_work() {
    in_flight_work_finishes(Transport::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_shutdown_finishes_in_flight_work() {
    in_flight_work_finishes(Transport::Webhook).await;
}

/// A stop in the middle of a raid loses no raider: what the outbox could not finish before
/// the deadline keeps its pending rows, which the next start applies; every update long
/// polling confirmed was handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_stop_in_the_middle_of_a_raid_loses_no_raider() {
    use e2e_support::{options, start_with};
    use gmbot_core::domain::{SettingChange, UnixTime};

    let w = world();
    let backend = Backend::sqlite();
    // A slow action budget (5/s) so that the raid is still being muted when the bot stops.
    let mut opts = options(&backend);
    opts.dispatch.actions_per_second = 5;
    let bot = start_with(&w.sim, &backend, Transport::Polling, opts.clone()).await;
    settle(&w.sim, &bot.monitor).await;
    w.sim
        .post(w.group, w.owner, "/protect @e2e_news")
        .expect("owner posts");
    settle(&w.sim, &bot.monitor).await;
    bot.app
        .store()
        .update_settings(
            w.group,
            &[SettingChange::CheckOnJoin(false)],
            UnixTime::now(),
        )
        .await
        .expect("settings");
    let raiders: Vec<_> = (0..100)
        .map(|i| {
            let u = w.sim.add_user(&format!("Raider {i}"));
            w.sim.join(w.group, u).expect("joins");
            u
        })
        .collect();
    settle(&w.sim, &bot.monitor).await;
    let posted: Vec<_> = raiders
        .iter()
        .map(|&r| w.sim.post(w.group, r, "raid!").expect("raider posts"))
        .collect();
    let sim = &w.sim;
    wait_until("the raid is being muted", || {
        sim.calls_to("restrictChatMember").len() >= 3
    })
    .await;
    let report = bot.stop().await;
    assert_eq!(report.drain.abandoned, 0, "{report:?}");
    assert_eq!(report.drain.stats.failed, 0, "{report:?}");
    let still_free = raiders
        .iter()
        .filter(|&&r| w.sim.can_post(w.group, r))
        .count();
    assert!(still_free > 0, "the stop came in the middle of the raid");

    let bot = start_with(&w.sim, &backend, Transport::Polling, opts).await;
    wait_until("every raider muted after the restart", || {
        raiders.iter().all(|&r| !sim.can_post(w.group, r))
    })
    .await;
    for (&r, &m) in raiders.iter().zip(&posted) {
        assert!(
            w.sim.message(w.group, m).is_some_and(|m| m.deleted),
            "raider {r}'s message deleted"
        );
        assert!(
            bot.app
                .store()
                .active_restriction(w.group, r)
                .await
                .expect("store")
                .is_some(),
            "raider {r} has a row"
        );
    }
    assert_eq!(
        bot.app
            .store()
            .count_active_restrictions(w.group)
            .await
            .expect("count"),
        100,
        "one open row per raider"
    );
    bot.stop().await;
}
