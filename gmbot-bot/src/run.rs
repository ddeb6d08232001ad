//! The bot's wiring, in one visible place: configuration → store → cache → Bot API →
//! `getMe` → [`App`] → update runtime → HTTP listener → polling or webhook → drain.
//!
//! [`Bot::start`] builds everything and binds the listener; [`Bot::run`] receives updates
//! until the shutdown signal, then stops taking updates, drains what is queued and in flight
//! (bounded) and flushes. `main.rs`, the demo, the end-to-end tests and the load benchmark all
//! run the bot through here, so they run the same bot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gmbot_core::cache::{
    LayeredCache, LayeredCacheConfig, MembershipCache, MemoryCache, MemoryCacheConfig,
};
use gmbot_core::clock::{Clock, SystemClock};
use gmbot_core::coordination::{
    GroupEvent, RedisCoordination, RedisCoordinationConfig, SubscriptionGuard,
};
use gmbot_core::dispatch::{DispatchConfig, RedisBudget, RedisBudgetConfig, SharedBudgetOptions};
use gmbot_core::domain::UserId;
use gmbot_core::engine::EngineConfig;
use gmbot_core::store::{self, StoreError};
use gmbot_core::telegram::TelegramError;
use prometheus::Registry;
use url::Url;

use crate::app::{App, AppDeps, BotIdentity};
use crate::botapi::{BotApi, BotApiOptions};
use crate::config::Config;
use crate::http::{self, HttpRoutes, HttpServerGuard};
use crate::runtime::{
    DrainReport, RedisClaims, Runtime, RuntimeConfig, RuntimeMonitor, RuntimeStats, Shutdown,
};
use crate::transport::polling::{self, PollingOptions};
use crate::transport::webhook::{self, WebhookIngress};
use crate::transport::Mode;

/// Tunables that are not environment variables (tests, the demo and benchmarks set them).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Queue, workers, drain deadline (claims are filled in from `REDIS_URL`).
    pub runtime: RuntimeConfig,
    /// Telegram budgets and retries.
    pub dispatch: DispatchConfig,
    /// Engine cache tunables.
    pub engine: EngineConfig,
    /// `getUpdates` timeout.
    pub long_poll: Duration,
    /// Polling backoff.
    pub polling: PollingOptions,
    /// `max_connections` for `setWebhook`.
    pub max_connections: u32,
    /// Largest webhook body accepted.
    pub max_body: usize,
    /// HTTP listener threads.
    pub http_threads: usize,
    /// Prefix of every Redis key and channel this bot uses (tests give each run its own).
    pub redis_prefix: String,
    /// How long an update id stays claimed in Redis.
    pub claim_ttl: Duration,
    /// Attempts at `getMe` (and `setWebhook`) before giving up when Telegram is unreachable.
    pub startup_attempts: u32,
    /// How often the reconciliation pass runs (it also runs at start).
    pub reconcile_interval: Duration,
    /// What counts as a raid.
    pub raid: crate::flows::RaidConfig,
    /// How often the join gate looks for requests whose wait ran out (it also looks at start).
    pub gate_sweep_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::default(),
            dispatch: DispatchConfig::default(),
            engine: EngineConfig::default(),
            long_poll: Duration::from_secs(30),
            polling: PollingOptions::default(),
            max_connections: webhook::DEFAULT_MAX_CONNECTIONS,
            max_body: http::DEFAULT_MAX_BODY,
            http_threads: http::DEFAULT_THREADS,
            redis_prefix: "gmbot:".to_owned(),
            claim_ttl: Duration::from_secs(3600),
            startup_attempts: 5,
            reconcile_interval: Duration::from_secs(300),
            raid: crate::flows::RaidConfig::default(),
            gate_sweep_interval: crate::flows::gate::SWEEP_INTERVAL,
        }
    }
}

