//! `restrictChatMember`, `banChatMember`, `unbanChatMember`, `banChatSenderChat`.
//!
//! Telegram's rules: the bot needs `can_restrict_members`; owners and admins cannot be
//! restricted; an `until_date` under 30 seconds or over 366 days from now means forever;
//! restricting with permissions that cover the group's defaults makes the user a plain member
//! again (that is how a restriction is lifted).

use frankenstein::types::ChatPermissions;
use serde_json::Value;

use super::super::api_error::ApiError;
use super::super::chat::ChatKind;
use super::super::member::{MemberState, Permissions};
use super::super::params::Params;
use super::super::world::{now, World};

const MIN_TERM: i64 = 30;
const MAX_TERM: i64 = 366 * 24 * 3600;

/// `until_date` as Telegram reads it: 0, or too short / too long, means forever (0).
fn until(p: &Params, at: i64) -> Result<i64, ApiError> {
    let until = p.int("until_date")?.unwrap_or(0);
    if until <= 0 || until - at < MIN_TERM || until - at > MAX_TERM {
        Ok(0)
    } else {
        Ok(until)
    }
}

/// The target of a moderation call: chat, user, current status; checks the bot's rights.
fn target(world: &World, p: &Params) -> Result<(i64, i64, MemberState), ApiError> {
    let chat_id = world.resolve_joined(&p.chat("chat_id")?)?;
    let user = p.req_int("user_id")?;
    let chat = world.chat(chat_id)?;
    let at = now();
    let rights = chat.member(world.bot_id(), at).rights();
    if !rights.is_some_and(|r| r.can_restrict_members) {
        return Err(ApiError::bad_request(
            "not enough rights to restrict/unrestrict chat member",
        ));
    }
    if world.user(user).is_none() {
        return Err(ApiError::user_not_found());
    }
    Ok((chat_id, user, chat.member(user, at)))
}

fn refuse_admins(state: MemberState) -> Result<(), ApiError> {
    match state {
        MemberState::Creator { .. } => Err(ApiError::bad_request("can't remove chat owner")),
        MemberState::Administrator(_) => Err(ApiError::bad_request(
            "user is an administrator of the chat",
        )),
        _ => Ok(()),
    }
}

pub(super) fn restrict_chat_member(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let (chat_id, user, state) = target(world, p)?;
    let chat = world.chat(chat_id)?;
    if chat.kind != ChatKind::Supergroup {
        return Err(ApiError::bad_request(
            "method is available only for supergroups",
        ));
    }
    refuse_admins(state)?;
    let perms = p
        .typed::<ChatPermissions>("permissions")?
        .ok_or_else(|| ApiError::bad_request("permissions is empty"))?;
    let independent = p.flag("use_independent_chat_permissions")?.unwrap_or(false);
    let perms = Permissions::from_api(&perms, independent);
    let at = now();
    let until = until(p, at)?;
    let defaults = chat.default_permissions;
    let present = state.is_present();
    let new = if perms.intersect(defaults) == defaults {
        if present {
            MemberState::Member
        } else {
            MemberState::Left
        }
    } else {
        MemberState::Restricted {
            is_member: present,
            permissions: perms,
            until,
        }
    };
    let bot = world.bot_id();
    world.set_member(chat_id, user, new, bot);
    Ok(Value::Bool(true))
}

pub(super) fn ban_chat_member(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let (chat_id, user, state) = target(world, p)?;
    refuse_admins(state)?;
    let until = until(p, now())?;
    let bot = world.bot_id();
    world.set_member(chat_id, user, MemberState::Kicked { until }, bot);
    Ok(Value::Bool(true))
}

pub(super) fn unban_chat_member(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let (chat_id, user, state) = target(world, p)?;
    let only_if_banned = p.flag("only_if_banned")?.unwrap_or(false);
    let bot = world.bot_id();
    match state {
        MemberState::Kicked { .. } => {
            world.set_member(chat_id, user, MemberState::Left, bot);
        }
        _ if only_if_banned => {}
        // Without only_if_banned, "unbanning" a member removes them from the chat.
        other => {
            refuse_admins(other)?;
            if other.is_present() {
                world.set_member(chat_id, user, MemberState::Left, bot);
            }
        }
    }
    Ok(Value::Bool(true))
}

/// `banChatSenderChat`: the channel may no longer post in the group on its own behalf (until
/// `unbanChatSenderChat`). Needs `can_restrict_members`; a chat the simulator does not know is
/// Telegram's "chat not found".
pub(super) fn ban_chat_sender_chat(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat_id = world.resolve_joined(&p.chat("chat_id")?)?;
    let sender = p.req_int("sender_chat_id")?;
    let chat = world.chat(chat_id)?;
    let rights = chat.member(world.bot_id(), now()).rights();
    if !rights.is_some_and(|r| r.can_restrict_members) {
        return Err(ApiError::bad_request(
            "not enough rights to restrict/unrestrict chat member",
        ));
    }
    if !world.chats.contains_key(&sender) {
        return Err(ApiError::chat_not_found());
    }
    if let Some(c) = world.chats.get_mut(&chat_id) {
        c.banned_sender_chats.insert(sender);
    }
    Ok(Value::Bool(true))
}
