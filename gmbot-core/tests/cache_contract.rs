//! The membership cache contract, run against every adapter (memory, Redis, layered), plus
//! the Redis-specific behaviours: cross-instance invalidation and outages.
//!
//! Needs Redis at 127.0.0.1:6379 (and `redis-server` on the PATH for the
//! mid-run outage test). Every test uses its own key prefix and pub/sub
//! channel and deletes its keys at the end.

#[path = "support/capture_log.rs"]
mod capture_log;
#[path = "support/private_redis.rs"]
mod private_redis;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture_log::{captured, count_logs, install_logger};
use gmbot_core::cache::{
    CacheMode, CacheSource, LayeredCache, LayeredCacheConfig, MembershipCache, MembershipKey,
    MembershipLoader, MemoryCache, MemoryCacheConfig, RedisCache, RedisCacheConfig, TtlPolicy,
};
use gmbot_core::clock::ManualClock;
use gmbot_core::domain::{ChannelId, ChatMemberStatus, UnixTime, UserId};
use gmbot_core::telegram::{TelegramError, TelegramResult};
use private_redis::PrivateRedis;
use prometheus::Registry;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
     --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log";

// ---------------------------------------------------------------- log capture

fn outage_warning(url: &str) -> String {
    format!("Redis at {url} is unavailable")
}

fn recovery_info(url: &str) -> String {
    format!("Redis at {url} answers again")
}

// ---------------------------------------------------------------- fixtures

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Redis,
    Layered,
}

fn unique_prefix(case: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "gmbot-test:{case}:{}:{nanos}:{}:",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn redis_missing(url: &str, e: &dyn std::fmt::Display) -> ! {
    panic!("Redis is not reachable at {url} ({e}). These tests need it; start it with:\n  {START_REDIS}")
}

async fn require_redis(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| redis_missing(url, &e));
    let conn = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await;
    match conn {
        Ok(Ok(mut conn)) => {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            if let Err(e) = pong {
                redis_missing(url, &e);
            }
            conn
        }
        Ok(Err(e)) => redis_missing(url, &e),
        Err(e) => redis_missing(url, &e),
    }
}

async fn delete_prefix(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .expect("list test keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(conn)
            .await
            .expect("delete test keys");
    }
}

fn redis_config(url: &str, prefix: &str, ttl: TtlPolicy) -> RedisCacheConfig {
    RedisCacheConfig {
        key_prefix: prefix.to_owned(),
        invalidation_channel: format!("{prefix}invalidate"),
        ttl,
        ..RedisCacheConfig::new(url)
    }
}

/// One cache under test, with the clock that drives it and the Redis keys to clean.
struct Fixture {
    cache: Arc<dyn MembershipCache>,
    clock: ManualClock,
    kind: Kind,
    registry: Registry,
    redis: Option<(redis::aio::MultiplexedConnection, String)>,
}

impl Fixture {
    async fn new(kind: Kind, case: &str, ttl: TtlPolicy) -> Self {
        let clock = ManualClock::new(UnixTime(1_700_000_000));
        let registry = Registry::new();
        let prefix = unique_prefix(case);
        let (cache, redis): (Arc<dyn MembershipCache>, _) = match kind {
            Kind::Memory => {
                let config = MemoryCacheConfig {
                    max_capacity: 10_000,
                    ttl,
                };
                let cache = MemoryCache::new(config, Arc::new(clock.clone()), &registry)
                    .expect("memory cache");
                (Arc::new(cache), None)
            }
            Kind::Redis => {
                let conn = require_redis(REDIS_URL).await;
                let config = redis_config(REDIS_URL, &prefix, ttl);
                let cache = RedisCache::connect(config, Arc::new(clock.clone()), &registry)
                    .await
                    .expect("redis cache");
                (Arc::new(cache), Some((conn, prefix)))
            }
            Kind::Layered => {
                let conn = require_redis(REDIS_URL).await;
                let config = LayeredCacheConfig {
                    redis: redis_config(REDIS_URL, &prefix, ttl),
                    l1_capacity: 10_000,
                };
                let cache = LayeredCache::connect(config, Arc::new(clock.clone()), &registry)
                    .await
                    .expect("layered cache");
                (Arc::new(cache), Some((conn, prefix)))
            }
        };
        Self {
            cache,
            clock,
            kind,
            registry,
            redis,
        }
    }

    /// The source a hit from this backend reports.
    fn hit_source(&self) -> CacheSource {
        match self.kind {
            Kind::Memory | Kind::Layered => CacheSource::L1,
            Kind::Redis => CacheSource::Redis,
        }
    }

    async fn cleanup(mut self) {
        if let Some((conn, prefix)) = self.redis.as_mut() {
            delete_prefix(conn, prefix).await;
            let left: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(conn)
                .await
                .expect("list test keys");
            assert!(left.is_empty(), "test keys left behind: {left:?}");
        }
    }
}

fn key(user: i64) -> MembershipKey {
    MembershipKey::new(ChannelId(-1_001_234_567_890), UserId(user))
}

