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
//! - **Storms.** A deletion, mute or kick whose call still fails with a 429, a 5xx or a
//!   network error once the dispatcher's own retries ran out (a storm that outlasts them)
//!   is queued again later, after [`OutboxConfig::retry_first`] and then twice as long each
//!   time (at most a minute), up to [`OutboxConfig::retry_attempts`] times; a deletion batch
//!   whose `deleteMessages` failed so is retried whole, not message by message. Meanwhile the
//!   mute's row stays pending and reconciliation leaves it to the outbox; once it gives up
//!   (counted in `gmbot_outbox_given_up_total{kind}`), reconciliation applies the mute.
//! - **Bounded.** At most [`OutboxConfig::max_jobs`] deletions and mutes wait (retries
//!   waiting for their time included); beyond that
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
use gmbot_core::telegram::{TelegramApi, MAX_BULK_DELETE};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::app::App;
use crate::flows::enforce::{apply_mute, count, still_open, MuteCall};
use crate::flows::gate::{self, GateJob};
use crate::flows::lift::{unmute_member, Unmuted};
use crate::flows::reconcile;

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
    /// The wait before a deletion, mute or kick that failed transiently is tried again (it
    /// doubles each time, to a minute at most).
    pub retry_first: Duration,
    /// Retries of such a call before it is given up (0: none).
    pub retry_attempts: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            workers: 32,
            per_group_in_flight: 4,
            max_jobs: 100_000,
            retry_first: STORM_FIRST_WAIT,
            retry_attempts: STORM_RETRIES,
        }
    }
}

/// The first wait of the schedule calls (and second looks) follow after a storm outlasted
/// the dispatcher's retries: 2, 4, 8, 16, 32, then 60 s, about six minutes over ten
/// retries, longer than any 429 storm or 5xx window Telegram has been seen to hold.
pub(crate) const STORM_FIRST_WAIT: Duration = Duration::from_secs(2);
/// Retries of that schedule.
pub(crate) const STORM_RETRIES: u32 = 10;
/// The longest wait between two retries of one call.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The wait before retry number `attempt` (1 = the first) of a schedule starting at
/// `first`: it doubles each time, to [`RETRY_MAX`] at most.
pub(crate) fn storm_wait(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(RETRY_MAX)
}

impl OutboxConfig {
    /// The wait before retry number `attempt` (1 = the first).
    fn retry_delay(&self, attempt: u32) -> Duration {
        storm_wait(self.retry_first, attempt)
    }
}

/// A message to delete, and how often its deletion was tried already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deletion {
    message: MessageId,
    /// Retries so far (0: the first call).
    attempt: u32,
}

/// A call queued again after a transient failure.
enum Retry {
    Delete(Vec<Deletion>),
    Mod(ModJob),
}

impl Retry {
    fn kind(&self) -> &'static str {
        match self {
            Retry::Delete(_) => "delete",
            Retry::Mod(ModJob {
                kind: ModKind::Kick,
                ..
            }) => "kick",
            Retry::Mod(_) => "restrict",
        }
    }

    fn jobs(&self) -> usize {
        match self {
            Retry::Delete(d) => d.len(),
            Retry::Mod(_) => 1,
        }
    }

    /// The retry number this one is.
    fn attempt(&self) -> u32 {
        match self {
            Retry::Delete(d) => d.iter().map(|d| d.attempt).max().unwrap_or(0),
            Retry::Mod(j) => j.attempt,
        }
    }
}

