//! The update journal end to end: a stop keeps what it could not drain and the next start
//! handles it (webhook), and long polling keeps a raided chat's backlog in the journal so the
//! updates of other groups keep coming.

mod e2e_support;

use std::time::Duration;

use gmbot_bot::sim::{Fault, FaultKind};
use gmbot_core::domain::{GroupId, SettingChange, UnixTime, UserId};

use e2e_support::{options, settle, start_with, wait_until, world, Backend, Running, Transport};

/// Protects the world's group (check on join off, so raiders can write) and adds `n` raiders
/// who joined the group but not the channel.
async fn raid_ready(w: &e2e_support::World, bot: &Running, n: usize) -> Vec<UserId> {
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
    let raiders: Vec<_> = (0..n)
        .map(|i| {
            let u = w.sim.add_user(&format!("Raider {i}"));
            w.sim.join(w.group, u).expect("joins");
            u
        })
        .collect();
    settle(&w.sim, &bot.monitor).await;
    raiders
}

async fn assert_every_raider_handled(
    w: &e2e_support::World,
    bot: &Running,
    group: GroupId,
    raiders: &[UserId],
    posted: &[gmbot_core::domain::MessageId],
) {
    let sim = &w.sim;
    wait_until("every raider muted", || {
        raiders.iter().all(|&r| !sim.can_post(group, r))
    })
    .await;
    for (&r, &m) in raiders.iter().zip(posted) {
        assert!(
            w.sim.message(group, m).is_some_and(|m| m.deleted),
            "raider {r}'s message deleted"
        );
    }
    for &r in raiders {
        let mutes = w
            .sim
            .calls_to("restrictChatMember")
            .iter()
            .filter(|c| c.status == 200 && c.int("user_id") == Some(r.get()))
            .count();
        assert_eq!(mutes, 1, "raider {r} muted once, not {mutes} times");
    }
    assert_eq!(
        bot.app
            .store()
            .count_active_restrictions(group)
            .await
            .expect("count"),
        raiders.len() as u64,
        "one open row per raider"
    );
}

