//! Membership cache hit rate on a simulated steady-state workload, against the optimum the TTLs
//! allow; Telegram calls per 1,000 verifications; layered vs memory lookup throughput.
//!
//! Run: `cargo bench -p gmbot-core --bench cache_hit_rate` (needs Redis at
//! 127.0.0.1:6379 for the Redis and layered rows; each cache gets its own key
//! prefix, deleted at the end). Deterministic trace (seeded RNG); about 90 s
//! on two cores, after the build.
//!
//! # Reference workload (also written down in docs/BENCHMARKS.md)
//!
//! A bot that has been running, not one that just started:
//! - **Groups and channels**: 100 protected groups, each with its own linked
//!   channel; 5 of them (every 20th) have a second linked channel. A message
//!   in a group is verified against every channel of that group, so it costs
//!   one cache lookup per channel: the keys are (channel, user).
//! - **Users**: 200,000; 70 % belong to one group, 30 % to two (groups drawn
//!   uniformly from a hash of the user id).
//! - **Activity**: the writer of each message is drawn by activity rank from a
//!   Zipf distribution with exponent 1.1 (ranks mapped to users through a
//!   seeded permutation); a writer in two groups writes in either with equal
//!   probability. Sensitivity rows use 0.9 and 1.3.
//! - **Rate**: 1,000 verified messages/s (10 per group per second on average:
//!   a busy deployment), evenly spaced. Sensitivity rows use 250 and 3,000.
//! - **Duration**: 20 simulated minutes of warm-up (replayed through the
//!   cache but not counted), then 10 measured minutes. The warm-up is longer
//!   than the longest member TTL (690 s with jitter), so every entry alive in
//!   the measured window was written by the same process: steady state.
//! - **Subscriptions**: each (channel, user) pair is subscribed with
//!   probability 80 % (a hash of the pair), so about 80 % of writers are.
//! - **What the bot does to a non-subscriber**: the message that fails the
//!   check is deleted and the writer is muted in that group until they join
//!   (the default `mute_seconds = 0`); a muted user cannot write there, so the
//!   trace never has them posting (their draw is replaced by another writer,
//!   which keeps the rate at 1,000/s). Half of them join every missing channel
//!   10 s – 5 min later (uniform) and press "I've joined": the bot's
//!   `recheck` asks Telegram directly for each channel of the group (one call
//!   per channel, no cache read) and writes the answers into the cache, then
//!   unmutes them and they write again as before. The other half never come
//!   back.
//! - **Time** is a `ManualClock` advanced in 50 ms ticks; the messages of a
//!   tick share its instant. TTLs are ≥ 51 s, so the tick is invisible in the
//!   hit rate; it lets the Redis replay send a tick's lookups of distinct
//!   keys concurrently (a key's second lookup in a tick waits for its first),
//!   which gives the same answers as one at a time, faster.
//!
//! # What is measured
//!
//! - **Optimum**: the same trace through an idealized cache of unbounded size
//!   with the same TTL policy (600 s member / 60 s non-member, ±15 % jitter)
//!   and the same recheck writes: a miss only on first sight or after expiry.
//!   No cache with these TTLs does better on this trace.
//! - `MemoryCache` (default 500k entries), `RedisCache` and `LayeredCache`
//!   (100k-entry L1 + Redis), each on its own `ManualClock`: hit rate over the
//!   message lookups (`get_local`, then `get_or_load` on a miss; the loader
//!   answers the trace's truth and its answer is checked), gap to the
//!   optimum, and Telegram calls per 1,000 verifications (loader calls plus
//!   recheck calls; a verification is a message or an "I've joined" press).
//! - **Throughput**: 1,000,000 lookups by 2 tokio tasks on 2 worker threads
//!   (`get_local`, then `get_or_load` on a miss), clock frozen; the keys are
//!   the measured window's lookups in trace order, cycled (so the live set is
//!   the steady state's, which the layered cache's 100k L1 holds). A cold pass
//!   on fresh caches (each distinct key misses once: Telegram, plus a Redis
//!   GET and SET for the layered cache), then warm passes alternating the two
//!   caches; `LayeredCache` / `MemoryCache` lookups per second is reported as
//!   a ratio (warm: best of 5 and medians, as the machine may be shared; and
//!   cold). A memory cache of the L1's size (100k) runs alongside, to tell the
//!   layered cache's own cost from that of a smaller in-process map.
//! - **Sensitivity** (memory cache and optimum): Zipf 0.9 / 1.3, 250 and
//!   3,000 messages/s, and a cold start (no warm-up).
//! - **Member TTL lever** (optimum only): the reference workload's optimum
//!   with a 10, 20 or 30 min member TTL, after an 80 min warm-up.
//!
//! - **Restart** (`cache_hit_rate/restart.rs`): the first 10 minutes after a
//!   restart, cold and after `gmbot cache warm` / the warm-up at bot start.
//! - **Events** (`cache_hit_rate/events.rs`): the event-kept cache mode on the
//!   reference workload plus leaves, against the exact first-sight bound, and
//!   with 1 % of the leave events dropped.
//!
//! Sections run by name (`-- restart events`; all without names). Every
//! answer a cache serves is checked against the trace's truth.
//!
//! Targets (the project's performance issue): hit rate ≥ 95 % with the memory
//! cache and with Redis, within 1 percentage point of the optimum; after a
//! warm-up ≥ 90 % from the first minute after a restart; events mode within
//! 0.5 pp of the first-sight bound, ≤ 45 calls per 1,000 verifications, no
//! stale answer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::ready;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use gmbot_core::cache::{
    CacheSource, LayeredCache, LayeredCacheConfig, MembershipCache, MembershipKey, MemoryCache,
    MemoryCacheConfig, RedisCache, RedisCacheConfig, TtlPolicy,
};
use gmbot_core::clock::ManualClock;
use gmbot_core::domain::{ChannelId, ChatMemberStatus, UnixTime, UserId};
use prometheus::Registry;
use rand::rngs::StdRng;

