//! Configuration: the environment, parsed and validated once at start into one [`Config`].
//!
//! A bad value stops the program with a message naming the variable (and never quoting a
//! secret). Parsing takes the variables as a map, so tests never touch the process
//! environment. An empty variable counts as unset, as `.env` files and compose files write
//! `VAR=` for "not configured".

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use gmbot_core::cache::{CacheMode, TtlPolicy};
use gmbot_core::store::{DatabaseUrl, MigrationMode};
use gmbot_core::warm::WarmConfig;
use url::Url;

use crate::secret::{BotToken, SecretString};

/// Every variable GMBot reads.
pub const VARIABLES: [&str; 37] = [
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_URL",
    "TELEGRAM_API_ID",
    "TELEGRAM_API_HASH",
    "DATABASE_URL",
    "REDIS_URL",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "HTTP_LISTEN",
    "METRICS_LISTEN",
    "SENTRY_DSN",
    "GMBOT_ENV",
    "RUST_LOG",
    "GMBOT_LOG_FORMAT",
    "GMBOT_MESSAGES_PER_SECOND",
    "GMBOT_GROUP_MESSAGES_PER_MINUTE",
    "GMBOT_ACTIONS_PER_SECOND",
    "GMBOT_DELETES_PER_SECOND",
    "GMBOT_READS_PER_SECOND",
    "GMBOT_BULK_READS_PER_SECOND",
    "GMBOT_INSTANCES",
    "GMBOT_MTPROTO_SIM_URL",
    "GMBOT_RAID_DENIALS",
    "GMBOT_RAID_WINDOW_SECONDS",
    "GMBOT_CACHE_MODE",
    "GMBOT_CACHE_MEMBER_TTL_SECONDS",
    "GMBOT_CACHE_NON_MEMBER_TTL_SECONDS",
    "GMBOT_WARM_MAX_MEMBERS",
    "GMBOT_WARM_MAX_SECONDS",
    "GMBOT_WARM_CALLS_PER_SECOND",
    "GMBOT_MIGRATE",
    "GMBOT_LEASE_SECONDS",
    "GMBOT_WEBHOOK_JOURNAL",
    "CHANNEL_ID",
    "CHANNEL_URL",
    "GROUP_ID",
    "BOT_TOKEN",
];

/// The public Bot API.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://gmbot.db";
/// Where the HTTP endpoints (health, readiness, metrics, webhook) listen.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8080";
/// How long a periodic job's lease lasts unless renewed (`GMBOT_LEASE_SECONDS`).
pub const DEFAULT_LEASE_SECONDS: u32 = 15;
/// The environment reported to Sentry when `GMBOT_ENV` is unset.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// A variable with a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong and how to fix it (never the secret itself).
    pub reason: String,
}

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Log output format (`GMBOT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Webhook mode (`WEBHOOK_URL` set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The public URL Telegram posts to; its path is where the listener serves the webhook.
    pub url: Url,
    /// `WEBHOOK_SECRET`; when absent the transport derives one from the token.
    pub secret: Option<SecretString>,
    /// `GMBOT_WEBHOOK_JOURNAL` (`on` by default, or `off`): keep each update in the update
    /// journal before answering Telegram, so an instance killed with updates in memory loses
    /// none (another instance takes them over); `off` answers without that database write.
    pub journal: bool,
}

/// MTProto credentials (`TELEGRAM_API_ID` and `TELEGRAM_API_HASH`, both or neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtprotoCredentials {
    /// `api_id` from my.telegram.org.
    pub api_id: i32,
    /// `api_hash` from my.telegram.org.
    pub api_hash: SecretString,
}

/// Everything GMBot reads from its environment, validated.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// `TELEGRAM_BOT_TOKEN`; `None` when unset (the binary then explains how to get one).
    pub token: Option<BotToken>,
    /// `TELEGRAM_API_URL`: the Bot API base URL, without a trailing slash.
    pub api_url: Url,
    /// `DATABASE_URL`.
    pub database_url: DatabaseUrl,
    /// `GMBOT_MIGRATE`: `auto` applies pending migrations at start ([`MigrationMode::Apply`]),
    /// `never` refuses a schema that is behind ([`MigrationMode::Require`]); by default SQLite
    /// migrates itself and PostgreSQL waits for `gmbot migrate` (rolling deploys).
    pub migration: MigrationMode,
    /// `REDIS_URL` (may hold a password, hence secret).
    pub redis_url: Option<SecretString>,
    /// `WEBHOOK_URL` and `WEBHOOK_SECRET`: webhook mode instead of long polling.
    pub webhook: Option<WebhookConfig>,
    /// `HTTP_LISTEN`.
    pub http_listen: SocketAddr,
    /// `METRICS_LISTEN`: when set, `/health`, `/ready` and `/metrics` are served here
    /// instead of on `HTTP_LISTEN` (which then serves the webhook and `/health`).
    pub metrics_listen: Option<SocketAddr>,
    /// `SENTRY_DSN`.
    pub sentry_dsn: Option<SecretString>,
    /// `GMBOT_ENV`: the environment name reported to Sentry (default `production`).
    pub environment: String,
    /// `GMBOT_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `RUST_LOG`: log filter directives (default `info`).
    pub log_filter: Option<String>,
    /// `TELEGRAM_API_ID` / `TELEGRAM_API_HASH`.
    pub mtproto: Option<MtprotoCredentials>,
    /// `GMBOT_MTPROTO_SIM_URL`: list members from a simulated Telegram's directory at this
    /// loopback URL instead of Telegram's data centres (tests and the demo).
    pub mtproto_sim_url: Option<Url>,
    /// The dispatcher's budgets (`GMBOT_MESSAGES_PER_SECOND`, `GMBOT_GROUP_MESSAGES_PER_MINUTE`,
    /// `GMBOT_ACTIONS_PER_SECOND`, `GMBOT_READS_PER_SECOND`, `GMBOT_BULK_READS_PER_SECOND`).
    pub budgets: Budgets,
    /// What counts as a raid (`GMBOT_RAID_DENIALS` within `GMBOT_RAID_WINDOW_SECONDS`).
    pub raid: crate::flows::RaidConfig,
    /// How long the lease of a periodic job lasts unless renewed, with several instances
    /// sharing Redis (`GMBOT_LEASE_SECONDS`, 1–3600, default 15).
    pub lease: std::time::Duration,
    /// How cached memberships are kept true (`GMBOT_CACHE_MODE`, `GMBOT_CACHE_*_TTL_SECONDS`).
    pub cache: CacheSettings,
    /// The cache warm-up at start (`GMBOT_WARM_*`); `max_members == 0` turns it off.
    pub warm: WarmConfig,
    /// Things worth telling the operator that do not stop the program (v1 variables, …).
    pub warnings: Vec<String>,
}

