//! `update_id` de-duplication.
//!
//! Telegram re-delivers a webhook update whenever it does not get a 2xx in time, and a
//! `getUpdates` batch is re-sent if its confirmation was lost, so the same update can arrive
//! twice. [`RecentIds`] catches repeats within one process (a bounded set of the latest ids);
//! [`RedisClaims`] catches them across instances behind one load balancer: the first
//! instance to `SET key NX EX` an id processes it, the others skip it.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

/// The most recent update ids seen by this process, bounded.
#[derive(Debug)]
pub struct RecentIds {
    inner: Mutex<Ring>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Ring {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl RecentIds {
    /// Remembers at most `capacity` ids (at least one); the oldest are forgotten first.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Mutex::new(Ring {
                set: HashSet::with_capacity(capacity.min(1 << 16)),
                order: VecDeque::with_capacity(capacity.min(1 << 16)),
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // The ring is consistent after every statement: a panic elsewhere cannot corrupt it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `id`; `false` if it was already there (a repeat).
    pub fn insert(&self, id: i64) -> bool {
        let mut ring = self.lock();
        if !ring.set.insert(id) {
            return false;
        }
        ring.order.push_back(id);
        while ring.order.len() > self.capacity {
            if let Some(old) = ring.order.pop_front() {
                ring.set.remove(&old);
            }
        }
        true
    }

    /// Forgets `id` (an update that was refused after all, so that Telegram's retry is taken).
    pub fn remove(&self, id: i64) {
        let mut ring = self.lock();
        if ring.set.remove(&id) {
            // It was inserted moments ago: search from the back.
            if let Some(pos) = ring.order.iter().rposition(|&x| x == id) {
                ring.order.remove(pos);
            }
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: i64) -> bool {
        self.lock().set.contains(&id)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most claims sent to Redis in one round trip.
pub const MAX_CLAIM_BATCH: usize = 64;

type ClaimRequest = (i64, oneshot::Sender<Result<bool, redis::RedisError>>);

/// Claims on update ids in Redis, shared by every instance of one bot.
///
/// Claims are batched: a background task sends whatever claims are waiting (up to
/// [`MAX_CLAIM_BATCH`]) as one pipeline of `SET NX EX`, so updates arriving together cost one
/// round trip. Nothing waits for a batch to fill: a lone update goes out at once, and claims
/// that arrive while a pipeline is in flight form the next one.
#[derive(Clone)]
pub struct RedisClaims {
    target: ClaimTarget,
    /// Started by the first claim, on the runtime that makes it; ends when every clone is gone.
    queue: Arc<OnceLock<mpsc::UnboundedSender<ClaimRequest>>>,
}

/// What the batching task needs (not the queue's sender, or the task would never end).
#[derive(Clone)]
struct ClaimTarget {
    conn: ConnectionManager,
    prefix: Arc<str>,
    ttl_secs: u64,
    round_trips: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedisClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClaims")
            .field("prefix", &self.target.prefix)
            .field("ttl_secs", &self.target.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl RedisClaims {
    /// Claims under `prefix` (e.g. `gmbot:u:<bot id>:`) that expire after `ttl` (Telegram keeps
    /// an undelivered update for 24 hours; an hour covers its retries). Connects lazily, so it
    /// succeeds while Redis is down; fails only on a malformed URL.
    pub fn new(
        url: &str,
        prefix: impl Into<String>,
        ttl: Duration,
        op_timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(op_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            target: ClaimTarget {
                conn,
                prefix: prefix.into().into(),
                ttl_secs: ttl.as_secs().max(1),
                round_trips: Arc::new(AtomicU64::new(0)),
            },
            queue: Arc::new(OnceLock::new()),
        })
    }

    /// The key of one update.
    pub fn key(&self, update_id: i64) -> String {
        self.target.key(update_id)
    }

    /// `SET key 1 NX EX ttl` (batched with concurrent claims): `true` if this call claimed the
    /// update (process it), `false` if another delivery already did (skip it).
    pub async fn claim(&self, update_id: i64) -> Result<bool, redis::RedisError> {
        let queue = self.queue.get_or_init(|| {
            // Unbounded, yet bounded in practice: each worker waits on at most one claim.
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_batches(self.target.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        queue.send((update_id, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Pipelines sent to Redis so far, each answering a batch of claims.
    pub fn round_trips(&self) -> u64 {
        self.target.round_trips.load(Ordering::Relaxed)
    }

    /// Removes this process's claim (an update that could not be queued after all).
    pub async fn release(&self, update_id: i64) -> Result<(), redis::RedisError> {
        let mut conn = self.target.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(update_id))
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
    }
}

impl ClaimTarget {
    fn key(&self, update_id: i64) -> String {
        format!("{}{update_id}", self.prefix)
    }

    /// One pipeline of `SET key 1 NX EX ttl`, one answer per id, in order.
    async fn claim_all(&self, ids: &[i64]) -> Result<Vec<bool>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for &id in ids {
            pipe.cmd("SET")
                .arg(self.key(id))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(self.ttl_secs);
        }
        let mut conn = self.conn.clone();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let replies: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(replies.into_iter().map(|r| r.is_some()).collect())
    }
}

/// Sends the waiting claims as one pipeline, answers each, and repeats until every
/// [`RedisClaims`] clone is dropped.
async fn send_batches(target: ClaimTarget, mut rx: mpsc::UnboundedReceiver<ClaimRequest>) {
    let mut batch = Vec::with_capacity(MAX_CLAIM_BATCH);
    while rx.recv_many(&mut batch, MAX_CLAIM_BATCH).await > 0 {
        let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        match target.claim_all(&ids).await {
            // A short reply (never expected) drops the rest, and their claims fail.
            Ok(claimed) => {
                for ((_, reply), claimed) in batch.drain(..).zip(claimed) {
                    let _ = reply.send(Ok(claimed));
                }
            }
            Err(e) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        batch.clear();
    }
}

fn stopped() -> redis::RedisError {
    (redis::ErrorKind::Io, "the update claim task has stopped").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_bounded_window() {
        let r = RecentIds::new(3);
        assert!(r.insert(1) && r.insert(2) && r.insert(3));
        assert!(!r.insert(2), "repeat");
        assert!(r.insert(4));
        assert_eq!(r.len(), 3);
        assert!(!r.contains(1), "oldest forgotten");
        assert!(r.insert(1), "a forgotten id is new again");
        assert!(!r.contains(2));
    }

    #[test]
    fn remove_takes_the_id_out_of_both_structures() {
        let r = RecentIds::new(2);
        assert!(r.insert(10));
        r.remove(10);
        assert!(!r.contains(10) && r.is_empty());
        assert!(r.insert(10) && r.insert(11) && r.insert(12));
        assert_eq!(r.len(), 2);
        assert!(r.contains(11) && r.contains(12));
        r.remove(99);
        assert_eq!(r.len(), 2);
    }

    const REDIS_URL: &str = "redis://127.0.0.1:6379";

    /// A unique key prefix on a reachable Redis (panics with how to start it otherwise).
    fn redis_prefix(test: &str) -> (redis::Connection, String) {
        let conn = redis::Client::open(REDIS_URL)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).map(|_| c));
        let conn = conn.unwrap_or_else(|e| {
            panic!(
                "Redis is unreachable at {REDIS_URL} ({e}). This test needs it: start it with \
                 `redis-server --daemonize yes`"
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        (
            conn,
            format!("gmbot:test:{test}:{}:{nanos}:", std::process::id()),
        )
    }

    async fn claim_burst(claims: &RedisClaims, ids: std::ops::Range<i64>) -> Vec<bool> {
        let mut tasks = Vec::new();
        for id in ids {
            let claims = claims.clone();
            tasks.push(tokio::spawn(async move { claims.claim(id).await }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("claim task").expect("claim in Redis"));
        }
        answers
    }

    #[tokio::test]
    async fn a_burst_of_claims_is_one_round_trip_and_duplicates_are_refused_across_batchers() {
        let (mut conn, prefix) = redis_prefix("claims-batch");
        let ttl = Duration::from_secs(60);
        let timeout = Duration::from_secs(2);
        let a = RedisClaims::new(REDIS_URL, prefix.clone(), ttl, timeout).expect("claims a");
        let b = RedisClaims::new(REDIS_URL, prefix.clone(), ttl, timeout).expect("claims b");

        let first = claim_burst(&a, 0..MAX_CLAIM_BATCH as i64).await;
        assert!(
            first.iter().all(|&c| c),
            "fresh ids are all claimed: {first:?}"
        );
        assert_eq!(
            a.round_trips(),
            1,
            "a burst of {MAX_CLAIM_BATCH} is one pipeline"
        );

        // Half overlaps what `a` claimed: those are refused, the rest claimed, in one trip.
        let second = claim_burst(&b, 32..96).await;
        assert!(
            second[..32].iter().all(|&c| !c),
            "claimed elsewhere: {second:?}"
        );
        assert!(second[32..].iter().all(|&c| c), "fresh ids: {second:?}");
        assert_eq!(b.round_trips(), 1);

        // A repeat inside one batch: exactly one of the two wins.
        let same = {
            let (x, y) = tokio::join!(a.claim(500), a.claim(500));
            [x.expect("claim"), y.expect("claim")]
        };
        assert_eq!(same.iter().filter(|&&c| c).count(), 1, "{same:?}");
        assert_eq!(a.round_trips(), 2);

        // A lone claim does not wait for company.
        assert!(b.claim(501).await.expect("claim"));
        assert!(!a.claim(501).await.expect("claim"));

        let keys: Vec<String> = (0..96).chain([500, 501]).map(|id| a.key(id)).collect();
        redis::cmd("DEL")
            .arg(&keys)
            .query::<i64>(&mut conn)
            .expect("clean up test keys");
    }

    #[tokio::test]
    async fn claims_fail_when_redis_is_unreachable() {
        // Nothing listens on port 1: every claim of the batch gets the error.
        let claims = RedisClaims::new(
            "redis://127.0.0.1:1",
            "gmbot:test:down:",
            Duration::from_secs(60),
            Duration::from_millis(200),
        )
        .expect("a well-formed URL");
        let (x, y) = tokio::join!(claims.claim(1), claims.claim(2));
        assert!(x.is_err() && y.is_err(), "{x:?} {y:?}");
    }
}
