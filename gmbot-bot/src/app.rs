//! `App`: the wired-up bot — store, engine, cache, dispatcher, clock, metrics — shared by every handler.
//!
//! `main.rs`, the demo and the tests build one `App` from [`AppDeps`] in one
//! visible place; handlers only ever receive `&App`. Every Telegram call a
//! handler makes goes through [`App::telegram`], which is the dispatcher
//! (rate limits, priority lanes, 429 and 5xx handling).

use std::sync::Arc;

use anyhow::Context as _;
use gmbot_core::cache::MembershipCache;
use gmbot_core::clock::Clock;
use gmbot_core::dispatch::{DispatchConfig, Dispatcher, Lane, LaneApi, SharedBudgetOptions};
use gmbot_core::domain::UserId;
use gmbot_core::engine::{Engine, EngineConfig, EnginePorts};
use gmbot_core::store::Store;
use gmbot_core::telegram::TelegramApi;
use prometheus::Registry;

use crate::flows::{FlowConfig, FlowState, RaidWatch};
use crate::group_stats::GroupStats;
use crate::metrics::BotMetrics;
use crate::outbox::{Outbox, OutboxConfig};

/// Who the bot is (from `getMe`), for `/cmd@username` addressing and admin checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    /// The bot's user id.
    pub id: UserId,
    /// The bot's username without `@`.
    pub username: String,
}

/// Everything an [`App`] is built from.
pub struct AppDeps {
    /// The bot's identity.
    pub me: BotIdentity,
    /// The tenancy store.
    pub store: Arc<dyn Store>,
    /// The raw Telegram frontend (Bot API client or in-memory); wrapped in the dispatcher here.
    pub telegram: Arc<dyn TelegramApi>,
    /// The membership cache.
    pub cache: Arc<dyn MembershipCache>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Rate-limit budgets and retry policy.
    pub dispatch: DispatchConfig,
    /// Engine cache tunables.
    pub engine: EngineConfig,
    /// The registry every component records into (served at `/metrics`).
    pub registry: Registry,
}

/// The wired-up bot. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    me: BotIdentity,
    store: Arc<dyn Store>,
    cache: Arc<dyn MembershipCache>,
    clock: Arc<dyn Clock>,
    dispatcher: Dispatcher,
    telegram: Arc<dyn TelegramApi>,
    engine: Engine,
    registry: Registry,
    metrics: BotMetrics,
    flows: FlowState,
    outbox: Outbox,
    started_at: gmbot_core::domain::UnixTime,
    group_stats: GroupStats,
}

impl App {
    /// Wires the components and registers every metric in `deps.registry`.
    ///
    /// Must be called inside a tokio runtime: it starts the flows' background
    /// tasks (seen-member flushes, warning deletions); stop them with [`App::shutdown`].
    pub fn new(deps: AppDeps) -> anyhow::Result<Self> {
        Self::with_flows(deps, FlowConfig::default())
    }

    /// Like [`App::new`], with the flows' tunables.
    pub fn with_flows(deps: AppDeps, flows: FlowConfig) -> anyhow::Result<Self> {
        Self::with_options(deps, flows, OutboxConfig::default())
    }

    /// Like [`App::new`], with the flows' and the outbox's tunables.
    pub fn with_options(
        deps: AppDeps,
        flows: FlowConfig,
        outbox: OutboxConfig,
    ) -> anyhow::Result<Self> {
        Self::with_budget(deps, flows, outbox, None)
    }

