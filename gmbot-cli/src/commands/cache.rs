//! `gmbot cache warm`: fills the shared Redis membership cache with the most recently active members, before (or while) the bot restarts.
//!
//! What it warms: **the Redis cache the bot instances share** (`REDIS_URL`),
//! under the same keys and with the same lifetimes the bot uses
//! (`GMBOT_CACHE_MODE`, `GMBOT_CACHE_*_TTL_SECONDS`). A cache inside this
//! process would be gone when the command exits, so without `REDIS_URL` the
//! command refuses (exit 2) and says so; a bot without Redis warms its own
//! in-process cache when it starts (`GMBOT_WARM_*`). An instance that starts
//! after `gmbot cache warm` finds the entries in Redis and copies them into
//! its in-process layer on first use, or in its own start-up warm-up without
//! a Telegram call.
//!
//! How: [`gmbot_core::warm`] — seen members of every enforced group (or
//! `--group`), most recently seen first, one `getChatMember` per channel and
//! member not already cached, through a dispatcher's bulk lane, at most
//! `--calls-per-second`, stopping at `--max-members`, `--max-seconds` or
//! Ctrl-C. The calls use the bot's token and so share its flood limits with
//! the running bot: keep the rate well under what the bot itself needs.
//! Progress goes to stderr every few seconds; the report to stdout.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use gmbot_bot::config::{warm_from_lookup, CacheSettings};
use gmbot_core::cache::{RedisCache, RedisCacheConfig};
use gmbot_core::clock::{Clock, SystemClock};
use gmbot_core::dispatch::{DispatchConfig, Dispatcher};
use gmbot_core::domain::GroupId;
use gmbot_core::warm::{WarmConfig, WarmError, WarmPorts, WarmReport, WarmScope, WarmStop, WarmUp};
use prometheus::Registry;
use serde::Serialize;

use crate::database::Database;
use crate::error::CliError;
use crate::output::{self, Format};
use crate::table::key_values;

use super::protect::telegram_from_env;

/// The key prefix the bot uses unless told otherwise (`RunOptions::redis_prefix`).
const DEFAULT_REDIS_PREFIX: &str = "gmbot:";
/// How often progress is printed to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `gmbot cache …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CacheCommand {
    /// Fill the shared Redis cache with the most recently active members (needs REDIS_URL and TELEGRAM_BOT_TOKEN).
    Warm(WarmArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct WarmArgs {
    /// Warm one group only (its chat id); default: every enforced group.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    group: Option<GroupId>,
    /// Members re-verified at most, most recently seen first [default: GMBOT_WARM_MAX_MEMBERS, else 20000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    max_members: Option<u32>,
    /// Stop after this many seconds [default: GMBOT_WARM_MAX_SECONDS, else half the member TTL: 300 in ttl mode, 3600 in events mode].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    max_seconds: Option<u32>,
    /// Telegram calls per second at most [default: GMBOT_WARM_CALLS_PER_SECOND, else 50].
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..=1_000))]
    calls_per_second: Option<u32>,
    /// Skip members last seen longer ago than this.
    #[arg(long, value_name = "H", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=8_760))]
    seen_within_hours: u32,
    /// Redis: the bot's REDIS_URL (redis://[user:password@]host:port[/db]).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    redis_url: Option<String>,
    /// The bot's Redis key prefix (only if the bot was built with another one).
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_REDIS_PREFIX, hide = true)]
    redis_prefix: String,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(super) async fn run(db: &Database, command: CacheCommand) -> Result<String, CliError> {
    match command {
        CacheCommand::Warm(args) => warm(db, args).await,
    }
}

/// An environment variable, trimmed; empty means unset (as the bot reads them).
fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

