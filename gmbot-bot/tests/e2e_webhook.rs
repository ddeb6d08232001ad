//! End to end in webhook mode: the simulated Telegram POSTs updates to the bot's listener.
//! The whole flow on SQLite and on PostgreSQL + Redis, the webhook's security answers
//! (401, 413, 400, duplicates), and de-duplication across two instances sharing Redis.

mod e2e_support;

use std::time::Duration;

use gmbot_bot::transport::webhook::derive_secret;
use gmbot_bot::BotToken;
use serde_json::json;

use e2e_support::{
    options, settle, start, start_with, wait_until, whole_flow, world, Backend, Running, Transport,
    SECRET,
};

fn rejections(bot: &Running, reason: &str) -> u64 {
    bot.app
        .metrics()
        .webhook_rejections
        .with_label_values(&[reason])
        .get()
}

async fn post(url: &str, secret: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(body);
    if let Some(s) = secret {
        req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
    }
    let resp = req.send().await.expect("the listener answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn private_update(id: u64, user: i64, text: &str) -> Vec<u8> {
    json!({
        "update_id": id,
        "message": {
            "message_id": 1000 + id, "date": 1_700_000_000,
            "chat": {"id": user, "type": "private", "first_name": "Alice"},
            "from": {"id": user, "is_bot": false, "first_name": "Alice"},
            "text": text
        }
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_whole_flow_on_sqlite_with_a_derived_secret() {
    let w = world();
    let backend = Backend::sqlite();
    let bot = start(&w.sim, &backend, Transport::WebhookDerivedSecret).await;
    let set = w.sim.calls_to("setWebhook");
    let call = set.last().expect("setWebhook was called");
    let token = BotToken::parse(w.sim.token()).expect("token");
    assert_eq!(
        call.str("secret_token"),
        Some(derive_secret(&token).expose()),
        "the derived secret is sent"
    );
    assert_eq!(call.int("max_connections"), Some(100));
    let kinds = call.params["allowed_updates"].to_string();
    for k in [
        "message",
        "edited_message",
        "callback_query",
        "chat_member",
        "my_chat_member",
    ] {
        assert!(kinds.contains(k), "{kinds}");
    }
    whole_flow(&w, &bot).await;
    assert!(
        w.sim.calls_to("getUpdates").is_empty(),
        "no polling in webhook mode"
    );
    assert_eq!(w.sim.webhook_last_error(), None);
    let report = bot.stop().await;
    assert_eq!(report.drain.abandoned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_whole_flow_on_postgres_and_redis() {
    let w = world();
    let backend = Backend::postgres_redis();
    let bot = start(&w.sim, &backend, Transport::Webhook).await;
    assert_eq!(
        w.sim
            .calls_to("setWebhook")
            .last()
            .and_then(|c| c.str("secret_token").map(str::to_owned)),
        Some(SECRET.to_owned())
    );
    whole_flow(&w, &bot).await;
    let handled = bot.monitor.stats().handled;
    let report = bot.stop().await;
    assert_eq!(report.drain.abandoned, 0);
    // Every update was claimed in Redis under this run's prefix (so other instances skip it).
    let Backend::PostgresRedis(_, redis) = &backend else {
        unreachable!("postgres backend")
    };
    let claims = redis
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("{}u:", redis.prefix)))
        .count() as u64;
    assert!(
        claims >= handled,
        "{claims} claims for {handled} handled updates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_security() {
    let w = world();
    let backend = Backend::sqlite();
    let mut opts = options(&backend);
    opts.max_body = 4096;
    let bot = start_with(&w.sim, &backend, Transport::Webhook, opts).await;
    settle(&w.sim, &bot.monitor).await;
    let url = bot.webhook_url();
    let before = bot.monitor.stats().queued;
    let alice = w.alice.0;

    // No secret, wrong secret, a secret that is a prefix of the right one: 401, nothing queued.
    let (s, _) = post(&url, None, private_update(9001, alice, "/start")).await;
    assert_eq!(s, 401);
    let (s, _) = post(&url, Some("wrong"), private_update(9001, alice, "/start")).await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &url,
        Some(&SECRET[..SECRET.len() - 1]),
        private_update(9001, alice, "/start"),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(rejections(&bot, "unauthorized"), 3);

    // Oversized: 413, whatever the content.
    let mut big = private_update(9002, alice, &"x".repeat(5000));
    assert!(big.len() > 4096);
    let (s, _) = post(&url, Some(SECRET), std::mem::take(&mut big)).await;
    assert_eq!(s, 413);

    // Malformed: 400, logged and counted, no panic.
    for body in [&b"{not json"[..], b"[]", b"{\"update_id\": \"x\"}", b""] {
        let (s, text) = post(&url, Some(SECRET), body.to_vec()).await;
        assert_eq!(s, 400, "{body:?}: {text}");
    }
    assert_eq!(rejections(&bot, "malformed"), 4);
    assert_eq!(
        bot.monitor.stats().queued,
        before,
        "nothing refused was queued"
    );

    // A kind this version does not know: acknowledged so Telegram stops re-sending it, and
    // queued as an `other` update (counted, handled as nothing).
    let unknown = json!({"update_id": 9003, "some_future_update": {"x": 1}}).to_string();
    let (s, _) = post(&url, Some(SECRET), unknown.into_bytes()).await;
    assert_eq!(s, 200);

    // The same update twice: accepted twice, processed once.
    let replies_before = w
        .sim
        .calls_to("sendMessage")
        .iter()
        .filter(|c| c.int("chat_id") == Some(alice))
        .count();
    let (s1, _) = post(&url, Some(SECRET), private_update(9004, alice, "/help")).await;
    let (s2, body2) = post(&url, Some(SECRET), private_update(9004, alice, "/help")).await;
    assert_eq!((s1, s2), (200, 200));
    assert!(body2.contains("duplicate"), "{body2}");
    settle(&w.sim, &bot.monitor).await;
    assert_eq!(bot.monitor.stats().queued, before + 2);
    assert_eq!(rejections(&bot, "duplicate"), 1);
    let replies = w
        .sim
        .calls_to("sendMessage")
        .iter()
        .filter(|c| c.int("chat_id") == Some(alice))
        .count();
    assert_eq!(
        replies,
        replies_before + 1,
        "one /help answer for two deliveries"
    );

    // Other paths and methods are not the webhook.
    let (s, _) = post(
        &format!("http://{}/elsewhere", bot.addr),
        Some(SECRET),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, 404);
    let get = reqwest::get(&url).await.expect("GET answers");
    assert_eq!(get.status().as_u16(), 405);

    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_process_an_update_once() {
    let w = world();
    // Ten users who have opened a chat with the bot (one answer each: per-chat limits stay out
    // of the way).
    let users: Vec<i64> = (0..10)
        .map(|i| {
            let u = w.sim.add_user(&format!("User {i}"));
            w.sim.start_bot(u).expect("opens the private chat");
            u.0
        })
        .collect();
    let backend = Backend::postgres_redis();
    let a = start(&w.sim, &backend, Transport::Webhook).await;
    let b = start(&w.sim, &backend, Transport::Webhook).await;
    settle(&w.sim, &a.monitor).await;
    settle(&w.sim, &b.monitor).await;
    let answers = |user: i64| {
        w.sim
            .calls_to("sendMessage")
            .iter()
            .filter(|c| c.int("chat_id") == Some(user))
            .count()
    };
    let before: Vec<usize> = users.iter().map(|&u| answers(u)).collect();
    let (qa, qb) = (a.monitor.stats(), b.monitor.stats());

    // Telegram re-delivers to whichever instance the balancer picks.
    for (i, &user) in users.iter().enumerate() {
        let body = private_update(9100 + i as u64, user, "/help");
        let (s1, _) = post(&a.webhook_url(), Some(SECRET), body.clone()).await;
        let (s2, _) = post(&b.webhook_url(), Some(SECRET), body).await;
        assert_eq!((s1, s2), (200, 200));
    }
    wait_until(
        "both instances handled or skipped all 20 deliveries",
        || {
            let (sa, sb) = (a.monitor.stats(), b.monitor.stats());
            a.monitor.is_idle()
                && b.monitor.is_idle()
                && sa.queued + sb.queued == qa.queued + qb.queued + 20
        },
    )
    .await;
    let (sa, sb) = (a.monitor.stats(), b.monitor.stats());
    assert_eq!(
        sa.claimed_elsewhere + sb.claimed_elsewhere - qa.claimed_elsewhere - qb.claimed_elsewhere,
        10,
        "the second delivery of each update was skipped: {sa:?} {sb:?}"
    );
    assert_eq!(sa.failed + sb.failed, 0);
    for (i, &user) in users.iter().enumerate() {
        assert_eq!(
            answers(user),
            before[i] + 1,
            "one answer per update, not per delivery"
        );
    }
    // The answers went out on the bot's budget shared through Redis, not on each instance's.
    for i in [&a, &b] {
        assert_eq!(i.app.dispatcher().budget_fallback(), Some(false));
    }
    let used: f64 = [&a, &b]
        .iter()
        .map(|i| {
            let text = prometheus::TextEncoder::new()
                .encode_to_string(&i.app.registry().gather())
                .expect("encodes");
            text.lines()
                .filter(|l| l.starts_with("gmbot_budget_slots_total{outcome=\"used\"}"))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum::<f64>()
        })
        .sum();
    assert!(used >= 10.0, "{used} shared slots used for 10 answers");
    a.stop().await;
    b.stop().await;
}
