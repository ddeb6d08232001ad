//! The Redis coordination adapter: leases (`SET NX PX` with a generation, Lua compare-and-extend and compare-and-delete), claims (`SET NX PX`) and group events (pub/sub), for every instance of one bot.
//!
//! Keys, under the configured prefix (default `gmbot:`): `lease:{name}` holds the holder's
//! token `{generation}:{random}` and `lease:{name}:gen` the last generation handed out (never
//! expires: generations only grow); `claim:{key}` is a claim; `warn:{group}` (a hash: state,
//! token, message, the named members as JSON) and `warn:{group}:m` (the set of members
//! gathered) are a group's warning board, both expiring with the warning. Group events travel on one
//! channel as `c:{group}/{origin}` or `a:{group}/{origin}`; a listener skips the echo of its
//! own `origin` (the publisher applied the change at once).
//!
//! Every call is bounded by [`RedisCoordinationConfig::op_timeout`]; a failure marks Redis
//! down, logs one warning for the whole outage and, for the next half-second, calls fail at
//! once without a round trip before one probes again. The connection reconnects by itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    BoardMember, BoardSlot, BoardView, ClaimStore, CoordinationError, GroupEvent, GroupEvents,
    Lease, LeaseStore, WarningBoard,
};
use crate::domain::{GroupId, MessageId, UserId};

/// How long calls fail fast after a failure before one probes Redis again.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Bounds of the listener's reconnection backoff.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Takes a free lease: `KEYS[1]` the lease, `KEYS[2]` its generation counter; `ARGV[1]` a
/// random tag, `ARGV[2]` the `PX`. Returns `{token, fresh}`, or nil if the lease is held.
/// `fresh` is 1 when the counter did not exist: a first start, or a Redis that lost its
/// data (restarted without persistence) — and with it, perhaps, a lease another holder
/// still believes it has. The counter then starts from Redis's clock in milliseconds, so
/// generations keep growing across such a loss.
const ACQUIRE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fresh = 0
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  fresh = 1
end
local gen = redis.call('INCR', KEYS[2])
local token = gen .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {token, fresh}
";
/// Compare-and-extend: `PEXPIRE` only if the lease still holds `ARGV[1]`. Returns 1 if extended.
const RENEW_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";
/// Compare-and-delete: `DEL` only if the lease still holds `ARGV[1]`.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Adds members to a group's warning board: `KEYS[1]` the board, `KEYS[2]` its member set;
/// `ARGV[1]` the caller's token, `ARGV[2]` the `PX` of a new board, `ARGV[3]` how many members
/// are named at most, then id and name pairs. Takes the slot if there is no board. Returns
/// `{state, message, count, named, pttl}` where state is `post` (the caller took the slot),
/// `posting` (someone else is posting) or `shown`.
const BOARD_JOIN_SCRIPT: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'posting', 'token', ARGV[1], 'named', '[]')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local raw = redis.call('HGET', KEYS[1], 'named')
local named = cjson.decode(raw)
local max = tonumber(ARGV[3])
local changed = false
for i = 4, #ARGV, 2 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 and #named < max then
    table.insert(named, {ARGV[i], ARGV[i + 1]})
    changed = true
  end
end
if changed then
  raw = cjson.encode(named)
  redis.call('HSET', KEYS[1], 'named', raw)
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then redis.call('PEXPIRE', KEYS[2], pttl) end
return {state or 'post', redis.call('HGET', KEYS[1], 'msg') or '', redis.call('SCARD', KEYS[2]), raw, pttl}
";
/// The slot's holder posted its message: `ARGV[1]` its token, `ARGV[2]` the message id.
/// Returns `{count, named}`, or nil if the slot is someone else's (or gone).
const BOARD_POSTED_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'state', 'shown', 'msg', ARGV[2])
return {redis.call('SCARD', KEYS[2]), redis.call('HGET', KEYS[1], 'named')}
";
/// Clears the board if it is still the one of token `ARGV[1]` or of message `ARGV[2]`.
const BOARD_CLEAR_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], 'token') == ARGV[1]
  or (ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'msg') == ARGV[2]) then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
";

