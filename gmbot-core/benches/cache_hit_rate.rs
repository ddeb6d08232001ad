//! Membership cache hit rate on a simulated workload, against the optimum the TTLs allow.
//!
//! Run: `cargo bench -p gmbot-core --bench cache_hit_rate` (needs Redis at
//! 127.0.0.1:6379 for the Redis and layered rows).
//!
//! Reference workload (also written down in docs/BENCHMARKS.md):
//! - 100 protected groups, each linked to its own channel; 200,000 users,
//!   each a member of 1–3 of the groups (drawn from a hash of the user id).
//! - Activity is Zipf-distributed over users (exponent 1.0): the user of each
//!   message is drawn by activity rank; the group is one of that user's groups.
//! - 200 messages/s overall for 10 simulated minutes (120,000 messages), time
//!   driven by a `ManualClock` advanced 5 ms per message.
//! - 80 % of (channel, user) pairs are subscribed. A non-subscriber who
//!   writes is muted in that group (Telegram then drops their messages); half
//!   of them join the channel 5–60 s later, which invalidates the key (the
//!   bot sees the `chat_member` update) and unmutes them.
//! - Every message is one cache lookup (`get_local`, then `get_or_load` on a
//!   miss) whose loader answers the current truth, as Telegram would.
//!
//! The optimum replays the same trace through an idealized cache of
//! unbounded size with the same TTL policy (600 s member / 60 s non-member,
//! ±15 %): a miss only on first sight, after expiry, or after an
//! invalidation. The target is a hit rate ≥ 95 % and within 1 percentage
//! point of that optimum.

use std::collections::HashMap;
use std::future::ready;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmbot_core::cache::{
    LayeredCache, LayeredCacheConfig, MembershipCache, MembershipKey, MemoryCache,
    MemoryCacheConfig, RedisCache, RedisCacheConfig, TtlPolicy,
};
use gmbot_core::clock::ManualClock;
use gmbot_core::domain::{ChannelId, ChatMemberStatus, UnixTime, UserId};
use prometheus::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GROUPS: u64 = 100;
const USERS: u64 = 200_000;
/// The reference scenario's activity skew, rate and length.
const REFERENCE: Scenario = Scenario {
    zipf: 1.0,
    rate: 200,
    warm_up: Duration::ZERO,
    measured: Duration::from_secs(600),
};

/// A workload variant: Zipf exponent, offered messages per second, and a
/// warm-up period replayed but not measured (0 = start with a cold cache).
#[derive(Debug, Clone, Copy)]
struct Scenario {
    zipf: f64,
    rate: u64,
    warm_up: Duration,
    measured: Duration,
}

impl Scenario {
    fn measure_from_ms(&self) -> u64 {
        self.warm_up.as_millis() as u64
    }
}
const SUBSCRIBED_PERCENT: u64 = 80;
const SEED: u64 = 0x6d62_6f74;
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// One event of the trace, at a simulated instant.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// A message: one lookup of this key.
    Message(MembershipKey),
    /// The user joined the channel: the key is invalidated, the truth becomes "member".
    Join(MembershipKey),
}

/// A mixing hash (splitmix64), so group assignment and membership look random but are reproducible.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Zipf over ranks 1..=n: P(k) ∝ 1/k^s, sampled by binary search in the CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    /// A rank in 0..n.
    fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

fn channel_of(group: u64) -> ChannelId {
    ChannelId(-1_000_000_000_000 - group as i64)
}

fn groups_of(user: u64) -> impl Iterator<Item = u64> {
    let h = mix(user);
    let count = 1 + h % 3;
    (0..count).map(move |i| mix(h.wrapping_add(i)) % GROUPS)
}

fn initially_subscribed(key: MembershipKey) -> bool {
    mix((key.channel.0 as u64) ^ mix(key.user.0 as u64)) % 100 < SUBSCRIBED_PERCENT
}

/// The trace: (simulated milliseconds, event), in time order.
fn build_trace(sc: Scenario) -> Vec<(u64, Event)> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let zipf = Zipf::new(USERS, sc.zipf);
    let step_us = 1_000_000 / sc.rate;
    let total = (sc.warm_up + sc.measured).as_secs() * sc.rate;
    let mut truth: HashMap<MembershipKey, bool> = HashMap::new();
    // Muted (non-subscribed) keys, with the instant they join, if they do.
    let mut muted: HashMap<MembershipKey, Option<u64>> = HashMap::new();
    let mut joins: Vec<(u64, MembershipKey)> = Vec::new();
    let mut trace = Vec::with_capacity(total as usize + 10_000);
    for i in 0..total {
        let now = i * step_us / 1_000;
        // Joins due by now.
        joins.sort_unstable_by_key(|j| std::cmp::Reverse(j.0));
        while joins.last().is_some_and(|(at, _)| *at <= now) {
            if let Some((at, key)) = joins.pop() {
                truth.insert(key, true);
                muted.remove(&key);
                trace.push((at, Event::Join(key)));
            }
        }
        // Rank → user id through a permutation, so activity is not tied to id order.
        let rank = zipf.sample(&mut rng);
        let user = mix(rank) % USERS + 1;
        let groups: Vec<u64> = groups_of(user).collect();
        let group = groups[rng.random_range(0..groups.len())];
        let key = MembershipKey::new(channel_of(group), UserId(user as i64));
        if muted.contains_key(&key) {
            continue; // Telegram does not let a muted member write.
        }
        trace.push((now, Event::Message(key)));
        let subscribed = *truth
            .entry(key)
            .or_insert_with(|| initially_subscribed(key));
        if !subscribed {
            let join_at = rng
                .random_bool(0.5)
                .then(|| now + rng.random_range(5_000..=60_000));
            if let Some(at) = join_at {
                joins.push((at, key));
            }
            muted.insert(key, join_at);
        }
    }
    trace.sort_by_key(|(at, _)| *at);
    trace
}