/// The Telegram budgets an operator can set; each is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Messages (send, edit) per second for the whole bot (default 30).
    pub messages_per_second: u32,
    /// Messages per minute into one group (default 20).
    pub group_messages_per_minute: u32,
    /// Restrictions, unmutes and kicks per second for the whole bot (default 30).
    pub actions_per_second: u32,
    /// Deletions (`deleteMessage`, bulk `deleteMessages`) per second for the whole bot
    /// (default 30).
    pub deletes_per_second: u32,
    /// Membership reads per second; `None` (default) = not throttled.
    pub reads_per_second: Option<u32>,
    /// Reads per second in the bulk lane (audits, reconciliation); `None` (default) = budgeted
    /// like other reads (`gmbot audit` then uses its own default, 20/s).
    pub bulk_reads_per_second: Option<u32>,
    /// `GMBOT_INSTANCES`: how many instances share the budgets through Redis. While Redis is
    /// unreachable each instance spends `1/N` of each budget, `N` being the larger of this
    /// and the instances Redis last counted; `None` (default) = only Redis's count.
    pub instances: Option<u32>,
}

impl Default for Budgets {
    fn default() -> Self {
        let d = gmbot_core::dispatch::DispatchConfig::default();
        Self {
            messages_per_second: d.global_per_second,
            group_messages_per_minute: d.group_per_minute,
            actions_per_second: d.actions_per_second,
            deletes_per_second: d.deletes_per_second,
            reads_per_second: d.reads_per_second,
            bulk_reads_per_second: d.bulk_reads_per_second,
            instances: None,
        }
    }
}

impl Budgets {
    /// Applies the budgets to a dispatcher configuration.
    pub fn apply(&self, d: &mut gmbot_core::dispatch::DispatchConfig) {
        d.global_per_second = self.messages_per_second;
        d.group_per_minute = self.group_messages_per_minute;
        d.actions_per_second = self.actions_per_second;
        d.deletes_per_second = self.deletes_per_second;
        d.reads_per_second = self.reads_per_second;
        d.bulk_reads_per_second = self.bulk_reads_per_second;
    }
}

/// The membership cache's mode and lifetimes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheSettings {
    /// `GMBOT_CACHE_MODE`: `ttl` (default) or `events`.
    pub mode: CacheMode,
    /// The mode's lifetimes, with `GMBOT_CACHE_MEMBER_TTL_SECONDS` and
    /// `GMBOT_CACHE_NON_MEMBER_TTL_SECONDS` applied (±15 % jitter either way).
    pub ttl: TtlPolicy,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            mode: CacheMode::Ttl,
            ttl: CacheMode::Ttl.default_ttl(),
        }
    }
}

/// Longest member lifetime accepted: a week (the TTL is the safety net for a missed leave).
const MAX_MEMBER_TTL_SECONDS: u32 = 7 * 86_400;
/// Longest non-member lifetime accepted: a day (a missed join keeps a member muted that long).
const MAX_NON_MEMBER_TTL_SECONDS: u32 = 86_400;

