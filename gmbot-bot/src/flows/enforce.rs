//! Performing a verdict: delete, restrict (recorded before the call, confirmed after), kick, warn.
//!
//! The engine decides and lists [`Action`]s; this module carries them out
//! through the dispatcher. A restriction is written to the store as `pending`
//! before `restrictChatMember` and confirmed after it, so a crash in between
//! leaves a row for reconciliation; a refused call marks the row lifted with
//! [`LiftReason::NotApplied`].

use std::time::Duration;

use gmbot_core::domain::{
    ChatMemberStatus, EnforcedChannel, GroupId, LiftReason, NewRestriction, RestrictionKind,
    RestrictionState, UnixTime, UserId,
};
use gmbot_core::engine::{Action, Verdict};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::{InlineButton, TelegramApi};

use crate::app::App;
use crate::update::User;

use super::warn::{channel_label, warning_message};
use super::{notice, sender_chat};

/// Counts one enforcement action in `gmbot_enforcement_actions_total{action,outcome}`.
pub(crate) fn count(app: &App, action: &str, ok: bool) {
    app.metrics()
        .actions
        .with_label_values(&[action, if ok { "ok" } else { "failed" }])
        .inc();
}

/// Carries out every action of `verdict` against `member` in `group`, and
/// tells the admins about channels that could not be checked.
pub async fn perform(
    app: &App,
    group: GroupId,
    member: &User,
    verdict: &Verdict,
) -> Result<(), StoreError> {
    let missing = verdict.missing();
    let mut joined_button = true;
    for action in &verdict.actions {
        match *action {
            Action::DeleteMessage(message) => {
                let result = app.telegram().delete_message(group.into(), message).await;
                count(app, "delete", result.is_ok());
                if let Err(err) = result {
                    log::info!(
                        group_id = group.get(),
                        user_id = member.id.get(),
                        error:display = err;
                        "cannot delete a message"
                    );
                }
            }
            Action::Restrict { until } => {
                let muted =
                    restrict(app, &**app.telegram(), group, member.id, until, missing).await?;
                // No mute of ours: no "I've joined" button that would lift the admin's one.
                joined_button &= muted != Muted::KeptAdminRestriction;
            }
            Action::Kick => kick(app, group, member, missing).await?,
            Action::Warn {
                delete_after_seconds,
                cooldown_seconds,
            } => {
                warn(
                    app,
                    group,
                    member,
                    missing,
                    Duration::from_secs(delete_after_seconds.into()),
                    Duration::from_secs(cooldown_seconds.into()),
                    joined_button,
                )
                .await;
            }
            // Only a recheck implies it; the callers of `recheck` lift themselves.
            Action::Unrestrict => {}
            Action::BanSenderChat(chat) => sender_chat::ban(app, group, chat).await,
            Action::WarnSenderChat {
                delete_after_seconds,
                cooldown_seconds,
            } => {
                sender_chat::warn(
                    app,
                    group,
                    missing,
                    Duration::from_secs(delete_after_seconds.into()),
                    Duration::from_secs(cooldown_seconds.into()),
                )
                .await;
            }
        }
    }
    if !verdict.unverifiable.is_empty() {
        let policy = match app.engine().group_config(group).await {
            Ok(Some(c)) => c.settings().failure_policy,
            _ => Default::default(),
        };
        notice::unverifiable_channels(app, group, &verdict.unverifiable, policy).await;
    }
    Ok(())
}

/// Why the member is restricted, for operators (`restrictions.reason`).
fn reason_text(missing: &[std::sync::Arc<EnforcedChannel>]) -> String {
    let names: Vec<String> = missing.iter().map(|c| channel_label(c)).collect();
    if names.is_empty() {
        "not subscribed".to_owned()
    } else {
        format!("not subscribed to {}", names.join(", "))
    }
}

/// What [`restrict`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Muted {
    /// Muted in Telegram now (and recorded).
    Yes,
    /// Telegram refused; nothing stays recorded as active.
    Failed,
    /// Left alone: an admin had already restricted the member (status
    /// `restricted` and no row of ours). Muting would replace the admin's
    /// restriction, and lifting ours later would restore the group's defaults
    /// over it, so the admin's restriction is kept as it is.
    KeptAdminRestriction,
}

