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
