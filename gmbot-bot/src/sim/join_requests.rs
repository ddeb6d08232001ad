//! Join requests and ephemeral messages in the simulator, as Telegram handles them.
//!
//! - A user asks to join a group (through a link that creates join requests, or a group that
//!   approves new members): a `chat_join_request` update goes to the bot if it is an admin
//!   with `can_invite_users`, carrying `user_chat_id` (the requester's private chat, which the
//!   bot may write to for 5 minutes until the request is answered, even if they never started
//!   it). Asked through the bot as the chat's guard bot (Bot API 10.1), the request carries a
//!   `query_id`, answerable with `answerChatJoinRequestQuery` for 10 seconds; `queue` turns it
//!   into an ordinary pending request.
//! - `approveChatJoinRequest` makes the requester a member (`chat_member` and the join service
//!   message, as any join); `declineChatJoinRequest` drops the request. Both need the bot's
//!   `can_invite_users`; an answered request is gone (`HIDE_REQUESTER_MISSING`).
//! - An ephemeral message (`sendMessage` with `ephemeral_message_parameters`, Bot API 10.2)
//!   is kept beside the chat's messages, seen by its receiver only; `deleteEphemeralMessage`
//!   removes it. [`EphemeralSupport`] makes such sends fail, or be ignored as by an older
//!   server (then the message is posted for everyone).

use std::time::Duration;

use frankenstein::types::{CallbackQuery, ChatJoinRequest, MaybeInaccessibleMessage};
use frankenstein::updates::UpdateContent;
use serde_json::Value;

use gmbot_core::domain::{ChatId, UserId};

use super::api_error::ApiError;
use super::chat::{SimEphemeral, SimMessage};
use super::error::SimError;
use super::member::MemberState;
use super::params::Params;
use super::render;
use super::world::{now, EphemeralSupport, SimJoinRequest, World, JOIN_QUERY_SECS};
use super::Simulator;

impl World {
    /// Answers a request as `approveChatJoinRequest` (`approve`) or `declineChatJoinRequest`.
    pub(crate) fn settle_join_request(
        &mut self,
        chat: i64,
        user: i64,
        approve: bool,
    ) -> Result<(), ApiError> {
        let c = self.chat(chat)?;
        let may = c
            .member(self.bot_id(), now())
            .rights()
            .is_some_and(|r| r.can_invite_users);
        if !may {
            return Err(ApiError::bad_request("CHAT_ADMIN_REQUIRED"));
        }
        if c.member(user, now()).is_present() {
            self.join_requests.remove(&(chat, user));
            return Err(ApiError::bad_request("USER_ALREADY_PARTICIPANT"));
        }
        if self.join_requests.remove(&(chat, user)).is_none() {
            return Err(ApiError::bad_request("HIDE_REQUESTER_MISSING"));
        }
        if approve {
            super::control::join(self, chat, user)
                .map_err(|_| ApiError::bad_request("USER_BANNED_IN_CHANNEL"))?;
        }
        Ok(())
    }

    fn request_join(
        &mut self,
        chat: i64,
        user: i64,
        guard: bool,
    ) -> Result<Option<String>, SimError> {
        let c = self.chats.get(&chat).ok_or(SimError::UnknownChat(chat))?;
        let u = self
            .user(user)
            .cloned()
            .ok_or(SimError::UnknownUser(user))?;
        match c.member(user, now()) {
            MemberState::Kicked { .. } => return Err(SimError::Banned { chat, user }),
            s if s.is_present() => return Err(SimError::AlreadyMember { chat, user }),
            _ => {}
        }
        let query_id = guard.then(|| {
            let q = format!("jrq{}", self.next_query);
            self.next_query += 1;
            q
        });
        let date = now();
        self.join_requests.insert(
            (chat, user),
            SimJoinRequest {
                date,
                query_id: query_id.clone(),
            },
        );
        let bot_may = c
            .member(self.bot_id(), date)
            .rights()
            .is_some_and(|r| r.can_invite_users);
        if bot_may {
            let update = ChatJoinRequest::builder()
                .chat(render::chat(c))
                .from(render::user(&u))
                .user_chat_id(u64::try_from(user).unwrap_or(0))
                .date(u64::try_from(date).unwrap_or(0))
                .maybe_query_id(query_id.clone())
                .build();
            self.emit(UpdateContent::ChatJoinRequest(update));
        }
        Ok(query_id)
    }
}

