//! The test-facing control API: act as users and admins, inject faults, inspect what the bot did.
//!
//! Every action takes effect as it would in Telegram, including the updates it produces for
//! the bot (`message`, `callback_query`, `chat_member`, `my_chat_member`). Calls are quick
//! and synchronous; only the `wait_*` methods block, so call those from a blocking context.

use std::time::{Duration, Instant};

use frankenstein::types::{CallbackQuery, MaybeInaccessibleMessage};
use frankenstein::updates::UpdateContent;

use gmbot_core::domain::{ChannelId, ChatId, GroupId, MessageId, UserId};

use super::calls::RecordedCall;
use super::chat::{ChatKind, MessageKind, SimChat, SimMessage, SimUser};
use super::error::SimError;
use super::faults::Fault;
use super::member::{AdminRights, MemberState, Permissions};
use super::render;
use super::world::{now, CallbackAnswer, World};
use super::Simulator;

impl World {
    /// Telegram's service accounts, so messages from them render like the real ones.
    pub(crate) fn seed_service_accounts(&mut self) {
        // As Telegram sends them: 777000 is not a bot; the two placeholders are.
        for (id, name, username) in [
            (UserId::SERVICE_ACCOUNT, "Telegram", None),
            (
                UserId::GROUP_ANONYMOUS_BOT,
                "Group",
                Some("GroupAnonymousBot"),
            ),
            (UserId::CHANNEL_BOT, "Channel", Some("Channel_Bot")),
        ] {
            self.users.insert(
                id.0,
                SimUser {
                    id,
                    first_name: name.to_owned(),
                    last_name: None,
                    username: username.map(str::to_owned),
                    is_bot: id != UserId::SERVICE_ACCOUNT,
                },
            );
        }
    }

    fn chat_checked(&self, chat: i64) -> Result<&SimChat, SimError> {
        self.chats.get(&chat).ok_or(SimError::UnknownChat(chat))
    }

    fn user_checked(&self, user: i64) -> Result<(), SimError> {
        self.user(user)
            .map(|_| ())
            .ok_or(SimError::UnknownUser(user))
    }

    fn creator_of(&self, chat: i64) -> i64 {
        let at = now();
        self.chats
            .get(&chat)
            .and_then(|c| {
                c.members
                    .keys()
                    .copied()
                    .find(|&u| matches!(c.member(u, at), MemberState::Creator { .. }))
            })
            .unwrap_or(UserId::SERVICE_ACCOUNT.0)
    }

    /// Whether the bot receives this group message: it must be in the group, and with privacy
    /// mode on a non-admin bot sees only commands, mentions, replies to it and service messages.
    fn bot_sees(&self, c: &SimChat, m: &SimMessage) -> bool {
        let bot = c.member(self.bot_id(), now());
        if !bot.is_present() {
            return false;
        }
        if bot.is_admin() || c.kind == ChatKind::Private || m.kind != MessageKind::Text {
            return true;
        }
        let mention = self.bot.username.as_ref().is_some_and(|u| {
            m.text
                .to_ascii_lowercase()
                .contains(&format!("@{}", u.to_ascii_lowercase()))
        });
        let reply_to_bot = m
            .reply_to
            .and_then(|r| c.messages.get(&r.0))
            .is_some_and(|r| r.from == Some(self.bot.id));
        m.text.starts_with('/') || mention || reply_to_bot
    }

    /// Stores a message and emits the update the bot would get for it.
    fn deliver_message(&mut self, chat: i64, msg: SimMessage) -> Result<MessageId, SimError> {
        let id = msg.id;
        let c = self
            .chats
            .get_mut(&chat)
            .ok_or(SimError::UnknownChat(chat))?;
        c.push(msg.clone());
        let c = self.chat_checked(chat)?;
        if c.is_channel() {
            if c.member(self.bot_id(), now()).is_admin() {
                let m = render::message(self, c, &msg);
                self.emit(UpdateContent::ChannelPost(Box::new(m)));
            }
        } else if self.bot_sees(c, &msg) {
            let m = render::message(self, c, &msg);
            self.emit(UpdateContent::Message(Box::new(m)));
        }
        Ok(id)
    }

    fn new_message(
        &mut self,
        chat: i64,
        from: Option<i64>,
        text: &str,
    ) -> Result<SimMessage, SimError> {
        let c = self
            .chats
            .get_mut(&chat)
            .ok_or(SimError::UnknownChat(chat))?;
        let id = c.next_id();
        Ok(SimMessage::text(id, from.map(UserId), text, now()))
    }

