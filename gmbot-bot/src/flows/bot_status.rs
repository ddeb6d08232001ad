//! The bot's own status (`my_chat_member`): pause a protection when the bot loses what it needs, resume when it is back.
//!
//! In a protected group the bot needs to be an administrator with the rights
//! to delete messages and restrict members; in every linked channel it needs
//! to be an administrator (to read memberships). Losing either pauses the
//! affected groups and tells their owner in private; getting everything back
//! resumes them (checked against Telegram, since one update shows one chat only).

use gmbot_core::domain::{ChannelId, ChatMemberStatus, GroupId, GroupState, ProtectedGroup};
use gmbot_core::telegram::{ChatAdmin, TelegramError};

use crate::app::App;
use crate::handlers::HandleError;
use crate::update::{ChatKind, ChatMemberUpdate};

use super::notice::tell_owner_later;
use super::warn::escape_html;

/// Whether a status with these rights lets the bot enforce in a group.
fn group_rights_ok(status: ChatMemberStatus, rights: Option<&ChatAdmin>) -> bool {
    match status {
        ChatMemberStatus::Creator => true,
        ChatMemberStatus::Administrator => {
            rights.is_some_and(|r| r.can_delete_messages && r.can_restrict_members)
        }
        _ => false,
    }
}

/// Handles a `my_chat_member` update.
pub async fn changed(app: &App, update: &ChatMemberUpdate) -> Result<(), HandleError> {
    match update.chat.kind {
        ChatKind::Group | ChatKind::Supergroup => {
            let Ok(group) = GroupId::new(update.chat.id.get()) else {
                return Ok(());
            };
            group_changed(app, group, update).await
        }
        ChatKind::Channel => {
            let Ok(channel) = ChannelId::new(update.chat.id.get()) else {
                return Ok(());
            };
            channel_changed(app, channel, update).await
        }
        // A chat type newer than this version: neither a group nor a channel to act on.
        ChatKind::Private | ChatKind::Other => Ok(()),
    }
}

async fn group_changed(
    app: &App,
    group: GroupId,
    update: &ChatMemberUpdate,
) -> Result<(), HandleError> {
    let Some(g) = app.store().group(group).await? else {
        return Ok(());
    };
    app.engine().invalidate_admins(group).await;
    let ok = group_rights_ok(update.new, update.new_rights.as_ref());
    match (g.state, ok) {
        (GroupState::Active, false) => {
            let reason = if update.new.is_subscribed() {
                "I lost the right to delete messages or to restrict members in the group"
            } else {
                "I was removed from the group"
            };
            pause(app, &g, reason).await
        }
        (GroupState::Paused, true) => resume_if_ready(app, &g).await,
        _ => Ok(()),
    }
}

async fn channel_changed(
    app: &App,
    channel: ChannelId,
    update: &ChatMemberUpdate,
) -> Result<(), HandleError> {
    if update.new.is_admin() {
        // Paused groups are not listed by `groups_for_channel`: scan (a rare event).
        let groups = app.store().list_groups().await?;
        for g in groups.iter().filter(|g| {
            g.state == GroupState::Paused && g.channels.iter().any(|c| c.id == Some(channel))
        }) {
            resume_if_ready(app, g).await?;
        }
        return Ok(());
    }
    if !update.old.is_admin() {
        return Ok(());
    }
    let title = update
        .chat
        .title
        .clone()
        .unwrap_or_else(|| channel.to_string());
    let reason = if update.new.is_subscribed() {
        format!("I am no longer an administrator of the channel “{title}”")
    } else {
        format!("I was removed from the channel “{title}”")
    };
    for group in app.store().groups_for_channel(channel).await? {
        if let Some(g) = app.store().group(group).await? {
            pause(app, &g, &reason).await?;
        }
    }
    Ok(())
}

async fn pause(app: &App, g: &ProtectedGroup, reason: &str) -> Result<(), HandleError> {
    let paused = app
        .store()
        .pause(g.id, reason, app.clock().unix_now())
        .await?;
    app.engine().invalidate_group(g.id).await;
    if !paused {
        return Ok(());
    }
    log::warn!(group_id = g.id.get(), reason = reason; "protection paused");
    let title = escape_html(g.title.as_deref().unwrap_or("your group"));
    tell_owner_later(
        app,
        g.owner,
        format!(
            "⏸ The protection of <b>{title}</b> is paused: {}. Make me an administrator \
             again (with the rights to delete messages and restrict members in the group, \
             and in every linked channel) and it resumes by itself.",
            escape_html(reason)
        ),
    );
    Ok(())
}

/// Resumes a paused group if the bot has every right it needs in the group and its channels.
async fn resume_if_ready(app: &App, g: &ProtectedGroup) -> Result<(), HandleError> {
    match ready(app, g).await {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(err) => {
            log::info!(group_id = g.id.get(), error:display = err; "cannot check the bot's rights; the group stays paused");
            return Ok(());
        }
    }
    let resumed = app.store().resume(g.id, app.clock().unix_now()).await?;
    app.engine().invalidate_group(g.id).await;
    if !resumed {
        return Ok(());
    }
    log::info!(group_id = g.id.get(); "protection resumed");
    let title = escape_html(g.title.as_deref().unwrap_or("your group"));
    tell_owner_later(
        app,
        g.owner,
        format!("▶️ The protection of <b>{title}</b> has resumed."),
    );
    Ok(())
}

async fn ready(app: &App, g: &ProtectedGroup) -> Result<bool, TelegramError> {
    let me = app.me().id;
    let admins = app.telegram().get_chat_administrators(g.id.into()).await?;
    let in_group = admins
        .iter()
        .find(|a| a.user == me)
        .is_some_and(|a| a.is_creator || (a.can_delete_messages && a.can_restrict_members));
    if !in_group {
        return Ok(false);
    }
    for channel in g.channels.iter().filter_map(|c| c.id) {
        match app.telegram().get_chat_member(channel.into(), me).await {
            Ok(status) if status.is_admin() => {}
            Ok(_)
            | Err(TelegramError::ChatNotFound(_))
            | Err(TelegramError::NotEnoughRights(_)) => return Ok(false),
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}
