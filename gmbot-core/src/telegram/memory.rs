//! `MemoryTelegram`: a scripted, in-memory Telegram implementing [`TelegramApi`].
//!
//! It is a shipped adapter, not a mock: the engine's tests, the examples and
//! library users' tests run against it. It keeps chats (groups and channels)
//! with their members, administrators and default permissions, the messages
//! posted and deleted, restrictions and kicks, and it behaves like Telegram
//! where GMBot depends on it (see TELEGRAM.md):
//!
//! - `getChatMember` on a channel where the bot is not an administrator fails
//!   with [`TelegramError::NotEnoughRights`]`("member list is inaccessible")`;
//! - an unknown chat fails with [`TelegramError::ChatNotFound`]`("chat not found")`;
//! - owners and administrators cannot be restricted or kicked
//!   (`can't remove chat owner` / `user is an administrator of the chat`);
//! - restricting needs the bot to be an admin with `can_restrict_members`,
//!   deleting someone else's message needs `can_delete_messages`;
//! - a restricted member keeps `is_member: true`; lifting the restriction
//!   restores the group's *default* permissions, not "everything allowed";
//! - a user the chat has never seen is `left`;
//! - `getChat` finds a chat by id, or by its public username; a chat without a
//!   username is visible only while the bot is in it;
//! - `createChatInviteLink` needs the bot to be an admin with `can_invite_users`
//!   and returns a new link each time; `editMessageText` edits only the bot's
//!   own, undeleted messages;
//! - join requests ([`MemoryTelegram::add_join_request`]) are approved or declined only by a
//!   bot with `can_invite_users`, once (`HIDE_REQUESTER_MISSING` afterwards); a request
//!   query is answered by its id, and `queue` leaves the request pending;
//! - ephemeral messages are kept apart from the chat's messages, for their receiver only,
//!   who must be in the chat; [`MemoryTelegram::set_ephemeral_supported`] turns them off
//!   (every ephemeral send is then refused, as by a chat or server without them).
//!
//! Every call is recorded (with the tokio instant it was made at) before it is
//! answered, including calls that fail, so tests can assert what was asked and
//! when. Errors can be injected for the next calls of a method, for every call
//! touching one chat, or for everything. Restrictions do not expire by
//! themselves: the memory Telegram has no wall clock.
//!
//! The handle is cheap to clone; clones share the same state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    ChatAdmin, ChatInfo, ChatTarget, ChatType, EphemeralId, JoinQueryAnswer, Method,
    OutgoingMessage, Posted, TelegramApi, TelegramError, TelegramResult,
};
use crate::domain::{ChannelId, ChatId, ChatMemberStatus, GroupId, MessageId, UnixTime, UserId};

/// The id the in-memory bot has unless [`MemoryTelegram::with_bot_id`] says otherwise.
pub const DEFAULT_BOT_ID: UserId = UserId(1_000_000_001);

/// A group's default member permissions (`getChat.permissions`), the subset
/// GMBot restores when it lifts a restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChatPermissions {
    /// `can_send_messages`.
    pub can_send_messages: bool,
    /// `can_send_photos`, `can_send_videos`, … (one flag for all media).
    pub can_send_media: bool,
    /// `can_send_other_messages` (stickers, GIFs, games).
    pub can_send_other_messages: bool,
    /// `can_add_web_page_previews`.
    pub can_add_web_page_previews: bool,
    /// `can_invite_users`.
    pub can_invite_users: bool,
    /// `can_pin_messages`.
    pub can_pin_messages: bool,
}

impl ChatPermissions {
    /// Everything a member of a typical open group may do (pinning is off by default in Telegram).
    pub const OPEN: ChatPermissions = ChatPermissions {
        can_send_messages: true,
        can_send_media: true,
        can_send_other_messages: true,
        can_add_web_page_previews: true,
        can_invite_users: true,
        can_pin_messages: false,
    };

    /// Nothing allowed: what a muted member gets.
    pub const MUTED: ChatPermissions = ChatPermissions {
        can_send_messages: false,
        can_send_media: false,
        can_send_other_messages: false,
        can_add_web_page_previews: false,
        can_invite_users: false,
        can_pin_messages: false,
    };
}

impl Default for ChatPermissions {
    fn default() -> Self {
        Self::OPEN
    }
}

/// The kind of a chat the memory Telegram knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatKind {
    /// A group or supergroup.
    Group,
    /// A channel.
    Channel,
    /// A user's private chat with the bot.
    Private,
}

/// One call made to the memory Telegram, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `getChatMember`.
    GetChatMember {
        /// Chat asked about.
        chat: ChatId,
        /// User asked about.
        user: UserId,
    },
    /// `getChatAdministrators`.
    GetChatAdministrators {
        /// Chat asked about.
        chat: ChatId,
    },
    /// `deleteMessage`.
    DeleteMessage {
        /// Chat of the message.
        chat: ChatId,
        /// The message.
        message: MessageId,
    },
    /// `deleteMessages`.
    DeleteMessages {
        /// Chat of the messages.
        chat: ChatId,
        /// The messages.
        messages: Vec<MessageId>,
    },
    /// `restrictChatMember` (mute).
    RestrictMember {
        /// Group.
        group: GroupId,
        /// Member.
        user: UserId,
        /// Until when (`None` = until lifted).
        until: Option<UnixTime>,
    },
    /// Lifting `restrictChatMember`.
    UnrestrictMember {
        /// Group.
        group: GroupId,
        /// Member.
        user: UserId,
    },
    /// `banChatSenderChat`.
    BanSenderChat {
        /// Group.
        group: GroupId,
        /// The channel banned from posting there.
        sender_chat: ChatId,
    },
    /// Kick (ban + unban).
    KickMember {
        /// Group.
        group: GroupId,
        /// Member.
        user: UserId,
    },
    /// `sendMessage`.
    SendMessage {
        /// Target chat.
        chat: ChatId,
        /// What was sent.
        message: OutgoingMessage,
    },
    /// `answerCallbackQuery`.
    AnswerCallback {
        /// The callback query id.
        callback_id: String,
        /// Text shown to the user.
        text: Option<String>,
        /// Shown as an alert rather than a toast.
        show_alert: bool,
    },
    /// `getChat`.
    GetChat {
        /// The chat asked about, as named.
        target: ChatTarget,
    },
    /// `createChatInviteLink`.
    CreateInviteLink {
        /// The chat the link is for.
        chat: ChatId,
    },
    /// `editMessageText`.
    EditMessage {
        /// Chat of the message.
        chat: ChatId,
        /// The message.
        message: MessageId,
        /// The new text and buttons.
        new: OutgoingMessage,
    },
    /// `approveChatJoinRequest`.
    ApproveJoinRequest {
        /// Group.
        group: GroupId,
        /// Requester.
        user: UserId,
    },
    /// `declineChatJoinRequest`.
    DeclineJoinRequest {
        /// Group.
        group: GroupId,
        /// Requester.
        user: UserId,
    },
    /// `answerChatJoinRequestQuery`.
    AnswerJoinRequestQuery {
        /// The group asked to join.
        group: GroupId,
        /// The query id.
        query_id: String,
        /// The answer.
        answer: JoinQueryAnswer,
    },
    /// `sendMessage` with ephemeral parameters.
    SendEphemeral {
        /// Chat it is shown in.
        chat: ChatId,
        /// The only user who sees it.
        receiver: UserId,
        /// What was sent.
        message: OutgoingMessage,
    },
    /// `deleteEphemeralMessage`.
    DeleteEphemeral {
        /// Chat it was shown in.
        chat: ChatId,
        /// Its receiver.
        receiver: UserId,
        /// The ephemeral message.
        message: EphemeralId,
    },
}

