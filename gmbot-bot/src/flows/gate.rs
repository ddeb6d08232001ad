//! The join gate: with a group's `join_gate` on, the bot decides its join requests.
//!
//! - A `chat_join_request` is verified like a message (group config, exemptions, each linked
//!   channel: cache, then Telegram). A subscriber is **approved** at once. When the request
//!   carries a `query_id` (Bot API 10.1: the bot is the chat's guard bot), it is answered
//!   through `answerChatJoinRequestQuery` — Telegram wants that answer within 10 seconds;
//!   where it fails, `approveChatJoinRequest` is tried.
//! - A non-subscriber is **not declined at once**. Their request is stored as pending with a
//!   deadline (`join_wait_seconds`, 10 minutes by default), a query is answered `queue` (the
//!   request becomes an ordinary pending one, decided later with `approveChatJoinRequest` /
//!   `declineChatJoinRequest`; a query cannot wait minutes), and the bot writes to them
//!   privately through the request's `user_chat_id` — allowed for 5 minutes, until the request
//!   is answered, even if they never started the bot — with the Join buttons and an
//!   "I've joined — let me in" button (`g:<group id>`). Pressing it re-checks the channels
//!   (bypassing the cache, through the "I've joined" cool-down and budget) and approves.
//!   Joining a linked channel approves the request too, as it unmutes a member.
//! - [`sweep_once`] (every few seconds, and at start: pending requests survive a restart in
//!   the store) takes the requests whose wait ran out, re-checks them once more and
//!   **declines** those who still did not join (a membership Telegram cannot tell follows the
//!   group's failure policy). Requests of a group that is no longer gated are released to
//!   the admins: left pending in Telegram, closed in the store.
//! - Members the gate let in are not checked again when their join arrives (check on join
//!   has nothing to do for them): [`admitted`].
//!
//! Every call — approvals, declines, query answers, the private message — goes through the
//! outbox (per-group fairness, never shed except the private message) and the dispatcher
//! (interactive lane, restrict budget; the private message on the private chat's budget).
//! Answering join requests needs the bot's `can_invite_users` right in the group; without
//! it the admins are told once and the requests are left to them.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gmbot_core::coordination::Fence;
use gmbot_core::dispatch::Lane;
use gmbot_core::domain::{
    ChatId, EnforcedChannel, FailurePolicy, GroupId, JoinRequest as StoredRequest,
    JoinRequestState, NewJoinRequest, UnixTime, UserId,
};
use gmbot_core::engine::{Action, MessageContext, Verdict};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::{
    InlineButton, JoinQueryAnswer, OutgoingMessage, TelegramApi, TelegramError,
};
use tokio::sync::oneshot;

use crate::app::App;
use crate::handlers::HandleError;
use crate::update::{CallbackQuery, JoinRequest};

use super::enforce::count;
use super::recheck::Refused;
use super::warn::{channel_label, escape_html, join_buttons};

/// Prefix of the "I've joined — let me in" button's callback data: `g:<group id>`.
pub const GATE_PREFIX: &str = "g:";

/// Answer when the presser has no pending request for that group.
pub const NO_REQUEST: &str = "I have no open join request of yours for this group.";
/// Answer when the request was approved already.
pub const ALREADY_IN: &str = "Your request is approved already: you're in.";
/// Answer once the request is approved.
pub const APPROVED: &str = "Welcome! Your request is approved.";
/// Answer when the group stopped checking join requests.
pub const LEFT_TO_ADMINS: &str =
    "This group no longer has me check join requests: its admins will decide.";

/// How often [`spawn_sweeper`] looks for requests whose wait ran out, by default.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Decided requests are kept this long (for [`admitted`]), then purged.
const KEEP_DECIDED_SECS: i64 = 24 * 3600;

/// A member approved this long ago or less is not checked again when they join.
const ADMITTED_SECS: i64 = 600;

/// Rows per store call of a sweep, and pages per sweep at most.
const SWEEP_PAGE: u32 = 100;
const SWEEP_PAGES: usize = 20;

/// The button's callback data for `group` (at most 22 bytes, well under Telegram's 64).
pub fn gate_data(group: GroupId) -> String {
    format!("{GATE_PREFIX}{}", group.get())
}

