//! Shared fixture of the end-to-end tests: a simulated Telegram with an owner, a group, a
//! channel and members; the real bot (`run::Bot`) started against it in polling or webhook
//! mode on SQLite or PostgreSQL + Redis, each run isolated (own temp file, own PostgreSQL
//! schema, own Redis key prefix, all removed afterwards); and the whole protection flow.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gmbot_bot::app::App;
use gmbot_bot::run::{Bot, RunOptions, RunReport};
use gmbot_bot::runtime::{RuntimeMonitor, Shutdown};
use gmbot_bot::sim::{AdminRights, SimMessage, Simulator};
use gmbot_bot::Config;
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::{ChannelId, GroupId, UserId};

#[path = "../../../gmbot-core/tests/support/mod.rs"]
mod store_support;

#[allow(unused_imports)] // each test binary uses its own subset
pub(crate) use store_support::{with_pg_client, PgSchema, SqliteFile};

pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A unique Redis key prefix, whose keys are deleted on drop.
pub(crate) struct RedisPrefix {
    pub prefix: String,
}

impl RedisPrefix {
    /// Checks that Redis answers (panics with how to start it otherwise).
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let prefix = format!(
            "gmbot:test:{}:{}:{}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        );
        let ok = redis::Client::open(REDIS_URL)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if let Err(e) = ok {
            panic!(
                "Redis is unreachable at {REDIS_URL} ({e}). These tests need it: start it with \
                 `redis-server --daemonize yes` (or `bash .ci/run`, which starts it)"
            );
        }
        Self { prefix }
    }

    /// Keys under this prefix right now.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut c = redis::Client::open(REDIS_URL)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("Redis connection");
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut c)
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.keys()));
        if let Ok(keys) = keys {
            if keys.is_empty() {
                return;
            }
            let deleted = redis::Client::open(REDIS_URL)
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                .and_then(|mut c| redis::cmd("DEL").arg(&keys).query::<i64>(&mut c));
            if let Err(e) = deleted {
                eprintln!("could not delete test keys under {}: {e}", self.prefix);
            }
        }
    }
}

/// Where the bot keeps its state in one test.
pub(crate) enum Backend {
    Sqlite(SqliteFile),
    PostgresRedis(PgSchema, RedisPrefix),
}

impl Backend {
    pub(crate) fn sqlite() -> Self {
        let (file, _) = store_support::sqlite_file_url();
        Self::Sqlite(file)
    }

    pub(crate) fn postgres_redis() -> Self {
        Self::PostgresRedis(PgSchema::new(), RedisPrefix::new())
    }

    pub(crate) fn vars(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Sqlite(f) => vec![("DATABASE_URL", format!("sqlite://{}", f.path().display()))],
            // A fresh schema each time, one instance: the bot may migrate it at start (on
            // PostgreSQL it waits for `gmbot migrate` unless told so).
            Self::PostgresRedis(pg, _) => vec![
                ("DATABASE_URL", pg.url().to_owned()),
                ("REDIS_URL", REDIS_URL.to_owned()),
                ("GMBOT_MIGRATE", "auto".to_owned()),
            ],
        }
    }

    pub(crate) fn redis_prefix(&self) -> String {
        match self {
            Self::Sqlite(_) => "gmbot:unused:".to_owned(),
            Self::PostgresRedis(_, r) => r.prefix.clone(),
        }
    }
}

/// The simulated world.
pub(crate) struct World {
    pub sim: Simulator,
    pub owner: UserId,
    /// In the group and subscribed.
    pub alice: UserId,
    /// In the group only.
    pub bob: UserId,
    /// In the group only; her name carries HTML.
    pub carol: UserId,
    pub group: GroupId,
    pub channel: ChannelId,
}

pub(crate) const CAROL: &str = "Carol <b>&amp;</b>";

pub(crate) fn world() -> World {
    world_on(Simulator::start().expect("simulator starts"))
}

/// The same world on a simulator started with `options` (e.g. more worker threads, for
/// tests that delay Telegram's answers).
pub(crate) fn world_with(options: gmbot_bot::sim::SimulatorOptions) -> World {
    world_on(Simulator::start_with(options).expect("simulator starts"))
}