/// A mute or kick waiting for its call; its row is already in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModJob {
    pub(crate) user: UserId,
    pub(crate) row: RestrictionId,
    pub(crate) kind: ModKind,
    /// Retries so far after transient failures (0: the first call).
    pub(crate) attempt: u32,
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
    Delete(Vec<Deletion>),
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
    deletes: VecDeque<Deletion>,
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
            let batch: Vec<Deletion> = self.deletes.drain(..n).collect();
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
    /// Deletions, mutes and kicks waiting for their retry's time.
    deferred: usize,
    /// The members whose mute or kick waits for its retry, and its row.
    deferred_mods: HashMap<(GroupId, UserId), RestrictionId>,
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
            ..config
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
        }) || s.deferred_mods.contains_key(&(group, user))
    }

    /// Queues one job unless the outbox is full.
    fn admit(&self, group: GroupId, add: impl FnOnce(&mut GroupQueue)) -> bool {
        {
            let mut s = self.lock();
            if s.jobs + s.deferred >= self.inner.config.max_jobs {
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
        let shed = !self.push(app, group, "delete", |q| {
            q.deletes.push_back(Deletion {
                message,
                attempt: 0,
            });
        });
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

    /// Waits until nothing is queued or in flight (tests, the demo, load runs). Calls waiting
    /// for a retry's time after a transient failure do not count: they are not runnable
    /// until then (see [`Outbox::retries_waiting`]).
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
                .chain(s.deferred_mods.values().copied())
                .collect();
            (s.jobs + s.deferred, rows)
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

    /// Deletions, mutes and kicks waiting for their retry's time after a transient failure.
    pub fn retries_waiting(&self) -> usize {
        self.lock().deferred
    }

    /// Queues `retry` again after its wait, or gives it up after the last attempt (a mute's
    /// row then stays pending for reconciliation).
    fn defer(&self, app: &App, group: GroupId, retry: Retry) {
        let attempt = retry.attempt();
        let kind = retry.kind();
        let give_up = attempt > self.inner.config.retry_attempts;
        let stopping = !give_up && {
            let mut s = self.lock();
            if !s.stopping {
                s.deferred += retry.jobs();
                if let Retry::Mod(job) = &retry {
                    s.deferred_mods.insert((group, job.user), job.row);
                }
            }
            s.stopping
        };
        if stopping {
            log::info!(group_id = group.get(), kind = kind; "outbox stopped: a failed call is not retried here");
            if let Retry::Mod(job) = retry {
                release_pending(app, vec![job.row]);
            }
            return;
        }
        if give_up {
            app.metrics()
                .outbox_given_up
                .with_label_values(&[kind])
                .inc_by(retry.jobs() as u64);
            match retry {
                Retry::Delete(d) => {
                    for _ in &d {
                        count(app, "delete", false);
                    }
                    log::warn!(group_id = group.get(), messages = d.len(), attempts = attempt; "messages left undeleted: Telegram kept failing");
                }
                Retry::Mod(job) => {
                    log::warn!(group_id = group.get(), user_id = job.user.get(), attempts = attempt; "a mute waits for reconciliation: Telegram kept failing");
                    release_pending(app, vec![job.row]);
                }
            }
            return;
        }
        app.metrics()
            .outbox_retries
            .with_label_values(&[kind])
            .inc_by(retry.jobs() as u64);
        let wait = self.inner.config.retry_delay(attempt);
        log::info!(group_id = group.get(), kind = kind, jobs = retry.jobs(), attempt = attempt, wait_ms = wait.as_millis() as u64; "Telegram call failed after its retries; queued again later");
        let outbox = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            outbox.readmit(group, retry);
        });
    }

    /// A retry's time came: back into its group's queue (ahead of newer work of its kind).
    fn readmit(&self, group: GroupId, retry: Retry) {
        let stopped = {
            let mut s = self.lock();
            s.deferred -= retry.jobs();
            if s.stopping {
                // A deferred mute stays listed: the stop releases its row with the others.
                true
            } else {
                if let Retry::Mod(job) = &retry {
                    if s.deferred_mods.get(&(group, job.user)) == Some(&job.row) {
                        s.deferred_mods.remove(&(group, job.user));
                    }
                }
                s.jobs += retry.jobs();
                let q = s.groups.entry(group).or_default();
                match &retry {
                    Retry::Delete(d) => {
                        for &d in d.iter().rev() {
                            q.deletes.push_front(d);
                        }
                    }
                    Retry::Mod(job) => q.mods.push_front(*job),
                }
                let cap = self.cap();
                s.ring_push(group, cap);
                false
            }
        };
        if stopped {
            log::info!(group_id = group.get(), kind = retry.kind(); "outbox stopped: a retry is left to reconciliation");
            return;
        }
        self.inner.wake.notify_one();
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
        Task::Delete(batch) => {
            let again = delete(app, group, &batch).await;
            if !again.is_empty() {
                outbox.defer(app, group, Retry::Delete(again));
            }
        }
        Task::Mod(job) => match moderate(app, group, job).await {
            Ok(Settled::Done) => {}
            Ok(Settled::Transient) => outbox.defer(
                app,
                group,
                Retry::Mod(ModJob {
                    attempt: job.attempt + 1,
                    ..job
                }),
            ),
            Err(err) => {
                log::warn!(group_id = group.get(), user_id = job.user.get(), error:display = err; "cannot record a mute: the store failed; reconciliation will finish it");
            }
        },
        Task::Warn(batch) => warnings::send(outbox, app, group, batch).await,
    }
}

