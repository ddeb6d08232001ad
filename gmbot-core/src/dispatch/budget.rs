//! The shared budget port: Telegram's per-bot budgets kept in one store that every instance draws on.
//!
//! Telegram counts a bot's calls per bot, not per process: three instances
//! each spending 30 messages/s send 90. With a [`SharedBudget`] the
//! [`Dispatcher`](super::Dispatcher) takes its tokens from a store all instances
//! share ([`RedisBudget`](super::RedisBudget) is the adapter), so the budgets of
//! [`DispatchConfig`](super::DispatchConfig) hold for the bot as a whole.
//!
//! **Slots, not tokens.** The store runs GCRA (the generic cell rate
//! algorithm, a token bucket kept as one "theoretical arrival time" per
//! bucket) on **its own clock**, so instances never need to agree on the
//! time. A reservation answers with *slots*: instants, as delays from the
//! store's "now", at which the caller may make one call each. A slot may be
//! used from its instant until `grace` after it, never later (a late slot is
//! dropped unused): a late use would crowd the next slot, which may belong
//! to another instance. After the grant a call still takes a moment to reach
//! Telegram, more for one call than for another (a task wake-up, a
//! connection); `spread` allows for that difference. The store spaces slots
//! by `(period + grace + spread) / rate`, so that with every call reaching
//! Telegram up to `grace + spread` after its slot no window of one period
//! sees more than `rate` calls there (the cost: 7 % of a 30/s budget with the
//! defaults, 20 ms and 50 ms). A `spread` of 20 ms was measured too small: with
//! three dispatchers in one loaded debug test process, 31 restrictions reached
//! Telegram within one second.
//!
//! **Batches.** One round trip reserves slots for every bucket that calls
//! are waiting on, up to `horizon` ahead of the store's now, so under load an
//! instance makes about one round trip per bucket per horizon, not one per call.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::ChatId;

/// One bucket of the bot's budget, as the store names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetBucket {
    /// The global message budget (`global_per_second`).
    Write,
    /// The restrict budget (`actions_per_second`).
    Restrict,
    /// The delete budget (`deletes_per_second`).
    Delete,
    /// The read budget (`reads_per_second`), when configured.
    Read,
    /// The bulk read budget (`bulk_reads_per_second`), when configured.
    BulkRead,
    /// One chat's message budget (20/min in a group, 1/s in a private chat).
    Chat(ChatId),
}

/// How fast a bucket refills, as the store applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRate {
    /// Time between two slots: `(period + grace + spread) / rate`.
    pub interval: Duration,
    /// Slots that may fall on one instant after an idle period (1 = evenly spaced).
    pub burst: u32,
}

/// Slots wanted on a set of buckets: each slot draws on every bucket listed
/// (a message: the global budget and its chat's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    /// The buckets (one or two) and their rates.
    pub buckets: Vec<(BudgetBucket, BucketRate)>,
    /// Slots wanted (at least 1).
    pub count: u32,
}

/// Parameters of one reservation round trip, the same for every request in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveOptions {
    /// Slots further than this ahead of the store's now are not reserved.
    pub horizon: Duration,
    /// How late after its slot a call may reach Telegram (the dispatcher's
    /// grace plus spread); the first slot after a return from the local
    /// fallback comes at least `grace + resume_gap × interval` after the
    /// moment recorded by [`SharedBudget::resume`].
    pub grace: Duration,
    /// See `grace`: the number of instances plus one (the argument is in
    /// `docs/operations.md`, "One budget for several instances").
    pub resume_gap: u32,
}

/// The answer to one [`SlotRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    /// The slots granted, as delays from the store's now, in increasing order.
    pub slots: Vec<Duration>,
    /// Fewer slots than asked: ask again after this long (the next slot is
    /// then within the horizon). `None` if every slot asked for was granted
    /// or the chat is paused.
    pub retry_in: Option<Duration>,
    /// The chat of this request is paused (a 429 seen by any instance) for this long.
    pub paused_for: Option<Duration>,
}

/// What one reservation round trip returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReserveAnswer {
    /// The whole bot is paused for this long (a bot-wide 429 seen by any
    /// instance); nothing was reserved.
    pub paused_for: Option<Duration>,
    /// One answer per request, in order (empty while paused).
    pub reservations: Vec<Reservation>,
}

/// What a heartbeat returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Instances that sent a heartbeat within the heartbeat lifetime, this one included.
    pub live_instances: u32,
    /// The whole bot is paused for this long.
    pub paused_for: Option<Duration>,
}