impl Call {
    /// The method this call invoked.
    pub fn method(&self) -> Method {
        match self {
            Call::GetChatMember { .. } => Method::GetChatMember,
            Call::GetChatAdministrators { .. } => Method::GetChatAdministrators,
            Call::DeleteMessage { .. } => Method::DeleteMessage,
            Call::DeleteMessages { .. } => Method::DeleteMessages,
            Call::RestrictMember { .. } => Method::RestrictMember,
            Call::UnrestrictMember { .. } => Method::UnrestrictMember,
            Call::KickMember { .. } => Method::KickMember,
            Call::BanSenderChat { .. } => Method::BanSenderChat,
            Call::SendMessage { .. } => Method::SendMessage,
            Call::AnswerCallback { .. } => Method::AnswerCallback,
            Call::GetChat { .. } => Method::GetChat,
            Call::CreateInviteLink { .. } => Method::CreateInviteLink,
            Call::EditMessage { .. } => Method::EditMessage,
            Call::ApproveJoinRequest { .. } => Method::ApproveJoinRequest,
            Call::DeclineJoinRequest { .. } => Method::DeclineJoinRequest,
            Call::AnswerJoinRequestQuery { .. } => Method::AnswerJoinRequestQuery,
            Call::SendEphemeral { .. } => Method::SendEphemeral,
            Call::DeleteEphemeral { .. } => Method::DeleteEphemeral,
        }
    }

    /// The chat the call concerns (`None` for callback answers and for
    /// `getChat` by username).
    pub fn chat(&self) -> Option<ChatId> {
        match self {
            Call::GetChatMember { chat, .. }
            | Call::GetChatAdministrators { chat }
            | Call::DeleteMessage { chat, .. }
            | Call::DeleteMessages { chat, .. }
            | Call::SendMessage { chat, .. }
            | Call::CreateInviteLink { chat }
            | Call::EditMessage { chat, .. }
            | Call::SendEphemeral { chat, .. }
            | Call::DeleteEphemeral { chat, .. }
            | Call::GetChat {
                target: ChatTarget::Id(chat),
            } => Some(*chat),
            Call::GetChat {
                target: ChatTarget::Username(_),
            } => None,
            Call::RestrictMember { group, .. }
            | Call::UnrestrictMember { group, .. }
            | Call::KickMember { group, .. }
            | Call::BanSenderChat { group, .. }
            | Call::ApproveJoinRequest { group, .. }
            | Call::DeclineJoinRequest { group, .. }
            | Call::AnswerJoinRequestQuery { group, .. } => Some(ChatId::from(*group)),
            Call::AnswerCallback { .. } => None,
        }
    }
}

/// A recorded call and the (tokio) instant it reached the memory Telegram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// When the call arrived (follows tokio's paused clock in tests).
    pub at: Instant,
    /// The call.
    pub call: Call,
}

/// A message the bot sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// Chat it went to.
    pub chat: ChatId,
    /// Its id in that chat.
    pub id: MessageId,
    /// Text and buttons.
    pub message: OutgoingMessage,
    /// Deleted since.
    pub deleted: bool,
}

/// An ephemeral message the bot sent, shown to its receiver only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEphemeral {
    /// Chat it is shown in.
    pub chat: ChatId,
    /// The only user who sees it.
    pub receiver: UserId,
    /// Its ephemeral id.
    pub id: EphemeralId,
    /// Text and buttons.
    pub message: OutgoingMessage,
    /// Deleted since.
    pub deleted: bool,
}

/// A restriction currently in force in the memory Telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveRestriction {
    /// `until_date` as asked (`None` = forever).
    pub until: Option<UnixTime>,
    /// The permissions the member has now.
    pub permissions: ChatPermissions,
}

#[derive(Debug)]
struct Message {
    author: UserId,
    deleted: bool,
}

#[derive(Debug)]
struct Chat {
    kind: ChatKind,
    title: Option<String>,
    /// Public username without `@`.
    username: Option<String>,
    members: HashMap<UserId, ChatMemberStatus>,
    admins: HashMap<UserId, ChatAdmin>,
    default_permissions: ChatPermissions,
    /// Per-member permissions differing from the defaults (set by restrict / unrestrict).
    permissions: HashMap<UserId, ActiveRestriction>,
    messages: HashMap<MessageId, Message>,
    next_message_id: i64,
}

impl Chat {
    fn new(kind: ChatKind) -> Self {
        Self {
            kind,
            title: None,
            username: None,
            members: HashMap::new(),
            admins: HashMap::new(),
            default_permissions: ChatPermissions::OPEN,
            permissions: HashMap::new(),
            messages: HashMap::new(),
            next_message_id: 1,
        }
    }

    fn status(&self, user: UserId) -> ChatMemberStatus {
        self.members
            .get(&user)
            .copied()
            .unwrap_or(ChatMemberStatus::Left)
    }

    fn post(&mut self, author: UserId) -> MessageId {
        let id = MessageId(self.next_message_id);
        self.next_message_id += 1;
        self.messages.insert(
            id,
            Message {
                author,
                deleted: false,
            },
        );
        id
    }
}

#[derive(Debug)]
struct State {
    bot: UserId,
    chats: HashMap<ChatId, Chat>,
    /// Users who started a private chat with the bot (the bot may message them).
    private_chats: HashSet<UserId>,
    calls: Vec<RecordedCall>,
    sent: Vec<SentMessage>,
    deleted: Vec<(ChatId, MessageId)>,
    kicks: Vec<(GroupId, UserId)>,
    /// Join requests waiting for an answer, with the query id a guard bot got (if any).
    join_requests: HashMap<(GroupId, UserId), Option<String>>,
    ephemeral: Vec<SentEphemeral>,
    ephemeral_supported: bool,
    banned_sender_chats: Vec<(GroupId, ChatId)>,
    invite_links: Vec<(ChatId, String)>,
    fail_next: HashMap<Method, VecDeque<TelegramError>>,
    chat_failures: HashMap<ChatId, TelegramError>,
    global_failure: Option<TelegramError>,
    latency: Duration,
}

/// An in-memory Telegram: see the [module documentation](self).
///
/// ```
/// # async fn demo() {
/// use gmbot_core::domain::{ChannelId, ChatMemberStatus, UserId};
/// use gmbot_core::telegram::{MemoryTelegram, Method, TelegramApi};
///
/// let channel = ChannelId(-1_001);
/// let tg = MemoryTelegram::new()
///     .add_channel(channel)
///     .set_member(channel, UserId(42), ChatMemberStatus::Member);
/// let status = tg.get_chat_member(channel.into(), UserId(42)).await;
/// assert_eq!(status, Ok(ChatMemberStatus::Member));
/// assert_eq!(tg.count(Method::GetChatMember), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryTelegram {
    state: Arc<Mutex<State>>,
}

impl Default for MemoryTelegram {
    fn default() -> Self {
        Self::new()
    }
}

fn full_rights(user: UserId, is_bot: bool, is_creator: bool) -> ChatAdmin {
    ChatAdmin {
        user,
        is_bot,
        is_creator,
        can_delete_messages: true,
        can_restrict_members: true,
        can_invite_users: true,
    }
}