/// A loader that counts its calls and answers `result`.
fn counting(
    calls: &Arc<AtomicUsize>,
    result: TelegramResult<ChatMemberStatus>,
) -> MembershipLoader<'static> {
    let calls = Arc::clone(calls);
    Box::pin(async move {
        calls.fetch_add(1, Ordering::SeqCst);
        result
    })
}

fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

// ---------------------------------------------------------------- contract cases

async fn hit_after_insert(kind: Kind) {
    let f = Fixture::new(kind, "hit_after_insert", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(1);
    assert_eq!(f.cache.get_local(k), None);
    f.cache.insert(k, ChatMemberStatus::Administrator).await;
    let got = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Left)))
        .await
        .expect("lookup");
    assert_eq!(got.status, ChatMemberStatus::Administrator);
    assert_eq!(got.source, f.hit_source());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a hit must not call the loader"
    );
    let local = f.cache.get_local(k);
    match kind {
        Kind::Redis => assert_eq!(local, None, "the Redis adapter has no in-process layer"),
        _ => assert_eq!(local, Some(ChatMemberStatus::Administrator)),
    }
    f.cleanup().await;
}

async fn miss_loads_once_then_hits(kind: Kind) {
    let f = Fixture::new(kind, "miss_loads", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(2);
    let status = ChatMemberStatus::Restricted { is_member: true };
    let first = f
        .cache
        .get_or_load(k, counting(&calls, Ok(status)))
        .await
        .expect("lookup");
    assert_eq!((first.status, first.source), (status, CacheSource::Loaded));
    let second = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Left)))
        .await
        .expect("lookup");
    assert_eq!((second.status, second.source), (status, f.hit_source()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Another user in the same channel is another key.
    let other = f
        .cache
        .get_or_load(key(3), counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (other.status, other.source),
        (ChatMemberStatus::Kicked, CacheSource::Loaded)
    );
    assert_eq!(
        metric(&f.registry, "gmbot_cache_loads_total", &[("result", "ok")]),
        2.0
    );
    f.cleanup().await;
}

/// Exact expiry instants, without jitter: 600 s for a member, 60 s for a non-member.
async fn ttls_follow_the_clock(kind: Kind) {
    let f = Fixture::new(kind, "ttls", TtlPolicy::default().without_jitter()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (member, left) = (key(10), key(11));
    f.cache.insert(member, ChatMemberStatus::Member).await;
    f.cache.insert(left, ChatMemberStatus::Left).await;
    let lookup = |k| {
        let cache = Arc::clone(&f.cache);
        let calls = Arc::clone(&calls);
        async move {
            cache
                .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
                .await
                .expect("lookup")
        }
    };

    f.clock.advance(Duration::from_millis(59_999));
    assert_eq!(lookup(left).await.status, ChatMemberStatus::Left);
    f.clock.advance(Duration::from_millis(1));
    let expired = lookup(left).await;
    assert_eq!(
        (expired.status, expired.source),
        (ChatMemberStatus::Kicked, CacheSource::Loaded)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    f.clock.advance(Duration::from_millis(599_999 - 60_000));
    assert_eq!(lookup(member).await.status, ChatMemberStatus::Member);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a member lives 600 s");
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(f.cache.get_local(member), None);
    let expired = lookup(member).await;
    assert_eq!(
        (expired.status, expired.source),
        (ChatMemberStatus::Kicked, CacheSource::Loaded)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    f.cleanup().await;
}

/// With the default ±15 % jitter: every entry outlives 85 % of its nominal
/// TTL, none outlives 115 %, and entries written together do not all expire together.
async fn jittered_ttls_spread_expiry(kind: Kind) {
    let f = Fixture::new(kind, "jitter", TtlPolicy::default()).await;
    const N: i64 = 200;
    for u in 1..=N {
        f.cache.insert(key(u), ChatMemberStatus::Member).await;
        f.cache
            .insert(key(10_000 + u), ChatMemberStatus::Left)
            .await;
    }
    let alive = |range: std::ops::RangeInclusive<i64>| {
        let f = &f;
        async move {
            let calls = Arc::new(AtomicUsize::new(0));
            let mut alive = 0;
            for u in range {
                // A loader answer that differs from the cached one tells the two apart.
                let got = f
                    .cache
                    .get_or_load(key(u), counting(&calls, Ok(ChatMemberStatus::Kicked)))
                    .await
                    .expect("lookup");
                if got.source.is_hit() {
                    alive += 1;
                }
                // Put the entry back as it was so later checkpoints see the original expiry.
                if !got.source.is_hit() {
                    f.cache.invalidate(key(u)).await;
                }
            }
            alive
        }
    };
    // Non-members: nominal 60 s, so alive until at least 51 s, dead after 69 s.
    f.clock.advance(Duration::from_secs(50));
    assert_eq!(
        alive(10_001..=10_000 + N).await,
        N,
        "no non-member dies before 0.85 × 60 s"
    );
    f.clock.advance(Duration::from_secs(10)); // 60 s: about half alive
    let half = alive(10_001..=10_000 + N).await;
    assert!(
        (N / 5..=N * 4 / 5).contains(&half),
        "at the nominal TTL about half the non-members should remain, got {half}/{N}"
    );
    f.clock.advance(Duration::from_secs(9)); // 69 s
    assert_eq!(
        alive(10_001..=10_000 + N).await,
        0,
        "no non-member outlives 1.15 × 60 s"
    );
    // Members: nominal 600 s.
    f.clock.advance(Duration::from_secs(440)); // 509 s
    assert_eq!(alive(1..=N).await, N, "no member dies before 0.85 × 600 s");
    f.clock.advance(Duration::from_secs(91)); // 600 s
    let half = alive(1..=N).await;
    assert!(
        (N / 5..=N * 4 / 5).contains(&half),
        "at the nominal TTL about half the members should remain, got {half}/{N}"
    );
    f.clock.advance(Duration::from_secs(90)); // 690 s
    assert_eq!(alive(1..=N).await, 0, "no member outlives 1.15 × 600 s");
    f.cleanup().await;
}

async fn invalidate_forgets(kind: Kind) {
    let f = Fixture::new(kind, "invalidate", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(20);
    f.cache.insert(k, ChatMemberStatus::Left).await;
    f.cache.invalidate(k).await;
    assert_eq!(f.cache.get_local(k), None);
    let got = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Member, CacheSource::Loaded)
    );
    // Invalidating a key nobody has is harmless.
    f.cache.invalidate(key(21)).await;
    assert_eq!(
        metric(
            &f.registry,
            "gmbot_cache_invalidations_total",
            &[("origin", "local")]
        ),
        2.0
    );
    f.cleanup().await;
}

async fn errors_are_not_cached(kind: Kind) {
    let f = Fixture::new(kind, "errors", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(30);
    let err = f
        .cache
        .get_or_load(
            k,
            counting(
                &calls,
                Err(TelegramError::Network("connection reset".into())),
            ),
        )
        .await
        .expect_err("the loader's error is returned");
    assert_eq!(err, TelegramError::Network("connection reset".into()));
    assert_eq!(f.cache.get_local(k), None);
    let got = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Member, CacheSource::Loaded)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the error was not cached");
    assert_eq!(
        metric(
            &f.registry,
            "gmbot_cache_loads_total",
            &[("result", "error")]
        ),
        1.0
    );
    f.cleanup().await;
}

/// 1,000 concurrent lookups of one missing key: one loader call, everyone gets its answer.
async fn single_flight(kind: Kind, result: TelegramResult<ChatMemberStatus>) {
    const CALLERS: usize = 1_000;
    let f = Fixture::new(kind, "single_flight", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let k = key(40);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let cache = Arc::clone(&f.cache);
        let calls = Arc::clone(&calls);
        let started = Arc::clone(&started);
        let result = result.clone();
        tasks.spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            let loader: MembershipLoader<'static> = Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // Hold the load until every caller has started its lookup, so
                // they all arrive while it is in flight.
                let deadline = Instant::now() + Duration::from_secs(10);
                while started.load(Ordering::SeqCst) < CALLERS && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                result
            });
            cache.get_or_load(k, loader).await
        });
    }
    let mut answers = Vec::with_capacity(CALLERS);
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.expect("lookup task"));
    }
    assert_eq!(answers.len(), CALLERS);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one loader call");
    for a in &answers {
        assert_eq!(a.clone().map(|l| l.status), result.clone());
    }
    let loaded = answers
        .iter()
        .filter(|a| matches!(a, Ok(l) if l.source == CacheSource::Loaded))
        .count();
    if result.is_ok() {
        assert_eq!(loaded, CALLERS, "every waiter sees the load's answer");
    }
    f.cleanup().await;
}

