//! The in-process coordination adapter: leases, claims, warning boards and group events within one process — the single-instance case, and a test double that behaves like the Redis one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    BoardMember, BoardSlot, BoardView, ClaimStore, CoordinationError, GroupEvent, GroupEvents,
    Lease, LeaseStore, WarningBoard,
};
use crate::domain::{GroupId, MessageId, UserId};

/// Claims kept at most; past it, expired ones are dropped first, then the oldest.
const MAX_CLAIMS: usize = 100_000;

/// Leases, claims and group events for one process. Expiry runs on tokio's clock, so a test
/// with paused time controls it.
#[derive(Debug, Default)]
pub struct LocalCoordination {
    leases: Mutex<HashMap<String, (String, Instant)>>,
    claims: Mutex<HashMap<String, Instant>>,
    boards: Mutex<HashMap<GroupId, Board>>,
    generation: AtomicU64,
}

/// One group's warning slot.
#[derive(Debug)]
struct Board {
    token: String,
    message: Option<MessageId>,
    until: Instant,
    members: HashSet<UserId>,
    named: Vec<BoardMember>,
}

impl Board {
    fn view(&self) -> BoardView {
        BoardView {
            count: self.members.len() as u64,
            named: self.named.clone(),
        }
    }
}

impl LocalCoordination {
    /// An empty one.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl LeaseStore for LocalCoordination {
    async fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CoordinationError> {
        let now = Instant::now();
        let mut leases = Self::lock(&self.leases);
        if leases.get(name).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let token = format!("{generation}:{:016x}", rand::random::<u64>());
        leases.insert(name.to_owned(), (token.clone(), now + ttl));
        Ok(Some(Lease {
            name: name.to_owned(),
            token,
            generation,
            ttl,
            fresh: false,
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, CoordinationError> {
        let now = Instant::now();
        let mut leases = Self::lock(&self.leases);
        match leases.get_mut(&lease.name) {
            Some((token, until)) if *token == lease.token && *until > now => {
                *until = now + lease.ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError> {
        let mut leases = Self::lock(&self.leases);
        if leases
            .get(&lease.name)
            .is_some_and(|(t, _)| *t == lease.token)
        {
            leases.remove(&lease.name);
        }
        Ok(())
    }
}

#[async_trait]
impl ClaimStore for LocalCoordination {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, CoordinationError> {
        let now = Instant::now();
        let mut claims = Self::lock(&self.claims);
        if claims.get(key).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        if claims.len() >= MAX_CLAIMS {
            claims.retain(|_, until| *until > now);
            if claims.len() >= MAX_CLAIMS {
                if let Some(oldest) = claims
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(k, _)| k.clone())
                {
                    claims.remove(&oldest);
                }
            }
        }
        claims.insert(key.to_owned(), now + ttl);
        Ok(true)
    }

    async fn forget(&self, key: &str) -> Result<(), CoordinationError> {
        Self::lock(&self.claims).remove(key);
        Ok(())
    }

    async fn is_claimed(&self, key: &str) -> Result<bool, CoordinationError> {
        let now = Instant::now();
        Ok(Self::lock(&self.claims)
            .get(key)
            .is_some_and(|until| *until > now))
    }
}

#[async_trait]
impl WarningBoard for LocalCoordination {
    async fn join(
        &self,
        group: GroupId,
        token: &str,
        members: &[BoardMember],
        max_named: usize,
        ttl: Duration,
    ) -> Result<BoardSlot, CoordinationError> {
        let now = Instant::now();
        let mut boards = Self::lock(&self.boards);
        boards.retain(|_, b| b.until > now);
        let fresh = !boards.contains_key(&group);
        let board = boards.entry(group).or_insert_with(|| Board {
            token: token.to_owned(),
            message: None,
            until: now + ttl,
            members: HashSet::new(),
            named: Vec::new(),
        });
        for m in members {
            if board.members.insert(m.id) && board.named.len() < max_named {
                board.named.push(m.clone());
            }
        }
        Ok(match board.message {
            _ if fresh => BoardSlot::Post,
            None => BoardSlot::Queued,
            Some(message) => BoardSlot::Shown {
                message,
                view: board.view(),
                left: board.until - now,
            },
        })
    }

    async fn posted(
        &self,
        group: GroupId,
        token: &str,
        message: MessageId,
    ) -> Result<Option<BoardView>, CoordinationError> {
        let now = Instant::now();
        let mut boards = Self::lock(&self.boards);
        Ok(match boards.get_mut(&group) {
            Some(b) if b.token == token && b.until > now => {
                b.message = Some(message);
                Some(b.view())
            }
            _ => None,
        })
    }

    async fn shown(
        &self,
        group: GroupId,
    ) -> Result<Option<(MessageId, BoardView)>, CoordinationError> {
        let now = Instant::now();
        let boards = Self::lock(&self.boards);
        Ok(boards
            .get(&group)
            .filter(|b| b.until > now)
            .and_then(|b| b.message.map(|m| (m, b.view()))))
    }

    async fn clear(
        &self,
        group: GroupId,
        token: &str,
        message: Option<MessageId>,
    ) -> Result<(), CoordinationError> {
        let mut boards = Self::lock(&self.boards);
        if boards
            .get(&group)
            .is_some_and(|b| b.token == token || (message.is_some() && b.message == message))
        {
            boards.remove(&group);
        }
        Ok(())
    }
}

#[async_trait]
impl GroupEvents for LocalCoordination {
    /// One process: nobody else to tell (the publisher applied the change itself).
    async fn publish(&self, _event: GroupEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn claims_win_once_per_ttl_and_can_be_forgotten() {
        let c = LocalCoordination::new();
        let ttl = Duration::from_secs(60);
        assert!(c.claim("w:1", ttl).await.expect("answers"));
        assert!(!c.claim("w:1", ttl).await.expect("answers"));
        assert!(c.claim("w:2", ttl).await.expect("answers"), "per key");
        tokio::time::sleep(ttl).await;
        assert!(c.claim("w:1", ttl).await.expect("answers"), "expired");
        c.forget("w:1").await.expect("answers");
        assert!(c.claim("w:1", ttl).await.expect("answers"), "forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_renewed_only_with_its_token() {
        let c = LocalCoordination::new();
        let ttl = Duration::from_secs(5);
        let a = c
            .try_acquire("r", ttl)
            .await
            .expect("answers")
            .expect("free");
        assert!(c.try_acquire("r", ttl).await.expect("answers").is_none());
        let forged = Lease {
            token: "1:0".into(),
            ..a.clone()
        };
        assert!(!c.renew(&forged).await.expect("answers"));
        c.release(&forged).await.expect("answers");
        assert!(
            c.try_acquire("r", ttl).await.expect("answers").is_none(),
            "a forged release changes nothing"
        );
        tokio::time::sleep(ttl).await;
        assert!(!c.renew(&a).await.expect("answers"), "expired");
        let b = c
            .try_acquire("r", ttl)
            .await
            .expect("answers")
            .expect("expired, so free");
        assert!(b.generation > a.generation);
    }
}
