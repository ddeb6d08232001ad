//! How cached memberships are kept true: by expiry (the default) or by the channel's join and leave events.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::TtlPolicy;

/// How cached memberships are kept true.
///
/// The bot sees every join and leave of a channel it administers (Telegram's
/// `chat_member` updates, when `chat_member` is in `allowed_updates`). In
/// [`CacheMode::Events`] it trusts them: a member's entry can live for hours
/// because the leave that would make it wrong replaces it at once; the TTL
/// only bounds the harm of an event that never arrived (the bot was down
/// longer than Telegram keeps updates, or it lost its admin rights in the
/// channel for a while).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CacheMode {
    /// Short lifetimes (600 s for a member, 60 s for a non-member, ±15 %); a
    /// seen join or leave invalidates the entry, and the next lookup asks Telegram.
    #[default]
    Ttl,
    /// Long lifetimes (6 h for a member, 10 min for a non-member, ±15 %); a
    /// seen join or leave writes the status the event reports, in every
    /// layer and instance, so the next lookup is a hit.
    ///
    /// The lifetimes bound what a missed event costs: a missed leave lets the
    /// member write for up to 6.9 h; a missed join keeps a member counted as
    /// a non-member for up to 11.5 min (muted and warned where they write;
    /// "I've joined" asks Telegram directly and frees them at once).
    Events,
}

impl CacheMode {
    /// Both modes, in the order the documentation lists them.
    pub const ALL: [CacheMode; 2] = [CacheMode::Ttl, CacheMode::Events];

    /// The mode's lifetimes (each overridable by the binaries' settings).
    pub fn default_ttl(self) -> TtlPolicy {
        match self {
            Self::Ttl => TtlPolicy::default(),
            Self::Events => TtlPolicy {
                member: Duration::from_secs(6 * 3600),
                non_member: Duration::from_secs(600),
                jitter: 0.15,
            },
        }
    }

    /// Whether a seen join or leave writes the event's status (rather than invalidating).
    pub fn events_write(self) -> bool {
        self == Self::Events
    }

    /// The setting's value: `ttl` or `events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ttl => "ttl",
            Self::Events => "events",
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cache mode name other than `ttl` or `events`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cache mode `{0}` (expected `ttl` or `events`)")]
pub struct CacheModeParseError(String);

impl FromStr for CacheMode {
    type Err = CacheModeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ttl" => Ok(Self::Ttl),
            "events" => Ok(Self::Events),
            _ => Err(CacheModeParseError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_are_valid() {
        for mode in CacheMode::ALL {
            assert_eq!(mode.as_str().parse::<CacheMode>(), Ok(mode));
            assert!(mode.default_ttl().validate().is_ok());
        }
        assert_eq!(" Events ".parse::<CacheMode>(), Ok(CacheMode::Events));
        assert!("event".parse::<CacheMode>().is_err());
        assert_eq!(CacheMode::default(), CacheMode::Ttl);
        assert_eq!(CacheMode::Ttl.default_ttl(), TtlPolicy::default());
        assert!(CacheMode::Events.default_ttl().member >= Duration::from_secs(3600));
    }
}
