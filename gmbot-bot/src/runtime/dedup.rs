//! `update_id` de-duplication.
//!
//! Telegram re-delivers a webhook update whenever it does not get a 2xx in time, and a
//! `getUpdates` batch is re-sent if its confirmation was lost, so the same update can arrive
//! twice. [`RecentIds`] catches repeats within one process (a bounded set of the latest ids);
//! [`RedisClaims`] catches them across instances behind one load balancer: the first
//! instance to `SET key NX EX` an id processes it, the others skip it.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

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

/// Claims on update ids in Redis, shared by every instance of one bot.
#[derive(Clone)]
pub struct RedisClaims {
    conn: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for RedisClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClaims")
            .field("prefix", &self.prefix)
            .field("ttl_secs", &self.ttl_secs)
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
            conn,
            prefix: prefix.into(),
            ttl_secs: ttl.as_secs().max(1),
        })
    }

    /// The key of one update.
    pub fn key(&self, update_id: i64) -> String {
        format!("{}{update_id}", self.prefix)
    }

    /// `SET key 1 NX EX ttl`: `true` if this call claimed the update (process it), `false` if
    /// another delivery already did (skip it).
    pub async fn claim(&self, update_id: i64) -> Result<bool, redis::RedisError> {
        let mut conn = self.conn.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(update_id))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(self.ttl_secs)
            .query_async(&mut conn)
            .await?;
        Ok(reply.is_some())
    }

    /// Removes this process's claim (an update that could not be queued after all).
    pub async fn release(&self, update_id: i64) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(update_id))
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
    }
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
}