#[path = "cache_hit_rate/events.rs"]
mod events;
#[path = "cache_hit_rate/restart.rs"]
mod restart;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const GROUPS: u64 = 100;
/// Every `TWO_CHANNEL_EVERY`-th group has a second linked channel.
const TWO_CHANNEL_EVERY: u64 = 20;
const USERS: u64 = 200_000;
const TWO_GROUP_PERCENT: u64 = 30;
const SUBSCRIBED_PERCENT: u64 = 80;
/// Share of denied (muted) writers who later join and press "I've joined".
const JOIN_PROBABILITY: f64 = 0.5;
/// When they do: uniformly this long after being muted (ms).
const JOIN_DELAY_MS: std::ops::RangeInclusive<u64> = 10_000..=300_000;
/// Simulated time advances in ticks of this many ms.
const TICK_MS: u64 = 50;
const SEED: u64 = 0x6d62_6f74;
const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Lookups in the throughput loop, and the tasks sharing them.
const LOOP_LOOKUPS: usize = 1_000_000;
const LOOP_TASKS: usize = 2;
/// Warm passes per cache (the machine may be shared: best and median are reported).
const WARM_PASSES: usize = 5;

/// The reference scenario.
const REFERENCE: Scenario = Scenario {
    zipf: 1.1,
    rate: 1_000,
    warm_up: Duration::from_secs(20 * 60),
    measured: Duration::from_secs(10 * 60),
    leaves_per_second: 0,
    drop_leaves_per_mille: 0,
};

/// A workload variant: Zipf exponent, verified messages per second, and a
/// warm-up replayed but not measured (zero = a cold cache). The event-kept
/// rows add channel leaves (`leaves_per_second`, any user alike; none in
/// the reference workload, whose trace stays exactly as it was) of which
/// `drop_leaves_per_mille` ‰ never reach the bot.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    zipf: f64,
    rate: u64,
    warm_up: Duration,
    measured: Duration,
    leaves_per_second: u64,
    drop_leaves_per_mille: u32,
}

impl Scenario {
    fn measure_from_ms(&self) -> u64 {
        self.warm_up.as_millis() as u64
    }
}

/// A mixing hash (splitmix64): reproducible group assignment and subscriptions.
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
    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }

    /// The share of all activity by the `top` most active ranks.
    fn head_share(&self, top: usize) -> f64 {
        self.cdf[top.clamp(1, self.cdf.len()) - 1]
    }
}

/// Who writes: the Zipf ranks and the users behind them.
struct Population {
    zipf: Zipf,
    by_rank: Vec<u64>,
}

impl Population {
    fn new(s: f64) -> Self {
        let mut by_rank: Vec<u64> = (1..=USERS).collect();
        by_rank.shuffle(&mut StdRng::seed_from_u64(SEED ^ 0x5eed));
        Self {
            zipf: Zipf::new(USERS, s),
            by_rank,
        }
    }

    /// A (group, user) for the next message.
    fn draw(&self, rng: &mut impl Rng) -> (u64, u64) {
        let user = self.by_rank[self.zipf.sample(rng)];
        let (groups, count) = groups_of(user);
        (groups[rng.random_range(0..count)], user)
    }
}

fn groups_of(user: u64) -> ([u64; 2], usize) {
    let h = mix(user);
    let first = mix(h ^ 1) % GROUPS;
    let mut second = mix(h ^ 2) % GROUPS;
    if second == first {
        second = (first + 1) % GROUPS;
    }
    let count = if h % 100 < TWO_GROUP_PERCENT { 2 } else { 1 };
    ([first, second], count)
}

fn channels_of(group: u64) -> impl Iterator<Item = ChannelId> {
    let count = if group % TWO_CHANNEL_EVERY == TWO_CHANNEL_EVERY - 1 {
        2
    } else {
        1
    };
    (0..count).map(move |i| ChannelId(-1_000_000_000_000 - (group * 2 + i) as i64))
}

fn initially_subscribed(key: MembershipKey) -> bool {
    mix((key.channel.0 as u64) ^ mix(key.user.0 as u64)) % 100 < SUBSCRIBED_PERCENT
}

fn status(subscribed: bool) -> ChatMemberStatus {
    if subscribed {
        ChatMemberStatus::Member
    } else {
        ChatMemberStatus::Left
    }
}

/// What one trace step does to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A message's check of one channel: a cache lookup. `first` marks the
    /// message's first channel (one verification per message).
    Lookup { first: bool },
    /// An "I've joined" recheck of one channel: a Telegram call, then a cache write.
    Recheck { first: bool },
    /// A `chat_member` join or leave of the channel (the op's `subscribed` is
    /// the new status). `dropped`: the update never reached the bot.
    Event { dropped: bool },
}

