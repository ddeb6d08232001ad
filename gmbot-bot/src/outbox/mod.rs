//! The outbox: actions decided by a handler wait here for their Telegram budget, so no
//! handler ever waits on a send.
//!
//! A handler records what must survive a crash (the pending restriction row), hands its
//! actions to [`Outbox`] and returns. A fixed pool of outbox workers carries them out
//! through the dispatcher:
//!
//! - **Fairness across tenants.** Groups with work wait in one round-robin ring; a worker
//!   takes *one* task from the group at the front and puts the group back at the end, so a
//!   group with 2,000 queued actions delays another group's first action by at most one
//!   round. A group has at most [`OutboxConfig::per_group_in_flight`] tasks at Telegram at
//!   once, which bounds how far it can get ahead of the others in the dispatcher's lanes.
//! - **Order per member.** Tasks of one (group, member) never run concurrently; a lift
//!   cancels the member's queued mute or kick (it would be undone at once) and runs after
//!   one already in flight, so the journal and Telegram agree.
//! - **Priorities inside a group.** Lifts first (a member is waiting), then the join gate's
//!   calls (approvals, declines, join-request query answers and the private message to a
//!   requester), then deletions, then the group's pending warning (one task at a time, on the
//!   group's message budget, so it never waits for a raid's mutes), then mutes and kicks.
//! - **Raids.** Deletions waiting together go out as one `deleteMessages` call (up to 100
//!   ids; one `deleteMessage` each where the bulk call fails). Warnings collapse: while one
//!   is being sent or is still shown, further non-subscribers join a pending batch that is
//!   edited into the shown warning ("N members may not write here yet…") — one message per group, never
//!   a queue of hundreds.
//! - **Bounded.** At most [`OutboxConfig::max_jobs`] deletions and mutes wait; beyond that
//!   new ones are shed (counted in `gmbot_outbox_shed_total{kind}`): a shed mute keeps its
//!   pending row, which reconciliation applies later; a shed deletion leaves the message.
//!   Warnings take constant room per group (they are consolidated), lifts and the gate's
//!   answers to join requests are never shed; a gate's private message to a requester is
//!   (the request stays pending: joining the channel still lets them in).
//!
//! [`Outbox::shutdown`] lets the workers finish what is queued within a deadline (lifts and
//! deletions first); mutes still waiting then keep their pending rows, which the next start's
//! reconciliation applies.

mod warnings;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gmbot_core::dispatch::Lane;
use gmbot_core::domain::{GroupId, LiftReason, MessageId, RestrictionId, UnixTime, UserId};
use gmbot_core::telegram::{TelegramApi, TelegramError, MAX_BULK_DELETE};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::app::App;
use crate::flows::enforce::{apply_mute, count};
use crate::flows::gate::{self, GateJob};
use crate::flows::lift::{unmute_member, Unmuted};

pub use self::warnings::{consolidated_message, WarnRequest, ANYONE_JOINED_DATA};

use self::warnings::{ShownWarning, WarnBatch};

/// Tunables of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Tasks carried out at once across all groups.
    pub workers: usize,
    /// Tasks of one group at Telegram at once.
    pub per_group_in_flight: usize,
    /// Deletions and mutes waiting, across groups, before new ones are shed.
    pub max_jobs: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            workers: 32,
            per_group_in_flight: 4,
            max_jobs: 100_000,
        }
    }
}

/// A mute or kick waiting for its call; its row is already in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModJob {
    pub(crate) user: UserId,
    pub(crate) row: RestrictionId,
    pub(crate) kind: ModKind,
}

/// What a [`ModJob`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModKind {
    /// `restrictChatMember` until then; `pending` = the row still waits for its confirmation.
    Mute {
        until: Option<UnixTime>,
        pending: bool,
    },
    /// Ban for a minute, then unban.
    Kick,
}