/// A loader held until released: `started` fires when Telegram is "asked".
struct Gate {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Gate {
    fn new() -> Self {
        Self {
            started: Arc::new(tokio::sync::Notify::new()),
            release: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn loader(
        &self,
        calls: &Arc<AtomicUsize>,
        answer: ChatMemberStatus,
    ) -> MembershipLoader<'static> {
        let (started, release, calls) = (
            Arc::clone(&self.started),
            Arc::clone(&self.release),
            Arc::clone(calls),
        );
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            started.notify_one();
            release.notified().await;
            Ok(answer)
        })
    }

    async fn wait_started(&self) {
        tokio::time::timeout(Duration::from_secs(5), self.started.notified())
            .await
            .expect("the load starts");
    }

    fn release(&self) {
        self.release.notify_one();
    }
}

/// A chat_member event seen while a lookup's load is in flight (the load
/// asked Telegram before the change): the event's status is kept, the older
/// answer goes only to its caller, and a lookup arriving meanwhile does not wait
/// for that older answer.
async fn insert_wins_over_a_load_in_flight(kind: Kind) {
    let f = Fixture::new(kind, "insert_wins", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(60);
    let gate = Gate::new();
    let cache = Arc::clone(&f.cache);
    let old = tokio::spawn({
        let loader = gate.loader(&calls, ChatMemberStatus::Member);
        async move { cache.get_or_load(k, loader).await }
    });
    gate.wait_started().await;
    f.cache.insert(k, ChatMemberStatus::Left).await;
    // A lookup now sees the event at once, while the old load is still held.
    let now = tokio::time::timeout(
        Duration::from_secs(2),
        f.cache
            .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked))),
    )
    .await
    .expect("does not wait for the superseded load")
    .expect("lookup");
    assert_eq!(
        (now.status, now.source),
        (ChatMemberStatus::Left, f.hit_source())
    );
    gate.release();
    let old = old.await.expect("task").expect("lookup");
    assert_eq!(
        (old.status, old.source),
        (ChatMemberStatus::Member, CacheSource::Loaded),
        "the caller of the old load gets its answer"
    );
    for _ in 0..3 {
        let got = f
            .cache
            .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
            .await
            .expect("lookup");
        assert_eq!(
            (got.status, got.source),
            (ChatMemberStatus::Left, f.hit_source()),
            "the older load did not overwrite the event"
        );
    }
    if kind != Kind::Redis {
        assert_eq!(f.cache.get_local(k), Some(ChatMemberStatus::Left));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        metric(&f.registry, "gmbot_cache_loads_superseded_total", &[]),
        1.0
    );
    f.cleanup().await;
}

