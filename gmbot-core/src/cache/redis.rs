//! The Redis adapter: one membership cache shared by every GMBot instance, plus the Redis plumbing the layered cache reuses.
//!
//! Keys are `{prefix}{channel}:{user}` (default prefix `gmbot:m:`); the value
//! is the status, its logical expiry in Unix milliseconds taken from the
//! [`Clock`] port and a random tag (`m:1700000000000:9f3a01c2`), so every
//! instance — and a test on a `ManualClock` — agrees on when an entry dies.
//! `PX` with the same lifetime is only the backstop that frees Redis memory.
//!
//! Writes come in two kinds:
//! - a **load's answer** is written with a compare-and-set (a Lua script):
//!   only if the key still holds exactly the value the load saw before it
//!   asked Telegram (or nothing, if it saw nothing). Whatever was written
//!   meanwhile — an event, another instance's load — wins; the random tag
//!   makes two writes of the same status in the same second different values;
//! - an **event** ([`MembershipCache::insert`]) or an **invalidation** is a
//!   `SET` (of the status, or of a tombstone `x:{tag}` that reads as a miss and
//!   fences off loads that saw the old value) plus a `PUBLISH` of
//!   `{channel}:{user}/{origin}` on the invalidation channel, in one `MULTI`.
//!   Every other instance's listener task applies it: its L1 forgets the key
//!   and its loads of the key in flight are superseded (the publisher did
//!   both itself, at once, and skips the echo of its own `origin`).
//!
//! Redis is an optimisation, never a dependency of a verification: every
//! call is bounded by a timeout (250 ms by default); a failure marks Redis
//! down, logs one warning for the whole outage, and for the next half-second
//! lookups skip Redis entirely (in-process layer and loader only) before one
//! call probes it again. The `ConnectionManager` reconnects by itself; the
//! first success logs the recovery.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use prometheus::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::domain::{ChannelId, ChatMemberStatus, UserId};
use crate::telegram::TelegramResult;

use super::flight::SingleFlight;
use super::lookup;
use super::metrics::{CacheMetrics, LayerResult};
use super::{
    CacheError, CacheLookup, CacheSource, MembershipCache, MembershipKey, MembershipLoader,
    TtlPolicy,
};

/// How long lookups skip Redis after a failure before one call probes it again.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long an invalidation's tombstone stays: longer than any load (a
/// `getChatMember` with the dispatcher's retries) that could have read the
/// value before the invalidation and write its answer after it.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);
/// The compare-and-set of a load's or a refresh's answer. `KEYS[1]` the
/// key; `ARGV[1]` `1` if the writer saw a value (`ARGV[2]`) before asking
/// Telegram, `0` if it saw none; `ARGV[3]` the new value, `ARGV[4]` its `PX`;
/// `ARGV[5]` `load` or `refresh`; `ARGV[6]`/`ARGV[7]` the invalidation
/// channel and payload. A load writes only over what it saw. A refresh (a
/// recheck, newer than any load) also writes over another load's answer
/// (values tagged `l`), but never over an event or tombstone written since
/// it began; when it writes it publishes, so other instances drop their
/// copies. Returns 1 if it wrote.
const CAS_SCRIPT: &str = r"
local cur = redis.call('GET', KEYS[1])
local same
if ARGV[1] == '1' then same = (cur == ARGV[2]) else same = (not cur) end
if not same then
  if ARGV[5] ~= 'refresh' then return 0 end
  if cur and not string.find(cur, ':l%x+$') then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
if ARGV[5] == 'refresh' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return 1
";
/// Bounds of the listener's reconnection backoff.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Settings of a [`RedisCache`] (and of the Redis layer of a
/// [`LayeredCache`](super::LayeredCache)).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisCacheConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every key this cache writes (`{prefix}{channel}:{user}`).
    pub key_prefix: String,
    /// The pub/sub channel invalidations travel on; every instance sharing
    /// the keys must use the same one.
    pub invalidation_channel: String,
    /// Upper bound of any single Redis call made by a lookup.
    pub op_timeout: Duration,
    /// Lifetimes and jitter.
    pub ttl: TtlPolicy,
}