impl MemoryTelegram {
    /// An empty Telegram whose bot is [`DEFAULT_BOT_ID`].
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                bot: DEFAULT_BOT_ID,
                chats: HashMap::new(),
                private_chats: HashSet::new(),
                calls: Vec::new(),
                sent: Vec::new(),
                deleted: Vec::new(),
                kicks: Vec::new(),
                join_requests: HashMap::new(),
                ephemeral: Vec::new(),
                ephemeral_supported: true,
                banned_sender_chats: Vec::new(),
                invite_links: Vec::new(),
                fail_next: HashMap::new(),
                chat_failures: HashMap::new(),
                global_failure: None,
                latency: Duration::ZERO,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ----- setup (builder style: each returns the handle) -----

    /// Changes the bot's own user id (call before adding chats).
    pub fn with_bot_id(self, bot: UserId) -> Self {
        self.lock().bot = bot;
        self
    }

    /// The bot's user id.
    pub fn bot_id(&self) -> UserId {
        self.lock().bot
    }

    /// Adds a group in which the bot is an administrator with delete,
    /// restrict and invite rights (what a protected group needs).
    pub fn add_group(self, group: GroupId) -> Self {
        self.add_chat(ChatId::from(group), ChatKind::Group)
    }

    /// Adds a channel of which the bot is an administrator (so it may read memberships).
    pub fn add_channel(self, channel: ChannelId) -> Self {
        self.add_chat(ChatId::from(channel), ChatKind::Channel)
    }

    fn add_chat(self, chat: ChatId, kind: ChatKind) -> Self {
        {
            let mut st = self.lock();
            let bot = st.bot;
            let entry = st.chats.entry(chat).or_insert_with(|| Chat::new(kind));
            entry.kind = kind;
            entry.members.insert(bot, ChatMemberStatus::Administrator);
            entry.admins.insert(bot, full_rights(bot, true, false));
        }
        self
    }

    /// Removes a chat: every later call about it fails with `ChatNotFound`
    /// (the chat was deleted or the bot was removed from it).
    pub fn remove_chat(self, chat: impl Into<ChatId>) -> Self {
        self.lock().chats.remove(&chat.into());
        self
    }

    /// Sets a user's status in a chat (the chat must have been added; otherwise
    /// this does nothing). `Creator`/`Administrator` also add an admin entry
    /// (owner: all rights; admin: none — use [`set_admin`](Self::set_admin) for
    /// rights); any other status removes it.
    pub fn set_member(
        self,
        chat: impl Into<ChatId>,
        user: UserId,
        status: ChatMemberStatus,
    ) -> Self {
        {
            let mut st = self.lock();
            if let Some(c) = st.chats.get_mut(&chat.into()) {
                c.members.insert(user, status);
                match status {
                    ChatMemberStatus::Creator => {
                        c.admins.insert(user, full_rights(user, false, true));
                    }
                    ChatMemberStatus::Administrator => {
                        c.admins.entry(user).or_insert(ChatAdmin {
                            user,
                            is_bot: false,
                            is_creator: false,
                            can_delete_messages: false,
                            can_restrict_members: false,
                            can_invite_users: false,
                        });
                    }
                    _ => {
                        c.admins.remove(&user);
                    }
                }
                if !matches!(status, ChatMemberStatus::Restricted { .. }) {
                    c.permissions.remove(&user);
                }
            }
        }
        self
    }

    /// Makes `admin.user` an administrator (or the owner, if `is_creator`) of
    /// the chat with exactly the given rights. Setting the bot's own entry
    /// changes the bot's rights.
    pub fn set_admin(self, chat: impl Into<ChatId>, admin: ChatAdmin) -> Self {
        {
            let mut st = self.lock();
            if let Some(c) = st.chats.get_mut(&chat.into()) {
                let status = if admin.is_creator {
                    ChatMemberStatus::Creator
                } else {
                    ChatMemberStatus::Administrator
                };
                c.members.insert(admin.user, status);
                c.permissions.remove(&admin.user);
                c.admins.insert(admin.user, admin);
            }
        }
        self
    }

    /// Makes the bot an administrator of a chat with full rights (`true`) or a
    /// plain member (`false`). In a channel, `false` means memberships are no
    /// longer readable ("member list is inaccessible").
    pub fn set_bot_admin(self, chat: impl Into<ChatId>, is_admin: bool) -> Self {
        let chat = chat.into();
        let bot = self.bot_id();
        if is_admin {
            self.set_admin(chat, full_rights(bot, true, false))
        } else {
            self.set_member(chat, bot, ChatMemberStatus::Member)
        }
    }

    /// [`set_bot_admin`](Self::set_bot_admin) for a channel.
    pub fn set_bot_channel_admin(self, channel: ChannelId, is_admin: bool) -> Self {
        self.set_bot_admin(channel, is_admin)
    }

    /// Sets a chat's title (what `getChat` reports).
    pub fn set_title(self, chat: impl Into<ChatId>, title: &str) -> Self {
        if let Some(c) = self.lock().chats.get_mut(&chat.into()) {
            c.title = Some(title.to_owned());
        }
        self
    }

    /// Gives a chat a public username (without `@`), or removes it (`None`):
    /// a chat without one is private, found by `getChat` only while the bot is in it.
    pub fn set_username(self, chat: impl Into<ChatId>, username: Option<&str>) -> Self {
        if let Some(c) = self.lock().chats.get_mut(&chat.into()) {
            c.username = username.map(|u| u.trim_start_matches('@').to_owned());
        }
        self
    }

    /// Sets a group's default member permissions (`getChat.permissions`).
    pub fn set_default_permissions(self, group: GroupId, permissions: ChatPermissions) -> Self {
        if let Some(c) = self.lock().chats.get_mut(&ChatId::from(group)) {
            c.default_permissions = permissions;
        }
        self
    }

    /// Lets the bot message `user` privately (the user pressed Start).
    pub fn add_private_chat(self, user: UserId) -> Self {
        self.lock().private_chats.insert(user);
        self
    }

    /// `user` asks to join `group` (a `chat_join_request`); `query_id` is the id a guard bot
    /// gets with Bot API 10.1 join request queries.
    pub fn add_join_request(self, group: GroupId, user: UserId, query_id: Option<&str>) -> Self {
        self.lock()
            .join_requests
            .insert((group, user), query_id.map(str::to_owned));
        self
    }

    /// Whether ephemeral messages can be sent (default `true`); off, every ephemeral send
    /// fails with a `400 Bad Request`, as in a chat or on a server without them.
    pub fn set_ephemeral_supported(&self, supported: bool) {
        self.lock().ephemeral_supported = supported;
    }

    /// Every call waits this long (tokio time) before it is answered, as a
    /// network round trip would; lets tests overlap concurrent calls.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Posts a message by `author` into a chat (an incoming message the bot
    /// may later delete). Returns `None` if the chat is unknown.
    pub fn post_message(&self, chat: impl Into<ChatId>, author: UserId) -> Option<MessageId> {
        self.lock()
            .chats
            .get_mut(&chat.into())
            .map(|c| c.post(author))
    }

    // ----- error injection -----

    /// The next call of `method` fails with `error` (queued: several calls
    /// queue several failures, consumed in order). The call is still recorded.
    pub fn fail_next(&self, method: Method, error: TelegramError) {
        self.fail_next_times(method, error, 1);
    }

    /// The next `times` calls of `method` fail with `error`.
    pub fn fail_next_times(&self, method: Method, error: TelegramError, times: usize) {
        let mut st = self.lock();
        let queue = st.fail_next.entry(method).or_default();
        queue.extend(std::iter::repeat_n(error, times));
    }

    /// Every call about `chat` fails with `error` until [`heal_chat`](Self::heal_chat).
    pub fn fail_chat(&self, chat: impl Into<ChatId>, error: TelegramError) {
        self.lock().chat_failures.insert(chat.into(), error);
    }

