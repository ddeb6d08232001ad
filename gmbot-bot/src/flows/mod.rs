//! The enforcement flows the handlers drive: performing verdicts, warnings,
//! lifting restrictions, channel joins and leaves, the bot's own status,
//! migrations, reconciliation and seen-member batching.
//!
//! Handlers parse an update and pick a flow; flows talk to the store, the
//! engine and Telegram (always through the dispatcher). The in-process state
//! the flows share — warning cool-downs and timers, notice de-duplication,
//! the seen-member batcher — lives in [`FlowState`], owned by the
//! [`App`](crate::app::App), whose background tasks stop on
//! [`App::shutdown`](crate::app::App::shutdown). With several webhook instances on one
//! Redis, cool-downs, join de-duplication and notices are claimed there first and periodic
//! jobs run under leases ([`shared`], [`periodic`]).

pub mod bot_status;
pub mod enforce;
pub mod gate;
pub mod join;
pub mod joined_button;
pub mod lift;
pub mod migration;
pub mod notice;
pub mod periodic;
pub mod raid;
pub mod recheck;
pub mod reconcile;
pub mod resolve;
pub mod second_look;
pub mod seen;
pub mod sender_chat;
pub mod shared;
pub mod warm_up;
pub mod warn;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use gmbot_core::domain::{GroupId, UserId};
use gmbot_core::store::Store;
use gmbot_core::telegram::TelegramApi;
use moka::future::Cache;
use prometheus::IntCounterVec;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::lift::{lift_group, LiftSummary};
pub use self::raid::{RaidConfig, RaidStatus, RaidWatch};
pub use self::reconcile::{
    reconcile_fenced, reconcile_once, spawn_reconciler, ReconcileReport, ReconcilerGuard,
};
pub use self::seen::SeenRecorder;
pub use self::shared::Shared;
pub use self::warm_up::{spawn_warm_up, WarmUpGuard};
pub use self::warn::WarningTimers;

/// Tunables of the flows' in-process state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// How often waiting seen-member rows are written (default 1 s).
    pub seen_flush_interval: Duration,
    /// Write at once when this many distinct members are waiting (default 1,000).
    pub seen_max_batch: usize,
    /// How long the admins are not told again about the same channel problem (default 6 h).
    pub notice_interval: Duration,
    /// Upper bound on the (group, member) entries of the cool-down and de-duplication caches.
    pub max_members: u64,
    /// What counts as a raid.
    pub raid: RaidConfig,
    /// How long a member waits between two "I've joined" re-checks (default 5 s).
    pub recheck_cooldown: Duration,
    /// "I've joined" re-checks per second for the whole bot (default 10), their own read
    /// budget: button presses cannot spend the reads message checks need.
    pub rechecks_per_second: u32,
    /// Re-checks that may go at once after a quiet period (default 20).
    pub recheck_burst: u32,
    /// What a seen channel join or leave does to the cache (`GMBOT_CACHE_MODE`):
    /// invalidate the entry (`ttl`, default) or write the event's status (`events`).
    pub cache_mode: gmbot_core::cache::CacheMode,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            seen_flush_interval: Duration::from_secs(1),
            seen_max_batch: 1_000,
            notice_interval: Duration::from_secs(6 * 3600),
            max_members: 1_000_000,
            raid: RaidConfig::default(),
            recheck_cooldown: Duration::from_secs(5),
            rechecks_per_second: 10,
            recheck_burst: 20,
            cache_mode: gmbot_core::cache::CacheMode::Ttl,
        }
    }
}

/// A join reported twice (the `new_chat_members` message and the `chat_member`
/// update) is handled once if the second copy arrives within this window.
const JOIN_DEDUP_WINDOW: Duration = Duration::from_secs(60);

/// How long a member let in by the join gate is not checked again when their join arrives.
const ADMITTED_WINDOW: Duration = Duration::from_secs(600);

