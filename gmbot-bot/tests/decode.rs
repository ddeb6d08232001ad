//! Decoding what real Bot API servers send, old and new: recorded answers and updates
//! (`tests/fixtures/`) replayed by the simulated Telegram over real HTTP, through the client
//! the bot uses, `getUpdates` and the webhook's parser.
//!
//! A Bot API 7.x server omits fields later versions added; a newer one adds fields and enum
//! values nobody here knows. Both must decode; an answer that really cannot be read is a
//! `Decode` error, never a network error, and never retried.

mod common;

use gmbot_bot::botapi::convert;
use gmbot_bot::sim::{Fault, FaultKind};
use gmbot_bot::update::{ChatKind, UpdateKind};
use gmbot_core::domain::{ChatId, ChatMemberStatus, MessageId, UserId};
use gmbot_core::telegram::{ChatTarget, ChatType, OutgoingMessage, TelegramApi, TelegramError};
use prometheus::Registry;
use serde_json::Value;

use common::world;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn answer_once(w: &common::World, method: &str, result: Value) {
    w.sim.inject(Fault::on(method, FaultKind::Answer(result)));
}

#[tokio::test]
async fn administrators_of_an_older_and_a_newer_server() {
    let w = world();
    answer_once(
        &w,
        "getChatAdministrators",
        fixture("bot_api_7_get_chat_administrators.json"),
    );
    let admins = w
        .api
        .get_chat_administrators(w.group.into())
        .await
        .expect("a Bot API 7.x answer decodes");
    assert_eq!(admins.len(), 3, "{admins:?}");
    assert_eq!(admins[0].user, UserId(100_000_001));
    assert!(admins[0].is_creator && admins[0].can_restrict_members);
    assert!(admins[1].is_bot && !admins[1].is_creator);
    assert!(
        admins[1].can_delete_messages
            && admins[1].can_restrict_members
            && admins[1].can_invite_users
    );
    assert!(admins[2].can_delete_messages && !admins[2].can_restrict_members);

    answer_once(
        &w,
        "getChatAdministrators",
        fixture("newer_get_chat_administrators.json"),
    );
    let admins = w
        .api
        .get_chat_administrators(w.group.into())
        .await
        .expect("a newer answer decodes");
    // The entry with a status nobody knows yet is kept out: it is not an admin we can trust.
    assert_eq!(
        admins.iter().map(|a| a.user).collect::<Vec<_>>(),
        [UserId(100_000_001), UserId(5_000_000_001)]
    );
    assert!(admins[1].can_restrict_members && !admins[1].can_invite_users);
}