struct LiftJob {
    user: UserId,
    reason: LiftReason,
    lane: Lane,
    done: Option<oneshot::Sender<Unmuted>>,
}

enum Task {
    Lift(LiftJob),
    Gate(GateJob),
    Delete(Vec<MessageId>),
    Mod(ModJob),
    Warn(WarnBatch),
}

impl Task {
    fn user(&self) -> Option<UserId> {
        match self {
            Task::Lift(j) => Some(j.user),
            Task::Gate(j) => Some(j.user),
            Task::Mod(j) => Some(j.user),
            Task::Delete(_) | Task::Warn(_) => None,
        }
    }
}

#[derive(Default)]
struct GroupQueue {
    lifts: VecDeque<LiftJob>,
    gates: VecDeque<GateJob>,
    deletes: VecDeque<MessageId>,
    mods: VecDeque<ModJob>,
    warn: Option<WarnBatch>,
    warn_in_flight: bool,
    shown: Option<ShownWarning>,
    busy: HashSet<UserId>,
    in_flight: usize,
    in_ring: bool,
}

/// How far into a group's mute queue a worker looks for a member who is not busy.
const MOD_SCAN: usize = 64;

impl GroupQueue {
    fn is_empty(&self) -> bool {
        self.lifts.is_empty()
            && self.gates.is_empty()
            && self.deletes.is_empty()
            && self.mods.is_empty()
            && self.warn.is_none()
    }

    fn has_runnable(&self, cap: usize) -> bool {
        if self.in_flight >= cap {
            return false;
        }
        self.lifts.iter().any(|j| !self.busy.contains(&j.user))
            || self.gates.iter().any(|j| !self.busy.contains(&j.user))
            || !self.deletes.is_empty()
            || self
                .mods
                .iter()
                .take(MOD_SCAN)
                .any(|j| !self.busy.contains(&j.user))
            || (self.warn.is_some() && !self.warn_in_flight)
    }

    /// Takes the most important task that may run now. Returns it with the number of queued
    /// jobs it removed.
    fn take(&mut self, cap: usize) -> Option<(Task, usize)> {
        if self.in_flight >= cap {
            return None;
        }
        if let Some(i) = self.lifts.iter().position(|j| !self.busy.contains(&j.user)) {
            let job = self.lifts.remove(i)?;
            return Some((Task::Lift(job), 1));
        }
        if let Some(i) = self.gates.iter().position(|j| !self.busy.contains(&j.user)) {
            let job = self.gates.remove(i)?;
            return Some((Task::Gate(job), 1));
        }
        if !self.deletes.is_empty() {
            let n = self.deletes.len().min(MAX_BULK_DELETE);
            let batch: Vec<MessageId> = self.deletes.drain(..n).collect();
            return Some((Task::Delete(batch), n));
        }
        // The warning goes before the mutes: it draws on the group's message budget, not the
        // restrict budget, so it need not wait for a raid's mutes (which can take longer than
        // the shown warning stays up) and takes one of the group's slots at most.
        if !self.warn_in_flight {
            if let Some(batch) = self.warn.take() {
                self.warn_in_flight = true;
                return Some((Task::Warn(batch), 0));
            }
        }
        if let Some(i) = self
            .mods
            .iter()
            .take(MOD_SCAN)
            .position(|j| !self.busy.contains(&j.user))
        {
            let job = self.mods.remove(i)?;
            return Some((Task::Mod(job), 1));
        }
        None
    }
}

#[derive(Default)]
struct State {
    groups: HashMap<GroupId, GroupQueue>,
    ring: VecDeque<GroupId>,
    /// Queued deletions, mutes and lifts.
    jobs: usize,
    in_flight: usize,
    stopping: bool,
}

impl State {
    fn ring_push(&mut self, group: GroupId, cap: usize) {
        if let Some(q) = self.groups.get_mut(&group) {
            if !q.in_ring && q.has_runnable(cap) {
                q.in_ring = true;
                self.ring.push_back(group);
            }
        }
    }

