//! The channels a protected group enforces, and the ways an admin or operator can name one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{ChannelId, IdParseError};

/// A public channel username, stored without the leading `@`.
///
/// Telegram usernames are 5–32 characters of `A-Za-z0-9_` and start with a
/// letter; they are case-insensitive, so equality and storage use the
/// lower-case form while [`ChannelUsername::as_str`] keeps what was typed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelUsername(String);

/// Why a string is not a valid channel username.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid channel username: {reason} (5-32 characters of A-Z, a-z, 0-9 and _, starting with a letter; the @ is optional)")]
pub struct UsernameParseError {
    input: String,
    reason: &'static str,
}

impl ChannelUsername {
    /// Validates `input` (with or without `@`).
    pub fn parse(input: &str) -> Result<Self, UsernameParseError> {
        let name = input.trim();
        let name = name.strip_prefix('@').unwrap_or(name);
        let fail = |reason| UsernameParseError {
            input: input.to_owned(),
            reason,
        };
        let len = name.chars().count();
        if !(5..=32).contains(&len) {
            return Err(fail("wrong length"));
        }
        if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(fail("must start with a letter"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(fail("contains a character other than A-Z, a-z, 0-9 and _"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The username as typed, without `@`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used for storage and comparison.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The public join link, `https://t.me/<username>`.
    pub fn join_url(&self) -> String {
        format!("https://t.me/{}", self.0)
    }
}

impl PartialEq for ChannelUsername {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for ChannelUsername {}

impl std::hash::Hash for ChannelUsername {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.canonical().hash(state);
    }
}

impl fmt::Display for ChannelUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl TryFrom<String> for ChannelUsername {
    type Error = UsernameParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ChannelUsername> for String {
    fn from(u: ChannelUsername) -> String {
        u.0
    }
}

/// How a channel is named on input: by numeric id or by public username.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChannelRef {
    /// A numeric chat id (`-100…`), the only way to name a private channel.
    Id(ChannelId),
    /// A public `@username`.
    Username(ChannelUsername),
}

/// Why a string names no channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelRefParseError {
    /// It looked like a number but is not a channel id.
    #[error(transparent)]
    Id(#[from] IdParseError),
    /// It looked like a username but is not a valid one.
    #[error(transparent)]
    Username(#[from] UsernameParseError),
}

impl FromStr for ChannelRef {
    type Err = ChannelRefParseError;

    /// `-100123…` is an id; `@name`, `name` and `https://t.me/name` are usernames.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.starts_with('-') || t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Ok(Self::Id(t.parse()?));
        }
        let t = ["https://t.me/", "http://t.me/", "t.me/"]
            .iter()
            .find_map(|p| t.strip_prefix(p))
            .unwrap_or(t);
        Ok(Self::Username(ChannelUsername::parse(t)?))
    }
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Username(u) => write!(f, "{u}"),
        }
    }
}

/// A channel that one or more protected groups require their members to join.
///
/// A channel added from the CLI may be known only by id or only by username
/// until the bot resolves it against Telegram; at least one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcedChannel {
    /// The numeric chat id, once known.
    pub id: Option<ChannelId>,
    /// The public username, if the channel has one.
    pub username: Option<ChannelUsername>,
    /// The channel's title as last seen.
    pub title: Option<String>,
    /// For private channels: the one invite link the bot created
    /// (`createChatInviteLink`), stored so it is never re-exported —
    /// `exportChatInviteLink` would revoke the previous link.
    pub invite_link: Option<String>,
}

impl EnforcedChannel {
    /// A channel known only by how it was named.
    pub fn from_ref(r: ChannelRef) -> Self {
        match r {
            ChannelRef::Id(id) => Self {
                id: Some(id),
                username: None,
                title: None,
                invite_link: None,
            },
            ChannelRef::Username(u) => Self {
                id: None,
                username: Some(u),
                title: None,
                invite_link: None,
            },
        }
    }

    /// The link a member follows to join: the public `t.me` link, else the stored invite link.
    pub fn join_url(&self) -> Option<String> {
        self.username
            .as_ref()
            .map(ChannelUsername::join_url)
            .or_else(|| self.invite_link.clone())
    }

    /// Whether `r` names this channel.
    pub fn matches(&self, r: &ChannelRef) -> bool {
        match r {
            ChannelRef::Id(id) => self.id == Some(*id),
            ChannelRef::Username(u) => self.username.as_ref() == Some(u),
        }
    }
}

impl fmt::Display for EnforcedChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.username, self.id) {
            (Some(u), _) => write!(f, "{u}"),
            (None, Some(id)) => write!(f, "{id}"),
            (None, None) => f.write_str("(unnamed channel)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_telegram_rules() {
        assert_eq!(
            ChannelUsername::parse("@GoodName").map(|u| u.canonical()),
            Ok("goodname".into())
        );
        assert!(ChannelUsername::parse("abcd").is_err());
        assert!(ChannelUsername::parse(&"a".repeat(33)).is_err());
        assert!(ChannelUsername::parse("1abcde").is_err());
        assert!(ChannelUsername::parse("abc-de").is_err());
        assert!(ChannelUsername::parse("abcde'; DROP TABLE x;--").is_err());
        assert_eq!(
            ChannelUsername::parse("@Chan_1"),
            ChannelUsername::parse("chan_1")
        );
    }

    #[test]
    fn refs_parse_ids_and_usernames() {
        assert_eq!(
            "-1001".parse::<ChannelRef>(),
            Ok(ChannelRef::Id(ChannelId(-1001)))
        );
        assert!(matches!(
            "https://t.me/mychannel".parse::<ChannelRef>(),
            Ok(ChannelRef::Username(_))
        ));
        assert!("123".parse::<ChannelRef>().is_err());
        assert!("@no".parse::<ChannelRef>().is_err());
    }
}