impl RedisCacheConfig {
    /// Defaults for `url`: prefix `gmbot:m:`, channel `gmbot:m:invalidate`,
    /// 250 ms per call, default TTLs.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "gmbot:m:".into(),
            invalidation_channel: "gmbot:m:invalidate".into(),
            op_timeout: Duration::from_millis(250),
            ttl: TtlPolicy::default(),
        }
    }

    fn validate(&self) -> Result<(), CacheError> {
        self.ttl.validate()?;
        if self.op_timeout.is_zero() {
            return Err(CacheError::InvalidConfig(
                "the Redis call timeout must be greater than zero".into(),
            ));
        }
        if self.invalidation_channel.is_empty() {
            return Err(CacheError::InvalidConfig(
                "the Redis invalidation channel must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// `url` with any password replaced by `***`, for logs and errors.
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(p) => format!("{scheme}://{authority}/{p}"),
        None => format!("{scheme}://{authority}"),
    }
}

/// Whether Redis is answering: the outage state machine behind "one warning per outage".
pub(super) struct RedisHealth {
    target: String,
    down: AtomicBool,
    /// Real milliseconds since `origin` before which lookups skip Redis.
    /// Real time, not the `Clock`: it paces network probes, and a frozen
    /// `ManualClock` must not stop Redis from ever being retried.
    probe_at: AtomicU64,
    origin: Instant,
    metrics: CacheMetrics,
}

impl RedisHealth {
    fn new(target: String, metrics: CacheMetrics) -> Self {
        Self {
            target,
            down: AtomicBool::new(false),
            probe_at: AtomicU64::new(0),
            origin: Instant::now(),
            metrics,
        }
    }

    fn elapsed_millis(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a lookup may call Redis now: always while it is up; during an
    /// outage, one caller per probe interval.
    fn allow(&self) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let now = self.elapsed_millis();
        let at = self.probe_at.load(Ordering::Acquire);
        now >= at
            && self
                .probe_at
                .compare_exchange(
                    at,
                    now + probe_millis(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            self.metrics.redis_up.set(1);
            log::info!(
                redis = self.target.as_str();
                "Redis at {} answers again; the membership cache uses it again",
                self.target
            );
        }
    }

    fn failed(&self, reason: &str) {
        self.probe_at
            .store(self.elapsed_millis() + probe_millis(), Ordering::Release);
        if !self.down.swap(true, Ordering::AcqRel) {
            self.metrics.redis_up.set(0);
            self.metrics.redis_outages.inc();
            log::warn!(
                redis = self.target.as_str(), error = reason;
                "Redis at {} is unavailable ({reason}); the membership cache falls back to \
                 the in-process layer and Telegram and reconnects by itself \
                 (no further warning until it recovers)",
                self.target
            );
        }
    }

    fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }
}

fn probe_millis() -> u64 {
    u64::try_from(PROBE_INTERVAL.as_millis()).unwrap_or(500)
}

/// A Redis lookup's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RedisLookup {
    /// A live entry, with what remains of its life.
    Hit {
        status: ChatMemberStatus,
        remaining: Duration,
    },
    /// No live entry; the fence a load's answer must be written against.
    Miss(Fence),
    /// Redis did not answer (or is being skipped during an outage).
    Unavailable,
}

impl RedisLookup {
    /// What a load that follows this lookup writes against.
    pub(super) fn into_fence(self) -> Fence {
        match self {
            Self::Miss(fence) => fence,
            // A hit is not followed by a load; after an outage the load may
            // write only where nobody wrote meanwhile.
            Self::Hit { .. } | Self::Unavailable => Fence::Absent,
        }
    }
}

/// What a compare-and-set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CasOutcome {
    /// The answer is in Redis.
    Written,
    /// The key changed while the load ran: what is there now stands.
    Refused,
    /// Redis did not answer.
    Unavailable,
}

/// What the key held when a load began: its answer is written only if the
/// key still holds that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fence {
    /// Nothing.
    Absent,
    /// This exact value (expired, a tombstone, or unreadable).
    Value(String),
}

fn encode_status(status: ChatMemberStatus) -> &'static str {
    match status {
        ChatMemberStatus::Creator => "c",
        ChatMemberStatus::Administrator => "a",
        ChatMemberStatus::Member => "m",
        ChatMemberStatus::Restricted { is_member: true } => "r1",
        ChatMemberStatus::Restricted { is_member: false } => "r0",
        ChatMemberStatus::Left => "l",
        ChatMemberStatus::Kicked => "k",
    }
}

fn decode_status(code: &str) -> Option<ChatMemberStatus> {
    Some(match code {
        "c" => ChatMemberStatus::Creator,
        "a" => ChatMemberStatus::Administrator,
        "m" => ChatMemberStatus::Member,
        "r1" => ChatMemberStatus::Restricted { is_member: true },
        "r0" => ChatMemberStatus::Restricted { is_member: false },
        "l" => ChatMemberStatus::Left,
        "k" => ChatMemberStatus::Kicked,
        _ => return None,
    })
}

