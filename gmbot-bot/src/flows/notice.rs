//! Telling people what to fix: the group's admins (in the group, once per problem per 6 h) and the owner (in private).

use gmbot_core::domain::{EnforcedChannel, FailurePolicy, GroupId, UnknownReason, UserId};
use gmbot_core::engine::UnverifiableChannel;
use gmbot_core::telegram::{OutgoingMessage, TelegramError};

use crate::app::App;

use super::warn::{channel_label, escape_html};

/// A stable key for a channel in notice de-duplication.
fn channel_key(c: &EnforcedChannel) -> String {
    match (&c.id, &c.username) {
        (Some(id), _) => id.to_string(),
        (None, Some(u)) => u.canonical(),
        (None, None) => c.to_string(),
    }
}

/// Posts `html` in the group unless the same notice (`key`) went out in the last `notice_interval`.
async fn notify_group_once(app: &App, group: GroupId, key: String, html: String) {
    if !app.flows().claim_notice(group, key).await {
        return;
    }
    let msg = OutgoingMessage {
        html,
        buttons: Vec::new(),
        reply_to: None,
        silent: false,
    };
    match app.telegram().send_message(group.into(), &msg).await {
        Ok(_) => app
            .metrics()
            .actions
            .with_label_values(&["notice", "ok"])
            .inc(),
        Err(err) => {
            app.metrics()
                .actions
                .with_label_values(&["notice", "failed"])
                .inc();
            log::warn!(group_id = group.get(), error:display = err; "cannot post a notice to the admins");
        }
    }
}

/// Tells the group's admins, once per channel per `notice_interval`, that a
/// channel's membership cannot be checked and how to fix it. A Telegram
/// outage is not reported (nothing for an admin to fix).
pub async fn unverifiable_channels(
    app: &App,
    group: GroupId,
    channels: &[UnverifiableChannel],
    policy: FailurePolicy,
) {
    for u in channels {
        if u.channel.id.is_none() && u.channel.username.is_some() {
            // Not resolved yet: the resolver tells the admins if the username leads nowhere.
            continue;
        }
        let problem = match u.reason {
            UnknownReason::NotChannelAdmin => "I am not an administrator of it",
            UnknownReason::ChannelNotFound => {
                "I cannot find it (it was deleted, or I am not in it)"
            }
            UnknownReason::TelegramUnavailable => continue,
        };
        let consequence = match policy {
            FailurePolicy::Open => "until then everyone may write",
            FailurePolicy::Closed => "until then members are treated as not subscribed",
        };
        let html = format!(
            "⚠️ Admins: I cannot check who joined <b>{}</b>: {problem}. \
             To fix it, add me to that channel as an administrator; {consequence}.",
            escape_html(&channel_label(&u.channel)),
        );
        notify_group_once(
            app,
            group,
            format!("unverifiable:{}", channel_key(&u.channel)),
            html,
        )
        .await;
    }
}

/// Tells the group's admins, once per channel per `notice_interval`, that a
/// private channel has no stored invite link, so warnings carry no Join button for it.
pub async fn missing_invite_link(app: &App, group: GroupId, channel: &EnforcedChannel) {
    let label = escape_html(&channel_label(channel));
    let html = format!(
        "⚠️ Admins: <b>{label}</b> is private and I have no invite link for it, so members \
         cannot be shown a Join button. Give me the “Invite users” right in that channel and \
         run /protect again with it, so that I create one link and keep it."
    );
    notify_group_once(app, group, format!("invite:{}", channel_key(channel)), html).await;
}

/// Tells the group's admins, once per `notice_interval`, that the join gate is on but the bot
/// may not answer join requests (no `can_invite_users`), so the requests are left to them.
pub async fn join_gate_without_rights(app: &App, group: GroupId) {
    let html = "⚠️ Admins: the join gate is on, but I can't approve or decline join requests.                 Give me the right <i>Invite users via link</i> in this group, or switch the gate                 off in /settings. Until then the requests wait for you."
        .to_owned();
    notify_group_once(app, group, "join_gate_rights".to_owned(), html).await;
}

/// [`tell_owner`] in the background: the handler that noticed something does not wait for
/// the private chat's budget (1 message/s).
pub fn tell_owner_later(app: &App, owner: Option<UserId>, html: String) {
    let app = app.clone();
    tokio::spawn(async move { tell_owner(&app, owner, html).await });
}

/// Tells a group's owner in private, if they started a chat with the bot.
/// A refusal (blocked the bot) is expected and only logged at debug level.
pub async fn tell_owner(app: &App, owner: Option<UserId>, html: String) {
    let Some(owner) = owner else { return };
    let can = match app.store().owner(owner).await {
        Ok(Some(o)) => o.can_be_messaged,
        Ok(None) => false,
        Err(err) => {
            log::warn!(user_id = owner.get(), error:display = err; "cannot read the owner");
            false
        }
    };
    if !can {
        return;
    }
    let msg = OutgoingMessage {
        html,
        buttons: Vec::new(),
        reply_to: None,
        silent: false,
    };
    match app.telegram().send_message(owner.into(), &msg).await {
        Ok(_) => {}
        Err(TelegramError::Forbidden(_)) => {
            log::debug!(user_id = owner.get(); "the owner blocked the bot; not told")
        }
        Err(err) => {
            log::warn!(user_id = owner.get(), error:display = err; "cannot message the owner")
        }
    }
}
