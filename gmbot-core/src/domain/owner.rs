//! The Telegram user who set up a protection and is told when something needs their attention.

use serde::{Deserialize, Serialize};

use super::ids::UserId;
use super::time::UnixTime;

/// An admin who protected at least one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Their user id (also their private chat id with the bot).
    pub user_id: UserId,
    /// Their @username, if any.
    pub username: Option<String>,
    /// Their display name.
    pub display_name: Option<String>,
    /// Whether they have started a private chat with the bot, so it may write to them.
    pub can_be_messaged: bool,
    /// When they were first recorded.
    pub created_at: UnixTime,
}