/// The group a "let me in" button names, if `data` is well formed: `g:-` and 1–19 digits.
pub fn parse_gate_data(data: &str) -> Option<GroupId> {
    let raw = data.strip_prefix(GATE_PREFIX)?;
    let digits = raw.strip_prefix('-')?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    GroupId::new(raw.parse().ok()?).ok()
}

/// A join-gate call waiting in the outbox.
#[derive(Debug)]
pub(crate) struct GateJob {
    pub(crate) user: UserId,
    pub(crate) kind: GateKind,
    pub(crate) done: Option<oneshot::Sender<GateOutcome>>,
}

impl GateJob {
    pub(crate) fn new(user: UserId, kind: GateKind) -> Self {
        Self {
            user,
            kind,
            done: None,
        }
    }

    /// The job and the receiver of its outcome.
    pub(crate) fn waited(user: UserId, kind: GateKind) -> (Self, oneshot::Receiver<GateOutcome>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                user,
                kind,
                done: Some(tx),
            },
            rx,
        )
    }

    /// Only the private message to a requester may be dropped when the outbox is full.
    pub(crate) fn is_sheddable(&self) -> bool {
        matches!(self.kind, GateKind::Notice { .. })
    }
}

/// What a [`GateJob`] does.
#[derive(Debug)]
pub(crate) enum GateKind {
    /// Let the requester in: through their query, if they came with one, else (or where the
    /// query answer fails) `approveChatJoinRequest`.
    Approve { query: Option<String> },
    /// `declineChatJoinRequest`: the wait ran out.
    Decline,
    /// Answer a query `queue`: a pending request the bot decides later.
    Queue { query: String },
    /// The private message to the requester (through `user_chat_id`).
    Notice {
        chat: ChatId,
        message: OutgoingMessage,
    },
}

/// How a [`GateJob`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    /// Telegram did it.
    Done,
    /// The request no longer exists (withdrawn, or an admin answered it first).
    Gone,
    /// Telegram refused or could not be reached; the request stays pending.
    Failed,
}

/// What a group's configuration says about its join requests.
enum Gating {
    /// The group is enforced and gated.
    On {
        wait: Duration,
        policy: FailurePolicy,
    },
    /// Not gated (gate off, group unknown, unprotected, paused or without channels).
    Off,
}

async fn gating(app: &App, group: GroupId) -> Result<Gating, HandleError> {
    Ok(match app.engine().group_config(group).await? {
        Some(c) if c.not_enforced().is_none() && c.settings().join_gate => Gating::On {
            wait: Duration::from_secs(c.settings().join_wait_seconds.into()),
            policy: c.settings().failure_policy,
        },
        _ => Gating::Off,
    })
}

/// The private message to a requester who must join `missing` first.
pub fn notice_message(
    group: GroupId,
    title: Option<&str>,
    missing: &[Arc<EnforcedChannel>],
    wait: Duration,
) -> OutgoingMessage {
    let group_name = title.filter(|t| !t.trim().is_empty()).map_or_else(
        || "this group".to_owned(),
        |t| format!("<b>{}</b>", escape_html(t)),
    );
    let channels: Vec<String> = missing
        .iter()
        .map(|c| format!("<b>{}</b>", escape_html(&channel_label(c))))
        .collect();
    let mut html = format!(
        "👋 You asked to join {group_name}. It is for the subscribers of {}: join first, \
         then press “I've joined — let me in”. If you have not joined within {}, your request \
         is declined (you may ask again once you have joined).",
        channels.join(" and "),
        wait_words(wait),
    );
    if missing.iter().any(|c| c.join_url().is_none()) {
        html.push_str(
            "\n(A private channel has no invite link yet; the group's admins have been told.)",
        );
    }
    let mut buttons = join_buttons(missing);
    buttons.push(vec![InlineButton::Callback {
        text: "✅ I've joined — let me in".to_owned(),
        data: gate_data(group),
    }]);
    OutgoingMessage {
        html,
        buttons,
        reply_to: None,
        silent: false,
    }
}

