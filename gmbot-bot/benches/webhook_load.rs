//! Webhook load: the real bot in webhook mode on PostgreSQL + Redis, its Bot API calls served
//! by the simulated Telegram, driven by 1,000 concurrent keep-alive connections POSTing
//! message updates the way Telegram's delivery does.
//!
//! In the same run it measures, with the same client, the ceiling of a bare `tiny_http`
//! listener that only answers 200 and of the simulated Telegram answering `getChatMember`,
//! so the bot's figure reads as a ratio of what the machine can do.
//!
//! ```text
//! cargo bench -p gmbot-bot --bench webhook_load
//! ```
//!
//! Two measured phases, each bounded by `GMBOT_LOAD_UPDATES` updates (default 200,000) or
//! `GMBOT_LOAD_SECONDS` seconds (default 20), whichever comes first, over
//! `GMBOT_LOAD_CONNECTIONS` connections (default 1,000): *paced*, an open loop offering
//! `GMBOT_LOAD_RATE` updates/s (default 10,000; latency is meaningful only when the bot keeps
//! up), then *saturation*, every connection sending as fast as it is answered (the webhook
//! answers before handling, so the queue fills and the 503 backpressure shows).
//! Needs PostgreSQL and Redis (see README.md); `GMBOT_LOAD_BACKEND=sqlite` runs on SQLite and
//! the in-process cache instead. `GMBOT_LOAD_JOURNAL=off` runs the bot with
//! `GMBOT_WEBHOOK_JOURNAL=off` (no write-ahead of each update before the answer; default `on`,
//! as the bot's own default).
//!
//! `GMBOT_LOAD_OBSERVABILITY=compare` measures what logging and metrics cost: after the one
//! warm-up, the paced and saturation phases run twice against the same bot, (a) *off* — the
//! `log` macros' ceiling at `off`, nobody reading `/metrics` — then (b) *on* — the bot's own
//! JSON formatter ([`gmbot_bot::logging::builder`]) at `info` writing every line to a file in a
//! temporary directory, and `/metrics` scraped once a second over a separate connection — and
//! prints both with the on/off ratios. The logger is installed once (env_logger allows one per
//! process); the two configurations switch with `log::set_max_level`. `GMBOT_LOAD_LOG_FILTER`
//! (default `info`, `RUST_LOG` syntax) sets the *on* filter, e.g. `debug` to format a line for
//! every update. Example:
//!
//! ```text
//! GMBOT_LOAD_BACKEND=sqlite GMBOT_LOAD_OBSERVABILITY=compare \
//!     cargo bench -p gmbot-bot --bench webhook_load
//! ```