/// A pub/sub payload: `{channel}:{user}`, optionally followed by
/// `/{origin}`, the id of the cache instance that published it (an instance
/// applies its own changes at once and skips their echo).
fn parse_payload(payload: &[u8]) -> Option<(MembershipKey, Option<&str>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (key, origin) = match text.split_once('/') {
        Some((key, origin)) => (key, Some(origin)),
        None => (text, None),
    };
    let (channel, user) = key.rsplit_once(':')?;
    Some((
        MembershipKey::new(ChannelId(channel.parse().ok()?), UserId(user.parse().ok()?)),
        origin,
    ))
}

/// Who wrote a value: a load fills a miss; an event or a refresh is newer
/// than any load (see [`CAS_SCRIPT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    Load,
    Event,
}

/// A random tag, prefixed by the writer's kind (`l` load, `e` event or
/// refresh), that makes every written value unique.
fn tag(writer: Writer) -> String {
    let kind = match writer {
        Writer::Load => 'l',
        Writer::Event => 'e',
    };
    format!("{kind}{:08x}", rand::random::<u32>())
}

/// The clock's wall time in milliseconds: what logical expiries in Redis are
/// measured in, so that every instance agrees. Whole seconds, because that is
/// what the `Clock` port offers; an entry may die up to a second early.
fn unix_millis(clock: &dyn Clock) -> i64 {
    clock.unix_now().secs().saturating_mul(1000)
}

/// Redis as a cache layer: timed-out, outage-aware get/set/invalidate.
pub(super) struct RedisLayer {
    conn: ConnectionManager,
    key_prefix: String,
    channel: String,
    op_timeout: Duration,
    clock: Arc<dyn Clock>,
    health: RedisHealth,
    metrics: CacheMetrics,
    cas: redis::Script,
    origin: String,
}

