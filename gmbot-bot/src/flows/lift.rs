//! Lifting restrictions: every restriction the bot placed in a group (`/unprotect`), or one member's.
//!
//! Telegram first, then the store: a restriction is marked lifted only once
//! Telegram confirmed the unmute, so a failed call leaves the row active for
//! the reconciliation pass to retry.

use gmbot_core::dispatch::Lane;
use gmbot_core::domain::{GroupId, LiftReason, Restriction, RestrictionKind, UserId};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::{TelegramApi, TelegramError};

use crate::app::App;

/// What [`lift_group`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiftSummary {
    /// Restrictions lifted in Telegram and in the store.
    pub lifted: u32,
    /// Restrictions whose unmute failed in Telegram; still active in the store.
    pub failed: u32,
}

/// Lifts every active (pending or confirmed) restriction the bot placed in
/// `group`: unrestricts each member in Telegram (restoring the group's default
/// permissions), then marks the row lifted with `reason`. A failed unrestrict
/// is counted in [`LiftSummary::failed`] and logged; its row stays active so
/// that reconciliation retries it.
///
/// Fails only if the store cannot list or update the restrictions.
pub async fn lift_group(
    app: &App,
    group: GroupId,
    reason: LiftReason,
) -> Result<LiftSummary, StoreError> {
    let rows = app.store().active_restrictions(group).await?;
    let mut summary = LiftSummary::default();
    // Through the outbox: a member's mute still queued there is cancelled instead of being
    // applied after the lift.
    let mut users: Vec<UserId> = rows.iter().map(|r| r.user).collect();
    users.sort_unstable();
    users.dedup();
    let waiting: Vec<_> = users
        .into_iter()
        .map(|u| app.outbox().lift(group, u, reason, Lane::Enforcement))
        .collect();
    for done in waiting {
        match done.await {
            Ok(Unmuted::Lifted | Unmuted::NotRestricted) => summary.lifted += 1,
            Ok(Unmuted::Failed) | Err(_) => summary.failed += 1,
        }
    }
    log::info!(
        group_id = group.get(),
        lifted = summary.lifted,
        failed = summary.failed,
        reason = reason.as_str();
        "restrictions lifted"
    );
    Ok(summary)
}

/// What [`unmute_member`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmuted {
    /// The member had no active restriction in the group.
    NotRestricted,
    /// Lifted in Telegram and in the store.
    Lifted,
    /// Telegram refused; the restriction stays active for reconciliation.
    Failed,
}

/// Lifts `user`'s restriction in `group` (unrestrict through `telegram`, then
/// the store) and deletes the warnings still shown to them. Used when a member
/// is found subscribed: the "I've joined" button, a channel join, reconciliation.
pub async fn unmute_member(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    user: UserId,
    reason: LiftReason,
) -> Result<Unmuted, StoreError> {
    let outcome = match app.store().active_restriction(group, user).await? {
        None => Unmuted::NotRestricted,
        Some(row) => {
            if lift_one(app, telegram, &row, reason).await? {
                // Any other active row of the member (there should be none) goes too.
                app.store()
                    .lift_member(group, user, reason, app.clock().unix_now())
                    .await?;
                log::info!(
                    group_id = group.get(),
                    user_id = user.get(),
                    reason = reason.as_str();
                    "member unmuted"
                );
                Unmuted::Lifted
            } else {
                Unmuted::Failed
            }
        }
    };
    if outcome != Unmuted::Failed {
        delete_warnings(app, telegram, group, user).await;
        app.flows().forget_warning(group, user).await;
    }
    Ok(outcome)
}

/// Deletes the warnings still shown to `user` in `group` and cancels their timers.
pub(crate) async fn delete_warnings(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    user: UserId,
) {
    for message in app.flows().timers().take_member(group, user) {
        if let Err(err) = message.delete(telegram, group).await {
            log::debug!(group_id = group.get(), error:display = err; "cannot delete a warning");
        }
        if let super::warn::WarningMessage::Public(id) = message {
            app.outbox().warning_deleted(app, group, id).await;
        }
    }
    // Another instance's personal warning for them (its timer is there).
    app.outbox().member_lifted(app, group, user).await;
}

/// Lifts one restriction through `telegram` (a lane of the dispatcher, or its
/// default lanes): unrestrict, then mark it lifted. Returns `false` when
/// Telegram refused (the row stays active).
pub(crate) async fn lift_one(
    app: &App,
    telegram: &dyn TelegramApi,
    row: &Restriction,
    reason: LiftReason,
) -> Result<bool, StoreError> {
    if let Err(err) = unrestrict(app, telegram, row).await {
        app.metrics()
            .actions
            .with_label_values(&["unrestrict", "failed"])
            .inc();
        app.metrics()
            .errors
            .with_label_values(&["unrestrict"])
            .inc();
        log::warn!(
            group_id = row.group.get(),
            user_id = row.user.get(),
            restriction_id = row.id.0,
            error:display = err;
            "cannot lift a restriction in Telegram; reconciliation will retry"
        );
        return Ok(false);
    }
    app.metrics()
        .actions
        .with_label_values(&["unrestrict", "ok"])
        .inc();
    app.store()
        .lift_restriction(row.group, row.id, reason, app.clock().unix_now())
        .await?;
    Ok(true)
}

/// The Telegram side of lifting one restriction.
async fn unrestrict(
    _app: &App,
    telegram: &dyn TelegramApi,
    row: &Restriction,
) -> Result<(), TelegramError> {
    match row.kind {
        // A kick is a ban immediately followed by an unban: nothing lasts in Telegram.
        RestrictionKind::Kick => Ok(()),
        RestrictionKind::Mute => match telegram.unrestrict_member(row.group, row.user).await {
            // The user no longer exists / is unknown to the group: nothing left to lift.
            Err(TelegramError::UserNotFound(_)) => Ok(()),
            other => other,
        },
    }
}
