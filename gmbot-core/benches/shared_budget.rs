//! Cost of a grant: the dispatcher's local token buckets against the shared budget in Redis.
//!
//! Run: `cargo bench -p gmbot-core --bench shared_budget --profile perf` (needs Redis at
//! 127.0.0.1:6379, or `GMBOT_BENCH_REDIS_URL`; `-- --quick` for a short run).
//!
//! Each case makes `restrictChatMember` calls through a [`Dispatcher`] in front of the
//! in-memory Telegram, with a restrict budget that never makes a call wait (see [`config`]):
//! what is measured is what obtaining a token costs. Two shapes: one call
//! in flight at a time (every shared grant is a round trip of its own: nothing to batch) and
//! 64 in flight (one round trip reserves slots for every waiting call, up to 64 and 200 ms
//! ahead). Latency is the whole `restrict_member` call (dispatcher + in-memory Telegram);
//! the local case is the baseline, measured in the same run. Keys live under a prefix of
//! their own and are deleted at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gmbot_core::dispatch::{
    DispatchConfig, Dispatcher, RedisBudget, RedisBudgetConfig, SharedBudgetOptions,
};
use gmbot_core::domain::{ChatMemberStatus, GroupId, UserId};
use gmbot_core::telegram::{MemoryTelegram, TelegramApi};
use prometheus::Registry;
use tokio::task::JoinSet;

const GROUP: GroupId = GroupId(-1_000_000_001);
const USER: UserId = UserId(42);

/// A restrict budget that is never the limit: 1,000,000/s with a burst of as many, so a
/// token is always there (locally) and every slot falls on "now" (in Redis). With a burst of
/// 1 a local waiter that just missed a token would sleep for tokio's 1 ms timer tick, and
/// the bench would measure the timer, not the grant.
fn config() -> DispatchConfig {
    DispatchConfig {
        actions_per_second: 1_000_000,
        action_burst: 1_000_000,
        ..DispatchConfig::default()
    }
}

struct Case {
    name: &'static str,
    ops: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    round_trips: f64,
}

impl Case {
    fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    fn quantile(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * q).round() as usize;
        l.get(i).copied().unwrap_or_default()
    }
}

fn metric(registry: &Registry, name: &str, label: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encodes");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

async fn run(
    name: &'static str,
    shared: Option<(&str, &str)>,
    in_flight: usize,
    ops: usize,
) -> Case {
    run_with(name, config(), shared, in_flight, ops).await
}

async fn run_with(
    name: &'static str,
    config: DispatchConfig,
    shared: Option<(&str, &str)>,
    in_flight: usize,
    ops: usize,
) -> Case {
    let tg =
        MemoryTelegram::new()
            .add_group(GROUP)
            .set_member(GROUP, USER, ChatMemberStatus::Member);
    let registry = Registry::new();
    let api: Arc<dyn TelegramApi> = Arc::new(tg);
    let dispatcher = match shared {
        None => Dispatcher::new(api, config.clone(), &registry).expect("dispatcher"),
        Some((url, prefix)) => {
            let budget = RedisBudget::new(&RedisBudgetConfig {
                key_prefix: prefix.to_owned(),
                ..RedisBudgetConfig::new(url)
            })
            .expect("budget");
            Dispatcher::with_shared_budget(
                api,
                config.clone(),
                SharedBudgetOptions {
                    instances: Some(1),
                    ..SharedBudgetOptions::new(Arc::new(budget))
                },
                &registry,
            )
            .expect("dispatcher")
        }
    };
    // Warm-up: connections, script cache.
    let warm_up = if config.actions_per_second < 1_000 {
        1
    } else {
        50
    };
    for _ in 0..warm_up {
        dispatcher
            .restrict_member(GROUP, USER, None)
            .await
            .expect("restricts");
    }
    let trips_before = metric(&registry, "gmbot_budget_reservation_seconds_count", "");
    let per_task = ops / in_flight;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        let d = dispatcher.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                d.restrict_member(GROUP, USER, None)
                    .await
                    .expect("restricts");
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut latencies = Vec::with_capacity(ops);
    while let Some(l) = tasks.join_next().await {
        latencies.extend(l.expect("task"));
    }
    let seconds = started.elapsed().as_secs_f64();
    let round_trips =
        metric(&registry, "gmbot_budget_reservation_seconds_count", "") - trips_before;
    assert_eq!(
        metric(&registry, "gmbot_budget_fallbacks_total", ""),
        0.0,
        "the shared budget must not fall back during the bench"
    );
    Case {
        name,
        ops: latencies.len(),
        seconds,
        latencies,
        round_trips,
    }
}

async fn delete_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let url = std::env::var("GMBOT_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("gmbot-bench:budget:{}:", std::process::id());
    let scale = if quick { 1 } else { 4 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cases = [
            run("local, 1 in flight", None, 1, 5_000 * scale).await,
            run(
                "shared, 1 in flight",
                Some((&url, &prefix)),
                1,
                1_000 * scale,
            )
            .await,
            run("local, 64 in flight", None, 64, 12_800 * scale).await,
            run(
                "shared, 64 in flight",
                Some((&url, &prefix)),
                64,
                12_800 * scale,
            )
            .await,
        ];
        // At the real restrict budget (30/s): what the batches are like when the budget is
        // the limit, and how much of it is spent (at most 28.8/s: the spacing allows 40 ms of
        // lateness per second).
        let real = run_with(
            "shared, 30/s, 32 in flight",
            DispatchConfig::default(),
            Some((&url, &prefix)),
            32,
            32 * 3 * scale,
        )
        .await;
        let local_real = run_with(
            "local, 30/s, 32 in flight",
            DispatchConfig::default(),
            None,
            32,
            32 * 3 * scale,
        )
        .await;
        delete_prefix(&url, &prefix).await;
        println!("-- restrict_member through the dispatcher (a budget that is never the limit)");
        println!(
            "{:<22} {:>8} {:>12} {:>10} {:>10} {:>12} {:>14}",
            "case", "calls", "calls/s", "p50 µs", "p99 µs", "round trips", "calls/trip"
        );
        for c in cases.iter().chain([&local_real, &real]) {
            println!(
                "{:<22} {:>8} {:>12.0} {:>10.1} {:>10.1} {:>12.0} {:>14}",
                c.name,
                c.ops,
                c.ops_per_second(),
                c.quantile(0.5).as_secs_f64() * 1e6,
                c.quantile(0.99).as_secs_f64() * 1e6,
                c.round_trips,
                if c.round_trips > 0.0 {
                    format!("{:.1}", c.ops as f64 / c.round_trips)
                } else {
                    "-".to_owned()
                }
            );
        }
        println!("-- ratios against the local path of the same shape, same run");
        for (local, shared) in [
            (&cases[0], &cases[1]),
            (&cases[2], &cases[3]),
            (&local_real, &real),
        ] {
            println!(
                "{:<22} throughput ×{:.3}, p99 ×{:.1}",
                shared.name,
                shared.ops_per_second() / local.ops_per_second(),
                shared.quantile(0.99).as_secs_f64() / local.quantile(0.99).as_secs_f64()
            );
        }
    });
}