/// Reads the board's named members (`[[id, name], …]`; an empty Lua table encodes as `{}`).
fn decode_named(raw: &str) -> Vec<BoardMember> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
        return Vec::new();
    };
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    let id = item.get(0)?.as_str()?.parse().ok()?;
                    let name = item.get(1)?.as_str()?.to_owned();
                    Some(BoardMember {
                        id: UserId(id),
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Settings of a [`RedisCoordination`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCoordinationConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every key (every instance of one bot uses the same one).
    pub key_prefix: String,
    /// The pub/sub channel group events travel on.
    pub events_channel: String,
    /// Upper bound of any single Redis call.
    pub op_timeout: Duration,
}

impl RedisCoordinationConfig {
    /// Defaults for `url`: prefix `gmbot:`, channel `gmbot:groups`, 150 ms per call.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "gmbot:".into(),
            events_channel: "gmbot:groups".into(),
            op_timeout: Duration::from_millis(150),
        }
    }
}

/// Leases, claims and group events in Redis. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisCoordination {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    op_timeout: Duration,
    origin: String,
    target: String,
    down: AtomicBool,
    probe_at_ms: AtomicU64,
    started: Instant,
    acquire: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    board_join: redis::Script,
    board_posted: redis::Script,
    board_clear: redis::Script,
}

impl std::fmt::Debug for RedisCoordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordination")
            .field("redis", &self.inner.target)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// `url` without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}