#[path = "../../gmbot-core/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use env_logger::fmt::{Target, WriteStyle};
use gmbot_bot::config::LogFormat;
use gmbot_bot::logging;
use gmbot_bot::run::{Bot, RunOptions};
use gmbot_bot::runtime::{LatencyRecorder, RuntimeConfig, Shutdown};
use gmbot_bot::sim::{AdminRights, Simulator, SimulatorOptions};
use gmbot_bot::Config;
use gmbot_core::domain::{ChannelRef, EnforcedChannel, GroupId, ProtectRequest, UnixTime, UserId};
use log::LevelFilter;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SECRET: &str = "load_secret_0123456789";
const GROUPS: usize = 50;
const USERS: usize = 5_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one load phase measured.
#[derive(Debug, Default, Clone, Copy)]
struct Phase {
    requests: u64,
    errors: u64,
    elapsed: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Reads one HTTP/1.1 response (status line, headers, `Content-Length` body); returns the status.
async fn read_response(
    reader: &mut BufReader<TcpStream>,
    line: &mut String,
) -> std::io::Result<u16> {
    line.clear();
    if reader.read_line(line).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(status)
}

/// Drives `connections` keep-alive connections to `addr`, each sending requests built by
/// `request(n)` for n = 0, 1, … until `limit` requests or `duration` (whichever first).
async fn drive<F>(
    addr: SocketAddr,
    connections: usize,
    limit: u64,
    duration: Duration,
    rate: Option<f64>,
    request: F,
) -> Phase
where
    F: Fn(u64) -> Vec<u8> + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (request, next, done, errors) = (
            Arc::clone(&request),
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<BufReader<TcpStream>> = None;
            let mut line = String::new();
            loop {
                if Instant::now() >= deadline {
                    return;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= limit {
                    return;
                }
                // Open loop at a fixed rate: request n leaves at start + n / rate.
                if let Some(rate) = rate {
                    let at = started + Duration::from_secs_f64(n as f64 / rate);
                    if at >= deadline {
                        return;
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                let bytes = request(n);
                if conn.is_none() {
                    match TcpStream::connect(addr).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            conn = Some(BufReader::new(s));
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let sent = c.get_mut().write_all(&bytes).await;
                let status = match sent {
                    Ok(()) => {
                        tokio::time::timeout(Duration::from_secs(10), read_response(c, &mut line))
                            .await
                    }
                    Err(e) => Ok(Err(e)),
                };
                match status {
                    Ok(Ok(200)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Phase {
        requests: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

fn post(path: &str, extra_header: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra_header}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A bare listener: 4 threads, every request answered 200 after its body is read.
fn bare_listener() -> (
    SocketAddr,
    Arc<tiny_http::Server>,
    Vec<std::thread::JoinHandle<()>>,
) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bare listener binds"));
    let addr = server.server_addr().to_ip().expect("ip address");
    let threads = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                while let Ok(mut rq) = server.recv() {
                    let mut body = Vec::new();
                    let _ = std::io::Read::read_to_end(rq.as_reader(), &mut body);
                    let _ = rq.respond(tiny_http::Response::from_string("{\"ok\":true}"));
                }
            })
        })
        .collect();
    (addr, server, threads)
}

struct World {
    sim: Simulator,
    groups: Vec<(GroupId, i64)>,
    /// Every user and the group they write in.
    members: Vec<(UserId, GroupId)>,
}

fn world() -> World {
    let sim = Simulator::start_with(SimulatorOptions {
        workers: 4,
        ..SimulatorOptions::default()
    })
    .expect("simulator starts");
    let owner = sim.add_user("Owner");
    let mut groups = Vec::new();
    for g in 0..GROUPS {
        let group = sim
            .create_supergroup(&format!("Group {g}"), owner)
            .expect("group");
        let channel = sim
            .create_channel(
                &format!("Channel {g}"),
                Some(&format!("load_channel_{g}")),
                owner,
            )
            .expect("channel");
        sim.add_bot(group, owner, Some(AdminRights::moderator()))
            .expect("bot in group");
        sim.add_bot(channel, owner, Some(AdminRights::full()))
            .expect("bot in channel");
        groups.push((group, channel.0));
    }
    let mut members = Vec::new();
    for u in 0..USERS {
        let user = sim.add_user(&format!("User {u}"));
        let (group, channel) = groups[u % GROUPS];
        sim.join(group, user).expect("joins group");
        sim.join(gmbot_core::domain::ChannelId(channel), user)
            .expect("subscribes");
        members.push((user, group));
    }
    World {
        sim,
        groups,
        members,
    }
}

fn message_update(id: u64, user: UserId, group: GroupId) -> String {
    format!(
        r#"{{"update_id":{id},"message":{{"message_id":{id},"date":1700000000,"chat":{{"id":{g},"type":"supergroup","title":"Group"}},"from":{{"id":{u},"is_bot":false,"first_name":"User"}},"text":"hello number {id}"}}}}"#,
        g = group.0,
        u = user.0
    )
}

fn main() {
    let connections = env_or("GMBOT_LOAD_CONNECTIONS", 1000) as usize;
    let limit = env_or("GMBOT_LOAD_UPDATES", 200_000);
    let seconds = env_or("GMBOT_LOAD_SECONDS", 20);
    let sqlite = std::env::var("GMBOT_LOAD_BACKEND").is_ok_and(|b| b == "sqlite");
    let rate = env_or("GMBOT_LOAD_RATE", 10_000) as f64;
    let compare = match std::env::var("GMBOT_LOAD_OBSERVABILITY").ok().as_deref() {
        None | Some("" | "off") => None,
        Some("compare") => {
            let filter =
                std::env::var("GMBOT_LOAD_LOG_FILTER").unwrap_or_else(|_| "info".to_owned());
            Some(LogSink::install(&filter))
        }
        Some(other) => panic!("GMBOT_LOAD_OBSERVABILITY={other}: expected `compare` or `off`"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(
        connections,
        limit,
        Duration::from_secs(seconds),
        rate,
        sqlite,
        compare,
    ));
}

/// The process' logger in compare mode: the bot's JSON formatter writing into a file.
struct LogSink {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    filter: String,
    /// The `log` ceiling of the *on* configuration (the filter's most verbose level).
    on: LevelFilter,
}

impl LogSink {
    /// Installs the logger with the macros' ceiling at `off`.
    fn install(filter: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for the log");
        let path = dir.path().join("gmbot.jsonl");
        let file = std::fs::File::create(&path).expect("log file");
        let logger = logging::builder(LogFormat::Json, Some(filter))
            .write_style(WriteStyle::Never)
            .target(Target::Pipe(Box::new(file)))
            .build();
        let on = logger.filter();
        logging::install(logger, LevelFilter::Off).expect("the only logger of the process");
        Self {
            _dir: dir,
            path,
            filter: filter.to_owned(),
            on,
        }
    }

    /// Bytes and lines written so far.
    fn written(&self) -> (u64, u64) {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        (bytes.len() as u64, lines)
    }
}

/// What the `/metrics` scraper did.
#[derive(Debug, Default, Clone, Copy)]
struct Scrapes {
    ok: u64,
    failed: u64,
    bytes: u64,
    slowest: Duration,
}

/// One `GET /metrics` over its own HTTP/1.0 connection (so the body is never chunked);
/// returns the body's size on a 200.
async fn scrape(addr: SocketAddr) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(std::io::Error::other(format!("status {status}")));
    }
    Ok(buf.len() - head_end - 4)
}

/// Scrapes `/metrics` once a second until `stop` is set.
async fn scraper(addr: SocketAddr, stop: Arc<std::sync::atomic::AtomicBool>) -> Scrapes {
    let mut out = Scrapes::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            return out;
        }
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), scrape(addr)).await {
            Ok(Ok(bytes)) => {
                out.ok += 1;
                out.bytes += bytes as u64;
                out.slowest = out.slowest.max(started.elapsed());
            }
            _ => out.failed += 1,
        }
    }
}

