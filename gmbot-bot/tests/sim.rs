//! Behaviours of the simulated Telegram itself, checked over raw HTTP: Telegram's JSON shapes
//! and error texts, request formats, long polling, webhook delivery, update filtering.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use gmbot_bot::sim::{AdminRights, Fault, FaultKind, MemberState, Simulator};
use gmbot_core::domain::ChatId;
use serde_json::{json, Value};

use common::world;

/// Polls a condition of the simulator (bounded: 10 s).
async fn wait_until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn call(sim: &Simulator, method: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/bot{}/{method}", sim.base_url(), sim.token());
    let resp = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("simulator answers");
    raw_json(resp).await
}

async fn raw_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON answer, got {text}"));
    (status, value)
}

#[tokio::test]
async fn channel_membership_needs_channel_admin() {
    let w = world();
    let other = w
        .sim
        .create_channel("Other", None, w.owner)
        .expect("channel");
    w.sim.join(other, w.alice).expect("join");
    let (status, body) = call(
        &w.sim,
        "getChatMember",
        json!({"chat_id": other.0, "user_id": w.alice.0}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: member list is inaccessible"})
    );
    // Promote the bot in that channel: now it may look.
    w.sim
        .add_bot(other, w.owner, Some(AdminRights::full()))
        .expect("add bot");
    let (status, body) = call(
        &w.sim,
        "getChatMember",
        json!({"chat_id": other.0, "user_id": w.alice.0}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true);
    assert_eq!(body["result"]["status"], "member");
    assert_eq!(body["result"]["user"]["id"], w.alice.0);
}

#[tokio::test]
async fn restricting_admins_fails_with_telegrams_texts() {
    let w = world();
    w.sim
        .promote(w.group, w.alice, AdminRights::moderator())
        .expect("promote");
    let perms = json!({"can_send_messages": false});
    let (status, body) = call(
        &w.sim,
        "restrictChatMember",
        json!({"chat_id": w.group.0, "user_id": w.alice.0, "permissions": perms}),
    )
    .await;
    assert_eq!(
        (status, body["description"].clone()),
        (
            400,
            json!("Bad Request: user is an administrator of the chat")
        )
    );
    let (_, body) = call(
        &w.sim,
        "restrictChatMember",
        json!({"chat_id": w.group.0, "user_id": w.owner.0, "permissions": perms}),
    )
    .await;
    assert_eq!(body["description"], "Bad Request: can't remove chat owner");
    // Basic groups have no restrictions.
    let basic = w.sim.create_basic_group("Basic", w.owner).expect("group");
    w.sim
        .add_bot(basic, w.owner, Some(AdminRights::moderator()))
        .expect("bot");
    w.sim.join(basic, w.bob).expect("join");
    let (_, body) = call(
        &w.sim,
        "restrictChatMember",
        json!({"chat_id": basic.0, "user_id": w.bob.0, "permissions": perms}),
    )
    .await;
    assert_eq!(
        body["description"],
        "Bad Request: method is available only for supergroups"
    );
}

#[tokio::test]
async fn export_invite_link_revokes_the_previous_one() {
    let w = world();
    let (_, first) = call(
        &w.sim,
        "exportChatInviteLink",
        json!({"chat_id": w.channel.0}),
    )
    .await;
    let first = first["result"].as_str().expect("link").to_owned();
    let carol = w.sim.add_user("Carol");
    assert_eq!(w.sim.join_by_link(&first, carol), Ok(ChatId(w.channel.0)));
    let (_, second) = call(
        &w.sim,
        "exportChatInviteLink",
        json!({"chat_id": w.channel.0}),
    )
    .await;
    let second = second["result"].as_str().expect("link").to_owned();
    assert_ne!(first, second);
    let dave = w.sim.add_user("Dave");
    assert!(
        w.sim.join_by_link(&first, dave).is_err(),
        "the old link is revoked"
    );
    assert!(w.sim.join_by_link(&second, dave).is_ok());
    let (_, created) = call(
        &w.sim,
        "createChatInviteLink",
        json!({"chat_id": w.channel.0, "name": "gmbot"}),
    )
    .await;
    assert_eq!(created["result"]["is_primary"], false);
    assert_eq!(created["result"]["creator"]["id"], w.sim.bot().id.0);
}

#[tokio::test]
async fn routing_tokens_and_malformed_requests() {
    let w = world();
    let http = reqwest::Client::new();
    let base = w.sim.base_url();
    let token = w.sim.token().to_owned();

    let wrong = http
        .get(format!("{base}/bot1:wrong/getMe"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        raw_json(wrong).await,
        (
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        )
    );
    let unknown = http
        .get(format!("{base}/bot{token}/fooBar"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        raw_json(unknown).await,
        (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"})
        )
    );
    let root = http.get(format!("{base}/")).send().await.expect("answer");
    assert_eq!(raw_json(root).await.0, 404);

    // GET with a query string, any capitalisation of the method.
    let q = http
        .get(format!(
            "{base}/bot{token}/getchatmember?chat_id={}&user_id={}",
            w.group.0, w.bob.0
        ))
        .send()
        .await
        .expect("answer");
    let (status, body) = raw_json(q).await;
    assert_eq!(
        (status, body["result"]["status"].clone()),
        (200, json!("member"))
    );
    // A form body.
    let form = http
        .post(format!("{base}/bot{token}/sendMessage"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "chat_id={}&text=hello%20form&reply_markup=%7B%22inline_keyboard%22%3A%5B%5B%7B%22text%22%3A%22a%22%2C%22callback_data%22%3A%22b%22%7D%5D%5D%7D",
            w.group.0
        ))
        .send()
        .await
        .expect("answer");
    let (status, body) = raw_json(form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["text"], "hello form");
    assert_eq!(
        body["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "b"
    );

    // Malformed bodies and parameters: 400 JSON, never a crash.
    for (ctype, body) in [
        ("application/json", b"{not json".to_vec()),
        ("application/json", b"[1,2,3]".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        (
            "application/json",
            br#"{"chat_id": {"x": 1}, "user_id": "abc"}"#.to_vec(),
        ),
        ("multipart/form-data; boundary=x", b"--x--".to_vec()),
    ] {
        let resp = http
            .post(format!("{base}/bot{token}/getChatMember"))
            .header("Content-Type", ctype)
            .body(body)
            .send()
            .await
            .expect("answer");
        let (status, value) = raw_json(resp).await;
        assert_eq!(status, 400, "{value}");
        assert_eq!(value["ok"], false);
    }
    let huge = http
        .post(format!("{base}/bot{token}/sendMessage"))
        .header("Content-Type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .expect("answer");
    assert_eq!(raw_json(huge).await.0, 413);
    // Still serving.
    let (status, _) = call(&w.sim, "getMe", json!({})).await;
    assert_eq!(status, 200);
    let calls = w.sim.calls_to("getChatMember");
    assert!(
        calls.iter().any(|c| c.status == 400),
        "failed calls are recorded too"
    );
}

#[tokio::test]
async fn injected_rate_limit_has_telegrams_shape() {
    let w = world();
    w.sim
        .inject(Fault::on("getMe", FaultKind::RetryAfter(12)).times(2));
    for _ in 0..2 {
        assert_eq!(
            call(&w.sim, "getMe", json!({})).await,
            (
                429,
                json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 12", "parameters": {"retry_after": 12}})
            )
        );
    }
    assert_eq!(call(&w.sim, "getMe", json!({})).await.0, 200);
    w.sim
        .inject(Fault::on_any(FaultKind::ServerError(500)).always());
    assert_eq!(
        call(&w.sim, "getChat", json!({"chat_id": w.group.0}))
            .await
            .0,
        500
    );
    assert_eq!(call(&w.sim, "getMe", json!({})).await.0, 500);
    w.sim.clear_faults();
    assert_eq!(call(&w.sim, "getMe", json!({})).await.0, 200);
}

#[tokio::test]
async fn get_updates_conflicts_while_a_webhook_is_set() {
    let w = world();
    let (status, _) = call(&w.sim, "setWebhook", json!({"url": "http://127.0.0.1:9/h"})).await;
    assert_eq!(status, 200);
    let (status, body) = call(&w.sim, "getUpdates", json!({})).await;
    assert_eq!(status, 409);
    assert_eq!(
        body["description"],
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    );
    let (status, body) = call(
        &w.sim,
        "setWebhook",
        json!({"url": "https://example.com/h"}),
    )
    .await;
    assert_eq!(status, 400, "only loopback delivery: {body}");
    let (status, _) = call(
        &w.sim,
        "setWebhook",
        json!({"url": "http://127.0.0.1:9/h", "secret_token": "bad secret!"}),
    )
    .await;
    assert_eq!(status, 400);
    call(&w.sim, "deleteWebhook", json!({})).await;
    assert_eq!(call(&w.sim, "getUpdates", json!({})).await.0, 200);
}

#[tokio::test]
async fn long_poll_wakes_on_an_update_and_a_newer_poll_ends_an_older_one() {
    let w = world();
    // Drain what setup produced.
    let (_, body) = call(&w.sim, "getUpdates", json!({"timeout": 0})).await;
    let last = body["result"]
        .as_array()
        .and_then(|a| a.last())
        .map(|u| u["update_id"].as_i64().unwrap_or(0))
        .unwrap_or(0);
    let offset = last + 1;

    let started = Instant::now();
    let sim_url = format!("{}/bot{}/getUpdates", w.sim.base_url(), w.sim.token());
    let poll = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(sim_url)
            .header("Content-Type", "application/json")
            .body(json!({"offset": offset, "timeout": 20}).to_string())
            .send()
            .await
            .expect("answer");
        raw_json(resp).await
    });
    // Post once the poll is waiting.
    wait_until(|| w.sim.waiting_polls() == 1).await;
    w.sim.post(w.group, w.bob, "wake up").expect("post");
    let (status, body) = poll.await.expect("poll task");
    assert_eq!(status, 200);
    assert_eq!(body["result"][0]["message"]["text"], "wake up");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once, not at the timeout"
    );

    // Two concurrent polls: the older one gets 409.
    let url = format!("{}/bot{}/getUpdates", w.sim.base_url(), w.sim.token());
    let body = json!({"offset": offset + 1, "timeout": 20}).to_string();
    let older = tokio::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .expect("answer");
            raw_json(resp).await
        }
    });
    wait_until(|| w.sim.waiting_polls() == 1).await;
    let newer = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .header("Content-Type", "application/json")
            .body(json!({"offset": offset + 1, "timeout": 1}).to_string())
            .send()
            .await
            .expect("answer");
        raw_json(resp).await
    });
    let (status, body) = older.await.expect("older");
    assert_eq!(status, 409, "{body}");
    assert!(body["description"]
        .as_str()
        .unwrap_or("")
        .contains("terminated by other getUpdates request"));
    let (status, body) = newer.await.expect("newer");
    assert_eq!(
        (status, body["result"].clone()),
        (200, json!([])),
        "times out empty"
    );
}

