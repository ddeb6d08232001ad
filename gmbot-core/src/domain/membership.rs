//! A user's membership in a channel, as Telegram reports it, and what GMBot concludes from it.

use serde::{Deserialize, Serialize};

/// `ChatMember.status` from the Bot API (`getChatMember`), with the one
/// extra bit that matters for `restricted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ChatMemberStatus {
    /// The chat's owner.
    Creator,
    /// An administrator.
    Administrator,
    /// An ordinary member.
    Member,
    /// Restricted; `is_member` tells whether they are still in the chat
    /// (Bot API `ChatMemberRestricted.is_member`).
    Restricted {
        /// Whether the user is a member of the chat at the moment of the request.
        is_member: bool,
    },
    /// Not in the chat.
    Left,
    /// Banned from the chat.
    Kicked,
}

impl ChatMemberStatus {
    /// Subscribed = creator, administrator, member, or restricted *with*
    /// `is_member: true` (a restricted non-member is not subscribed).
    pub fn is_subscribed(self) -> bool {
        match self {
            Self::Creator | Self::Administrator | Self::Member => true,
            Self::Restricted { is_member } => is_member,
            Self::Left | Self::Kicked => false,
        }
    }

    /// Owner or administrator of the chat.
    pub fn is_admin(self) -> bool {
        matches!(self, Self::Creator | Self::Administrator)
    }

    /// Telegram's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creator => "creator",
            Self::Administrator => "administrator",
            Self::Member => "member",
            Self::Restricted { .. } => "restricted",
            Self::Left => "left",
            Self::Kicked => "kicked",
        }
    }
}

/// Why membership could not be determined. The engine then applies the
/// group's fail-open / fail-closed setting and reports the channel as unverifiable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownReason {
    /// The bot is not an administrator of the channel ("member list is inaccessible").
    NotChannelAdmin,
    /// The channel does not exist or the bot is not in it.
    ChannelNotFound,
    /// Telegram did not answer usefully (network, 5xx, rate limit, unexpected error).
    TelegramUnavailable,
}

/// What GMBot knows about a user's subscription to one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// Subscribed, with the status it came from.
    Member(ChatMemberStatus),
    /// Not subscribed, with the status it came from.
    NotMember(ChatMemberStatus),
    /// Could not be determined.
    Unknown(UnknownReason),
}

impl From<ChatMemberStatus> for Membership {
    fn from(s: ChatMemberStatus) -> Self {
        if s.is_subscribed() {
            Self::Member(s)
        } else {
            Self::NotMember(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_counts_only_with_is_member() {
        assert!(ChatMemberStatus::Restricted { is_member: true }.is_subscribed());
        assert!(!ChatMemberStatus::Restricted { is_member: false }.is_subscribed());
        assert!(!ChatMemberStatus::Left.is_subscribed());
        assert!(!ChatMemberStatus::Kicked.is_subscribed());
        assert_eq!(
            Membership::from(ChatMemberStatus::Member),
            Membership::Member(ChatMemberStatus::Member)
        );
    }
}
