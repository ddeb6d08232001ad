//! Performing a verdict: delete, restrict (recorded before the call, confirmed after), kick, warn.
//!
//! The engine decides and lists [`Action`]s; [`perform`] records what must survive a crash
//! and hands the rest to the [`Outbox`](crate::outbox::Outbox), so the handler returns
//! without waiting for any send budget. A restriction is written to the store as `pending`
//! before it is queued and confirmed after `restrictChatMember` succeeded, so a crash in
//! between leaves a row for reconciliation; a refused call marks the row lifted with
//! [`LiftReason::NotApplied`]. [`restrict`] is the same mute made in place, for
//! reconciliation, which runs in the background in the bulk lane.

use std::time::Duration;

use gmbot_core::domain::{
    ChatMemberStatus, EnforcedChannel, GroupId, LiftReason, NewRestriction, RestrictionKind,
    RestrictionState, UnixTime, UserId,
};
use gmbot_core::engine::{Action, Verdict};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::TelegramApi;

use crate::app::App;
use crate::outbox::{ModJob, ModKind, WarnRequest};
use crate::update::User;

use super::warn::channel_label;
use super::{notice, sender_chat};

/// Counts one enforcement action in `gmbot_enforcement_actions_total{action,outcome}`.
pub(crate) fn count(app: &App, action: &str, ok: bool) {
    app.metrics()
        .actions
        .with_label_values(&[action, if ok { "ok" } else { "failed" }])
        .inc();
}

/// Records and queues every action of `verdict` against `member` in `group`, and tells the
/// admins (in the background) about channels that could not be checked. Returns as soon as
/// the actions are in the outbox; the caller holds the member's lock
/// ([`FlowState::member_lock`](super::FlowState::member_lock)).
pub async fn perform(
    app: &App,
    group: GroupId,
    member: &User,
    verdict: &Verdict,
) -> Result<(), StoreError> {
    let missing = verdict.missing();
    let outbox = app.outbox();
    let mut joined_button = true;
    if !verdict.decision.is_allowed()
        && !matches!(
            verdict.decision,
            gmbot_core::engine::Decision::NotEnforced(_)
        )
    {
        let now_ms = app.clock().now_millis();
        if app.flows().raids().denied(group, now_ms) == super::raid::RaidEvent::Started {
            raid_started(app, group);
        }
    }
    for action in &verdict.actions {
        match *action {
            Action::DeleteMessage(message) => {
                outbox.delete(app, group, message);
            }
            Action::Restrict { until } => {
                match record_mute(app, group, member.id, until, missing).await? {
                    MuteRecord::Queue(job) => {
                        outbox.moderate(app, group, job);
                    }
                    MuteRecord::AlreadyMuted => {}
                    // No mute of ours: no "I've joined" button that would lift the admin's one.
                    MuteRecord::KeptAdminRestriction => joined_button = false,
                }
            }
            Action::Kick => {
                let row = app
                    .store()
                    .record_restriction(
                        &NewRestriction {
                            group,
                            user: member.id,
                            kind: RestrictionKind::Kick,
                            until: None,
                            reason: reason_text(missing),
                        },
                        app.clock().unix_now(),
                    )
                    .await?;
                outbox.moderate(
                    app,
                    group,
                    ModJob {
                        user: member.id,
                        row: row.id,
                        kind: ModKind::Kick,
                        attempt: 0,
                    },
                );
            }
            Action::Warn {
                delete_after_seconds,
                cooldown_seconds,
                private,
            } => {
                let cooldown = Duration::from_secs(cooldown_seconds.into());
                let now_ms = app.clock().now_millis();
                if app
                    .flows()
                    .claim_warning(group, member.id, cooldown, now_ms)
                    .await
                {
                    outbox.warn(
                        group,
                        WarnRequest {
                            member: member.clone(),
                            missing: missing.to_vec(),
                            delete_after: Duration::from_secs(delete_after_seconds.into()),
                            cooldown,
                            joined_button,
                            private,
                        },
                    );
                } else {
                    log::debug!(group_id = group.get(), user_id = member.id.get(); "warning skipped: cool-down");
                }
            }
            // Only a recheck implies it; the callers of `recheck` lift themselves.
            Action::Unrestrict => {}
            // Sent in the background so the handler never waits for a budget; at most one
            // per channel post, and the warning has its own per-group cool-down.
            Action::BanSenderChat(chat) => {
                let app = app.clone();
                tokio::spawn(async move { sender_chat::ban(&app, group, chat).await });
            }
            Action::WarnSenderChat {
                delete_after_seconds,
                cooldown_seconds,
            } => {
                let (app, missing) = (app.clone(), missing.to_vec());
                tokio::spawn(async move {
                    sender_chat::warn(
                        &app,
                        group,
                        &missing,
                        Duration::from_secs(delete_after_seconds.into()),
                        Duration::from_secs(cooldown_seconds.into()),
                    )
                    .await;
                });
            }
        }
    }
    app.metrics()
        .outbox_queued
        .set(i64::try_from(outbox.depth().queued).unwrap_or(i64::MAX));
    // A channel stored by username only (`gmbot protect` without a token): look it up.
    if verdict.unverifiable.iter().any(|u| u.channel.id.is_none()) {
        super::resolve::resolve_group_soon(app, group);
    }
    if !verdict.unverifiable.is_empty() {
        // Rare (once per channel per notice interval) and posted with the group's message
        // budget: in the background, so the handler does not wait for it.
        let (app, unverifiable) = (app.clone(), verdict.unverifiable.clone());
        tokio::spawn(async move {
            let policy = match app.engine().group_config(group).await {
                Ok(Some(c)) => c.settings().failure_policy,
                _ => Default::default(),
            };
            notice::unverifiable_channels(&app, group, &unverifiable, policy).await;
        });
    }
    Ok(())
}