/// "10 min", "1 h 30 min": the wait in words (it is at least a minute).
fn wait_words(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// Handles a `chat_join_request`.
pub async fn requested(app: &App, req: &JoinRequest) -> Result<(), HandleError> {
    let Some(group) = req
        .chat
        .is_group()
        .then(|| GroupId::new(req.chat.id.get()).ok())
        .flatten()
    else {
        // A channel's join requests are not ours to decide; a query is still answered.
        if let (Some(query), Ok(group)) = (&req.query_id, GroupId::new(req.chat.id.get())) {
            queue(app, group, req.from.id, query);
        }
        return Ok(());
    };
    let user = req.from.id;
    let Gating::On { wait, .. } = gating(app, group).await? else {
        log::debug!(group_id = group.get(), user_id = user.get(); "join request left to the admins: no gate");
        if let Some(query) = &req.query_id {
            queue(app, group, user, query);
        }
        return Ok(());
    };
    let _guard = app.flows().member_lock(group, user).await;
    let mut ctx = MessageContext::no_message();
    if req.from.is_bot {
        ctx = ctx.from_bot();
    }
    let verdict = app.engine().verify(group, user, ctx).await?;
    log::info!(
        group_id = group.get(),
        user_id = user.get(),
        decision = verdict.decision.as_str(),
        query = req.query_id.is_some();
        "join request"
    );
    if verdict.decision.is_allowed() {
        app.outbox().gate(
            app,
            group,
            GateJob::new(
                user,
                GateKind::Approve {
                    query: req.query_id.clone(),
                },
            ),
        );
        return Ok(());
    }
    let now = app.clock().unix_now();
    let row = app
        .store()
        .record_join_request(&NewJoinRequest {
            group,
            user,
            user_chat: req.user_chat,
            requested_at: req.date,
            expires_at: now.plus(wait),
        })
        .await?;
    if let Some(query) = &req.query_id {
        // A query must be answered within 10 seconds; the wait is minutes.
        queue(app, group, user, query);
    }
    if row.notice.is_some() {
        // The same request delivered again: the requester was told already.
        return Ok(());
    }
    let missing = verdict.missing();
    for channel in missing.iter().filter(|c| c.join_url().is_none()) {
        let (app, channel) = (app.clone(), (**channel).clone());
        tokio::spawn(
            async move { super::notice::missing_invite_link(&app, group, &channel).await },
        );
    }
    let message = notice_message(group, req.chat.title.as_deref(), missing, wait);
    app.outbox().gate(
        app,
        group,
        GateJob::new(
            user,
            GateKind::Notice {
                chat: row.user_chat,
                message,
            },
        ),
    );
    Ok(())
}

fn queue(app: &App, group: GroupId, user: UserId, query: &str) {
    app.outbox().gate(
        app,
        group,
        GateJob::new(
            user,
            GateKind::Queue {
                query: query.to_owned(),
            },
        ),
    );
}

async fn answer(telegram: &dyn TelegramApi, cq: &CallbackQuery, text: &str, alert: bool) {
    if let Err(err) = telegram.answer_callback(&cq.id, Some(text), alert).await {
        log::info!(user_id = cq.from.id.get(), error:display = err; "cannot answer a callback query");
    }
}

/// The channels a re-check found not joined (not those it could not check).
fn not_joined(verdict: &Verdict) -> Vec<String> {
    verdict
        .missing()
        .iter()
        .filter(|c| {
            !verdict
                .unverifiable
                .iter()
                .any(|u| Arc::ptr_eq(&u.channel, c))
        })
        .map(|c| channel_label(c))
        .collect()
}

/// Handles a press of "I've joined — let me in" (callback data `g:<group id>`), sent from the
/// requester's private chat. The data only names a group: whose request it is comes from the
/// presser, and the request must be pending in the store.
pub async fn pressed(app: &App, cq: &CallbackQuery, data: &str) -> Result<(), HandleError> {
    use super::joined_button::{COOLING_DOWN, INVALID, TRY_AGAIN, UNVERIFIED};
    let telegram = app.telegram_in(Lane::Interactive);
    let Some(group) = parse_gate_data(data) else {
        log::warn!(user_id = cq.from.id.get(), data_len = data.len(); "malformed join gate callback");
        answer(&telegram, cq, INVALID, false).await;
        return Ok(());
    };
    let user = cq.from.id;
    let row = match app.store().join_request(group, user).await {
        Ok(row) => row,
        Err(err) => {
            answer(&telegram, cq, TRY_AGAIN, false).await;
            return Err(err.into());
        }
    };
    match row.map(|r| r.state) {
        Some(JoinRequestState::Pending) => {}
        Some(JoinRequestState::Approved) => {
            answer(&telegram, cq, ALREADY_IN, false).await;
            return Ok(());
        }
        _ => {
            answer(&telegram, cq, NO_REQUEST, false).await;
            return Ok(());
        }
    }
    let gated = match gating(app, group).await {
        Ok(g) => g,
        Err(err) => {
            answer(&telegram, cq, TRY_AGAIN, false).await;
            return Err(err);
        }
    };
    if matches!(gated, Gating::Off) {
        app.store()
            .decide_join_request(
                group,
                user,
                JoinRequestState::Released,
                app.clock().unix_now(),
            )
            .await?;
        answer(&telegram, cq, LEFT_TO_ADMINS, false).await;
        return Ok(());
    }
    let _guard = app.flows().member_lock(group, user).await;
    if let Err(refused) = app
        .flows()
        .rechecks()
        .try_claim(group, user, app.clock().now_millis())
        .await
    {
        let text = match refused {
            Refused::CoolingDown => COOLING_DOWN,
            Refused::OverBudget => UNVERIFIED,
        };
        answer(&telegram, cq, text, false).await;
        return Ok(());
    }
    let verdict = match app.engine().recheck(group, user).await {
        Ok(v) => v,
        Err(err) => {
            answer(&telegram, cq, TRY_AGAIN, false).await;
            return Err(err.into());
        }
    };
    log::info!(
        group_id = group.get(),
        user_id = user.get(),
        decision = verdict.decision.as_str();
        "\"let me in\" re-check"
    );
    let missing = not_joined(&verdict);
    if !missing.is_empty() {
        let text = format!("You still need to join: {}.", missing.join(", "));
        let text: String = text.chars().take(200).collect();
        answer(&telegram, cq, &text, true).await;
        return Ok(());
    }
    if !verdict.actions.contains(&Action::Unrestrict) {
        // Unknown is never a reason to let someone in from a button press.
        answer(&telegram, cq, UNVERIFIED, false).await;
        return Ok(());
    }
    let (job, done) = GateJob::waited(user, GateKind::Approve { query: None });
    app.outbox().gate(app, group, job);
    let text = match done.await.unwrap_or(GateOutcome::Failed) {
        GateOutcome::Done => APPROVED,
        GateOutcome::Gone => NO_REQUEST,
        GateOutcome::Failed => TRY_AGAIN,
    };
    answer(&telegram, cq, text, false).await;
    Ok(())
}

/// A member joined a channel linked to `group`: a pending join request of theirs there is
/// approved if they now satisfy every channel. Queued, not awaited.
pub async fn channel_joined(app: &App, group: GroupId, user: UserId) -> Result<(), HandleError> {
    if matches!(gating(app, group).await?, Gating::Off) {
        return Ok(());
    }
    let pending = app
        .store()
        .join_request(group, user)
        .await?
        .is_some_and(|r| r.state == JoinRequestState::Pending);
    if !pending {
        return Ok(());
    }
    let _guard = app.flows().member_lock(group, user).await;
    let verdict = app.engine().recheck(group, user).await?;
    if verdict.actions.contains(&Action::Unrestrict) {
        log::info!(group_id = group.get(), user_id = user.get(); "requester joined the channels: approving");
        app.outbox().gate(
            app,
            group,
            GateJob::new(user, GateKind::Approve { query: None }),
        );
    }
    Ok(())
}

/// Whether the gate let `user` into `group` a moment ago, so their join needs no check:
/// this process approved them, or the store has their request approved in the last ten
/// minutes (another instance approved it). Only asks the store for gated groups.
pub async fn admitted(app: &App, group: GroupId, user: UserId) -> Result<bool, StoreError> {
    if app.flows().was_admitted(group, user).await {
        return Ok(true);
    }
    let now = app.clock().unix_now();
    Ok(app
        .store()
        .join_request(group, user)
        .await?
        .is_some_and(|r| {
            r.state == JoinRequestState::Approved
                && r.decided_at
                    .is_some_and(|d| now.secs() - d.secs() <= ADMITTED_SECS)
        }))
}

/// Edits the private message of a decided request (best effort: it only removes a button).
async fn edit_notice(app: &App, row: &StoredRequest, html: &str) {
    let Some(notice) = row.notice else { return };
    let msg = OutgoingMessage {
        html: html.to_owned(),
        ..OutgoingMessage::default()
    };
    if let Err(err) = app
        .telegram_in(Lane::Notify)
        .edit_message(row.user_chat, notice, &msg)
        .await
    {
        log::debug!(group_id = row.group.get(), user_id = row.user.get(), error:display = err; "cannot update the requester's message");
    }
}

/// Records a decision and updates the requester's private message.
async fn settle(app: &App, group: GroupId, user: UserId, state: JoinRequestState) {
    let now = app.clock().unix_now();
    let store = app.store();
    let row = match store.join_request(group, user).await {
        Ok(row) => row,
        Err(err) => {
            log::warn!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot read a join request");
            None
        }
    };
    match store.decide_join_request(group, user, state, now).await {
        Ok(true) => {}
        // Not stored (a subscriber approved at once) or decided elsewhere first.
        Ok(false) => return,
        Err(err) => {
            log::warn!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot record a join request's decision");
            return;
        }
    }
    let Some(row) = row.filter(|r| r.state == JoinRequestState::Pending) else {
        return;
    };
    let html = match state {
        JoinRequestState::Approved => "✅ Your request is approved: welcome!",
        JoinRequestState::Declined => {
            "Your request was declined: you had not joined the channel in time. Join it, then ask again."
        }
        JoinRequestState::Released | JoinRequestState::Pending => {
            "The group's admins will decide on your request."
        }
    };
    edit_notice(app, &row, html).await;
}

/// Carries out one job (the outbox calls it in its turn).
pub(crate) async fn carry_out(app: &App, group: GroupId, job: GateJob) -> GateOutcome {
    let telegram = app.telegram_in(Lane::Interactive);
    let user = job.user;
    match job.kind {
        GateKind::Approve { query } => {
            app.flows().mark_admitted(group, user).await;
            let mut result = match &query {
                Some(q) => {
                    telegram
                        .answer_join_request_query(group, q, JoinQueryAnswer::Approve)
                        .await
                }
                None => telegram.approve_join_request(group, user).await,
            };
            if query.is_some() && matches!(result, Err(TelegramError::BadRequest(_))) {
                // The query expired (10 s) or is unknown: the request may be an ordinary one.
                result = telegram.approve_join_request(group, user).await;
            }
            count(app, "join_approve", result.is_ok());
            match result {
                Ok(()) => {
                    log::info!(group_id = group.get(), user_id = user.get(); "join request approved");
                    settle(app, group, user, JoinRequestState::Approved).await;
                    GateOutcome::Done
                }
                Err(err) => {
                    let outcome = refused(app, group, user, &err, "approve");
                    if outcome != GateOutcome::Done {
                        app.flows().forget_admitted(group, user).await;
                    }
                    outcome
                }
            }
        }
        GateKind::Decline => {
            let result = telegram.decline_join_request(group, user).await;
            count(app, "join_decline", result.is_ok());
            match result {
                Ok(()) => {
                    log::info!(group_id = group.get(), user_id = user.get(); "join request declined: the wait ran out");
                    settle(app, group, user, JoinRequestState::Declined).await;
                    GateOutcome::Done
                }
                Err(err) => {
                    let outcome = refused(app, group, user, &err, "decline");
                    if outcome == GateOutcome::Gone
                        || matches!(err, TelegramError::NotEnoughRights(_))
                    {
                        // Answered elsewhere, or not ours to answer: left to the admins.
                        settle(app, group, user, JoinRequestState::Released).await;
                    }
                    outcome
                }
            }
        }
        GateKind::Queue { query } => {
            let result = telegram
                .answer_join_request_query(group, &query, JoinQueryAnswer::Queue)
                .await;
            count(app, "join_queue", result.is_ok());
            match result {
                Ok(()) => GateOutcome::Done,
                Err(err) => {
                    log::info!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot answer a join request query");
                    GateOutcome::Failed
                }
            }
        }
        GateKind::Notice { chat, message } => {
            let result = app
                .telegram_in(Lane::Notify)
                .send_message(chat, &message)
                .await;
            count(app, "join_notice", result.is_ok());
            match result {
                Ok(id) => {
                    if let Err(err) = app.store().set_join_request_notice(group, user, id).await {
                        log::warn!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot record the requester's message");
                    }
                    GateOutcome::Done
                }
                Err(err) => {
                    // The 5-minute window closed, or the user blocks bots: joining the
                    // channel still lets them in.
                    log::info!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot write to a requester");
                    GateOutcome::Failed
                }
            }
        }
    }
}

/// What a refused approve or decline means.
fn refused(
    app: &App,
    group: GroupId,
    user: UserId,
    err: &TelegramError,
    what: &'static str,
) -> GateOutcome {
    match err {
        TelegramError::NotEnoughRights(_) => {
            log::warn!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot {what} a join request: the bot lacks can_invite_users");
            app.metrics().errors.with_label_values(&["join_gate"]).inc();
            let app = app.clone();
            tokio::spawn(async move { super::notice::join_gate_without_rights(&app, group).await });
            GateOutcome::Failed
        }
        e if e.is_temporary() => {
            log::warn!(group_id = group.get(), user_id = user.get(), error:display = err; "cannot {what} a join request now");
            app.metrics().errors.with_label_values(&["join_gate"]).inc();
            GateOutcome::Failed
        }
        TelegramError::BadRequest(text)
            if text
                .to_ascii_uppercase()
                .contains("USER_ALREADY_PARTICIPANT") =>
        {
            GateOutcome::Done
        }
        _ => {
            log::info!(group_id = group.get(), user_id = user.get(), error:display = err; "join request no longer open");
            GateOutcome::Gone
        }
    }
}

/// What one [`sweep_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Due requests looked at.
    pub checked: u64,
    /// Approved: the requester joined after all.
    pub approved: u64,
    /// Declined: the wait ran out.
    pub declined: u64,
    /// Left to the admins: the group is no longer gated, or the request is gone.
    pub released: u64,
    /// Telegram refused or failed; tried again by the next sweep.
    pub failed: u64,
    /// Decided rows older than a day, purged.
    pub purged: u64,
}