impl CacheSettings {
    /// Reads `GMBOT_CACHE_MODE` and the TTL overrides through `get` (the
    /// bot's environment; the CLI reads the same variables so that what
    /// `gmbot cache warm` writes lives as long as what the bot writes).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mode = match get("GMBOT_CACHE_MODE") {
            None => CacheMode::Ttl,
            Some(v) => v.parse::<CacheMode>().map_err(|_| {
                bad(
                    "GMBOT_CACHE_MODE",
                    format!(
                        "expected `ttl` (entries expire: 600 s member / 60 s non-member) or \
                         `events` (entries follow the channels' join and leave events, \
                         6 h member / 10 min non-member), got {v:?}"
                    ),
                )
            })?,
        };
        let mut ttl = mode.default_ttl();
        if get("GMBOT_CACHE_MEMBER_TTL_SECONDS").is_some() {
            ttl.member = std::time::Duration::from_secs(u64::from(parse_count_from(
                get,
                "GMBOT_CACHE_MEMBER_TTL_SECONDS",
                60,
                MAX_MEMBER_TTL_SECONDS,
            )?));
        }
        if get("GMBOT_CACHE_NON_MEMBER_TTL_SECONDS").is_some() {
            ttl.non_member = std::time::Duration::from_secs(u64::from(parse_count_from(
                get,
                "GMBOT_CACHE_NON_MEMBER_TTL_SECONDS",
                10,
                MAX_NON_MEMBER_TTL_SECONDS,
            )?));
        }
        Ok(Self { mode, ttl })
    }
}

/// Reads the warm-up bounds (`GMBOT_WARM_MAX_MEMBERS`, `GMBOT_WARM_MAX_SECONDS`,
/// `GMBOT_WARM_CALLS_PER_SECOND`) through `get`; unset ones keep
/// [`WarmConfig::default`], except the time bound, which defaults to half the
/// member TTL (between 60 s and 1 h: 300 s in `ttl` mode, 1 h in `events`
/// mode) — a warm-up longer than the member TTL would outlive its first
/// entries. `GMBOT_WARM_MAX_MEMBERS=0` turns the warm-up at start off.
pub fn warm_from_lookup(
    get: &dyn Fn(&str) -> Option<String>,
    member_ttl: std::time::Duration,
) -> Result<WarmConfig, ConfigError> {
    let d = WarmConfig {
        max_duration: (member_ttl / 2).clamp(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(3_600),
        ),
        ..WarmConfig::default()
    };
    let max_members = match get("GMBOT_WARM_MAX_MEMBERS") {
        None => d.max_members,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 10_000_000)
            .ok_or_else(|| {
                bad(
                    "GMBOT_WARM_MAX_MEMBERS",
                    format!(
                        "expected a whole number from 0 (no warm-up at start) to 10000000, got {v:?}"
                    ),
                )
            })?,
    };
    let secs = u32::try_from(d.max_duration.as_secs()).unwrap_or(300);
    Ok(WarmConfig {
        max_members,
        max_duration: std::time::Duration::from_secs(u64::from(parse_count(
            get,
            "GMBOT_WARM_MAX_SECONDS",
            86_400,
            secs,
        )?)),
        calls_per_second: parse_count(
            get,
            "GMBOT_WARM_CALLS_PER_SECOND",
            1_000,
            d.calls_per_second,
        )?,
        ..d
    })
}

/// A whole number in `min..=max` (the variable is set).
fn parse_count_from(
    get: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    min: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    let v = get(var).unwrap_or_default();
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            bad(
                var,
                format!("expected a whole number of seconds from {min} to {max}, got {v:?}"),
            )
        })
}