/// What a replay measured.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    lookups: u64,
    hits: u64,
    loads: u64,
    elapsed: Duration,
}

impl Outcome {
    fn hit_rate(&self) -> f64 {
        self.hits as f64 / self.lookups.max(1) as f64
    }
}

fn status(subscribed: bool) -> ChatMemberStatus {
    if subscribed {
        ChatMemberStatus::Member
    } else {
        ChatMemberStatus::Left
    }
}

/// The idealized cache: unbounded, same TTLs, same invalidations.
fn optimum(trace: &[(u64, Event)], policy: TtlPolicy, from_ms: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(SEED ^ 0xff);
    let mut truth: HashMap<MembershipKey, bool> = HashMap::new();
    let mut expiry: HashMap<MembershipKey, u64> = HashMap::new();
    let mut out = Outcome::default();
    for &(now, event) in trace {
        match event {
            Event::Join(key) => {
                truth.insert(key, true);
                expiry.remove(&key);
            }
            Event::Message(key) => {
                let measured = now >= from_ms;
                out.lookups += u64::from(measured);
                if expiry.get(&key).is_some_and(|&e| now < e) {
                    out.hits += u64::from(measured);
                } else {
                    out.loads += u64::from(measured);
                    let subscribed = *truth
                        .entry(key)
                        .or_insert_with(|| initially_subscribed(key));
                    let ttl = policy.ttl_with(status(subscribed), &mut rng);
                    expiry.insert(key, now + ttl.as_millis() as u64);
                }
            }
        }
    }
    out
}

/// Replays the trace through `cache`, moving `clock` along.
async fn replay(
    trace: &[(u64, Event)],
    cache: &dyn MembershipCache,
    clock: &ManualClock,
    from_ms: u64,
) -> Outcome {
    let mut truth: HashMap<MembershipKey, bool> = HashMap::new();
    let mut out = Outcome::default();
    let mut sim_now = 0;
    let started = Instant::now();
    for &(at, event) in trace {
        clock.advance(Duration::from_millis(at - sim_now));
        sim_now = at;
        match event {
            Event::Join(key) => {
                truth.insert(key, true);
                cache.invalidate(key).await;
            }
            Event::Message(key) => {
                let measured = at >= from_ms;
                out.lookups += u64::from(measured);
                if cache.get_local(key).is_some() {
                    out.hits += u64::from(measured);
                    continue;
                }
                let subscribed = *truth
                    .entry(key)
                    .or_insert_with(|| initially_subscribed(key));
                let got = cache
                    .get_or_load(key, Box::pin(ready(Ok(status(subscribed)))))
                    .await
                    .expect("the loader never fails here");
                assert_eq!(
                    got.status.is_subscribed(),
                    subscribed,
                    "the cache served a stale answer"
                );
                if got.source.is_hit() {
                    out.hits += u64::from(measured);
                } else {
                    out.loads += u64::from(measured);
                }
            }
        }
    }
    out.elapsed = started.elapsed();
    out
}

fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("gmbot-bench:{name}:{}:{nanos}:", std::process::id())
}

async fn delete_prefix(prefix: &str) {
    let client = redis::Client::open(REDIS_URL).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection for cleanup");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("list bench keys");
    for chunk in keys.chunks(1_000) {
        let _: () = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .expect("delete bench keys");
    }
}

async fn require_redis() {
    let ok = async {
        let client = redis::Client::open(REDIS_URL).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    if tokio::time::timeout(Duration::from_secs(2), ok)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        panic!(
            "Redis is not reachable at {REDIS_URL}; start it with:\n  redis-server --daemonize yes \
             --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis \
             --logfile /var/log/redis/ci.log"
        );
    }
}

fn redis_config(prefix: &str) -> RedisCacheConfig {
    RedisCacheConfig {
        key_prefix: prefix.to_owned(),
        invalidation_channel: format!("{prefix}invalidate"),
        // A generous bound: the benchmark measures hits, not timeouts.
        op_timeout: Duration::from_secs(2),
        ..RedisCacheConfig::new(REDIS_URL)
    }
}

