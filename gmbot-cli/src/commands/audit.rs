//! `gmbot audit`: every member of a group checked against its channels, resumably.
//!
//! Members come from MTProto's member list (`TELEGRAM_API_ID`/`TELEGRAM_API_HASH`, through
//! the bot's own session in the database) and from the members the bot saw writing; each is
//! checked with `getChatMember` in the dispatcher's bulk lane at `GMBOT_BULK_READS_PER_SECOND`
//! (default [`DEFAULT_BULK_RATE`]). After every page the results and the position are
//! stored (`audit_runs`), so `--resume` continues a run that was killed. Progress goes to
//! standard error: a bar with rate and ETA on a terminal, a JSON line every few seconds
//! otherwise. The report goes to standard output. Without `--apply` nothing changes in the
//! group; with it, non-subscribers are muted as the bot mutes them.
//!
//! `GMBOT_MTPROTO_SIM_URL` points the member list at a simulated Telegram (tests, demo).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use gmbot_bot::app::{App, AppDeps, BotIdentity};
use gmbot_bot::audit::{
    self, AuditError, AuditOptions, AuditProgress, AuditReport, ProgressSink, StartMode,
};
use gmbot_bot::mtproto::{MtprotoConnection, DEFAULT_SESSION};
use gmbot_bot::sim::SimDirectory;
use gmbot_bot::{BotApi, BotApiOptions, Config};
use gmbot_core::audit::{AuditRun, MemberDirectory};
use gmbot_core::cache::{MemoryCache, MemoryCacheConfig};
use gmbot_core::clock::SystemClock;
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::GroupId;
use gmbot_core::engine::EngineConfig;
use serde::Serialize;

use crate::database::Database;
use crate::error::CliError;
use crate::output::{self, Format};
use crate::table::key_values;

/// Bulk reads per second when `GMBOT_BULK_READS_PER_SECOND` is not set: 150,000 members in
/// about two hours, gentle beside a running bot.
pub(crate) const DEFAULT_BULK_RATE: u32 = 20;
/// Seconds between JSON progress lines when standard error is not a terminal.
const JSON_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The group's chat id (negative; supergroups look like -1001234567890).
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    group: GroupId,
    /// Mute the members who are not subscribed (as the bot does; lifted when they join).
    #[arg(long)]
    apply: bool,
    /// Continue the group's unfinished audit where it stopped.
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Drop the group's unfinished audit (its results are kept) and start a new one.
    #[arg(long)]
    restart: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The report, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct ReportView {
    group: i64,
    run: i64,
    state: &'static str,
    source: &'static str,
    apply: bool,
    resumed: bool,
    members: u64,
    checked: u64,
    subscribed: u64,
    not_subscribed: u64,
    unverifiable: u64,
    exempt: u64,
    restricted: u64,
    pages: u64,
    directory_total: Option<u64>,
    elapsed_seconds: f64,
    flood_waits: u64,
    note: Option<String>,
}

impl From<AuditError> for CliError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Unfinished { .. }
            | AuditError::NothingToResume(_)
            | AuditError::Mismatch(_)
            | AuditError::DeleteOnly(_) => CliError::usage(e),
            AuditError::Store(s) => CliError::from(s),
            other => CliError::runtime(other),
        }
    }
}

pub(super) async fn run(db: &Database, args: Args) -> Result<String, CliError> {
    let config = Config::from_env().map_err(CliError::usage)?;
    let Some(token) = config.token.clone() else {
        return Err(CliError::usage(anyhow!(
            "gmbot audit checks members against Telegram: set TELEGRAM_BOT_TOKEN (and TELEGRAM_API_ID and TELEGRAM_API_HASH to list every member, not only those seen writing)"
        )));
    };
    let store = db.open().await?;
    let options = BotApiOptions {
        base_url: config.api_url.clone(),
        ..BotApiOptions::default()
    };
    let api = BotApi::new(token.clone(), options)
        .map_err(|e| CliError::runtime(anyhow!("cannot build the Bot API client: {e}")))?;
    let mut dispatch = DispatchConfig::default();
    config.budgets.apply(&mut dispatch);
    let rate = dispatch.bulk_reads_per_second.unwrap_or(DEFAULT_BULK_RATE);
    dispatch.bulk_reads_per_second = Some(rate);
    let registry = prometheus::Registry::new();
    let clock: Arc<dyn gmbot_core::clock::Clock> = Arc::new(SystemClock::new());
    // The audit's answers refresh nothing the bot reads (another process): a small cache.
    let cache = MemoryCache::new(
        MemoryCacheConfig {
            max_capacity: 10_000,
            ..MemoryCacheConfig::default()
        },
        Arc::clone(&clock),
        &registry,
    )
    .map_err(|e| CliError::runtime(anyhow!("cannot build the membership cache: {e}")))?;
    let app = App::new(AppDeps {
        me: BotIdentity {
            id: api.bot_id(),
            username: String::new(),
        },
        store: Arc::clone(&store),
        telegram: Arc::new(api),
        cache: Arc::new(cache),
        clock,
        dispatch,
        engine: EngineConfig::default(),
        registry,
    })
    .map_err(|e| CliError::runtime(e.context("cannot start the audit")))?;

    let mut note = None;
    let mut connection = None;
    let directory: Option<Arc<dyn MemberDirectory>> = match (
        &config.mtproto,
        &config.mtproto_sim_url,
    ) {
        (None, _) => {
            note = Some(
                "TELEGRAM_API_ID and TELEGRAM_API_HASH are not set: only the members the bot saw writing were audited; set them to list every member through MTProto".to_owned(),
            );
            None
        }
        (Some(creds), Some(sim)) => Some(Arc::new(
            SimDirectory::new(
                sim.as_str(),
                creds.api_id,
                creds.api_hash.expose(),
                token.expose(),
            )
            .map_err(|e| CliError::runtime(anyhow!("{e}")))?,
        )),
        (Some(creds), None) => {
            let conn = MtprotoConnection::open(Arc::clone(&store), DEFAULT_SESSION, creds, &token)
                .await
                .map_err(|e| CliError::runtime(anyhow!(e)))?;
            let dir: Arc<dyn MemberDirectory> = Arc::new(conn.directory());
            connection = Some(conn);
            Some(dir)
        }
    };
    let start = if args.resume {
        StartMode::Resume
    } else if args.restart {
        StartMode::Restart
    } else {
        StartMode::New
    };
    let seen = store.count_seen(args.group).await?;
    let sink = Progress::new(std::io::stderr().is_terminal(), seen, rate);
    let result = audit::run_audit(
        &app,
        directory,
        AuditOptions {
            group: args.group,
            apply: args.apply,
            start,
            concurrency: audit::concurrency_for(rate),
        },
        &sink,
    )
    .await;
    sink.finish();
    if let Some(conn) = connection {
        conn.close().await;
    }
    app.shutdown().await;
    let report = result?;
    render(&report, note, args.format)
}