/// An invalidation while a load is in flight: the load's answer is not cached.
async fn invalidation_during_a_load_keeps_its_answer_out(kind: Kind) {
    let f = Fixture::new(kind, "invalidate_in_flight", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(61);
    let gate = Gate::new();
    let cache = Arc::clone(&f.cache);
    let old = tokio::spawn({
        let loader = gate.loader(&calls, ChatMemberStatus::Left);
        async move { cache.get_or_load(k, loader).await }
    });
    gate.wait_started().await;
    f.cache.invalidate(k).await;
    gate.release();
    assert_eq!(
        old.await.expect("task").expect("lookup").status,
        ChatMemberStatus::Left
    );
    assert_eq!(f.cache.get_local(k), None);
    let got = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Member, CacheSource::Loaded),
        "the next lookup asks again"
    );
    f.cleanup().await;
}

/// `refresh` asks afresh (no cache read, no joining an older load), caches
/// its answer over that older load's, and yields to an event that arrives
/// while it runs.
async fn refresh_is_fresh_and_yields_to_events(kind: Kind) {
    let f = Fixture::new(kind, "refresh", TtlPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(62);
    f.cache.insert(k, ChatMemberStatus::Left).await;
    let got = f
        .cache
        .refresh(k, counting(&calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("refresh");
    assert_eq!(got, ChatMemberStatus::Member);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a refresh never reads the cache"
    );
    let hit = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (hit.status, hit.source),
        (ChatMemberStatus::Member, f.hit_source())
    );

    // An older load in flight (it asked before the member left), then a refresh
    // that answers first: the refresh's answer stands.
    let k = key(63);
    let gate = Gate::new();
    let cache = Arc::clone(&f.cache);
    let old = tokio::spawn({
        let loader = gate.loader(&calls, ChatMemberStatus::Member);
        async move { cache.get_or_load(k, loader).await }
    });
    gate.wait_started().await;
    let fresh = tokio::time::timeout(
        Duration::from_secs(2),
        f.cache
            .refresh(k, counting(&calls, Ok(ChatMemberStatus::Left))),
    )
    .await
    .expect("a refresh does not join the older load")
    .expect("refresh");
    assert_eq!(fresh, ChatMemberStatus::Left);
    gate.release();
    assert_eq!(
        old.await.expect("task").expect("lookup").status,
        ChatMemberStatus::Member
    );
    let got = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Left, f.hit_source()),
        "the older load did not overwrite the refresh"
    );

    // A refresh in flight, then an event: the event stands.
    let k = key(64);
    let gate = Gate::new();
    let cache = Arc::clone(&f.cache);
    let refreshing = tokio::spawn({
        let loader = gate.loader(&calls, ChatMemberStatus::Member);
        async move { cache.refresh(k, loader).await }
    });
    gate.wait_started().await;
    f.cache.insert(k, ChatMemberStatus::Kicked).await;
    gate.release();
    assert_eq!(
        refreshing.await.expect("task").expect("refresh"),
        ChatMemberStatus::Member
    );
    let got = f
        .cache
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Left)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Kicked, f.hit_source())
    );
    f.cleanup().await;
}

