//! Engine decision on a cache hit: latency (p50/p99) on one thread and throughput on 1 and 2 threads,
//! next to a baseline that only looks the same keys up in the membership cache.
//!
//! Run: `cargo bench -p gmbot-core --bench engine_hit` (options: `-- --quick` for a short
//! run, `-- --profile` to run only the hit path, for callgrind).
//!
//! Workload: 20 protected groups with one linked channel each, 5,000 users;
//! 65,536 (group, user) pairs drawn uniformly, 90 % subscribed members
//! (`Allow`) and 10 % cached non-members (`Deny` with its three actions).
//! Everything is warmed first, so every measured decision is a hit on the
//! group-config cache, the admin-list cache and the memory membership cache.
//! Real clock (`SystemClock`), real SQLite store (in memory; not touched
//! after the warm-up), `MemoryTelegram` (not called after the warm-up: the
//! bench checks that). Config, admin and membership TTLs are raised to one
//! hour so that a long run measures hits only; the production defaults
//! (30 s config, 5 min admins, 60 s non-member) would add one reload per
//! key per TTL — a miss-path cost, not what this bench measures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gmbot_core::cache::{
    MembershipCache, MembershipKey, MemoryCache, MemoryCacheConfig, TtlPolicy,
};
use gmbot_core::clock::SystemClock;
use gmbot_core::domain::{
    ChannelId, ChannelRef, ChatMemberStatus, EnforcedChannel, GroupId, MessageId, ProtectRequest,
    UnixTime, UserId,
};
use gmbot_core::engine::{Engine, EngineConfig, EnginePorts, MessageContext};
use gmbot_core::store::{self, MigrationMode};
use gmbot_core::telegram::{MemoryTelegram, Method};
use prometheus::Registry;

const GROUPS: i64 = 20;
const USERS: i64 = 5_000;
const PAIRS: usize = 1 << 16;

fn group(i: i64) -> GroupId {
    GroupId(-1_000_000_000_000 - i)
}
fn channel(i: i64) -> ChannelId {
    ChannelId(-1_000_000_100_000 - i)
}

/// xorshift64*: a deterministic key sequence without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Clone, Copy)]
struct Pair {
    group: GroupId,
    channel: ChannelId,
    user: UserId,
}

struct Setup {
    engine: Engine,
    cache: Arc<MemoryCache>,
    tg: MemoryTelegram,
    pairs: Arc<Vec<Pair>>,
}

fn subscribed(g: i64, u: i64) -> bool {
    (g * 7919 + u) % 10 != 0
}