/// A whole number in `1..=max`, or the variable's error naming the range.
fn parse_count(
    get: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    max: u32,
    default: u32,
) -> Result<u32, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                bad(
                    var,
                    format!("expected a whole number from 1 to {max}, got {v:?}"),
                )
            }),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token", &self.token)
            .field("api_url", &self.api_url.as_str())
            .field("database_url", &self.database_url)
            .field("migration", &self.migration)
            .field("redis_url", &self.redis_url)
            .field("webhook", &self.webhook)
            .field("http_listen", &self.http_listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("sentry_dsn", &self.sentry_dsn)
            .field("environment", &self.environment)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("mtproto", &self.mtproto)
            .field("cache", &self.cache)
            .field("warm", &self.warm)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        for name in VARIABLES {
            match std::env::var(name) {
                Ok(v) => {
                    vars.insert(name.to_owned(), v);
                }
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(bad(name, "is not valid UTF-8"));
                }
            }
        }
        Self::from_vars(vars)
    }

    /// Parses a set of variables (unknown names are ignored).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let get = |name: &str| vars.get(name).map(|v| v.trim().to_owned());
        let mut warnings = Vec::new();

        let token = match get("TELEGRAM_BOT_TOKEN") {
            Some(t) => {
                Some(BotToken::parse(&t).map_err(|e| bad("TELEGRAM_BOT_TOKEN", e.to_string()))?)
            }
            None => None,
        };
        if token.is_none() && get("BOT_TOKEN").is_some() {
            warnings.push(
                "BOT_TOKEN is the v1 name and is ignored: rename it to TELEGRAM_BOT_TOKEN".into(),
            );
        }

        let api_url = parse_api_url(get("TELEGRAM_API_URL").as_deref())?;

        let database_url = DatabaseUrl::from_str(
            &get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        )
        .map_err(|e| {
            bad(
                "DATABASE_URL",
                format!("{e} (expected sqlite://path, sqlite::memory: or postgres://…)"),
            )
        })?;

        let migration = match get("GMBOT_MIGRATE").map(|v| v.to_ascii_lowercase()).as_deref() {
            None if matches!(database_url, DatabaseUrl::Postgres(_)) => MigrationMode::Require,
            None | Some("auto") => MigrationMode::Apply,
            Some("never") => MigrationMode::Require,
            Some(v) => return Err(bad(
                "GMBOT_MIGRATE",
                format!("expected `auto` (apply pending migrations at start) or `never` (refuse to start on a schema that is behind: run `gmbot migrate` first), got {v:?}"),
            )),
        };

        let redis_url = match get("REDIS_URL") {
            Some(u) => {
                let parsed = Url::parse(&u).map_err(|_| {
                    bad(
                        "REDIS_URL",
                        "is not a URL (expected redis://host:6379 or rediss://…)",
                    )
                })?;
                if !matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                    return Err(bad(
                        "REDIS_URL",
                        format!("scheme `{}` is not redis:// or rediss://", parsed.scheme()),
                    ));
                }
                Some(SecretString::new(u))
            }
            None => None,
        };

        let secret = match get("WEBHOOK_SECRET") {
            Some(s) => {
                let ok = (1..=256).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(bad(
                        "WEBHOOK_SECRET",
                        "must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule for secret_token)",
                    ));
                }
                Some(SecretString::new(s))
            }
            None => None,
        };
        let journal = match get("GMBOT_WEBHOOK_JOURNAL").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(v) => return Err(bad(
                "GMBOT_WEBHOOK_JOURNAL",
                format!("expected `on` (keep each webhook update in the database before answering) or `off`, got {v:?}"),
            )),
        };
        let webhook = match get("WEBHOOK_URL") {
            Some(u) => Some(WebhookConfig {
                url: parse_webhook_url(&u)?,
                secret,
                journal,
            }),
            None => {
                if secret.is_some() {
                    warnings.push(
                        "WEBHOOK_SECRET is set but WEBHOOK_URL is not: the bot uses long polling and ignores the secret".into(),
                    );
                }
                None
            }
        };

        let http_listen = get("HTTP_LISTEN")
            .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned())
            .parse::<SocketAddr>()
            .map_err(|_| {
                bad(
                    "HTTP_LISTEN",
                    "expected an address and port such as 0.0.0.0:8080 or 127.0.0.1:9000",
                )
            })?;

        let metrics_listen = match get("METRICS_LISTEN") {
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "METRICS_LISTEN",
                    "expected an address and port such as 127.0.0.1:9090",
                )
            })?),
            None => None,
        };
        if metrics_listen == Some(http_listen) {
            return Err(bad(
                "METRICS_LISTEN",
                "is the same address as HTTP_LISTEN: leave it unset to serve everything on HTTP_LISTEN",
            ));
        }

        let environment = get("GMBOT_ENV").unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned());
        if environment.len() > 64
            || !environment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(bad(
                "GMBOT_ENV",
                "expected a short name such as production or staging (A-Z, a-z, 0-9, -, _ and .)",
            ));
        }
        let log_filter = get("RUST_LOG");

        let sentry_dsn = match get("SENTRY_DSN") {
            Some(d) => Some(parse_sentry_dsn(&d)?),
            None => None,
        };

        let log_format = match get("GMBOT_LOG_FORMAT").map(|s| s.to_ascii_lowercase()) {
            None => LogFormat::Text,
            Some(s) if s == "text" => LogFormat::Text,
            Some(s) if s == "json" => LogFormat::Json,
            Some(_) => return Err(bad("GMBOT_LOG_FORMAT", "expected `text` or `json`")),
        };

        let mtproto = match (get("TELEGRAM_API_ID"), get("TELEGRAM_API_HASH")) {
            (None, None) => None,
            (Some(id), Some(hash)) => {
                let api_id = id.parse::<i32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                    bad(
                        "TELEGRAM_API_ID",
                        "expected the positive number from my.telegram.org",
                    )
                })?;
                if hash.len() != 32 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(
                        "TELEGRAM_API_HASH",
                        "expected the 32 hexadecimal characters from my.telegram.org",
                    ));
                }
                Some(MtprotoCredentials {
                    api_id,
                    api_hash: SecretString::new(hash),
                })
            }
            (Some(_), None) => {
                return Err(bad(
                    "TELEGRAM_API_HASH",
                    "is required when TELEGRAM_API_ID is set",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "TELEGRAM_API_ID",
                    "is required when TELEGRAM_API_HASH is set",
                ))
            }
        };

        let defaults = Budgets::default();
        let budgets = Budgets {
            messages_per_second: parse_count(
                &get,
                "GMBOT_MESSAGES_PER_SECOND",
                10_000,
                defaults.messages_per_second,
            )?,
            group_messages_per_minute: parse_count(
                &get,
                "GMBOT_GROUP_MESSAGES_PER_MINUTE",
                10_000,
                defaults.group_messages_per_minute,
            )?,
            actions_per_second: parse_count(
                &get,
                "GMBOT_ACTIONS_PER_SECOND",
                10_000,
                defaults.actions_per_second,
            )?,
            deletes_per_second: parse_count(
                &get,
                "GMBOT_DELETES_PER_SECOND",
                10_000,
                defaults.deletes_per_second,
            )?,
            reads_per_second: match get("GMBOT_READS_PER_SECOND") {
                None => None,
                Some(_) => Some(parse_count(&get, "GMBOT_READS_PER_SECOND", 100_000, 1)?),
            },
            bulk_reads_per_second: match get("GMBOT_BULK_READS_PER_SECOND") {
                None => None,
                Some(_) => Some(parse_count(
                    &get,
                    "GMBOT_BULK_READS_PER_SECOND",
                    100_000,
                    1,
                )?),
            },
            instances: match get("GMBOT_INSTANCES") {
                None => None,
                Some(_) => Some(parse_count(&get, "GMBOT_INSTANCES", 1_000, 1)?),
            },
        };
        let mtproto_sim_url = match get("GMBOT_MTPROTO_SIM_URL") {
            None => None,
            Some(raw) => {
                let url = Url::parse(raw.trim_end_matches('/')).ok().filter(|u| {
                    u.scheme() == "http"
                        && matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                });
                Some(url.ok_or_else(|| {
                    bad(
                        "GMBOT_MTPROTO_SIM_URL",
                        "expected the simulator's http://127.0.0.1:PORT/mtproto (tests and the demo only)",
                    )
                })?)
            }
        };
        let raid_defaults = crate::flows::RaidConfig::default();
        let raid = crate::flows::RaidConfig {
            denials: parse_count(&get, "GMBOT_RAID_DENIALS", 1_000_000, raid_defaults.denials)?,
            window: std::time::Duration::from_secs(u64::from(parse_count(
                &get,
                "GMBOT_RAID_WINDOW_SECONDS",
                86_400,
                u32::try_from(raid_defaults.window.as_secs()).unwrap_or(60),
            )?)),
        };

        let lease = std::time::Duration::from_secs(u64::from(parse_count(
            &get,
            "GMBOT_LEASE_SECONDS",
            3_600,
            DEFAULT_LEASE_SECONDS,
        )?));

        let cache = CacheSettings::from_lookup(&get)?;
        let warm = warm_from_lookup(&get, cache.ttl.member)?;
        if cache.mode == CacheMode::Events && webhook.is_some() && redis_url.is_none() {
            warnings.push(
                "GMBOT_CACHE_MODE=events without REDIS_URL: a join or leave reaches only the instance that receives it, so with several webhook instances the others keep serving the old status for hours; set REDIS_URL or run one instance".into(),
            );
        }

        if let Some(w) = v1_warning(&get("CHANNEL_ID"), &get("CHANNEL_URL"), &get("GROUP_ID")) {
            warnings.push(w);
        }

        Ok(Self {
            token,
            api_url,
            database_url,
            migration,
            redis_url,
            webhook,
            http_listen,
            metrics_listen,
            sentry_dsn,
            environment,
            log_format,
            log_filter,
            mtproto,
            mtproto_sim_url,
            budgets,
            raid,
            lease,
            cache,
            warm,
            warnings,
        })
    }
}