/// Events mode: a member lives for hours (with jitter), a leave replaces it at
/// once, a join replaces a non-member, and the TTL still ends an entry whose
/// event was missed.
async fn events_mode_lifetimes_and_replacements(kind: Kind) {
    let policy = CacheMode::Events.default_ttl();
    let f = Fixture::new(kind, "events_mode", policy).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (stays, leaves, joins) = (key(70), key(71), key(72));
    for k in [stays, leaves] {
        let got = f
            .cache
            .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Member)))
            .await
            .expect("lookup");
        assert_eq!(got.source, CacheSource::Loaded);
    }
    let got = f
        .cache
        .get_or_load(joins, counting(&calls, Ok(ChatMemberStatus::Left)))
        .await
        .expect("lookup");
    assert_eq!(got.status, ChatMemberStatus::Left);
    let lookup = |k| {
        let cache = Arc::clone(&f.cache);
        let calls = Arc::clone(&calls);
        async move {
            cache
                .get_or_load(
                    k,
                    counting(
                        &calls,
                        Ok(ChatMemberStatus::Restricted { is_member: false }),
                    ),
                )
                .await
                .expect("lookup")
        }
    };
    // Three hours later (half the nominal 6 h, below the 85 % floor): still a hit.
    f.clock.advance(Duration::from_secs(3 * 3600));
    f.cache.insert(leaves, ChatMemberStatus::Left).await;
    f.cache.insert(joins, ChatMemberStatus::Member).await;
    assert_eq!(lookup(stays).await.status, ChatMemberStatus::Member);
    assert_eq!(lookup(leaves).await.status, ChatMemberStatus::Left);
    assert_eq!(lookup(joins).await.status, ChatMemberStatus::Member);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "all hits");
    // Past 6 h × 1.15 from the first load: the safety net ends the entry whose leave was missed.
    f.clock.advance(Duration::from_secs(4 * 3600 + 1_000));
    let expired = lookup(stays).await;
    assert_eq!(
        (expired.status, expired.source),
        (
            ChatMemberStatus::Restricted { is_member: false },
            CacheSource::Loaded
        )
    );
    f.cleanup().await;
}

macro_rules! contract {
    ($($case:ident $(, $arg:expr)?);* $(;)?) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(Kind::Memory $(, $arg)?).await }
            )*
        }
        mod redis_backend {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(Kind::Redis $(, $arg)?).await }
            )*
        }
        mod layered {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(Kind::Layered $(, $arg)?).await }
            )*
        }
    };
}

async fn single_flight_ok(kind: Kind) {
    single_flight(kind, Ok(ChatMemberStatus::Member)).await;
}

async fn single_flight_error(kind: Kind) {
    single_flight(
        kind,
        Err(TelegramError::RetryAfter {
            retry_after: Duration::from_secs(3),
        }),
    )
    .await;
}

contract! {
    hit_after_insert;
    miss_loads_once_then_hits;
    ttls_follow_the_clock;
    jittered_ttls_spread_expiry;
    invalidate_forgets;
    errors_are_not_cached;
    single_flight_ok;
    single_flight_error;
    insert_wins_over_a_load_in_flight;
    invalidation_during_a_load_keeps_its_answer_out;
    refresh_is_fresh_and_yields_to_events;
    events_mode_lifetimes_and_replacements;
}

// ---------------------------------------------------------------- jitter statistics

fn check_jitter_distribution(status: ChatMemberStatus, nominal: f64) {
    const DRAWS: usize = 10_000;
    let policy = TtlPolicy::default();
    let draws: Vec<f64> = (0..DRAWS)
        .map(|_| policy.ttl(status).as_secs_f64())
        .collect();
    let (lo, hi) = (nominal * 0.85, nominal * 1.15);
    for d in &draws {
        assert!(
            (lo - 1e-6..=hi + 1e-6).contains(d),
            "{d} s outside [{lo}, {hi}]"
        );
    }
    let min = draws.iter().copied().fold(f64::INFINITY, f64::min);
    let max = draws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        min < nominal * 0.86 && max > nominal * 1.14,
        "spread [{min}, {max}] does not cover the range"
    );
    let mean = draws.iter().sum::<f64>() / DRAWS as f64;
    assert!(
        (mean / nominal - 1.0).abs() < 0.005,
        "mean {mean} is not ≈ {nominal}"
    );
    // Uniform: the standard deviation of U[-15 %, +15 %] is 15 % / √3 ≈ 8.66 %.
    let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / DRAWS as f64;
    let rel_sd = var.sqrt() / nominal;
    assert!(
        (0.080..0.093).contains(&rel_sd),
        "relative sd {rel_sd} is not that of a uniform ±15 %"
    );
    // Ten equal bins each get about a tenth (1,000 ± ~30).
    let mut bins = [0usize; 10];
    for d in &draws {
        let i = (((d - lo) / (hi - lo)) * 10.0).floor().clamp(0.0, 9.0) as usize;
        bins[i] += 1;
    }
    for (i, n) in bins.iter().enumerate() {
        assert!(
            (850..=1_150).contains(n),
            "bin {i} has {n} of {DRAWS}: {bins:?}"
        );
    }
    let distinct: HashSet<u64> = draws.iter().map(|d| d.to_bits()).collect();
    assert!(
        distinct.len() > DRAWS * 9 / 10,
        "jitter is (nearly) constant"
    );
}

#[test]
fn jitter_is_uniform_within_15_percent() {
    check_jitter_distribution(ChatMemberStatus::Member, 600.0);
    check_jitter_distribution(ChatMemberStatus::Left, 60.0);
}