/// One step of the trace.
#[derive(Debug, Clone, Copy)]
struct Op {
    /// Simulated instant (ms, a multiple of `TICK_MS`).
    at: u64,
    key: MembershipKey,
    /// The truth at that instant (what Telegram answers).
    subscribed: bool,
    kind: Kind,
    /// How many earlier ops of the same tick touch the same key: ops of one
    /// wave have distinct keys and may run concurrently.
    wave: u16,
}

/// Channel `channel`'s group (inverse of [`channels_of`]).
fn group_of_channel(channel: ChannelId) -> u64 {
    ((-1_000_000_000_000 - channel.0) / 2) as u64
}

/// The trace: ops in time order.
fn build_trace(sc: Scenario, population: &Population) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(SEED);
    // Leaves draw from their own generator, so that without leaves the
    // trace is exactly the reference one.
    let mut leave_rng = StdRng::seed_from_u64(SEED ^ 0x1ea7e);
    let total = (sc.warm_up + sc.measured).as_secs() * sc.rate;
    let tick = |ms: u64| ms / TICK_MS * TICK_MS;
    // Keys whose subscription differs from `initially_subscribed` now.
    let mut changed: HashMap<MembershipKey, bool> = HashMap::new();
    let mut muted: HashSet<(u64, u64)> = HashSet::new();
    // (group, user) pairs the bot saw writing (strict leave checks only those).
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    // Pairs whose leave the bot missed: it does not know they are no longer
    // subscribed, and (upper bound of their exposure) never mutes them.
    let mut unaware: HashSet<(u64, u64)> = HashSet::new();
    let mut joins: BinaryHeap<Reverse<(u64, u64, u64)>> = BinaryHeap::new();
    let mut ops = Vec::with_capacity(total as usize * 21 / 20 + 1_000);
    let truth = |changed: &HashMap<MembershipKey, bool>, key| {
        changed
            .get(&key)
            .copied()
            .unwrap_or_else(|| initially_subscribed(key))
    };
    let mut next_leave_ms = leave_gap(sc, &mut leave_rng);
    for i in 0..total {
        let now = i * 1_000 / sc.rate;
        while let Some(&Reverse((at, group, user))) = joins.peek() {
            if at > now {
                break;
            }
            joins.pop();
            muted.remove(&(group, user));
            for (j, channel) in channels_of(group).enumerate() {
                let key = MembershipKey::new(channel, UserId(user as i64));
                if !truth(&changed, key) {
                    changed.insert(key, true);
                    if sc.leaves_per_second > 0 {
                        // The join is a chat_member update before the recheck it triggers.
                        ops.push(Op {
                            at: tick(at),
                            key,
                            subscribed: true,
                            kind: Kind::Event { dropped: false },
                            wave: 0,
                        });
                    }
                }
                ops.push(Op {
                    at: tick(at),
                    key,
                    subscribed: true,
                    kind: Kind::Recheck { first: j == 0 },
                    wave: 0,
                });
            }
        }
        while sc.leaves_per_second > 0 && next_leave_ms <= now {
            let at = next_leave_ms;
            next_leave_ms += leave_gap(sc, &mut leave_rng);
            // Any subscriber may leave, whatever their activity (drawing leavers by
            // activity would have the busiest writers leave, and be muted, within minutes).
            let user = leave_rng.random_range(1..=USERS);
            let (groups, count) = groups_of(user);
            let group = groups[leave_rng.random_range(0..count)];
            let channels: Vec<ChannelId> = channels_of(group).collect();
            let channel = channels[leave_rng.random_range(0..channels.len())];
            let key = MembershipKey::new(channel, UserId(user as i64));
            if !truth(&changed, key) {
                continue;
            }
            changed.insert(key, false);
            let dropped = leave_rng.random_range(0..1_000u32) < sc.drop_leaves_per_mille;
            ops.push(Op {
                at: tick(at),
                key,
                subscribed: false,
                kind: Kind::Event { dropped },
                wave: 0,
            });
            if dropped {
                unaware.insert((group, user));
                continue;
            }
            // Strict leave: a member seen writing is verified (every channel
            // of the group) and, no longer subscribed, muted at once.
            if !seen.contains(&(group, user)) || muted.contains(&(group, user)) {
                continue;
            }
            for (j, channel) in channels_of(group).enumerate() {
                let key = MembershipKey::new(channel, UserId(user as i64));
                ops.push(Op {
                    at: tick(at),
                    key,
                    subscribed: truth(&changed, key),
                    kind: Kind::Lookup { first: j == 0 },
                    wave: 0,
                });
            }
            muted.insert((group, user));
            if leave_rng.random_bool(JOIN_PROBABILITY) {
                joins.push(Reverse((
                    at + leave_rng.random_range(JOIN_DELAY_MS),
                    group,
                    user,
                )));
            }
        }
        // A muted member cannot write in that group: someone else writes instead.
        let (group, user) = loop {
            let pick = population.draw(&mut rng);
            if !muted.contains(&pick) {
                break pick;
            }
        };
        seen.insert((group, user));
        let mut allowed = true;
        for (j, channel) in channels_of(group).enumerate() {
            let key = MembershipKey::new(channel, UserId(user as i64));
            let subscribed = truth(&changed, key);
            allowed &= subscribed;
            ops.push(Op {
                at: tick(now),
                key,
                subscribed,
                kind: Kind::Lookup { first: j == 0 },
                wave: 0,
            });
        }
        if !allowed && !unaware.contains(&(group, user)) {
            muted.insert((group, user));
            if rng.random_bool(JOIN_PROBABILITY) {
                joins.push(Reverse((
                    now + rng.random_range(JOIN_DELAY_MS),
                    group,
                    user,
                )));
            }
        }
    }
    // Stable: ops of one instant keep the order they happened in (an event
    // before the check it triggers).
    ops.sort_by_key(|op| op.at);
    // Waves: the n-th op on a key within a tick is in wave n.
    let mut waves: HashMap<MembershipKey, u16> = HashMap::new();
    let mut current = u64::MAX;
    for op in &mut ops {
        if op.at != current {
            current = op.at;
            waves.clear();
        }
        let n = waves.entry(op.key).or_insert(0);
        op.wave = *n;
        *n += 1;
    }
    ops
}