impl RedisLayer {
    /// A layer for `config`; does not connect (the connection is made on first use).
    pub(super) fn open(
        config: &RedisCacheConfig,
        clock: Arc<dyn Clock>,
        metrics: CacheMetrics,
    ) -> Result<(Self, redis::Client), CacheError> {
        config.validate()?;
        let target = redact_url(&config.url);
        let client = redis::Client::open(config.url.as_str()).map_err(|source| {
            CacheError::InvalidRedisUrl {
                url: target.clone(),
                source,
            }
        })?;
        // The manager's own retries stay inside one call's timeout; past it the
        // call fails, the outage logic takes over, and the next probe retries.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            .set_response_timeout(Some(config.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(config.op_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|source| CacheError::InvalidRedisUrl {
                url: target.clone(),
                source,
            })?;
        let layer = Self {
            conn,
            key_prefix: config.key_prefix.clone(),
            channel: config.invalidation_channel.clone(),
            op_timeout: config.op_timeout,
            clock,
            health: RedisHealth::new(target, metrics.clone()),
            metrics,
            cas: redis::Script::new(CAS_SCRIPT),
            origin: format!("{:016x}", rand::random::<u64>()),
        };
        Ok((layer, client))
    }

    /// What an invalidation of `key` publishes.
    fn payload(&self, key: MembershipKey) -> String {
        format!("{key}/{}", self.origin)
    }

    /// This instance's id in the payloads it publishes.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }

    fn redis_key(&self, key: MembershipKey) -> String {
        format!("{}{}:{}", self.key_prefix, key.channel, key.user)
    }

    /// Runs one Redis call under the timeout and the outage logic; `None` if
    /// Redis is skipped or failed.
    async fn guarded<T, F>(&self, call: F) -> Option<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        if !self.health.allow() {
            return None;
        }
        match tokio::time::timeout(self.op_timeout, call).await {
            Ok(Ok(value)) => {
                self.health.succeeded();
                Some(value)
            }
            Ok(Err(e)) => {
                self.health.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.health
                    .failed(&format!("no answer within {:?}", self.op_timeout));
                None
            }
        }
    }

    /// Reads `key`, counting the result under `layer="redis"`.
    pub(super) async fn get(&self, key: MembershipKey) -> RedisLookup {
        let outcome = self.read(key).await;
        self.metrics.redis.record(match outcome {
            RedisLookup::Hit { .. } => LayerResult::Hit,
            RedisLookup::Miss(_) => LayerResult::Miss,
            RedisLookup::Unavailable => LayerResult::Error,
        });
        outcome
    }

    /// What `key` holds now, as the fence of a refresh (which does not read
    /// the entry, only writes over it unless it changes meanwhile); not
    /// counted as a lookup.
    pub(super) async fn fence(&self, key: MembershipKey) -> Fence {
        match self.read_raw(key).await {
            Some(Some(text)) => Fence::Value(text),
            Some(None) | None => Fence::Absent,
        }
    }

    /// The raw value; `None` if Redis did not answer.
    async fn read_raw(&self, key: MembershipKey) -> Option<Option<String>> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET").arg(self.redis_key(key)).clone();
        self.guarded(async move { cmd.query_async::<Option<String>>(&mut conn).await })
            .await
    }

    async fn read(&self, key: MembershipKey) -> RedisLookup {
        match self.read_raw(key).await {
            None => RedisLookup::Unavailable,
            Some(None) => RedisLookup::Miss(Fence::Absent),
            Some(Some(text)) => match self.decode(&text) {
                Some((status, remaining)) => RedisLookup::Hit { status, remaining },
                None => RedisLookup::Miss(Fence::Value(text)),
            },
        }
    }

    /// A live entry's status and remaining life; `None` for an expired entry,
    /// a tombstone or anything unreadable.
    fn decode(&self, text: &str) -> Option<(ChatMemberStatus, Duration)> {
        let mut parts = text.split(':');
        let status = decode_status(parts.next()?)?;
        let expires = parts.next()?.parse::<i64>().ok()?;
        let left = expires.saturating_sub(unix_millis(self.clock.as_ref()));
        match u64::try_from(left) {
            Ok(ms) if ms > 0 => Some((status, Duration::from_millis(ms))),
            _ => None,
        }
    }

    /// The value and `PX` for `status` living `ttl` from now, written by `writer`.
    fn encode(&self, status: ChatMemberStatus, ttl: Duration, writer: Writer) -> (String, i64) {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let expires = unix_millis(self.clock.as_ref()).saturating_add(ttl_ms);
        (
            format!("{}:{expires}:{}", encode_status(status), tag(writer)),
            ttl_ms,
        )
    }

    /// Writes a load's answer `status` for `ttl` if the key still holds what
    /// `fence` says.
    pub(super) async fn set_loaded(
        &self,
        key: MembershipKey,
        fence: &Fence,
        status: ChatMemberStatus,
        ttl: Duration,
    ) -> CasOutcome {
        self.compare_and_set(key, fence, status, ttl, "load").await
    }

    /// Writes a refresh's answer `status` for `ttl` unless an event or an
    /// invalidation changed the key since `fence` was read; publishes it.
    pub(super) async fn set_refreshed(
        &self,
        key: MembershipKey,
        fence: &Fence,
        status: ChatMemberStatus,
        ttl: Duration,
    ) -> CasOutcome {
        self.compare_and_set(key, fence, status, ttl, "refresh")
            .await
    }

    async fn compare_and_set(
        &self,
        key: MembershipKey,
        fence: &Fence,
        status: ChatMemberStatus,
        ttl: Duration,
        mode: &str,
    ) -> CasOutcome {
        let writer = if mode == "load" {
            Writer::Load
        } else {
            Writer::Event
        };
        let (value, ttl_ms) = self.encode(status, ttl, writer);
        let mut invocation = self.cas.key(self.redis_key(key));
        match fence {
            Fence::Absent => invocation.arg("0").arg(""),
            Fence::Value(seen) => invocation.arg("1").arg(seen.as_str()),
        };
        invocation
            .arg(value)
            .arg(ttl_ms)
            .arg(mode)
            .arg(&self.channel)
            .arg(self.payload(key));
        let mut conn = self.conn.clone();
        match self
            .guarded(async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await
        {
            Some(1) => CasOutcome::Written,
            Some(_) => CasOutcome::Refused,
            None => CasOutcome::Unavailable,
        }
    }

    /// Writes `value` for `ttl_ms` and tells every instance (`PUBLISH`), in one `MULTI`.
    async fn set_and_publish(&self, key: MembershipKey, value: String, ttl_ms: i64) {
        let mut conn = self.conn.clone();
        let pipe = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.redis_key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.payload(key))
            .ignore()
            .clone();
        self.guarded(async move { pipe.query_async::<()>(&mut conn).await })
            .await;
    }

    /// Writes an event's `status` for `ttl`, over whatever the key holds, and publishes it.
    pub(super) async fn set_event(
        &self,
        key: MembershipKey,
        status: ChatMemberStatus,
        ttl: Duration,
    ) {
        let (value, ttl_ms) = self.encode(status, ttl, Writer::Event);
        self.set_and_publish(key, value, ttl_ms).await;
    }

    /// Replaces `key` by a tombstone (a miss that fences off loads begun
    /// before it) and publishes the invalidation, in one round trip.
    pub(super) async fn invalidate(&self, key: MembershipKey) {
        let ttl_ms = i64::try_from(TOMBSTONE_TTL.as_millis()).unwrap_or(600_000);
        self.set_and_publish(key, format!("x:{}", tag(Writer::Event)), ttl_ms)
            .await;
    }

    /// `PING`, bypassing the outage pacing (readiness checks); updates the health state.
    pub(super) async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(
            self.op_timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok(_)) => {
                self.health.succeeded();
                Ok(())
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.health.failed(&reason);
                Err(CacheError::Unavailable(format!(
                    "{}: {reason}",
                    self.health.target
                )))
            }
            Err(_) => {
                let reason = format!("no answer within {:?}", self.op_timeout);
                self.health.failed(&reason);
                Err(CacheError::Unavailable(format!(
                    "{}: {reason}",
                    self.health.target
                )))
            }
        }
    }

    /// Whether the last Redis call succeeded.
    pub(super) fn is_up(&self) -> bool {
        self.health.is_up()
    }
}