    /// The next task in round-robin order.
    fn next_task(&mut self, cap: usize) -> Option<(GroupId, Task)> {
        while let Some(group) = self.ring.pop_front() {
            let Some(q) = self.groups.get_mut(&group) else {
                continue;
            };
            q.in_ring = false;
            let Some((task, removed)) = q.take(cap) else {
                continue;
            };
            q.in_flight += 1;
            if let Some(u) = task.user() {
                q.busy.insert(u);
            }
            self.jobs -= removed;
            self.in_flight += 1;
            // Back to the end of the ring: the other groups go first.
            self.ring_push(group, cap);
            return Some((group, task));
        }
        None
    }

    fn is_drained(&self) -> bool {
        self.jobs == 0 && self.in_flight == 0 && self.groups.values().all(|q| q.warn.is_none())
    }
}

struct Inner {
    config: OutboxConfig,
    state: Mutex<State>,
    /// Wakes workers: work arrived, or a busy member became free.
    wake: Notify,
    /// Wakes [`Outbox::shutdown`] and [`Outbox::idle`] waiters when a task ends.
    progress: Notify,
    started: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A snapshot of the outbox's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxDepth {
    /// Deletions, mutes and lifts waiting.
    pub queued: usize,
    /// Tasks at Telegram now.
    pub in_flight: usize,
    /// Groups with something waiting.
    pub groups: usize,
}

/// The handlers' way to Telegram for actions that must not make them wait. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("config", &self.inner.config)
            .field("depth", &self.depth())
            .finish()
    }
}

