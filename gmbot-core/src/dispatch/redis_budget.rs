//! The Redis adapter of [`SharedBudget`]: GCRA buckets, 429 pauses and instance heartbeats in Lua scripts.
//!
//! Keys, all under one prefix (the bot's: `gmbot:b:{bot_id}:` in the bot, so
//! tenants and test runs never share a bucket):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}w`, `{p}r`, `{p}d`, `{p}rd`, `{p}bk` | string | the write, restrict, delete, read and bulk read bucket's theoretical arrival time (µs of Redis time) |
//! | `{p}c:{chat}` | string | one chat's bucket, likewise |
//! | `{p}pause`, `{p}pause:{chat}` | string | end of a 429 pause of the bot / of a chat (µs) |
//! | `{p}resume` | string | when instances return from their local fallback (µs) |
//! | `{p}inst` | sorted set | live instances, scored by their last heartbeat (ms) |
//!
//! **Time is Redis's** (`TIME` inside the scripts): every instance's slots are
//! measured on one clock, so instances whose clocks disagree still never
//! crowd each other. Every key expires by itself (`PX`) once it no longer
//! constrains anything. Every call is one `EVALSHA` (an `EVAL` after a Redis
//! restart emptied the script cache), bounded by `op_timeout`. A key holding
//! something that is not a number, or a reply of the wrong shape, is a
//! [`BudgetError::Protocol`], never a panic.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;

use super::budget::{
    BudgetBucket, BudgetError, Heartbeat, Reservation, ReserveAnswer, ReserveOptions, SharedBudget,
    SlotRequest,
};
use crate::domain::ChatId;

/// GCRA over one or two buckets per request.
///
/// `KEYS[1]` the bot's pause, `KEYS[2]` the resume mark, then per request its
/// bucket keys and, if it names a chat, that chat's pause key. `ARGV`: horizon,
/// grace, resume gap (µs, µs, count), the number of requests, then per request:
/// number of buckets, slots wanted, whether a chat pause key follows, and per
/// bucket its interval and tolerance (µs, tolerance = (burst − 1) × interval).
///
/// A slot goes at `s = max(now, tat − tolerance, resume + gap × interval +
/// grace)` over the request's buckets, if `s − now ≤ horizon`; each bucket's
/// TAT becomes `max(tat, s) + interval`. Reply: the bot's pause (µs, 0 = none;
/// nothing reserved while it lasts), then per request: chat pause (µs),
/// retry-in (µs, −1 = not needed), the number of slots, the slots (µs from now).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function read(key)
  local v = redis.call('GET', key)
  if not v then return 0 end
  local n = tonumber(v)
  if not n then return error('GMBOT budget: key ' .. key .. ' does not hold a number') end
  return n
end
local function remaining(key)
  local until_ = read(key)
  if until_ > now then return until_ - now end
  return 0
end
local horizon = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local gap = tonumber(ARGV[3])
local nreq = tonumber(ARGV[4])
local paused = remaining(KEYS[1])
local out = {paused}
if paused > 0 then return out end
local resume = read(KEYS[2])
local ki = 3
local ai = 5
for q = 1, nreq do
  local nk = tonumber(ARGV[ai])
  local count = tonumber(ARGV[ai + 1])
  local has_pause = ARGV[ai + 2] == '1'
  ai = ai + 3
  local keys, tats, ints, tols = {}, {}, {}, {}
  for i = 1, nk do
    keys[i] = KEYS[ki]
    ki = ki + 1
    ints[i] = tonumber(ARGV[ai])
    tols[i] = tonumber(ARGV[ai + 1])
    ai = ai + 2
    tats[i] = read(keys[i])
  end
  local chat_paused = 0
  if has_pause then
    chat_paused = remaining(KEYS[ki])
    ki = ki + 1
  end
  local slots = {}
  local retry = -1
  if chat_paused == 0 then
    for j = 1, count do
      local s = now
      for i = 1, nk do
        local e = tats[i] - tols[i]
        if e > s then s = e end
        if resume > 0 then
          local f = resume + gap * ints[i] + grace
          if f > s then s = f end
        end
      end
      if s - now > horizon then
        retry = s - now - horizon
        break
      end
      for i = 1, nk do
        local base = tats[i]
        if s > base then base = s end
        tats[i] = base + ints[i]
      end
      slots[#slots + 1] = s - now
    end
    if #slots > 0 then
      for i = 1, nk do
        local ttl = math.floor((tats[i] - now) / 1000) + 1000
        redis.call('SET', keys[i], string.format('%.0f', tats[i]), 'PX', ttl)
      end
    end
  end
  out[#out + 1] = chat_paused
  out[#out + 1] = retry
  out[#out + 1] = #slots
  for j = 1, #slots do out[#out + 1] = slots[j] end
end
return out
";

/// `KEYS[1]` the instance set, `KEYS[2]` the bot's pause; `ARGV[1]` the
/// instance id, `ARGV[2]` its lifetime (ms). Reply: live instances, pause (µs).
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local life = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - life)
redis.call('PEXPIRE', KEYS[1], life * 2)
local live = redis.call('ZCARD', KEYS[1])
local paused = 0
local v = redis.call('GET', KEYS[2])
if v then
  local p = tonumber(v)
  if not p then return error('GMBOT budget: key ' .. KEYS[2] .. ' does not hold a number') end
  if p > now_us then paused = p - now_us end
end
return {live, paused}
";

/// `KEYS[1]` a pause or resume key; `ARGV[1]` µs from now. Moves the key's
/// instant to `now + ARGV[1]` unless it is later already; it expires
/// `ARGV[2]` ms after that instant. Reply: µs from now to the key's instant.
const EXTEND: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local want = now + tonumber(ARGV[1])
local cur = 0
local v = redis.call('GET', KEYS[1])
if v then
  cur = tonumber(v)
  if not cur then return error('GMBOT budget: key ' .. KEYS[1] .. ' does not hold a number') end
end
if want > cur then
  redis.call('SET', KEYS[1], string.format('%.0f', want),
    'PX', math.floor(tonumber(ARGV[1]) / 1000) + tonumber(ARGV[2]))
  cur = want
end
return {cur - now}
";

/// How long a resume mark outlives its instant: long enough to cover the
/// largest gap it imposes (`(instances + 1) × 3 s` for a group at 20/min).
const RESUME_KEEP_MS: u64 = 10 * 60 * 1000;

/// Settings of a [`RedisBudget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBudgetConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every key (give each bot, and each test, its own).
    pub key_prefix: String,
    /// Upper bound of one call (connection included).
    pub op_timeout: Duration,
}

impl RedisBudgetConfig {
    /// Defaults for `url`: prefix `gmbot:b:`, 250 ms per call.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "gmbot:b:".into(),
            op_timeout: Duration::from_millis(250),
        }
    }
}