/// A bot that is built and listening, not yet receiving updates.
pub struct Bot {
    app: App,
    api: BotApi,
    runtime: Runtime,
    http: HttpServerGuard,
    mode: Mode,
    webhook_url: Option<Url>,
    secret: Option<crate::secret::SecretString>,
    options: RunOptions,
    warm: gmbot_core::warm::WarmConfig,
    /// Listens to the other instances' group events (several webhook instances on Redis).
    _group_events: Option<SubscriptionGuard>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("me", self.app.me())
            .field("mode", &self.mode.name())
            .field("http", &self.http.local_addr())
            .finish_non_exhaustive()
    }
}

/// What a run did, for the caller's last log line (and tests).
#[derive(Debug, Clone, Copy)]
pub struct RunReport {
    /// The drain at shutdown.
    pub drain: DrainReport,
}

async fn retry_startup<T, F, Fut>(
    what: &str,
    attempts: u32,
    shutdown: &Shutdown,
    mut call: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, TelegramError>>,
{
    let mut pause = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_temporary() && attempt < attempts => {
                let wait = match e {
                    TelegramError::RetryAfter { retry_after } => retry_after,
                    _ => pause,
                };
                log::warn!(attempt = attempt, error:display = e; "{what} failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.wait() => anyhow::bail!("{what}: stopped while retrying"),
                }
                pause = (pause * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{what} failed"))),
        }
    }
}

/// The webhook URL to register: as configured, except that a loopback URL with port 0 gets
/// the port the listener actually bound (`HTTP_LISTEN=127.0.0.1:0`), for local runs.
fn public_webhook_url(url: &Url, bound: SocketAddr) -> Url {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let mut url = url.clone();
    if loopback && url.port() == Some(0) && url.set_port(Some(bound.port())).is_err() {
        log::warn!("cannot set the webhook URL's port");
    }
    url
}

impl Bot {
    /// Builds the bot from its configuration: opens (and migrates) the store, connects the
    /// cache, checks the token with `getMe`, starts the update runtime and binds the HTTP
    /// listener. Must run inside a tokio runtime.
    pub async fn start(
        config: &Config,
        options: RunOptions,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        let token = config
            .token
            .clone()
            .context("TELEGRAM_BOT_TOKEN is not set")?;
        let mode = Mode::detect(config);
        let store = store::open(&config.database_url, config.migration)
            .await
            .map_err(|e| {
                let hint = match e {
                    StoreError::NotMigrated { .. } => " (its schema is behind this gmbot-bot: run `gmbot migrate` with the same DATABASE_URL, or set GMBOT_MIGRATE=auto to migrate at start; docs/operations.md, \"Rolling deploys\")",
                    _ => "",
                };
                let db = config.database_url.redacted();
                anyhow::Error::new(e).context(format!("cannot open the database {db}{hint}"))
            })?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let registry = Registry::new();

        let redis_prefix = options.redis_prefix.clone();
        let (cache, layered): (Arc<dyn MembershipCache>, Option<Arc<LayeredCache>>) =
            match &config.redis_url {
                Some(url) => {
                    let mut c = LayeredCacheConfig::new(url.expose());
                    c.redis.key_prefix = format!("{redis_prefix}m:");
                    c.redis.invalidation_channel = format!("{redis_prefix}m:invalidate");
                    c.redis.ttl = config.cache.ttl;
                    let cache = LayeredCache::connect(c, Arc::clone(&clock), &registry)
                        .await
                        .context("cannot set up the Redis cache (REDIS_URL)")?;
                    if cache.ping().await.is_err() {
                        log::warn!(
                            "Redis does not answer yet; using the in-process cache until it does"
                        );
                    }
                    let cache = Arc::new(cache);
                    (cache.clone(), Some(cache))
                }
                None => (
                    Arc::new(
                        MemoryCache::new(
                            MemoryCacheConfig {
                                ttl: config.cache.ttl,
                                ..MemoryCacheConfig::default()
                            },
                            Arc::clone(&clock),
                            &registry,
                        )
                        .context("cannot set up the in-process cache")?,
                    ),
                    None,
                ),
            };

        let api_options = BotApiOptions {
            long_poll: options.long_poll,
            ..BotApiOptions::from_config(config)
        };
        let api =
            BotApi::new(token.clone(), api_options).context("cannot build the Bot API client")?;
        api.register_metrics(&registry)
            .context("cannot register the Bot API client's metrics")?;
        let me =
            retry_startup("getMe", options.startup_attempts, shutdown, || api.get_me()).await?;
        let username = me.username.clone().unwrap_or_default();
        log::info!(bot_id = me.id, username = username.as_str(); "signed in to Telegram");
        // With Redis the budgets are the bot's, shared by every instance; keys under the
        // bot's id, so two bots on one Redis never share a bucket.
        let budget = match &config.redis_url {
            Some(url) => {
                let redis = RedisBudget::new(&RedisBudgetConfig {
                    key_prefix: format!("{redis_prefix}b:{}:", token.bot_id()),
                    ..RedisBudgetConfig::new(url.expose())
                })
                .context("cannot set up the shared Telegram budget (REDIS_URL)")?;
                let mut options = SharedBudgetOptions::new(Arc::new(redis));
                options.instances = config.budgets.instances;
                log::info!(
                    instances = config.budgets.instances.unwrap_or(0);
                    "Telegram budgets shared through Redis by every instance of this bot"
                );
                Some(options)
            }
            None => None,
        };
        let app = App::with_budget(
            AppDeps {
                me: BotIdentity {
                    id: UserId(i64::try_from(me.id).unwrap_or(token.bot_id())),
                    username,
                },
                store,
                telegram: Arc::new(api.clone()),
                cache,
                clock,
                dispatch: options.dispatch.clone(),
                engine: options.engine,
                registry,
            },
            crate::flows::FlowConfig {
                raid: options.raid,
                cache_mode: config.cache.mode,
                ..crate::flows::FlowConfig::default()
            },
            crate::outbox::OutboxConfig::default(),
            budget,
        )?;

        let mut runtime_config = options.runtime.clone();
        // Only webhook mode runs several instances (polling is one per token, by Telegram's
        // design), so only it claims updates in Redis for de-duplication (batched: one pipelined round trip for the claims waiting together).
        let shared_dedup = matches!(mode, Mode::Webhook { .. });
        if let (Some(url), true) = (&config.redis_url, shared_dedup) {
            let claims = RedisClaims::new(
                url.expose(),
                format!("{redis_prefix}u:{}:", token.bot_id()),
                options.claim_ttl,
                Duration::from_millis(250),
            )
            .context("cannot set up update de-duplication in Redis (REDIS_URL)")?;
            runtime_config.claims = Some(claims);
        }
        // The same instances share their periodic jobs' leases, once-only claims and group
        // cache invalidations.
        let group_events = match (&config.redis_url, shared_dedup) {
            (Some(url), true) => Some(
                share_state(
                    &app,
                    url.expose(),
                    format!("{redis_prefix}c:{}:", token.bot_id()),
                    config.lease,
                )
                .await?,
            ),
            _ => None,
        };
        // Webhook updates are kept in the update journal before Telegram gets its answer
        // (GMBOT_WEBHOOK_JOURNAL): an instance killed with updates in memory loses none.
        let write_ahead = shared_dedup && config.webhook.as_ref().is_some_and(|w| w.journal);
        runtime_config.write_ahead |= write_ahead;
        let runtime = Runtime::start(app.clone(), runtime_config);
        // Updates a previous run kept in the journal (not drained at its stop, or a polling
        // backlog) go first, before the listener takes new ones.
        let replay = runtime.sender().queue_capacity() / 2;
        runtime.sender().replay_journal(replay).await;

        let mut routes = HttpRoutes::new(app.clone());
        if let Some(cache) = layered {
            routes = routes.with_redis(cache);
        }
        let mut secret = None;
        if let Mode::Webhook { path, .. } = &mode {
            let s = config
                .webhook
                .as_ref()
                .and_then(|w| w.secret.clone())
                .unwrap_or_else(|| webhook::derive_secret(&token));
            let ingress = WebhookIngress::new(&s, options.max_body, runtime.sender());
            routes = routes.with_webhook_limit(path, Arc::new(ingress), options.max_body);
            secret = Some(s);
        }
        log::info!(
            cache_mode = config.cache.mode.as_str(),
            member_ttl_s = config.cache.ttl.member.as_secs(),
            non_member_ttl_s = config.cache.ttl.non_member.as_secs();
            "membership cache: {} mode, {} s member / {} s non-member (±{:.0} %)",
            config.cache.mode,
            config.cache.ttl.member.as_secs(),
            config.cache.ttl.non_member.as_secs(),
            config.cache.ttl.jitter * 100.0
        );
        let http = http::serve_split(
            config.http_listen,
            config.metrics_listen,
            routes,
            // Each webhook request waits for its journal write (group commit, about one
            // database round trip): more threads keep the listener's throughput.
            if write_ahead {
                options.http_threads.max(http::WRITE_AHEAD_THREADS)
            } else {
                options.http_threads
            },
        )
        .context("cannot start the HTTP listener (HTTP_LISTEN / METRICS_LISTEN)")?;
        let webhook_url = match &mode {
            Mode::Webhook { url, .. } => Some(public_webhook_url(url, http.local_addr())),
            Mode::Polling => None,
        };
        Ok(Self {
            app,
            api,
            runtime,
            http,
            mode,
            webhook_url,
            secret,
            options,
            warm: config.warm,
            _group_events: group_events,
        })
    }

    /// The wired-up app (store, engine, metrics, …).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The address the HTTP listener bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The transport in use.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The update runtime's counters so far.
    pub fn stats(&self) -> RuntimeStats {
        self.runtime.stats()
    }

    /// A handle on the update runtime's progress that stays valid while the bot runs.
    pub fn monitor(&self) -> RuntimeMonitor {
        self.runtime.monitor()
    }

    /// Receives updates until `shutdown` fires, then drains and stops.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<RunReport> {
        // Channels stored by username only (`gmbot protect` without a token): resolve them.
        let resolving = {
            let app = self.app.clone();
            tokio::spawn(async move {
                match crate::flows::resolve::resolve_all(&app).await {
                    Ok(r) if r.resolved + r.failed > 0 => log::info!(
                        resolved = r.resolved,
                        failed = r.failed;
                        "linked channels resolved by username"
                    ),
                    Ok(_) => {}
                    Err(err) => {
                        log::warn!(error:display = err; "cannot resolve linked channels: the store failed")
                    }
                }
            })
        };
        let stop = shutdown.clone();
        let reconciler = crate::flows::reconcile::spawn_reconciler(
            self.app.clone(),
            self.options.reconcile_interval,
            async move { stop.wait().await },
        );
        let stop = shutdown.clone();
        // Pending join requests survive a restart in the store: the first sweep runs at once.
        let sweeper = crate::flows::gate::spawn_sweeper(
            self.app.clone(),
            self.options.gate_sweep_interval,
            async move { stop.wait().await },
        );
        let stop = shutdown.clone();
        let warm_up =
            crate::flows::spawn_warm_up(&self.app, self.warm, async move { stop.wait().await });
        let mut polled = None;
        let received = match (&self.mode, &self.webhook_url, &self.secret) {
            (Mode::Webhook { .. }, Some(url), Some(secret)) => {
                let registered = retry_startup(
                    "setWebhook",
                    self.options.startup_attempts,
                    &shutdown,
                    || webhook::register(&self.api, url, secret, self.options.max_connections),
                )
                .await;
                match registered {
                    Ok(()) => {
                        log::info!(transport = "webhook", path = url.path(); "receiving updates by webhook");
                        shutdown.wait().await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            _ => polling::run(
                &self.api,
                &self.runtime.sender(),
                &shutdown,
                self.options.polling,
            )
            .await
            .map(|fetched| polled = Some(fetched))
            .map_err(anyhow::Error::new),
        };
        // Whatever ended the loop, stop everything that watches the signal.
        shutdown.trigger();
        log::info!("stopping: no new updates; finishing those in flight");
        let sender = self.runtime.sender();
        resolving.abort();
        warm_up.stop().await;
        let drain = self.runtime.shutdown().await;
        if let Some(fetched) = polled {
            // Only what was handled: the rest comes again at the next start.
            polling::confirm_handled(&self.api, &sender, fetched).await;
        }
        reconciler.stop().await;
        sweeper.stop().await;
        // Seen members waiting to be written, warning timers.
        self.app.shutdown().await;
        let http = self.http;
        // Joining the listener threads blocks briefly; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || http.stop()).await;
        received?;
        Ok(RunReport { drain })
    }
}

/// Whether the bot stopped because the database schema does not fit this binary (behind and
/// not migrated at start, or too new): `main` exits with 3 then, so an orchestrator can tell a
/// deploy-order problem from a crash.
pub fn is_schema_mismatch(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<StoreError>(),
            Some(StoreError::NotMigrated { .. } | StoreError::SchemaTooNew { .. })
        )
    })
}

