//! A protected group: its state, owner, required channels and settings.

use serde::{Deserialize, Serialize};

use super::channel::EnforcedChannel;
use super::ids::{GroupId, UserId};
use super::settings::GroupSettings;
use super::time::UnixTime;

/// Whether a group is being enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Enforced.
    Active,
    /// Temporarily not enforced because the bot lost its rights or was removed;
    /// resumes when the rights come back.
    Paused,
    /// Protection switched off by an admin (`/unprotect`); history is kept.
    Unprotected,
}

impl GroupState {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Unprotected => "unprotected",
        }
    }

    /// Parses the stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "unprotected" => Some(Self::Unprotected),
            _ => None,
        }
    }
}

/// A group known to GMBot, with everything the engine needs to verify a message in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedGroup {
    /// The group's chat id.
    pub id: GroupId,
    /// The group's title as last seen.
    pub title: Option<String>,
    /// The admin who set up the protection, if known.
    pub owner: Option<UserId>,
    /// Enforced, paused or switched off.
    pub state: GroupState,
    /// Why the group is paused, when it is.
    pub paused_reason: Option<String>,
    /// Channels a member must all have joined, in the order they were linked.
    pub channels: Vec<EnforcedChannel>,
    /// Enforcement settings.
    pub settings: GroupSettings,
    /// When the group was first protected.
    pub created_at: UnixTime,
    /// When the group's row last changed.
    pub updated_at: UnixTime,
}

impl ProtectedGroup {
    /// Whether messages in this group are verified now.
    pub fn is_enforced(&self) -> bool {
        self.state == GroupState::Active && !self.channels.is_empty()
    }
}

/// A request to create or extend a protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectRequest {
    /// The group to protect.
    pub group: GroupId,
    /// Its title, if known.
    pub title: Option<String>,
    /// The admin setting it up, if known (must exist as an [`Owner`](super::Owner)).
    pub owner: Option<UserId>,
    /// Channels to require, added to those already linked.
    pub channels: Vec<EnforcedChannel>,
}