/// A tiny webhook receiver: answers the first `failures` POSTs with 500, then 200, and
/// forwards (secret header, body) of every POST.
fn receiver(failures: usize) -> (String, mpsc::Receiver<(Option<String>, Value)>) {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("receiver");
    let addr = server.server_addr().to_ip().expect("ip");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = 0;
        for mut req in server.incoming_requests() {
            let secret = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("X-Telegram-Bot-Api-Secret-Token"))
                .map(|h| h.value.as_str().to_owned());
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            let value = serde_json::from_str(&body).unwrap_or(Value::Null);
            seen += 1;
            let status = if seen <= failures { 500 } else { 200 };
            let _ = req.respond(tiny_http::Response::empty(status));
            if tx.send((secret, value)).is_err() {
                return;
            }
        }
    });
    (format!("http://{addr}/tg/hook"), rx)
}

#[tokio::test]
async fn webhook_delivery_with_secret_and_retries() {
    let w = world();
    call(&w.sim, "getUpdates", json!({"offset": -1})).await;
    call(&w.sim, "getUpdates", json!({"offset": i64::MAX / 2})).await;
    assert_eq!(w.sim.pending_updates(), 0);
    let (url, rx) = receiver(1);
    let (status, _) = call(
        &w.sim,
        "setWebhook",
        json!({"url": url, "secret_token": "hook_secret-1", "max_connections": 2, "allowed_updates": ["message", "chat_member"]}),
    )
    .await;
    assert_eq!(status, 200);
    w.sim.post(w.group, w.bob, "via webhook").expect("post");
    let wait = Duration::from_secs(10);
    let (secret, first) = rx.recv_timeout(wait).expect("first delivery");
    assert_eq!(secret.as_deref(), Some("hook_secret-1"));
    assert_eq!(first["message"]["text"], "via webhook");
    let (_, second) = rx.recv_timeout(wait).expect("retried after the 500");
    assert_eq!(
        second["update_id"], first["update_id"],
        "the same update is retried"
    );
    let (_, info) = call(&w.sim, "getWebhookInfo", json!({})).await;
    assert_eq!(info["result"]["url"], url);
    assert_eq!(
        info["result"]["last_error_message"],
        "Wrong response from the webhook: 500 Internal Server Error"
    );
    wait_until(|| w.sim.pending_updates() == 0).await;
    assert_eq!(
        w.sim.pending_updates(),
        0,
        "delivered updates leave the queue"
    );
    assert_eq!(
        info["result"]["allowed_updates"],
        json!(["message", "chat_member"])
    );
}