/// Decides every pending request whose wait ran out (see the module docs). Safe to run on
/// several instances at once: a request is decided once in the store, and Telegram answers a
/// second answer to the same request with an error that changes nothing.
pub async fn sweep_once(app: &App) -> SweepReport {
    sweep_fenced(app, &Fence::unfenced()).await
}

/// [`sweep_once`] under a lease (with several instances, only the holder of the
/// `gate-sweeper` lease sweeps): stops before the next page or request once `fence`
/// falls. Decisions already queued in the outbox are carried out (each is answered once).
pub async fn sweep_fenced(app: &App, fence: &Fence) -> SweepReport {
    let mut report = SweepReport::default();
    let now = app.clock().unix_now();
    let mut tried: HashSet<(GroupId, UserId)> = HashSet::new();
    for _ in 0..SWEEP_PAGES {
        if fence.check().is_err() {
            break;
        }
        let due = match app.store().due_join_requests(now, SWEEP_PAGE).await {
            Ok(d) => d,
            Err(err) => {
                log::warn!(error:display = err; "cannot read due join requests");
                break;
            }
        };
        let fresh: Vec<StoredRequest> = due
            .iter()
            .filter(|r| !tried.contains(&(r.group, r.user)))
            .cloned()
            .collect();
        if fresh.is_empty() {
            break;
        }
        let mut waiting = Vec::with_capacity(fresh.len());
        for row in &fresh {
            if fence.check().is_err() {
                break;
            }
            tried.insert((row.group, row.user));
            report.checked += 1;
            match decide_due(app, row).await {
                Ok(Some((kind, rx))) => waiting.push((kind, rx)),
                Ok(None) => report.released += 1,
                Err(err) => {
                    report.failed += 1;
                    log::warn!(group_id = row.group.get(), user_id = row.user.get(), error:display = err; "cannot decide a due join request");
                }
            }
        }
        for (approve, rx) in waiting {
            match rx.await.unwrap_or(GateOutcome::Failed) {
                GateOutcome::Done if approve => report.approved += 1,
                GateOutcome::Done => report.declined += 1,
                GateOutcome::Gone => report.released += 1,
                GateOutcome::Failed => report.failed += 1,
            }
        }
        if due.len() < SWEEP_PAGE as usize {
            break;
        }
    }
    match app
        .store()
        .purge_join_requests(UnixTime(now.secs() - KEEP_DECIDED_SECS))
        .await
    {
        Ok(n) => report.purged = n,
        Err(err) => log::warn!(error:display = err; "cannot purge decided join requests"),
    }
    if report.checked > 0 {
        log::info!(
            checked = report.checked,
            approved = report.approved,
            declined = report.declined,
            released = report.released,
            failed = report.failed;
            "due join requests decided"
        );
    }
    report
}

