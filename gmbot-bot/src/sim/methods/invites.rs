//! `createChatInviteLink` and `exportChatInviteLink`.
//!
//! `exportChatInviteLink` revokes the previous primary link (TELEGRAM.md, "Acting"): a bot
//! that exports a link per warning breaks every link it posted before.

use frankenstein::types::ChatInviteLink;
use serde_json::Value;

use super::super::api_error::ApiError;
use super::super::params::Params;
use super::super::render;
use super::super::world::{now, InviteLink, World};

fn invite_chat(world: &World, p: &Params) -> Result<i64, ApiError> {
    let id = world.resolve_joined(&p.chat("chat_id")?)?;
    let chat = world.chat(id)?;
    if !chat
        .member(world.bot_id(), now())
        .rights()
        .is_some_and(|r| r.can_invite_users)
    {
        return Err(ApiError::bad_request(
            "not enough rights to manage chat invite link",
        ));
    }
    Ok(id)
}

fn fresh_link(world: &mut World) -> String {
    let n = world.next_link;
    world.next_link += 1;
    // Not secret, only unique and link-shaped.
    let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
    format!("https://t.me/+sim{mixed:016x}")
}

pub(super) fn create_chat_invite_link(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = invite_chat(world, p)?;
    let name = p.string("name");
    if name.as_ref().is_some_and(|n| n.chars().count() > 32) {
        return Err(ApiError::bad_request("invite link name is too long"));
    }
    let creates_join_request = p.flag("creates_join_request")?.unwrap_or(false);
    let link = fresh_link(world);
    world.invite_links.insert(
        link.clone(),
        InviteLink {
            chat,
            is_primary: false,
            revoked: false,
            name: name.clone(),
            creates_join_request,
        },
    );
    let answer = ChatInviteLink::builder()
        .invite_link(link.as_str())
        .creator(render::user(&world.bot))
        .creates_join_request(creates_join_request)
        .is_primary(false)
        .is_revoked(false)
        .maybe_name(name)
        .maybe_expire_date(p.int("expire_date")?.and_then(|d| u64::try_from(d).ok()))
        .maybe_member_limit(p.int("member_limit")?.and_then(|d| u32::try_from(d).ok()))
        .build();
    super::to_json(&answer)
}

pub(super) fn export_chat_invite_link(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = invite_chat(world, p)?;
    let link = fresh_link(world);
    let previous = world.chat_mut(chat)?.primary_link.replace(link.clone());
    if let Some(old) = previous.and_then(|l| world.invite_links.get_mut(&l)) {
        old.revoked = true;
    }
    world.invite_links.insert(
        link.clone(),
        InviteLink {
            chat,
            is_primary: true,
            revoked: false,
            name: None,
            creates_join_request: false,
        },
    );
    Ok(Value::String(link))
}