async fn warm(db: &Database, args: WarmArgs) -> Result<String, CliError> {
    let Some(redis_url) = args
        .redis_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Err(CliError::usage(anyhow!(
            "gmbot cache warm fills the Redis cache the bot instances share, and REDIS_URL is not set: \
             a cache inside this command would be gone when it exits. Set REDIS_URL (or --redis-url) to \
             the bot's Redis; a bot without Redis warms its own in-process cache when it starts \
             (GMBOT_WARM_MAX_MEMBERS, see docs/operations.md)"
        )));
    };
    let cache_settings = CacheSettings::from_lookup(&env_var)
        .map_err(|e| CliError::usage(anyhow!("invalid cache setting: {e}")))?;
    let mut config = warm_from_lookup(&env_var, cache_settings.ttl.member)
        .map_err(|e| CliError::usage(anyhow!("invalid warm-up setting: {e}")))?;
    if config.max_members == 0 {
        // GMBOT_WARM_MAX_MEMBERS=0 turns off the bot's own warm-up; an explicit command still warms.
        config.max_members = WarmConfig::default().max_members;
    }
    config = WarmConfig {
        max_members: args.max_members.unwrap_or(config.max_members),
        max_duration: args
            .max_seconds
            .map_or(config.max_duration, |s| Duration::from_secs(u64::from(s))),
        calls_per_second: args.calls_per_second.unwrap_or(config.calls_per_second),
        seen_within: Duration::from_secs(u64::from(args.seen_within_hours) * 3600),
        ..config
    };
    let Some(api) = telegram_from_env()? else {
        return Err(CliError::usage(anyhow!(
            "TELEGRAM_BOT_TOKEN is not set: warming asks Telegram (getChatMember) about each member; \
             set it to the bot's token"
        )));
    };

    let store = db.open().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let registry = Registry::new();
    let redis_config = RedisCacheConfig {
        key_prefix: format!("{}m:", args.redis_prefix),
        invalidation_channel: format!("{}m:invalidate", args.redis_prefix),
        ttl: cache_settings.ttl,
        ..RedisCacheConfig::new(redis_url)
    };
    let cache = RedisCache::connect(redis_config, Arc::clone(&clock), &registry)
        .await
        .map_err(|e| CliError::usage(anyhow::Error::new(e).context("invalid REDIS_URL")))?;
    cache.ping().await.map_err(|e| {
        CliError::runtime(
            anyhow::Error::new(e)
                .context("cannot reach Redis: check that it runs and that REDIS_URL is right"),
        )
    })?;
    let dispatcher = Dispatcher::new(Arc::new(api), DispatchConfig::default(), &registry)
        .map_err(|e| CliError::runtime(anyhow!("cannot start the Telegram dispatcher: {e}")))?;
    let ports = WarmPorts {
        store,
        cache: Arc::new(cache),
        dispatcher,
        clock,
    };
    let warm_up = WarmUp::new(ports, config)
        .map_err(|e| CliError::usage(anyhow::Error::new(e)))?
        .on_progress(PROGRESS_EVERY, |r| {
            eprintln!(
                "warming: {} members, {} keys ({} already cached, {} loaded, {} failed), {:.0} s",
                r.members,
                r.keys,
                r.cached,
                r.loaded,
                r.failed,
                r.elapsed.as_secs_f64()
            );
        });
    let scope = args.group.map_or(WarmScope::All, WarmScope::Group);
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = warm_up.run(scope, interrupted).await.map_err(|e| match e {
        WarmError::Store(s) => CliError::from(s),
        other => CliError::runtime(anyhow::Error::new(other)),
    })?;
    let view = ReportView::new(&report, &config, cache_settings, redis_prefix_note(&args));
    let text = match args.format {
        Format::Json => output::json(&view)?,
        Format::Table => table(&view),
    };
    if report.stop == Some(WarmStop::Stopped) {
        return Err(CliError::runtime(anyhow!(
            "interrupted; what was warmed so far stays cached:\n{text}"
        )));
    }
    Ok(text)
}

fn redis_prefix_note(args: &WarmArgs) -> String {
    format!("{}m:", args.redis_prefix)
}

/// The report as printed.
#[derive(Debug, Serialize)]
struct ReportView {
    groups: usize,
    members: u64,
    keys: u64,
    already_cached: u64,
    loaded: u64,
    failed: u64,
    telegram_calls: u64,
    skipped_channels: Vec<i64>,
    newest_seen: Option<String>,
    oldest_seen: Option<String>,
    stopped_by: &'static str,
    elapsed_seconds: f64,
    cache_mode: &'static str,
    member_ttl_seconds: u64,
    non_member_ttl_seconds: u64,
    redis_key_prefix: String,
    max_members: u32,
    max_seconds: u64,
    calls_per_second: u32,
}

impl ReportView {
    fn new(r: &WarmReport, c: &WarmConfig, cache: CacheSettings, prefix: String) -> Self {
        Self {
            groups: r.groups,
            members: r.members,
            keys: r.keys,
            already_cached: r.cached,
            loaded: r.loaded,
            failed: r.failed,
            telegram_calls: r.calls(),
            skipped_channels: r.skipped_channels.iter().map(|c| c.get()).collect(),
            newest_seen: r.seen_range.map(|(n, _)| output::time(n)),
            oldest_seen: r.seen_range.map(|(_, o)| output::time(o)),
            stopped_by: match r.stop {
                Some(WarmStop::Done) => "done: every member seen in the window",
                Some(WarmStop::MaxMembers) => "max_members",
                Some(WarmStop::Deadline) => "max_seconds",
                Some(WarmStop::Stopped) => "interrupted",
                None => "",
            },
            elapsed_seconds: (r.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            cache_mode: cache.mode.as_str(),
            member_ttl_seconds: cache.ttl.member.as_secs(),
            non_member_ttl_seconds: cache.ttl.non_member.as_secs(),
            redis_key_prefix: prefix,
            max_members: c.max_members,
            max_seconds: c.max_duration.as_secs(),
            calls_per_second: c.calls_per_second,
        }
    }
}

fn table(v: &ReportView) -> String {
    let skipped = if v.skipped_channels.is_empty() {
        "none".to_owned()
    } else {
        v.skipped_channels
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
            + " (the bot cannot read their members: make it an admin there)"
    };
    let seen = match (&v.newest_seen, &v.oldest_seen) {
        (Some(n), Some(o)) => format!("{n} back to {o}"),
        _ => "nobody (no member seen in the window)".to_owned(),
    };
    let mut out = String::from("cache warmed (Redis, shared by every bot instance)\n");
    out.push_str(&key_values(
        &[
            ("groups", v.groups.to_string()),
            ("members", v.members.to_string()),
            ("members seen", seen),
            (
                "keys",
                format!(
                    "{} ({} already cached, {} loaded, {} failed)",
                    v.keys, v.already_cached, v.loaded, v.failed
                ),
            ),
            ("telegram calls", v.telegram_calls.to_string()),
            ("skipped channels", skipped),
            ("stopped by", v.stopped_by.to_owned()),
            ("elapsed", format!("{:.1} s", v.elapsed_seconds)),
            (
                "cache",
                format!(
                    "{} mode, {} s member / {} s non-member, keys {}*",
                    v.cache_mode,
                    v.member_ttl_seconds,
                    v.non_member_ttl_seconds,
                    v.redis_key_prefix
                ),
            ),
            (
                "bounds",
                format!(
                    "{} members, {} s, {} calls/s",
                    v.max_members, v.max_seconds, v.calls_per_second
                ),
            ),
        ],
        2,
    ));
    out
}