async fn run(
    connections: usize,
    limit: u64,
    duration: Duration,
    target_rate: f64,
    sqlite: bool,
    compare: Option<LogSink>,
) {
    println!(
        "webhook load: {connections} connections, up to {limit} updates or {} s",
        duration.as_secs()
    );

    // 1. The bare listener's ceiling.
    let (bare_addr, bare_server, bare_threads) = bare_listener();
    let body = message_update(1, UserId(1), GroupId(-1));
    let bare = drive(
        bare_addr,
        connections,
        limit,
        Duration::from_secs(5).min(duration),
        None,
        move |_| post("/", "", &body),
    )
    .await;
    for _ in &bare_threads {
        bare_server.unblock();
    }
    drop(bare_threads);
    println!(
        "bare tiny_http listener: {:.0} requests/s ({} errors)",
        bare.rate(),
        bare.errors
    );

    // 2. The simulated Telegram's ceiling (getChatMember, the bot's hot call on a miss).
    let w = world();
    w.sim.set_recording(false);
    let (g0, c0) = w.groups[0];
    let _ = g0;
    let member = w.members[0].0;
    let sim_path = format!("/bot{}/getChatMember", w.sim.token());
    let sim_body = format!(r#"{{"chat_id":{c0},"user_id":{}}}"#, member.0);
    let sim_phase = drive(
        w.sim.addr(),
        connections,
        limit,
        Duration::from_secs(5).min(duration),
        None,
        move |_| post(&sim_path, "", &sim_body),
    )
    .await;
    println!(
        "simulated Telegram (getChatMember): {:.0} requests/s ({} errors)",
        sim_phase.rate(),
        sim_phase.errors
    );
    w.sim.set_recording(true);
    w.sim.take_calls();

    // 3. The bot.
    let pg = (!sqlite).then(support::PgSchema::new);
    let (_sqlite_file, sqlite_url) = support::sqlite_file_url();
    let redis_prefix = format!("gmbot:load:{}:", std::process::id());
    let mut vars = vec![
        ("TELEGRAM_BOT_TOKEN", w.sim.token().to_owned()),
        ("TELEGRAM_API_URL", w.sim.base_url()),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("WEBHOOK_URL", "http://127.0.0.1:0/hook".to_owned()),
        ("WEBHOOK_SECRET", SECRET.to_owned()),
        (
            "GMBOT_WEBHOOK_JOURNAL",
            std::env::var("GMBOT_LOAD_JOURNAL").unwrap_or_else(|_| "on".to_owned()),
        ),
    ];
    match &pg {
        Some(pg) => {
            vars.push(("DATABASE_URL", pg.url().to_owned()));
            vars.push(("GMBOT_MIGRATE", "auto".to_owned()));
            vars.push(("REDIS_URL", "redis://127.0.0.1:6379".to_owned()));
            let ok = redis::Client::open("redis://127.0.0.1:6379")
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if let Err(e) = ok {
                panic!("Redis is unreachable at 127.0.0.1:6379 ({e}); start it (`bash .ci/run` does) or run with GMBOT_LOAD_BACKEND=sqlite");
            }
        }
        None => vars.push(("DATABASE_URL", sqlite_url.to_string())),
    }
    let config = Config::from_vars(vars).expect("configuration");
    let latency = LatencyRecorder::new(2_000_000);
    let options = RunOptions {
        runtime: RuntimeConfig {
            workers: 256,
            queue_capacity: 20_000,
            latency: Some(latency.clone()),
            ..RuntimeConfig::default()
        },
        redis_prefix: redis_prefix.clone(),
        ..RunOptions::default()
    };
    let shutdown = Shutdown::new();
    let bot = Bot::start(&config, options, &shutdown)
        .await
        .expect("the bot starts");
    let app = bot.app().clone();
    let monitor = bot.monitor();
    let addr = bot.http_addr();
    for (group, channel) in &w.groups {
        let channel: ChannelRef = format!("{channel}").parse().expect("channel id");
        app.store()
            .protect(
                &ProtectRequest {
                    group: *group,
                    title: None,
                    owner: None,
                    channels: vec![EnforcedChannel::from_ref(channel)],
                },
                UnixTime::now(),
            )
            .await
            .expect("protect");
    }
    let running = tokio::spawn(bot.run(shutdown.clone()));
    let hook = format!("http://{addr}/hook");
    let start = Instant::now();
    while w.sim.webhook_url().as_deref() != Some(hook.as_str()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the webhook was not registered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let members = Arc::new(w.members.clone());
    let header = format!("X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n");
    let make = |base: u64| {
        let members = Arc::clone(&members);
        let header = header.clone();
        move |n: u64| {
            let id = base + n;
            let (user, group) = members[(id as usize * 7919) % members.len()];
            post("/hook", &header, &message_update(id, user, group))
        }
    };
    // Warm-up: every member writes once (cold cache, admin lists), not measured.
    let warm = drive(
        addr,
        connections.min(200),
        USERS as u64,
        Duration::from_secs(30),
        None,
        make(1_000_000),
    )
    .await;
    wait_idle(&monitor).await;
    let warm_calls = telegram_calls(&w.sim);
    println!(
        "warm-up: {} updates in {:.1} s ({} errors, {warm_calls} Telegram calls: first sight of each member and group)",
        warm.requests,
        warm.elapsed.as_secs_f64(),
        warm.errors
    );

    let backend = if sqlite {
        "SQLite + in-process cache"
    } else {
        "PostgreSQL + Redis (layered cache)"
    };
    println!("backend: {backend}");
    let phases = [
        ("paced", Some(target_rate), 10_000_000u64),
        ("saturation", None, 100_000_000u64),
    ];
    let measure = |label: &'static str, rate: Option<f64>, base: u64| {
        let (latency, w, monitor, app) = (&latency, &w, &monitor, &app);
        let make = &make;
        async move {
            latency.reset();
            let calls_before = telegram_calls(&w.sim);
            let stats_before = monitor.stats();
            let rejected_before = overloaded(app);
            let started = Instant::now();
            let load = drive(addr, connections, limit, duration, rate, make(base)).await;
            wait_idle(monitor).await;
            let total = started.elapsed();
            let stats = monitor.stats();
            Measured {
                label,
                offered: rate,
                accepted: load.requests - load.errors,
                http_errors: load.errors - (overloaded(app) - rejected_before),
                backpressure: overloaded(app) - rejected_before,
                handled: stats.handled - stats_before.handled,
                failed: stats.failed - stats_before.failed,
                calls: telegram_calls(&w.sim) - calls_before,
                total,
                latency: latency.summary(),
            }
        }
    };
    match &compare {
        None => {
            for (label, rate, base) in phases {
                let m = measure(label, rate, base).await;
                m.print(bare.rate(), sim_phase.rate());
            }
        }
        Some(sink) => {
            let mut results: Vec<Vec<Measured>> = Vec::new();
            for on in [false, true] {
                println!();
                if on {
                    println!(
                        "== logging and metrics ON: JSON lines at `{}` into a file, /metrics scraped every 1 s",
                        sink.filter
                    );
                    log::set_max_level(sink.on);
                } else {
                    println!("== logging and metrics OFF: log level off, no /metrics scrapes");
                    log::set_max_level(LevelFilter::Off);
                }
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let scraping = on.then(|| tokio::spawn(scraper(addr, Arc::clone(&stop))));
                let written_before = sink.written();
                let mut measured = Vec::new();
                // Offsets keep update ids unique across the two configurations.
                let offset = if on { 1_000_000_000 } else { 0 };
                for (label, rate, base) in phases {
                    let m = measure(label, rate, base + offset).await;
                    m.print(bare.rate(), sim_phase.rate());
                    measured.push(m);
                }
                stop.store(true, Ordering::Relaxed);
                let scrapes = match scraping {
                    Some(t) => t.await.expect("scraper task"),
                    None => Scrapes::default(),
                };
                log::set_max_level(LevelFilter::Off);
                let written_after = sink.written();
                let written = (
                    written_after.0 - written_before.0,
                    written_after.1 - written_before.1,
                );
                println!(
                    "  log: {} lines, {} bytes; /metrics: {} scrapes ({} failed), {} bytes each on average, slowest {:.1} ms",
                    written.1,
                    written.0,
                    scrapes.ok,
                    scrapes.failed,
                    scrapes.bytes / scrapes.ok.max(1),
                    ms(scrapes.slowest)
                );
                results.push(measured);
            }
            print_comparison(&results);
        }
    }

    shutdown.trigger();
    let report = running
        .await
        .expect("bot task")
        .expect("the bot stops cleanly");
    println!(
        "shutdown drain: {:?}, abandoned {}",
        report.drain.took, report.drain.abandoned
    );

    // Clean up this run's Redis keys.
    if !sqlite {
        if let Ok(mut c) =
            redis::Client::open("redis://127.0.0.1:6379").and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{redis_prefix}*"))
                .query(&mut c)
                .unwrap_or_default();
            for chunk in keys.chunks(1000) {
                let _ = redis::cmd("DEL").arg(chunk).query::<i64>(&mut c);
            }
        }
    }
}

