//! Reconciliation: nobody stays muted who should not be, whatever crashed or was missed.
//!
//! At start and every few minutes, in the dispatcher's bulk lane, every
//! active (pending or confirmed) restriction is looked at:
//!
//! - its group is no longer protected (unknown, unprotected, no channel) →
//!   unrestrict and lift (`unprotected`);
//! - its end passed → lift (`expired`; Telegram already lifted it itself);
//! - it is pending and its call is still queued in this process's outbox, or it was placed
//!   by this process less than a minute ago → left alone (the call is on its way); a pending
//!   row from before this process started is handled at once (its call died with the old
//!   process, e.g. a stop in the middle of a raid);
//! - otherwise the member's channels are asked afresh (bypassing the cache):
//!   subscribed → unrestrict and lift (`joined`); not subscribed and still
//!   pending (a crash between record and call, or the call never confirmed)
//!   → restrict again and confirm; unknown → left as it is.
//!
//! Groups that are paused keep their restrictions: the bot lacks the rights
//! to lift them, and they apply again once the protection resumes.
//!
//! With several instances, one pass runs at a time, on the instance holding the
//! `reconciler` lease (see [`periodic`](super::periodic)); the pass checks the lease's
//! fence before each page and each row, and stops at once when it falls.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use gmbot_core::cache::MembershipKey;
use gmbot_core::coordination::Fence;
use gmbot_core::dispatch::{Lane, LaneApi};
use gmbot_core::domain::{
    GroupId, GroupState, LiftReason, ProtectedGroup, Restriction, RestrictionId, RestrictionKind,
    RestrictionState,
};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::TelegramApi;

use crate::app::App;

use super::enforce;
use super::lift::{lift_one, unmute_member, Unmuted};

/// Rows read per store call.
const PAGE: u32 = 200;

/// A pending row younger than this may still be waiting for its Telegram call.
pub(crate) const PENDING_GRACE_SECS: i64 = 60;