impl Outbox {
    pub(crate) fn new(config: OutboxConfig) -> Self {
        let config = OutboxConfig {
            workers: config.workers.max(1),
            per_group_in_flight: config.per_group_in_flight.max(1),
            max_jobs: config.max_jobs.max(1),
        };
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                progress: Notify::new(),
                started: AtomicBool::new(false),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn cap(&self) -> usize {
        self.inner.config.per_group_in_flight
    }

    /// Starts the workers (once); each holds a clone of `app` until [`Outbox::shutdown`].
    pub(crate) fn start(&self, app: &App) {
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for _ in 0..self.inner.config.workers {
            tasks.push(tokio::spawn(work(self.clone(), app.clone())));
        }
    }

    /// The queues now.
    pub fn depth(&self) -> OutboxDepth {
        let s = self.lock();
        OutboxDepth {
            queued: s.jobs,
            in_flight: s.in_flight,
            groups: s.groups.values().filter(|q| !q.is_empty()).count(),
        }
    }

    /// Whether `user` has a mute, kick or lift queued or in flight in `group`.
    pub fn has_work_for(&self, group: GroupId, user: UserId) -> bool {
        let s = self.lock();
        s.groups.get(&group).is_some_and(|q| {
            q.busy.contains(&user)
                || q.mods.iter().any(|j| j.user == user)
                || q.lifts.iter().any(|j| j.user == user)
        })
    }

    /// Queues one job unless the outbox is full.
    fn admit(&self, group: GroupId, add: impl FnOnce(&mut GroupQueue)) -> bool {
        {
            let mut s = self.lock();
            if s.jobs >= self.inner.config.max_jobs {
                return false;
            }
            s.jobs += 1;
            add(s.groups.entry(group).or_default());
            let cap = self.cap();
            s.ring_push(group, cap);
        }
        self.inner.wake.notify_one();
        true
    }

    fn push(
        &self,
        app: &App,
        group: GroupId,
        kind: &'static str,
        add: impl FnOnce(&mut GroupQueue),
    ) -> bool {
        let ok = self.admit(group, add);
        if !ok {
            app.metrics().outbox_shed.with_label_values(&[kind]).inc();
        }
        ok
    }

    /// Queues the deletion of `message` in `group`. `false` if it was shed.
    pub fn delete(&self, app: &App, group: GroupId, message: MessageId) -> bool {
        let shed = !self.push(app, group, "delete", |q| q.deletes.push_back(message));
        if shed {
            log::warn!(group_id = group.get(), message_id = message.0; "outbox full: a message is left undeleted");
        }
        !shed
    }

    /// Queues a mute or kick whose row is recorded. `false` if it was shed (the pending row
    /// stays for reconciliation).
    pub(crate) fn moderate(&self, app: &App, group: GroupId, job: ModJob) -> bool {
        if self.lock().stopping {
            // The workers are gone: the call is not made here. Another instance (or the
            // next start's reconciliation) makes it.
            log::info!(
                group_id = group.get(),
                user_id = job.user.get();
                "outbox stopped: a mute is left to another instance or the next start"
            );
            release_pending(app, vec![job.row]);
            return false;
        }
        let shed = !self.push(app, group, "restrict", |q| q.mods.push_back(job));
        if shed {
            log::warn!(
                group_id = group.get(),
                user_id = job.user.get();
                "outbox full: a mute waits for reconciliation"
            );
            release_pending(app, vec![job.row]);
        }
        !shed
    }

    /// Queues lifting `user`'s restriction in `group` (unmute, close the row, delete their
    /// warnings), cancelling their queued mute or kick. Never shed. The receiver tells the
    /// outcome; dropping it is fine.
    pub fn lift(
        &self,
        group: GroupId,
        user: UserId,
        reason: LiftReason,
        lane: Lane,
    ) -> oneshot::Receiver<Unmuted> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.lock();
            let q = s.groups.entry(group).or_default();
            let before = q.mods.len();
            q.mods.retain(|j| j.user != user);
            let cancelled = before - q.mods.len();
            q.lifts.push_back(LiftJob {
                user,
                reason,
                lane,
                done: Some(tx),
            });
            s.jobs = s.jobs + 1 - cancelled;
            let cap = self.cap();
            s.ring_push(group, cap);
        }
        self.inner.wake.notify_one();
        rx
    }

    /// Queues a join-gate call for `job.user` in `group` (see [`gate`]). Answers to join
    /// requests are never shed; a private message to a requester is when the outbox is full
    /// (`false`; a receiver waiting for it sees its sender dropped).
    pub(crate) fn gate(&self, app: &App, group: GroupId, job: GateJob) -> bool {
        if job.is_sheddable() {
            // Shed: the job (and its sender) is dropped, so a waiting receiver sees it failed.
            let queued = self.push(app, group, "join_notice", |q| q.gates.push_back(job));
            if !queued {
                log::warn!(group_id = group.get(); "outbox full: a requester is not told how to get in");
            }
            return queued;
        }
        {
            let mut s = self.lock();
            s.jobs += 1;
            s.groups.entry(group).or_default().gates.push_back(job);
            let cap = self.cap();
            s.ring_push(group, cap);
        }
        self.inner.wake.notify_one();
        true
    }

    /// `message`, a warning of `group`, was deleted: it is no longer the group's shown
    /// warning (here, and on the shared board with several instances).
    pub(crate) async fn warning_deleted(&self, app: &App, group: GroupId, message: MessageId) {
        warnings::warning_deleted(self, app, group, message).await;
    }

    /// `user` was unmuted in `group`: the group's shared warning goes if it names them alone
    /// (several instances; see `warnings`).
    pub(crate) async fn member_lifted(&self, app: &App, group: GroupId, user: UserId) {
        warnings::member_lifted(self, app, group, user).await;
    }

    /// Puts this instance's shown warnings back on the shared warning board (several
    /// instances, after Redis came back; see `warnings`).
    pub async fn restore_board(&self, app: &App) {
        warnings::restore_board(self, app).await;
    }

    /// Adds a denied member to the group's pending warning (one message per group, see the
    /// module docs).
    pub fn warn(&self, group: GroupId, request: WarnRequest) {
        {
            let mut s = self.lock();
            let q = s.groups.entry(group).or_default();
            match &mut q.warn {
                Some(batch) => batch.add(request),
                None => q.warn = Some(WarnBatch::new(request)),
            }
            let cap = self.cap();
            s.ring_push(group, cap);
        }
        self.inner.wake.notify_one();
    }

    /// Forgets `user` in the group's shown warning state after they were unmuted.
    pub(crate) fn forget_member(&self, group: GroupId, user: UserId) {
        let mut s = self.lock();
        if let Some(q) = s.groups.get_mut(&group) {
            if let Some(batch) = &mut q.warn {
                batch.remove(user);
                if batch.is_empty() {
                    q.warn = None;
                }
            }
        }
    }

    /// Waits until nothing is queued or in flight (tests, the demo, load runs).
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.progress.notified();
            if self.lock().is_drained() {
                return;
            }
            notified.await;
        }
    }

    /// Lets the workers finish what is queued, up to `deadline`, then stops them. Returns
    /// how many deletions and mutes were left (their rows stay pending for reconciliation).
    pub async fn shutdown(&self, app: &App, deadline: Duration) -> usize {
        let drained = tokio::time::timeout(deadline, self.idle()).await.is_ok();
        {
            let mut s = self.lock();
            s.stopping = true;
        }
        self.inner.wake.notify_waiters();
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in tasks {
            // Workers finish the task in hand (one bounded call) and stop.
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                log::warn!("an outbox worker did not stop in time");
            }
        }
        let (left, rows) = {
            let s = self.lock();
            let rows: Vec<RestrictionId> = s
                .groups
                .values()
                .flat_map(|q| q.mods.iter().map(|j| j.row))
                .collect();
            (s.jobs, rows)
        };
        if !drained || left > 0 {
            log::warn!(left = left; "outbox stopped with actions waiting; pending mutes are applied by another instance or the next reconciliation");
        }
        if let Some(shared) = app.flows().shared() {
            let released = tokio::time::timeout(RELEASE_BOUND, shared.release_pending(&rows));
            if !rows.is_empty() && released.await.is_err() {
                log::warn!(rows = rows.len(); "pending mutes not released in time; other instances take them up after the pending grace");
            }
        }
        left
    }

    fn done(&self, group: GroupId, user: Option<UserId>, warned: bool) {
        {
            let mut s = self.lock();
            s.in_flight -= 1;
            let cap = self.cap();
            if let Some(q) = s.groups.get_mut(&group) {
                q.in_flight -= 1;
                if let Some(u) = user {
                    q.busy.remove(&u);
                }
                if warned {
                    q.warn_in_flight = false;
                }
                let forget = q.is_empty()
                    && q.in_flight == 0
                    && q.shown
                        .as_ref()
                        .is_none_or(|w| !w.is_fresh(tokio::time::Instant::now()));
                if forget {
                    s.groups.remove(&group);
                } else {
                    s.ring_push(group, cap);
                }
            }
        }
        self.inner.wake.notify_one();
        self.inner.progress.notify_waiters();
    }
}

