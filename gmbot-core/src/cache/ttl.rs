//! How long a cached membership lives: a nominal TTL per kind of answer, times a uniform jitter.
//!
//! A member's status rarely changes and a stale "member" only lets one more
//! message through, so it lives long (600 s); a non-member is the person most
//! likely to join any second now, so their entry is short (60 s) — and an
//! explicit invalidation on a seen join makes it shorter still. The jitter
//! (±15 % by default) spreads the expiry of entries written together (a
//! cache warm-up, a burst in a busy group) so they do not all miss, and all
//! call Telegram, in the same second.

use std::time::Duration;

use rand::Rng;

use crate::domain::ChatMemberStatus;

use super::CacheError;

/// The TTL policy: nominal lifetimes and the jitter applied to each entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TtlPolicy {
    /// Nominal lifetime of a subscribed status ([`ChatMemberStatus::is_subscribed`]).
    pub member: Duration,
    /// Nominal lifetime of a non-subscribed status.
    pub non_member: Duration,
    /// Relative jitter: each TTL is multiplied by a factor drawn uniformly
    /// from `[1 - jitter, 1 + jitter]`. `0.0` turns jitter off. Must be in `[0, 1)`.
    pub jitter: f64,
}

impl Default for TtlPolicy {
    /// 600 s for a member, 60 s for a non-member, ±15 %.
    fn default() -> Self {
        Self {
            member: Duration::from_secs(600),
            non_member: Duration::from_secs(60),
            jitter: 0.15,
        }
    }
}

impl TtlPolicy {
    /// The same lifetimes without jitter (tests that need exact expiry instants).
    pub fn without_jitter(self) -> Self {
        Self {
            jitter: 0.0,
            ..self
        }
    }

    /// Checks that the values make sense: non-zero lifetimes, jitter in `[0, 1)`.
    pub fn validate(&self) -> Result<(), CacheError> {
        if self.member.is_zero() || self.non_member.is_zero() {
            return Err(CacheError::InvalidConfig(
                "membership TTLs must be greater than zero".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(CacheError::InvalidConfig(format!(
                "TTL jitter must be in [0, 1), got {}",
                self.jitter
            )));
        }
        Ok(())
    }

    /// The nominal (un-jittered) lifetime for this status.
    pub fn nominal(&self, status: ChatMemberStatus) -> Duration {
        if status.is_subscribed() {
            self.member
        } else {
            self.non_member
        }
    }

    /// A jittered lifetime for a new entry, drawn from the thread's RNG.
    pub fn ttl(&self, status: ChatMemberStatus) -> Duration {
        self.ttl_with(status, &mut rand::rng())
    }

    /// A jittered lifetime for a new entry, drawn from `rng` (reproducible simulations).
    pub fn ttl_with<R: Rng + ?Sized>(&self, status: ChatMemberStatus, rng: &mut R) -> Duration {
        let nominal = self.nominal(status);
        if self.jitter <= 0.0 {
            return nominal;
        }
        let factor = rng.random_range((1.0 - self.jitter)..=(1.0 + self.jitter));
        nominal.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_follows_subscription() {
        let p = TtlPolicy::default();
        assert_eq!(
            p.nominal(ChatMemberStatus::Member),
            Duration::from_secs(600)
        );
        assert_eq!(
            p.nominal(ChatMemberStatus::Restricted { is_member: false }),
            Duration::from_secs(60)
        );
        assert_eq!(
            p.without_jitter().ttl(ChatMemberStatus::Kicked),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(TtlPolicy::default().validate().is_ok());
        let bad = TtlPolicy {
            jitter: 1.0,
            ..TtlPolicy::default()
        };
        assert!(bad.validate().is_err());
        let zero = TtlPolicy {
            non_member: Duration::ZERO,
            ..TtlPolicy::default()
        };
        assert!(zero.validate().is_err());
    }
}
