//! Join requests the gate is deciding: who asked to join a protected group, until when they
//! may join the channels, and how it ended.
//!
//! With the join gate on, a non-subscriber's `chat_join_request` is not declined at once: it
//! is recorded as [`JoinRequestState::Pending`] with a deadline, so that a restart neither
//! forgets it nor lets it wait forever. The row is closed when the bot approves it (the
//! requester joined the channels), declines it (the wait ran out), or releases it to the
//! group's admins (the protection was switched off meanwhile).

use serde::{Deserialize, Serialize};

use super::ids::{ChatId, GroupId, MessageId, UserId};
use super::time::UnixTime;

/// Where a join request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinRequestState {
    /// Waiting for the requester to join the channels, until `expires_at`.
    Pending,
    /// Approved by the bot: the requester is (or is becoming) a member.
    Approved,
    /// Declined by the bot: the wait ran out without the channels joined.
    Declined,
    /// Left to the group's admins: the group stopped being gated before a decision.
    Released,
}

impl JoinRequestState {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Released => "released",
        }
    }

    /// Parses the stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "declined" => Some(Self::Declined),
            "released" => Some(Self::Released),
            _ => None,
        }
    }

    /// Whether the request is decided (anything but [`Self::Pending`]).
    pub fn is_decided(self) -> bool {
        self != Self::Pending
    }
}

/// A join request to record as pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJoinRequest {
    /// The group asked to join.
    pub group: GroupId,
    /// Who asked.
    pub user: UserId,
    /// `ChatJoinRequest.user_chat_id`: the private chat the bot may write to for 5 minutes,
    /// even if the requester never started the bot.
    pub user_chat: ChatId,
    /// When Telegram says the request was sent.
    pub requested_at: UnixTime,
    /// When the bot declines it if the channels are still not joined.
    pub expires_at: UnixTime,
}

/// A join request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The group asked to join.
    pub group: GroupId,
    /// Who asked.
    pub user: UserId,
    /// The private chat with the requester (`user_chat_id`).
    pub user_chat: ChatId,
    /// When the request was sent.
    pub requested_at: UnixTime,
    /// The deadline of a pending request.
    pub expires_at: UnixTime,
    /// The bot's private message to the requester (Join buttons), once sent.
    pub notice: Option<MessageId>,
    /// Pending or how it ended.
    pub state: JoinRequestState,
    /// When it was decided.
    pub decided_at: Option<UnixTime>,
}

impl JoinRequest {
    /// Whether a pending request's wait has run out at `now`.
    pub fn is_due(&self, now: UnixTime) -> bool {
        self.state == JoinRequestState::Pending && self.expires_at <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_their_stored_names() {
        for s in [
            JoinRequestState::Pending,
            JoinRequestState::Approved,
            JoinRequestState::Declined,
            JoinRequestState::Released,
        ] {
            assert_eq!(JoinRequestState::from_db(s.as_str()), Some(s));
        }
        assert_eq!(JoinRequestState::from_db("maybe"), None);
        assert!(!JoinRequestState::Pending.is_decided());
        assert!(JoinRequestState::Released.is_decided());
    }
}
