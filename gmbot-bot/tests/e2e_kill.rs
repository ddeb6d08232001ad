//! An instance killed with SIGKILL while it holds webhook updates it answered but has not
//! handled: with the write-ahead (`GMBOT_WEBHOOK_JOURNAL`, on by default) those updates are
//! in the update journal, held by the killed instance; once its hold runs out another
//! instance takes them over and handles them. The real `gmbot-bot` binary is killed; the
//! instance that takes over runs in process. PostgreSQL (a fresh schema), no Redis.

mod e2e_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gmbot_bot::runtime::WRITE_AHEAD_HOLD;
use gmbot_bot::sim::{Fault, FaultKind, Simulator, SimulatorOptions};
use gmbot_bot::Config;
use gmbot_core::domain::{ChannelRef, EnforcedChannel, ProtectRequest, UnixTime};
use gmbot_core::store::{self, MigrationMode};

use e2e_support::{options, start_configured, world_with, Backend, PgSchema, Transport, SECRET};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The binary in webhook mode on `pg`, listening on `port`.
fn spawn_binary(sim: &Simulator, pg: &PgSchema, port: u16, journal: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gmbot-bot"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TELEGRAM_BOT_TOKEN", sim.token())
        .env("TELEGRAM_API_URL", sim.base_url())
        .env("DATABASE_URL", pg.url())
        .env("GMBOT_MIGRATE", "auto")
        .env("HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("WEBHOOK_URL", format!("http://127.0.0.1:{port}/tg/hook"))
        .env("WEBHOOK_SECRET", SECRET)
        .env("GMBOT_WEBHOOK_JOURNAL", journal)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gmbot-bot runs")
}

async fn wait_for(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not reached within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded: 5 s) until the update journal holds `n` rows.
async fn journal_holds(s: &dyn store::Store, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = s.count_journaled_updates().await.expect("count");
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now} rows, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_answered_by_an_instance_killed_before_handling_them_are_handled_by_another() {
    let w = world_with(SimulatorOptions {
        workers: 16,
        ..SimulatorOptions::default()
    });
    let sim = &w.sim;
    let backend = Backend::postgres_redis();
    let Backend::PostgresRedis(pg, _) = &backend else {
        unreachable!()
    };
    let s = store::open(&pg.url().parse().expect("url"), MigrationMode::Apply)
        .await
        .expect("store");
    s.protect(
        &ProtectRequest {
            group: w.group,
            title: None,
            owner: None,
            channels: vec![EnforcedChannel::from_ref(ChannelRef::Id(w.channel))],
        },
        UnixTime::now(),
    )
    .await
    .expect("protect");

    // The world's joins happened before the bot: not its business here.
    sim.discard_pending_updates();
    let port = free_port();
    let mut a = spawn_binary(sim, pg, port, "on");
    let hook = format!("http://127.0.0.1:{port}/tg/hook");
    wait_for(
        "the binary registers its webhook",
        Duration::from_secs(20),
        || sim.webhook_url().as_deref() == Some(hook.as_str()),
    )
    .await;
    // Telegram is slow to answer the membership check: the instance answers the delivery
    // at once and is still handling it when it is killed.
    sim.inject(Fault::on("getChatMember", FaultKind::Delay(Duration::from_secs(20))).times(1));
    let message = sim.post(w.group, w.bob, "spam").expect("bob posts");
    wait_for(
        "the update is delivered and answered",
        Duration::from_secs(10),
        || sim.pending_updates() == 0,
    )
    .await;
    journal_holds(&*s, 1, "the update is in the journal before the kill").await;
    // The write-ahead comes before the handling: wait until the instance's membership check
    // is the one being held, or the instance taking over would meet the delay instead.
    wait_for(
        "the killed instance's check reached Telegram",
        Duration::from_secs(10),
        || sim.pending_faults() == 0,
    )
    .await;
    a.kill().expect("SIGKILL");
    let _ = a.wait();
    let killed = Instant::now();
    assert!(
        sim.message(w.group, message).is_some_and(|m| !m.deleted),
        "not handled before the kill"
    );

    // Another instance on the same database.
    let config = Config::from_vars(vec![
        ("TELEGRAM_BOT_TOKEN", sim.token().to_owned()),
        ("TELEGRAM_API_URL", sim.base_url()),
        ("DATABASE_URL", pg.url().to_owned()),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("WEBHOOK_URL", "http://127.0.0.1:0/tg/hook".to_owned()),
        ("WEBHOOK_SECRET", SECRET.to_owned()),
    ])
    .expect("valid configuration");
    let b = start_configured(sim, &config, Transport::Webhook, options(&backend)).await;
    wait_for(
        "the killed instance's update is handled: Bob's message deleted and Bob muted",
        WRITE_AHEAD_HOLD + Duration::from_secs(15),
        || {
            sim.message(w.group, message).is_some_and(|m| m.deleted)
                && !sim.can_post(w.group, w.bob)
        },
    )
    .await;
    let took = killed.elapsed();
    println!(
        "taken over and handled {:.1} s after the kill",
        took.as_secs_f64()
    );
    journal_holds(&*s, 0, "the journal row is deleted once handled").await;
    b.stop().await;
}