fn render(r: &AuditReport, note: Option<String>, format: Format) -> Result<String, CliError> {
    let c = &r.counts;
    let view = ReportView {
        group: r.run.group.get(),
        run: r.run.id.0,
        state: r.run.state.as_str(),
        source: r.run.source.as_str(),
        apply: r.run.apply,
        resumed: r.resumed,
        members: c.members,
        checked: c.checked(),
        subscribed: c.subscribed,
        not_subscribed: c.not_subscribed,
        unverifiable: c.unverifiable,
        exempt: c.exempt,
        restricted: c.restricted,
        pages: r.run.pages,
        directory_total: r.run.directory_total,
        elapsed_seconds: (r.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        flood_waits: r.flood_waits,
        note,
    };
    if format == Format::Json {
        return output::json(&view);
    }
    let mut out = format!(
        "audit of group {} {} (run {}{})\n",
        view.group,
        view.state,
        view.run,
        if view.resumed { ", resumed" } else { "" }
    );
    let mut pairs = vec![
        ("members", view.members.to_string()),
        ("checked", view.checked.to_string()),
        ("subscribed", view.subscribed.to_string()),
        ("not subscribed", view.not_subscribed.to_string()),
        ("unverifiable", view.unverifiable.to_string()),
        ("exempt", view.exempt.to_string()),
    ];
    pairs.push((
        "restricted",
        if view.apply {
            view.restricted.to_string()
        } else {
            "0 (run with --apply to mute the members not subscribed)".to_owned()
        },
    ));
    pairs.push(("pages", view.pages.to_string()));
    if let Some(t) = view.directory_total {
        pairs.push(("group size (Telegram)", t.to_string()));
    }
    pairs.push(("time", format!("{:.1} s", view.elapsed_seconds)));
    if view.flood_waits > 0 {
        pairs.push(("flood waits", view.flood_waits.to_string()));
    }
    out.push_str(&key_values(&pairs, 2));
    if let Some(n) = &view.note {
        out.push_str(&format!("note: {n}\n"));
    }
    Ok(out)
}

/// Progress on standard error: an indicatif bar on a terminal, JSON lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    seen: u64,
    rate: u32,
    last_line: Mutex<Option<Instant>>,
}

impl Progress {
    fn new(terminal: bool, seen: u64, rate: u32) -> Self {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(seen.max(1));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} members, {per_sec}, ETA {eta} — {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            seen,
            rate,
            last_line: Mutex::new(None),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&self, value: &serde_json::Value) {
        let _ = writeln!(std::io::stderr(), "{value}");
    }
}

impl ProgressSink for Progress {
    fn started(&self, run: &AuditRun, resumed: bool) {
        let value = serde_json::json!({
            "event": if resumed { "resumed" } else { "started" },
            "group": run.group.get(),
            "run": run.id.0,
            "pages_done": run.pages,
            "source": run.source.as_str(),
            "bulk_reads_per_second": self.rate,
        });
        match &self.bar {
            Some(bar) => bar.set_message(format!(
                "run {} {}",
                run.id,
                if resumed { "resumed" } else { "started" }
            )),
            None => self.line(&value),
        }
    }

    fn page(&self, p: &AuditProgress) {
        let total = p
            .run
            .directory_total
            .map_or(self.seen, |t| t + self.seen)
            .max(p.counts.members);
        if let Some(bar) = &self.bar {
            bar.set_length(total.max(1));
            bar.set_position(p.counts.members);
            bar.set_message(p.phase.clone());
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < JSON_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let secs = p.elapsed.as_secs_f64().max(0.001);
        let rate = p.checked_here as f64 / secs;
        let left = total.saturating_sub(p.counts.members);
        self.line(&serde_json::json!({
            "event": "progress",
            "run": p.run.id.0,
            "pages": p.run.pages,
            "members": p.counts.members,
            "of_about": total,
            "checked_per_second": (rate * 10.0).round() / 10.0,
            "eta_seconds": if rate > 0.0 { Some((left as f64 / rate).round()) } else { None },
            "phase": p.phase,
            "flood_waits": p.flood_waits,
        }));
    }
}