/// The bot's budgets in Redis. Cheap to clone; connects on first use and reconnects by itself.
#[derive(Clone)]
pub struct RedisBudget {
    conn: ConnectionManager,
    prefix: String,
    target: String,
    op_timeout: Duration,
    reserve: redis::Script,
    heartbeat: redis::Script,
    extend: redis::Script,
}

impl std::fmt::Debug for RedisBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudget")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A positive µs count as a duration, `None` for 0.
fn pause_of(us: i64) -> Option<Duration> {
    u64::try_from(us)
        .ok()
        .filter(|&us| us > 0)
        .map(Duration::from_micros)
}

impl RedisBudget {
    /// A budget for `config`; does not connect yet.
    pub fn new(config: &RedisBudgetConfig) -> Result<Self, BudgetError> {
        if config.op_timeout.is_zero() {
            return Err(BudgetError::Config(
                "the Redis call timeout must be greater than zero".into(),
            ));
        }
        let target = redact(&config.url);
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| BudgetError::Config(format!("{target} is not a Redis URL: {e}")))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            .set_response_timeout(Some(config.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(config.op_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| BudgetError::Config(format!("{target}: {e}")))?;
        Ok(Self {
            conn,
            prefix: config.key_prefix.clone(),
            target,
            op_timeout: config.op_timeout,
            reserve: redis::Script::new(RESERVE),
            heartbeat: redis::Script::new(HEARTBEAT),
            extend: redis::Script::new(EXTEND),
        })
    }

    fn bucket_key(&self, bucket: BudgetBucket) -> String {
        let p = &self.prefix;
        match bucket {
            BudgetBucket::Write => format!("{p}w"),
            BudgetBucket::Restrict => format!("{p}r"),
            BudgetBucket::Delete => format!("{p}d"),
            BudgetBucket::Read => format!("{p}rd"),
            BudgetBucket::BulkRead => format!("{p}bk"),
            BudgetBucket::Chat(c) => format!("{p}c:{}", c.get()),
        }
    }

    fn pause_key(&self, chat: Option<ChatId>) -> String {
        match chat {
            Some(c) => format!("{}pause:{}", self.prefix, c.get()),
            None => format!("{}pause", self.prefix),
        }
    }

    fn protocol(&self, reason: impl Into<String>) -> BudgetError {
        BudgetError::Protocol {
            target: self.target.clone(),
            reason: reason.into(),
        }
    }

    /// Runs one script under the timeout; the reply must be an array of integers.
    async fn run(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<Vec<i64>, BudgetError> {
        let mut conn = self.conn.clone();
        let value = match tokio::time::timeout(
            self.op_timeout,
            invocation.invoke_async::<Value>(&mut conn),
        )
        .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e))
                if !(e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()) =>
            {
                // Redis answered, with an error: a script error on a foreign value, a
                // wrong type, a reply that does not parse.
                return Err(self.protocol(e.to_string()));
            }
            Ok(Err(e)) => {
                return Err(BudgetError::Unavailable {
                    target: self.target.clone(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(BudgetError::Unavailable {
                    target: self.target.clone(),
                    reason: format!("no answer within {:?}", self.op_timeout),
                })
            }
        };
        match value {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::Int(n) => Ok(n),
                    other => Err(self.protocol(format!("expected integers, got {other:?}"))),
                })
                .collect(),
            other => Err(self.protocol(format!("expected an array, got {other:?}"))),
        }
    }