/// Queues the decision on one due request: `Some((approve?, outcome))`, or `None` when it was
/// released to the admins (the group is no longer gated).
async fn decide_due(
    app: &App,
    row: &StoredRequest,
) -> Result<Option<(bool, oneshot::Receiver<GateOutcome>)>, HandleError> {
    let (group, user) = (row.group, row.user);
    let Gating::On { policy, .. } = gating(app, group).await? else {
        app.store()
            .decide_join_request(
                group,
                user,
                JoinRequestState::Released,
                app.clock().unix_now(),
            )
            .await?;
        log::info!(group_id = group.get(), user_id = user.get(); "join request left to the admins: the group is no longer gated");
        return Ok(None);
    };
    let _guard = app.flows().member_lock(group, user).await;
    // One last look, bypassing the cache: a requester who joined is let in.
    let verdict = app.engine().recheck(group, user).await?;
    let joined = verdict.actions.contains(&Action::Unrestrict);
    let approve = if joined {
        true
    } else if not_joined(&verdict).is_empty() {
        // Telegram could not tell: the group's failure policy decides, as for a message.
        policy == FailurePolicy::Open
    } else {
        false
    };
    let kind = if approve {
        GateKind::Approve { query: None }
    } else {
        GateKind::Decline
    };
    let (job, rx) = GateJob::waited(user, kind);
    app.outbox().gate(app, group, job);
    Ok(Some((approve, rx)))
}

