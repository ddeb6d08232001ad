//! Restrictions the bot placed: the record that guarantees nobody stays muted.
//!
//! A restriction is written as `pending` *before* the Telegram call and
//! confirmed after it, so a crash between the two still leaves a row that the
//! reconciliation pass will find and lift if it is no longer deserved.

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, UserId};
use super::time::UnixTime;

/// Database key of a restriction row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RestrictionId(pub i64);

/// What the bot did to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionKind {
    /// Muted (`restrictChatMember` with no send rights).
    Mute,
    /// Removed from the group (`banChatMember` then `unbanChatMember`).
    Kick,
}

impl RestrictionKind {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::Kick => "kick",
        }
    }

    /// Parses the stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "mute" => Some(Self::Mute),
            "kick" => Some(Self::Kick),
            _ => None,
        }
    }
}

/// Where a restriction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionState {
    /// Recorded, Telegram call not yet confirmed.
    Pending,
    /// Telegram confirmed the restriction.
    Active,
    /// Lifted (or never applied); see [`Restriction::lift_reason`].
    Lifted,
}

impl RestrictionState {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Lifted => "lifted",
        }
    }

    /// Parses the stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "lifted" => Some(Self::Lifted),
            _ => None,
        }
    }
}

/// Why a restriction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiftReason {
    /// The member joined the channel(s).
    Joined,
    /// The group was unprotected or its channels changed.
    Unprotected,
    /// The restriction's end time passed.
    Expired,
    /// An admin lifted it.
    Admin,
    /// The Telegram call failed, so the restriction never took effect.
    NotApplied,
    /// The member left the group.
    LeftGroup,
}

impl LiftReason {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Unprotected => "unprotected",
            Self::Expired => "expired",
            Self::Admin => "admin",
            Self::NotApplied => "not_applied",
            Self::LeftGroup => "left_group",
        }
    }

    /// Parses the stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "joined" => Some(Self::Joined),
            "unprotected" => Some(Self::Unprotected),
            "expired" => Some(Self::Expired),
            "admin" => Some(Self::Admin),
            "not_applied" => Some(Self::NotApplied),
            "left_group" => Some(Self::LeftGroup),
            _ => None,
        }
    }
}

/// A restriction about to be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRestriction {
    /// The group.
    pub group: GroupId,
    /// The member.
    pub user: UserId,
    /// Mute or kick.
    pub kind: RestrictionKind,
    /// When Telegram will lift it by itself; `None` = until the bot lifts it.
    pub until: Option<UnixTime>,
    /// Free text for operators, e.g. the channels that were missing.
    pub reason: String,
}

/// A restriction row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    /// Row id.
    pub id: RestrictionId,
    /// The group.
    pub group: GroupId,
    /// The member.
    pub user: UserId,
    /// Mute or kick.
    pub kind: RestrictionKind,
    /// Pending, active or lifted.
    pub state: RestrictionState,
    /// Why it was placed.
    pub reason: String,
    /// When it was recorded.
    pub placed_at: UnixTime,
    /// When Telegram lifts it by itself, if ever.
    pub until: Option<UnixTime>,
    /// When it was lifted.
    pub lifted_at: Option<UnixTime>,
    /// Why it was lifted.
    pub lift_reason: Option<LiftReason>,
}

impl Restriction {
    /// Pending or active: the member may still be muted.
    pub fn is_active(&self) -> bool {
        self.state != RestrictionState::Lifted
    }
}
