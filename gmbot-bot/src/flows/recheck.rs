//! The gate in front of "I've joined" re-checks: a per-member cool-down and a bot-wide budget.
//!
//! Every press makes a `getChatMember` call per linked channel that bypasses the cache. Without
//! a gate, a member (or a crowd) hammering the button spends the read capacity that message
//! checks need; once Telegram answers those with 429s, memberships become unknown and a
//! fail-open group lets non-members through. So a member may re-check at most once per
//! cool-down (5 s by default), and all re-checks together draw on their own token bucket
//! (10/s, bursts of 20 by default), separate from the dispatcher's budgets: when it is empty
//! the press is answered "try again in a moment" without calling Telegram. Time comes from the
//! app's clock.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use gmbot_core::domain::{GroupId, UserId};

use super::warn::Cooldowns;

/// Why a re-check may not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This member re-checked less than the cool-down ago.
    CoolingDown,
    /// Re-checks as a whole are over their budget.
    OverBudget,
}

/// A token bucket on the app's clock (milliseconds).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// The re-check gate; see the [module documentation](self).
pub struct RecheckGate {
    cooldown: Duration,
    last: Cooldowns,
    per_second: f64,
    burst: f64,
    bucket: Mutex<Option<Bucket>>,
}

impl std::fmt::Debug for RecheckGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecheckGate")
            .field("cooldown", &self.cooldown)
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RecheckGate {
    /// A gate with a per-member `cooldown` and a budget of `per_second` re-checks (at least 1)
    /// with bursts of `burst`, remembering at most `capacity` members.
    pub fn new(cooldown: Duration, per_second: u32, burst: u32, capacity: u64) -> Self {
        Self {
            cooldown,
            last: Cooldowns::with_ttl(capacity, cooldown),
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            bucket: Mutex::new(None),
        }
    }

    /// Claims one re-check of `user` in `group` at `now_ms`.
    pub async fn try_claim(
        &self,
        group: GroupId,
        user: UserId,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if !self
            .last
            .try_claim(group, user, self.cooldown, now_ms)
            .await
        {
            return Err(Refused::CoolingDown);
        }
        if !self.take_token(now_ms) {
            // Not checked, so not cooling down: "try again in a moment" must be true.
            self.last.forget(group, user).await;
            return Err(Refused::OverBudget);
        }
        Ok(())
    }

    fn take_token(&self, now_ms: u64) -> bool {
        let mut guard = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = guard.get_or_insert(Bucket {
            tokens: self.burst,
            last_ms: now_ms,
        });
        let elapsed_s = now_ms.saturating_sub(bucket.last_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_s * self.per_second).min(self.burst);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cooldown_per_member_and_a_shared_budget() {
        let gate = RecheckGate::new(Duration::from_secs(5), 1, 2, 100);
        let g = GroupId(-1);
        assert_eq!(gate.try_claim(g, UserId(1), 0).await, Ok(()));
        assert_eq!(
            gate.try_claim(g, UserId(1), 4_999).await,
            Err(Refused::CoolingDown)
        );
        assert_eq!(gate.try_claim(g, UserId(2), 10).await, Ok(()));
        // The burst of 2 is spent: a third member waits for a token.
        assert_eq!(
            gate.try_claim(g, UserId(3), 20).await,
            Err(Refused::OverBudget)
        );
        // Refused for the budget only: the member may try again as soon as a token is back.
        assert_eq!(gate.try_claim(g, UserId(3), 1_100).await, Ok(()));
        // After the cool-down the first member may check again.
        assert_eq!(gate.try_claim(g, UserId(1), 5_000).await, Ok(()));
    }
}
