//! Budgets and retry policy of the outbound dispatcher.
//!
//! Defaults follow Telegram's published limits (TELEGRAM.md, "Limits"):
//! about 30 messages/s for the bot overall, about 1 message/s per chat and at
//! most 20 messages per minute in one group. Buckets hold one token by default
//! so the limits hold in *every* window, not only on average: no second ever
//! sees more than 30 budgeted calls, no 60 s window more than 20 messages in
//! one group. Raising a burst lets short bursts through at the cost of up to
//! `burst − 1` extra calls in the first window.

use std::time::Duration;

use super::DispatchError;

/// Settings of a [`Dispatcher`](super::Dispatcher); validated by [`DispatchConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchConfig {
    /// Messages (send, edit, invite links) per second for the whole bot.
    pub global_per_second: u32,
    /// Global bucket capacity (calls that may go at once after an idle period).
    pub global_burst: u32,
    /// Restrictions (restrict, unrestrict, kick, ban a sender chat) per second for the whole
    /// bot: the restrict budget. They post nothing, so they do not draw on the message
    /// budget; a raid's members are muted at this rate.
    pub actions_per_second: u32,
    /// Restrict bucket capacity.
    pub action_burst: u32,
    /// Deletions (`deleteMessage`, `deleteMessages` of up to 100 messages) per second for the
    /// whole bot: the delete budget, apart from the restrict budget so that a raid's bulk
    /// deletions and its mutes do not wait for each other.
    pub deletes_per_second: u32,
    /// Delete bucket capacity.
    pub delete_burst: u32,
    /// `sendMessage` calls per minute into one group or channel.
    pub group_per_minute: u32,
    /// Per-group bucket capacity.
    pub group_burst: u32,
    /// `sendMessage` calls per second into one private chat.
    pub private_per_second: u32,
    /// Per-private-chat bucket capacity.
    pub private_burst: u32,
    /// Optional separate budget for reads (`getChatMember`, `getChatAdministrators`)
    /// per second; `None` = reads are not throttled (Telegram gives them their own,
    /// looser flood limits; they never draw on the message budget).
    pub reads_per_second: Option<u32>,
    /// Read bucket capacity (used only with `reads_per_second`); at least 20 ms of the rate,
    /// so that the timer's millisecond granularity does not eat into a high read rate.
    pub read_burst: u32,
    /// Optional budget for reads in the [bulk lane](super::Lane::Bulk) per second
    /// (audits: member listings and membership checks; reconciliation's checks).
    /// Those reads then draw on this budget instead of `reads_per_second`, so bulk work
    /// has its own pace and never uses up the budget of the bot's own checks.
    /// `None` = bulk reads are budgeted like any other read.
    pub bulk_reads_per_second: Option<u32>,
    /// Bulk read bucket capacity (used only with `bulk_reads_per_second`); at least 20 ms of
    /// the rate, like `read_burst`.
    pub bulk_burst: u32,
    /// A call waiting longer than this goes before every call that arrived
    /// after it, whatever their lanes: the bound that keeps low lanes from starving.
    pub starvation_limit: Duration,
    /// Retries after a 5xx or network error before the error is returned.
    pub max_retries: u32,
    /// First backoff after a 5xx or network error; doubles with each retry.
    pub backoff_base: Duration,
    /// Cap of one backoff.
    pub backoff_max: Duration,
    /// Retries after `429 Too Many Requests` before the error is returned.
    pub max_rate_limit_retries: u32,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            global_per_second: 30,
            global_burst: 1,
            actions_per_second: 30,
            action_burst: 1,
            deletes_per_second: 30,
            delete_burst: 1,
            group_per_minute: 20,
            group_burst: 1,
            private_per_second: 1,
            private_burst: 1,
            reads_per_second: None,
            read_burst: 1,
            bulk_reads_per_second: None,
            bulk_burst: 1,
            starvation_limit: Duration::from_secs(5),
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_rate_limit_retries: 5,
        }
    }
}

fn positive(value: u32, setting: &'static str) -> Result<(), DispatchError> {
    if value == 0 {
        return Err(DispatchError::Config {
            setting,
            reason: "must be at least 1",
        });
    }
    Ok(())
}

impl DispatchConfig {
    /// Checks that every rate and burst is at least 1 and the backoff is sane.
    pub fn validate(&self) -> Result<(), DispatchError> {
        positive(self.global_per_second, "global_per_second")?;
        positive(self.global_burst, "global_burst")?;
        positive(self.actions_per_second, "actions_per_second")?;
        positive(self.action_burst, "action_burst")?;
        positive(self.deletes_per_second, "deletes_per_second")?;
        positive(self.delete_burst, "delete_burst")?;
        positive(self.group_per_minute, "group_per_minute")?;
        positive(self.group_burst, "group_burst")?;
        positive(self.private_per_second, "private_per_second")?;
        positive(self.private_burst, "private_burst")?;
        if let Some(r) = self.reads_per_second {
            positive(r, "reads_per_second")?;
        }
        positive(self.read_burst, "read_burst")?;
        if let Some(r) = self.bulk_reads_per_second {
            positive(r, "bulk_reads_per_second")?;
        }
        positive(self.bulk_burst, "bulk_burst")?;
        if self.backoff_base.is_zero() {
            return Err(DispatchError::Config {
                setting: "backoff_base",
                reason: "must be greater than zero",
            });
        }
        if self.backoff_max < self.backoff_base {
            return Err(DispatchError::Config {
                setting: "backoff_max",
                reason: "must not be shorter than backoff_base",
            });
        }
        Ok(())
    }

    /// The backoff before retry number `retry` (0-based) after a transient
    /// error: `min(base · 2^retry, max)`, jittered uniformly into its upper
    /// half so that callers failing together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let full = self
            .backoff_base
            .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max);
        let full_ns = u64::try_from(full.as_nanos()).unwrap_or(u64::MAX);
        let half = full_ns / 2;
        Duration::from_nanos(rand::Rng::random_range(&mut rand::rng(), half..=full_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_rates_are_not() {
        assert!(DispatchConfig::default().validate().is_ok());
        let bad = DispatchConfig {
            group_per_minute: 0,
            ..DispatchConfig::default()
        };
        let err = bad.validate().expect_err("zero rate").to_string();
        assert!(err.contains("group_per_minute"), "{err}");
        let bad = DispatchConfig {
            backoff_max: Duration::from_millis(1),
            ..DispatchConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = DispatchConfig::default();
        let mut seen = std::collections::HashSet::new();
        for retry in 0..12 {
            let full = (c.backoff_base * 2u32.pow(retry)).min(c.backoff_max);
            for _ in 0..50 {
                let d = c.backoff(retry);
                assert!(
                    d >= full / 2 && d <= full,
                    "retry {retry}: {d:?} vs {full:?}"
                );
                seen.insert(d);
            }
        }
        // Jittered, not constant.
        assert!(seen.len() > 100, "{}", seen.len());
        assert!(c.backoff(1_000) <= c.backoff_max);
    }
}
