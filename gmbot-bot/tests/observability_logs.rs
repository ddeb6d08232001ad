//! Structured logs from a real run: the whole bot (polling, handlers, Bot API client,
//! dispatcher, store, HTTP listener) against the simulated Telegram, logging JSON lines at
//! `trace` for every crate into a buffer. Every line must be one JSON object with its fields,
//! the lines about updates must carry their context, and neither the bot token nor what
//! members wrote may appear in any line at any level.
//!
//! One test per file: the logger is process-wide.

mod common;

use std::time::Duration;

use gmbot_bot::config::LogFormat;
use gmbot_bot::logging::{self, LineBuffer};
use gmbot_bot::run::{Bot, RunOptions};
use gmbot_bot::runtime::Shutdown;
use gmbot_bot::sim::{Fault, FaultKind};
use gmbot_bot::Config;
use gmbot_core::domain::{ChannelUsername, EnforcedChannel, Owner, ProtectRequest, UnixTime};

/// Every crate at trace, the usually quiet dependencies included.
const EVERYTHING: &str = "trace,reqwest=trace,hyper=trace,hyper_util=trace,h2=trace,rustls=trace,\
tokio_postgres=trace,postgres=trace,r2d2=trace,redis=trace,tiny_http=trace,mio=trace,want=trace";

/// What the non-subscriber writes: must never be logged.
const USER_TEXT: &str = "buy cheap followers at spam-example-4711";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_context_and_never_the_token() {
    let buffer = LineBuffer::new();
    let logger = logging::captured(LogFormat::Json, Some(EVERYTHING), &buffer);
    logging::install(logger, log::LevelFilter::Trace).expect("first logger of this process");

    let w = common::world();
    let token = w.sim.token().to_owned();
    let secret = common::token_secret(&w.sim);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::from_vars([
        ("TELEGRAM_BOT_TOKEN", token.clone()),
        ("TELEGRAM_API_URL", w.sim.base_url()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gmbot.db").display()),
        ),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("GMBOT_LOG_FORMAT", "json".to_owned()),
    ])
    .expect("config");
    let options = RunOptions {
        long_poll: Duration::from_secs(1),
        http_threads: 2,
        ..RunOptions::default()
    };
    let shutdown = Shutdown::new();
    let bot = Bot::start(&config, options, &shutdown)
        .await
        .expect("bot starts against the simulator");
    let http = bot.http_addr();

    // The group is protected as `/protect @test_news` would leave it.
    let store = bot.app().store().clone();
    store
        .upsert_owner(&Owner {
            user_id: w.owner,
            username: None,
            display_name: Some("Owner".into()),
            can_be_messaged: false,
            created_at: UnixTime(1),
        })
        .await
        .expect("owner");
    store
        .protect(
            &ProtectRequest {
                group: w.group,
                title: Some("Test group".into()),
                owner: Some(w.owner),
                channels: vec![EnforcedChannel {
                    id: Some(w.channel),
                    username: Some(ChannelUsername::parse("test_news").expect("username")),
                    title: Some("News".into()),
                    invite_link: None,
                }],
            },
            UnixTime(2),
        )
        .await
        .expect("protect");

    let running = tokio::spawn(bot.run(shutdown.clone()));

    // One transient failure on the way, so error paths (which quote URLs) log too.
    w.sim
        .inject(Fault::on("getChatMember", FaultKind::ServerError(502)));
    w.sim
        .post(w.group, w.alice, "hello, I am subscribed")
        .expect("alice posts");
    w.sim.post(w.group, w.bob, USER_TEXT).expect("bob posts");
    // The bot runs on the other worker meanwhile.
    let enforced = tokio::task::block_in_place(|| {
        w.sim.wait_for_calls(Duration::from_secs(20), |calls| {
            calls.iter().any(|c| c.method == "restrictChatMember")
                && calls.iter().any(|c| c.method == "deleteMessage")
        })
    });
    assert!(
        enforced,
        "the non-subscriber was not muted: {:?}",
        w.sim.calls()
    );

    // The endpoints log too (readiness probes).
    let client = reqwest::Client::new();
    for path in ["/ready", "/metrics", "/nope"] {
        let _ = client
            .get(format!("http://{http}{path}"))
            .send()
            .await
            .expect("endpoint answers");
    }

    shutdown.trigger();
    running.await.expect("bot task").expect("bot stops cleanly");
    log::logger().flush();

    let lines = buffer.lines();
    assert!(
        lines.len() > 20,
        "too few lines to prove anything: {lines:?}"
    );
    let mut levels = std::collections::BTreeSet::new();
    let mut with_context = 0;
    for line in &lines {
        assert!(!line.contains(&token), "the token leaked: {line}");
        assert!(!line.contains(&secret), "the token's secret leaked: {line}");
        assert!(
            !line.contains(USER_TEXT),
            "a member's message leaked: {line}"
        );
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v[field].is_string(), "{field} missing: {line}");
        }
        let ts = v["timestamp"].as_str().unwrap_or_default();
        assert!(
            ts.ends_with('Z') && ts.len() == 24,
            "timestamp not RFC 3339 UTC: {line}"
        );
        levels.insert(v["level"].as_str().unwrap_or_default().to_owned());
        if v["update_id"].is_number() && v["group_id"].is_number() && v["user_id"].is_number() {
            with_context += 1;
        }
    }
    assert!(
        levels.contains("TRACE") || levels.contains("DEBUG"),
        "the run must log at debug or trace to prove the token stays out at every level: {levels:?}"
    );
    assert!(
        with_context > 0,
        "no line about an update carries update_id, group_id and user_id:\n{}",
        lines.join("\n")
    );
    let decided = lines.iter().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .map(|v| v["decision"].is_string() && v["update_id"].is_number())
            .unwrap_or(false)
    });
    assert!(
        decided,
        "no line carries the decision with its update:\n{}",
        lines.join("\n")
    );
}
