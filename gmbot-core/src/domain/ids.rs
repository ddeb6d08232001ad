//! Typed Telegram identifiers, so a group id can never be passed where a user id is expected.
//!
//! Telegram ids are 64-bit signed integers. Users are positive; basic groups are
//! negative; supergroups and channels share the `-100…` range (Bot API
//! "Chat" reference: `-100` followed by the MTProto channel id).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid Telegram id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} id: {reason}")]
pub struct IdParseError {
    input: String,
    kind: &'static str,
    reason: &'static str,
}

macro_rules! telegram_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:expr, $reason:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw Telegram id.
            pub const fn get(self) -> i64 {
                self.0
            }

            /// Wraps a raw id after checking that it has the shape Telegram gives this kind of id.
            pub fn new(raw: i64) -> Result<Self, IdParseError> {
                let check: fn(i64) -> bool = $check;
                if check(raw) {
                    Ok(Self(raw))
                } else {
                    Err(IdParseError { input: raw.to_string(), kind: $kind, reason: $reason })
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let raw: i64 = s.trim().parse().map_err(|_| IdParseError {
                    input: s.to_owned(),
                    kind: $kind,
                    reason: "expected a whole number such as -1001234567890",
                })?;
                Self::new(raw).map_err(|mut e| {
                    e.input = s.to_owned();
                    e
                })
            }
        }
    };
}

telegram_id!(
    /// A group or supergroup chat id (negative; supergroups look like `-100…`).
    GroupId,
    "group",
    |raw| raw < 0,
    "group ids are negative (supergroups look like -100…)"
);
telegram_id!(
    /// A channel chat id (negative, `-100…`).
    ChannelId,
    "channel",
    |raw| raw < 0,
    "channel ids are negative and look like -100…"
);
telegram_id!(
    /// A Telegram user id (positive; bots are users too).
    UserId,
    "user",
    |raw| raw > 0,
    "user ids are positive"
);

telegram_id!(
    /// Any chat id: a user's private chat, a group or a channel.
    ChatId,
    "chat",
    |raw| raw != 0,
    "chat ids are non-zero"
);

impl From<GroupId> for ChatId {
    fn from(g: GroupId) -> Self {
        ChatId(g.0)
    }
}
impl From<ChannelId> for ChatId {
    fn from(c: ChannelId) -> Self {
        ChatId(c.0)
    }
}
impl From<UserId> for ChatId {
    fn from(u: UserId) -> Self {
        ChatId(u.0)
    }
}

/// A message id, unique within its chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub i64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl UserId {
    /// Telegram's service account that posts automatic forwards from a linked
    /// channel into its discussion group (Bot API: `is_automatic_forward`).
    pub const SERVICE_ACCOUNT: UserId = UserId(777_000);
    /// `@GroupAnonymousBot`: the `from` of messages sent by anonymous group admins
    /// (the real sender is in `sender_chat`, which equals the group).
    pub const GROUP_ANONYMOUS_BOT: UserId = UserId(1_087_968_824);
    /// `@Channel_Bot`: the placeholder `from` (with `is_bot: true`) of a message a
    /// member posts in a group on behalf of a channel; the channel is in
    /// `sender_chat` (Bot API `Message.from`: "for backward compatibility, the
    /// field contains a fake sender user in non-channel chats, if the message
    /// was sent on behalf of a chat"). Shared by every such post: never a
    /// member to restrict, never "a bot" to exempt.
    pub const CHANNEL_BOT: UserId = UserId(136_817_688);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_sign() {
        assert_eq!("-1001234".parse::<GroupId>(), Ok(GroupId(-1001234)));
        assert_eq!(" 42 ".parse::<UserId>(), Ok(UserId(42)));
        let err = "42".parse::<GroupId>().unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
        let err = "-5".parse::<UserId>().unwrap_err().to_string();
        assert!(err.contains("positive"), "{err}");
        let err = "abc".parse::<ChannelId>().unwrap_err().to_string();
        assert!(err.contains("`abc`") && err.contains("channel"), "{err}");
        assert!("99999999999999999999".parse::<ChannelId>().is_err());
    }
}