/// One measured phase of the bot.
struct Measured {
    label: &'static str,
    offered: Option<f64>,
    accepted: u64,
    http_errors: u64,
    backpressure: u64,
    handled: u64,
    failed: u64,
    calls: u64,
    total: Duration,
    latency: gmbot_bot::runtime::LatencySummary,
}

impl Measured {
    /// Updates handled per second, to the last one handled.
    fn rate(&self) -> f64 {
        self.handled as f64 / self.total.as_secs_f64().max(1e-9)
    }

    fn print(&self, bare: f64, sim: f64) {
        let rate = self.rate();
        println!();
        match self.offered {
            Some(r) => println!("{} phase: offered {r:.0} updates/s (open loop)", self.label),
            None => println!(
                "{} phase: as fast as the connections go (closed loop)",
                self.label
            ),
        }
        println!(
            "  handled {} updates in {:.2} s (to the last one handled): {rate:.0} updates/s",
            self.handled,
            self.total.as_secs_f64()
        );
        println!(
            "  receipt to decision: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.latency.p50),
            ms(self.latency.p95),
            ms(self.latency.p99),
            ms(self.latency.max)
        );
        println!(
            "  Telegram calls per update: {:.4} ({} calls)",
            self.calls as f64 / self.handled.max(1) as f64,
            self.calls
        );
        println!(
            "  errors: {} (HTTP other than 200/503: {}, handling failures: {}); 503 backpressure: {}; accepted: {}",
            self.http_errors + self.failed,
            self.http_errors,
            self.failed,
            self.backpressure,
            self.accepted
        );
        println!(
            "  ratios: {:.1} % of the bare listener ({bare:.0}/s), {:.1} % of the simulator's ceiling ({sim:.0}/s)",
            100.0 * rate / bare,
            100.0 * rate / sim
        );
    }
}