/// Mutes `user` in `group` until `until`, recording it first.
///
/// A member who already has an active restriction keeps that row (re-applied
/// in Telegram, confirmed if it was pending); one past its end is lifted as
/// expired and replaced.
pub async fn restrict(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    user: UserId,
    until: Option<UnixTime>,
    missing: &[std::sync::Arc<EnforcedChannel>],
) -> Result<Muted, StoreError> {
    let store = app.store();
    let now = app.clock().unix_now();
    let existing = match store.active_restriction(group, user).await? {
        Some(r) if r.kind == RestrictionKind::Mute && r.until.is_none_or(|u| u > now) => Some(r),
        Some(r) => {
            // Telegram lifted a timed mute by itself (or it was a kick): close the old row.
            store
                .lift_restriction(group, r.id, LiftReason::Expired, now)
                .await?;
            None
        }
        None => None,
    };
    let row = match existing {
        Some(r) => r,
        None => {
            // One read per new mute. An error is no reason to skip the mute.
            if let Ok(ChatMemberStatus::Restricted { .. }) =
                telegram.get_chat_member(group.into(), user).await
            {
                log::info!(
                    group_id = group.get(),
                    user_id = user.get();
                    "member already restricted by an admin: not muted"
                );
                return Ok(Muted::KeptAdminRestriction);
            }
            store
                .record_restriction(
                    &NewRestriction {
                        group,
                        user,
                        kind: RestrictionKind::Mute,
                        until,
                        reason: reason_text(missing),
                    },
                    now,
                )
                .await?
        }
    };
    match telegram.restrict_member(group, user, row.until).await {
        Ok(()) => {
            count(app, "restrict", true);
            if row.state == RestrictionState::Pending {
                store.confirm_restriction(group, row.id).await?;
            }
            log::info!(group_id = group.get(), user_id = user.get(); "member muted");
            Ok(Muted::Yes)
        }
        Err(err) => {
            count(app, "restrict", false);
            app.metrics().errors.with_label_values(&["restrict"]).inc();
            log::warn!(
                group_id = group.get(),
                user_id = user.get(),
                error:display = err;
                "cannot mute a member"
            );
            if row.state == RestrictionState::Pending {
                store
                    .lift_restriction(
                        group,
                        row.id,
                        LiftReason::NotApplied,
                        app.clock().unix_now(),
                    )
                    .await?;
            }
            Ok(Muted::Failed)
        }
    }
}

/// Removes `member` from `group` (ban + unban), with a row that records it:
/// pending before the call, then closed, since a kick lasts no time.
async fn kick(
    app: &App,
    group: GroupId,
    member: &User,
    missing: &[std::sync::Arc<EnforcedChannel>],
) -> Result<(), StoreError> {
    let store = app.store();
    let now = app.clock().unix_now();
    let row = store
        .record_restriction(
            &NewRestriction {
                group,
                user: member.id,
                kind: RestrictionKind::Kick,
                until: None,
                reason: reason_text(missing),
            },
            now,
        )
        .await?;
    let result = app.telegram().kick_member(group, member.id).await;
    count(app, "kick", result.is_ok());
    match result {
        Ok(()) => {
            store.confirm_restriction(group, row.id).await?;
            store
                .lift_restriction(group, row.id, LiftReason::Expired, app.clock().unix_now())
                .await?;
            log::info!(group_id = group.get(), user_id = member.id.get(); "member removed");
        }
        Err(err) => {
            app.metrics().errors.with_label_values(&["kick"]).inc();
            log::warn!(
                group_id = group.get(),
                user_id = member.id.get(),
                error:display = err;
                "cannot remove a member"
            );
            store
                .lift_restriction(
                    group,
                    row.id,
                    LiftReason::NotApplied,
                    app.clock().unix_now(),
                )
                .await?;
        }
    }
    Ok(())
}

/// Posts a warning for `member` unless one went out within `cooldown`, and
/// schedules its deletion after `delete_after`.
pub async fn warn(
    app: &App,
    group: GroupId,
    member: &User,
    missing: &[std::sync::Arc<EnforcedChannel>],
    delete_after: Duration,
    cooldown: Duration,
    joined_button: bool,
) {
    let flows = app.flows();
    let now_ms = app.clock().now_millis();
    if !flows
        .cooldowns()
        .try_claim(group, member.id, cooldown, now_ms)
        .await
    {
        log::debug!(group_id = group.get(), user_id = member.id.get(); "warning skipped: cool-down");
        return;
    }
    let (mut msg, unlinked) = warning_message(member, missing);
    if !joined_button {
        msg.buttons.retain(|row| {
            !row.iter()
                .any(|b| matches!(b, InlineButton::Callback { .. }))
        });
        msg.html = msg.html.replace(", then press “I've joined”.", ".");
    }
    let result = app.telegram().send_message(group.into(), &msg).await;
    count(app, "warn", result.is_ok());
    match result {
        Ok(message) => flows
            .timers()
            .schedule(group, member.id, message, delete_after),
        Err(err) => log::warn!(
            group_id = group.get(),
            user_id = member.id.get(),
            error:display = err;
            "cannot post a warning"
        ),
    }
    for channel in unlinked {
        notice::missing_invite_link(app, group, channel).await;
    }
}