/// Milliseconds to the next leave: exponential with mean 1 / `leaves_per_second`.
fn leave_gap(sc: Scenario, rng: &mut StdRng) -> u64 {
    if sc.leaves_per_second == 0 {
        return u64::MAX;
    }
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    ((-u.ln()) * 1_000.0 / sc.leaves_per_second as f64).ceil() as u64
}

/// What a replay counted over the measured window.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// Message lookups.
    lookups: u64,
    /// Lookups answered by the in-process layer.
    hits_l1: u64,
    /// Lookups answered by Redis.
    hits_redis: u64,
    /// Lookups that called the loader (Telegram).
    loads: u64,
    /// Recheck calls (Telegram, bypassing the cache).
    recheck_calls: u64,
    /// Messages plus "I've joined" presses.
    verifications: u64,
    /// Warm-up calls made during the measured window (the emulated warm-up at start).
    warm_calls: u64,
    /// Lookups whose answer was not the trace's truth at that instant.
    stale: u64,
    /// Per measured minute: (lookups, hits, Telegram calls).
    minutes: Vec<(u64, u64, u64)>,
    elapsed: Duration,
}

impl Outcome {
    fn hits(&self) -> u64 {
        self.hits_l1 + self.hits_redis
    }

    fn hit_rate(&self) -> f64 {
        self.hits() as f64 / self.lookups.max(1) as f64
    }

    fn calls(&self) -> u64 {
        self.loads + self.recheck_calls + self.warm_calls
    }

    fn calls_per_1k(&self) -> f64 {
        self.calls() as f64 * 1_000.0 / self.verifications.max(1) as f64
    }

    fn count_verification(&mut self, kind: Kind) {
        if let Kind::Lookup { first: true } | Kind::Recheck { first: true } = kind {
            self.verifications += 1;
        }
    }

    fn minute(&mut self, at: u64, from_ms: u64) -> &mut (u64, u64, u64) {
        let m = ((at - from_ms) / 60_000) as usize;
        if self.minutes.len() <= m {
            self.minutes.resize(m + 1, (0, 0, 0));
        }
        &mut self.minutes[m]
    }
}

/// The idealized cache: unbounded, same jittered TTLs, same recheck writes;
/// a delivered join or leave invalidates (the default mode).
fn optimum(trace: &[Op], policy: TtlPolicy, from_ms: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(SEED ^ 0xff);
    let mut expiry: HashMap<MembershipKey, u64> = HashMap::new();
    let mut out = Outcome::default();
    for op in trace {
        let measured = op.at >= from_ms;
        if measured {
            out.count_verification(op.kind);
        }
        let ttl = |rng: &mut StdRng| policy.ttl_with(status(op.subscribed), rng).as_millis() as u64;
        match op.kind {
            Kind::Recheck { .. } => {
                out.recheck_calls += u64::from(measured);
                expiry.insert(op.key, op.at + ttl(&mut rng));
            }
            Kind::Lookup { .. } => {
                out.lookups += u64::from(measured);
                if expiry.get(&op.key).is_some_and(|&e| op.at < e) {
                    out.hits_l1 += u64::from(measured);
                } else {
                    out.loads += u64::from(measured);
                    expiry.insert(op.key, op.at + ttl(&mut rng));
                }
            }
            Kind::Event { dropped } => {
                if !dropped {
                    expiry.remove(&op.key);
                }
            }
        }
    }
    out
}

/// The first-sight bound: a cache that never forgets and learns every
/// delivered event misses only a key nothing in the trace touched before
/// (no lookup, no recheck, no delivered event). No cache does better.
fn first_sight_bound(trace: &[Op], from_ms: u64) -> Outcome {
    let mut known: HashSet<MembershipKey> = HashSet::new();
    let mut out = Outcome::default();
    for op in trace {
        let measured = op.at >= from_ms;
        if measured {
            out.count_verification(op.kind);
        }
        match op.kind {
            Kind::Recheck { .. } => {
                // A recheck of a key the cache knows (its join event) needs no call.
                if known.insert(op.key) {
                    out.recheck_calls += u64::from(measured);
                }
            }
            Kind::Event { dropped } => {
                if !dropped {
                    known.insert(op.key);
                }
            }
            Kind::Lookup { .. } => {
                out.lookups += u64::from(measured);
                if known.insert(op.key) {
                    out.loads += u64::from(measured);
                } else {
                    out.hits_l1 += u64::from(measured);
                }
            }
        }
    }
    out
}

