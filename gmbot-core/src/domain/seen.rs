//! Members seen writing in a group: the bot's own member list, since the Bot API cannot list members.

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, UserId};
use super::time::UnixTime;

/// A member and when they were last seen in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenMember {
    /// The group.
    pub group: GroupId,
    /// The member.
    pub user: UserId,
    /// First time seen.
    pub first_seen: UnixTime,
    /// Last time seen.
    pub last_seen: UnixTime,
}