#[tokio::test]
async fn every_member_status_of_an_older_and_a_newer_server() {
    let w = world();
    let old = fixture("bot_api_7_get_chat_member.json");
    let ch: ChatId = w.channel.into();
    for (key, want) in [
        ("creator", ChatMemberStatus::Creator),
        ("member", ChatMemberStatus::Member),
        (
            "restricted_member",
            ChatMemberStatus::Restricted { is_member: true },
        ),
        (
            "restricted_gone",
            ChatMemberStatus::Restricted { is_member: false },
        ),
        ("left", ChatMemberStatus::Left),
        ("kicked", ChatMemberStatus::Kicked),
    ] {
        answer_once(&w, "getChatMember", old[key].clone());
        assert_eq!(
            w.api.get_chat_member(ch, w.bob).await,
            Ok(want),
            "7.x {key}"
        );
    }
    let new = fixture("newer_get_chat_member.json");
    for (key, want) in [
        ("member", ChatMemberStatus::Member),
        (
            "restricted_member",
            ChatMemberStatus::Restricted { is_member: true },
        ),
    ] {
        answer_once(&w, "getChatMember", new[key].clone());
        assert_eq!(
            w.api.get_chat_member(ch, w.bob).await,
            Ok(want),
            "newer {key}"
        );
    }
    // A status this client does not know is no verdict either way: a decoding error naming
    // the status, which the engine treats as "membership unknown", and which is not retried.
    answer_once(&w, "getChatMember", new["unknown_status"].clone());
    let err = w
        .api
        .get_chat_member(ch, w.bob)
        .await
        .expect_err("no verdict from an unknown status");
    assert!(
        matches!(&err, TelegramError::Decode { method, detail }
            if method == "getChatMember" && detail.contains("pending_approval")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(err.kind(), "decode");
}

#[tokio::test]
async fn get_chat_of_an_older_and_a_newer_server() {
    let w = world();
    answer_once(&w, "getChat", fixture("bot_api_7_get_chat.json"));
    let info = TelegramApi::get_chat(&w.api, &ChatTarget::Id(w.group.into()))
        .await
        .expect("a Bot API 7.x getChat decodes");
    assert_eq!(info.kind, ChatType::Supergroup);
    assert_eq!(info.title.as_deref(), Some("Test group"));

    answer_once(&w, "getChat", fixture("newer_get_chat.json"));
    let info = TelegramApi::get_chat(&w.api, &ChatTarget::Id(w.channel.into()))
        .await
        .expect("a newer getChat decodes");
    assert_eq!(info.kind, ChatType::Channel);
    assert_eq!(info.username.as_deref(), Some("test_news"));

    answer_once(&w, "getChat", fixture("newer_get_chat_unknown_type.json"));
    let info = TelegramApi::get_chat(&w.api, &ChatTarget::Id(ChatId(-1_001_000_000_003)))
        .await
        .expect("an unknown chat type decodes");
    assert_eq!(info.kind, ChatType::Other);
    assert_eq!(info.title.as_deref(), Some("Talk"));
}

#[tokio::test]
async fn unmuting_restores_the_defaults_an_older_server_reported() {
    let w = world();
    answer_once(&w, "getChat", fixture("bot_api_7_get_chat.json"));
    w.api
        .unrestrict_member(w.group, w.bob)
        .await
        .expect("unrestrict with 7.x defaults");
    let call = w
        .sim
        .calls_to("restrictChatMember")
        .pop()
        .expect("restrict call");
    let sent = &call.params["permissions"];
    let reported = &fixture("bot_api_7_get_chat.json")["permissions"];
    for (k, v) in reported.as_object().expect("permissions object") {
        assert_eq!(&sent[k], v, "{k}");
    }
}

#[tokio::test]
async fn a_sent_message_of_a_newer_server() {
    let w = world();
    answer_once(&w, "sendMessage", fixture("newer_send_message.json"));
    let sent = w
        .api
        .send_message(
            w.group.into(),
            &OutgoingMessage {
                html: "Please join".into(),
                ..OutgoingMessage::default()
            },
        )
        .await
        .expect("a newer Message decodes");
    assert_eq!(sent, MessageId(4242));
}

/// The kinds and subjects of converted updates, for comparing whole batches.
fn summary(kind: &UpdateKind) -> String {
    match kind {
        UpdateKind::Message(m) => format!(
            "message {} {:?} from {:?} sender_chat {:?} joined {:?} text {:?}",
            m.chat.id,
            m.chat.kind,
            m.from.as_ref().map(|u| u.id),
            m.sender_chat.as_ref().map(|c| c.kind),
            m.new_chat_members.iter().map(|u| u.id).collect::<Vec<_>>(),
            m.text
        ),
        UpdateKind::CallbackQuery(q) => {
            format!(
                "callback {} {:?} {:?} {:?}",
                q.id, q.from.id, q.message, q.data
            )
        }
        UpdateKind::ChatMember(c) => format!(
            "chat_member {} {:?} {:?} {:?}->{:?}",
            c.chat.id, c.chat.kind, c.user.id, c.old, c.new
        ),
        UpdateKind::MyChatMember(c) => format!(
            "my_chat_member {} {:?}->{:?} restrict {:?}",
            c.chat.id,
            c.old,
            c.new,
            c.new_rights.as_ref().map(|r| r.can_restrict_members)
        ),
        UpdateKind::Other(name) => format!("other {name}"),
        #[allow(unreachable_patterns)]
        other => other.name().to_owned(),
    }
}

fn expected_old() -> Vec<String> {
    vec![
        "message -1001000000001 Supergroup from Some(UserId(100000003)) sender_chat None joined [] text Some(\"hello from 7.x\")".into(),
        "message -1001000000001 Supergroup from Some(UserId(100000008)) sender_chat None joined [UserId(100000008)] text None".into(),
        "callback 4382 UserId(100000003) Some((ChatId(-1001000000001), MessageId(13))) Some(\"v:100000003\")".into(),
        "chat_member -1001000000002 Channel UserId(100000003) Left->Member".into(),
        "chat_member -1001000000001 Supergroup UserId(100000003) Member->Restricted { is_member: true }".into(),
        "my_chat_member -1001000000001 Member->Administrator restrict Some(true)".into(),
    ]
}

fn expected_new() -> Vec<String> {
    vec![
        "message -1001000000001 Supergroup from Some(UserId(100000003)) sender_chat Some(Other) joined [] text Some(\"hello from the future\")".into(),
        "callback 4383 UserId(100000003) Some((ChatId(-1001000000001), MessageId(22))) Some(\"v:100000003\")".into(),
        // A member status nobody knows yet: kept out of the membership flows.
        "other chat_member".into(),
        "my_chat_member -1001000000001 Member->Administrator restrict Some(true)".into(),
        "other other".into(),
    ]
}

fn ids(v: &[String]) -> String {
    v.join("\n")
}

#[tokio::test]
async fn updates_of_an_older_and_a_newer_server_by_get_updates() {
    let w = world();
    // What setting up the world produced (the bot joining, members joining) is not tested here.
    let setup = w.api.get_updates(None).await.expect("poll");
    w.api
        .get_updates_with(setup.next_offset, 1, 0, &gmbot_bot::botapi::ALLOWED_UPDATES)
        .await
        .expect("confirm");
    for (file, want) in [
        ("bot_api_7_updates.json", expected_old()),
        ("newer_updates.json", expected_new()),
    ] {
        let Value::Array(updates) = fixture(file) else {
            panic!("{file} is a list")
        };
        for u in updates {
            w.sim.push_raw_update(u).expect("queued");
        }
        let batch = w.api.get_updates(None).await.expect("poll");
        assert!(batch.malformed.is_empty(), "{file}: {:?}", batch.malformed);
        let got: Vec<String> = batch
            .updates
            .into_iter()
            .map(|u| summary(&convert::update(u).kind))
            .collect();
        assert_eq!(ids(&got), ids(&want), "{file}");
        // Confirm them.
        w.api
            .get_updates_with(batch.next_offset, 1, 0, &gmbot_bot::botapi::ALLOWED_UPDATES)
            .await
            .expect("confirm");
    }
}

#[test]
fn updates_of_an_older_and_a_newer_server_by_webhook() {
    for (file, want) in [
        ("bot_api_7_updates.json", expected_old()),
        ("newer_updates.json", expected_new()),
    ] {
        let Value::Array(updates) = fixture(file) else {
            panic!("{file} is a list")
        };
        let got: Vec<String> = updates
            .iter()
            .map(|u| {
                // The webhook receives exactly these bytes in its POST body.
                let body = serde_json::to_vec(u).expect("encode");
                let update =
                    convert::from_json(&body).unwrap_or_else(|e| panic!("{file}: {e}: {u}"));
                summary(&update.kind)
            })
            .collect();
        assert_eq!(ids(&got), ids(&want), "{file}");
    }
    // The webhook's chat kinds, spelled out once.
    let u = convert::from_json(br#"{"update_id":9,"message":{"message_id":1,"date":1,"chat":{"id":-5,"type":"future_kind"},"text":"x"}}"#)
        .expect("unknown chat type decodes");
    let UpdateKind::Message(m) = u.kind else {
        panic!("message")
    };
    assert_eq!(m.chat.kind, ChatKind::Other);
}

#[tokio::test]
async fn an_unreadable_answer_is_a_decode_error_counted_and_not_retried() {
    let w = world();
    let registry = Registry::new();
    w.api.register_metrics(&registry).expect("metrics register");
    // An administrator entry without its user: no version of the Bot API sends that.
    w.sim.inject(
        Fault::on(
            "getChatAdministrators",
            FaultKind::Answer(
                serde_json::json!([{"status": "administrator", "can_delete_messages": true}]),
            ),
        )
        .times(2),
    );
    for _ in 0..2 {
        let err = w
            .api
            .get_chat_administrators(w.group.into())
            .await
            .expect_err("unreadable");
        assert!(
            matches!(&err, TelegramError::Decode { method, detail }
                if method == "getChatAdministrators" && detail.contains("user")),
            "{err:?}"
        );
        assert!(!err.is_transient(), "never retried");
    }
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encode");
    assert!(
        text.lines().any(
            |l| l == "gmbot_telegram_decode_failures_total{method=\"getChatAdministrators\"} 2"
        ),
        "{text}"
    );
    // One HTTP call per attempt: the client itself does not retry either.
    assert_eq!(w.sim.calls_to("getChatAdministrators").len(), 2);
}