/// Shares leases (periodic jobs on one instance), claims (one warning, notice or join
/// handling across instances) and group events (cached configurations and admin lists
/// dropped everywhere) through the Redis at `url`, under `prefix`.
async fn share_state(
    app: &App,
    url: &str,
    prefix: String,
    lease: Duration,
) -> anyhow::Result<SubscriptionGuard> {
    let mut c = RedisCoordinationConfig::new(url);
    c.events_channel = format!("{prefix}groups");
    c.key_prefix = prefix;
    let shared = Arc::new(
        RedisCoordination::open(c).context("cannot set up shared leases in Redis (REDIS_URL)")?,
    );
    let flows = crate::flows::Shared::new(
        shared.clone(),
        shared.clone(),
        shared.clone(),
        lease,
        app.registry(),
    )
    .context("cannot register the shared claims' metrics")?;
    app.flows().share(flows);
    app.engine().publish_to(shared.clone());
    let engine = app.engine().clone();
    let resync_app = app.clone();
    let guard = shared.subscribe(Arc::new(move |event| {
        let engine = engine.clone();
        if event == GroupEvent::Resync {
            // Redis is back (perhaps empty): the groups' shown warnings go back on the board.
            let app = resync_app.clone();
            tokio::spawn(async move { app.outbox().restore_board(&app).await });
        }
        tokio::spawn(async move { engine.apply(event).await });
    }));
    if !guard.wait_subscribed(Duration::from_secs(1)).await {
        log::warn!("not yet subscribed to the other instances' group events (Redis does not answer); retrying in the background");
    }
    Ok(guard)
}

/// Builds and runs the bot until `shutdown` fires.
pub async fn run(
    config: &Config,
    options: RunOptions,
    shutdown: Shutdown,
) -> anyhow::Result<RunReport> {
    let bot = Bot::start(config, options, &shutdown).await?;
    log::info!(
        transport = bot.mode().name(),
        listen = bot.http_addr().to_string().as_str();
        "gmbot-bot started"
    );
    bot.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_port_zero_takes_the_bound_port() {
        let bound: SocketAddr = "127.0.0.1:4567".parse().expect("addr");
        let u = public_webhook_url(&Url::parse("http://127.0.0.1:0/hook").expect("url"), bound);
        assert_eq!(u.as_str(), "http://127.0.0.1:4567/hook");
        let public = Url::parse("https://bot.example.com/hook").expect("url");
        assert_eq!(public_webhook_url(&public, bound), public);
        let fixed = Url::parse("http://127.0.0.1:8080/hook").expect("url");
        assert_eq!(public_webhook_url(&fixed, bound), fixed);
    }
}