    /// Ends a [`fail_chat`](Self::fail_chat).
    pub fn heal_chat(&self, chat: impl Into<ChatId>) {
        self.lock().chat_failures.remove(&chat.into());
    }

    /// Every call fails with `error` (Telegram is down) until `set_global_failure(None)`.
    pub fn set_global_failure(&self, error: Option<TelegramError>) {
        self.lock().global_failure = error;
    }

    // ----- inspection -----

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.iter().map(|r| r.call.clone()).collect()
    }

    /// Every call so far with its arrival instant.
    pub fn timed_calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    /// How many calls of `method` were made (failed ones included).
    pub fn count(&self, method: Method) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|r| r.call.method() == method)
            .count()
    }

    /// How many calls of `method` concerned `chat`.
    pub fn count_in(&self, method: Method, chat: impl Into<ChatId>) -> usize {
        let chat = chat.into();
        self.lock()
            .calls
            .iter()
            .filter(|r| r.call.method() == method && r.call.chat() == Some(chat))
            .count()
    }

    /// Forgets the call log (state and injected errors stay).
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// A user's current status in a chat (`None` if the chat is unknown).
    pub fn status_of(&self, chat: impl Into<ChatId>, user: UserId) -> Option<ChatMemberStatus> {
        self.lock().chats.get(&chat.into()).map(|c| c.status(user))
    }

    /// The restriction currently on a member, if any.
    pub fn restriction_of(&self, group: GroupId, user: UserId) -> Option<ActiveRestriction> {
        self.lock()
            .chats
            .get(&ChatId::from(group))
            .and_then(|c| c.permissions.get(&user).copied())
    }

    /// The permissions a member has now: the group's defaults unless restricted;
    /// `None` if the group is unknown.
    pub fn permissions_of(&self, group: GroupId, user: UserId) -> Option<ChatPermissions> {
        let st = self.lock();
        let c = st.chats.get(&ChatId::from(group))?;
        Some(
            c.permissions
                .get(&user)
                .map_or(c.default_permissions, |r| r.permissions),
        )
    }

    /// Every message the bot sent, in order (deleted ones flagged).
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.lock().sent.clone()
    }

    /// Every successful deletion, in order.
    pub fn deleted_messages(&self) -> Vec<(ChatId, MessageId)> {
        self.lock().deleted.clone()
    }

    /// Chats banned from posting in a group (`banChatSenderChat`), in order.
    pub fn banned_sender_chats(&self) -> Vec<(GroupId, ChatId)> {
        self.lock().banned_sender_chats.clone()
    }

    /// Every successful kick, in order.
    pub fn kicks(&self) -> Vec<(GroupId, UserId)> {
        self.lock().kicks.clone()
    }

    /// Every invite link created, in order, with its chat.
    pub fn invite_links(&self) -> Vec<(ChatId, String)> {
        self.lock().invite_links.clone()
    }

    /// Join requests not yet approved or declined, sorted.
    pub fn pending_join_requests(&self) -> Vec<(GroupId, UserId)> {
        let mut out: Vec<_> = self.lock().join_requests.keys().copied().collect();
        out.sort();
        out
    }

    /// Every ephemeral message the bot sent, in order (deleted ones flagged).
    pub fn ephemeral_messages(&self) -> Vec<SentEphemeral> {
        self.lock().ephemeral.clone()
    }

    /// Every callback answer, in order (`(callback_id, text, show_alert)`).
    pub fn callback_answers(&self) -> Vec<(String, Option<String>, bool)> {
        self.lock()
            .calls
            .iter()
            .filter_map(|r| match &r.call {
                Call::AnswerCallback {
                    callback_id,
                    text,
                    show_alert,
                } => Some((callback_id.clone(), text.clone(), *show_alert)),
                _ => None,
            })
            .collect()
    }

    // ----- the call path -----

    /// Records the call, waits the configured latency, then returns the
    /// injected error that applies, if any.
    /// Deletes one message as `deleteMessage` would, without recording a call.
    fn delete_now(&self, chat: ChatId, message: MessageId) -> TelegramResult<()> {
        let mut st = self.lock();
        let bot = st.bot;
        let can_delete = {
            let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
            bot_rights(&st, c).is_some_and(|r| r.can_delete_messages)
        };
        let c = st.chats.get_mut(&chat).ok_or_else(chat_not_found)?;
        let msg = c
            .messages
            .get_mut(&message)
            .filter(|m| !m.deleted)
            .ok_or_else(|| TelegramError::BadRequest("message to delete not found".into()))?;
        if msg.author != bot && !can_delete {
            return Err(TelegramError::NotEnoughRights(
                "message can't be deleted".into(),
            ));
        }
        msg.deleted = true;
        st.deleted.push((chat, message));
        if let Some(s) = st
            .sent
            .iter_mut()
            .find(|s| s.chat == chat && s.id == message)
        {
            s.deleted = true;
        }
        Ok(())
    }

    async fn enter(&self, call: Call) -> TelegramResult<()> {
        let (latency, injected) = {
            let mut st = self.lock();
            let method = call.method();
            let chat = call.chat();
            st.calls.push(RecordedCall {
                at: Instant::now(),
                call,
            });
            let injected = st
                .fail_next
                .get_mut(&method)
                .and_then(VecDeque::pop_front)
                .or_else(|| chat.and_then(|c| st.chat_failures.get(&c).cloned()))
                .or_else(|| st.global_failure.clone());
            (st.latency, injected)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match injected {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn chat_not_found() -> TelegramError {
    TelegramError::ChatNotFound("chat not found".into())
}

fn no_restrict_rights() -> TelegramError {
    TelegramError::NotEnoughRights("not enough rights to restrict/unrestrict chat member".into())
}

/// The bot's rights in a chat, or `None` if it is not an administrator there.
fn bot_rights(st: &State, chat: &Chat) -> Option<ChatAdmin> {
    chat.admins.get(&st.bot).cloned()
}

/// Checks that `user` may be restricted or kicked in `chat` by the bot.
fn check_restrictable(st: &State, chat: &Chat, user: UserId) -> TelegramResult<()> {
    if chat.kind != ChatKind::Group {
        return Err(TelegramError::BadRequest(
            "method is available only for supergroups".into(),
        ));
    }
    if !bot_rights(st, chat).is_some_and(|r| r.can_restrict_members) {
        return Err(no_restrict_rights());
    }
    match chat.status(user) {
        ChatMemberStatus::Creator => {
            Err(TelegramError::BadRequest("can't remove chat owner".into()))
        }
        ChatMemberStatus::Administrator => Err(TelegramError::BadRequest(
            "user is an administrator of the chat".into(),
        )),
        _ => Ok(()),
    }
}

/// Telegram's type for a chat of the memory Telegram. Its groups behave like
/// supergroups (members can be restricted), so they report as such.
fn chat_type(kind: ChatKind) -> ChatType {
    match kind {
        ChatKind::Channel => ChatType::Channel,
        ChatKind::Private => ChatType::Private,
        ChatKind::Group => ChatType::Supergroup,
    }
}

/// Answers one join request as `approveChatJoinRequest`/`declineChatJoinRequest` would.
fn settle_join_request(
    st: &mut State,
    group: GroupId,
    user: UserId,
    approve: bool,
) -> TelegramResult<()> {
    let chat = ChatId::from(group);
    let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
    if !bot_rights(st, c).is_some_and(|r| r.can_invite_users) {
        return Err(TelegramError::NotEnoughRights("CHAT_ADMIN_REQUIRED".into()));
    }
    if st.join_requests.remove(&(group, user)).is_none() {
        return Err(TelegramError::BadRequest("HIDE_REQUESTER_MISSING".into()));
    }
    if approve {
        if let Some(c) = st.chats.get_mut(&chat) {
            let status = match c.status(user) {
                ChatMemberStatus::Restricted { .. } => {
                    ChatMemberStatus::Restricted { is_member: true }
                }
                _ => ChatMemberStatus::Member,
            };
            c.members.insert(user, status);
        }
    }
    Ok(())
}

#[async_trait]
impl TelegramApi for MemoryTelegram {
    async fn get_chat_member(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> TelegramResult<ChatMemberStatus> {
        self.enter(Call::GetChatMember { chat, user }).await?;
        let st = self.lock();
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        // Telegram reveals channel memberships only to the channel's admins (TELEGRAM.md).
        if c.kind == ChatKind::Channel && !c.admins.contains_key(&st.bot) {
            return Err(TelegramError::NotEnoughRights(
                "member list is inaccessible".into(),
            ));
        }
        Ok(c.status(user))
    }

    async fn get_chat_administrators(&self, chat: ChatId) -> TelegramResult<Vec<ChatAdmin>> {
        self.enter(Call::GetChatAdministrators { chat }).await?;
        let st = self.lock();
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        let mut admins: Vec<ChatAdmin> = c.admins.values().cloned().collect();
        // Owner first, then by id: a stable order like Telegram's.
        admins.sort_by_key(|a| (!a.is_creator, a.user));
        Ok(admins)
    }

    async fn delete_message(&self, chat: ChatId, message: MessageId) -> TelegramResult<()> {
        self.enter(Call::DeleteMessage { chat, message }).await?;
        self.delete_now(chat, message)
    }

    async fn delete_messages(&self, chat: ChatId, messages: &[MessageId]) -> TelegramResult<()> {
        self.enter(Call::DeleteMessages {
            chat,
            messages: messages.to_vec(),
        })
        .await?;
        if messages.is_empty() || messages.len() > super::MAX_BULK_DELETE {
            return Err(TelegramError::BadRequest(
                "message_ids must contain 1-100 identifiers".into(),
            ));
        }
        // Like Telegram: messages already gone are skipped; missing rights fail the call.
        for &message in messages {
            match self.delete_now(chat, message) {
                Ok(()) | Err(TelegramError::BadRequest(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn restrict_member(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        self.enter(Call::RestrictMember { group, user, until })
            .await?;
        let mut guard = self.lock();
        let st = &mut *guard;
        let chat = ChatId::from(group);
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        check_restrictable(st, c, user)?;
        let c = st.chats.get_mut(&chat).ok_or_else(chat_not_found)?;
        // A restricted user keeps `is_member` (a restricted non-member stays out).
        let is_member = match c.status(user) {
            ChatMemberStatus::Member => true,
            ChatMemberStatus::Restricted { is_member } => is_member,
            _ => false,
        };
        c.members
            .insert(user, ChatMemberStatus::Restricted { is_member });
        c.permissions.insert(
            user,
            ActiveRestriction {
                until,
                permissions: ChatPermissions::MUTED,
            },
        );
        Ok(())
    }

    async fn unrestrict_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.enter(Call::UnrestrictMember { group, user }).await?;
        let mut guard = self.lock();
        let st = &mut *guard;
        let chat = ChatId::from(group);
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        check_restrictable(st, c, user)?;
        let c = st.chats.get_mut(&chat).ok_or_else(chat_not_found)?;
        // Restoring the group's default permissions makes the user an ordinary
        // member again (or leaves them out, if they were not in the group).
        if let ChatMemberStatus::Restricted { is_member } = c.status(user) {
            let status = if is_member {
                ChatMemberStatus::Member
            } else {
                ChatMemberStatus::Left
            };
            c.members.insert(user, status);
        }
        c.permissions.remove(&user);
        Ok(())
    }

    async fn kick_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.enter(Call::KickMember { group, user }).await?;
        let mut guard = self.lock();
        let st = &mut *guard;
        let chat = ChatId::from(group);
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        check_restrictable(st, c, user)?;
        let c = st.chats.get_mut(&chat).ok_or_else(chat_not_found)?;
        // Ban (until KICK_BAN_SECS ahead, never forever) + unban: out of the group, free
        // to rejoin at once. The in-memory ban has no clock of its own, so the two steps are
        // applied together; the Bot API client sends them as two calls.
        c.members.insert(user, ChatMemberStatus::Left);
        c.permissions.remove(&user);
        st.kicks.push((group, user));
        Ok(())
    }

    async fn ban_sender_chat(&self, group: GroupId, sender_chat: ChatId) -> TelegramResult<()> {
        self.enter(Call::BanSenderChat { group, sender_chat })
            .await?;
        let mut guard = self.lock();
        let st = &mut *guard;
        let c = st
            .chats
            .get(&ChatId::from(group))
            .ok_or_else(chat_not_found)?;
        if !bot_rights(st, c).is_some_and(|r| r.can_restrict_members) {
            return Err(no_restrict_rights());
        }
        if !st.banned_sender_chats.contains(&(group, sender_chat)) {
            st.banned_sender_chats.push((group, sender_chat));
        }
        Ok(())
    }

    async fn send_message(
        &self,
        chat: ChatId,
        message: &OutgoingMessage,
    ) -> TelegramResult<MessageId> {
        self.enter(Call::SendMessage {
            chat,
            message: message.clone(),
        })
        .await?;
        let mut guard = self.lock();
        let st = &mut *guard;
        if message.html.is_empty() {
            return Err(TelegramError::BadRequest("message text is empty".into()));
        }
        if message.html.chars().count() > 4096 {
            return Err(TelegramError::BadRequest("message is too long".into()));
        }
        for button in message.buttons.iter().flatten() {
            if let super::InlineButton::Callback { data, .. } = button {
                if data.is_empty() || data.len() > 64 {
                    return Err(TelegramError::BadRequest("BUTTON_DATA_INVALID".into()));
                }
            }
        }
        let bot = st.bot;
        let id = if let Some(c) = st.chats.get_mut(&chat) {
            if c.kind == ChatKind::Channel && !c.admins.contains_key(&bot) {
                return Err(TelegramError::NotEnoughRights(
                    "not enough rights to send text messages to the chat".into(),
                ));
            }
            c.post(bot)
        } else if chat.get() > 0 {
            let user = UserId(chat.get());
            if !st.private_chats.contains(&user) {
                return Err(TelegramError::Forbidden(
                    "bot can't initiate conversation with a user".into(),
                ));
            }
            let c = st
                .chats
                .entry(chat)
                .or_insert_with(|| Chat::new(ChatKind::Private));
            c.post(bot)
        } else {
            return Err(chat_not_found());
        };
        st.sent.push(SentMessage {
            chat,
            id,
            message: message.clone(),
            deleted: false,
        });
        Ok(id)
    }

    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        show_alert: bool,
    ) -> TelegramResult<()> {
        self.enter(Call::AnswerCallback {
            callback_id: callback_id.to_owned(),
            text: text.map(str::to_owned),
            show_alert,
        })
        .await
    }

    async fn get_chat(&self, target: &ChatTarget) -> TelegramResult<ChatInfo> {
        self.enter(Call::GetChat {
            target: target.clone(),
        })
        .await?;
        let st = self.lock();
        let found = match target {
            ChatTarget::Id(id) => st.chats.get_key_value(id),
            ChatTarget::Username(name) => st.chats.iter().find(|(_, c)| {
                c.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(name.as_str()))
            }),
        };
        let Some((&id, c)) = found else {
            // A user who started the bot has a private chat the bot can read.
            if let ChatTarget::Id(id) = target {
                if st.private_chats.contains(&UserId(id.get())) {
                    return Ok(ChatInfo {
                        id: *id,
                        kind: ChatType::Private,
                        title: None,
                        username: None,
                    });
                }
            }
            return Err(chat_not_found());
        };
        // Without a username a chat is private: only its members can see it.
        if c.username.is_none() && c.kind != ChatKind::Private && !c.status(st.bot).is_subscribed()
        {
            return Err(chat_not_found());
        }
        Ok(ChatInfo {
            id,
            kind: chat_type(c.kind),
            title: c.title.clone(),
            username: c.username.clone(),
        })
    }

    async fn create_invite_link(&self, chat: ChatId) -> TelegramResult<String> {
        self.enter(Call::CreateInviteLink { chat }).await?;
        let mut guard = self.lock();
        let st = &mut *guard;
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        if !bot_rights(st, c).is_some_and(|r| r.can_invite_users) {
            return Err(TelegramError::NotEnoughRights(
                "not enough rights to manage chat invite link".into(),
            ));
        }
        let link = format!(
            "https://t.me/+mem{}x{}",
            chat.get().unsigned_abs(),
            st.invite_links.len() + 1
        );
        st.invite_links.push((chat, link.clone()));
        Ok(link)
    }

    async fn edit_message(
        &self,
        chat: ChatId,
        message: MessageId,
        new: &OutgoingMessage,
    ) -> TelegramResult<()> {
        self.enter(Call::EditMessage {
            chat,
            message,
            new: new.clone(),
        })
        .await?;
        let mut guard = self.lock();
        let st = &mut *guard;
        if new.html.is_empty() {
            return Err(TelegramError::BadRequest("message text is empty".into()));
        }
        if new.html.chars().count() > 4096 {
            return Err(TelegramError::BadRequest("message is too long".into()));
        }
        let bot = st.bot;
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        let m = c
            .messages
            .get(&message)
            .filter(|m| !m.deleted)
            .ok_or_else(|| TelegramError::BadRequest("message to edit not found".into()))?;
        if m.author != bot {
            return Err(TelegramError::BadRequest("message can't be edited".into()));
        }
        if let Some(sent) = st
            .sent
            .iter_mut()
            .find(|s| s.chat == chat && s.id == message)
        {
            sent.message.html.clone_from(&new.html);
            sent.message.buttons.clone_from(&new.buttons);
        }
        Ok(())
    }

    async fn approve_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.enter(Call::ApproveJoinRequest { group, user }).await?;
        settle_join_request(&mut self.lock(), group, user, true)
    }

    async fn decline_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.enter(Call::DeclineJoinRequest { group, user }).await?;
        settle_join_request(&mut self.lock(), group, user, false)
    }

    async fn answer_join_request_query(
        &self,
        group: GroupId,
        query_id: &str,
        answer: JoinQueryAnswer,
    ) -> TelegramResult<()> {
        self.enter(Call::AnswerJoinRequestQuery {
            group,
            query_id: query_id.to_owned(),
            answer,
        })
        .await?;
        let mut st = self.lock();
        let user = st
            .join_requests
            .iter()
            .find(|((g, _), q)| *g == group && q.as_deref() == Some(query_id))
            .map(|((_, u), _)| *u)
            .ok_or_else(|| TelegramError::BadRequest("QUERY_ID_INVALID".into()))?;
        match answer {
            JoinQueryAnswer::Approve => settle_join_request(&mut st, group, user, true),
            JoinQueryAnswer::Decline => settle_join_request(&mut st, group, user, false),
            // An ordinary pending request from now on, for the admins (or the bot) to decide.
            JoinQueryAnswer::Queue => {
                st.join_requests.insert((group, user), None);
                Ok(())
            }
        }
    }

    async fn send_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: &OutgoingMessage,
    ) -> TelegramResult<Posted> {
        self.enter(Call::SendEphemeral {
            chat,
            receiver,
            message: message.clone(),
        })
        .await?;
        let mut st = self.lock();
        if !st.ephemeral_supported {
            return Err(TelegramError::BadRequest(
                "ephemeral messages are not available in this chat".into(),
            ));
        }
        if message.html.is_empty() {
            return Err(TelegramError::BadRequest("message text is empty".into()));
        }
        let c = st.chats.get(&chat).ok_or_else(chat_not_found)?;
        if !c.status(receiver).is_subscribed() {
            return Err(TelegramError::BadRequest(
                "the receiver is not a member of the chat".into(),
            ));
        }
        let id = EphemeralId(i64::try_from(st.ephemeral.len()).unwrap_or(i64::MAX) + 1);
        st.ephemeral.push(SentEphemeral {
            chat,
            receiver,
            id,
            message: message.clone(),
            deleted: false,
        });
        Ok(Posted::Ephemeral(id))
    }

    async fn delete_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: EphemeralId,
    ) -> TelegramResult<()> {
        self.enter(Call::DeleteEphemeral {
            chat,
            receiver,
            message,
        })
        .await?;
        let mut st = self.lock();
        let m = st
            .ephemeral
            .iter_mut()
            .find(|e| e.chat == chat && e.receiver == receiver && e.id == message && !e.deleted)
            .ok_or_else(|| TelegramError::BadRequest("message to delete not found".into()))?;
        m.deleted = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::InlineButton;

    const GROUP: GroupId = GroupId(-100_100);
    const CHANNEL: ChannelId = ChannelId(-100_200);
    const ALICE: UserId = UserId(11);
    const BOB: UserId = UserId(12);
    const OWNER: UserId = UserId(13);
    const ADMIN: UserId = UserId(14);

    fn world() -> MemoryTelegram {
        MemoryTelegram::new()
            .add_group(GROUP)
            .add_channel(CHANNEL)
            .set_member(GROUP, ALICE, ChatMemberStatus::Member)
            .set_member(GROUP, BOB, ChatMemberStatus::Member)
            .set_member(GROUP, OWNER, ChatMemberStatus::Creator)
            .set_member(GROUP, ADMIN, ChatMemberStatus::Administrator)
            .set_member(CHANNEL, ALICE, ChatMemberStatus::Member)
    }

    #[tokio::test]
    async fn reads_statuses_and_counts_calls() {
        let tg = world();
        assert_eq!(
            tg.get_chat_member(CHANNEL.into(), ALICE).await,
            Ok(ChatMemberStatus::Member)
        );
        assert_eq!(
            tg.get_chat_member(CHANNEL.into(), BOB).await,
            Ok(ChatMemberStatus::Left)
        );
        assert_eq!(tg.count(Method::GetChatMember), 2);
        assert_eq!(tg.count_in(Method::GetChatMember, CHANNEL), 2);
        assert_eq!(tg.count_in(Method::GetChatMember, GROUP), 0);
        assert_eq!(
            tg.calls()[1],
            Call::GetChatMember {
                chat: CHANNEL.into(),
                user: BOB
            }
        );
    }

    #[tokio::test]
    async fn channel_members_are_hidden_unless_bot_is_channel_admin() {
        let tg = world().set_bot_channel_admin(CHANNEL, false);
        let err = tg.get_chat_member(CHANNEL.into(), ALICE).await;
        assert_eq!(
            err,
            Err(TelegramError::NotEnoughRights(
                "member list is inaccessible".into()
            ))
        );
        let tg = tg.set_bot_channel_admin(CHANNEL, true);
        assert_eq!(
            tg.get_chat_member(CHANNEL.into(), ALICE).await,
            Ok(ChatMemberStatus::Member)
        );
    }

    #[tokio::test]
    async fn unknown_chat_is_not_found() {
        let tg = world();
        let err = tg.get_chat_member(ChatId(-100_999), ALICE).await;
        assert_eq!(
            err,
            Err(TelegramError::ChatNotFound("chat not found".into()))
        );
        let tg = tg.remove_chat(GROUP);
        assert!(matches!(
            tg.restrict_member(GROUP, ALICE, None).await,
            Err(TelegramError::ChatNotFound(_))
        ));
    }

    #[tokio::test]
    async fn restrict_keeps_membership_and_unrestrict_restores_defaults() {
        let defaults = ChatPermissions {
            can_send_media: false,
            ..ChatPermissions::OPEN
        };
        let tg = world().set_default_permissions(GROUP, defaults);
        tg.restrict_member(GROUP, ALICE, Some(UnixTime(5_000)))
            .await
            .expect("restrict works");
        assert_eq!(
            tg.status_of(GROUP, ALICE),
            Some(ChatMemberStatus::Restricted { is_member: true })
        );
        assert_eq!(
            tg.restriction_of(GROUP, ALICE).map(|r| r.until),
            Some(Some(UnixTime(5_000)))
        );
        assert_eq!(
            tg.permissions_of(GROUP, ALICE),
            Some(ChatPermissions::MUTED)
        );
        tg.unrestrict_member(GROUP, ALICE)
            .await
            .expect("unrestrict works");
        assert_eq!(tg.status_of(GROUP, ALICE), Some(ChatMemberStatus::Member));
        assert_eq!(tg.restriction_of(GROUP, ALICE), None);
        // The group's defaults, not everything allowed.
        assert_eq!(tg.permissions_of(GROUP, ALICE), Some(defaults));
        // A non-member restricted stays out, and lifting leaves them out.
        let stranger = UserId(99);
        tg.restrict_member(GROUP, stranger, None)
            .await
            .expect("restrict");
        assert_eq!(
            tg.status_of(GROUP, stranger),
            Some(ChatMemberStatus::Restricted { is_member: false })
        );
        tg.unrestrict_member(GROUP, stranger)
            .await
            .expect("unrestrict");
        assert_eq!(tg.status_of(GROUP, stranger), Some(ChatMemberStatus::Left));
    }

    #[tokio::test]
    async fn owners_and_admins_cannot_be_restricted_or_kicked() {
        let tg = world();
        assert_eq!(
            tg.restrict_member(GROUP, OWNER, None).await,
            Err(TelegramError::BadRequest("can't remove chat owner".into()))
        );
        assert_eq!(
            tg.restrict_member(GROUP, ADMIN, None).await,
            Err(TelegramError::BadRequest(
                "user is an administrator of the chat".into()
            ))
        );
        assert!(matches!(
            tg.kick_member(GROUP, OWNER).await,
            Err(TelegramError::BadRequest(_))
        ));
        assert_eq!(
            tg.status_of(GROUP, ADMIN),
            Some(ChatMemberStatus::Administrator)
        );
    }

    #[tokio::test]
    async fn restricting_needs_the_right() {
        let bot = DEFAULT_BOT_ID;
        let tg = world().set_admin(
            GROUP,
            ChatAdmin {
                user: bot,
                is_bot: true,
                is_creator: false,
                can_delete_messages: true,
                can_restrict_members: false,
                can_invite_users: false,
            },
        );
        assert!(matches!(
            tg.restrict_member(GROUP, ALICE, None).await,
            Err(TelegramError::NotEnoughRights(_))
        ));
        assert_eq!(tg.status_of(GROUP, ALICE), Some(ChatMemberStatus::Member));
    }

    #[tokio::test]
    async fn admins_are_listed_owner_first() {
        let tg = world();
        let admins = tg
            .get_chat_administrators(GROUP.into())
            .await
            .expect("admins");
        assert_eq!(admins.len(), 3, "{admins:?}");
        assert_eq!(admins[0].user, OWNER);
        assert!(admins[0].is_creator && admins[0].can_restrict_members);
        assert!(admins.iter().any(|a| a.user == DEFAULT_BOT_ID && a.is_bot));
        assert!(admins
            .iter()
            .any(|a| a.user == ADMIN && !a.can_restrict_members));
    }

    #[tokio::test]
    async fn messages_sent_and_deleted() {
        let tg = world();
        let msg = OutgoingMessage {
            html: "Join <b>the channel</b>".into(),
            buttons: vec![vec![
                InlineButton::Url {
                    text: "Join".into(),
                    url: "https://t.me/x".into(),
                },
                InlineButton::Callback {
                    text: "I've joined".into(),
                    data: "v:11".into(),
                },
            ]],
            ..OutgoingMessage::default()
        };
        let incoming = tg.post_message(GROUP, ALICE).expect("group exists");
        let warning = tg.send_message(GROUP.into(), &msg).await.expect("sent");
        assert_ne!(incoming, warning);
        tg.delete_message(GROUP.into(), incoming)
            .await
            .expect("deleted");
        tg.delete_message(GROUP.into(), warning)
            .await
            .expect("deleted");
        assert_eq!(
            tg.delete_message(GROUP.into(), warning).await,
            Err(TelegramError::BadRequest(
                "message to delete not found".into()
            ))
        );
        let sent = tg.sent_messages();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].message, msg);
        assert!(sent[0].deleted);
        assert_eq!(
            tg.deleted_messages(),
            vec![(GROUP.into(), incoming), (GROUP.into(), warning)]
        );
        // Private chats only with users who started the bot.
        assert!(matches!(
            tg.send_message(ALICE.into(), &msg).await,
            Err(TelegramError::Forbidden(_))
        ));
        let tg = tg.add_private_chat(ALICE);
        assert!(tg.send_message(ALICE.into(), &msg).await.is_ok());
        // Callback data over 64 bytes is refused.
        let bad = OutgoingMessage {
            html: "x".into(),
            buttons: vec![vec![InlineButton::Callback {
                text: "x".into(),
                data: "y".repeat(65),
            }]],
            ..OutgoingMessage::default()
        };
        assert!(matches!(
            tg.send_message(GROUP.into(), &bad).await,
            Err(TelegramError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn kicks_are_recorded() {
        let tg = world();
        tg.kick_member(GROUP, BOB).await.expect("kick");
        assert_eq!(tg.kicks(), vec![(GROUP, BOB)]);
        assert_eq!(tg.status_of(GROUP, BOB), Some(ChatMemberStatus::Left));
        tg.answer_callback("cb1", Some("done"), false)
            .await
            .expect("answered");
        assert_eq!(
            tg.callback_answers(),
            vec![("cb1".to_owned(), Some("done".to_owned()), false)]
        );
    }

    #[tokio::test]
    async fn injected_errors() {
        let tg = world();
        let busy = TelegramError::RetryAfter {
            retry_after: Duration::from_secs(3),
        };
        tg.fail_next_times(Method::GetChatMember, busy.clone(), 2);
        assert_eq!(
            tg.get_chat_member(CHANNEL.into(), ALICE).await,
            Err(busy.clone())
        );
        assert_eq!(tg.get_chat_member(CHANNEL.into(), ALICE).await, Err(busy));
        assert!(tg.get_chat_member(CHANNEL.into(), ALICE).await.is_ok());
        assert_eq!(tg.count(Method::GetChatMember), 3);

        let down = TelegramError::Server {
            code: 502,
            description: "Bad Gateway".into(),
        };
        tg.fail_chat(CHANNEL, down.clone());
        assert_eq!(
            tg.get_chat_member(CHANNEL.into(), ALICE).await,
            Err(down.clone())
        );
        assert!(tg.get_chat_member(GROUP.into(), ALICE).await.is_ok());
        tg.heal_chat(CHANNEL);
        assert!(tg.get_chat_member(CHANNEL.into(), ALICE).await.is_ok());

        tg.set_global_failure(Some(TelegramError::Network("reset".into())));
        assert!(tg.answer_callback("x", None, false).await.is_err());
        tg.set_global_failure(None);
        assert!(tg.answer_callback("x", None, false).await.is_ok());
    }

    #[tokio::test]
    async fn get_chat_by_id_and_username() {
        use crate::domain::ChannelUsername;
        use crate::telegram::{ChatTarget, ChatType};
        let tg = world()
            .set_title(CHANNEL, "News")
            .set_username(CHANNEL, Some("@News_Here"));
        let by_name = ChatTarget::Username(ChannelUsername::parse("news_here").expect("valid"));
        let info = tg.get_chat(&by_name).await.expect("found by username");
        assert_eq!(info.id, ChatId::from(CHANNEL));
        assert_eq!(info.kind, ChatType::Channel);
        assert_eq!(info.title.as_deref(), Some("News"));
        assert_eq!(info.username.as_deref(), Some("News_Here"));
        let group = tg
            .get_chat(&ChatTarget::Id(GROUP.into()))
            .await
            .expect("group");
        assert_eq!(group.kind, ChatType::Supergroup);
        assert_eq!(group.username, None);
        let missing = ChatTarget::Username(ChannelUsername::parse("nobody_here").expect("valid"));
        assert!(matches!(
            tg.get_chat(&missing).await,
            Err(TelegramError::ChatNotFound(_))
        ));
        // A private chat the bot left is invisible; a public one is not.
        let tg = tg
            .set_member(GROUP, DEFAULT_BOT_ID, ChatMemberStatus::Left)
            .set_member(CHANNEL, DEFAULT_BOT_ID, ChatMemberStatus::Left);
        assert!(matches!(
            tg.get_chat(&ChatTarget::Id(GROUP.into())).await,
            Err(TelegramError::ChatNotFound(_))
        ));
        assert!(tg.get_chat(&by_name).await.is_ok());
        assert_eq!(tg.count(Method::GetChat), 5);
    }

    #[tokio::test]
    async fn invite_links_need_the_right_and_are_new_each_time() {
        let tg = world();
        let a = tg.create_invite_link(CHANNEL.into()).await.expect("link");
        let b = tg.create_invite_link(CHANNEL.into()).await.expect("link");
        assert_ne!(a, b);
        assert_eq!(
            tg.invite_links(),
            vec![(CHANNEL.into(), a), (CHANNEL.into(), b)]
        );
        let tg = tg.set_bot_channel_admin(CHANNEL, false);
        assert!(matches!(
            tg.create_invite_link(CHANNEL.into()).await,
            Err(TelegramError::NotEnoughRights(_))
        ));
    }

    #[tokio::test]
    async fn edits_change_only_the_bots_own_messages() {
        let tg = world();
        let first = OutgoingMessage {
            html: "one".into(),
            ..OutgoingMessage::default()
        };
        let second = OutgoingMessage {
            html: "two".into(),
            buttons: vec![vec![InlineButton::Callback {
                text: "x".into(),
                data: "s:x".into(),
            }]],
            ..OutgoingMessage::default()
        };
        let id = tg.send_message(GROUP.into(), &first).await.expect("sent");
        tg.edit_message(GROUP.into(), id, &second)
            .await
            .expect("edited");
        assert_eq!(tg.sent_messages()[0].message.html, "two");
        assert_eq!(tg.sent_messages()[0].message.buttons, second.buttons);
        let theirs = tg.post_message(GROUP, ALICE).expect("posted");
        assert!(matches!(
            tg.edit_message(GROUP.into(), theirs, &second).await,
            Err(TelegramError::BadRequest(_))
        ));
        assert!(matches!(
            tg.edit_message(GROUP.into(), MessageId(999), &second).await,
            Err(TelegramError::BadRequest(_))
        ));
        assert_eq!(tg.count(Method::EditMessage), 3);
    }

    #[tokio::test]
    async fn join_requests_are_answered_once_and_need_the_invite_right() {
        let tg = world()
            .add_join_request(GROUP, UserId(21), None)
            .add_join_request(GROUP, UserId(22), Some("q22"))
            .add_join_request(GROUP, UserId(23), Some("q23"));
        tg.approve_join_request(GROUP, UserId(21))
            .await
            .expect("approved");
        assert_eq!(
            tg.status_of(GROUP, UserId(21)),
            Some(ChatMemberStatus::Member)
        );
        assert_eq!(
            tg.approve_join_request(GROUP, UserId(21)).await,
            Err(TelegramError::BadRequest("HIDE_REQUESTER_MISSING".into()))
        );
        // A query answered with "queue" becomes an ordinary request.
        tg.answer_join_request_query(GROUP, "q22", JoinQueryAnswer::Queue)
            .await
            .expect("queued");
        assert!(tg
            .answer_join_request_query(GROUP, "q22", JoinQueryAnswer::Approve)
            .await
            .is_err());
        tg.decline_join_request(GROUP, UserId(22))
            .await
            .expect("declined");
        assert_eq!(
            tg.status_of(GROUP, UserId(22)),
            Some(ChatMemberStatus::Left)
        );
        tg.answer_join_request_query(GROUP, "q23", JoinQueryAnswer::Approve)
            .await
            .expect("approved through the query");
        assert_eq!(
            tg.status_of(GROUP, UserId(23)),
            Some(ChatMemberStatus::Member)
        );
        assert!(tg.pending_join_requests().is_empty());
        let tg = tg.add_join_request(GROUP, UserId(24), None).set_admin(
            GROUP,
            ChatAdmin {
                user: DEFAULT_BOT_ID,
                is_bot: true,
                is_creator: false,
                can_delete_messages: true,
                can_restrict_members: true,
                can_invite_users: false,
            },
        );
        assert!(matches!(
            tg.approve_join_request(GROUP, UserId(24)).await,
            Err(TelegramError::NotEnoughRights(_))
        ));
        assert_eq!(tg.pending_join_requests(), vec![(GROUP, UserId(24))]);
    }

    #[tokio::test]
    async fn ephemeral_messages_are_for_their_receiver_and_can_be_switched_off() {
        let tg = world();
        let msg = OutgoingMessage {
            html: "only for Alice".into(),
            ..OutgoingMessage::default()
        };
        let Ok(Posted::Ephemeral(id)) = tg.send_ephemeral(GROUP.into(), ALICE, &msg).await else {
            panic!("sent ephemerally")
        };
        assert!(tg.sent_messages().is_empty(), "nothing posted to the group");
        assert_eq!(tg.ephemeral_messages()[0].receiver, ALICE);
        assert!(tg
            .send_ephemeral(GROUP.into(), UserId(999), &msg)
            .await
            .is_err());
        tg.delete_ephemeral(GROUP.into(), ALICE, id)
            .await
            .expect("deleted");
        assert!(tg.ephemeral_messages()[0].deleted);
        tg.set_ephemeral_supported(false);
        assert!(matches!(
            tg.send_ephemeral(GROUP.into(), ALICE, &msg).await,
            Err(TelegramError::BadRequest(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_follows_tokio_time_and_calls_are_timestamped() {
        let tg = world();
        tg.set_latency(Duration::from_millis(250));
        let start = Instant::now();
        let clone = tg.clone();
        let (a, b) = tokio::join!(
            tg.get_chat_member(CHANNEL.into(), ALICE),
            clone.get_chat_member(CHANNEL.into(), BOB)
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        let calls = tg.timed_calls();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.at == start));
    }
}