// ---------------------------------------------------------------- Redis across instances

async fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn layered_pair(
    url: &str,
    prefix: &str,
    clock: &ManualClock,
) -> (LayeredCache, LayeredCache) {
    let mut caches = Vec::new();
    for _ in 0..2 {
        let config = LayeredCacheConfig {
            redis: redis_config(url, prefix, TtlPolicy::default()),
            l1_capacity: 1_000,
        };
        let cache = LayeredCache::connect(config, Arc::new(clock.clone()), &Registry::new())
            .await
            .expect("layered cache");
        assert!(
            cache.wait_subscribed(Duration::from_secs(5)).await,
            "listener subscribes"
        );
        caches.push(cache);
    }
    let b = caches.pop().expect("two caches");
    let a = caches.pop().expect("two caches");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_reaches_every_instance() {
    let mut conn = require_redis(REDIS_URL).await;
    let prefix = unique_prefix("cross_instance");
    let clock = ManualClock::new(UnixTime(1_700_000_000));
    let (a, b) = layered_pair(REDIS_URL, &prefix, &clock).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(50);

    // A loads; B finds it in Redis and copies it into its L1.
    let got = a
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Left)))
        .await
        .expect("lookup");
    assert_eq!(got.source, CacheSource::Loaded);
    let got = b
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Left, CacheSource::Redis)
    );
    assert_eq!(b.get_local(k), Some(ChatMemberStatus::Left));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The user joins; A sees it and invalidates: B's L1 forgets within a bounded wait.
    a.invalidate(k).await;
    wait_until("B's L1 to drop the key", Duration::from_secs(2), || {
        b.get_local(k).is_none()
    })
    .await;
    let got = b
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Member, CacheSource::Loaded)
    );
    let got = a
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Member, CacheSource::Redis)
    );

    // Pure Redis caches on the same keys see the same invalidations.
    let r = RedisCache::connect(
        redis_config(REDIS_URL, &prefix, TtlPolicy::default()),
        Arc::new(clock.clone()),
        &Registry::new(),
    )
    .await
    .expect("redis cache");
    let got = r
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Member, CacheSource::Redis)
    );
    r.invalidate(k).await;
    wait_until("A's L1 to drop the key", Duration::from_secs(2), || {
        a.get_local(k).is_none()
    })
    .await;
    wait_until("B's L1 to drop the key", Duration::from_secs(2), || {
        b.get_local(k).is_none()
    })
    .await;

    drop((a, b, r));
    delete_prefix(&mut conn, &prefix).await;
}

/// Events and refreshes reach every instance: an instance whose L1 holds the
/// old status forgets it within a bounded wait and reads the new one from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_refreshes_are_published_to_every_instance() {
    let mut conn = require_redis(REDIS_URL).await;
    let prefix = unique_prefix("event_publish");
    let clock = ManualClock::new(UnixTime(1_700_000_000));
    let (a, b) = layered_pair(REDIS_URL, &prefix, &clock).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(80);
    let got = b
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("lookup");
    assert_eq!(got.source, CacheSource::Loaded);
    assert_eq!(b.get_local(k), Some(ChatMemberStatus::Member));

    // The member leaves; A sees the event.
    a.insert(k, ChatMemberStatus::Left).await;
    assert_eq!(
        a.get_local(k),
        Some(ChatMemberStatus::Left),
        "A applies its own event at once"
    );
    wait_until(
        "B's L1 to drop the old member",
        Duration::from_secs(2),
        || b.get_local(k).is_none(),
    )
    .await;
    let got = b
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Left, CacheSource::Redis)
    );
    assert_eq!(
        a.get_local(k),
        Some(ChatMemberStatus::Left),
        "A skipped the echo of its own event"
    );

    // They press "I've joined" on A: the refresh reaches B too.
    let fresh = a
        .refresh(k, counting(&calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("refresh");
    assert_eq!(fresh, ChatMemberStatus::Member);
    wait_until(
        "B's L1 to drop the non-member",
        Duration::from_secs(2),
        || b.get_local(k).is_none(),
    )
    .await;
    let got = b
        .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
        .await
        .expect("lookup");
    assert_eq!(
        (got.status, got.source),
        (ChatMemberStatus::Member, CacheSource::Redis)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    drop((a, b));
    delete_prefix(&mut conn, &prefix).await;
}

/// An event seen on one instance (a join, or the "I've joined" re-check's answer) while
/// another instance's load of the same key is in flight: the other instance's load is
/// superseded by the published event — its older answer reaches only its caller, never that
/// instance's L1 or Redis — and lookups there see the event without waiting for the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_one_instance_supersedes_a_load_in_flight_on_another() {
    let mut conn = require_redis(REDIS_URL).await;
    let prefix = unique_prefix("insert_supersedes_remote");
    let clock = ManualClock::new(UnixTime(1_700_000_000));
    let (a, b) = layered_pair(REDIS_URL, &prefix, &clock).await;
    let b = Arc::new(b);
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(95);
    let gate = Gate::new();
    let old = tokio::spawn({
        let (b, loader) = (Arc::clone(&b), gate.loader(&calls, ChatMemberStatus::Left));
        async move { b.get_or_load(k, loader).await }
    });
    gate.wait_started().await;
    a.insert(k, ChatMemberStatus::Member).await;
    // Once B hears it, a lookup there no longer joins the old load.
    let deadline = Instant::now() + Duration::from_secs(2);
    let now = loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(50),
            b.get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked))),
        )
        .await;
        if let Ok(got) = attempt {
            break got.expect("lookup");
        }
        assert!(
            Instant::now() < deadline,
            "B kept waiting for the superseded load"
        );
    };
    assert_eq!(
        (now.status, now.source),
        (ChatMemberStatus::Member, CacheSource::Redis)
    );
    gate.release();
    let old = old.await.expect("task").expect("lookup");
    assert_eq!(
        (old.status, old.source),
        (ChatMemberStatus::Left, CacheSource::Loaded),
        "the old load's caller gets its own answer"
    );
    assert_ne!(
        b.get_local(k),
        Some(ChatMemberStatus::Left),
        "the superseded answer is not in B's L1"
    );
    for cache in [&a, &*b] {
        let got = cache
            .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
            .await
            .expect("lookup");
        assert_eq!(got.status, ChatMemberStatus::Member, "the event stands");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the old load asked Telegram"
    );
    drop((a, b));
    delete_prefix(&mut conn, &prefix).await;
}

