//! The cache warm-up at start, end to end: the real bot restarted against the simulated
//! Telegram re-verifies the members it saw before the restart, in the background, so their
//! first message after the restart is a cache hit; a slow warm-up does not hold up the
//! shutdown; `GMBOT_WARM_MAX_MEMBERS=0` turns it off.

mod e2e_support;

use std::time::{Duration, Instant};

use gmbot_bot::run::Bot;
use gmbot_bot::runtime::Shutdown;
use gmbot_core::domain::{UnixTime, UserId};

use e2e_support::{
    config, options, settle, start, wait_until, world, Backend, Running, Transport, World,
};

/// Starts the bot with a warm-up configuration of its own.
async fn start_warming(
    w: &World,
    backend: &Backend,
    warm: gmbot_core::warm::WarmConfig,
) -> Running {
    let mut config = config(&w.sim, backend, Transport::Polling);
    config.warm = warm;
    let shutdown = Shutdown::new();
    let bot = Bot::start(&config, options(backend), &shutdown)
        .await
        .expect("the bot starts");
    let running = Running {
        app: bot.app().clone(),
        addr: bot.http_addr(),
        monitor: bot.monitor(),
        shutdown: shutdown.clone(),
        task: tokio::spawn(bot.run(shutdown)),
    };
    wait_until("the bot is long polling", || w.sim.waiting_polls() > 0).await;
    running
}

/// getChatMember calls about `user` in the world's channel.
fn asked_about(w: &World, user: UserId) -> usize {
    w.sim
        .calls_to("getChatMember")
        .iter()
        .filter(|c| {
            c.int("chat_id") == Some(w.channel.get()) && c.int("user_id") == Some(user.get())
        })
        .count()
}

/// First run: protect, Alice writes (seen). Returns after a clean stop.
async fn first_run(w: &World, backend: &Backend) {
    let bot = start(&w.sim, backend, Transport::Polling).await;
    settle(&w.sim, &bot.monitor).await;
    w.sim
        .post(w.group, w.owner, "/protect @e2e_news")
        .expect("owner posts");
    settle(&w.sim, &bot.monitor).await;
    w.sim.post(w.group, w.alice, "hi").expect("alice posts");
    settle(&w.sim, &bot.monitor).await;
    assert_eq!(asked_about(w, w.alice), 1);
    bot.stop().await;
}

async fn restart_warms_the_members_seen_before(backend: Backend) {
    let w = world();
    first_run(&w, &backend).await;

    let bot = start_warming(&w, &backend, gmbot_core::warm::WarmConfig::default()).await;
    wait_until("the warm-up re-verifies Alice", || {
        asked_about(&w, w.alice) == 2
    })
    .await;
    w.sim.post(w.group, w.alice, "back").expect("alice posts");
    settle(&w.sim, &bot.monitor).await;
    assert_eq!(
        asked_about(&w, w.alice),
        2,
        "her first message after the restart is a cache hit"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_warms_the_members_seen_before_on_sqlite() {
    restart_warms_the_members_seen_before(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_warms_the_members_seen_before_on_postgres_and_redis() {
    // With Redis the entry survived the restart: the warm-up copies it into the new
    // process's in-process layer without asking Telegram.
    let backend = Backend::postgres_redis();
    let w = world();
    first_run(&w, &backend).await;
    let bot = start_warming(&w, &backend, gmbot_core::warm::WarmConfig::default()).await;
    let key = gmbot_core::cache::MembershipKey::new(w.channel, w.alice);
    let app = bot.app.clone();
    wait_until("the warm-up fills the in-process layer", || {
        app.cache().get_local(key).is_some()
    })
    .await;
    assert_eq!(
        asked_about(&w, w.alice),
        1,
        "no Telegram call: Redis had it"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_warm_up_stops_with_the_bot_and_zero_turns_it_off() {
    let w = world();
    let backend = Backend::sqlite();
    first_run(&w, &backend).await;
    // 300 more members seen a moment ago, so the warm-up has plenty to do.
    let store = gmbot_core::store::open(
        &config(&w.sim, &backend, Transport::Polling).database_url,
        gmbot_core::store::MigrationMode::Require,
    )
    .await
    .expect("store");
    let now = UnixTime::now();
    let rows: Vec<_> = (0..300)
        .map(|i| (w.group, UserId(5_000_000 + i), UnixTime(now.0 - 1)))
        .collect();
    store.record_seen_many(&rows).await.expect("seen");
    drop(store);

    let slow = gmbot_core::warm::WarmConfig {
        calls_per_second: 2,
        ..gmbot_core::warm::WarmConfig::default()
    };
    let bot = start_warming(&w, &backend, slow).await;
    let sim = &w.sim;
    wait_until("the warm-up has started", || {
        !sim.calls_to("getChatMember").is_empty()
    })
    .await;
    let before = w.sim.calls_to("getChatMember").len();
    let started = Instant::now();
    bot.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = w.sim.calls_to("getChatMember").len();
    assert!(
        after <= before + 4,
        "no warm-up calls after the stop: {before} → {after}"
    );
    assert!(after < 20, "2 calls/s: only a handful were made ({after})");

    // Turned off: a restart asks nothing.
    let calls = w.sim.calls_to("getChatMember").len();
    let off = gmbot_core::warm::WarmConfig {
        max_members: 0,
        ..gmbot_core::warm::WarmConfig::default()
    };
    let bot = start_warming(&w, &backend, off).await;
    settle(&w.sim, &bot.monitor).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.sim.calls_to("getChatMember").len(), calls);
    bot.stop().await;
}