/// A raid just started in `group`: one log line, and the owner is told once.
fn raid_started(app: &App, group: GroupId) {
    let config = app.flows().raids().config();
    log::warn!(
        group_id = group.get(),
        denials = config.denials,
        window_s = config.window.as_secs();
        "raid detected: many non-subscribers denied in a short time"
    );
    let app = app.clone();
    tokio::spawn(async move {
        let owner = match app.store().group(group).await {
            Ok(Some(g)) => g.owner,
            _ => None,
        };
        if app.flows().claim_notice(group, "raid".to_owned()).await {
            let html = format!(
                "🚨 A raid is going on in your group <code>{}</code>: at least {} non-subscribers wrote within {} s. \
                 I am deleting their messages in bulk and muting them; the warnings are collected into one message. \
                 /status in the group shows the numbers.",
                group.get(),
                config.denials,
                config.window.as_secs()
            );
            notice::tell_owner(&app, owner, html).await;
        }
    });
}

/// Releases to the other instances the pending mute rows of `members` whose calls this
/// instance's outbox does not hold: their updates were abandoned mid-way by a stop (several
/// instances only; see `Shared::release_pending`).
pub(crate) async fn release_unqueued(app: &App, members: &[(GroupId, UserId)]) {
    let Some(shared) = app.flows().shared() else {
        return;
    };
    let mut rows = Vec::new();
    for &(group, user) in members {
        if app.outbox().has_work_for(group, user) {
            continue;
        }
        match app.store().active_restriction(group, user).await {
            Ok(Some(r)) if r.state == RestrictionState::Pending => rows.push(r.id),
            Ok(_) => {}
            Err(err) => {
                log::warn!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot read an abandoned update's restriction; another instance takes it up after the pending grace");
            }
        }
    }
    if !rows.is_empty() {
        log::info!(rows = rows.len(); "pending mutes of abandoned updates released to the other instances");
        shared.release_pending(&rows).await;
    }
}

/// What [`record_mute`] found.
enum MuteRecord {
    /// The row is recorded; this job applies it.
    Queue(ModJob),
    /// Muted already (or the mute is on its way): nothing to queue.
    AlreadyMuted,
    /// An admin restricted the member already: their restriction is left as it is.
    KeptAdminRestriction,
}