fn world_on(sim: Simulator) -> World {
    let owner = sim.add_user("Olivia");
    let alice = sim.add_user("Alice");
    let bob = sim.add_user("Bob");
    let carol = sim.add_user(CAROL);
    let group = sim.create_supergroup("E2E group", owner).expect("group");
    let channel = sim
        .create_channel("E2E news", Some("e2e_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot joins the group");
    sim.add_bot(channel, owner, Some(AdminRights::full()))
        .expect("bot joins the channel");
    for u in [alice, bob, carol] {
        sim.join(group, u).expect("joins group");
    }
    sim.join(channel, alice).expect("alice subscribes");
    World {
        sim,
        owner,
        alice,
        bob,
        carol,
        group,
        channel,
    }
}

/// How the bot receives updates in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    /// Webhook with an explicit `WEBHOOK_SECRET`.
    Webhook,
    /// Webhook with the secret derived from the token.
    WebhookDerivedSecret,
}

pub(crate) const SECRET: &str = "e2e_secret-0123456789";

pub(crate) fn options(backend: &Backend) -> RunOptions {
    RunOptions {
        long_poll: Duration::from_secs(1),
        dispatch: DispatchConfig {
            global_burst: 30,
            group_burst: 20,
            backoff_base: Duration::from_millis(20),
            ..DispatchConfig::default()
        },
        redis_prefix: backend.redis_prefix(),
        startup_attempts: 2,
        ..RunOptions::default()
    }
}

pub(crate) fn config(sim: &Simulator, backend: &Backend, transport: Transport) -> Config {
    let mut vars = backend.vars();
    vars.push(("TELEGRAM_BOT_TOKEN", sim.token().to_owned()));
    vars.push(("TELEGRAM_API_URL", sim.base_url()));
    vars.push(("HTTP_LISTEN", "127.0.0.1:0".to_owned()));
    match transport {
        Transport::Polling => {}
        Transport::Webhook => {
            vars.push(("WEBHOOK_URL", "http://127.0.0.1:0/tg/hook".to_owned()));
            vars.push(("WEBHOOK_SECRET", SECRET.to_owned()));
        }
        Transport::WebhookDerivedSecret => {
            vars.push(("WEBHOOK_URL", "http://127.0.0.1:0/tg/hook".to_owned()));
        }
    }
    Config::from_vars(vars).expect("test configuration is valid")
}

/// A bot running on a task.
pub(crate) struct Running {
    pub app: App,
    pub addr: std::net::SocketAddr,
    pub monitor: RuntimeMonitor,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<anyhow::Result<RunReport>>,
}

impl Running {
    /// Triggers shutdown and waits (bounded) for a clean stop.
    pub(crate) async fn stop(self) -> RunReport {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the bot stops within 30 s")
            .expect("bot task")
            .expect("the bot stops without error")
    }

    pub(crate) fn webhook_url(&self) -> String {
        format!("http://{}/tg/hook", self.addr)
    }
}

pub(crate) async fn start(sim: &Simulator, backend: &Backend, transport: Transport) -> Running {
    start_with(sim, backend, transport, options(backend)).await
}

pub(crate) async fn start_with(
    sim: &Simulator,
    backend: &Backend,
    transport: Transport,
    options: RunOptions,
) -> Running {
    start_configured(sim, &config(sim, backend, transport), transport, options).await
}

/// Starts the bot with a configuration of the test's own (the same transport in `config`
/// and `transport`).
pub(crate) async fn start_configured(
    sim: &Simulator,
    config: &Config,
    transport: Transport,
    options: RunOptions,
) -> Running {
    let shutdown = Shutdown::new();
    let bot = Bot::start(config, options, &shutdown)
        .await
        .expect("the bot starts");
    let app = bot.app().clone();
    let addr = bot.http_addr();
    let monitor = bot.monitor();
    let task = tokio::spawn(bot.run(shutdown.clone()));
    let running = Running {
        app,
        addr,
        monitor,
        shutdown,
        task,
    };
    if transport != Transport::Polling {
        let expected = running.webhook_url();
        wait_until("the webhook is registered", || {
            sim.webhook_url().as_deref() == Some(expected.as_str())
        })
        .await;
    } else {
        wait_until("the bot is long polling", || sim.waiting_polls() > 0).await;
    }
    running
}