/// `approveChatJoinRequest`.
pub(crate) fn approve_chat_join_request(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = world.resolve_joined(&p.chat("chat_id")?)?;
    let user = p.req_int("user_id")?;
    world.settle_join_request(chat, user, true)?;
    Ok(Value::Bool(true))
}

/// `declineChatJoinRequest`.
pub(crate) fn decline_chat_join_request(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = world.resolve_joined(&p.chat("chat_id")?)?;
    let user = p.req_int("user_id")?;
    world.settle_join_request(chat, user, false)?;
    Ok(Value::Bool(true))
}

/// `answerChatJoinRequestQuery`: only within 10 seconds of the request, once.
pub(crate) fn answer_chat_join_request_query(
    world: &mut World,
    p: &Params,
) -> Result<Value, ApiError> {
    let query = p
        .string("chat_join_request_query_id")
        .ok_or_else(|| ApiError::bad_request("chat_join_request_query_id is empty"))?;
    let result = p
        .string("result")
        .ok_or_else(|| ApiError::bad_request("result is empty"))?;
    let at = now();
    let (chat, user) = world
        .join_requests
        .iter()
        .find(|(_, r)| {
            r.query_id.as_deref() == Some(query.as_str()) && at - r.date <= JOIN_QUERY_SECS
        })
        .map(|(k, _)| *k)
        .ok_or_else(|| ApiError::bad_request("QUERY_ID_INVALID"))?;
    match result.as_str() {
        "approve" => world.settle_join_request(chat, user, true)?,
        "decline" => world.settle_join_request(chat, user, false)?,
        "queue" => {
            if let Some(r) = world.join_requests.get_mut(&(chat, user)) {
                r.query_id = None;
            }
        }
        _ => return Err(ApiError::bad_request("invalid result specified")),
    }
    world.query_answers.insert(query, result);
    Ok(Value::Bool(true))
}