/// `user`'s open mute row in `group`, if it still runs; a row past its end (Telegram lifted
/// a timed mute by itself) or a kick's row is closed as expired.
async fn open_mute(
    app: &App,
    group: GroupId,
    user: UserId,
    now: UnixTime,
) -> Result<Option<gmbot_core::domain::Restriction>, StoreError> {
    let store = app.store();
    Ok(match store.active_restriction(group, user).await? {
        Some(r) if r.kind == RestrictionKind::Mute && r.until.is_none_or(|u| u > now) => Some(r),
        Some(r) => {
            store
                .lift_restriction(group, r.id, LiftReason::Expired, now)
                .await?;
            None
        }
        None => None,
    })
}

/// Records (or reuses) `user`'s mute row and returns the job that applies it.
async fn record_mute(
    app: &App,
    group: GroupId,
    user: UserId,
    until: Option<UnixTime>,
    missing: &[std::sync::Arc<EnforcedChannel>],
) -> Result<MuteRecord, StoreError> {
    let now = app.clock().unix_now();
    let existing = open_mute(app, group, user, now).await?;
    let row = match existing {
        // Muted already and confirmed: a message got through before the mute landed; the
        // message is deleted, no second call is needed.
        Some(r) if r.state == RestrictionState::Active => return Ok(MuteRecord::AlreadyMuted),
        // Pending: its call is queued or in flight (the outbox knows), or it died with a
        // previous process; queue it again unless the outbox has it. With several instances
        // a young pending row may be another instance's, whose call is on its way: queueing
        // it here would mute twice — unless that instance released it (it stopped or shed
        // the call); reconciliation takes it up once its grace ends if that instance died.
        Some(_) if app.outbox().has_work_for(group, user) => return Ok(MuteRecord::AlreadyMuted),
        Some(r)
            if app.flows().shared().is_some()
                && !super::reconcile::pending_call_lost(app, &r, now).await =>
        {
            return Ok(MuteRecord::AlreadyMuted)
        }
        Some(r) => r,
        None => match new_mute_row(app, &**app.telegram(), group, user, until, missing, now).await?
        {
            // Someone recorded it meanwhile (both found no row, then both recorded): muted
            // already, or — with several instances — its call is on another one's way.
            Some((r, false))
                if r.state == RestrictionState::Active || app.flows().shared().is_some() =>
            {
                return Ok(MuteRecord::AlreadyMuted)
            }
            Some((r, _)) => r,
            None => return Ok(MuteRecord::KeptAdminRestriction),
        },
    };
    Ok(MuteRecord::Queue(ModJob {
        user,
        row: row.id,
        kind: ModKind::Mute {
            until: row.until,
            pending: row.state == RestrictionState::Pending,
        },
        attempt: 0,
    }))
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
    let now = app.clock().unix_now();
    let existing = open_mute(app, group, user, now).await?;
    let row = match existing {
        Some(r) => r,
        None => match new_mute_row(app, telegram, group, user, until, missing, now).await? {
            Some((r, _)) => r,
            None => return Ok(Muted::KeptAdminRestriction),
        },
    };
    let pending = row.state == RestrictionState::Pending;
    Ok(
        match apply_mute(app, telegram, group, user, row.id, row.until, pending).await? {
            MuteCall::Applied => Muted::Yes,
            MuteCall::NotApplied | MuteCall::Transient => Muted::Failed,
        },
    )
}

/// Read-ahead for a member about to be denied, while their update waits behind others of a
/// busy group: reads their status in the group now (the read a new mute makes to leave an
/// admin's restriction alone), so the mute does not wait for it in turn. Kept
/// for 30 s at most.
pub(crate) async fn read_status_ahead(app: &App, group: GroupId, user: UserId) {
    let cache = app.flows().read_ahead_status();
    if cache.contains_key(&(group, user)) {
        return;
    }
    // The same call, in the same lane, as the read it stands in for (`new_mute_row`).
    if let Ok(status) = app.telegram().get_chat_member(group.into(), user).await {
        cache.insert((group, user), status).await;
    }
}

