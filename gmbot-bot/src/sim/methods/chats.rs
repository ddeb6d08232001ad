//! `getChat`, `getChatMember`, `getChatAdministrators`, `getChatMemberCount`.
//!
//! A channel reveals its members only to its administrators: for anybody else Telegram answers
//! `400 Bad Request: member list is inaccessible` (TELEGRAM.md, "Membership").

use serde_json::Value;

use super::super::api_error::ApiError;
use super::super::chat::ChatKind;
use super::super::params::Params;
use super::super::render;
use super::super::world::{now, World};

/// Resolves a chat whose member list the bot wants to read.
fn readable_members(world: &World, p: &Params) -> Result<i64, ApiError> {
    let id = world.resolve(&p.chat("chat_id")?)?;
    let chat = world.chat(id)?;
    if chat.is_channel() {
        if chat.member(world.bot_id(), now()).is_admin() {
            Ok(id)
        } else {
            Err(ApiError::bad_request("member list is inaccessible"))
        }
    } else {
        world.resolve_joined(&p.chat("chat_id")?)
    }
}

pub(super) fn get_chat(world: &World, p: &Params) -> Result<Value, ApiError> {
    let chat_ref = p.chat("chat_id")?;
    let id = world.resolve(&chat_ref)?;
    let chat = world.chat(id)?;
    // Public chats (with a username) can be looked up by anyone; private ones only by members.
    if chat.username.is_none() {
        world.resolve_joined(&chat_ref)?;
    }
    super::to_json(&render::chat_full(chat))
}

pub(super) fn get_chat_member(world: &World, p: &Params) -> Result<Value, ApiError> {
    let user_id = p.req_int("user_id")?;
    let id = readable_members(world, p)?;
    let chat = world.chat(id)?;
    let user = world.user(user_id).ok_or_else(ApiError::user_not_found)?;
    let state = if chat.kind == ChatKind::Private {
        if user_id == chat.id || user_id == world.bot_id() {
            super::super::member::MemberState::Member
        } else {
            return Err(ApiError::user_not_found());
        }
    } else {
        chat.member(user_id, now())
    };
    super::to_json(&render::member(user, state))
}

pub(super) fn get_chat_administrators(world: &World, p: &Params) -> Result<Value, ApiError> {
    let id = readable_members(world, p)?;
    let chat = world.chat(id)?;
    let at = now();
    let mut admins: Vec<(i64, _)> = chat
        .members
        .keys()
        .map(|&u| (u, chat.member(u, at)))
        .filter(|(_, s)| s.is_admin())
        .collect();
    // The owner first, then by id, so answers are stable.
    admins.sort_by_key(|(u, s)| {
        (
            !matches!(s, super::super::member::MemberState::Creator { .. }),
            *u,
        )
    });
    let list: Vec<_> = admins
        .into_iter()
        .map(|(u, s)| render::member(&world.user_or_placeholder(u), s))
        .collect();
    super::to_json(&list)
}

pub(super) fn get_chat_member_count(world: &World, p: &Params) -> Result<Value, ApiError> {
    let chat_ref = p.chat("chat_id")?;
    let id = world.resolve(&chat_ref)?;
    let chat = world.chat(id)?;
    if chat.username.is_none() && !chat.is_channel() {
        world.resolve_joined(&chat_ref)?;
    } else if chat.username.is_none() {
        readable_members(world, p)?;
    }
    let at = now();
    let count = chat
        .members
        .keys()
        .filter(|&&u| chat.member(u, at).is_present())
        .count();
    Ok(Value::from(count))
}
