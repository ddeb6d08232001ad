//! Why a control-API action on the simulator was refused.

/// A refused control-API action (what a Telegram client would not let a user do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No chat with this id.
    #[error("no chat {0} in the simulator")]
    UnknownChat(i64),
    /// No user with this id.
    #[error("no user {0} in the simulator")]
    UnknownUser(i64),
    /// No message with this id in the chat.
    #[error("no message {message} in chat {chat}")]
    UnknownMessage {
        /// Chat id.
        chat: i64,
        /// Message id.
        message: i64,
    },
    /// The user may not post here (not a member, banned, or muted).
    #[error("user {user} cannot post in chat {chat}: {reason}")]
    CannotPost {
        /// Chat id.
        chat: i64,
        /// User id.
        user: i64,
        /// Why.
        reason: &'static str,
    },
    /// The user is banned from the chat.
    #[error("user {user} is banned from chat {chat}")]
    Banned {
        /// Chat id.
        chat: i64,
        /// User id.
        user: i64,
    },
    /// The user is in the chat already (a member cannot ask to join).
    #[error("user {user} is already in chat {chat}")]
    AlreadyMember {
        /// Chat id.
        chat: i64,
        /// User id.
        user: i64,
    },
    /// The message has no button with this callback data.
    #[error("message {message} has no button with that callback data")]
    NoSuchButton {
        /// Message id.
        message: i64,
    },
    /// The action does not apply to this kind of chat.
    #[error("chat {0} is not the right kind of chat for this")]
    WrongChatKind(i64),
    /// The invite link is unknown or revoked.
    #[error("the invite link is invalid or revoked")]
    InvalidInviteLink,
    /// The simulator could not start.
    #[error("the simulated Telegram could not start: {0}")]
    Start(String),
}