    fn check_can_post(&self, chat: i64, user: i64) -> Result<(), SimError> {
        let c = self.chat_checked(chat)?;
        self.user_checked(user)?;
        let refuse = |reason| SimError::CannotPost { chat, user, reason };
        match c.member(user, now()) {
            MemberState::Creator { .. } | MemberState::Administrator(_) => Ok(()),
            MemberState::Member => {
                if c.is_channel() {
                    Err(refuse("only administrators post in a channel"))
                } else if c.default_permissions.can_send_messages {
                    Ok(())
                } else {
                    Err(refuse("the group does not allow members to send messages"))
                }
            }
            MemberState::Restricted {
                is_member: true,
                permissions,
                ..
            } => {
                if permissions
                    .intersect(c.default_permissions)
                    .can_send_messages
                    && !c.is_channel()
                {
                    Ok(())
                } else {
                    Err(refuse("restricted: may not send messages"))
                }
            }
            MemberState::Restricted { .. } | MemberState::Left => Err(refuse("not a member")),
            MemberState::Kicked { .. } => Err(refuse("banned")),
        }
    }

    fn create_chat(
        &mut self,
        kind: ChatKind,
        title: &str,
        username: Option<&str>,
        owner: i64,
    ) -> Result<i64, SimError> {
        self.user_checked(owner)?;
        let id = self.fresh_chat_id(kind != ChatKind::Group);
        let mut chat = SimChat::new(id, kind, title, username);
        chat.members.insert(
            owner,
            MemberState::Creator {
                is_anonymous: false,
            },
        );
        if let Some(u) = &chat.username {
            self.usernames.insert(u.to_ascii_lowercase(), id);
        }
        self.chats.insert(id, chat);
        Ok(id)
    }
}

