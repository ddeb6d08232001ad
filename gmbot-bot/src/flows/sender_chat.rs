//! Messages posted "as a channel" that the group does not trust: ban that channel, warn once.
//!
//! A member who owns a channel can post in a group on its behalf; Telegram then sends
//! `from` = the placeholder Channel_Bot (136817688, `is_bot: true`) and `sender_chat` = the
//! channel (TELEGRAM.md, "Updates"). The engine allows the group itself, the linked channel's
//! automatic forwards and the group's enforced channels; for any other channel it asks for the
//! message to be deleted (done by [`enforce`](super::enforce)), the channel to be banned from the
//! group with `banChatSenderChat` (setting `ban_channel_senders`) and this module's warning. The
//! placeholder is shared by every such post, so nobody is muted: the person behind it is unknown.

use std::sync::Arc;
use std::time::Duration;

use gmbot_core::domain::{ChatId, EnforcedChannel, GroupId, UserId};
use gmbot_core::telegram::OutgoingMessage;

use crate::app::App;

use super::enforce::count;
use super::warn::{channel_label, escape_html, join_buttons};

/// Bans `chat` from posting in `group` on its own behalf.
pub async fn ban(app: &App, group: GroupId, chat: ChatId) {
    let result = app.telegram().ban_sender_chat(group, chat).await;
    count(app, "ban_sender_chat", result.is_ok());
    match result {
        Ok(()) => log::info!(
            group_id = group.get(),
            sender_chat_id = chat.get();
            "channel banned from posting in the group"
        ),
        Err(err) => {
            app.metrics()
                .errors
                .with_label_values(&["ban_sender_chat"])
                .inc();
            log::warn!(
                group_id = group.get(),
                sender_chat_id = chat.get(),
                error:display = err;
                "cannot ban a channel from the group"
            );
        }
    }
}

/// The warning: post as yourself after joining `channels` (with their Join buttons).
pub fn warning_message(channels: &[Arc<EnforcedChannel>]) -> OutgoingMessage {
    let names: Vec<String> = channels
        .iter()
        .map(|c| format!("<b>{}</b>", escape_html(&channel_label(c))))
        .collect();
    let mut html = "⚠️ Posting on behalf of a channel is not allowed in this group. \
                    Please post as yourself"
        .to_owned();
    if !names.is_empty() {
        html.push_str(" after joining ");
        html.push_str(&names.join(", "));
    }
    html.push('.');
    let buttons = join_buttons(channels);
    OutgoingMessage {
        html,
        buttons,
        reply_to: None,
        silent: true,
    }
}

/// Posts the warning unless one went out in `group` within `cooldown`, and schedules its
/// deletion. The cool-down is per group, not per channel: a raid of channel posts gets one
/// warning, not one per channel.
pub async fn warn(
    app: &App,
    group: GroupId,
    channels: &[Arc<EnforcedChannel>],
    delete_after: Duration,
    cooldown: Duration,
) {
    let flows = app.flows();
    // Keyed by the placeholder sender: the warning is about posting as a channel, whoever did.
    let key = UserId::CHANNEL_BOT;
    if !flows
        .claim_warning(group, key, cooldown, app.clock().now_millis())
        .await
    {
        return;
    }
    let result = app
        .telegram()
        .send_message(group.into(), &warning_message(channels))
        .await;
    count(app, "warn", result.is_ok());
    match result {
        Ok(message) => flows
            .timers()
            .reschedule(group, Some(key), message, delete_after),
        Err(err) => log::warn!(
            group_id = group.get(),
            error:display = err;
            "cannot post the channel-post warning"
        ),
    }
}