#[tokio::test]
async fn chat_member_updates_need_admin_and_allowed_updates() {
    let w = world();
    let kinds = |body: &Value| -> Vec<String> {
        body["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_object())
                    .flat_map(|o| o.keys().filter(|k| *k != "update_id").cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Default allowed_updates: no chat_member.
    let (_, body) = call(&w.sim, "getUpdates", json!({})).await;
    assert!(!kinds(&body).contains(&"chat_member".to_owned()), "{body}");
    assert!(
        kinds(&body).contains(&"my_chat_member".to_owned()),
        "{body}"
    );
    call(&w.sim, "getUpdates", json!({"offset": -1})).await;
    call(&w.sim, "getUpdates", json!({"offset": i64::MAX / 2})).await;
    let carol = w.sim.add_user("Carol");
    w.sim.join(w.channel, carol).expect("subscribe");
    let (_, body) = call(
        &w.sim,
        "getUpdates",
        json!({"allowed_updates": ["message", "chat_member"]}),
    )
    .await;
    assert!(
        kinds(&body).is_empty(),
        "updates created before the list are not back-filled: {body}"
    );
    w.sim.leave(w.channel, carol).expect("unsubscribe");
    // A channel where the bot is no admin says nothing.
    let quiet = w
        .sim
        .create_channel("Quiet", None, w.owner)
        .expect("channel");
    w.sim.join(quiet, carol).expect("subscribe");
    let (_, body) = call(&w.sim, "getUpdates", json!({})).await;
    assert_eq!(kinds(&body), ["chat_member"], "{body}");
    let update = &body["result"][0]["chat_member"];
    assert_eq!(update["chat"]["id"], w.channel.0);
    assert_eq!(update["old_chat_member"]["status"], "member");
    assert_eq!(update["new_chat_member"]["status"], "left");
}

#[tokio::test]
async fn bot_status_changes_migration_and_privacy_mode() {
    let w = world();
    call(&w.sim, "getUpdates", json!({"offset": -1})).await;
    call(&w.sim, "getUpdates", json!({"offset": i64::MAX / 2})).await;
    w.sim
        .set_bot_rights(w.group, w.owner, None)
        .expect("demote bot");
    // Privacy mode: a non-admin bot sees commands, not chatter.
    w.sim.post(w.group, w.bob, "chatter").expect("post");
    w.sim
        .post(w.group, w.bob, "/status@gmbot_test_bot")
        .expect("post");
    let (_, body) = call(&w.sim, "getUpdates", json!({})).await;
    let result = body["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(result.len(), 2, "{body}");
    assert_eq!(
        result[0]["my_chat_member"]["old_chat_member"]["status"],
        "administrator"
    );
    assert_eq!(
        result[0]["my_chat_member"]["new_chat_member"]["status"],
        "member"
    );
    assert_eq!(result[1]["message"]["text"], "/status@gmbot_test_bot");
    call(
        &w.sim,
        "getUpdates",
        json!({"offset": result[1]["update_id"].as_i64().unwrap_or(0) + 1}),
    )
    .await;

    // Migration of a basic group.
    let basic = w.sim.create_basic_group("Basic", w.owner).expect("group");
    w.sim
        .add_bot(basic, w.owner, Some(AdminRights::moderator()))
        .expect("bot");
    let new = w.sim.migrate_to_supergroup(basic).expect("migrate");
    let (status, body) = call(&w.sim, "getChat", json!({"chat_id": basic.0})).await;
    assert_eq!(status, 400);
    assert_eq!(body["parameters"]["migrate_to_chat_id"], new.0);
    let (_, body) = call(&w.sim, "getUpdates", json!({})).await;
    let result = body["result"].as_array().cloned().unwrap_or_default();
    let migrate = result
        .iter()
        .find(|u| u["message"]["migrate_to_chat_id"].is_i64())
        .expect("migrate_to message");
    assert_eq!(migrate["message"]["chat"]["id"], basic.0);
    assert_eq!(migrate["message"]["migrate_to_chat_id"], new.0);
    assert!(result
        .iter()
        .any(|u| u["message"]["migrate_from_chat_id"] == basic.0));
    assert_eq!(
        w.sim.member(new, w.sim.bot().id),
        MemberState::Administrator(AdminRights::moderator())
    );

    // Removed from the group.
    w.sim.remove_bot(w.group, w.owner).expect("remove");
    let (_, body) = call(&w.sim, "getUpdates", json!({})).await;
    let last = body["result"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(last["my_chat_member"]["new_chat_member"]["status"], "left");
    let (status, _) = call(
        &w.sim,
        "sendMessage",
        json!({"chat_id": w.group.0, "text": "x"}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn restrictions_are_enforced_and_expire() {
    let w = world();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    // A restriction that already ended behaves as lifted.
    w.sim
        .set_member(
            w.group,
            w.bob,
            MemberState::Restricted {
                is_member: true,
                permissions: gmbot_bot::sim::Permissions::none(),
                until: now - 1,
            },
            w.owner,
        )
        .expect("set");
    assert_eq!(w.sim.member(w.group, w.bob), MemberState::Member);
    assert!(w.sim.can_post(w.group, w.bob));
    let (_, body) = call(
        &w.sim,
        "restrictChatMember",
        json!({"chat_id": w.group.0, "user_id": w.bob.0, "permissions": {"can_send_messages": false}, "until_date": now + 400 * 86400}),
    )
    .await;
    assert_eq!(body["result"], true);
    assert!(
        matches!(
            w.sim.member(w.group, w.bob),
            MemberState::Restricted { until: 0, .. }
        ),
        "over 366 days = forever"
    );
    assert!(w.sim.post(w.group, w.bob, "let me talk").is_err());
    let outsider = w.sim.add_user("Outsider");
    assert!(
        w.sim.post(w.group, outsider, "hi").is_err(),
        "non-members cannot post"
    );
}
