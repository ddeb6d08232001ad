//! The transport-neutral update model: what the bot's handlers see, whichever frontend received it.
//!
//! The Bot API frontend converts `frankenstein` updates into these types and an
//! MTProto frontend would convert its own; handlers never see a transport's
//! types, so one set of handlers serves every transport and tests can build
//! updates directly.

use gmbot_core::domain::{ChatId, ChatMemberStatus, MessageId, UnixTime, UserId};
use gmbot_core::telegram::ChatAdmin;
use serde::{Deserialize, Serialize};

/// One update, with Telegram's `update_id` (used for de-duplication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Telegram's `update_id`.
    pub id: i64,
    /// What happened.
    pub kind: UpdateKind,
}

impl Update {
    /// The runtime's ordering key: updates with the same key are handled one after another in
    /// arrival order. A chat's messages and membership changes share the chat's id (negative
    /// for groups and channels); a button press is keyed by the presser (a positive user id),
    /// so a raid's "I've joined" presses do not queue behind the group's messages. A join
    /// request is keyed by the requester too: requests of different people are independent,
    /// and a wave of them does not hold up the group's messages.
    pub fn sequence_key(&self) -> i64 {
        match &self.kind {
            UpdateKind::Message(m) | UpdateKind::EditedMessage(m) => m.chat.id.get(),
            UpdateKind::CallbackQuery(c) => c.from.id.get(),
            UpdateKind::ChatJoinRequest(r) => r.from.id.get(),
            UpdateKind::ChatMember(c) | UpdateKind::MyChatMember(c) => c.chat.id.get(),
            UpdateKind::Other(_) => 0,
        }
    }

    /// The chat and the user this update is about, as raw ids, for log and
    /// error-report context (never for metric labels).
    pub fn subject(&self) -> (Option<i64>, Option<i64>) {
        match &self.kind {
            UpdateKind::Message(m) | UpdateKind::EditedMessage(m) => {
                (Some(m.chat.id.get()), m.from.as_ref().map(|u| u.id.get()))
            }
            UpdateKind::CallbackQuery(c) => {
                (c.message.map(|(chat, _)| chat.get()), Some(c.from.id.get()))
            }
            UpdateKind::ChatMember(c) | UpdateKind::MyChatMember(c) => {
                (Some(c.chat.id.get()), Some(c.user.id.get()))
            }
            UpdateKind::ChatJoinRequest(r) => (Some(r.chat.id.get()), Some(r.from.id.get())),
            UpdateKind::Other(_) => (None, None),
        }
    }
}

/// The update kinds GMBot handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateKind {
    /// A new message (including service messages: joins, leaves, migrations).
    Message(Message),
    /// A new version of a message (`edited_message`): verified like a new
    /// message, since an edit can turn an allowed message into anything.
    EditedMessage(Message),
    /// A press on an inline button.
    CallbackQuery(CallbackQuery),
    /// Someone's membership changed in a chat where the bot is an administrator.
    ChatMember(ChatMemberUpdate),
    /// The bot's own membership or rights changed.
    MyChatMember(ChatMemberUpdate),
    /// Someone asked to join a chat (`chat_join_request`).
    ChatJoinRequest(JoinRequest),
    /// Anything else (channel posts, polls, …); named for metrics and logs.
    Other(&'static str),
}

impl UpdateKind {
    /// A bounded name for metrics labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Message(_) => "message",
            Self::EditedMessage(_) => "edited_message",
            Self::CallbackQuery(_) => "callback_query",
            Self::ChatMember(_) => "chat_member",
            Self::MyChatMember(_) => "my_chat_member",
            Self::ChatJoinRequest(_) => "chat_join_request",
            Self::Other(name) => name,
        }
    }
}

/// A Telegram user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub id: UserId,
    /// Whether this is a bot.
    pub is_bot: bool,
    /// First name (always present in Telegram).
    pub first_name: String,
    /// Last name.
    pub last_name: Option<String>,
    /// @username without `@`.
    pub username: Option<String>,
}

impl User {
    /// "First Last", unescaped: escape it before putting it in HTML.
    pub fn display_name(&self) -> String {
        match &self.last_name {
            Some(last) if !last.is_empty() => format!("{} {}", self.first_name, last),
            _ => self.first_name.clone(),
        }
    }
}

/// The kind of chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChatKind {
    /// A private chat with a user.
    Private,
    /// A basic group.
    Group,
    /// A supergroup.
    Supergroup,
    /// A channel.
    Channel,
    /// A chat type added by a newer Bot API version: kept as unknown, handled as neither a
    /// group nor a channel.
    Other,
}

/// A chat as it appears in an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// Chat id.
    pub id: ChatId,
    /// Private, group, supergroup or channel.
    pub kind: ChatKind,
    /// Title of a group or channel.
    pub title: Option<String>,
    /// Public @username without `@`.
    pub username: Option<String>,
}

impl Chat {
    /// A group or supergroup.
    pub fn is_group(&self) -> bool {
        matches!(self.kind, ChatKind::Group | ChatKind::Supergroup)
    }
}

