//! `message` and `edited_message`: commands, service messages (joins, migrations) and
//! enforcement of everything else in a protected group.
//!
//! An edit is verified like a new message (delete, mute, warn): a member could otherwise post
//! while subscribed, leave the channel and edit the post into anything (TELEGRAM.md,
//! "Updates"). Edits never run commands.

use std::time::Instant;

use gmbot_core::domain::{GroupId, UserId};
use gmbot_core::engine::{Decision, MessageContext};

use crate::app::App;
use crate::commands;
use crate::flows::{enforce, join, migration, second_look};
use crate::update::{Message, User};

use super::HandleError;

pub(super) async fn handle(app: &App, update_id: i64, msg: Message) -> Result<(), HandleError> {
    let command = msg
        .text
        .as_deref()
        .filter(|t| t.starts_with('/'))
        .and_then(|t| commands::parse(t, &app.me().username));
    if !msg.chat.is_group() {
        return match command {
            Some(cmd) => commands::handle(app, &msg, cmd).await,
            None => Ok(()),
        };
    }
    let Ok(group) = GroupId::new(msg.chat.id.get()) else {
        return Ok(());
    };

    // Service messages.
    if let Some(to) = msg.migrate_to_chat_id {
        if let Ok(to) = GroupId::new(to.get()) {
            migration::migrate(app, group, to).await?;
        }
        return Ok(());
    }
    if let Some(from) = msg.migrate_from_chat_id {
        if let Ok(from) = GroupId::new(from.get()) {
            migration::migrate(app, from, group).await?;
        }
        return Ok(());
    }
    if !msg.new_chat_members.is_empty() {
        for member in &msg.new_chat_members {
            join::member_joined_group(app, group, member).await?;
        }
        return Ok(());
    }
    if msg.left_chat_member.is_some() {
        return Ok(());
    }
    let Some(from) = &msg.from else {
        return Ok(());
    };

    if enforce_message(app, update_id, group, &msg, from).await? {
        // A non-member's command is not run: commands are no way around the rule.
        return Ok(());
    }
    match command {
        Some(cmd) => commands::handle(app, &msg, cmd).await,
        None => Ok(()),
    }
}

/// An edited message: in a protected group, verified like a new one; never a command.
pub(super) async fn handle_edit(
    app: &App,
    update_id: i64,
    msg: Message,
) -> Result<(), HandleError> {
    if !msg.chat.is_group() {
        return Ok(());
    }
    let (Ok(group), Some(from)) = (GroupId::new(msg.chat.id.get()), &msg.from) else {
        return Ok(());
    };
    enforce_message(app, update_id, group, &msg, from).await?;
    Ok(())
}

/// Verifies the sender of `msg` and carries out the verdict. Returns whether
/// the sender was denied; `false` also when the group is not enforced.
async fn enforce_message(
    app: &App,
    update_id: i64,
    group: GroupId,
    msg: &Message,
    from: &User,
) -> Result<bool, HandleError> {
    let started = Instant::now();
    let mut ctx = MessageContext::message(msg.id);
    if let Some(chat) = &msg.sender_chat {
        ctx = ctx.with_sender_chat(chat.id);
    }
    if msg.is_automatic_forward {
        ctx = ctx.automatic_forward();
    }
    if from.is_bot {
        ctx = ctx.from_bot();
    }
    // Enforce, lift, "I've joined" and channel joins of one member never interleave.
    let guard = app.flows().member_lock(group, from.id).await;
    let verdict = app.engine().verify(group, from.id, ctx).await?;
    if let Decision::NotEnforced(_) = verdict.decision {
        return Ok(false);
    }
    app.group_stats()
        .record(group, verdict.result(), verdict.cache_hits);
    if !from.is_bot && from.id != UserId::SERVICE_ACCOUNT && from.id != UserId::GROUP_ANONYMOUS_BOT
    {
        app.flows()
            .seen()
            .record(group, from.id, app.clock().unix_now());
    }
    let denied = !verdict.decision.is_allowed();
    enforce::perform(app, group, from, &verdict).await?;
    drop(guard);
    if second_look::wanted(&verdict) {
        // Let through because Telegram did not answer: looked at again once it does.
        second_look::schedule(app, group, from.clone(), ctx);
    }
    if denied {
        log::info!(
            update_id = update_id,
            group_id = group.get(),
            user_id = from.id.get(),
            decision = verdict.decision.as_str(),
            latency_ms = started.elapsed().as_millis() as u64;
            "message denied"
        );
        return Ok(true);
    }
    log::debug!(
        update_id = update_id,
        group_id = group.get(),
        user_id = from.id.get(),
        decision = verdict.decision.as_str(),
        latency_ms = started.elapsed().as_millis() as u64;
        "message allowed"
    );
    Ok(false)
}