fn parse_api_url(value: Option<&str>) -> Result<Url, ConfigError> {
    const VAR: &str = "TELEGRAM_API_URL";
    let raw = value.unwrap_or(DEFAULT_API_URL).trim_end_matches('/');
    let url = Url::parse(raw).map_err(|_| {
        bad(
            VAR,
            "is not a URL (expected e.g. https://api.telegram.org or http://127.0.0.1:8081)",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(VAR, "must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(VAR, "must not have a query or fragment"));
    }
    if url.path().contains("/bot") {
        return Err(bad(
            VAR,
            "give the base URL only: the /bot<token> part is added by GMBot",
        ));
    }
    Ok(url)
}

fn parse_webhook_url(raw: &str) -> Result<Url, ConfigError> {
    const VAR: &str = "WEBHOOK_URL";
    let url = Url::parse(raw).map_err(|_| {
        bad(
            VAR,
            "is not a URL (expected https://bot.example.com/telegram/webhook)",
        )
    })?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(bad(VAR, "has no host")),
    };
    match url.scheme() {
        "https" => {
            // Telegram delivers webhooks only to these ports.
            let port = url.port_or_known_default().unwrap_or(443);
            if ![443, 80, 88, 8443].contains(&port) && !loopback {
                return Err(bad(
                    VAR,
                    format!("port {port} is not one Telegram delivers to (443, 80, 88 or 8443)"),
                ));
            }
        }
        // Plain http only for local testing (the simulator); Telegram requires https.
        "http" if loopback => {}
        "http" => {
            return Err(bad(
                VAR,
                "Telegram requires an https:// URL (terminate TLS at a reverse proxy)",
            ))
        }
        other => return Err(bad(VAR, format!("scheme `{other}` is not https"))),
    }
    Ok(url)
}

fn parse_sentry_dsn(raw: &str) -> Result<SecretString, ConfigError> {
    const VAR: &str = "SENTRY_DSN";
    let url = Url::parse(raw).map_err(|_| {
        bad(
            VAR,
            "is not a URL (expected https://<key>@<host>/<project id>)",
        )
    })?;
    let project = url.path().trim_matches('/');
    let ok = matches!(url.scheme(), "http" | "https")
        && !url.username().is_empty()
        && url.host().is_some()
        && !project.is_empty();
    // The SDK's own parser has the last word: `ClientOptions::dsn` panics on
    // what it rejects, so whatever passes here must parse there.
    if !ok || raw.parse::<sentry::types::Dsn>().is_err() {
        return Err(bad(VAR, "expected https://<key>@<host>/<project id>"));
    }
    Ok(SecretString::new(raw))
}

/// v1 configured one group and one channel by environment; v2 does it from Telegram.
fn v1_warning(
    channel: &Option<String>,
    channel_url: &Option<String>,
    group: &Option<String>,
) -> Option<String> {
    let set: Vec<&str> = [
        ("CHANNEL_ID", channel),
        ("CHANNEL_URL", channel_url),
        ("GROUP_ID", group),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(n, _)| *n)
    .collect();
    if set.is_empty() {
        return None;
    }
    let command = match (group, channel) {
        (Some(g), Some(c)) => format!("gmbot protect --group {g} --channel {c}"),
        _ => "gmbot protect --group <GROUP_ID> --channel <CHANNEL_ID>".to_owned(),
    };
    Some(format!(
        "{} {} and ignored: protections now live in the database. Make the bot an admin of the group (delete and restrict rights) and of the channel, then send `/protect @yourchannel` in the group, or run `{command}`; then remove {} from the environment",
        set.join(", "),
        if set.len() == 1 {
            "is a v1 setting"
        } else {
            "are v1 settings"
        },
        if set.len() == 1 { "it" } else { "them" },
    ))
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_variable_the_parser_reads_is_read_from_the_environment() {
        // `from_env` reads only `VARIABLES`: a variable parsed but missing there would be
        // silently ignored by the real binary. Every `"GMBOT_…"` literal here names one.
        let source = include_str!("config.rs");
        let mut missing = Vec::new();
        for (i, _) in source.match_indices("\"GMBOT_") {
            let name = &source[i + 1..];
            let end = name
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(name.len());
            let (name, after) = (&name[..end], &name[end..]);
            if after.starts_with('"') && name.len() > "GMBOT_".len() && !VARIABLES.contains(&name) {
                missing.push(name.to_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "parsed but never read from the environment: {missing:?}"
        );
    }
    use super::*;

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-";

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).expect("empty environment is valid");
        assert!(c.token.is_none());
        assert_eq!(c.api_url.as_str(), "https://api.telegram.org/");
        assert_eq!(c.http_listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.webhook.is_none() && c.redis_url.is_none() && c.mtproto.is_none());
        assert!(c.warnings.is_empty());
        assert!(c.metrics_listen.is_none() && c.log_filter.is_none());
        assert_eq!(c.environment, "production");
        assert_eq!(
            c.database_url,
            DEFAULT_DATABASE_URL.parse().expect("default db url")
        );
    }

    #[test]
    fn full_and_valid() {
        let c = parse(&[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", "http://127.0.0.1:8081/"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("WEBHOOK_URL", "https://bot.example.com/tg/hook"),
            ("WEBHOOK_SECRET", "s3cr3t_-X"),
            ("HTTP_LISTEN", "127.0.0.1:9000"),
            ("METRICS_LISTEN", "127.0.0.1:9090"),
            ("GMBOT_ENV", "staging"),
            ("RUST_LOG", "debug,gmbot_core=trace"),
            ("SENTRY_DSN", "https://abc@o1.ingest.sentry.io/42"),
            ("GMBOT_LOG_FORMAT", "JSON"),
            ("TELEGRAM_API_ID", "12345"),
            ("TELEGRAM_API_HASH", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("valid");
        assert_eq!(c.token.as_ref().map(BotToken::bot_id), Some(123_456_789));
        assert_eq!(c.api_url.as_str(), "http://127.0.0.1:8081/");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.metrics_listen,
            Some("127.0.0.1:9090".parse().expect("addr"))
        );
        assert_eq!(c.environment, "staging");
        assert_eq!(c.log_filter.as_deref(), Some("debug,gmbot_core=trace"));
        let hook = c.webhook.as_ref().expect("webhook mode");
        assert_eq!(hook.url.path(), "/tg/hook");
        assert_eq!(
            hook.secret.as_ref().map(SecretString::expose),
            Some("s3cr3t_-X")
        );
        assert_eq!(c.mtproto.as_ref().map(|m| m.api_id), Some(12345));
        let dbg = format!("{c:?}");
        for secret in ["AAHdqTcv", "s3cr3t", "abc@", "0123456789abcdef0123"] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
    }

    #[test]
    fn migration_at_start_defaults_per_database_and_can_be_set() {
        let pg = ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
        let mode = |vars: &[(&str, &str)]| parse(vars).map(|c| c.migration);
        // SQLite migrates itself (development, one instance); PostgreSQL waits for
        // `gmbot migrate`, so a deploy never migrates under running older instances.
        assert_eq!(mode(&[]), Ok(MigrationMode::Apply));
        assert_eq!(
            mode(&[("DATABASE_URL", "sqlite::memory:")]),
            Ok(MigrationMode::Apply)
        );
        assert_eq!(mode(&[pg]), Ok(MigrationMode::Require));
        assert_eq!(
            mode(&[pg, ("GMBOT_MIGRATE", "auto")]),
            Ok(MigrationMode::Apply)
        );
        assert_eq!(
            mode(&[pg, ("GMBOT_MIGRATE", " AUTO ")]),
            Ok(MigrationMode::Apply)
        );
        assert_eq!(
            mode(&[("GMBOT_MIGRATE", "never")]),
            Ok(MigrationMode::Require)
        );
        assert_eq!(
            mode(&[pg, ("GMBOT_MIGRATE", "")]),
            Ok(MigrationMode::Require)
        );
        let err = parse(&[pg, ("GMBOT_MIGRATE", "yes")]).expect_err("unknown value");
        assert_eq!(err.var, "GMBOT_MIGRATE");
        assert!(
            err.reason.contains("`auto`") && err.reason.contains("\"yes\""),
            "{err}"
        );
    }

    #[test]
    fn budgets_and_raid_thresholds_come_from_the_environment() {
        let c = parse(&[]).expect("defaults");
        assert_eq!(c.budgets, Budgets::default());
        assert_eq!(c.budgets.messages_per_second, 30);
        assert_eq!(c.budgets.group_messages_per_minute, 20);
        assert_eq!(c.budgets.actions_per_second, 30);
        assert_eq!(c.budgets.deletes_per_second, 30);
        assert_eq!(c.budgets.reads_per_second, None);
        assert_eq!(c.budgets.instances, None);
        assert_eq!(c.raid, crate::flows::RaidConfig::default());
        assert_eq!(c.lease, std::time::Duration::from_secs(15));
        let c = parse(&[
            ("GMBOT_MESSAGES_PER_SECOND", "10"),
            ("GMBOT_GROUP_MESSAGES_PER_MINUTE", "15"),
            ("GMBOT_ACTIONS_PER_SECOND", " 25 "),
            ("GMBOT_DELETES_PER_SECOND", "40"),
            ("GMBOT_READS_PER_SECOND", "200"),
            ("GMBOT_INSTANCES", "3"),
            ("GMBOT_RAID_DENIALS", "50"),
            ("GMBOT_LEASE_SECONDS", "4"),
            ("GMBOT_RAID_WINDOW_SECONDS", "30"),
        ])
        .expect("valid");
        let mut d = gmbot_core::dispatch::DispatchConfig::default();
        c.budgets.apply(&mut d);
        assert_eq!(
            (
                d.global_per_second,
                d.group_per_minute,
                d.actions_per_second,
                d.deletes_per_second,
                d.reads_per_second
            ),
            (10, 15, 25, 40, Some(200))
        );
        assert_eq!(c.budgets.instances, Some(3));
        assert!(d.validate().is_ok());
        assert_eq!(c.raid.denials, 50);
        assert_eq!(c.lease, std::time::Duration::from_secs(4));
        assert_eq!(c.raid.window, std::time::Duration::from_secs(30));
    }

    #[test]
    fn cache_mode_and_warm_up_settings() {
        let c = parse(&[]).expect("defaults");
        assert_eq!(c.cache, CacheSettings::default());
        assert_eq!(c.cache.ttl, TtlPolicy::default());
        assert_eq!(c.warm, WarmConfig::default());
        let c = parse(&[("GMBOT_CACHE_MODE", "events")]).expect("events");
        assert_eq!(c.cache.mode, CacheMode::Events);
        assert_eq!(c.cache.ttl, CacheMode::Events.default_ttl());
        assert_eq!(
            c.warm.max_duration.as_secs(),
            3_600,
            "half of 6 h, capped at 1 h"
        );
        assert!(c.warnings.is_empty(), "polling: one instance");
        let c = parse(&[
            ("GMBOT_CACHE_MODE", " EVENTS "),
            ("GMBOT_CACHE_MEMBER_TTL_SECONDS", "7200"),
            ("GMBOT_CACHE_NON_MEMBER_TTL_SECONDS", "120"),
            ("GMBOT_WARM_MAX_MEMBERS", "0"),
            ("GMBOT_WARM_MAX_SECONDS", "60"),
            ("GMBOT_WARM_CALLS_PER_SECOND", "10"),
        ])
        .expect("valid");
        assert_eq!(c.cache.ttl.member, std::time::Duration::from_secs(7200));
        assert_eq!(c.cache.ttl.non_member, std::time::Duration::from_secs(120));
        assert!((c.cache.ttl.jitter - 0.15).abs() < 1e-9);
        assert_eq!(
            (
                c.warm.max_members,
                c.warm.max_duration.as_secs(),
                c.warm.calls_per_second
            ),
            (0, 60, 10)
        );
        let c = parse(&[
            ("GMBOT_CACHE_MODE", "events"),
            ("WEBHOOK_URL", "https://x.example/h"),
        ])
        .expect("valid, with a warning");
        assert!(
            c.warnings.iter().any(|w| w.contains("REDIS_URL")),
            "{:?}",
            c.warnings
        );
        let err = parse(&[("GMBOT_CACHE_MODE", "event")]).expect_err("typo");
        assert!(err.to_string().contains("`events`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable_and_hide_secrets() {
        let cases: &[(&str, &str)] = &[
            ("TELEGRAM_BOT_TOKEN", "123:not-a-real-token"),
            ("TELEGRAM_BOT_TOKEN", "hello"),
            ("TELEGRAM_API_URL", "ftp://x"),
            ("TELEGRAM_API_URL", "https://api.telegram.org/bot123:abc"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "http://127.0.0.1:6379"),
            ("GMBOT_MESSAGES_PER_SECOND", "0"),
            ("GMBOT_GROUP_MESSAGES_PER_MINUTE", "twenty"),
            ("GMBOT_ACTIONS_PER_SECOND", "-5"),
            ("GMBOT_DELETES_PER_SECOND", "0"),
            ("GMBOT_READS_PER_SECOND", "1.5"),
            ("GMBOT_BULK_READS_PER_SECOND", "0"),
            ("GMBOT_INSTANCES", "0"),
            ("GMBOT_INSTANCES", "1001"),
            ("GMBOT_MTPROTO_SIM_URL", "http://10.0.0.1:80/mtproto"),
            ("GMBOT_RAID_DENIALS", "many"),
            ("GMBOT_RAID_WINDOW_SECONDS", "999999999"),
            ("GMBOT_LEASE_SECONDS", "0"),
            ("GMBOT_LEASE_SECONDS", "3601"),
            ("WEBHOOK_URL", "http://bot.example.com/hook"),
            ("WEBHOOK_URL", "https://bot.example.com:9999/hook"),
            ("HTTP_LISTEN", "localhost"),
            ("METRICS_LISTEN", ":9090"),
            ("METRICS_LISTEN", "0.0.0.0:8080"),
            ("GMBOT_ENV", "prod env"),
            ("SENTRY_DSN", "not a dsn"),
            ("GMBOT_LOG_FORMAT", "xml"),
            ("GMBOT_CACHE_MODE", "lru"),
            ("GMBOT_CACHE_MEMBER_TTL_SECONDS", "5"),
            ("GMBOT_CACHE_MEMBER_TTL_SECONDS", "99999999"),
            ("GMBOT_CACHE_NON_MEMBER_TTL_SECONDS", "1h"),
            ("GMBOT_WARM_MAX_MEMBERS", "-1"),
            ("GMBOT_WARM_MAX_SECONDS", "0"),
            ("GMBOT_WARM_CALLS_PER_SECOND", "5000"),
        ];
        for (var, value) in cases {
            let err = parse(&[(var, value)]).expect_err("must be rejected");
            assert_eq!(err.var, *var, "{err}");
            assert!(err.to_string().starts_with(var), "{err}");
        }
        let err = parse(&[(
            "TELEGRAM_BOT_TOKEN",
            "123456:secretvalue with spaces in it 0123",
        )])
        .expect_err("bad token");
        assert!(!err.to_string().contains("secretvalue"), "{err}");
        let err = parse(&[
            ("WEBHOOK_URL", "https://x.example/h"),
            ("WEBHOOK_SECRET", "has space"),
        ])
        .expect_err("bad secret");
        assert_eq!(err.var, "WEBHOOK_SECRET");
        assert!(!err.to_string().contains("has space"));
        let hash = "0123456789abcdef0123456789abcdef";
        let err =
            parse(&[("TELEGRAM_API_ID", "-3"), ("TELEGRAM_API_HASH", hash)]).expect_err("bad id");
        assert_eq!(err.var, "TELEGRAM_API_ID");
        let err = parse(&[("TELEGRAM_API_ID", "12")]).expect_err("hash missing");
        assert_eq!(err.var, "TELEGRAM_API_HASH");
        let long = "a".repeat(257);
        assert_eq!(
            parse(&[
                ("WEBHOOK_URL", "https://x.example/h"),
                ("WEBHOOK_SECRET", &long)
            ])
            .expect_err("too long")
            .var,
            "WEBHOOK_SECRET"
        );
    }

    #[test]
    fn loopback_http_webhook_and_empty_values() {
        let c = parse(&[
            ("WEBHOOK_URL", "http://127.0.0.1:8080/hook"),
            ("REDIS_URL", ""),
        ])
        .expect("loopback http is allowed for local testing");
        assert!(c.webhook.is_some());
        assert!(c.redis_url.is_none(), "empty means unset");
    }

    #[test]
    fn v1_variables_warn_with_the_way_forward() {
        let c =
            parse(&[("CHANNEL_ID", "-1001"), ("GROUP_ID", "-1002")]).expect("v1 vars only warn");
        assert_eq!(c.warnings.len(), 1);
        let w = &c.warnings[0];
        assert!(w.contains("CHANNEL_ID, GROUP_ID"), "{w}");
        assert!(w.contains("/protect"), "{w}");
        assert!(
            w.contains("gmbot protect --group -1002 --channel -1001"),
            "{w}"
        );
        let c = parse(&[("WEBHOOK_SECRET", "abc")]).expect("secret alone warns");
        assert!(c.warnings[0].contains("WEBHOOK_URL"));
    }
}
