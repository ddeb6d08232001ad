//! `MessageContext`: what the engine needs to know about a message besides its group and sender.
//!
//! The frontend fills it from the update (`message_id`, `sender_chat`,
//! `is_automatic_forward`, `from.is_bot`); the engine never sees a Telegram
//! update itself. It is `Copy` so the hit path moves no heap data.

use crate::domain::{ChatId, MessageId};

/// The parts of an incoming message (or member join) that decide exemptions and actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MessageContext {
    /// The message to delete if the sender is denied; `None` for a check that
    /// has no message (a member joining the group, an audit).
    pub message: Option<MessageId>,
    /// `sender_chat`: set when the message was sent on behalf of a chat (an
    /// anonymous admin posting as the group, a channel's automatic forward).
    pub sender_chat: Option<ChatId>,
    /// `is_automatic_forward`: a post of the linked channel that Telegram
    /// forwarded into its discussion group.
    pub is_automatic_forward: bool,
    /// `from.is_bot`: the sender is a bot account.
    pub sender_is_bot: bool,
}

impl MessageContext {
    /// An ordinary message by a user.
    pub const fn message(id: MessageId) -> Self {
        Self {
            message: Some(id),
            sender_chat: None,
            is_automatic_forward: false,
            sender_is_bot: false,
        }
    }

    /// A check with no message to delete (member joined, audit, cache warm-up).
    pub const fn no_message() -> Self {
        Self {
            message: None,
            sender_chat: None,
            is_automatic_forward: false,
            sender_is_bot: false,
        }
    }

    /// The same context with `sender_chat` set.
    pub const fn with_sender_chat(mut self, chat: ChatId) -> Self {
        self.sender_chat = Some(chat);
        self
    }

    /// The same context marked as an automatic forward from the linked channel.
    pub const fn automatic_forward(mut self) -> Self {
        self.is_automatic_forward = true;
        self
    }

    /// The same context marked as sent by a bot.
    pub const fn from_bot(mut self) -> Self {
        self.sender_is_bot = true;
        self
    }
}