/// How long a stop waits to tell the other instances about the pending mutes it leaves.
const RELEASE_BOUND: Duration = Duration::from_secs(5);

/// Releases `rows` to the other instances (several instances only), in the background.
fn release_pending(app: &App, rows: Vec<RestrictionId>) {
    if let Some(shared) = app.flows().shared() {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(RELEASE_BOUND, shared.release_pending(&rows)).await;
        });
    }
}

async fn work(outbox: Outbox, app: App) {
    loop {
        let notified = outbox.inner.wake.notified();
        let next = {
            let mut s = outbox.lock();
            if s.stopping {
                break;
            }
            s.next_task(outbox.cap())
        };
        let Some((group, task)) = next else {
            notified.await;
            continue;
        };
        // Another worker may find work too.
        outbox.inner.wake.notify_one();
        let user = task.user();
        let warned = matches!(task, Task::Warn(_));
        run(&outbox, &app, group, task).await;
        outbox.done(group, user, warned);
    }
}

async fn run(outbox: &Outbox, app: &App, group: GroupId, task: Task) {
    match task {
        Task::Lift(job) => {
            let telegram = app.telegram_in(job.lane);
            let outcome = match unmute_member(app, &telegram, group, job.user, job.reason).await {
                Ok(o) => o,
                Err(err) => {
                    log::warn!(group_id = group.get(), user_id = job.user.get(), error:display = err; "cannot lift a restriction: the store failed");
                    Unmuted::Failed
                }
            };
            if outcome != Unmuted::Failed {
                outbox.forget_member(group, job.user);
            }
            if let Some(done) = job.done {
                let _ = done.send(outcome);
            }
        }
        Task::Gate(mut job) => {
            let done = job.done.take();
            let outcome = gate::carry_out(app, group, job).await;
            if let Some(done) = done {
                let _ = done.send(outcome);
            }
        }
        Task::Delete(ids) => delete(app, group, &ids).await,
        Task::Mod(job) => {
            if let Err(err) = moderate(app, group, job).await {
                log::warn!(group_id = group.get(), user_id = job.user.get(), error:display = err; "cannot record a mute: the store failed; reconciliation will finish it");
            }
        }
        Task::Warn(batch) => warnings::send(outbox, app, group, batch).await,
    }
}