impl RedisCoordination {
    /// An adapter for `config`; does not connect (the first call does). Fails only on a URL
    /// the Redis client cannot parse. Must run inside a tokio runtime.
    pub fn open(config: RedisCoordinationConfig) -> Result<Self, CoordinationError> {
        let target = redact(&config.url);
        let client = redis::Client::open(config.url.as_str()).map_err(|source| {
            CoordinationError::InvalidRedisUrl {
                url: target.clone(),
                source,
            }
        })?;
        let op_timeout = config.op_timeout.max(Duration::from_millis(1));
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(op_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|source| CoordinationError::InvalidRedisUrl {
                url: target.clone(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn,
                prefix: config.key_prefix,
                channel: config.events_channel,
                op_timeout,
                origin: format!("{:016x}", rand::random::<u64>()),
                target,
                down: AtomicBool::new(false),
                probe_at_ms: AtomicU64::new(0),
                started: Instant::now(),
                acquire: redis::Script::new(ACQUIRE_SCRIPT),
                renew: redis::Script::new(RENEW_SCRIPT),
                release: redis::Script::new(RELEASE_SCRIPT),
                board_join: redis::Script::new(BOARD_JOIN_SCRIPT),
                board_posted: redis::Script::new(BOARD_POSTED_SCRIPT),
                board_clear: redis::Script::new(BOARD_CLEAR_SCRIPT),
            }),
        })
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        !self.inner.down.load(Ordering::Acquire)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs one call under the timeout and the outage logic.
    async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = RedisResult<T>>,
    ) -> Result<T, CoordinationError> {
        let inner = &*self.inner;
        if inner.down.load(Ordering::Acquire) {
            let now = self.elapsed_ms();
            let at = inner.probe_at_ms.load(Ordering::Acquire);
            let probe = now >= at
                && inner
                    .probe_at_ms
                    .compare_exchange(
                        at,
                        now + millis(PROBE_INTERVAL),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok();
            if !probe {
                return Err(CoordinationError::Unavailable(format!(
                    "{} is down (skipped until the next probe)",
                    inner.target
                )));
            }
        }
        let reason = match tokio::time::timeout(inner.op_timeout, call).await {
            Ok(Ok(value)) => {
                if inner.down.swap(false, Ordering::AcqRel) {
                    log::info!(redis = inner.target.as_str(); "Redis at {} answers again: leases and claims are shared again", inner.target);
                }
                return Ok(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", inner.op_timeout),
        };
        inner.probe_at_ms.store(
            self.elapsed_ms() + millis(PROBE_INTERVAL),
            Ordering::Release,
        );
        if !inner.down.swap(true, Ordering::AcqRel) {
            log::warn!(
                redis = inner.target.as_str(), error = reason.as_str();
                "Redis at {} is unavailable ({reason}): leases cannot be taken or renewed and \
                 claims fall back to this instance (no further warning until it recovers)",
                inner.target
            );
        }
        Err(CoordinationError::Unavailable(format!(
            "{}: {reason}",
            inner.target
        )))
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.inner.prefix)
    }

    /// Subscribes to group events and hands every one published by *another* instance to
    /// `apply` (and [`GroupEvent::Resync`] after every (re)subscription), until the guard is
    /// dropped. Resubscribes with backoff when the connection drops.
    pub fn subscribe(&self, apply: Arc<dyn Fn(GroupEvent) + Send + Sync>) -> SubscriptionGuard {
        let (tx, rx) = watch::channel(false);
        let client = self.inner.client.clone();
        let channel = self.inner.channel.clone();
        let origin = self.inner.origin.clone();
        let timeout = self.inner.op_timeout * 4;
        let task = tokio::spawn(async move {
            let mut backoff = LISTEN_BACKOFF_MIN;
            loop {
                let connect = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    RedisResult::Ok(pubsub)
                };
                if let Ok(Ok(mut pubsub)) = tokio::time::timeout(timeout, connect).await {
                    backoff = LISTEN_BACKOFF_MIN;
                    apply(GroupEvent::Resync);
                    tx.send_replace(true);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let payload = std::str::from_utf8(msg.get_payload_bytes()).unwrap_or("");
                        let (event, from) = payload.split_once('/').unwrap_or((payload, ""));
                        if from == origin {
                            continue;
                        }
                        match GroupEvent::decode(event) {
                            Some(e) => apply(e),
                            None => log::warn!(
                                channel = channel.as_str();
                                "ignoring a malformed group event on Redis channel {channel}"
                            ),
                        }
                    }
                    tx.send_replace(false);
                    log::info!(channel = channel.as_str(); "group event subscription lost; resubscribing");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
            }
        });
        SubscriptionGuard {
            task,
            subscribed: rx,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn px(d: Duration) -> u64 {
    millis(d).max(1)
}

/// The group-event listener; stops when dropped.
#[derive(Debug)]
pub struct SubscriptionGuard {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl SubscriptionGuard {
    /// Whether the listener is subscribed right now.
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// Waits until the listener is subscribed, at most `within`; whether it is.
    pub async fn wait_subscribed(&self, within: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        tokio::time::timeout(within, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl LeaseStore for RedisCoordination {
    async fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CoordinationError> {
        let key = self.key("lease", name);
        let mut invocation = self.inner.acquire.key(&key);
        invocation
            .key(format!("{key}:gen"))
            .arg(format!("{:016x}", rand::random::<u64>()))
            .arg(px(ttl));
        let mut conn = self.inner.conn.clone();
        let taken: Option<(String, i64)> = self
            .guarded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(taken.map(|(token, fresh)| {
            let generation = token
                .split_once(':')
                .and_then(|(g, _)| g.parse().ok())
                .unwrap_or(0);
            Lease {
                name: name.to_owned(),
                token,
                generation,
                ttl,
                fresh: fresh == 1,
            }
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, CoordinationError> {
        let mut invocation = self.inner.renew.key(self.key("lease", &lease.name));
        invocation.arg(&lease.token).arg(px(lease.ttl));
        let mut conn = self.inner.conn.clone();
        let n: i64 = self
            .guarded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(n == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError> {
        let mut invocation = self.inner.release.key(self.key("lease", &lease.name));
        invocation.arg(&lease.token);
        let mut conn = self.inner.conn.clone();
        let _: i64 = self
            .guarded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ClaimStore for RedisCoordination {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, CoordinationError> {
        let cmd = redis::cmd("SET")
            .arg(self.key("claim", key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(px(ttl))
            .clone();
        let mut conn = self.inner.conn.clone();
        let set: Option<String> = self
            .guarded(async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(set.is_some())
    }

    async fn forget(&self, key: &str) -> Result<(), CoordinationError> {
        let cmd = redis::cmd("DEL").arg(self.key("claim", key)).clone();
        let mut conn = self.inner.conn.clone();
        let _: i64 = self
            .guarded(async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(())
    }

    async fn is_claimed(&self, key: &str) -> Result<bool, CoordinationError> {
        let cmd = redis::cmd("EXISTS").arg(self.key("claim", key)).clone();
        let mut conn = self.inner.conn.clone();
        let n: i64 = self
            .guarded(async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(n == 1)
    }
}

impl RedisCoordination {
    fn board_keys(&self, group: GroupId) -> (String, String) {
        let board = self.key("warn", &group.get().to_string());
        let members = format!("{board}:m");
        (board, members)
    }
}

#[async_trait]
impl WarningBoard for RedisCoordination {
    async fn join(
        &self,
        group: GroupId,
        token: &str,
        members: &[BoardMember],
        max_named: usize,
        ttl: Duration,
    ) -> Result<BoardSlot, CoordinationError> {
        let (board, set) = self.board_keys(group);
        let mut invocation = self.inner.board_join.key(board);
        invocation.key(set).arg(token).arg(px(ttl)).arg(max_named);
        for m in members {
            invocation.arg(m.id.get()).arg(&m.name);
        }
        let mut conn = self.inner.conn.clone();
        let (state, message, count, named, pttl): (String, String, u64, String, i64) = self
            .guarded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(match state.as_str() {
            "post" => BoardSlot::Post,
            "shown" => match message.parse() {
                Ok(id) => BoardSlot::Shown {
                    message: MessageId(id),
                    view: BoardView {
                        count,
                        named: decode_named(&named),
                    },
                    left: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
                },
                Err(_) => {
                    return Err(CoordinationError::Unavailable(format!(
                        "the warning board of group {} holds no message id",
                        group.get()
                    )))
                }
            },
            _ => BoardSlot::Queued,
        })
    }

    async fn posted(
        &self,
        group: GroupId,
        token: &str,
        message: MessageId,
    ) -> Result<Option<BoardView>, CoordinationError> {
        let (board, set) = self.board_keys(group);
        let mut invocation = self.inner.board_posted.key(board);
        invocation.key(set).arg(token).arg(message.0);
        let mut conn = self.inner.conn.clone();
        let got: Option<(u64, String)> = self
            .guarded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(got.map(|(count, named)| BoardView {
            count,
            named: decode_named(&named),
        }))
    }

    async fn shown(
        &self,
        group: GroupId,
    ) -> Result<Option<(MessageId, BoardView)>, CoordinationError> {
        let (board, set) = self.board_keys(group);
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(&board)
            .arg("state")
            .arg("msg")
            .arg("named")
            .cmd("SCARD")
            .arg(&set);
        let mut conn = self.inner.conn.clone();
        let ((state, msg, named), count): ((Option<String>, Option<String>, Option<String>), u64) =
            self.guarded(async move { pipe.query_async(&mut conn).await })
                .await?;
        if state.as_deref() != Some("shown") {
            return Ok(None);
        }
        let Some(message) = msg.and_then(|m| m.parse().ok()) else {
            return Ok(None);
        };
        Ok(Some((
            MessageId(message),
            BoardView {
                count,
                named: decode_named(named.as_deref().unwrap_or("[]")),
            },
        )))
    }

    async fn clear(
        &self,
        group: GroupId,
        token: &str,
        message: Option<MessageId>,
    ) -> Result<(), CoordinationError> {
        let (board, set) = self.board_keys(group);
        let mut invocation = self.inner.board_clear.key(board);
        invocation
            .key(set)
            .arg(token)
            .arg(message.map(|m| m.0.to_string()).unwrap_or_default());
        let mut conn = self.inner.conn.clone();
        let _: i64 = self
            .guarded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl GroupEvents for RedisCoordination {
    async fn publish(&self, event: GroupEvent) {
        let Some(text) = event.encode() else { return };
        let cmd = redis::cmd("PUBLISH")
            .arg(&self.inner.channel)
            .arg(format!("{text}/{}", self.inner.origin))
            .clone();
        let mut conn = self.inner.conn.clone();
        if let Err(err) = self
            .guarded(async move { cmd.query_async::<i64>(&mut conn).await })
            .await
        {
            log::debug!(error:display = err; "group event not published; other instances see the change when their copy expires");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://u:secret@h:1/2"), "redis://***@h:1/2");
    }
}
