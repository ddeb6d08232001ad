//! Values exchanged with the `TelegramApi` port: admins, outgoing messages and their buttons.

use serde::{Deserialize, Serialize};

use crate::domain::{MessageId, UserId};

/// One entry of `getChatAdministrators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatAdmin {
    /// The admin.
    pub user: UserId,
    /// Whether the admin is a bot.
    pub is_bot: bool,
    /// The chat's owner (`creator`), who has every right.
    pub is_creator: bool,
    /// `can_delete_messages`.
    pub can_delete_messages: bool,
    /// `can_restrict_members`.
    pub can_restrict_members: bool,
    /// `can_invite_users` (needed to create invite links).
    pub can_invite_users: bool,
}

/// An inline keyboard button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InlineButton {
    /// Opens a link (the Join button).
    Url {
        /// Label.
        text: String,
        /// Target.
        url: String,
    },
    /// Sends `data` back as a callback query (1–64 bytes).
    Callback {
        /// Label.
        text: String,
        /// Callback payload.
        data: String,
    },
}

/// A message to send, in Telegram's HTML parse mode.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// Text with HTML markup; any user-provided part must already be escaped.
    pub html: String,
    /// Rows of inline buttons.
    pub buttons: Vec<Vec<InlineButton>>,
    /// Reply to this message, if any.
    pub reply_to: Option<MessageId>,
    /// Send without notification sound.
    pub silent: bool,
}