/// The sweeper task; stopped with [`SweeperGuard::stop`] or when `shutdown` completes.
pub type SweeperGuard = super::periodic::PeriodicGuard;

/// Runs [`sweep_once`] at start and then every `interval` (at least 100 ms), until `shutdown`
/// completes.
pub fn spawn_sweeper(
    app: App,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> SweeperGuard {
    super::periodic::spawn(
        "gate-sweeper",
        app,
        interval.max(Duration::from_millis(100)),
        shutdown,
        |app, fence| async move {
            sweep_fenced(&app, &fence).await;
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_data_round_trips_and_rejects_junk() {
        let g = GroupId(-1_001_234_567_890);
        let d = gate_data(g);
        assert!(d.len() <= 64);
        assert_eq!(parse_gate_data(&d), Some(g));
        for bad in [
            "",
            "g:",
            "g:-",
            "g:5",
            "g:+5",
            "g:--5",
            "g:- 5",
            "g:-5x",
            "g:-0",
            "j:-5",
            "g:-99999999999999999999",
            "g:-١٢",
            "g:-5;DROP",
        ] {
            assert_eq!(parse_gate_data(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_notice_names_the_channels_escaped_and_carries_the_button() {
        let ch = Arc::new(EnforcedChannel {
            id: Some(gmbot_core::domain::ChannelId(-1002)),
            username: Some(gmbot_core::domain::ChannelUsername::parse("news_here").expect("valid")),
            title: Some("<News>".into()),
            invite_link: None,
        });
        let g = GroupId(-1001);
        let m = notice_message(g, Some("A & B"), &[ch], Duration::from_secs(600));
        assert!(m.html.contains("<b>A &amp; B</b>") && m.html.contains("&lt;News&gt;"));
        assert!(m.html.contains("10 min"), "{}", m.html);
        assert_eq!(wait_words(Duration::from_secs(5400)), "1 h 30 min");
        assert_eq!(wait_words(Duration::from_secs(3600)), "1 h");
        assert_eq!(
            m.buttons.last(),
            Some(&vec![InlineButton::Callback {
                text: "✅ I've joined — let me in".into(),
                data: "g:-1001".into(),
            }])
        );
        assert!(
            matches!(&m.buttons[0][0], InlineButton::Url { url, .. } if url == "https://t.me/news_here")
        );
    }
}