/// Records a new mute row for `user`, unless an admin restricted them already (then `None`:
/// their restriction is left as it is). One read per new mute (reads never wait for the
/// message budget); an error reading is no reason to skip the mute.
async fn new_mute_row(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    user: UserId,
    until: Option<UnixTime>,
    missing: &[std::sync::Arc<EnforcedChannel>],
    now: UnixTime,
) -> Result<Option<(gmbot_core::domain::Restriction, bool)>, StoreError> {
    let ahead = app.flows().read_ahead_status().remove(&(group, user)).await;
    let status = match ahead {
        Some(status) => Ok(status),
        None => telegram.get_chat_member(group.into(), user).await,
    };
    if let Ok(ChatMemberStatus::Restricted { .. }) = status {
        log::info!(
            group_id = group.get(),
            user_id = user.get();
            "member already restricted by an admin: not muted"
        );
        return Ok(None);
    }
    let placed = app
        .store()
        .place_restriction(
            &NewRestriction {
                group,
                user,
                kind: RestrictionKind::Mute,
                until,
                reason: reason_text(missing),
            },
            now,
        )
        .await?;
    Ok(Some(placed))
}

/// Whether `row` is still `user`'s open restriction in `group`.
pub(crate) async fn still_open(
    app: &App,
    group: GroupId,
    user: UserId,
    row: gmbot_core::domain::RestrictionId,
) -> Result<bool, StoreError> {
    Ok(app
        .store()
        .active_restriction(group, user)
        .await?
        .is_some_and(|r| r.id == row))
}

/// What [`apply_mute`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MuteCall {
    /// The member is muted in Telegram now.
    Applied,
    /// Not applied, for good: Telegram refused it, or the row was closed (the member joined).
    NotApplied,
    /// A 429, 5xx or network failure outlasted the dispatcher's retries: the row stays
    /// pending, and the call is worth making again later.
    Transient,
}

/// `restrictChatMember` for a recorded mute, then its row: confirmed when Telegram agreed
/// (if still `pending`), closed as [`LiftReason::NotApplied`] when it refused, left pending
/// when the failure was transient ([`MuteCall::Transient`]). Shared by the outbox and
/// [`restrict`].
///
/// A pending row closed before its call (the member joined the channel and another path,
/// perhaps on another instance, lifted it) is not applied; one closed while the call was on
/// its way (it waits for the budget) is undone at once, so a member who subscribed is never
/// left muted by a mute that lost the race.
pub(crate) async fn apply_mute(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    user: UserId,
    row: gmbot_core::domain::RestrictionId,
    until: Option<UnixTime>,
    pending: bool,
) -> Result<MuteCall, StoreError> {
    let store = app.store();
    if pending && !still_open(app, group, user, row).await? {
        log::info!(group_id = group.get(), user_id = user.get(); "mute not applied: its row was closed meanwhile (the member joined)");
        return Ok(MuteCall::NotApplied);
    }
    match telegram.restrict_member(group, user, until).await {
        Ok(()) => {
            count(app, "restrict", true);
            if pending
                && !store.confirm_restriction(group, row).await?
                && !still_open(app, group, user, row).await?
            {
                let undone = telegram.unrestrict_member(group, user).await;
                count(app, "unrestrict", undone.is_ok());
                log::info!(
                    group_id = group.get(),
                    user_id = user.get(),
                    undone = undone.is_ok();
                    "mute undone: its row was closed while the call was on its way (the member joined)"
                );
                return Ok(MuteCall::NotApplied);
            }
            log::info!(group_id = group.get(), user_id = user.get(); "member muted");
            Ok(MuteCall::Applied)
        }
        Err(err) => {
            // A 429 or a 5xx that outlasted the dispatcher's retries says nothing about the
            // mute itself: the row stays pending; the outbox tries again later, and
            // reconciliation asks afresh and mutes (or lifts, if the member subscribed
            // meanwhile) once it gave up. Only a refusal closes it.
            let transient = err.is_temporary();
            count(app, "restrict", false);
            app.metrics().errors.with_label_values(&["restrict"]).inc();
            log::warn!(
                group_id = group.get(),
                user_id = user.get(),
                error:display = err,
                kept_pending = transient && pending;
                "cannot mute a member"
            );
            if transient {
                return Ok(MuteCall::Transient);
            }
            if pending {
                store
                    .lift_restriction(group, row, LiftReason::NotApplied, app.clock().unix_now())
                    .await?;
            }
            Ok(MuteCall::NotApplied)
        }
    }
}