/// Polls `done` until it holds (bounded: 15 s; panics naming `what`).
pub(crate) async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "not reached within 15 s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every update the simulator made was delivered and handled, and that stays
/// true for a moment (handlers' calls may create further updates).
pub(crate) async fn settle(sim: &Simulator, monitor: &RuntimeMonitor) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let idle = sim.pending_updates() == 0 && monitor.is_idle();
        match (idle, quiet_since) {
            (true, Some(t)) if t.elapsed() >= Duration::from_millis(100) => return,
            (true, None) => quiet_since = Some(Instant::now()),
            (false, _) => quiet_since = None,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the bot did not settle within 15 s: {} updates pending, monitor {:?}",
            sim.pending_updates(),
            monitor.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The bot's latest visible message in the group mentioning `name` that carries a callback button.
pub(crate) fn warning_for(w: &World, name: &str) -> Option<(SimMessage, String)> {
    let bot = w.sim.bot().id;
    w.sim
        .visible_messages(w.group)
        .into_iter()
        .rev()
        .filter(|m| m.from == Some(bot) && m.text.contains(name))
        .find_map(|m| {
            let data = m
                .buttons
                .iter()
                .flatten()
                .find_map(|b| b.callback_data.clone())?;
            Some((m, data))
        })
}

/// The whole protection flow, asserted step by step.
pub(crate) async fn whole_flow(w: &World, bot: &Running) {
    let sim = &w.sim;
    let settle = || settle(sim, &bot.monitor);
    settle().await;

    // The owner protects the group.
    sim.post(w.group, w.owner, "/protect @e2e_news")
        .expect("owner posts");
    settle().await;
    let protected = bot
        .app
        .store()
        .group(w.group)
        .await
        .expect("store answers")
        .is_some_and(|g| g.is_enforced());
    assert!(protected, "the group is protected after /protect");

    // A subscriber writes: allowed.
    let m = sim.post(w.group, w.alice, "hi").expect("alice posts");
    settle().await;
    assert!(
        sim.message(w.group, m).is_some_and(|m| !m.deleted),
        "a subscriber's message stays"
    );
    assert!(sim.can_post(w.group, w.alice));

    // A non-subscriber writes: deleted, muted, warned.
    let m = sim.post(w.group, w.bob, "anyone?").expect("bob posts");
    settle().await;
    assert!(
        sim.message(w.group, m).is_some_and(|m| m.deleted),
        "a non-subscriber's message is deleted"
    );
    assert!(!sim.can_post(w.group, w.bob), "the non-subscriber is muted");
    assert!(warning_for(w, "Bob").is_some(), "Bob is warned");
    assert_eq!(
        sim.calls_to("sendMessage")
            .iter()
            .filter(|c| c.str("text").is_some_and(|t| t.contains("Bob")))
            .count(),
        1,
        "one warning"
    );

    // He joins the channel: unmuted automatically.
    sim.join(w.channel, w.bob).expect("bob subscribes");
    settle().await;
    assert!(sim.can_post(w.group, w.bob), "joining the channel unmutes");
    let m = sim.post(w.group, w.bob, "thanks").expect("bob posts again");
    settle().await;
    assert!(sim.message(w.group, m).is_some_and(|m| !m.deleted));

    // Another non-subscriber (with HTML in her name) writes, joins, presses "I've joined".
    sim.post(w.group, w.carol, "hello").expect("carol posts");
    settle().await;
    assert!(!sim.can_post(w.group, w.carol), "carol is muted");
    let (warning, data) = warning_for(w, CAROL).expect("carol's warning shows her name verbatim");
    // Someone else pressing it changes nothing.
    let spoof = sim
        .press_button(w.group, warning.id, w.alice, &data)
        .expect("alice presses carol's button");
    settle().await;
    assert!(
        sim.callback_answer(&spoof).is_some(),
        "every press is answered"
    );
    assert!(
        !sim.can_post(w.group, w.carol),
        "someone else's press does not unmute"
    );

    sim.join(w.channel, w.carol).expect("carol subscribes");
    // She presses at once; the bot may already have removed the warning after seeing the join,
    // so the press is sent as her client sends it (the button was still on her screen).
    let press = sim
        .send_callback(w.group, warning.id, w.carol, &data)
        .expect("carol presses");
    settle().await;
    assert!(
        sim.callback_answer(&press).is_some(),
        "the press is answered"
    );
    assert!(sim.can_post(w.group, w.carol), "carol can write again");

    // Every update was handled, none failed.
    let stats = bot.monitor.stats();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(stats.handled >= 8, "{stats:?}");
}
