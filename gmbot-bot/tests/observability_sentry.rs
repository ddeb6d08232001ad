//! Sentry without the network: a local HTTP endpoint on 127.0.0.1 plays Sentry's ingest and
//! collects the SDK's envelopes. An error log line and a panic, each inside an update's
//! context, must arrive as events with release, environment and the context as tags — and
//! without the bot token or what the member wrote.
//!
//! One test per file: the logger and the Sentry client are process-wide.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gmbot_bot::config::LogFormat;
use gmbot_bot::logging::{self, LineBuffer};
use gmbot_bot::sentry::{self as gm_sentry, EventContext, SentrySettings};
use gmbot_bot::BotToken;

const TOKEN: &str = "7000000001:AAFsimulatedTokenFor_tests-01234567";
const USER_TEXT: &str = "my phone number is 555-0100";

/// Requests received: (path, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn ingest() -> (tiny_http::Server, Received) {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("ingest binds");
    (server, Arc::default())
}

/// Every event item of every envelope received so far.
fn events(received: &Received) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (_, body) in received.lock().expect("lock").iter() {
        let text = String::from_utf8_lossy(body);
        let mut lines = text.lines();
        let _envelope_header = lines.next();
        while let Some(item_header) = lines.next() {
            let Ok(header) = serde_json::from_str::<serde_json::Value>(item_header) else {
                continue;
            };
            let Some(payload) = lines.next() else { break };
            if header["type"] == "event" {
                out.push(serde_json::from_str(payload).expect("event payload is JSON"));
            }
        }
    }
    out
}

fn wait_for(received: &Received, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = events(received);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_panics_reach_sentry_tagged_and_scrubbed() {
    let (server, received) = ingest();
    let port = server.server_addr().to_ip().expect("ip listener").port();
    let server = Arc::new(server);
    let collector = {
        let server = Arc::clone(&server);
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            while let Ok(mut request) = server.recv() {
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                received
                    .lock()
                    .expect("lock")
                    .push((request.url().to_owned(), body));
                let _ = request.respond(tiny_http::Response::from_string("{}"));
            }
        })
    };

    let token = BotToken::parse(TOKEN).expect("token");
    let settings = SentrySettings::new(&format!("http://publickey@127.0.0.1:{port}/1"), "staging")
        .expect("DSN parses")
        .scrub_token(token.clone());
    let guard = gm_sentry::init(settings);
    let buffer = LineBuffer::new();
    let logger = logging::captured(LogFormat::Json, None, &buffer);
    logging::install(gm_sentry::logger(logger), log::LevelFilter::Info).expect("first logger");

    // An error line inside an update's context.
    let context = EventContext {
        update_id: Some(77),
        group_id: Some(-1_001_234),
        user_id: Some(42),
    };
    gm_sentry::scoped(context, async {
        log::info!(update_id = 77; "not sent to Sentry");
        log::warn!(update_id = 77; "kept as a breadcrumb");
        log::error!(
            update_id = 77,
            group_id = -1_001_234_i64,
            user_id = 42,
            decision = "deny",
            text = USER_TEXT;
            "restrictChatMember failed: POST http://127.0.0.1/bot{TOKEN}/restrictChatMember"
        );
    })
    .await;
    let first = wait_for(&received, 1);
    assert_eq!(first.len(), 1, "exactly the error line became an event");

    // A panic while handling another update.
    let panicking = EventContext {
        update_id: Some(78),
        group_id: Some(-1_005),
        user_id: Some(43),
    };
    let joined = tokio::spawn(gm_sentry::scoped(panicking, async move {
        panic!("handler bug near token {TOKEN}");
    }))
    .await;
    assert!(joined.is_err(), "the task panicked");
    assert!(guard.flush(Duration::from_secs(5)), "events delivered");
    let all = wait_for(&received, 2);
    assert_eq!(all.len(), 2, "{all:#?}");

    let raw: String = received
        .lock()
        .expect("lock")
        .iter()
        .map(|(path, body)| {
            assert_eq!(path, "/api/1/envelope/", "the SDK posts envelopes");
            String::from_utf8_lossy(body).into_owned()
        })
        .collect();
    assert!(!raw.contains(TOKEN), "the token reached Sentry: {raw}");
    assert!(
        !raw.contains("AAFsimulatedTokenFor_tests-01234567"),
        "the token's secret reached Sentry"
    );
    assert!(
        !raw.contains(USER_TEXT),
        "a member's text reached Sentry: {raw}"
    );

    let error = all
        .iter()
        // `error` is the protocol's default level, omitted from the payload.
        .find(|e| e["level"] == "error" || e["level"].is_null())
        .unwrap_or_else(|| panic!("no error event in {all:#?}"));
    assert_eq!(
        error["release"],
        format!("gmbot-bot@{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(error["environment"], "staging");
    assert_eq!(error["tags"]["update_id"], "77");
    assert_eq!(error["tags"]["group_id"], "-1001234");
    assert_eq!(error["tags"]["user_id"], "42");
    assert_eq!(error["tags"]["decision"], "deny");
    let message = error["message"]
        .as_str()
        .or_else(|| error["logentry"]["message"].as_str())
        .expect("message");
    assert!(message.contains("restrictChatMember failed"), "{message}");
    assert!(message.contains("/bot<redacted>/"), "{message}");
    let crumbs = error["breadcrumbs"]["values"]
        .as_array()
        .or_else(|| error["breadcrumbs"].as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        crumbs
            .iter()
            .any(|c| c["message"] == "kept as a breadcrumb"),
        "warnings are breadcrumbs: {crumbs:?}"
    );
    assert!(
        !crumbs.iter().any(|c| c["message"] == "not sent to Sentry"),
        "info lines are not sent"
    );

    let panic = all
        .iter()
        .find(|e| e["level"] == "fatal")
        .unwrap_or_else(|| panic!("no panic event in {all:#?}"));
    assert_eq!(panic["tags"]["update_id"], "78");
    assert_eq!(panic["tags"]["group_id"], "-1005");
    assert_eq!(panic["tags"]["user_id"], "43");
    assert_eq!(panic["environment"], "staging");
    let value = panic["exception"]["values"][0]["value"]
        .as_str()
        .or_else(|| panic["exception"][0]["value"].as_str())
        .expect("panic message");
    assert!(
        value.contains("handler bug near token <redacted>"),
        "{value}"
    );

    // The log itself got the error line too.
    assert!(buffer
        .lines()
        .iter()
        .any(|l| l.contains("restrictChatMember failed")));

    drop(guard);
    server.unblock();
    collector.join().expect("collector stops");
}
