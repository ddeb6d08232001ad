//! Join gate latency: how long after a subscriber's `chat_join_request` arrives the bot has
//! approved it, when their membership is in the cache.
//!
//! ```text
//! cargo test -p gmbot-bot --bench join_gate     # debug build: what BENCHMARKS.md reports
//! cargo bench -p gmbot-bot --bench join_gate    # release build
//! GMBOT_GATE_REQUESTS=500 cargo test -p gmbot-bot --bench join_gate
//! ```
//!
//! The real app (SQLite file store, in-process cache, the system clock, Telegram's default
//! budgets) talks to the simulated Telegram over HTTP on 127.0.0.1 through the Bot API client.
//! For each request: the simulator creates the `chat_join_request`; the bench fetches it with
//! `getUpdates` and converts it — the update has arrived — and starts the clock; it hands the
//! update to `handlers::handle` (group config, exemptions, the cached membership) which
//! queues the approval in the outbox; the outbox's worker takes it and the dispatcher sends
//! `approveChatJoinRequest` (interactive lane, action budget); the clock stops when the
//! simulator's answer to that call is back (`Outbox::idle`). Requests go one at a time,
//! 40 ms apart, so the action budget (30/s) never holds one back: this is the latency of
//! one request, not a throughput figure.
//!
//! Two baselines in the same run, same client and simulator:
//! - **floor**: one bare `approveChatJoinRequest` call made directly with the Bot API client
//!   (the HTTP round trip every approval costs);
//! - **cache miss**: the same path for subscribers whose membership is not cached (the gate
//!   asks `getChatMember` first).
//!
//! The target is p99 < 50 ms on a cache hit; the bench exits with status 1 when it is missed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gmbot_bot::app::{App, AppDeps, BotIdentity};
use gmbot_bot::botapi::{convert, ALLOWED_UPDATES};
use gmbot_bot::handlers;
use gmbot_bot::sim::{AdminRights, Simulator, SimulatorOptions};
use gmbot_bot::update::UpdateKind;
use gmbot_bot::{BotApi, BotApiOptions, BotToken};
use gmbot_core::cache::{MemoryCache, MemoryCacheConfig};
use gmbot_core::clock::{Clock, SystemClock};
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::{
    ChannelUsername, EnforcedChannel, GroupId, ProtectRequest, SettingChange, UserId,
};
use gmbot_core::engine::{EngineConfig, MessageContext};
use gmbot_core::store::{self, MigrationMode};
use gmbot_core::telegram::TelegramApi;
use prometheus::Registry;

#[path = "../../gmbot-core/tests/support/mod.rs"]
mod support;

const TARGET: Duration = Duration::from_millis(50);
const SPACING: Duration = Duration::from_millis(40);