/// Whether nobody will make a pending row's Telegram call unless it is queued again.
///
/// Not while this process's outbox has work for the member. Otherwise a row placed before
/// this process started lost its call with the previous process — on one instance. With
/// several instances sharing Redis, another live instance may have placed it and hold its
/// call, so a row counts as lost there only once it is older than [`PENDING_GRACE_SECS`]
/// or when the instance that placed it released it (it stopped, or shed the call) and this
/// caller is the one instance to take it over; on one instance the age also covers a call
/// whose retries ran out.
pub(crate) async fn pending_call_lost(
    app: &App,
    row: &Restriction,
    now: gmbot_core::domain::UnixTime,
) -> bool {
    if app.outbox().has_work_for(row.group, row.user) {
        return false;
    }
    let old = now.secs() - row.placed_at.secs() >= PENDING_GRACE_SECS;
    match app.flows().shared() {
        Some(shared) => old || shared.take_released(row.id).await,
        None => old || row.placed_at < app.started_at(),
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Active restrictions looked at.
    pub checked: u64,
    /// Lifted because the member is subscribed now.
    pub lifted_joined: u64,
    /// Lifted because the group is no longer protected.
    pub lifted_unprotected: u64,
    /// Closed because their end passed.
    pub lifted_expired: u64,
    /// Pending rows whose restriction was applied again and confirmed.
    pub reapplied: u64,
    /// Still deserved (or undecidable): left active.
    pub kept: u64,
    /// Telegram refused a lift or a re-apply; retried next pass.
    pub failed: u64,
    /// The pass stopped early because the store failed.
    pub aborted: bool,
    /// The pass stopped early because this instance no longer holds the lease.
    pub lease_lost: bool,
}

impl ReconcileReport {
    /// Every lift of the pass.
    pub fn lifted(&self) -> u64 {
        self.lifted_joined + self.lifted_unprotected + self.lifted_expired
    }
}

enum Outcome {
    Lifted(LiftReason),
    Reapplied,
    Kept,
    Failed,
}

/// Runs one reconciliation pass over every active restriction and returns what it did.
pub async fn reconcile_once(app: &App) -> ReconcileReport {
    reconcile_fenced(app, &Fence::unfenced()).await
}

/// [`reconcile_once`] under a lease: stops before the next page or row once `fence` falls.
pub async fn reconcile_fenced(app: &App, fence: &Fence) -> ReconcileReport {
    let started = Instant::now();
    let telegram = app.telegram_in(Lane::Bulk);
    let metrics = app.metrics();
    let mut report = ReconcileReport::default();
    let mut groups: HashMap<GroupId, Option<ProtectedGroup>> = HashMap::new();
    let mut after: Option<RestrictionId> = None;
    loop {
        if fence.check().is_err() {
            report.lease_lost = true;
            break;
        }
        let page = match app.store().active_restrictions_page(after, PAGE).await {
            Ok(p) => p,
            Err(err) => {
                abort(app, &mut report, &err);
                break;
            }
        };
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let mut left = page.len();
        metrics.reconciliation_backlog.set(left as i64);
        for row in &page {
            if fence.check().is_err() {
                report.lease_lost = true;
                break;
            }
            report.checked += 1;
            let outcome = match check(app, &telegram, &mut groups, row).await {
                Ok(o) => o,
                Err(err) => {
                    abort(app, &mut report, &err);
                    break;
                }
            };
            match outcome {
                Outcome::Lifted(reason) => {
                    metrics
                        .reconciliation_lifts
                        .with_label_values(&[reason.as_str()])
                        .inc();
                    match reason {
                        LiftReason::Joined => report.lifted_joined += 1,
                        LiftReason::Expired => report.lifted_expired += 1,
                        _ => report.lifted_unprotected += 1,
                    }
                }
                Outcome::Reapplied => report.reapplied += 1,
                Outcome::Kept => report.kept += 1,
                Outcome::Failed => report.failed += 1,
            }
            left -= 1;
            metrics.reconciliation_backlog.set(left as i64);
        }
        if report.aborted || report.lease_lost || page.len() < PAGE as usize {
            break;
        }
    }
    metrics.reconciliation_backlog.set(0);
    if !report.aborted && !report.lease_lost {
        let active = report.checked - report.lifted();
        metrics
            .active_restrictions
            .set(i64::try_from(active).unwrap_or(i64::MAX));
    }
    log::info!(
        checked = report.checked,
        lifted_joined = report.lifted_joined,
        lifted_unprotected = report.lifted_unprotected,
        lifted_expired = report.lifted_expired,
        reapplied = report.reapplied,
        kept = report.kept,
        failed = report.failed,
        aborted = report.aborted,
        lease_lost = report.lease_lost,
        generation = fence.generation().unwrap_or(0),
        latency_ms = started.elapsed().as_millis() as u64;
        "reconciliation pass done"
    );
    report
}

fn abort(app: &App, report: &mut ReconcileReport, err: &StoreError) {
    report.aborted = true;
    app.metrics().errors.with_label_values(&["reconcile"]).inc();
    log::warn!(error:display = err; "reconciliation pass stopped: the store failed");
}

async fn check(
    app: &App,
    telegram: &LaneApi,
    groups: &mut HashMap<GroupId, Option<ProtectedGroup>>,
    row: &Restriction,
) -> Result<Outcome, StoreError> {
    let now = app.clock().unix_now();
    let group = match groups.get(&row.group) {
        Some(g) => g.clone(),
        None => {
            let g = app.store().group(row.group).await?;
            groups.insert(row.group, g.clone());
            g
        }
    };
    let group = match group {
        Some(g) if g.state == GroupState::Paused => return Ok(Outcome::Kept),
        Some(g) if g.is_enforced() => g,
        _ => {
            return Ok(
                if lift_one(app, telegram, row, LiftReason::Unprotected).await? {
                    Outcome::Lifted(LiftReason::Unprotected)
                } else {
                    Outcome::Failed
                },
            );
        }
    };
    // A kick lasts no time; a row left active by a crash only needs closing.
    if row.until.is_some_and(|u| u <= now) || row.kind == RestrictionKind::Kick {
        app.store()
            .lift_restriction(row.group, row.id, LiftReason::Expired, now)
            .await?;
        return Ok(Outcome::Lifted(LiftReason::Expired));
    }
    // A pending row may still have its call queued in an outbox (or in flight).
    if row.state == RestrictionState::Pending && !pending_call_lost(app, row, now).await {
        return Ok(Outcome::Kept);
    }
    match subscribed(app, telegram, &group, row.user).await {
        Some(true) => Ok(
            match unmute_member(app, telegram, row.group, row.user, LiftReason::Joined).await? {
                Unmuted::Failed => Outcome::Failed,
                // NotRestricted: lifted meanwhile by another path; count it once, here.
                Unmuted::Lifted | Unmuted::NotRestricted => Outcome::Lifted(LiftReason::Joined),
            },
        ),
        Some(false) if row.state == RestrictionState::Pending => {
            let muted =
                enforce::restrict(app, telegram, row.group, row.user, row.until, &[]).await?;
            Ok(if muted == enforce::Muted::Yes {
                Outcome::Reapplied
            } else {
                Outcome::Failed
            })
        }
        Some(false) | None => Ok(Outcome::Kept),
    }
}

/// Whether `user` satisfies every channel of the group now, asking Telegram (in
/// `telegram`'s lane) and refreshing the cache; `None` if some channel cannot be checked.
/// Reconciliation asks it of each restriction, the outbox before it retries a mute.
pub(crate) async fn subscribed(
    app: &App,
    telegram: &LaneApi,
    group: &ProtectedGroup,
    user: gmbot_core::domain::UserId,
) -> Option<bool> {
    if group.settings.allowlist.contains(&user) {
        return Some(true);
    }
    for channel in &group.channels {
        let id = channel.id?;
        let key = MembershipKey::new(id, user);
        match app
            .cache()
            .refresh(key, telegram.get_chat_member(id.into(), user))
            .await
        {
            Ok(status) => {
                if !status.is_subscribed() {
                    return Some(false);
                }
            }
            Err(err) => {
                log::info!(
                    group_id = group.id.get(),
                    user_id = user.get(),
                    channel_id = id.get(),
                    error:display = err;
                    "cannot check a membership afresh"
                );
                return None;
            }
        }
    }
    Some(true)
}

/// The periodic reconciliation task; stop it with [`ReconcilerGuard::stop`]
/// (dropping the guard aborts it).
pub type ReconcilerGuard = super::periodic::PeriodicGuard;

/// Runs [`reconcile_once`] now and then every `interval` (at least 1 s) until `shutdown`
/// completes or the guard is stopped. A pass in progress finishes first.
pub fn spawn_reconciler(
    app: App,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> ReconcilerGuard {
    super::periodic::spawn(
        "reconciler",
        app,
        interval.max(Duration::from_secs(1)),
        shutdown,
        |app, fence| async move {
            reconcile_fenced(&app, &fence).await;
        },
    )
}