    /// Like [`App::with_options`]; with `budget`, the dispatcher spends the bot's budgets
    /// shared with every other instance (see `gmbot_core::dispatch::SharedBudget`) instead
    /// of its own.
    pub fn with_budget(
        deps: AppDeps,
        flows: FlowConfig,
        outbox: OutboxConfig,
        budget: Option<SharedBudgetOptions>,
    ) -> anyhow::Result<Self> {
        let dispatcher = match budget {
            Some(budget) => {
                Dispatcher::with_shared_budget(deps.telegram, deps.dispatch, budget, &deps.registry)
            }
            None => Dispatcher::new(deps.telegram, deps.dispatch, &deps.registry),
        }
        .context("cannot start the Telegram dispatcher")?;
        let telegram: Arc<dyn TelegramApi> = Arc::new(dispatcher.clone());
        let engine = Engine::new(
            EnginePorts {
                store: deps.store.clone(),
                telegram: telegram.clone(),
                cache: deps.cache.clone(),
                clock: deps.clock.clone(),
            },
            deps.engine,
            &deps.registry,
        )
        .context("cannot register the engine's metrics")?;
        let metrics =
            BotMetrics::register(&deps.registry).context("cannot register the bot's metrics")?;
        let raids = RaidWatch::new(
            flows.raid,
            metrics.raids.clone(),
            metrics.groups_under_raid.clone(),
        );
        let flows = FlowState::start(
            flows,
            deps.store.clone(),
            Arc::new(dispatcher.lane(Lane::Notify)),
            metrics.errors.clone(),
            raids,
        )
        .context("cannot start the enforcement flows")?;
        let started_at = deps.clock.unix_now();
        let app = Self {
            inner: Arc::new(Inner {
                me: deps.me,
                store: deps.store,
                cache: deps.cache,
                clock: deps.clock,
                dispatcher,
                telegram,
                engine,
                registry: deps.registry,
                metrics,
                flows,
                outbox: Outbox::new(outbox),
                started_at,
                group_stats: GroupStats::new(),
            }),
        };
        app.inner.outbox.start(&app);
        Ok(app)
    }

    /// The bot's identity.
    pub fn me(&self) -> &BotIdentity {
        &self.inner.me
    }

    /// The tenancy store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The membership cache.
    pub fn cache(&self) -> &Arc<dyn MembershipCache> {
        &self.inner.cache
    }

    /// Time.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Telegram through the dispatcher, each method in its default lane.
    pub fn telegram(&self) -> &Arc<dyn TelegramApi> {
        &self.inner.telegram
    }

    /// Telegram through the dispatcher with every call in `lane`
    /// (e.g. [`Lane::Interactive`] for the "I've joined" button, [`Lane::Bulk`] for reconciliation).
    pub fn telegram_in(&self, lane: Lane) -> LaneApi {
        self.inner.dispatcher.lane(lane)
    }

    /// The dispatcher itself (queue depths, pauses).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// The verification engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The registry served at `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The bot's own metrics.
    pub fn metrics(&self) -> &BotMetrics {
        &self.inner.metrics
    }

    /// Per-group verification counters for `/status` (metrics labels never carry group ids).
    pub fn group_stats(&self) -> &GroupStats {
        &self.inner.group_stats
    }

    /// Where handlers leave the actions that wait for a Telegram budget.
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// When this app was built (app clock): restriction rows pending from before it belong
    /// to a previous process, whose calls died with it.
    pub fn started_at(&self) -> gmbot_core::domain::UnixTime {
        self.inner.started_at
    }

    /// The flows' in-process state (seen-member batcher, warning timers, cool-downs).
    pub fn flows(&self) -> &FlowState {
        &self.inner.flows
    }

    /// Stops the background tasks the app owns: lets the outbox finish what is queued
    /// (within [`OUTBOX_DRAIN`]; mutes still waiting keep their pending rows for the next
    /// start's reconciliation, and are released to the other instances when there are
    /// several), writes the waiting seen members and stops the warning timers
    /// (warnings not yet due stay in their groups). Call it once the transports stopped
    /// handing updates in. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.outbox.shutdown(self, OUTBOX_DRAIN).await;
        self.inner.flows.shutdown().await;
    }
}

/// How long [`App::shutdown`] lets the outbox work through what is queued.
pub const OUTBOX_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
