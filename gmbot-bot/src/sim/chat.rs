//! Chats the simulator keeps: private chats, groups, supergroups and channels, with their
//! members, default permissions and messages.

use std::collections::{BTreeMap, HashMap};

use gmbot_core::domain::{MessageId, UserId};

use super::member::{MemberState, Permissions};

/// The kind of a chat (Bot API `Chat.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    /// A user's private chat with the bot.
    Private,
    /// A basic group (can be migrated to a supergroup).
    Group,
    /// A supergroup.
    Supergroup,
    /// A channel.
    Channel,
}

/// An inline button as the simulator stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimButton {
    /// Label.
    pub text: String,
    /// Link target, for URL buttons.
    pub url: Option<String>,
    /// Payload, for callback buttons.
    pub callback_data: Option<String>,
}

/// What a message is, beyond its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// A text message.
    Text,
    /// Service message: members joined.
    NewMembers(Vec<UserId>),
    /// Service message: a member left.
    LeftMember(UserId),
    /// Service message in a basic group that became the supergroup with this id.
    MigrateTo(i64),
    /// Service message in the new supergroup, naming the basic group it came from.
    MigrateFrom(i64),
}

/// A message in a simulated chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// Its id within the chat.
    pub id: MessageId,
    /// The sender (`from`), absent for channel posts.
    pub from: Option<UserId>,
    /// `sender_chat`: the group for anonymous admins, the channel for automatic forwards.
    pub sender_chat: Option<i64>,
    /// The text as users see it (HTML markup removed).
    pub text: String,
    /// The text as the bot sent it, with markup (bot messages with `parse_mode: HTML`).
    pub html: Option<String>,
    /// `is_automatic_forward`.
    pub is_automatic_forward: bool,
    /// The message this one replies to.
    pub reply_to: Option<MessageId>,
    /// Unix time it was sent.
    pub date: i64,
    /// Inline keyboard rows.
    pub buttons: Vec<Vec<SimButton>>,
    /// Removed by `deleteMessage`.
    pub deleted: bool,
    /// Changed by `editMessageText`.
    pub edited: bool,
    /// Sent without notification.
    pub silent: bool,
    /// Text or service message.
    pub kind: MessageKind,
}

impl SimMessage {
    /// A plain message with no buttons.
    pub(crate) fn text(id: MessageId, from: Option<UserId>, text: &str, date: i64) -> Self {
        Self {
            id,
            from,
            sender_chat: None,
            text: text.to_owned(),
            html: None,
            is_automatic_forward: false,
            reply_to: None,
            date,
            buttons: Vec::new(),
            deleted: false,
            edited: false,
            silent: false,
            kind: MessageKind::Text,
        }
    }

    /// Whether any button carries exactly this callback payload.
    pub fn has_callback(&self, data: &str) -> bool {
        self.buttons
            .iter()
            .flatten()
            .any(|b| b.callback_data.as_deref() == Some(data))
    }
}

/// A simulated chat.
#[derive(Debug, Clone)]
pub(crate) struct SimChat {
    pub(crate) id: i64,
    pub(crate) kind: ChatKind,
    pub(crate) title: String,
    pub(crate) username: Option<String>,
    pub(crate) default_permissions: Permissions,
    pub(crate) members: HashMap<i64, MemberState>,
    /// Bumped whenever `members` changes once the chat exists (member listings are cached
    /// per version).
    pub(crate) members_version: u64,
    pub(crate) messages: BTreeMap<i64, SimMessage>,
    pub(crate) next_message_id: i64,
    pub(crate) migrated_to: Option<i64>,
    pub(crate) primary_link: Option<String>,
    /// Chats banned from posting here on their own behalf (`banChatSenderChat`).
    pub(crate) banned_sender_chats: std::collections::HashSet<i64>,
    /// Ephemeral messages (Bot API 10.2), by ephemeral id: each seen by its receiver only,
    /// never part of [`Self::messages`].
    pub(crate) ephemeral: BTreeMap<i64, SimEphemeral>,
    pub(crate) next_ephemeral_id: i64,
}

/// An ephemeral message: shown in a chat to one user only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEphemeral {
    /// Its ephemeral id (`ephemeral_message_id`).
    pub id: i64,
    /// The only user who sees it.
    pub receiver: UserId,
    /// The message as the receiver sees it (its `id` is the ephemeral id).
    pub message: SimMessage,
}

impl SimChat {
    pub(crate) fn new(id: i64, kind: ChatKind, title: &str, username: Option<&str>) -> Self {
        Self {
            id,
            kind,
            title: title.to_owned(),
            username: username.map(|u| u.trim_start_matches('@').to_owned()),
            default_permissions: Permissions::group_default(),
            members: HashMap::new(),
            members_version: 0,
            messages: BTreeMap::new(),
            next_message_id: 1,
            migrated_to: None,
            primary_link: None,
            banned_sender_chats: Default::default(),
            ephemeral: BTreeMap::new(),
            next_ephemeral_id: 1,
        }
    }

    /// The user's status now (unknown users are `left`; expired restrictions are lifted).
    pub(crate) fn member(&self, user: i64, now: i64) -> MemberState {
        self.members
            .get(&user)
            .copied()
            .unwrap_or(MemberState::Left)
            .settle(now)
    }

    pub(crate) fn is_channel(&self) -> bool {
        self.kind == ChatKind::Channel
    }

    pub(crate) fn is_group(&self) -> bool {
        matches!(self.kind, ChatKind::Group | ChatKind::Supergroup)
    }

    pub(crate) fn next_id(&mut self) -> MessageId {
        let id = self.next_message_id;
        self.next_message_id += 1;
        MessageId(id)
    }

    pub(crate) fn push(&mut self, msg: SimMessage) {
        self.messages.insert(msg.id.0, msg);
    }
}

/// A simulated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    /// Telegram user id.
    pub id: UserId,
    /// First name (may contain anything, HTML included).
    pub first_name: String,
    /// Last name.
    pub last_name: Option<String>,
    /// Username without `@`.
    pub username: Option<String>,
    /// A bot account.
    pub is_bot: bool,
}
