//! Channel faults: channels that just failed for everyone (bot not a channel admin, channel gone), remembered briefly.
//!
//! When the bot cannot read a channel's members, every lookup of that channel
//! fails the same way, whoever the user. The membership cache never stores a
//! failure (an unknown is not a verdict), so without this note every message
//! in the group would cost one more doomed `getChatMember` — the call flood
//! that gets bots rate-limited. A fault is kept for a short back-off (30 s by
//! default); meanwhile cache misses on that channel are answered "unknown"
//! without a call, and the group's failure policy applies as usual.
//! Per-user or transient errors (network, 5xx, unknown participant) are not
//! remembered: they say nothing about the next user.

use std::time::Duration;

use moka::future::Cache;

use crate::clock::Clock;
use crate::domain::{ChannelId, UnknownReason};
use crate::telegram::TelegramError;

use super::config_cache::millis;

/// Channel id → the channel-wide failure last seen, and until when to trust it.
pub(crate) struct ChannelFaults {
    entries: Cache<ChannelId, (UnknownReason, u64)>,
    ttl_ms: u64,
}

impl ChannelFaults {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            entries: Cache::new(capacity),
            ttl_ms: millis(ttl),
        }
    }

    /// The channel's recent fault, if one is still within its back-off.
    pub(crate) async fn get(&self, channel: ChannelId, clock: &dyn Clock) -> Option<UnknownReason> {
        let (reason, until) = self.entries.get(&channel).await?;
        (clock.now_millis() < until).then_some(reason)
    }

    /// Remembers `err` if it is a channel-wide failure.
    pub(crate) async fn note(&self, channel: ChannelId, err: &TelegramError, clock: &dyn Clock) {
        let reason = unknown_reason(err);
        if channel_wide(err) && self.ttl_ms > 0 {
            let until = clock.now_millis().saturating_add(self.ttl_ms);
            self.entries.insert(channel, (reason, until)).await;
        }
    }

    /// Forgets a channel's fault (its rights came back, or an admin changed the setup).
    pub(crate) async fn clear(&self, channel: ChannelId) {
        self.entries.invalidate(&channel).await;
    }

    /// Forgets every remembered fault.
    pub(crate) fn clear_all(&self) {
        self.entries.invalidate_all();
    }
}

/// Telegram errors that concern the channel, not the user.
fn channel_wide(err: &TelegramError) -> bool {
    matches!(
        err,
        TelegramError::NotEnoughRights(_)
            | TelegramError::ChatNotFound(_)
            | TelegramError::Forbidden(_)
    )
}

/// Why a failed `getChatMember` leaves membership unknown (TELEGRAM.md: any
/// error is "unknown", never "not subscribed").
pub(crate) fn unknown_reason(err: &TelegramError) -> UnknownReason {
    match err {
        // "member list is inaccessible": the bot is not an admin of the channel.
        TelegramError::NotEnoughRights(_) => UnknownReason::NotChannelAdmin,
        // The channel is gone, or the bot was removed from it (403 "bot was kicked").
        TelegramError::ChatNotFound(_) | TelegramError::Forbidden(_) => {
            UnknownReason::ChannelNotFound
        }
        // Transient PARTICIPANT_ID_INVALID / USER_NOT_PARTICIPANT, 429, 5xx, network.
        TelegramError::UserNotFound(_)
        | TelegramError::BadRequest(_)
        | TelegramError::RetryAfter { .. }
        | TelegramError::Server { .. }
        | TelegramError::Network(_) => UnknownReason::TelegramUnavailable,
        // An answer this version cannot read (e.g. a newer status): no verdict either.
        TelegramError::Decode { .. } => UnknownReason::TelegramUnavailable,
    }
}