async fn setup() -> Setup {
    let url = "sqlite::memory:".parse().expect("valid url");
    let store = store::open(&url, MigrationMode::Apply)
        .await
        .expect("open store");
    let mut tg = MemoryTelegram::new();
    for g in 0..GROUPS {
        tg = tg.add_group(group(g)).add_channel(channel(g));
        store
            .protect(
                &ProtectRequest {
                    group: group(g),
                    title: None,
                    owner: None,
                    channels: vec![EnforcedChannel::from_ref(ChannelRef::Id(channel(g)))],
                },
                UnixTime::now(),
            )
            .await
            .expect("protect");
        for u in 1..=USERS {
            if subscribed(g, u) {
                tg = tg.set_member(channel(g), UserId(u), ChatMemberStatus::Member);
            }
        }
    }
    let clock = Arc::new(SystemClock::new());
    let registry = Registry::new();
    let cache = Arc::new(
        MemoryCache::new(
            MemoryCacheConfig {
                max_capacity: 500_000,
                ttl: TtlPolicy {
                    member: Duration::from_secs(3600),
                    non_member: Duration::from_secs(3600),
                    jitter: 0.15,
                },
            },
            clock.clone(),
            &registry,
        )
        .expect("memory cache"),
    );
    let engine = Engine::new(
        EnginePorts {
            store,
            telegram: Arc::new(tg.clone()),
            cache: cache.clone(),
            clock,
        },
        EngineConfig {
            config_ttl: Duration::from_secs(3600),
            admin_ttl: Duration::from_secs(3600),
            ..EngineConfig::default()
        },
        &registry,
    )
    .expect("engine");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pairs: Vec<Pair> = (0..PAIRS)
        .map(|_| {
            let g = (rng.next() % GROUPS as u64) as i64;
            let u = (rng.next() % USERS as u64) as i64 + 1;
            Pair {
                group: group(g),
                channel: channel(g),
                user: UserId(u),
            }
        })
        .collect();
    for p in &pairs {
        engine
            .verify(p.group, p.user, MessageContext::message(MessageId(1)))
            .await
            .expect("warm-up verdict");
    }
    tg.clear_calls();
    Setup {
        engine,
        cache,
        tg,
        pairs: Arc::new(pairs),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

/// Per-call latencies (ns) of `ops` engine decisions on one thread.
fn engine_latencies(s: &Setup, ops: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(ops);
    runtime().block_on(async {
        for i in 0..ops {
            let p = s.pairs[i % PAIRS];
            let t = Instant::now();
            let v = s
                .engine
                .verify(p.group, p.user, MessageContext::message(MessageId(1)))
                .await;
            let ns = t.elapsed().as_nanos();
            std::hint::black_box(v.is_ok());
            out.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
    });
    out
}

/// Per-call latencies (ns) of the same keys looked up directly in the cache.
fn baseline_latencies(s: &Setup, ops: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(ops);
    for i in 0..ops {
        let p = s.pairs[i % PAIRS];
        let t = Instant::now();
        let hit = s.cache.get_local(MembershipKey::new(p.channel, p.user));
        let ns = t.elapsed().as_nanos();
        std::hint::black_box(hit);
        out.push(u32::try_from(ns).unwrap_or(u32::MAX));
    }
    out
}

#[inline(never)]
fn engine_loop(s: &Setup, offset: usize, ops: usize) -> usize {
    runtime().block_on(async {
        let mut allowed = 0;
        for i in 0..ops {
            let p = s.pairs[(offset + i) % PAIRS];
            if let Ok(v) = s
                .engine
                .verify(p.group, p.user, MessageContext::message(MessageId(1)))
                .await
            {
                allowed += usize::from(v.decision.is_allowed());
            }
        }
        allowed
    })
}

#[inline(never)]
fn baseline_loop(s: &Setup, offset: usize, ops: usize) -> usize {
    let mut hits = 0;
    for i in 0..ops {
        let p = s.pairs[(offset + i) % PAIRS];
        hits += usize::from(
            s.cache
                .get_local(MembershipKey::new(p.channel, p.user))
                .is_some(),
        );
    }
    hits
}

/// Decisions per second with `threads` threads each doing `ops`.
fn throughput(
    s: &Arc<Setup>,
    threads: usize,
    ops: usize,
    work: fn(&Setup, usize, usize) -> usize,
) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || work(&s, t * 7_919, ops))
        })
        .collect();
    for h in handles {
        std::hint::black_box(h.join().expect("bench thread"));
    }
    (threads * ops) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report_latency(name: &str, mut ns: Vec<u32>) -> (u32, u32) {
    ns.sort_unstable();
    let (p50, p99, p999) = (
        percentile(&ns, 0.50),
        percentile(&ns, 0.99),
        percentile(&ns, 0.999),
    );
    let max = ns.last().copied().unwrap_or(0);
    let slow = ns.iter().filter(|&&t| t > 5_000).count() as f64 / ns.len() as f64;
    println!(
        "{name:<26} p50 {:>6.3} µs  p90 {:>6.3}  p97 {:>6.3}  p99 {:>7.3}  p99.9 {:>7.3}  max {:>9.3} µs  > 5 µs: {:.2} %  (n = {})",
        f64::from(p50) / 1e3,
        f64::from(percentile(&ns, 0.90)) / 1e3,
        f64::from(percentile(&ns, 0.97)) / 1e3,
        f64::from(p99) / 1e3,
        f64::from(p999) / 1e3,
        f64::from(max) / 1e3,
        slow * 100.0,
        ns.len()
    );
    (p50, p99)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (lat_ops, tput_ops) = if quick {
        (200_000, 1_000_000)
    } else {
        (2_000_000, 5_000_000)
    };
    let s = Arc::new(runtime().block_on(setup()));
    if std::env::args().any(|a| a == "--profile") {
        // For `valgrind --tool=callgrind --toggle-collect='*engine_loop*'`: the hit path alone.
        engine_loop(&s, 0, 200_000);
        engine_loop(&s, 0, 100_000);
        baseline_loop(&s, 0, 100_000);
        return;
    }
    println!(
        "engine_hit: {GROUPS} groups x 1 channel, {USERS} users, {PAIRS} key pairs (90 % members), {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Warm the code paths and the CPU caches.
    engine_loop(&s, 0, 200_000);
    baseline_loop(&s, 0, 200_000);

    println!("-- latency, 1 thread (each sample includes ~2 clock reads)");
    let (_, base_p99) =
        report_latency("baseline: cache get_local", baseline_latencies(&s, lat_ops));
    let (e50, e99) = report_latency("engine: verify (hit)", engine_latencies(&s, lat_ops));

    println!("-- throughput");
    let mut rows = Vec::new();
    for threads in [1, 2] {
        let base = throughput(&s, threads, tput_ops, baseline_loop);
        let eng = throughput(&s, threads, tput_ops, engine_loop);
        println!(
            "{threads} thread(s): baseline {:>12.0} lookups/s   engine {:>12.0} decisions/s   engine/baseline {:.3}",
            base,
            eng,
            eng / base
        );
        rows.push((threads, base, eng));
    }

    let telegram_calls =
        s.tg.count(Method::GetChatMember) + s.tg.count(Method::GetChatAdministrators);
    println!("-- checks");
    println!("Telegram calls during the measured runs: {telegram_calls} (must be 0: every decision was a hit)");
    let two = rows.iter().find(|r| r.0 == 2).map_or(0.0, |r| r.2);
    println!(
        "targets: p99 {} µs < 10 µs: {}; 2-thread {:.0} decisions/s >= 1,000,000: {}",
        f64::from(e99) / 1e3,
        if e99 < 10_000 { "met" } else { "NOT met" },
        two,
        if two >= 1_000_000.0 { "met" } else { "NOT met" }
    );
    println!(
        "engine/baseline p99 latency ratio: {:.1}x (p50 {:.3} µs)",
        f64::from(e99) / f64::from(base_p99.max(1)),
        f64::from(e50) / 1e3
    );
    assert_eq!(telegram_calls, 0, "a measured decision missed a cache");
}