/// One `deleteMessages` call; where it is refused (an older server without the method, a
/// message that cannot be deleted), one `deleteMessage` each. Returns the deletions to try
/// again later, their attempt counted: the whole batch when the bulk call failed
/// transiently (a storm that outlasted the dispatcher's retries would fail each single
/// call too), else the single calls that did.
async fn delete(app: &App, group: GroupId, batch: &[Deletion]) -> Vec<Deletion> {
    let telegram = app.telegram_in(Lane::Enforcement);
    let again = |d: &Deletion| Deletion {
        message: d.message,
        attempt: d.attempt + 1,
    };
    let ids: Vec<MessageId> = batch.iter().map(|d| d.message).collect();
    if ids.len() > 1 {
        match telegram.delete_messages(group.into(), &ids).await {
            Ok(()) => {
                for _ in &ids {
                    count(app, "delete", true);
                }
                return Vec::new();
            }
            Err(err) if err.is_temporary() => {
                log::info!(group_id = group.get(), messages = ids.len(), error:display = err; "deleteMessages failed after its retries");
                return batch.iter().map(again).collect();
            }
            Err(err) => {
                log::info!(group_id = group.get(), messages = ids.len(), error:display = err; "deleteMessages failed; deleting one by one");
            }
        }
    }
    let mut retry = Vec::new();
    for d in batch {
        match telegram.delete_message(group.into(), d.message).await {
            Ok(()) => count(app, "delete", true),
            Err(err) if err.is_temporary() => {
                log::info!(group_id = group.get(), message_id = d.message.0, error:display = err; "deleteMessage failed after its retries");
                retry.push(again(d));
            }
            Err(err) => {
                count(app, "delete", false);
                log::info!(group_id = group.get(), message_id = d.message.0, error:display = err; "cannot delete a message");
            }
        }
    }
    retry
}

/// How a mute or kick ended.
enum Settled {
    /// Applied, refused, or no longer wanted: nothing more to do.
    Done,
    /// A transient failure after the dispatcher's retries: worth another call later.
    Transient,
}

/// Applies a recorded mute or kick and settles its row.
async fn moderate(
    app: &App,
    group: GroupId,
    job: ModJob,
) -> Result<Settled, gmbot_core::store::StoreError> {
    let telegram = app.telegram_in(Lane::Enforcement);
    let store = app.store();
    let close = |reason| store.lift_restriction(group, job.row, reason, app.clock().unix_now());
    if job.attempt > 0 {
        // A retry waited outside the queue, where a lift does not cancel it, and during a
        // storm that may have failed the member's lift too: the row may be closed, or the
        // member subscribed, since. Asked afresh, as reconciliation would.
        if !still_open(app, group, job.user, job.row).await? {
            log::info!(group_id = group.get(), user_id = job.user.get(); "retry dropped: its row was closed meanwhile");
            return Ok(Settled::Done);
        }
        // A group no longer enforced restricts nobody (reconciliation lifts its rows).
        let Some(config) = store.group(group).await?.filter(|g| g.is_enforced()) else {
            return Ok(Settled::Done);
        };
        match reconcile::subscribed(app, &telegram, &config, job.user).await {
            Some(true) => {
                log::info!(group_id = group.get(), user_id = job.user.get(); "retry dropped: the member subscribed meanwhile");
                if matches!(job.kind, ModKind::Kick) {
                    close(LiftReason::Joined).await?;
                } else {
                    unmute_member(app, &telegram, group, job.user, LiftReason::Joined).await?;
                }
                return Ok(Settled::Done);
            }
            // Telegram still failing: wait more.
            None => return Ok(Settled::Transient),
            Some(false) => {}
        }
    }
    match job.kind {
        ModKind::Mute { until, pending } => {
            let call = apply_mute(app, &telegram, group, job.user, job.row, until, pending).await?;
            if call == MuteCall::Transient {
                return Ok(Settled::Transient);
            }
        }
        ModKind::Kick => {
            let result = telegram.kick_member(group, job.user).await;
            count(app, "kick", result.is_ok());
            match result {
                Ok(()) => {
                    store.confirm_restriction(group, job.row).await?;
                    close(LiftReason::Expired).await?;
                    log::info!(group_id = group.get(), user_id = job.user.get(); "member removed");
                }
                Err(err) if err.is_temporary() => {
                    app.metrics().errors.with_label_values(&["kick"]).inc();
                    log::warn!(group_id = group.get(), user_id = job.user.get(), error:display = err; "cannot remove a member yet");
                    return Ok(Settled::Transient);
                }
                Err(err) => {
                    app.metrics().errors.with_label_values(&["kick"]).inc();
                    log::warn!(group_id = group.get(), user_id = job.user.get(), error:display = err; "cannot remove a member");
                    close(LiftReason::NotApplied).await?;
                }
            }
        }
    }
    Ok(Settled::Done)
}

#[cfg(test)]
mod tests;
