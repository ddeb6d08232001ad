//! The "I've joined" button: re-check the member it is bound to, bypassing the cache, and unmute them.
//!
//! The callback data (`j:<user id>`) binds the button to one member; the
//! group is the chat of the message carrying it. The consolidated warning of a raid carries
//! `j:any` ([`ANYONE_JOINED_DATA`]): it re-checks whoever presses it, and a presser who is
//! not muted gets a short answer only they see. Callback data is untrusted:
//! anything malformed gets a generic answer, and someone else's press gets
//! "This button is not for you." without a re-check.
//!
//! A re-check passes the [`RecheckGate`](super::recheck::RecheckGate) first
//! (per-member cool-down, bot-wide budget). A re-check that cannot verify a
//! channel (429, 5xx, timeout, bot not a channel admin) never unmutes, even in
//! a fail-open group: the member is asked to try again in a moment.
//! `USER_NOT_PARTICIPANT` is a verdict (not a member); `getChatMember`'s
//! "user not found" is not (see `botapi`), so it too is "try again".
//!
//! A member found subscribed is always freed: their open restriction rows are
//! closed, and with no open row the mute is lifted in Telegram anyway
//! (unrestricting is idempotent).

use std::sync::Arc;

use gmbot_core::dispatch::Lane;
use gmbot_core::domain::{GroupId, LiftReason, UserId};
use gmbot_core::engine::Action;
use gmbot_core::telegram::{TelegramApi, TelegramError};

use crate::app::App;
use crate::handlers::HandleError;
use crate::update::CallbackQuery;

use crate::outbox::ANYONE_JOINED_DATA;

use super::lift::Unmuted;
use super::recheck::Refused;
use super::warn::{channel_label, parse_joined_data};

/// Answer to someone pressing another member's button.
pub const NOT_FOR_YOU: &str = "This button is not for you.";
/// Answer once the member may write.
pub const WELCOME: &str = "Welcome! You can write now.";
/// Answer to data that does not parse or a button out of context.
pub const INVALID: &str = "This button is no longer valid.";
/// Answer to a press of the consolidated warning's button by someone who is not muted.
pub const NOT_MUTED: &str = "You are not muted: you can write in this group.";
/// Answer when the re-check or the unmute failed.
pub const TRY_AGAIN: &str = "Something went wrong, please try again in a moment.";
/// Answer when Telegram could not tell whether the member joined (the mute stays).
pub const UNVERIFIED: &str =
    "I couldn't check your subscription just now. Please try again in a moment.";
/// Answer to a press within the member's re-check cool-down.
pub const COOLING_DOWN: &str = "Please wait a few seconds before checking again.";

/// Telegram shows at most 200 characters of a callback answer.
const MAX_ANSWER_CHARS: usize = 200;

async fn answer(telegram: &dyn TelegramApi, cq: &CallbackQuery, text: &str, alert: bool) {
    let text: String = text.chars().take(MAX_ANSWER_CHARS).collect();
    if let Err(err) = telegram.answer_callback(&cq.id, Some(&text), alert).await {
        log::info!(user_id = cq.from.id.get(), error:display = err; "cannot answer a callback query");
    }
}

/// Lifts a mute the store has no open row for: a member who joined is freed
/// whatever happened to the row (closed as expired while Telegram still mutes,
/// a lost write). Unrestricting is idempotent: a member who is not muted stays
/// as they are. Returns `false` only when Telegram could not be reached (try again).
async fn free_without_row(telegram: &dyn TelegramApi, group: GroupId, user: UserId) -> bool {
    match telegram.unrestrict_member(group, user).await {
        Ok(()) => {
            log::info!(group_id = group.get(), user_id = user.get(); "member freed without an open row");
            true
        }
        Err(
            err @ (TelegramError::RetryAfter { .. }
            | TelegramError::Server { .. }
            | TelegramError::Network(_)),
        ) => {
            log::warn!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot free a member");
            false
        }
        // An admin, the owner, a user who left: nothing of ours to lift.
        Err(err) => {
            log::debug!(group_id = group.get(), user_id = user.get(), error:display = err; "nothing to free");
            true
        }
    }
}

/// What a press of an "I've joined" button names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Press {
    /// The group of the message the button is under.
    pub(crate) group: GroupId,
    /// The member the button is for (the presser, for the consolidated warning's button).
    pub(crate) bound: UserId,
    /// The consolidated warning's button ([`ANYONE_JOINED_DATA`]).
    pub(crate) anyone: bool,
}