/// Who served one op of a replay, and whether its answer was stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    From(CacheSource, bool),
    /// A recheck: whether it called Telegram, and whether its answer was stale.
    Rechecked(bool, bool),
    Event,
}

/// How a replay runs.
#[derive(Clone, Copy)]
struct ReplayMode {
    /// Ops before this instant are skipped (a restart: the cache starts
    /// here; its clock must read this instant of the trace).
    start_ms: u64,
    /// Counting starts here.
    from_ms: u64,
    /// A delivered join or leave writes the event's status (events mode) rather than invalidating.
    events_write: bool,
}

impl ReplayMode {
    fn measured_from(from_ms: u64) -> Self {
        Self {
            start_ms: 0,
            from_ms,
            events_write: false,
        }
    }
}

async fn apply(cache: &dyn MembershipCache, op: Op, events_write: bool) -> Served {
    match op.kind {
        Kind::Recheck { .. } if events_write => {
            // Events mode: the recheck a join triggers reads the cache, which holds the join.
            if let Some(got) = cache.get_local(op.key) {
                return Served::Rechecked(false, got.is_subscribed() != op.subscribed);
            }
            let got = cache
                .get_or_load(op.key, Box::pin(ready(Ok(status(op.subscribed)))))
                .await
                .expect("the loader never fails here");
            Served::Rechecked(
                got.source == CacheSource::Loaded,
                got.status.is_subscribed() != op.subscribed,
            )
        }
        Kind::Recheck { .. } => {
            // The bot's recheck: Telegram directly, then the cache (unless an event came in between).
            cache
                .refresh(op.key, Box::pin(ready(Ok(status(op.subscribed)))))
                .await
                .expect("the loader never fails here");
            Served::Rechecked(true, false)
        }
        Kind::Event { dropped: true } => Served::Event,
        Kind::Event { dropped: false } => {
            if events_write {
                cache.insert(op.key, status(op.subscribed)).await;
            } else {
                cache.invalidate(op.key).await;
            }
            Served::Event
        }
        Kind::Lookup { .. } => {
            if let Some(got) = cache.get_local(op.key) {
                return Served::From(CacheSource::L1, got.is_subscribed() != op.subscribed);
            }
            let got = cache
                .get_or_load(op.key, Box::pin(ready(Ok(status(op.subscribed)))))
                .await
                .expect("the loader never fails here");
            Served::From(got.source, got.status.is_subscribed() != op.subscribed)
        }
    }
}

/// Keys an emulated warm-up looks up before a tick: (key, truth at that instant).
type WarmFeed<'a> = &'a mut dyn FnMut(u64) -> Vec<(MembershipKey, bool)>;

/// Replays the trace through `cache`, moving `clock` tick by tick; a tick's
/// ops run wave by wave, the ops of a wave (distinct keys) concurrently.
async fn replay(
    trace: &[Op],
    cache: &dyn MembershipCache,
    clock: &ManualClock,
    from_ms: u64,
) -> Outcome {
    replay_with(
        trace,
        cache,
        clock,
        ReplayMode::measured_from(from_ms),
        None,
    )
    .await
}

