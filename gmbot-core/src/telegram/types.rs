//! Values exchanged with the `TelegramApi` port: admins, chats, outgoing messages and their buttons.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{ChannelRef, ChannelUsername, ChatId, MessageId, UserId};

/// How long the ban of a kick lasts, in seconds. Telegram treats a ban with `until_date`
/// under 30 s ahead (or over 366 days) as forever (TELEGRAM.md, "Acting"), so a kick is a ban
/// comfortably above that, then an unban: if the unban fails, the ban still ends by itself.
pub const KICK_BAN_SECS: i64 = 90;

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

/// The id of an ephemeral message (Bot API 10.2 `Message.ephemeral_message_id`): it is not
/// a message id of the chat, and is deleted with `deleteEphemeralMessage`, not `deleteMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EphemeralId(pub i64);

impl fmt::Display for EphemeralId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where a message sent for one member ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Posted {
    /// Shown to its receiver only.
    Ephemeral(EphemeralId),
    /// Posted to the whole chat: a server older than Bot API 10.2 ignores the ephemeral
    /// parameters and sends an ordinary message, which then is an ordinary public message.
    Public(MessageId),
}

/// The answer to a guard bot's join request query (Bot API 10.1 `answerChatJoinRequestQuery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JoinQueryAnswer {
    /// Let the requester join (`approve`).
    Approve,
    /// Refuse the request (`decline`).
    Decline,
    /// Leave the decision to the chat's administrators (`queue`): the request becomes an
    /// ordinary pending join request, which `approveChatJoinRequest` and
    /// `declineChatJoinRequest` decide later.
    Queue,
}

impl JoinQueryAnswer {
    /// The Bot API's `result` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Queue => "queue",
        }
    }
}

/// How a chat is named in a `getChat` call: by id, or by its public `@username`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChatTarget {
    /// A numeric chat id.
    Id(ChatId),
    /// A public username (groups and channels share Telegram's username rules).
    Username(ChannelUsername),
}

impl From<ChatId> for ChatTarget {
    fn from(id: ChatId) -> Self {
        Self::Id(id)
    }
}

impl From<ChannelRef> for ChatTarget {
    fn from(r: ChannelRef) -> Self {
        match r {
            ChannelRef::Id(id) => Self::Id(id.into()),
            ChannelRef::Username(u) => Self::Username(u),
        }
    }
}

impl From<&ChannelRef> for ChatTarget {
    fn from(r: &ChannelRef) -> Self {
        r.clone().into()
    }
}

impl fmt::Display for ChatTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Username(u) => write!(f, "{u}"),
        }
    }
}

/// The type of a chat, as `getChat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatType {
    /// A user's private chat with the bot.
    Private,
    /// A basic group.
    Group,
    /// A supergroup.
    Supergroup,
    /// A channel.
    Channel,
    /// A type added by a Bot API version newer than this one: kept as unknown, never taken
    /// for a group or a channel.
    Other,
}

impl ChatType {
    /// Telegram's name for it (`private`, `group`, `supergroup`, `channel`; `other` for a
    /// type this version does not know).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Group => "group",
            Self::Supergroup => "supergroup",
            Self::Channel => "channel",
            Self::Other => "other",
        }
    }
}

/// What `getChat` tells about a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatInfo {
    /// The chat id.
    pub id: ChatId,
    /// Private, group, supergroup or channel.
    pub kind: ChatType,
    /// Title of a group or channel (a private chat's first name).
    pub title: Option<String>,
    /// Public username without `@`; `None` for a private group or channel.
    pub username: Option<String>,
}