fn overloaded(app: &gmbot_bot::app::App) -> u64 {
    app.metrics()
        .webhook_rejections
        .with_label_values(&["overloaded"])
        .get()
}

/// The on/off table of compare mode.
fn print_comparison(results: &[Vec<Measured>]) {
    let [off, on] = results else {
        return;
    };
    println!();
    println!("cost of logging and metrics (on / off):");
    println!("| phase | config | updates/s handled | p50 ms | p95 ms | p99 ms | errors | 503s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (a, b) in off.iter().zip(on) {
        for (config, m) in [("off", a), ("on", b)] {
            println!(
                "| {} | {config} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
                m.label,
                m.rate(),
                ms(m.latency.p50),
                ms(m.latency.p95),
                ms(m.latency.p99),
                m.http_errors + m.failed,
                m.backpressure
            );
        }
        let ratio = b.rate() / a.rate().max(1e-9);
        println!(
            "{} throughput ratio on/off: {ratio:.3} ({})",
            a.label,
            if ratio >= 0.90 {
                "within 10 %"
            } else {
                "MORE than 10 % slower"
            }
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn telegram_calls(sim: &Simulator) -> u64 {
    sim.calls()
        .iter()
        .filter(|c| {
            !matches!(
                c.method.as_str(),
                "getUpdates" | "setWebhook" | "deleteWebhook" | "getMe"
            )
        })
        .count() as u64
}

async fn wait_idle(monitor: &gmbot_bot::runtime::RuntimeMonitor) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !monitor.is_idle() {
        assert!(
            Instant::now() < deadline,
            "the bot did not finish within 60 s: {:?}",
            monitor.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