/// [`replay`] with a mode and an optional emulated warm-up, whose lookups
/// (one at a time, before each tick's ops) count as Telegram calls when they load.
async fn replay_with(
    trace: &[Op],
    cache: &dyn MembershipCache,
    clock: &ManualClock,
    mode: ReplayMode,
    mut warm: Option<WarmFeed<'_>>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut sim_now = mode.start_ms;
    let started = Instant::now();
    let mut wave: Vec<Op> = Vec::new();
    let from_ms = mode.from_ms;
    for tick in trace.chunk_by(|a, b| a.at == b.at) {
        let at = tick[0].at;
        if at < mode.start_ms {
            continue;
        }
        clock.advance(Duration::from_millis(at - sim_now));
        sim_now = at;
        let measured = at >= from_ms;
        if let Some(feed) = warm.as_mut() {
            for (key, truth) in feed(at) {
                let got = cache
                    .get_or_load(key, Box::pin(ready(Ok(status(truth)))))
                    .await
                    .expect("the loader never fails here");
                if measured && got.source == CacheSource::Loaded {
                    out.warm_calls += 1;
                    out.minute(at, from_ms).2 += 1;
                }
            }
        }
        let last_wave = tick.iter().map(|op| op.wave).max().unwrap_or(0);
        for w in 0..=last_wave {
            wave.clear();
            wave.extend(tick.iter().filter(|op| op.wave == w));
            let served = join_all(wave.iter().map(|&op| apply(cache, op, mode.events_write))).await;
            if !measured {
                continue;
            }
            for (op, s) in wave.iter().zip(served) {
                out.count_verification(op.kind);
                match s {
                    Served::Event => {}
                    Served::Rechecked(called, stale) => {
                        out.stale += u64::from(stale);
                        if called {
                            out.recheck_calls += 1;
                            out.minute(at, from_ms).2 += 1;
                        }
                    }
                    Served::From(source, stale) => {
                        out.lookups += 1;
                        out.stale += u64::from(stale);
                        let minute = out.minute(at, from_ms);
                        minute.0 += 1;
                        match source {
                            CacheSource::L1 => {
                                out.hits_l1 += 1;
                                out.minute(at, from_ms).1 += 1;
                            }
                            CacheSource::Redis => {
                                out.hits_redis += 1;
                                out.minute(at, from_ms).1 += 1;
                            }
                            CacheSource::Loaded => {
                                out.loads += 1;
                                out.minute(at, from_ms).2 += 1;
                            }
                        }
                    }
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

/// Deletes every key under `prefix` (SCAN, then UNLINK in batches: no long server-side call).
async fn delete_prefix(prefix: &str) {
    let client = redis::Client::open(REDIS_URL).expect("redis url");
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis connection for cleanup");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .expect("scan bench keys");
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("delete bench keys");
        }
        if next == 0 {
            break;
        }
        cursor = next;
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

fn start() -> ManualClock {
    ManualClock::new(UnixTime(1_700_000_000))
}

fn memory_cache(clock: &ManualClock) -> MemoryCache {
    MemoryCache::new(
        MemoryCacheConfig::default(),
        Arc::new(clock.clone()),
        &Registry::new(),
    )
    .expect("memory cache")
}

async fn redis_cache(clock: &ManualClock, prefix: &str) -> RedisCache {
    RedisCache::connect(
        redis_config(prefix),
        Arc::new(clock.clone()),
        &Registry::new(),
    )
    .await
    .expect("redis cache")
}

async fn layered_cache(clock: &ManualClock, prefix: &str) -> LayeredCache {
    let config = LayeredCacheConfig {
        redis: redis_config(prefix),
        ..LayeredCacheConfig::new(REDIS_URL)
    };
    LayeredCache::connect(config, Arc::new(clock.clone()), &Registry::new())
        .await
        .expect("layered cache")
}

fn header() {
    println!(
        "| cache | lookups | hits (L1 / Redis) | Telegram calls (loads + rechecks) | hit rate | \
         vs optimum | calls / 1,000 verifications | replay s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
}

fn row(name: &str, o: &Outcome, best: &Outcome) {
    assert_eq!(o.stale, 0, "{name}: a stale answer was served");
    println!(
        "| {name} | {} | {} / {} | {} + {} | {:.2} % | {:+.2} pp | {:.1} | {:.1} |",
        o.lookups,
        o.hits_l1,
        o.hits_redis,
        o.loads,
        o.recheck_calls,
        o.hit_rate() * 100.0,
        (o.hit_rate() - best.hit_rate()) * 100.0,
        o.calls_per_1k(),
        o.elapsed.as_secs_f64(),
    );
}

fn describe(trace: &[Op], sc: Scenario, population: &Population) {
    let from = sc.measure_from_ms();
    let measured: Vec<&Op> = trace.iter().filter(|op| op.at >= from).collect();
    let mut o = Outcome::default();
    for op in &measured {
        o.count_verification(op.kind);
    }
    let messages = measured
        .iter()
        .filter(|op| op.kind == Kind::Lookup { first: true })
        .count();
    let rechecks = o.verifications as usize - messages;
    let keys: HashSet<MembershipKey> = measured.iter().map(|op| op.key).collect();
    let writers: HashSet<i64> = measured.iter().map(|op| op.key.user.0).collect();
    let denied = measured
        .iter()
        .filter(|op| matches!(op.kind, Kind::Lookup { .. }) && !op.subscribed)
        .count();
    let top = population.zipf.head_share(1);
    println!(
        "Zipf s = {}, {} messages/s, {} s warm-up + {} s measured. Measured window: {messages} \
         messages, {rechecks} \"I've joined\" rechecks, {} distinct writers, {} distinct \
         (channel, user) keys, {denied} lookups of a non-subscriber (each one a first message: \
         the writer is then muted). Most active user: {:.1} % of messages ({:.0}/s); top 1 % of \
         users: {:.1} %.",
        sc.zipf,
        sc.rate,
        sc.warm_up.as_secs(),
        sc.measured.as_secs(),
        writers.len(),
        keys.len(),
        top * 100.0,
        top * sc.rate as f64,
        population.zipf.head_share(USERS as usize / 100) * 100.0,
    );
}

/// Lookups of one throughput pass: (L1, Redis, loads, wall time).
#[derive(Debug, Clone, Copy)]
struct Pass {
    l1: u64,
    redis: u64,
    loads: u64,
    elapsed: Duration,
}

impl Pass {
    fn per_sec(&self) -> f64 {
        (self.l1 + self.redis + self.loads) as f64 / self.elapsed.as_secs_f64()
    }
}

/// `LOOP_TASKS` tasks share `keys` (task t takes every t-th), `get_local` then `get_or_load`.
async fn lookup_pass(cache: Arc<dyn MembershipCache>, keys: Arc<Vec<MembershipKey>>) -> Pass {
    let started = Instant::now();
    let tasks: Vec<_> = (0..LOOP_TASKS)
        .map(|t| {
            let cache = Arc::clone(&cache);
            let keys = Arc::clone(&keys);
            tokio::spawn(async move {
                let (mut l1, mut redis, mut loads) = (0u64, 0u64, 0u64);
                for &key in keys.iter().skip(t).step_by(LOOP_TASKS) {
                    if cache.get_local(key).is_some() {
                        l1 += 1;
                        continue;
                    }
                    let got = cache
                        .get_or_load(key, Box::pin(ready(Ok(ChatMemberStatus::Member))))
                        .await
                        .expect("the loader never fails here");
                    match got.source {
                        CacheSource::L1 => l1 += 1,
                        CacheSource::Redis => redis += 1,
                        CacheSource::Loaded => loads += 1,
                    }
                }
                (l1, redis, loads)
            })
        })
        .collect();
    let mut pass = Pass {
        l1: 0,
        redis: 0,
        loads: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (l1, redis, loads) = task.await.expect("lookup task");
        pass.l1 += l1;
        pass.redis += redis;
        pass.loads += loads;
    }
    pass.elapsed = started.elapsed();
    pass
}

/// Layered vs memory lookup throughput on the reference workload's own keys.
async fn throughput(trace: &[Op], from_ms: u64) {
    let lookups = trace
        .iter()
        .filter(|op| op.at >= from_ms && matches!(op.kind, Kind::Lookup { .. }))
        .map(|op| op.key);
    let keys: Vec<MembershipKey> = lookups.cycle().take(LOOP_LOOKUPS).collect();
    let distinct = keys.iter().collect::<HashSet<_>>().len();
    let keys = Arc::new(keys);
    let prefix = unique_prefix("loop");
    println!(
        "\nthroughput: {LOOP_LOOKUPS} lookups by {LOOP_TASKS} tasks on 2 worker threads (task t \
         takes every t-th): the measured window's lookup keys in trace order, cycled \
         ({distinct} distinct keys), clock frozen. One cold pass on fresh caches, then \
         {WARM_PASSES} warm passes alternating the caches (best and median)\n"
    );
    // The third cache is a memory cache with the L1's capacity: it tells the
    // layered cache's own cost from that of a smaller in-process map.
    let small = MemoryCacheConfig {
        max_capacity: LayeredCacheConfig::new(REDIS_URL).l1_capacity,
        ..MemoryCacheConfig::default()
    };
    let caches: [Arc<dyn MembershipCache>; 3] = [
        Arc::new(memory_cache(&start())),
        Arc::new(layered_cache(&start(), &prefix).await),
        Arc::new(
            MemoryCache::new(small, Arc::new(start()), &Registry::new()).expect("memory cache"),
        ),
    ];
    let mut cold = Vec::new();
    for cache in &caches {
        cold.push(lookup_pass(Arc::clone(cache), Arc::clone(&keys)).await);
    }
    let mut warm: [Vec<Pass>; 3] = Default::default();
    for _ in 0..WARM_PASSES {
        for (cache, passes) in caches.iter().zip(&mut warm) {
            passes.push(lookup_pass(Arc::clone(cache), Arc::clone(&keys)).await);
        }
    }
    drop(caches);
    delete_prefix(&prefix).await;
    println!(
        "| cache | cold: L1 / Redis / loads | cold lookups/s | warm: L1 / Redis | warm lookups/s \
         (best) | warm lookups/s (median) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rates = Vec::new();
    let names = [
        "memory (500k)",
        "layered (L1 100k + Redis)",
        "memory (100k)",
    ];
    for (i, name) in names.into_iter().enumerate() {
        let mut per_sec: Vec<f64> = warm[i].iter().map(Pass::per_sec).collect();
        per_sec.sort_by(f64::total_cmp);
        let (best, median) = (per_sec[per_sec.len() - 1], per_sec[per_sec.len() / 2]);
        let c = cold[i];
        let w = warm[i][warm[i].len() - 1];
        println!(
            "| {name} | {} / {} / {} | {:.0} | {} / {} | {best:.0} | {median:.0} |",
            c.l1,
            c.redis,
            c.loads,
            c.per_sec(),
            w.l1,
            w.redis,
        );
        rates.push((c.per_sec(), best, median));
    }
    println!(
        "\nlayered / memory throughput: warm {:.2} (best of {WARM_PASSES}; medians: {:.2}), \
         cold {:.2}; against a memory cache of the L1's size: warm {:.2}, cold {:.2}",
        rates[1].1 / rates[0].1,
        rates[1].2 / rates[0].2,
        rates[1].0 / rates[0].0,
        rates[1].1 / rates[2].1,
        rates[1].0 / rates[2].0,
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

/// The sections a run can be limited to (`-- restart events`); all by default.
const SECTIONS: [&str; 6] = [
    "reference",
    "throughput",
    "sensitivity",
    "lever",
    "restart",
    "events",
];

async fn run() {
    let begun = Instant::now();
    require_redis().await;
    // `cargo bench` passes `--bench`; anything else names sections.
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for c in &chosen {
        assert!(
            SECTIONS.contains(&c.as_str()),
            "unknown section `{c}`; expected some of {SECTIONS:?}"
        );
    }
    let wanted = |s: &str| chosen.is_empty() || chosen.iter().any(|c| c == s);
    let policy = TtlPolicy::default();
    let sc = REFERENCE;
    let population = Population::new(sc.zipf);
    let trace = build_trace(sc, &population);
    println!(
        "reference workload: {GROUPS} groups ({} with two channels), {USERS} users \
         ({TWO_GROUP_PERCENT} % in two groups), {SUBSCRIBED_PERCENT} % of pairs subscribed, \
         {:.0} % of denied writers join after {}-{} s",
        GROUPS / TWO_CHANNEL_EVERY,
        JOIN_PROBABILITY * 100.0,
        JOIN_DELAY_MS.start() / 1_000,
        JOIN_DELAY_MS.end() / 1_000,
    );
    describe(&trace, sc, &population);
    let from = sc.measure_from_ms();
    if wanted("reference") {
        reference(&trace, policy, from).await;
    }
    if wanted("throughput") {
        throughput(&trace, from).await;
    }
    if wanted("restart") {
        restart::restart(
            &trace,
            sc,
            &[
                (
                    "default bounds: 300 s at 50 calls/s ≈ 14,000 members",
                    14_000,
                    50,
                    "ttl",
                ),
                (
                    "--max-members 50000 --calls-per-second 300",
                    50_000,
                    300,
                    "ttl",
                ),
                (
                    "--max-members 50000 --calls-per-second 500",
                    50_000,
                    500,
                    "ttl",
                ),
                (
                    "--max-members 50000 --calls-per-second 50",
                    50_000,
                    50,
                    "events",
                ),
            ],
            &[50, 500],
        )
        .await;
    }
    drop(trace);
    if wanted("events") {
        events::events(1, 10).await;
    }
    if wanted("sensitivity") {
        sensitivity(policy).await;
    }
    if wanted("lever") {
        member_ttl_lever(policy);
    }
    println!("\ntotal run time: {:.1} s", begun.elapsed().as_secs_f64());
}

/// The reference rows: optimum, memory, Redis, layered, and the targets.
async fn reference(trace: &[Op], policy: TtlPolicy, from: u64) {
    let started = Instant::now();
    println!();
    let best = optimum(trace, policy, from);
    header();
    row("optimum (unbounded, same TTLs)", &best, &best);

    let clock = start();
    let memory = memory_cache(&clock);
    let mut results = vec![("memory", replay(trace, &memory, &clock, from).await)];
    row("memory (500k)", &results[0].1, &best);
    drop(memory);

    let prefix = unique_prefix("redis");
    let clock = start();
    let redis = redis_cache(&clock, &prefix).await;
    let o = replay(trace, &redis, &clock, from).await;
    row("Redis", &o, &best);
    results.push(("redis", o));
    drop(redis);
    delete_prefix(&prefix).await;

    let prefix = unique_prefix("layered");
    let clock = start();
    let layered = layered_cache(&clock, &prefix).await;
    let o = replay(trace, &layered, &clock, from).await;
    row("layered (L1 100k + Redis)", &o, &best);
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
    println!("(reference: {:.1} s)", started.elapsed().as_secs_f64());
}

/// How the optimum, and the memory cache's distance to it, depend on the workload.
async fn sensitivity(policy: TtlPolicy) {
    let sensitivity = Instant::now();
    println!("\nsensitivity (memory cache; the optimum bounds every adapter):\n");
    println!(
        "| Zipf s | msg/s | warm-up | optimum | memory | gap | calls / 1,000 verifications (memory) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let minutes = |m: u64| Duration::from_secs(m * 60);
    for (zipf, rate, warm) in [
        (0.9, 1_000, 20),
        (1.1, 1_000, 20),
        (1.3, 1_000, 20),
        (1.1, 250, 20),
        (1.1, 3_000, 20),
        (1.1, 1_000, 0),
    ] {
        let sc = Scenario {
            zipf,
            rate,
            warm_up: minutes(warm),
            measured: minutes(10),
            ..REFERENCE
        };
        let population = Population::new(zipf);
        let trace = build_trace(sc, &population);
        let best = optimum(&trace, policy, sc.measure_from_ms());
        let clock = start();
        let o = replay(&trace, &memory_cache(&clock), &clock, sc.measure_from_ms()).await;
        println!(
            "| {zipf} | {rate} | {warm} min | {:.2} % | {:.2} % | {:+.2} pp | {:.1} |",
            best.hit_rate() * 100.0,
            o.hit_rate() * 100.0,
            (o.hit_rate() - best.hit_rate()) * 100.0,
            o.calls_per_1k(),
        );
    }
    println!("({:.1} s)", sensitivity.elapsed().as_secs_f64());
}

/// What the member TTL would have to be: the optimum of the reference
/// workload for longer member TTLs (same jitter). The warm-up is more than
/// twice the longest jittered TTL, so that the cold start's loads and their
/// first expiries are behind the measured window for every row.
fn member_ttl_lever(policy: TtlPolicy) {
    let started = Instant::now();
    let sc = Scenario {
        warm_up: Duration::from_secs(80 * 60),
        ..REFERENCE
    };
    let population = Population::new(sc.zipf);
    let trace = build_trace(sc, &population);
    println!(
        "\nmember TTL lever (optimum only; reference workload, {} min warm-up):\n",
        sc.warm_up.as_secs() / 60
    );
    println!("| member TTL | optimum | calls / 1,000 verifications |");
    println!("|---:|---:|---:|");
    for minutes in [10, 20, 30] {
        let policy = TtlPolicy {
            member: Duration::from_secs(minutes * 60),
            ..policy
        };
        let best = optimum(&trace, policy, sc.measure_from_ms());
        println!(
            "| {minutes} min | {:.2} % | {:.1} |",
            best.hit_rate() * 100.0,
            best.calls_per_1k()
        );
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
}