/// The flows' shared in-process state and background tasks.
pub struct FlowState {
    config: FlowConfig,
    seen: SeenRecorder,
    timers: WarningTimers,
    cooldowns: warn::Cooldowns,
    rechecks: recheck::RecheckGate,
    notices: Cache<(GroupId, String), ()>,
    joins: Cache<(GroupId, UserId), ()>,
    read_ahead_status: Cache<(GroupId, UserId), gmbot_core::domain::ChatMemberStatus>,
    admitted: Cache<(GroupId, UserId), ()>,
    members: MemberLocks,
    raids: RaidWatch,
    resolve_gate: resolve::ResolveGate,
    /// Claims and leases shared with the other instances, if several run (see [`shared`]).
    shared: OnceLock<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for FlowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowState")
            .field("config", &self.config)
            .field("seen", &self.seen)
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

/// Statuses read ahead, at most (a raid's worth; beyond, the oldest go).
const READ_AHEAD_STATUSES: u64 = 20_000;

/// How long a status read ahead may stand in for reading it at the mute.
const READ_AHEAD_STATUS_TTL: Duration = Duration::from_secs(30);

impl FlowState {
    /// Creates the state and starts its tasks (seen-member flushes, warning
    /// deletions) on the current tokio runtime. `telegram` is what the
    /// deletions go through (the dispatcher's notification lane).
    pub(crate) fn start(
        config: FlowConfig,
        store: Arc<dyn Store>,
        telegram: Arc<dyn TelegramApi>,
        errors: IntCounterVec,
        raids: RaidWatch,
    ) -> anyhow::Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            anyhow::bail!(
                "the app must be built inside a tokio runtime (it starts background tasks)"
            );
        }
        let (shutdown, rx) = watch::channel(false);
        let seen = SeenRecorder::new(store, config.seen_max_batch, errors);
        let timers = WarningTimers::new();
        let tasks = vec![
            seen.spawn(config.seen_flush_interval, rx.clone()),
            timers.spawn(telegram, rx),
        ];
        Ok(Self {
            config,
            seen,
            timers,
            cooldowns: warn::Cooldowns::new(config.max_members),
            rechecks: recheck::RecheckGate::new(
                config.recheck_cooldown,
                config.rechecks_per_second,
                config.recheck_burst,
                config.max_members,
            ),
            notices: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.notice_interval)
                .build(),
            joins: Cache::builder()
                .max_capacity(config.max_members)
                .time_to_live(JOIN_DEDUP_WINDOW)
                .build(),
            read_ahead_status: Cache::builder()
                .max_capacity(READ_AHEAD_STATUSES)
                .time_to_live(READ_AHEAD_STATUS_TTL)
                .build(),
            admitted: Cache::builder()
                .max_capacity(config.max_members)
                .time_to_live(ADMITTED_WINDOW)
                .build(),
            members: MemberLocks::new(),
            raids,
            resolve_gate: resolve::ResolveGate::default(),
            shared: OnceLock::new(),
            shutdown,
            tasks: Mutex::new(tasks),
        })
    }

    /// The tunables.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// The seen-member batcher.
    pub fn seen(&self) -> &SeenRecorder {
        &self.seen
    }

    /// The warning deletion timers.
    pub fn timers(&self) -> &WarningTimers {
        &self.timers
    }

    /// Serialises work on one (group, member): enforce, lift, "I've joined", a channel join.
    /// Hold the guard while reading and writing the member's restriction rows and queueing
    /// their actions (never across a send: those wait in the outbox).
    pub async fn member_lock(&self, group: GroupId, user: UserId) -> MemberGuard<'_> {
        self.members.lock(group, user).await
    }

    /// Group-member statuses read ahead for members about to be muted (see
    /// [`enforce::read_status_ahead`]); taken (and removed) by the mute.
    pub(crate) fn read_ahead_status(
        &self,
    ) -> &Cache<(GroupId, UserId), gmbot_core::domain::ChatMemberStatus> {
        &self.read_ahead_status
    }

    /// Raid detection.
    pub fn raids(&self) -> &RaidWatch {
        &self.raids
    }

    /// Limits how often a group's unresolved channels are looked up.
    pub(crate) fn resolve_gate(&self) -> &resolve::ResolveGate {
        &self.resolve_gate
    }

    /// The "I've joined" re-check gate (cool-down and budget).
    pub fn rechecks(&self) -> &recheck::RecheckGate {
        &self.rechecks
    }

    /// Shares claims and leases with the other instances from now on (see [`shared`]).
    /// Set once, before updates flow; a second call is ignored and returns `false`.
    pub fn share(&self, shared: Shared) -> bool {
        self.shared.set(shared).is_ok()
    }

    /// The claims and leases shared with the other instances, if several run.
    pub fn shared(&self) -> Option<&Shared> {
        self.shared.get()
    }

    /// `true` the first time a notice with this key is asked for in `notice_interval`
    /// (across instances when shared).
    pub(crate) async fn claim_notice(&self, group: GroupId, key: String) -> bool {
        if let Some(shared) = self.shared.get() {
            let claim = format!("n:{}:{key}", group.get());
            match shared
                .claim("notice", &claim, self.config.notice_interval)
                .await
            {
                shared::Claimed::Unavailable => {}
                answer => {
                    self.notices.insert((group, key), ()).await;
                    return answer == shared::Claimed::Won;
                }
            }
        }
        self.notices
            .entry((group, key))
            .or_insert(())
            .await
            .is_fresh()
    }

    /// `true` the first time this join is reported within a minute (across instances when
    /// shared).
    pub(crate) async fn claim_join(&self, group: GroupId, user: UserId) -> bool {
        if let Some(shared) = self.shared.get() {
            let claim = format!("j:{}:{}", group.get(), user.get());
            match shared.claim("join", &claim, JOIN_DEDUP_WINDOW).await {
                shared::Claimed::Unavailable => {}
                answer => {
                    self.joins.insert((group, user), ()).await;
                    return answer == shared::Claimed::Won;
                }
            }
        }
        self.joins
            .entry((group, user))
            .or_insert(())
            .await
            .is_fresh()
    }

    /// Claims the right to warn `user` in `group` now (`now_ms` on the app's clock): `false`
    /// if a warning went out less than `cooldown` ago — on any instance, when shared; on this
    /// one, when Redis does not answer.
    pub(crate) async fn claim_warning(
        &self,
        group: GroupId,
        user: UserId,
        cooldown: Duration,
        now_ms: u64,
    ) -> bool {
        if let Some(shared) = self.shared.get() {
            let claim = format!("w:{}:{}", group.get(), user.get());
            match shared.claim("warning", &claim, cooldown).await {
                shared::Claimed::Won => {
                    self.cooldowns.record(group, user, now_ms).await;
                    return true;
                }
                shared::Claimed::Lost => return false,
                shared::Claimed::Unavailable => {}
            }
        }
        self.cooldowns
            .try_claim(group, user, cooldown, now_ms)
            .await
    }

    /// Forgets `user`'s warning cool-down in `group` (they joined: a later leave warns at
    /// once), here and on the other instances.
    pub(crate) async fn forget_warning(&self, group: GroupId, user: UserId) {
        self.cooldowns.forget(group, user).await;
        if let Some(shared) = self.shared.get() {
            shared
                .forget(&format!("w:{}:{}", group.get(), user.get()))
                .await;
        }
    }

    /// Notes that the join gate is letting `user` into `group`: their join, when it arrives,
    /// is not checked again (they were checked a moment ago).
    pub(crate) async fn mark_admitted(&self, group: GroupId, user: UserId) {
        self.admitted.insert((group, user), ()).await;
    }

    /// Forgets [`Self::mark_admitted`]: the approval failed.
    pub(crate) async fn forget_admitted(&self, group: GroupId, user: UserId) {
        self.admitted.invalidate(&(group, user)).await;
    }

    /// Whether the join gate let `user` into `group` in the last ten minutes (this process).
    pub(crate) async fn was_admitted(&self, group: GroupId, user: UserId) -> bool {
        self.admitted.get(&(group, user)).await.is_some()
    }

    /// Stops the background tasks: warnings not yet due stay, waiting seen
    /// members are written. Idempotent.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            if let Err(err) = task.await {
                log::warn!(error:display = err; "a background task ended abnormally");
            }
        }
        // Anything recorded after the flush task's last pass.
        if let Err(err) = self.seen.flush().await {
            log::warn!(error:display = err; "cannot write the last seen members");
        }
    }
}

/// Striped async locks keyed by (group, member): a fixed table, so memory does not grow with
/// the members seen; two members sharing a stripe only wait for each other briefly.
struct MemberLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// Held while working on one (group, member).
pub type MemberGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

const MEMBER_STRIPES: usize = 1024;

impl MemberLocks {
    fn new() -> Self {
        Self {
            stripes: (0..MEMBER_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    async fn lock(&self, group: GroupId, user: UserId) -> MemberGuard<'_> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (group, user).hash(&mut h);
        let i = (h.finish() % MEMBER_STRIPES as u64) as usize;
        self.stripes[i].lock().await
    }
}

impl Drop for FlowState {
    fn drop(&mut self) {
        // Without a shutdown, the tasks end with the runtime; tell them anyway.
        self.shutdown.send_replace(true);
    }
}