/// Even when an instance does not hear the event in time (here: it listens on
/// another channel, so it never does), its older load cannot overwrite the
/// event in Redis: the write is a compare-and-set on what the load saw. The
/// same holds for an invalidation (its tombstone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_load_never_overwrites_an_event_in_redis() {
    let mut conn = require_redis(REDIS_URL).await;
    let prefix = unique_prefix("cas");
    let clock = ManualClock::new(UnixTime(1_700_000_000));
    let connect = |channel: &str| {
        let config = RedisCacheConfig {
            invalidation_channel: format!("{prefix}{channel}"),
            ..redis_config(REDIS_URL, &prefix, TtlPolicy::default())
        };
        let clock = clock.clone();
        async move { RedisCache::connect(config, Arc::new(clock), &Registry::new()).await }
    };
    let deaf = connect("elsewhere").await.expect("cache");
    let events = connect("invalidate").await.expect("cache");
    let reader = connect("invalidate").await.expect("cache");
    let calls = Arc::new(AtomicUsize::new(0));

    for (k, event) in [(key(90), true), (key(91), false)] {
        let gate = Gate::new();
        let loading = {
            let loader = gate.loader(&calls, ChatMemberStatus::Member);
            deaf.get_or_load(k, loader)
        };
        let change = async {
            gate.wait_started().await;
            if event {
                events.insert(k, ChatMemberStatus::Left).await;
            } else {
                events.invalidate(k).await;
            }
            gate.release();
        };
        let (old, ()) = tokio::join!(loading, change);
        assert_eq!(old.expect("lookup").status, ChatMemberStatus::Member);
        let got = reader
            .get_or_load(k, counting(&calls, Ok(ChatMemberStatus::Kicked)))
            .await
            .expect("lookup");
        if event {
            assert_eq!(
                (got.status, got.source),
                (ChatMemberStatus::Left, CacheSource::Redis),
                "the event stands in Redis"
            );
        } else {
            assert_eq!(
                (got.status, got.source),
                (ChatMemberStatus::Kicked, CacheSource::Loaded),
                "the invalidation stands: the older answer was not written"
            );
        }
    }
    drop((deaf, events, reader));
    delete_prefix(&mut conn, &prefix).await;
}

// ---------------------------------------------------------------- Redis outages