/// A webhook stop whose drain deadline passes keeps the updates it accepted and did not
/// handle in the journal (Telegram was answered 200 for them and will not send them again);
/// the next start takes them back and handles every one.
async fn webhook_stop_keeps_what_it_could_not_drain(backend: Backend) {
    let w = world();
    let mut opts = options(&backend);
    opts.runtime.drain_timeout = Duration::from_millis(300);
    // One update after another, each waiting for its own reads (no read-ahead), so that the
    // stop certainly comes in the middle.
    opts.runtime.read_ahead = 0;
    let bot = start_with(&w.sim, &backend, Transport::Webhook, opts.clone()).await;
    let raiders = raid_ready(&w, &bot, 60).await;
    let before = bot.monitor.stats().queued;

    // Telegram answers reads slowly: the raided group's updates are handled one after
    // another, so most of them are still waiting when the bot stops.
    w.sim.inject(
        Fault::on(
            "getChatMember",
            FaultKind::Delay(Duration::from_millis(100)),
        )
        .always(),
    );
    let posted: Vec<_> = raiders
        .iter()
        .map(|&r| w.sim.post(w.group, r, "raid!").expect("raider posts"))
        .collect();
    let (sim, monitor) = (&w.sim, &bot.monitor);
    wait_until("every raid update accepted", || {
        sim.pending_updates() == 0 && monitor.stats().queued >= before + 60
    })
    .await;
    let report = bot.stop().await;
    assert!(
        report.drain.abandoned > 10,
        "the stop came in the middle: {report:?}"
    );
    assert_eq!(
        report.drain.kept, report.drain.abandoned,
        "everything not drained was kept: {report:?}"
    );
    w.sim.clear_faults();

    // A small runtime: the start takes back 8 updates at once and the rest in the
    // background, as room frees up.
    opts.runtime.queue_capacity = 16;
    let bot = start_with(&w.sim, &backend, Transport::Webhook, opts).await;
    assert_every_raider_handled(&w, &bot, w.group, &raiders, &posted).await;
    let journal = bot.app.store().clone();
    let mut left = u64::MAX;
    for _ in 0..200 {
        left = journal.count_journaled_updates().await.expect("count");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(left, 0, "handled updates leave the journal");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_stop_keeps_what_it_could_not_drain_sqlite() {
    webhook_stop_keeps_what_it_could_not_drain(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_stop_keeps_what_it_could_not_drain_postgres_redis() {
    webhook_stop_keeps_what_it_could_not_drain(Backend::postgres_redis()).await;
}

/// Long polling under a raid: the raided group's backlog is kept in the journal and
/// confirmed, so a non-subscriber's message in another group, posted after the raid, is
/// fetched and deleted while the raid is still being worked through (without the journal,
/// getUpdates would return only the raid's updates until most of them were handled). A stop
/// in the middle loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_keeps_a_raid_backlog_and_serves_other_groups() {
    let w = world();
    let backend = Backend::sqlite();
    let mut opts = options(&backend);
    opts.runtime.drain_timeout = Duration::from_millis(300);
    // The raided group's updates each wait for their own reads (no read-ahead): its backlog
    // lasts, whatever the machine's speed.
    opts.runtime.read_ahead = 0;
    let bot = start_with(&w.sim, &backend, Transport::Polling, opts.clone()).await;
    // A second protected group with a non-subscriber.
    let other = w
        .sim
        .create_supergroup("Other group", w.owner)
        .expect("group");
    w.sim
        .add_bot(
            other,
            w.owner,
            Some(gmbot_bot::sim::AdminRights::moderator()),
        )
        .expect("bot joins");
    let dave = w.sim.add_user("Dave");
    w.sim.join(other, dave).expect("joins");
    settle(&w.sim, &bot.monitor).await;
    w.sim
        .post(other, w.owner, "/protect @e2e_news")
        .expect("owner posts");
    let raiders = raid_ready(&w, &bot, 300).await;

    w.sim
        .inject(Fault::on("getChatMember", FaultKind::Delay(Duration::from_millis(20))).always());
    let posted: Vec<_> = raiders
        .iter()
        .map(|&r| w.sim.post(w.group, r, "raid!").expect("raider posts"))
        .collect();
    let late = w.sim.post(other, dave, "hello?").expect("dave posts");
    let sim = &w.sim;
    wait_until("the other group's message is deleted", || {
        sim.message(other, late).is_some_and(|m| m.deleted)
    })
    .await;
    let unhandled = raiders
        .iter()
        .filter(|&&r| sim.can_post(w.group, r))
        .count();
    assert!(
        unhandled >= 200,
        "the other group was served during the raid, not after it ({unhandled} raiders left)"
    );
    let kept = bot
        .app
        .metrics()
        .update_journal
        .with_label_values(&["kept"])
        .get();
    assert!(kept >= 100, "the backlog was kept in the journal ({kept})");

    // Stop in the middle: whatever was confirmed and not handled is in the journal.
    let report = bot.stop().await;
    assert!(report.drain.abandoned > 0, "stopped mid-raid: {report:?}");
    assert_eq!(report.drain.kept, report.drain.abandoned, "{report:?}");
    w.sim.clear_faults();
    let bot = start_with(&w.sim, &backend, Transport::Polling, opts).await;
    assert_every_raider_handled(&w, &bot, w.group, &raiders, &posted).await;
    bot.stop().await;
}

/// Read-ahead: the updates queued behind a raided chat's current one start their Telegram
/// reads at once. With every `getChatMember` answered after 300 ms, the reads of all twelve
/// raiders are done by the time the first raider (handled first, with two reads in a row) is
/// muted; handled strictly one after another, only the first raider's two would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_updates_of_a_busy_chat_read_ahead() {
    let w = e2e_support::world_with(gmbot_bot::sim::SimulatorOptions {
        workers: 48,
        ..gmbot_bot::sim::SimulatorOptions::default()
    });
    let backend = Backend::sqlite();
    let bot = start_with(&w.sim, &backend, Transport::Polling, options(&backend)).await;
    // The raiders joined before the group was protected: nothing about them is cached.
    let raiders: Vec<_> = (0..12)
        .map(|i| {
            let u = w.sim.add_user(&format!("Raider {i}"));
            w.sim.join(w.group, u).expect("joins");
            u
        })
        .collect();
    settle(&w.sim, &bot.monitor).await;
    w.sim
        .post(w.group, w.owner, "/protect @e2e_news")
        .expect("owner posts");
    settle(&w.sim, &bot.monitor).await;
    w.sim.take_calls();
    w.sim.inject(
        Fault::on(
            "getChatMember",
            FaultKind::Delay(Duration::from_millis(300)),
        )
        .always(),
    );
    let posted: Vec<_> = raiders
        .iter()
        .map(|&r| w.sim.post(w.group, r, "raid!").expect("raider posts"))
        .collect();
    let sim = &w.sim;
    wait_until("the first raider is muted", || {
        !sim.calls_to("restrictChatMember").is_empty()
    })
    .await;
    let reads = sim.calls_to("getChatMember").len();
    assert!(
        reads >= 12,
        "the queued raiders' reads ran ahead ({reads} reads done at the first mute)"
    );
    w.sim.clear_faults();
    assert_every_raider_handled(&w, &bot, w.group, &raiders, &posted).await;
    bot.stop().await;
}