    fn parse_reserve(
        &self,
        reply: &[i64],
        requests: &[SlotRequest],
    ) -> Result<ReserveAnswer, BudgetError> {
        let short = || self.protocol("the reservation reply is too short");
        let mut it = reply.iter().copied();
        let paused = it.next().ok_or_else(short)?;
        if paused > 0 {
            return Ok(ReserveAnswer {
                paused_for: pause_of(paused),
                reservations: Vec::new(),
            });
        }
        let mut reservations = Vec::with_capacity(requests.len());
        for request in requests {
            let chat_paused = it.next().ok_or_else(short)?;
            let retry = it.next().ok_or_else(short)?;
            let n = it.next().ok_or_else(short)?;
            let n = u32::try_from(n)
                .ok()
                .filter(|&n| n <= request.count)
                .ok_or_else(|| {
                    self.protocol(format!("{n} slots for a request of {}", request.count))
                })?;
            let mut slots = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let us = it.next().ok_or_else(short)?;
                let us = u64::try_from(us)
                    .map_err(|_| self.protocol(format!("a slot {us} µs in the past")))?;
                slots.push(Duration::from_micros(us));
            }
            reservations.push(Reservation {
                slots,
                retry_in: u64::try_from(retry).ok().map(Duration::from_micros),
                paused_for: pause_of(chat_paused),
            });
        }
        if it.next().is_some() {
            return Err(self.protocol("the reservation reply is too long"));
        }
        Ok(ReserveAnswer {
            paused_for: None,
            reservations,
        })
    }
}

#[async_trait]
impl SharedBudget for RedisBudget {
    fn target(&self) -> &str {
        &self.target
    }

    async fn reserve(
        &self,
        requests: &[SlotRequest],
        options: ReserveOptions,
    ) -> Result<ReserveAnswer, BudgetError> {
        let mut inv = self.reserve.prepare_invoke();
        inv.key(self.pause_key(None))
            .key(format!("{}resume", self.prefix))
            .arg(micros(options.horizon))
            .arg(micros(options.grace))
            .arg(options.resume_gap)
            .arg(requests.len());
        for request in requests {
            if request.buckets.is_empty() || request.buckets.len() > 2 || request.count == 0 {
                return Err(BudgetError::Config(format!(
                    "a slot request names {} buckets for {} slots",
                    request.buckets.len(),
                    request.count
                )));
            }
            let chat = request.buckets.iter().find_map(|(b, _)| match b {
                BudgetBucket::Chat(c) => Some(*c),
                _ => None,
            });
            inv.arg(request.buckets.len())
                .arg(request.count)
                .arg(u8::from(chat.is_some()));
            for (bucket, rate) in &request.buckets {
                inv.key(self.bucket_key(*bucket));
                let interval = micros(rate.interval).max(1);
                inv.arg(interval)
                    .arg(interval.saturating_mul(u64::from(rate.burst.max(1) - 1)));
            }
            if let Some(c) = chat {
                inv.key(self.pause_key(Some(c)));
            }
        }
        let reply = self.run(&inv).await?;
        self.parse_reserve(&reply, requests)
    }

    async fn heartbeat(
        &self,
        instance: &str,
        lifetime: Duration,
    ) -> Result<Heartbeat, BudgetError> {
        let mut inv = self.heartbeat.prepare_invoke();
        inv.key(format!("{}inst", self.prefix))
            .key(self.pause_key(None))
            .arg(instance)
            .arg(
                u64::try_from(lifetime.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        match self.run(&inv).await?.as_slice() {
            [live, paused] => Ok(Heartbeat {
                // At least the caller, who has just beaten.
                live_instances: u32::try_from(*live)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| self.protocol(format!("{live} live instances")))?,
                paused_for: pause_of(*paused),
            }),
            other => Err(self.protocol(format!("a heartbeat reply of {} values", other.len()))),
        }
    }

    async fn resume(&self, settle: Duration) -> Result<(), BudgetError> {
        let mut inv = self.extend.prepare_invoke();
        inv.key(format!("{}resume", self.prefix))
            .arg(micros(settle))
            .arg(RESUME_KEEP_MS);
        match self.run(&inv).await?.as_slice() {
            [_] => Ok(()),
            other => Err(self.protocol(format!("a resume reply of {} values", other.len()))),
        }
    }

    async fn pause(&self, chat: Option<ChatId>, duration: Duration) -> Result<(), BudgetError> {
        let mut inv = self.extend.prepare_invoke();
        inv.key(self.pause_key(chat))
            .arg(micros(duration))
            .arg(1_000);
        match self.run(&inv).await?.as_slice() {
            [_] => Ok(()),
            other => Err(self.protocol(format!("a pause reply of {} values", other.len()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