/// What the invalidation listener hands to its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Invalidation {
    /// Another instance (or this one) invalidated this key.
    Key(MembershipKey),
    /// The listener (re)subscribed: anything published meanwhile was missed.
    All,
}

/// The invalidation listener task; aborted when dropped.
pub(super) struct ListenerGuard {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ListenerGuard {
    /// Whether the listener is subscribed right now.
    pub(super) fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// Waits until the listener is subscribed, at most `within`.
    pub(super) async fn wait_subscribed(&self, within: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        tokio::time::timeout(within, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Starts the task that subscribes to `channel` and applies every
/// invalidation it hears (but those `own_origin` published), resubscribing (with backoff) whenever the
/// connection drops.
pub(super) fn spawn_listener(
    client: redis::Client,
    channel: String,
    own_origin: String,
    op_timeout: Duration,
    apply: Arc<dyn Fn(Invalidation) + Send + Sync>,
) -> ListenerGuard {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut backoff = LISTEN_BACKOFF_MIN;
        loop {
            let connect = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                RedisResult::Ok(pubsub)
            };
            if let Ok(Ok(mut pubsub)) = tokio::time::timeout(op_timeout * 4, connect).await {
                backoff = LISTEN_BACKOFF_MIN;
                apply(Invalidation::All);
                tx.send_replace(true);
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    match parse_payload(msg.get_payload_bytes()) {
                        // Our own change, applied when it was made.
                        Some((_, Some(origin))) if origin == own_origin => {}
                        Some((key, _)) => apply(Invalidation::Key(key)),
                        None => log::warn!(
                            channel = channel.as_str();
                            "ignoring a malformed membership invalidation on Redis channel {channel}"
                        ),
                    }
                }
                tx.send_replace(false);
                log::info!(
                    channel = channel.as_str();
                    "membership invalidation subscription lost; resubscribing"
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
        }
    });
    ListenerGuard {
        task,
        subscribed: rx,
    }
}

/// The Redis adapter of [`MembershipCache`]: no in-process layer, every
/// lookup reads Redis (so [`MembershipCache::get_local`] is always `None`).
pub struct RedisCache {
    redis: RedisLayer,
    flight: Arc<SingleFlight>,
    ttl: TtlPolicy,
    metrics: CacheMetrics,
    listener: ListenerGuard,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("redis", &self.redis.health.target)
            .field("key_prefix", &self.redis.key_prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// A cache on the Redis at `config.url`, counting into `registry` (one
    /// cache per registry). Succeeds even if Redis is down (lookups then go
    /// to the loader until it answers); it waits up to a few call timeouts
    /// for the invalidation listener to subscribe. Must run inside a tokio runtime.
    pub async fn connect(
        config: RedisCacheConfig,
        clock: Arc<dyn Clock>,
        registry: &Registry,
    ) -> Result<Self, CacheError> {
        let metrics = CacheMetrics::register(registry)?;
        let (redis, client) = RedisLayer::open(&config, clock, metrics.clone())?;
        let flight = Arc::new(SingleFlight::default());
        let listener_flight = Arc::clone(&flight);
        let listener_metrics = metrics.clone();
        let listener = spawn_listener(
            client,
            config.invalidation_channel.clone(),
            redis.origin().to_owned(),
            config.op_timeout,
            Arc::new(move |inv| match inv {
                Invalidation::Key(key) => {
                    listener_metrics.invalidations_remote.inc();
                    listener_flight.supersede(key);
                }
                Invalidation::All => {
                    listener_flight.supersede_all();
                }
            }),
        );
        let cache = Self {
            redis,
            flight,
            ttl: config.ttl,
            metrics,
            listener,
        };
        if cache.redis.ping().await.is_ok() {
            cache.listener.wait_subscribed(config.op_timeout * 4).await;
        }
        Ok(cache)
    }

    /// `PING`: whether Redis answers now (for readiness checks).
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.redis.ping().await
    }