/// Why the shared budget could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The store did not answer in time or the connection failed.
    #[error("the shared budget at {target} is unavailable: {reason}")]
    Unavailable {
        /// Where the store is (password masked).
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// The store answered something that is not a budget answer (a key
    /// holding a foreign value, a reply of the wrong shape).
    #[error("the shared budget at {target} answered garbage: {reason}")]
    Protocol {
        /// Where the store is (password masked).
        target: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A setting is out of range or the URL is not a store URL.
    #[error("invalid shared budget setting: {0}")]
    Config(String),
}

/// A store of the bot's budgets shared by every instance.
///
/// Every method is one round trip, bounded by the adapter's timeout; an
/// error makes the dispatcher fall back to its local share of the budget.
#[async_trait]
pub trait SharedBudget: Send + Sync {
    /// Where the store is, for logs (no secrets).
    fn target(&self) -> &str;

    /// Reserves slots for every request, atomically, in one round trip.
    async fn reserve(
        &self,
        requests: &[SlotRequest],
        options: ReserveOptions,
    ) -> Result<ReserveAnswer, BudgetError>;

    /// Records that `instance` is alive for `lifetime` and counts the live instances.
    async fn heartbeat(&self, instance: &str, lifetime: Duration)
        -> Result<Heartbeat, BudgetError>;

    /// Records that an instance spent its local fallback budget until now and
    /// returns to the shared one `settle` from now: no slot is reserved before
    /// `settle + grace + resume_gap × interval` from now (see [`ReserveOptions`]).
    async fn resume(&self, settle: Duration) -> Result<(), BudgetError>;

    /// Pauses `chat` (`None`: the whole bot) for `duration` on every instance.
    async fn pause(&self, chat: Option<ChatId>, duration: Duration) -> Result<(), BudgetError>;
}

/// How a [`Dispatcher`](super::Dispatcher) uses a [`SharedBudget`].
#[derive(Clone)]
pub struct SharedBudgetOptions {
    /// The store.
    pub budget: Arc<dyn SharedBudget>,
    /// The number of instances the operator runs (`GMBOT_INSTANCES`), if
    /// configured. In a fallback each instance takes `1/N` of each budget,
    /// with `N` the **larger** of this and the live instances counted by the
    /// last heartbeat: underestimating `N` is what would exceed the budget.
    pub instances: Option<u32>,
    /// Slots are reserved up to this far ahead (default 200 ms).
    pub horizon: Duration,
    /// How late a slot may be used (default 20 ms: the round trip and the
    /// scheduler's wake-up both eat into it); see the [module docs](self).
    pub grace: Duration,
    /// How much more one call may take than another from its grant to
    /// Telegram (default 50 ms); slots and local shares are spaced to allow
    /// for it. See the [module docs](self).
    pub spread: Duration,
    /// Time between heartbeats (default 1 s).
    pub heartbeat_interval: Duration,
    /// An instance counts as live this long after its last heartbeat (default 5 s).
    pub heartbeat_lifetime: Duration,
    /// During an outage, time between two attempts to reach the store (default 500 ms).
    pub probe_interval: Duration,
    /// After the store answers again, the instance keeps its local share this
    /// long before it returns to the shared budget, so that every instance
    /// has noticed and recorded its own fallback (default 1 s: more than a
    /// probe interval plus one call's timeout).
    pub settle: Duration,
}

impl SharedBudgetOptions {
    /// Defaults around `budget`.
    pub fn new(budget: Arc<dyn SharedBudget>) -> Self {
        Self {
            budget,
            instances: None,
            horizon: Duration::from_millis(200),
            grace: Duration::from_millis(20),
            spread: Duration::from_millis(50),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_lifetime: Duration::from_secs(5),
            probe_interval: Duration::from_millis(500),
            settle: Duration::from_secs(1),
        }
    }

    /// Checks that the durations are usable.
    pub fn validate(&self) -> Result<(), BudgetError> {
        let bad = |what: &str| Err(BudgetError::Config(what.to_owned()));
        if self.instances == Some(0) {
            return bad("the number of instances must be at least 1");
        }
        if self.horizon.is_zero() || self.grace.is_zero() {
            return bad("the reservation horizon and grace must be greater than zero");
        }
        if self.heartbeat_interval.is_zero() || self.probe_interval.is_zero() {
            return bad("the heartbeat and probe intervals must be greater than zero");
        }
        if self.heartbeat_lifetime <= self.heartbeat_interval {
            return bad("the heartbeat lifetime must be longer than the heartbeat interval");
        }
        if self.settle < self.probe_interval {
            return bad("the settle time must not be shorter than the probe interval");
        }
        Ok(())
    }
}

impl fmt::Debug for SharedBudgetOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBudgetOptions")
            .field("target", &self.budget.target())
            .field("instances", &self.instances)
            .field("horizon", &self.horizon)
            .field("grace", &self.grace)
            .field("spread", &self.spread)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_lifetime", &self.heartbeat_lifetime)
            .field("probe_interval", &self.probe_interval)
            .field("settle", &self.settle)
            .finish()
    }
}