/// A message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The chat it was sent in.
    pub chat: Chat,
    /// Its id in that chat.
    pub id: MessageId,
    /// When it was sent.
    pub date: UnixTime,
    /// The sender (absent for channel posts).
    pub from: Option<User>,
    /// The chat it was sent on behalf of: the group itself for anonymous
    /// admins, the linked channel for automatic forwards.
    pub sender_chat: Option<Chat>,
    /// `is_automatic_forward`: a post of the linked channel forwarded into its discussion group.
    pub is_automatic_forward: bool,
    /// Text or caption.
    pub text: Option<String>,
    /// Service message: members who joined.
    pub new_chat_members: Vec<User>,
    /// Service message: the member who left.
    pub left_chat_member: Option<User>,
    /// Service message in the old group: it became this supergroup.
    pub migrate_to_chat_id: Option<ChatId>,
    /// Service message in the new supergroup: it was this group.
    pub migrate_from_chat_id: Option<ChatId>,
}

/// A press on an inline button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackQuery {
    /// The id to answer with `answerCallbackQuery`.
    pub id: String,
    /// Who pressed.
    pub from: User,
    /// The message carrying the button, if still accessible.
    pub message: Option<(ChatId, MessageId)>,
    /// The button's `callback_data` (untrusted: anyone can send any data).
    pub data: Option<String>,
}

/// A request to join a chat (`chat_join_request`): through an invite link that creates join
/// requests, or a public group that approves new members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The chat asked to join.
    pub chat: Chat,
    /// Who asked.
    pub from: User,
    /// `user_chat_id`: the private chat with the requester, which the bot may write to for
    /// 5 minutes (until the request is answered) even if they never started it.
    pub user_chat: ChatId,
    /// When the request was sent.
    pub date: UnixTime,
    /// `query_id` (Bot API 10.1): the request is a query for this bot as the chat's guard
    /// bot, to be answered with `answerChatJoinRequestQuery` within 10 seconds.
    pub query_id: Option<String>,
}

/// A change of someone's membership (`chat_member`) or of the bot's (`my_chat_member`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMemberUpdate {
    /// The chat.
    pub chat: Chat,
    /// Who made the change.
    pub actor: User,
    /// When.
    pub date: UnixTime,
    /// Whose membership changed.
    pub user: User,
    /// Status before.
    pub old: ChatMemberStatus,
    /// Status after.
    pub new: ChatMemberStatus,
    /// Rights after the change, when the new status is administrator or creator.
    pub new_rights: Option<ChatAdmin>,
}

impl ChatMemberUpdate {
    /// The user became a member (was not subscribed, now is).
    pub fn joined(&self) -> bool {
        !self.old.is_subscribed() && self.new.is_subscribed()
    }

    /// The user stopped being a member.
    pub fn left(&self) -> bool {
        self.old.is_subscribed() && !self.new.is_subscribed()
    }
}

/// The update kinds as they are written to the update journal: [`UpdateKind`] with the name of
/// an `Other` kind owned (read back as the same static name when this version knows it, as
/// `"other"` when it does not).
mod journal_form {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{CallbackQuery, ChatMemberUpdate, JoinRequest, Message, UpdateKind};

    impl Serialize for UpdateKind {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Kind::from(self.clone()).serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for UpdateKind {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Kind::deserialize(d).map(Self::from)
        }
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum Kind {
        Message(Message),
        EditedMessage(Message),
        CallbackQuery(CallbackQuery),
        ChatMember(ChatMemberUpdate),
        MyChatMember(ChatMemberUpdate),
        ChatJoinRequest(JoinRequest),
        Other(String),
    }

    impl From<UpdateKind> for Kind {
        fn from(k: UpdateKind) -> Self {
            match k {
                UpdateKind::Message(m) => Self::Message(m),
                UpdateKind::EditedMessage(m) => Self::EditedMessage(m),
                UpdateKind::CallbackQuery(c) => Self::CallbackQuery(c),
                UpdateKind::ChatMember(c) => Self::ChatMember(c),
                UpdateKind::MyChatMember(c) => Self::MyChatMember(c),
                UpdateKind::ChatJoinRequest(r) => Self::ChatJoinRequest(r),
                UpdateKind::Other(name) => Self::Other(name.to_owned()),
            }
        }
    }

    impl From<Kind> for UpdateKind {
        fn from(k: Kind) -> Self {
            match k {
                Kind::Message(m) => Self::Message(m),
                Kind::EditedMessage(m) => Self::EditedMessage(m),
                Kind::CallbackQuery(c) => Self::CallbackQuery(c),
                Kind::ChatMember(c) => Self::ChatMember(c),
                Kind::MyChatMember(c) => Self::MyChatMember(c),
                Kind::ChatJoinRequest(r) => Self::ChatJoinRequest(r),
                Kind::Other(name) => Self::Other(crate::botapi::lenient::other_kind_name(&name)),
            }
        }
    }
}