fn client(sim: &Simulator) -> BotApi {
    let token = BotToken::parse(sim.token()).expect("simulator token");
    BotApi::new(
        token,
        BotApiOptions {
            base_url: sim.base_url().parse().expect("simulator URL"),
            ..BotApiOptions::default()
        },
    )
    .expect("client")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Summary {
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

fn summarize(mut v: Vec<Duration>) -> Summary {
    v.sort();
    Summary {
        p50: pct(&v, 0.50),
        p95: pct(&v, 0.95),
        p99: pct(&v, 0.99),
        max: v.last().copied().unwrap_or_default(),
    }
}

fn row(name: &str, n: usize, s: &Summary) {
    println!(
        "{name:<34} {n:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        ms(s.p50),
        ms(s.p95),
        ms(s.p99),
        ms(s.max)
    );
}

fn main() {
    let n: usize = std::env::var("GMBOT_GATE_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = rt.block_on(run(n));
    if !ok {
        std::process::exit(1);
    }
}

/// Each request in turn: created, fetched (the clock starts), handled, approved.
async fn measure(
    sim: &Simulator,
    poll: &BotApi,
    app: &App,
    group: GroupId,
    offset: &mut Option<i64>,
    users: &[UserId],
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(users.len());
    for &u in users {
        sim.request_join(group, u).expect("request");
        // The previous approval's join (chat_member, service message) comes first: handled
        // outside the measurement.
        let update = loop {
            let b = poll
                .get_updates_with(*offset, 1, 0, &ALLOWED_UPDATES)
                .await
                .expect("getUpdates");
            *offset = b.next_offset.or(*offset);
            let Some(u) = b.updates.into_iter().next() else {
                continue;
            };
            let u = convert::update(u);
            if matches!(u.kind, UpdateKind::ChatJoinRequest(_)) {
                break u;
            }
            handlers::handle(app, u).await.expect("handled");
        };
        app.outbox().idle().await;
        let kind = update.kind.name();
        let started = Instant::now();
        handlers::handle(app, update).await.expect("handled");
        app.outbox().idle().await;
        out.push(started.elapsed());
        assert!(
            !sim.join_request_pending(group, u),
            "{u} approved (update {:?})",
            kind
        );
        tokio::time::sleep(SPACING).await;
    }
    out
}

async fn run(n: usize) -> bool {
    let sim = Simulator::start_with(SimulatorOptions {
        workers: 4,
        ..SimulatorOptions::default()
    })
    .expect("simulator");
    sim.set_recording(false);
    let owner = sim.add_user("Owner");
    let group = sim.create_supergroup("Gated", owner).expect("group");
    let channel = sim
        .create_channel("News", Some("bench_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot in group");
    sim.add_bot(channel, owner, Some(AdminRights::full()))
        .expect("bot in channel");
    let subscriber = |name: String| {
        let u = sim.add_user(&name);
        sim.join(channel, u).expect("subscribes");
        u
    };
    let warm: Vec<UserId> = (0..n).map(|i| subscriber(format!("Warm {i}"))).collect();
    let cold: Vec<UserId> = (0..n / 4)
        .map(|i| subscriber(format!("Cold {i}")))
        .collect();
    let floor_users: Vec<UserId> = (0..n / 4)
        .map(|i| sim.add_user(&format!("Floor {i}")))
        .collect();

    let (_file, url) = support::sqlite_file_url();
    let store = store::open(&url, MigrationMode::Apply)
        .await
        .expect("store");
    let registry = Registry::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let cache =
        MemoryCache::new(MemoryCacheConfig::default(), clock.clone(), &registry).expect("cache");
    let app = App::new(AppDeps {
        me: BotIdentity {
            id: sim.bot().id,
            username: "gmbot_test_bot".to_owned(),
        },
        store: store.clone(),
        telegram: Arc::new(client(&sim)),
        cache: Arc::new(cache),
        clock: clock.clone(),
        dispatch: DispatchConfig::default(),
        engine: EngineConfig::default(),
        registry,
    })
    .expect("app");
    let now = clock.unix_now();
    store
        .protect(
            &ProtectRequest {
                group,
                title: Some("Gated".into()),
                owner: Some(owner),
                channels: vec![EnforcedChannel {
                    id: Some(channel),
                    username: Some(ChannelUsername::parse("bench_news").expect("username")),
                    title: Some("News".into()),
                    invite_link: None,
                }],
            },
            now,
        )
        .await
        .expect("protect");
    store
        .update_settings(group, &[SettingChange::JoinGate(true)], now)
        .await
        .expect("gate on");

    let poll = client(&sim);
    let mut offset = None;
    // Skip the setup's updates.
    loop {
        let b = poll
            .get_updates_with(offset, 100, 0, &ALLOWED_UPDATES)
            .await
            .expect("getUpdates");
        offset = b.next_offset.or(offset);
        if b.updates.is_empty() {
            break;
        }
    }
    // The hit path: group config, admin list and these memberships cached.
    for &u in &warm {
        app.engine()
            .verify(group, u, MessageContext::no_message())
            .await
            .expect("warm-up verification");
    }

    let hits = measure(&sim, &poll, &app, group, &mut offset, &warm).await;
    let misses = measure(&sim, &poll, &app, group, &mut offset, &cold).await;
    let mut floor = Vec::with_capacity(floor_users.len());
    for &u in &floor_users {
        sim.request_join(group, u).expect("request");
        let started = Instant::now();
        poll.approve_join_request(group, u).await.expect("approve");
        floor.push(started.elapsed());
        tokio::time::sleep(SPACING).await;
    }
    app.shutdown().await;

    let approved = warm
        .iter()
        .chain(&cold)
        .all(|&u| sim.member(group, u) == gmbot_bot::sim::MemberState::Member);
    let (hits, misses, floor) = (summarize(hits), summarize(misses), summarize(floor));
    println!("join gate: update in hand → approveChatJoinRequest answered (ms)");
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "path", "n", "p50", "p95", "p99", "max"
    );
    row("subscriber, cache hit", n, &hits);
    row("subscriber, cache miss", cold.len(), &misses);
    row("floor: bare approve call", floor_users.len(), &floor);
    println!(
        "ratio hit/floor (p50): {:.2}   miss/hit (p50): {:.2}",
        ms(hits.p50) / ms(floor.p50).max(f64::EPSILON),
        ms(misses.p50) / ms(hits.p50).max(f64::EPSILON)
    );
    let ok = approved && hits.p99 < TARGET;
    println!(
        "target p99 < {} ms on a cache hit: {}{}",
        TARGET.as_millis(),
        if hits.p99 < TARGET { "met" } else { "MISSED" },
        if approved {
            ""
        } else {
            " (and some requester was not let in)"
        }
    );
    ok
}