impl Simulator {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let out = {
            let mut w = self.shared.lock();
            f(&mut w)
        };
        self.shared.changed.notify_all();
        out
    }

    // ---- users and chats -------------------------------------------------------------

    /// Adds a user with a first name.
    pub fn add_user(&self, first_name: &str) -> UserId {
        self.add_user_with(first_name, None, None)
    }

    /// Adds a user with a first name, last name and username (any text: names are where HTML
    /// injection comes from).
    pub fn add_user_with(
        &self,
        first_name: &str,
        last_name: Option<&str>,
        username: Option<&str>,
    ) -> UserId {
        self.with(|w| {
            let id = w.fresh_user_id();
            w.users.insert(
                id,
                SimUser {
                    id: UserId(id),
                    first_name: first_name.to_owned(),
                    last_name: last_name.map(str::to_owned),
                    username: username.map(|u| u.trim_start_matches('@').to_owned()),
                    is_bot: false,
                },
            );
            UserId(id)
        })
    }

    /// Adds another bot account (bots are users too).
    pub fn add_other_bot(&self, first_name: &str, username: &str) -> UserId {
        let id = self.add_user_with(first_name, None, Some(username));
        self.with(|w| {
            if let Some(u) = w.users.get_mut(&id.0) {
                u.is_bot = true;
            }
        });
        id
    }

    /// A user, if known.
    pub fn user(&self, id: UserId) -> Option<SimUser> {
        self.with(|w| w.user(id.0).cloned())
    }

    /// Creates a supergroup owned by `owner`.
    pub fn create_supergroup(&self, title: &str, owner: UserId) -> Result<GroupId, SimError> {
        self.with(|w| w.create_chat(ChatKind::Supergroup, title, None, owner.0))
            .map(GroupId)
    }

    /// Creates a public supergroup (with a username) owned by `owner`.
    pub fn create_public_supergroup(
        &self,
        title: &str,
        username: &str,
        owner: UserId,
    ) -> Result<GroupId, SimError> {
        self.with(|w| w.create_chat(ChatKind::Supergroup, title, Some(username), owner.0))
            .map(GroupId)
    }

    /// Creates a basic group owned by `owner` (see [`Self::migrate_to_supergroup`]).
    pub fn create_basic_group(&self, title: &str, owner: UserId) -> Result<GroupId, SimError> {
        self.with(|w| w.create_chat(ChatKind::Group, title, None, owner.0))
            .map(GroupId)
    }

    /// Creates a channel owned by `owner`; with a username it is public.
    pub fn create_channel(
        &self,
        title: &str,
        username: Option<&str>,
        owner: UserId,
    ) -> Result<ChannelId, SimError> {
        self.with(|w| w.create_chat(ChatKind::Channel, title, username, owner.0))
            .map(ChannelId)
    }

    /// Sets a group's default member permissions (what `getChat` reports).
    pub fn set_default_permissions(
        &self,
        chat: impl Into<ChatId>,
        permissions: Permissions,
    ) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            let c = w.chats.get_mut(&chat).ok_or(SimError::UnknownChat(chat))?;
            c.default_permissions = permissions;
            Ok(())
        })
    }

    // ---- membership ------------------------------------------------------------------

    /// The user's current status in a chat (`left` if never there).
    pub fn member(&self, chat: impl Into<ChatId>, user: UserId) -> MemberState {
        let chat = chat.into().0;
        self.with(|w| {
            w.chats
                .get(&chat)
                .map_or(MemberState::Left, |c| c.member(user.0, now()))
        })
    }

    /// Whether the user could send a text message in the chat now (restrictions enforced).
    pub fn can_post(&self, chat: impl Into<ChatId>, user: UserId) -> bool {
        let chat = chat.into().0;
        self.with(|w| w.check_can_post(chat, user.0).is_ok())
    }

    /// Sets a status directly, as an admin would (`actor` is who did it); emits the updates
    /// Telegram would.
    pub fn set_member(
        &self,
        chat: impl Into<ChatId>,
        user: UserId,
        state: MemberState,
        actor: UserId,
    ) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            w.chat_checked(chat)?;
            w.user_checked(user.0)?;
            w.set_member(chat, user.0, state, actor.0);
            Ok(())
        })
    }

    /// The user joins a group or subscribes to a channel. A banned user cannot; a user
    /// restricted while outside keeps the restriction, now as a member.
    pub fn join(&self, chat: impl Into<ChatId>, user: UserId) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| join(w, chat, user.0))
    }

    /// The user joins through an invite link (fails if it was revoked).
    pub fn join_by_link(&self, link: &str, user: UserId) -> Result<ChatId, SimError> {
        self.with(|w| {
            let chat = w
                .invite_links
                .get(link)
                .filter(|l| !l.revoked)
                .map(|l| l.chat)
                .ok_or(SimError::InvalidInviteLink)?;
            join(w, chat, user.0)?;
            Ok(ChatId(chat))
        })
    }

    /// The user leaves a group or unsubscribes from a channel.
    pub fn leave(&self, chat: impl Into<ChatId>, user: UserId) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            let c = w.chat_checked(chat)?;
            w.user_checked(user.0)?;
            let new = match c.member(user.0, now()) {
                MemberState::Restricted {
                    permissions, until, ..
                } => MemberState::Restricted {
                    is_member: false,
                    permissions,
                    until,
                },
                MemberState::Kicked { until } => MemberState::Kicked { until },
                _ => MemberState::Left,
            };
            let is_group = c.is_group();
            if w.set_member(chat, user.0, new, user.0) && is_group {
                let mut msg = w.new_message(chat, Some(user.0), "")?;
                msg.kind = MessageKind::LeftMember(user);
                w.deliver_message(chat, msg)?;
            }
            Ok(())
        })
    }

    /// Makes a user an administrator (by the chat's owner).
    pub fn promote(
        &self,
        chat: impl Into<ChatId>,
        user: UserId,
        rights: AdminRights,
    ) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            w.chat_checked(chat)?;
            w.user_checked(user.0)?;
            let owner = w.creator_of(chat);
            w.set_member(chat, user.0, MemberState::Administrator(rights), owner);
            Ok(())
        })
    }

    /// Turns an administrator back into a plain member (by the chat's owner).
    pub fn demote(&self, chat: impl Into<ChatId>, user: UserId) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            w.chat_checked(chat)?;
            let owner = w.creator_of(chat);
            w.set_member(chat, user.0, MemberState::Member, owner);
            Ok(())
        })
    }

    /// `by` adds the bot to a chat, as an administrator with `rights` or as a plain member
    /// (`None`; not possible in a channel). Emits `my_chat_member`.
    pub fn add_bot(
        &self,
        chat: impl Into<ChatId>,
        by: UserId,
        rights: Option<AdminRights>,
    ) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            let c = w.chat_checked(chat)?;
            let state = match rights {
                Some(r) => MemberState::Administrator(r),
                None if c.is_channel() => return Err(SimError::WrongChatKind(chat)),
                None => MemberState::Member,
            };
            let is_group = c.is_group();
            let bot = w.bot_id();
            if w.set_member(chat, bot, state, by.0) && is_group {
                let mut msg = w.new_message(chat, Some(by.0), "")?;
                msg.kind = MessageKind::NewMembers(vec![UserId(bot)]);
                w.deliver_message(chat, msg)?;
            }
            Ok(())
        })
    }

    /// `by` changes the bot's rights: `Some` promotes (or changes rights), `None` demotes to a
    /// plain member (in a channel that removes it). Emits `my_chat_member`.
    pub fn set_bot_rights(
        &self,
        chat: impl Into<ChatId>,
        by: UserId,
        rights: Option<AdminRights>,
    ) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            let c = w.chat_checked(chat)?;
            let state = match rights {
                Some(r) => MemberState::Administrator(r),
                None if c.is_channel() => MemberState::Left,
                None => MemberState::Member,
            };
            let bot = w.bot_id();
            w.set_member(chat, bot, state, by.0);
            Ok(())
        })
    }

    /// `by` removes the bot from a chat. Emits `my_chat_member`.
    pub fn remove_bot(&self, chat: impl Into<ChatId>, by: UserId) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            w.chat_checked(chat)?;
            let bot = w.bot_id();
            w.set_member(chat, bot, MemberState::Left, by.0);
            Ok(())
        })
    }

    /// Converts a basic group into a supergroup: the old id stops working, members carry over,
    /// and both chats get the `migrate_to_chat_id` / `migrate_from_chat_id` service messages.
    pub fn migrate_to_supergroup(&self, group: GroupId) -> Result<GroupId, SimError> {
        self.with(|w| {
            let old = w.chat_checked(group.0)?.clone();
            if old.kind != ChatKind::Group || old.migrated_to.is_some() {
                return Err(SimError::WrongChatKind(group.0));
            }
            let new_id = w.fresh_chat_id(true);
            let mut new = SimChat::new(new_id, ChatKind::Supergroup, &old.title, None);
            new.members = old.members.clone();
            new.default_permissions = old.default_permissions;
            w.chats.insert(new_id, new);
            let owner = w.creator_of(group.0);
            let mut to = w.new_message(group.0, Some(owner), "")?;
            to.kind = MessageKind::MigrateTo(new_id);
            w.deliver_message(group.0, to)?;
            let mut from = w.new_message(new_id, Some(owner), "")?;
            from.kind = MessageKind::MigrateFrom(group.0);
            from.sender_chat = Some(group.0);
            w.deliver_message(new_id, from)?;
            if let Some(c) = w.chats.get_mut(&group.0) {
                c.migrated_to = Some(new_id);
            }
            Ok(GroupId(new_id))
        })
    }

    // ---- messages ----------------------------------------------------------------------

    /// The user writes in a group. Fails as a Telegram client would if the user may not post
    /// (not a member, banned, muted). Emits `message` if the bot sees it.
    pub fn post(
        &self,
        chat: impl Into<ChatId>,
        user: UserId,
        text: &str,
    ) -> Result<MessageId, SimError> {
        self.post_reply(chat, user, text, None)
    }

    /// Like [`Self::post`], replying to a message.
    pub fn post_reply(
        &self,
        chat: impl Into<ChatId>,
        user: UserId,
        text: &str,
        reply_to: Option<MessageId>,
    ) -> Result<MessageId, SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            w.check_can_post(chat, user.0)?;
            let mut msg = w.new_message(chat, Some(user.0), text)?;
            msg.reply_to = reply_to;
            w.deliver_message(chat, msg)
        })
    }

    /// An anonymous admin writes: `from` is GroupAnonymousBot (1087968824), `sender_chat` the group.
    pub fn post_as_anonymous_admin(
        &self,
        group: GroupId,
        text: &str,
    ) -> Result<MessageId, SimError> {
        self.with(|w| {
            let mut msg = w.new_message(group.0, Some(UserId::GROUP_ANONYMOUS_BOT.0), text)?;
            msg.sender_chat = Some(group.0);
            w.deliver_message(group.0, msg)
        })
    }

    /// A post of the linked channel is forwarded into its discussion group: `from` is 777000,
    /// `sender_chat` the channel, `is_automatic_forward` set.
    pub fn post_automatic_forward(
        &self,
        group: GroupId,
        channel: ChannelId,
        text: &str,
    ) -> Result<MessageId, SimError> {
        self.with(|w| {
            w.chat_checked(channel.0)?;
            let mut msg = w.new_message(group.0, Some(UserId::SERVICE_ACCOUNT.0), text)?;
            msg.sender_chat = Some(channel.0);
            msg.is_automatic_forward = true;
            w.deliver_message(group.0, msg)
        })
    }

    /// `user` posts in `group` on behalf of `channel`, as Telegram clients allow a channel's
    /// owner or admins to: `from` is the placeholder Channel_Bot (136817688, `is_bot: true`),
    /// `sender_chat` the channel. Fails if the user may not post in the group, is not an admin
    /// of the channel, or the channel was banned there with `banChatSenderChat`.
    pub fn post_as_channel(
        &self,
        group: GroupId,
        channel: ChannelId,
        user: UserId,
        text: &str,
    ) -> Result<MessageId, SimError> {
        self.with(|w| {
            w.check_can_post(group.0, user.0)?;
            let c = w.chat_checked(channel.0)?;
            if !c.member(user.0, now()).is_admin() {
                return Err(SimError::CannotPost {
                    chat: group.0,
                    user: user.0,
                    reason: "only a channel's admins may post on its behalf",
                });
            }
            if w.chat_checked(group.0)?
                .banned_sender_chats
                .contains(&channel.0)
            {
                return Err(SimError::CannotPost {
                    chat: group.0,
                    user: user.0,
                    reason: "the channel is banned in this group",
                });
            }
            let mut msg = w.new_message(group.0, Some(UserId::CHANNEL_BOT.0), text)?;
            msg.sender_chat = Some(channel.0);
            w.deliver_message(group.0, msg)
        })
    }

    /// The author edits their message: the text changes, `edit_date` is set, and the bot gets an
    /// `edited_message` update (only if its `allowed_updates` lists it, as in Telegram). Fails
    /// for a deleted message or someone else's.
    pub fn edit_message(
        &self,
        chat: impl Into<ChatId>,
        message: MessageId,
        user: UserId,
        text: &str,
    ) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            let unknown = SimError::UnknownMessage {
                chat,
                message: message.0,
            };
            let c = w.chats.get_mut(&chat).ok_or(SimError::UnknownChat(chat))?;
            let m = c
                .messages
                .get_mut(&message.0)
                .filter(|m| !m.deleted && m.from == Some(user))
                .ok_or(unknown)?;
            m.text = text.to_owned();
            m.edited = true;
            let m = m.clone();
            let c = w.chat_checked(chat)?;
            if w.bot_sees(c, &m) {
                let rendered = render::message(w, c, &m);
                w.emit(UpdateContent::EditedMessage(Box::new(rendered)));
            }
            Ok(())
        })
    }

    /// Whether `channel` was banned from posting in `group` (`banChatSenderChat`).
    pub fn sender_chat_banned(&self, group: GroupId, channel: ChannelId) -> bool {
        self.with(|w| {
            w.chats
                .get(&group.0)
                .is_some_and(|c| c.banned_sender_chats.contains(&channel.0))
        })
    }

    /// The user opens a private chat with the bot and sends `/start`.
    pub fn start_bot(&self, user: UserId) -> Result<MessageId, SimError> {
        self.send_private(user, "/start")
    }

    /// The user writes to the bot in private (opening the chat if needed).
    pub fn send_private(&self, user: UserId, text: &str) -> Result<MessageId, SimError> {
        self.with(|w| {
            let u = w
                .user(user.0)
                .cloned()
                .ok_or(SimError::UnknownUser(user.0))?;
            if !w.chats.contains_key(&user.0) {
                let mut chat = SimChat::new(
                    user.0,
                    ChatKind::Private,
                    &u.first_name,
                    u.username.as_deref(),
                );
                chat.members.insert(user.0, MemberState::Member);
                chat.members.insert(w.bot_id(), MemberState::Member);
                w.chats.insert(user.0, chat);
            }
            w.started.insert(user.0);
            let msg = w.new_message(user.0, Some(user.0), text)?;
            w.deliver_message(user.0, msg)
        })
    }

    /// Every message of a chat, deleted ones included (see [`SimMessage::deleted`]).
    pub fn messages(&self, chat: impl Into<ChatId>) -> Vec<SimMessage> {
        let chat = chat.into().0;
        self.with(|w| {
            w.chats
                .get(&chat)
                .map(|c| c.messages.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// The messages of a chat that are still there.
    pub fn visible_messages(&self, chat: impl Into<ChatId>) -> Vec<SimMessage> {
        let mut all = self.messages(chat);
        all.retain(|m| !m.deleted);
        all
    }

    /// One message.
    pub fn message(&self, chat: impl Into<ChatId>, id: MessageId) -> Option<SimMessage> {
        let chat = chat.into().0;
        self.with(|w| {
            w.chats
                .get(&chat)
                .and_then(|c| c.messages.get(&id.0).cloned())
        })
    }

    // ---- buttons -----------------------------------------------------------------------

    /// The user presses an inline button carrying `data` under a message. Fails if there is no
    /// such button. Emits `callback_query`; returns its id.
    pub fn press_button(
        &self,
        chat: impl Into<ChatId>,
        message: MessageId,
        user: UserId,
        data: &str,
    ) -> Result<String, SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            let c = w.chat_checked(chat)?;
            let m = c.messages.get(&message.0).filter(|m| !m.deleted).ok_or(
                SimError::UnknownMessage {
                    chat,
                    message: message.0,
                },
            )?;
            if !m.has_callback(data) {
                return Err(SimError::NoSuchButton { message: message.0 });
            }
            callback(w, chat, message, user, data)
        })
    }

    /// Sends a callback query with arbitrary data, as a modified client could (spoofing tests).
    pub fn send_callback(
        &self,
        chat: impl Into<ChatId>,
        message: MessageId,
        user: UserId,
        data: &str,
    ) -> Result<String, SimError> {
        let chat = chat.into().0;
        self.with(|w| callback(w, chat, message, user, data))
    }

    /// How the bot answered a callback query, if it did.
    pub fn callback_answer(&self, id: &str) -> Option<CallbackAnswer> {
        self.with(|w| w.callbacks.get(id).and_then(|c| c.answer.clone()))
    }

    // ---- invite links ------------------------------------------------------------------

    /// Whether an invite link exists and has not been revoked.
    pub fn invite_link_valid(&self, link: &str) -> bool {
        self.with(|w| w.invite_links.get(link).is_some_and(|l| !l.revoked))
    }

    /// Every invite link the bot made for a chat: (link, is_primary, revoked).
    pub fn invite_links(&self, chat: impl Into<ChatId>) -> Vec<(String, bool, bool)> {
        let chat = chat.into().0;
        self.with(|w| {
            let mut out: Vec<_> = w
                .invite_links
                .iter()
                .filter(|(_, l)| l.chat == chat)
                .map(|(k, l)| {
                    (
                        k.clone(),
                        l.is_primary,
                        l.revoked,
                        l.name.is_some() || l.creates_join_request,
                    )
                })
                .map(|(k, p, r, _)| (k, p, r))
                .collect();
            out.sort();
            out
        })
    }

    // ---- faults, calls, updates --------------------------------------------------------

    /// Injects a fault; faults are consulted in the order they were added.
    pub fn inject(&self, fault: Fault) {
        self.with(|w| w.faults.push(fault));
    }

    /// Injected faults that will still hit a call (a fault is gone once its last hit is
    /// taken): a test waits for 0 to know its faults reached the calls they were meant for.
    pub fn pending_faults(&self) -> usize {
        self.with(|w| w.faults.len())
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.with(|w| w.faults.clear());
    }

    /// Answers and updates from now on leave out the fields Bot API versions after 7.x added
    /// (`can_send_welcome_messages`, `can_edit_tag`, `accepted_gift_types`, …), as an older
    /// server does.
    pub fn set_legacy_shape(&self, on: bool) {
        self.with(|w| w.legacy_shape = on);
    }

    /// Queues a raw update (e.g. one recorded from a real server) for `getUpdates` or the
    /// webhook, whatever `allowed_updates` says; its `update_id` is replaced by the next one.
    /// `None` when the body is not a JSON object.
    pub fn push_raw_update(&self, body: serde_json::Value) -> Option<u32> {
        self.with(|w| w.emit_raw(body))
    }

    /// Every call received so far, in the order they were answered (a delayed call comes
    /// after the calls answered meanwhile; its `at` is still when it arrived).
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.with(|w| w.calls.clone())
    }

    /// The calls to one method (case-insensitive).
    pub fn calls_to(&self, method: &str) -> Vec<RecordedCall> {
        self.with(|w| {
            w.calls
                .iter()
                .filter(|c| c.method.eq_ignore_ascii_case(method))
                .cloned()
                .collect()
        })
    }

    /// Time since the simulator started: the clock of [`RecordedCall::at`].
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Returns and forgets the calls so far.
    pub fn take_calls(&self) -> Vec<RecordedCall> {
        self.with(|w| std::mem::take(&mut w.calls))
    }

    /// Turns the call log on or off (off for load runs).
    pub fn set_recording(&self, on: bool) {
        self.with(|w| w.record_calls = on);
    }

    /// Blocks until `done` holds for the call log or `timeout` passes; returns whether it held.
    /// Blocking: from async code call it inside `spawn_blocking`.
    pub fn wait_for_calls(
        &self,
        timeout: Duration,
        done: impl Fn(&[RecordedCall]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut w = self.shared.lock();
        loop {
            if done(&w.calls) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || w.stopped {
                return false;
            }
            w = match self.shared.called.wait_timeout(w, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Updates created for the bot and not yet confirmed (getUpdates) or delivered (webhook).
    pub fn pending_updates(&self) -> usize {
        self.with(|w| w.updates.pending.len())
    }

    /// Forgets every update not yet delivered (or confirmed) and returns how many there were:
    /// the state a test set up before the bot ran stays, the updates it produced do not.
    pub fn discard_pending_updates(&self) -> usize {
        self.with(|w| {
            let n = w.updates.pending.len();
            w.updates.pending.clear();
            n
        })
    }

    /// Long polls (`getUpdates` with a timeout) waiting for an update right now.
    pub fn waiting_polls(&self) -> usize {
        self.with(|w| w.waiting_polls)
    }

    /// The webhook URL, if one is set.
    pub fn webhook_url(&self) -> Option<String> {
        self.with(|w| w.webhook.as_ref().map(|h| h.url.clone()))
    }

    /// The last webhook delivery error, if any.
    pub fn webhook_last_error(&self) -> Option<String> {
        self.with(|w| {
            w.webhook
                .as_ref()
                .and_then(|h| h.last_error.as_ref().map(|e| e.1.clone()))
        })
    }
}

pub(super) fn join(w: &mut World, chat: i64, user: i64) -> Result<(), SimError> {
    let c = w.chat_checked(chat)?;
    w.user_checked(user)?;
    let new = match c.member(user, now()) {
        MemberState::Kicked { .. } => return Err(SimError::Banned { chat, user }),
        MemberState::Restricted {
            permissions, until, ..
        } => MemberState::Restricted {
            is_member: true,
            permissions,
            until,
        },
        s if s.is_present() => s,
        _ => MemberState::Member,
    };
    let is_group = c.is_group();
    if w.set_member(chat, user, new, user) && is_group {
        let mut msg = w.new_message(chat, Some(user), "")?;
        msg.kind = MessageKind::NewMembers(vec![UserId(user)]);
        w.deliver_message(chat, msg)?;
    }
    Ok(())
}

fn callback(
    w: &mut World,
    chat: i64,
    message: MessageId,
    user: UserId,
    data: &str,
) -> Result<String, SimError> {
    let c = w.chat_checked(chat)?;
    let u = w
        .user(user.0)
        .cloned()
        .ok_or(SimError::UnknownUser(user.0))?;
    let m = c.messages.get(&message.0).ok_or(SimError::UnknownMessage {
        chat,
        message: message.0,
    })?;
    let rendered = render::message(w, c, m);
    let id = format!("{}{:010}", user.0, w.next_callback);
    w.next_callback += 1;
    let query = CallbackQuery::builder()
        .id(id.as_str())
        .from(render::user(&u))
        .message(MaybeInaccessibleMessage::Message(Box::new(rendered)))
        .chat_instance(format!("{}", chat.unsigned_abs()))
        .data(data)
        .build();
    w.callbacks
        .insert(id.clone(), super::world::CallbackState { answer: None });
    w.emit(UpdateContent::CallbackQuery(Box::new(query)));
    Ok(id)
}