    /// Whether the last Redis call succeeded.
    pub fn is_redis_up(&self) -> bool {
        self.redis.is_up()
    }

    /// Whether the invalidation listener is subscribed.
    pub fn is_subscribed(&self) -> bool {
        self.listener.is_subscribed()
    }

    /// Waits until the invalidation listener is subscribed, at most `within`.
    pub async fn wait_subscribed(&self, within: Duration) -> bool {
        self.listener.wait_subscribed(within).await
    }
}

#[async_trait]
impl MembershipCache for RedisCache {
    fn get_local(&self, _key: MembershipKey) -> Option<ChatMemberStatus> {
        None
    }

    async fn get_or_load(
        &self,
        key: MembershipKey,
        loader: MembershipLoader<'_>,
    ) -> TelegramResult<CacheLookup> {
        self.flight
            .run(key, |flight| async move {
                let fence = match self.redis.get(key).await {
                    RedisLookup::Hit { status, .. } => {
                        return Ok(CacheLookup {
                            status,
                            source: CacheSource::Redis,
                        })
                    }
                    other => other.into_fence(),
                };
                let flight = &*flight;
                lookup::load(flight, &self.metrics, loader, |status| async move {
                    !flight.is_superseded()
                        && self
                            .redis
                            .set_loaded(key, &fence, status, self.ttl.ttl(status))
                            .await
                            == CasOutcome::Written
                })
                .await
            })
            .await
    }

    async fn refresh(
        &self,
        key: MembershipKey,
        loader: MembershipLoader<'_>,
    ) -> TelegramResult<ChatMemberStatus> {
        self.flight
            .run_solo(key, |flight| async move {
                let fence = self.redis.fence(key).await;
                let flight = &*flight;
                lookup::refresh(flight, &self.metrics, loader, |status| async move {
                    if flight.is_superseded() {
                        return false;
                    }
                    self.flight.supersede_others(key, flight);
                    self.redis
                        .set_refreshed(key, &fence, status, self.ttl.ttl(status))
                        .await
                        == CasOutcome::Written
                })
                .await
            })
            .await
    }

    async fn insert(&self, key: MembershipKey, status: ChatMemberStatus) {
        self.flight.supersede(key);
        self.redis
            .set_event(key, status, self.ttl.ttl(status))
            .await;
    }

    async fn invalidate(&self, key: MembershipKey) {
        self.metrics.invalidations_local.inc();
        self.flight.supersede(key);
        self.redis.invalidate(key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            ChatMemberStatus::Creator,
            ChatMemberStatus::Administrator,
            ChatMemberStatus::Member,
            ChatMemberStatus::Restricted { is_member: true },
            ChatMemberStatus::Restricted { is_member: false },
            ChatMemberStatus::Left,
            ChatMemberStatus::Kicked,
        ] {
            assert_eq!(decode_status(encode_status(s)), Some(s));
        }
        assert_eq!(decode_status("x"), None);
    }

    #[test]
    fn payload_parses_negative_channels() {
        let key = MembershipKey::new(ChannelId(-1001234), UserId(42));
        assert_eq!(parse_payload(key.to_string().as_bytes()), Some((key, None)));
        assert_eq!(
            parse_payload(format!("{key}/00ff").as_bytes()),
            Some((key, Some("00ff")))
        );
        assert_eq!(parse_payload(b"garbage"), None);
        assert_eq!(parse_payload(b"-1:x"), None);
        assert_eq!(parse_payload(b"-1:x/1"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://user:secret@host:6379/2"),
            "redis://user:***@host:6379/2"
        );
        assert_eq!(redact_url("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact_url("rediss://token@host/0"), "rediss://***@host/0");
    }
}