/// Reads a press's data and message; `None` when the data is not an "I've joined" button's
/// or the message is not in a group.
pub(crate) fn press(cq: &CallbackQuery, data: &str) -> Option<Press> {
    let anyone = data == ANYONE_JOINED_DATA;
    let bound = if anyone {
        Some(cq.from.id)
    } else {
        parse_joined_data(data)
    }?;
    let group = cq
        .message
        .and_then(|(chat, _)| GroupId::new(chat.get()).ok())?;
    Some(Press {
        group,
        bound,
        anyone,
    })
}

/// Handles a press whose data starts with `j:`.
pub async fn pressed(app: &App, cq: &CallbackQuery, data: &str) -> Result<(), HandleError> {
    let telegram = app.telegram_in(Lane::Interactive);
    let Some(Press {
        group,
        bound,
        anyone,
    }) = press(cq, data)
    else {
        log::warn!(
            user_id = cq.from.id.get(),
            data_len = data.len();
            "malformed \"I've joined\" callback"
        );
        answer(&telegram, cq, INVALID, false).await;
        return Ok(());
    };
    if cq.from.id != bound {
        log::info!(
            group_id = group.get(),
            user_id = cq.from.id.get(),
            bound_user_id = bound.get();
            "\"I've joined\" pressed by someone else"
        );
        answer(&telegram, cq, NOT_FOR_YOU, false).await;
        return Ok(());
    }
    let _guard = app.flows().member_lock(group, bound).await;
    if anyone {
        let muted = match app.store().active_restriction(group, bound).await {
            Ok(row) => row.is_some() || app.outbox().has_work_for(group, bound),
            Err(err) => {
                answer(&telegram, cq, TRY_AGAIN, false).await;
                return Err(err.into());
            }
        };
        if !muted {
            answer(&telegram, cq, NOT_MUTED, false).await;
            return Ok(());
        }
    }
    match app
        .flows()
        .rechecks()
        .try_claim(group, bound, app.clock().now_millis())
        .await
    {
        Ok(()) => {}
        Err(refused) => {
            let text = match refused {
                Refused::CoolingDown => COOLING_DOWN,
                Refused::OverBudget => UNVERIFIED,
            };
            log::debug!(
                group_id = group.get(),
                user_id = bound.get(),
                refused:? = refused;
                "\"I've joined\" re-check refused"
            );
            answer(&telegram, cq, text, false).await;
            return Ok(());
        }
    }
    let verdict = match app.engine().recheck(group, bound).await {
        Ok(v) => v,
        Err(err) => {
            answer(&telegram, cq, TRY_AGAIN, false).await;
            return Err(err.into());
        }
    };
    log::info!(
        group_id = group.get(),
        user_id = bound.get(),
        decision = verdict.decision.as_str();
        "\"I've joined\" re-check"
    );
    // Channels Telegram said are not joined (a fail-closed group also lists the unknown ones).
    let not_joined: Vec<String> = verdict
        .missing()
        .iter()
        .filter(|c| {
            !verdict
                .unverifiable
                .iter()
                .any(|u| Arc::ptr_eq(&u.channel, c))
        })
        .map(|c| channel_label(c))
        .collect();
    if !not_joined.is_empty() {
        let text = format!("You still need to join: {}.", not_joined.join(", "));
        answer(&telegram, cq, &text, true).await;
        return Ok(());
    }
    if !verdict.actions.contains(&Action::Unrestrict) {
        // Unknown is never a reason to unmute (the engine implies no lift).
        answer(&telegram, cq, UNVERIFIED, false).await;
        return Ok(());
    }
    // Through the outbox, so a mute of this member still queued there is cancelled rather
    // than applied after the unmute; the presser waits for it (interactive lane).
    let outcome = app
        .outbox()
        .lift(group, bound, LiftReason::Joined, Lane::Interactive)
        .await
        .unwrap_or(Unmuted::Failed);
    if outcome == Unmuted::Failed {
        answer(&telegram, cq, TRY_AGAIN, false).await;
        return Ok(());
    }
    if outcome == Unmuted::NotRestricted && !free_without_row(&telegram, group, bound).await {
        answer(&telegram, cq, TRY_AGAIN, false).await;
        return Ok(());
    }
    // `unmute_member` deleted the member's tracked warnings, this one included.
    // Untracked messages (a warning posted before a restart, or spoofed data
    // naming any message) are never deleted.
    answer(&telegram, cq, WELCOME, false).await;
    Ok(())
}