/// `sendMessage` with `ephemeral_message_parameters`: `Ok(None)` when the simulator plays a
/// server that ignores them (the caller sends an ordinary message).
pub(crate) fn send_ephemeral(
    world: &mut World,
    chat: i64,
    p: &Params,
    mut msg: SimMessage,
) -> Result<Option<Value>, ApiError> {
    let Some(params) = p.json("ephemeral_message_parameters")? else {
        return Ok(None);
    };
    match world.ephemeral_support {
        EphemeralSupport::Ignored => return Ok(None),
        EphemeralSupport::Refused => {
            return Err(ApiError::bad_request(
                "ephemeral messages can't be sent to this chat",
            ))
        }
        EphemeralSupport::Supported => {}
    }
    let receiver = params
        .get("receiver_user_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("receiver_user_id is empty"))?;
    let c = world.chat(chat)?;
    if !c.is_group() {
        return Err(ApiError::bad_request(
            "ephemeral messages can be sent only to groups",
        ));
    }
    if !c.member(receiver, now()).is_present() {
        return Err(ApiError::bad_request(
            "the receiver is not a member of the chat",
        ));
    }
    let c = world.chat_mut(chat)?;
    let id = c.next_ephemeral_id;
    c.next_ephemeral_id += 1;
    msg.id = gmbot_core::domain::MessageId(id);
    c.ephemeral.insert(
        id,
        SimEphemeral {
            id,
            receiver: UserId(receiver),
            message: msg.clone(),
        },
    );
    let c = world.chat(chat)?;
    let mut rendered = render::message(world, c, &msg);
    rendered.message_id = 0;
    rendered.ephemeral_message_id = i32::try_from(id).ok();
    rendered.receiver_user = world.user(receiver).map(|u| Box::new(render::user(u)));
    super::methods::to_json(&rendered).map(Some)
}

/// `deleteEphemeralMessage`.
pub(crate) fn delete_ephemeral_message(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = world.resolve_joined(&p.chat("chat_id")?)?;
    let receiver = p.req_int("receiver_user_id")?;
    let id = p.req_int("ephemeral_message_id")?;
    let e = world
        .chat_mut(chat)?
        .ephemeral
        .get_mut(&id)
        .filter(|e| e.receiver.0 == receiver && !e.message.deleted)
        .ok_or_else(|| ApiError::bad_request("message to delete not found"))?;
    e.message.deleted = true;
    Ok(Value::Bool(true))
}

impl Simulator {
    /// `user` asks to join `chat` (an invite link that creates join requests, or a group that
    /// approves new members). The bot gets `chat_join_request` if it may answer it.
    pub fn request_join(&self, chat: impl Into<ChatId>, user: UserId) -> Result<(), SimError> {
        let chat = chat.into().0;
        self.with(|w| w.request_join(chat, user.0, false).map(|_| ()))
    }

    /// Like [`Self::request_join`], with the bot as the chat's guard bot (Bot API 10.1): the
    /// update carries a `query_id`, which is returned.
    pub fn request_join_via_guard(
        &self,
        chat: impl Into<ChatId>,
        user: UserId,
    ) -> Result<String, SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            w.request_join(chat, user.0, true)
                .map(|q| q.unwrap_or_default())
        })
    }

    /// Whether `user`'s join request to `chat` waits for an answer.
    pub fn join_request_pending(&self, chat: impl Into<ChatId>, user: UserId) -> bool {
        let chat = chat.into().0;
        self.with(|w| w.join_requests.contains_key(&(chat, user.0)))
    }

    /// Moves a join request's date `by` into the past (its 5-minute private-message window
    /// and its query's 10 seconds run out without waiting).
    pub fn age_join_request(&self, chat: impl Into<ChatId>, user: UserId, by: Duration) {
        let chat = chat.into().0;
        self.with(|w| {
            if let Some(r) = w.join_requests.get_mut(&(chat, user.0)) {
                r.date -= i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 2);
            }
        });
    }

    /// How the bot answered a join request query (`approve`, `decline`, `queue`), if it did.
    pub fn join_query_answer(&self, query_id: &str) -> Option<String> {
        self.with(|w| w.query_answers.get(query_id).cloned())
    }

    /// What ephemeral sends do from now on.
    pub fn set_ephemeral_support(&self, support: EphemeralSupport) {
        self.with(|w| w.ephemeral_support = support);
    }

    /// Every ephemeral message of a chat, deleted ones included (`message.deleted`).
    pub fn ephemeral_messages(&self, chat: impl Into<ChatId>) -> Vec<SimEphemeral> {
        let chat = chat.into().0;
        self.with(|w| {
            w.chats
                .get(&chat)
                .map(|c| c.ephemeral.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// What `user` sees in a chat: its messages still there, and the ephemeral messages
    /// shown to them.
    pub fn messages_seen_by(&self, chat: impl Into<ChatId>, user: UserId) -> Vec<SimMessage> {
        let chat = chat.into().0;
        self.with(|w| {
            let Some(c) = w.chats.get(&chat) else {
                return Vec::new();
            };
            c.messages
                .values()
                .filter(|m| !m.deleted)
                .cloned()
                .chain(
                    c.ephemeral
                        .values()
                        .filter(|e| e.receiver == user && !e.message.deleted)
                        .map(|e| e.message.clone()),
                )
                .collect()
        })
    }

    /// `user` presses a button of an ephemeral message: only its receiver sees it, so anyone
    /// else cannot. Emits `callback_query`; returns its id.
    pub fn press_ephemeral_button(
        &self,
        chat: impl Into<ChatId>,
        ephemeral_id: i64,
        user: UserId,
        data: &str,
    ) -> Result<String, SimError> {
        let chat = chat.into().0;
        self.with(|w| {
            let c = w.chats.get(&chat).ok_or(SimError::UnknownChat(chat))?;
            let e = c
                .ephemeral
                .get(&ephemeral_id)
                .filter(|e| e.receiver == user && !e.message.deleted)
                .ok_or(SimError::UnknownMessage {
                    chat,
                    message: ephemeral_id,
                })?;
            if !e.message.has_callback(data) {
                return Err(SimError::NoSuchButton {
                    message: ephemeral_id,
                });
            }
            let u = w
                .user(user.0)
                .cloned()
                .ok_or(SimError::UnknownUser(user.0))?;
            let mut rendered = render::message(w, c, &e.message);
            rendered.message_id = 0;
            rendered.ephemeral_message_id = i32::try_from(ephemeral_id).ok();
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
        })
    }
}