fn row(name: &str, o: &Outcome, best: &Outcome) {
    let per_sec = if o.elapsed.is_zero() {
        f64::NAN
    } else {
        o.lookups as f64 / o.elapsed.as_secs_f64()
    };
    println!(
        "{name:<28} {:>9} {:>9} {:>8.2} % {:>+8.2} pp {:>9.1} {:>12.0}",
        o.lookups,
        o.loads,
        o.hit_rate() * 100.0,
        (o.hit_rate() - best.hit_rate()) * 100.0,
        o.loads as f64 * 1_000.0 / o.lookups.max(1) as f64,
        per_sec,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

fn describe(trace: &[(u64, Event)], sc: Scenario) -> String {
    let messages = trace
        .iter()
        .filter(|(_, e)| matches!(e, Event::Message(_)))
        .count();
    let joins = trace.len() - messages;
    let mut distinct: Vec<MembershipKey> = trace
        .iter()
        .map(|(_, e)| match e {
            Event::Message(k) | Event::Join(k) => *k,
        })
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    format!(
        "Zipf s={}, {} msg/s offered, {} s warm-up + {} s measured: {messages} messages delivered \
         (muted non-subscribers cannot write), {joins} joins, {} distinct (channel, user) keys",
        sc.zipf,
        sc.rate,
        sc.warm_up.as_secs(),
        sc.measured.as_secs(),
        distinct.len()
    )
}

fn header() {
    println!(
        "{:<30} {:>9} {:>9} {:>10} {:>11} {:>9} {:>12}",
        "cache", "lookups", "loads", "hit rate", "vs optimum", "loads/1k", "lookups/s"
    );
}

async fn memory_row(trace: &[(u64, Event)], sc: Scenario, best: &Outcome) -> Outcome {
    let clock = ManualClock::new(UnixTime(1_700_000_000));
    let memory = MemoryCache::new(
        MemoryCacheConfig::default(),
        Arc::new(clock.clone()),
        &Registry::new(),
    )
    .expect("memory cache");
    let o = replay(trace, &memory, &clock, sc.measure_from_ms()).await;
    row("memory (default, 500k)", &o, best);
    o
}

async fn run() {
    let policy = TtlPolicy::default();
    let sc = REFERENCE;
    let trace = build_trace(sc);
    println!(
        "reference workload: {GROUPS} groups, {USERS} users, {SUBSCRIBED_PERCENT} % subscribed"
    );
    println!("{}\n", describe(&trace, sc));
    let best = optimum(&trace, policy, sc.measure_from_ms());
    header();
    row("optimum (unbounded, same TTLs)", &best, &best);
    let start = UnixTime(1_700_000_000);
    let mut results = vec![("memory", memory_row(&trace, sc, &best).await)];

    require_redis().await;
    let prefix = unique_prefix("redis");
    let clock = ManualClock::new(start);
    let redis = RedisCache::connect(
        redis_config(&prefix),
        Arc::new(clock.clone()),
        &Registry::new(),
    )
    .await
    .expect("redis cache");
    let o = replay(&trace, &redis, &clock, sc.measure_from_ms()).await;
    row("redis", &o, &best);
    results.push(("redis", o));
    drop(redis);
    delete_prefix(&prefix).await;

    let prefix = unique_prefix("layered");
    let clock = ManualClock::new(start);
    let config = LayeredCacheConfig {
        redis: redis_config(&prefix),
        ..LayeredCacheConfig::new(REDIS_URL)
    };
    let layered = LayeredCache::connect(config, Arc::new(clock.clone()), &Registry::new())
        .await
        .expect("layered cache");
    let o = replay(&trace, &layered, &clock, sc.measure_from_ms()).await;
    row("layered (L1 100k + redis)", &o, &best);
    results.push(("layered", o));
    drop(layered);
    delete_prefix(&prefix).await;

    println!();
    for (name, o) in &results {
        let gap = (best.hit_rate() - o.hit_rate()) * 100.0;
        println!(
            "{name}: hit rate {:.2} % (target >= 95 %: {}), {gap:.2} pp below the optimum \
             (target <= 1 pp: {})",
            o.hit_rate() * 100.0,
            if o.hit_rate() >= 0.95 {
                "met"
            } else {
                "NOT met"
            },
            if gap <= 1.0 { "met" } else { "NOT met" },
        );
    }
    if best.hit_rate() < 0.95 {
        println!(
            "the optimum itself is {:.2} %: on this trace no cache with these TTLs reaches 95 %",
            best.hit_rate() * 100.0
        );
    }

    // How the optimum, and the memory cache's distance to it, depend on the workload.
    println!("\nsensitivity (memory cache only; the optimum bounds every adapter):");
    for (zipf, rate, warm) in [
        (1.0, 200, 600),
        (1.0, 1_000, 0),
        (1.0, 1_000, 600),
        (1.2, 200, 0),
        (1.2, 200, 600),
        (1.2, 1_000, 600),
        (1.5, 200, 600),
    ] {
        let sc = Scenario {
            zipf,
            rate,
            warm_up: Duration::from_secs(warm),
            measured: Duration::from_secs(600),
        };
        let trace = build_trace(sc);
        println!("\n{}", describe(&trace, sc));
        let best = optimum(&trace, policy, sc.measure_from_ms());
        header();
        row("optimum (unbounded, same TTLs)", &best, &best);
        memory_row(&trace, sc, &best).await;
    }
}
