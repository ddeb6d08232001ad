//! The Bot API methods the simulator implements, dispatched by name in one place.
//!
//! Method names are case-insensitive in the Bot API; the call log records the documented spelling.

mod callbacks;
mod chats;
mod identity;
mod invites;
mod messages;
mod moderation;
mod webhook;

use serde_json::Value;

use super::api_error::ApiError;
use super::join_requests;
use super::params::Params;
use super::world::World;

pub(crate) use self::webhook::WebhookChange;

/// Every method the simulator serves, in Telegram's spelling.
pub(crate) const METHODS: [&str; 26] = [
    "getMe",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "getChat",
    "getChatMember",
    "getChatAdministrators",
    "getChatMemberCount",
    "sendMessage",
    "deleteMessage",
    "deleteMessages",
    "editMessageText",
    "restrictChatMember",
    "banChatMember",
    "unbanChatMember",
    "banChatSenderChat",
    "answerCallbackQuery",
    "createChatInviteLink",
    "exportChatInviteLink",
    "approveChatJoinRequest",
    "declineChatJoinRequest",
    "answerChatJoinRequestQuery",
    "deleteEphemeralMessage",
    "logOut",
    "close",
];

/// The documented spelling of a method name, if the simulator knows it.
pub(crate) fn canonical(name: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.eq_ignore_ascii_case(name))
}

/// What a call changed beyond its answer, for the server to act on outside the lock.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) webhook: Option<WebhookChange>,
}

/// Runs one method (everything but the waiting part of `getUpdates`).
pub(crate) fn dispatch(
    world: &mut World,
    method: &str,
    p: &Params,
    effects: &mut Effects,
) -> Result<Value, ApiError> {
    match method {
        "getMe" => identity::get_me(world),
        "logOut" | "close" => Ok(Value::Bool(true)),
        "setWebhook" => webhook::set_webhook(world, p, effects),
        "deleteWebhook" => webhook::delete_webhook(world, p, effects),
        "getWebhookInfo" => webhook::get_webhook_info(world),
        "getChat" => chats::get_chat(world, p),
        "getChatMember" => chats::get_chat_member(world, p),
        "getChatAdministrators" => chats::get_chat_administrators(world, p),
        "getChatMemberCount" => chats::get_chat_member_count(world, p),
        "sendMessage" => messages::send_message(world, p),
        "deleteMessage" => messages::delete_message(world, p),
        "deleteMessages" => messages::delete_messages(world, p),
        "editMessageText" => messages::edit_message_text(world, p),
        "restrictChatMember" => moderation::restrict_chat_member(world, p),
        "banChatMember" => moderation::ban_chat_member(world, p),
        "unbanChatMember" => moderation::unban_chat_member(world, p),
        "banChatSenderChat" => moderation::ban_chat_sender_chat(world, p),
        "answerCallbackQuery" => callbacks::answer_callback_query(world, p),
        "createChatInviteLink" => invites::create_chat_invite_link(world, p),
        "exportChatInviteLink" => invites::export_chat_invite_link(world, p),
        "approveChatJoinRequest" => join_requests::approve_chat_join_request(world, p),
        "declineChatJoinRequest" => join_requests::decline_chat_join_request(world, p),
        "answerChatJoinRequestQuery" => join_requests::answer_chat_join_request_query(world, p),
        "deleteEphemeralMessage" => join_requests::delete_ephemeral_message(world, p),
        _ => Err(ApiError::not_found()),
    }
}

/// Serializes a typed answer; a failure here is the simulator's own bug, answered as a 500.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|_| ApiError::server(500))
}