/// One `deleteMessages` call; where it fails (an older server without the method, a
/// refused batch), one `deleteMessage` each.
async fn delete(app: &App, group: GroupId, ids: &[MessageId]) {
    let telegram = app.telegram_in(Lane::Enforcement);
    let bulk = if ids.len() > 1 {
        telegram.delete_messages(group.into(), ids).await
    } else {
        Err(TelegramError::BadRequest("single message".into()))
    };
    match bulk {
        Ok(()) => {
            for _ in ids {
                count(app, "delete", true);
            }
            return;
        }
        Err(err) if ids.len() > 1 => {
            log::info!(group_id = group.get(), messages = ids.len(), error:display = err; "deleteMessages failed; deleting one by one");
        }
        Err(_) => {}
    }
    for &message in ids {
        let result = telegram.delete_message(group.into(), message).await;
        count(app, "delete", result.is_ok());
        if let Err(err) = result {
            log::info!(group_id = group.get(), message_id = message.0, error:display = err; "cannot delete a message");
        }
    }
}

/// Applies a recorded mute or kick and settles its row.
async fn moderate(
    app: &App,
    group: GroupId,
    job: ModJob,
) -> Result<(), gmbot_core::store::StoreError> {
    let telegram = app.telegram_in(Lane::Enforcement);
    let store = app.store();
    match job.kind {
        ModKind::Mute { until, pending } => {
            apply_mute(app, &telegram, group, job.user, job.row, until, pending).await?;
        }
        ModKind::Kick => {
            let result = telegram.kick_member(group, job.user).await;
            count(app, "kick", result.is_ok());
            match result {
                Ok(()) => {
                    store.confirm_restriction(group, job.row).await?;
                    store
                        .lift_restriction(
                            group,
                            job.row,
                            LiftReason::Expired,
                            app.clock().unix_now(),
                        )
                        .await?;
                    log::info!(group_id = group.get(), user_id = job.user.get(); "member removed");
                }
                Err(err) => {
                    app.metrics().errors.with_label_values(&["kick"]).inc();
                    log::warn!(group_id = group.get(), user_id = job.user.get(), error:display = err; "cannot remove a member");
                    store
                        .lift_restriction(
                            group,
                            job.row,
                            LiftReason::NotApplied,
                            app.clock().unix_now(),
                        )
                        .await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
