//! `/settings`: the group's settings as an inline keyboard, the allow-list
//! sub-commands, and the keyboard's button presses (callback data `s:…`).
//!
//! A press is applied only after asking Telegram, at that moment, whether the
//! presser administers the group the keyboard was posted in: callback data is
//! untrusted (anyone can send any data for any message they see), and an
//! admin demoted since the keyboard was posted must not change anything.
//! A change goes through `Store::update_settings` (validated, atomic) and the
//! engine's cached configuration is dropped, so the next verification uses it.

mod keyboard;

use gmbot_core::domain::{ChatId, GroupId, SettingChange, UserId};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::OutgoingMessage;

use super::caller::{can_restrict, restrict_gate};
use super::reply::{quote, reply, reply_text};
use crate::app::App;
use crate::handlers::HandleError;
use crate::update::{CallbackQuery, Message};

pub use self::keyboard::{
    parse_press, settings_message, Press, JOIN_WAIT_PRESETS, MUTE_PRESETS, PREFIX, WARNING_PRESETS,
};

const USAGE: &str = "Send /settings for the keyboard, or <code>/settings allow USER_ID</code> / \
                     <code>/settings disallow USER_ID</code> (a numeric user id) to exempt a user or stop exempting them.";

/// Answers `/settings` and `/settings allow|disallow <user_id>`.
pub(crate) async fn run(app: &App, msg: &Message, args: &[String]) -> Result<(), HandleError> {
    let Some((group, _)) = restrict_gate(app, msg, "settings", "/settings").await? else {
        return Ok(());
    };
    let Some(stored) = app.store().group(group).await? else {
        let html =
            "This group is not protected yet: send <code>/protect @yourchannel</code> first."
                .to_owned();
        return reply_text(app, msg, html).await;
    };
    let (verb, target) = match args {
        [] => {
            let out = settings_message(stored.title.as_deref(), &stored.settings);
            return reply(app, msg, out.html, out.buttons).await;
        }
        [verb, target] => (verb.to_ascii_lowercase(), target),
        _ => return reply_text(app, msg, USAGE.into()).await,
    };
    let Ok(user) = target.parse::<UserId>() else {
        let html = format!("<b>{}</b> is not a user id. {USAGE}", quote(target));
        return reply_text(app, msg, html).await;
    };
    let (change, done) = match verb.as_str() {
        "allow" => (
            SettingChange::Allow(user),
            format!("User {user} is on the allow-list: I won't verify them in this group."),
        ),
        "disallow" => (
            SettingChange::Disallow(user),
            format!("User {user} is not on the allow-list: I verify them like everyone else."),
        ),
        _ => return reply_text(app, msg, USAGE.into()).await,
    };
    match apply(app, group, change).await {
        Ok(_) => reply_text(app, msg, done).await,
        Err(StoreError::Settings(e)) => reply_text(app, msg, quote(&e.to_string())).await,
        Err(e) => Err(e.into()),
    }
}

/// Applies one change and makes the engine see it at once.
async fn apply(
    app: &App,
    group: GroupId,
    change: SettingChange,
) -> Result<gmbot_core::domain::GroupSettings, StoreError> {
    let now = app.clock().unix_now();
    let settings = app.store().update_settings(group, &[change], now).await?;
    app.engine().invalidate_group(group).await;
    log::info!(group_id = group.get(); "group settings changed");
    Ok(settings)
}

/// Handles a press on a settings button (callback data starting with `s:`).
/// Every press is answered; only a group admin's press changes anything.
pub async fn handle_callback(app: &App, cq: &CallbackQuery) -> Result<(), HandleError> {
    let tg = app.telegram();
    let answer = |text: &'static str, alert: bool| async move {
        tg.answer_callback(&cq.id, Some(text), alert).await
    };
    let press = cq.data.as_deref().and_then(parse_press);
    let (Some(press), Some((chat, message))) = (press, cq.message) else {
        answer(
            "This button is no longer valid: send /settings again.",
            false,
        )
        .await?;
        return Ok(());
    };
    let Some(group) = group_of_chat(chat) else {
        answer(
            "This button is no longer valid: send /settings again.",
            false,
        )
        .await?;
        return Ok(());
    };
    // The same right as the /settings command itself: creator, or "Ban users".
    let admin = match can_restrict(app, group, cq.from.id).await {
        Ok(admin) => admin,
        Err(e) => {
            answer("Telegram is not answering; try again in a moment.", false).await?;
            return Err(e.into());
        }
    };
    if !admin {
        log::info!(
            group_id = group.get(),
            user_id = cq.from.id.get();
            "settings button pressed by a non-admin: refused"
        );
        answer(
            "Only the group's creator or an administrator with the right Ban users can change its settings.",
            true,
        )
        .await?;
        return Ok(());
    }
    let Some(stored) = app.store().group(group).await? else {
        answer("This group is not protected any more.", false).await?;
        return Ok(());
    };
    let title = stored.title.as_deref();
    let (edited, text, alert) = match press {
        Press::Done => {
            let out = settings_message(title, &stored.settings);
            let closed = OutgoingMessage {
                html: out.html,
                ..OutgoingMessage::default()
            };
            (closed, "Done.", false)
        }
        Press::Change(change) => match apply(app, group, change.clone()).await {
            Ok(settings) if change == SettingChange::JoinGate(true) => {
                // The gate answers join requests only with the right to invite users.
                let missing =
                    gmbot_core::setup::check_join_gate(&**app.telegram(), app.me().id, group)
                        .await
                        .is_some();
                if missing {
                    (settings_message(title, &settings), GATE_NEEDS_RIGHT, true)
                } else {
                    (settings_message(title, &settings), "Saved.", false)
                }
            }
            Ok(settings) => (settings_message(title, &settings), "Saved.", false),
            Err(StoreError::Settings(e)) => {
                log::warn!(group_id = group.get(), error:display = e; "settings preset refused");
                answer("That value is not allowed.", true).await?;
                return Ok(());
            }
            Err(e) => {
                answer("I could not save that; try again in a moment.", false).await?;
                return Err(e.into());
            }
        },
    };
    if let Err(e) = tg.edit_message(chat, message, &edited).await {
        // The change is saved; only the keyboard's picture is stale.
        log::warn!(
            group_id = group.get(),
            error:display = e;
            "cannot update the settings keyboard"
        );
    }
    answer(text, alert).await?;
    Ok(())
}

/// The answer to switching the join gate on without the right it needs (at most 200 characters).
const GATE_NEEDS_RIGHT: &str = "Saved. But I can't answer join requests yet: give me the right \
                                Invite users via link in this group, or they wait for you.";

fn group_of_chat(chat: ChatId) -> Option<GroupId> {
    GroupId::new(chat.get()).ok()
}