/// A lookup's answer and how long it took.
async fn timed_lookup(
    cache: &dyn MembershipCache,
    k: MembershipKey,
    calls: &Arc<AtomicUsize>,
) -> (CacheSource, Duration) {
    let t = Instant::now();
    let got = cache
        .get_or_load(k, counting(calls, Ok(ChatMemberStatus::Member)))
        .await
        .expect("a lookup answers through the loader");
    assert_eq!(got.status, ChatMemberStatus::Member);
    (got.source, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_falls_back_to_the_loader() {
    install_logger();
    let url = "redis://127.0.0.1:1";
    let clock = ManualClock::new(UnixTime(1_700_000_000));
    let prefix = unique_prefix("unreachable");
    let registry = Registry::new();
    let layered = LayeredCache::connect(
        LayeredCacheConfig {
            redis: redis_config(url, &prefix, TtlPolicy::default()),
            l1_capacity: 1_000,
        },
        Arc::new(clock.clone()),
        &registry,
    )
    .await
    .expect("building a cache never needs Redis up");
    assert!(!layered.is_redis_up());
    assert!(layered.ping().await.is_err());
    let plain = RedisCache::connect(
        redis_config(url, &prefix, TtlPolicy::default()),
        Arc::new(clock.clone()),
        &Registry::new(),
    )
    .await
    .expect("building a cache never needs Redis up");

    let calls = Arc::new(AtomicUsize::new(0));
    // Lookups over more than two probe intervals, so Redis is retried and fails again.
    let end = Instant::now() + Duration::from_millis(1_300);
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        let (source, took) = timed_lookup(&layered, key(n), &calls).await;
        assert_eq!(source, CacheSource::Loaded);
        assert!(took < Duration::from_millis(600), "a lookup took {took:?}");
        let (source, _) = timed_lookup(&layered, key(n), &calls).await;
        assert_eq!(source, CacheSource::L1, "the L1 still serves");
        let (source, took) = timed_lookup(&plain, key(n), &calls).await;
        assert_eq!(source, CacheSource::Loaded);
        assert!(took < Duration::from_millis(600), "a lookup took {took:?}");
        plain.insert(key(n), ChatMemberStatus::Left).await;
        layered.invalidate(key(n + 1_000)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(n > 10);
    assert_eq!(calls.load(Ordering::SeqCst), 2 * n as usize);
    // One warning per cache for the whole outage, not one per call.
    assert_eq!(
        count_logs(log::Level::Warn, &[&outage_warning(url)]),
        2,
        "{:?}",
        captured()
    );
    assert_eq!(
        metric(&registry, "gmbot_cache_redis_outages_total", &[]),
        1.0
    );
    assert_eq!(metric(&registry, "gmbot_cache_redis_up", &[]), 0.0);
    assert!(
        metric(
            &registry,
            "gmbot_cache_requests_total",
            &[("layer", "redis"), ("result", "error")]
        ) >= 1.0
    );
    assert!(!layered.is_subscribed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_run_degrades_and_recovers() {
    install_logger();
    let server = PrivateRedis::start().await;
    let url = server.url();
    let prefix = unique_prefix("outage");
    let clock = ManualClock::new(UnixTime(1_700_000_000));
    let (a, b) = layered_pair(&url, &prefix, &clock).await;
    let calls = Arc::new(AtomicUsize::new(0));

    let (source, _) = timed_lookup(&a, key(1), &calls).await;
    assert_eq!(source, CacheSource::Loaded);
    let (source, _) = timed_lookup(&b, key(1), &calls).await;
    assert_eq!(
        source,
        CacheSource::Redis,
        "Redis is shared before the outage"
    );

    // Redis dies.
    let mut server = server;
    server.kill();
    let mut n = 100;
    let end = Instant::now() + Duration::from_millis(1_200);
    while Instant::now() < end {
        n += 1;
        let (source, took) = timed_lookup(&b, key(n), &calls).await;
        assert_eq!(source, CacheSource::Loaded);
        assert!(
            took < Duration::from_millis(600),
            "a lookup took {took:?} during the outage"
        );
        let (source, _) = timed_lookup(&b, key(1), &calls).await;
        assert_eq!(
            source,
            CacheSource::L1,
            "the L1 keeps serving during the outage"
        );
        let (source, _) = timed_lookup(&a, key(n), &calls).await;
        assert_eq!(source, CacheSource::Loaded);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!a.is_redis_up() && !b.is_redis_up());
    // One warning per cache instance for the whole outage, not one per call.
    assert_eq!(
        count_logs(log::Level::Warn, &[&outage_warning(&url)]),
        2,
        "one warning per instance"
    );
    wait_until("the listener to notice", Duration::from_secs(5), || {
        !b.is_subscribed()
    })
    .await;

    // Redis comes back (empty): lookups alone bring the caches back onto it.
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.is_redis_up() && b.is_redis_up()) {
        assert!(
            Instant::now() < deadline,
            "the caches did not reconnect by themselves"
        );
        n += 1;
        let _ = timed_lookup(&a, key(n), &calls).await;
        let _ = timed_lookup(&b, key(n), &calls).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        count_logs(log::Level::Info, &[&recovery_info(&url)]),
        2,
        "each recovery is logged"
    );
    assert!(
        b.wait_subscribed(Duration::from_secs(10)).await,
        "the listener resubscribes"
    );
    assert!(
        a.wait_subscribed(Duration::from_secs(10)).await,
        "the listener resubscribes"
    );
    // Resubscribing cleared the L1s: invalidations published during the outage were lost.
    assert_eq!(b.get_local(key(1)), None);

    // Shared again: B loads and writes Redis, A reads it; invalidation travels again.
    let k = key(5_000);
    let (source, _) = timed_lookup(&b, k, &calls).await;
    assert_eq!(source, CacheSource::Loaded);
    let (source, _) = timed_lookup(&a, k, &calls).await;
    assert_eq!(source, CacheSource::Redis);
    b.invalidate(k).await;
    wait_until("A's L1 to drop the key", Duration::from_secs(2), || {
        a.get_local(k).is_none()
    })
    .await;
    assert_eq!(
        count_logs(log::Level::Warn, &[&outage_warning(&url)]),
        2,
        "no new warning"
    );
    drop((a, b));
    drop(server);
}
