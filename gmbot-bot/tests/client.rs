//! The Bot API client against the simulated Telegram over real HTTP: every method, every
//! error class, and the token never leaking.

mod common;

use std::time::Duration;

use gmbot_bot::botapi::lenient::UpdateContent;
use gmbot_bot::botapi::ALLOWED_UPDATES;
use gmbot_bot::sim::{AdminRights, Fault, FaultKind, MemberState, Permissions};
use gmbot_bot::{BotApi, BotApiOptions, BotToken};
use gmbot_core::domain::{ChatId, ChatMemberStatus, GroupId, MessageId, UnixTime, UserId};
use gmbot_core::telegram::{InlineButton, OutgoingMessage, TelegramApi, TelegramError};

use common::{client, token_secret, world};

fn warning(html: &str) -> OutgoingMessage {
    OutgoingMessage {
        html: html.to_owned(),
        buttons: vec![vec![
            InlineButton::Url {
                text: "Join".into(),
                url: "https://t.me/test_news".into(),
            },
            InlineButton::Callback {
                text: "I've joined".into(),
                data: "v:123".into(),
            },
        ]],
        reply_to: None,
        silent: true,
    }
}

#[tokio::test]
async fn get_me_and_chat_lookups() {
    let w = world();
    let me = w.api.get_me().await.expect("getMe");
    assert_eq!(i64::try_from(me.id).ok(), Some(w.sim.bot().id.0));
    assert!(me.is_bot);
    assert_eq!(me.username.as_deref(), Some("gmbot_test_bot"));
    assert_eq!(w.api.bot_id(), w.sim.bot().id);

    let chat = w.api.get_chat(w.group.into()).await.expect("getChat");
    assert_eq!(chat.id, w.group.0);
    assert!(
        chat.permissions.is_some(),
        "groups report default permissions"
    );
    let by_name = w
        .api
        .get_chat_by_username("@test_news")
        .await
        .expect("getChat @username");
    assert_eq!(by_name.id, w.channel.0);
    assert_eq!(by_name.username.as_deref(), Some("test_news"));
    // owner + bot + alice + bob
    assert_eq!(w.api.get_chat_member_count(w.group.into()).await, Ok(4));
    assert_eq!(
        w.api.get_chat(ChatId(-100_999)).await.map(|c| c.id),
        Err(TelegramError::ChatNotFound(
            "Bad Request: chat not found".into()
        ))
    );
}

#[tokio::test]
async fn get_chat_member_reports_every_status() {
    let w = world();
    let ch: ChatId = w.channel.into();
    assert_eq!(
        w.api.get_chat_member(ch, w.owner).await,
        Ok(ChatMemberStatus::Creator)
    );
    assert_eq!(
        w.api.get_chat_member(ch, w.alice).await,
        Ok(ChatMemberStatus::Member)
    );
    assert_eq!(
        w.api.get_chat_member(ch, w.bob).await,
        Ok(ChatMemberStatus::Left)
    );
    assert_eq!(
        w.api.get_chat_member(ch, w.sim.bot().id).await,
        Ok(ChatMemberStatus::Administrator)
    );
    let carol = w.sim.add_user("Carol");
    let restricted = |is_member| MemberState::Restricted {
        is_member,
        permissions: Permissions::none(),
        until: 0,
    };
    w.sim
        .set_member(ch, carol, restricted(false), w.owner)
        .expect("set");
    assert_eq!(
        w.api.get_chat_member(ch, carol).await,
        Ok(ChatMemberStatus::Restricted { is_member: false })
    );
    w.sim
        .set_member(ch, carol, restricted(true), w.owner)
        .expect("set");
    assert_eq!(
        w.api.get_chat_member(ch, carol).await,
        Ok(ChatMemberStatus::Restricted { is_member: true })
    );
    w.sim
        .set_member(ch, carol, MemberState::Kicked { until: 0 }, w.owner)
        .expect("set");
    assert_eq!(
        w.api.get_chat_member(ch, carol).await,
        Ok(ChatMemberStatus::Kicked)
    );
}

#[tokio::test]
async fn get_chat_member_error_classes() {
    let w = world();
    // A channel where the bot is not an admin: membership is unknowable.
    let other = w
        .sim
        .create_channel("Other", Some("other_news"), w.owner)
        .expect("channel");
    w.sim.join(other, w.alice).expect("join");
    let err = w
        .api
        .get_chat_member(other.into(), w.alice)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TelegramError::NotEnoughRights("Bad Request: member list is inaccessible".into())
    );
    // A group the bot is not in.
    let foreign = w.sim.create_supergroup("Foreign", w.owner).expect("group");
    let err = w
        .api
        .get_chat_member(foreign.into(), w.owner)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "chat_not_found", "{err}");
    // An unknown user.
    let err = w
        .api
        .get_chat_member(w.group.into(), UserId(999_999))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TelegramError::UserNotFound("Bad Request: user not found".into())
    );
    // An injected transient error Telegram sometimes gives for unseen users.
    w.sim.inject(Fault::on(
        "getChatMember",
        FaultKind::Error {
            code: 400,
            description: "Bad Request: PARTICIPANT_ID_INVALID".into(),
        },
    ));
    let err = w
        .api
        .get_chat_member(w.channel.into(), w.alice)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "user_not_found");
    assert_eq!(
        w.api.get_chat_member(w.channel.into(), w.alice).await,
        Ok(ChatMemberStatus::Member),
        "the fault hit once"
    );
}

#[tokio::test]
async fn get_chat_administrators_lists_owner_and_rights() {
    let w = world();
    let admins = w
        .api
        .get_chat_administrators(w.group.into())
        .await
        .expect("admins");
    assert_eq!(admins.len(), 2, "{admins:?}");
    assert_eq!(admins[0].user, w.owner);
    assert!(admins[0].is_creator && !admins[0].is_bot);
    let bot = &admins[1];
    assert_eq!(bot.user, w.sim.bot().id);
    assert!(bot.is_bot && !bot.is_creator);
    assert!(bot.can_delete_messages && bot.can_restrict_members && bot.can_invite_users);
}

#[tokio::test]
async fn send_edit_delete_messages() {
    let w = world();
    let posted = w.sim.post(w.group, w.bob, "hello").expect("bob posts");
    let mut msg = warning("<b>Bob</b> &lt;x&gt;, join first");
    msg.reply_to = Some(posted);
    let id = w
        .api
        .send_message(w.group.into(), &msg)
        .await
        .expect("send");
    let stored = w.sim.message(w.group, id).expect("stored");
    assert_eq!(stored.text, "Bob <x>, join first");
    assert_eq!(
        stored.html.as_deref(),
        Some("<b>Bob</b> &lt;x&gt;, join first")
    );
    assert_eq!(stored.reply_to, Some(posted));
    assert!(stored.silent);
    assert!(stored.has_callback("v:123"));
    assert_eq!(stored.from, Some(w.sim.bot().id));

    // Edit: new text, no buttons.
    let edited = OutgoingMessage {
        html: "done".into(),
        ..OutgoingMessage::default()
    };
    w.api
        .edit_message_text(w.group.into(), id, &edited)
        .await
        .expect("edit");
    let stored = w.sim.message(w.group, id).expect("stored");
    assert_eq!(stored.text, "done");
    assert!(stored.buttons.is_empty() && stored.edited);
    let err = w
        .api
        .edit_message_text(w.group.into(), id, &edited)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TelegramError::BadRequest(d) if d.contains("message is not modified")),
        "{err}"
    );

    // Delete the bot's message and the member's message.
    w.api
        .delete_message(w.group.into(), id)
        .await
        .expect("delete own");
    w.api
        .delete_message(w.group.into(), posted)
        .await
        .expect("delete member's");
    for m in [id, posted] {
        assert!(w.sim.message(w.group, m).is_some_and(|m| m.deleted));
    }
    assert!(w
        .sim
        .visible_messages(w.group)
        .iter()
        .all(|m| m.id != id && m.id != posted));
    let err = w.api.delete_message(w.group.into(), id).await.unwrap_err();
    assert_eq!(
        err,
        TelegramError::BadRequest("Bad Request: message to delete not found".into())
    );
}

#[tokio::test]
async fn send_message_is_validated_like_telegram() {
    let w = world();
    let g: ChatId = w.group.into();
    let reject = |m: OutgoingMessage| {
        let api = w.api.clone();
        async move { api.send_message(g, &m).await.unwrap_err() }
    };
    let err = reject(warning("Hi <script>")).await;
    assert!(
        matches!(&err, TelegramError::BadRequest(d) if d.contains("can't parse entities")),
        "{err}"
    );
    let err = reject(warning(&"x".repeat(4097))).await;
    assert_eq!(
        err,
        TelegramError::BadRequest("Bad Request: message is too long".into())
    );
    assert!(w
        .api
        .send_message(g, &warning(&"x".repeat(4096)))
        .await
        .is_ok());
    let mut long_data = warning("hi");
    long_data.buttons = vec![vec![InlineButton::Callback {
        text: "x".into(),
        data: "d".repeat(65),
    }]];
    assert_eq!(
        reject(long_data).await,
        TelegramError::BadRequest("Bad Request: BUTTON_DATA_INVALID".into())
    );
    // A user who never opened a private chat with the bot.
    let err = w
        .api
        .send_message(w.alice.into(), &warning("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "forbidden", "{err}");
    w.sim.start_bot(w.alice).expect("start");
    assert!(w
        .api
        .send_message(w.alice.into(), &warning("hi"))
        .await
        .is_ok());
}

#[tokio::test]
async fn restrict_and_unrestrict_restore_the_group_defaults() {
    let w = world();
    // Defaults that are not "everything": polls are off in this group.
    let defaults = Permissions {
        can_send_polls: false,
        ..Permissions::group_default()
    };
    w.sim
        .set_default_permissions(w.group, defaults)
        .expect("defaults");
    let until = UnixTime::now().plus(Duration::from_secs(3600));
    w.api
        .restrict_member(w.group, w.bob, Some(until))
        .await
        .expect("restrict");
    match w.sim.member(w.group, w.bob) {
        MemberState::Restricted {
            is_member,
            permissions,
            until: u,
        } => {
            assert!(is_member);
            assert_eq!(permissions, Permissions::none());
            assert_eq!(u, until.secs());
        }
        other => panic!("expected restricted, got {other:?}"),
    }
    assert!(
        !w.sim.can_post(w.group, w.bob),
        "a muted member cannot post"
    );
    let call = w
        .sim
        .calls_to("restrictChatMember")
        .pop()
        .expect("recorded");
    assert_eq!(call.params["use_independent_chat_permissions"], true);

    w.api
        .unrestrict_member(w.group, w.bob)
        .await
        .expect("unrestrict");
    assert_eq!(w.sim.member(w.group, w.bob), MemberState::Member);
    assert!(w.sim.can_post(w.group, w.bob));
    let call = w
        .sim
        .calls_to("restrictChatMember")
        .pop()
        .expect("recorded");
    assert_eq!(
        call.params["permissions"]["can_send_polls"], false,
        "defaults, not all-true"
    );
    assert_eq!(call.params["permissions"]["can_send_messages"], true);
    assert_eq!(call.params["use_independent_chat_permissions"], true);
    assert!(call.params.get("until_date").is_none());

    // The defaults are cached: a second unmute does not call getChat again.
    w.api
        .restrict_member(w.group, w.bob, None)
        .await
        .expect("restrict");
    w.api
        .unrestrict_member(w.group, w.bob)
        .await
        .expect("unrestrict");
    assert_eq!(w.sim.calls_to("getChat").len(), 1);

    // until_date under 30 s means forever.
    let soon = UnixTime::now().plus(Duration::from_secs(10));
    w.api
        .restrict_member(w.group, w.bob, Some(soon))
        .await
        .expect("restrict");
    assert!(matches!(
        w.sim.member(w.group, w.bob),
        MemberState::Restricted { until: 0, .. }
    ));
}

#[tokio::test]
async fn restrict_refuses_owners_admins_and_missing_rights() {
    let w = world();
    let err = w
        .api
        .restrict_member(w.group, w.owner, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TelegramError::BadRequest("Bad Request: can't remove chat owner".into())
    );
    w.sim
        .promote(w.group, w.alice, AdminRights::moderator())
        .expect("promote");
    let err = w
        .api
        .restrict_member(w.group, w.alice, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TelegramError::BadRequest("Bad Request: user is an administrator of the chat".into())
    );
    // The bot loses its restrict right.
    w.sim
        .set_bot_rights(w.group, w.owner, Some(AdminRights::bare()))
        .expect("demote bot");
    let err = w
        .api
        .restrict_member(w.group, w.bob, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TelegramError::NotEnoughRights(
            "Bad Request: not enough rights to restrict/unrestrict chat member".into()
        )
    );
    let err = w.api.kick_member(w.group, w.bob).await.unwrap_err();
    assert_eq!(err.kind(), "not_enough_rights");
}

#[tokio::test]
async fn kick_removes_without_a_lasting_ban() {
    let w = world();
    w.api.kick_member(w.group, w.bob).await.expect("kick");
    assert_eq!(w.sim.member(w.group, w.bob), MemberState::Left);
    let calls: Vec<String> = w
        .sim
        .calls()
        .into_iter()
        .map(|c| c.method)
        .filter(|m| m.contains("ban"))
        .collect();
    assert_eq!(calls, ["banChatMember", "unbanChatMember"]);
    assert_eq!(
        w.sim.calls_to("unbanChatMember")[0].params["only_if_banned"],
        true
    );
    w.sim.join(w.group, w.bob).expect("bob can come back");
    // ban/unban directly.
    w.api
        .ban_chat_member(w.group, w.bob, None)
        .await
        .expect("ban");
    assert!(matches!(
        w.sim.member(w.group, w.bob),
        MemberState::Kicked { .. }
    ));
    assert!(
        w.sim.join(w.group, w.bob).is_err(),
        "banned users cannot join"
    );
    w.api
        .unban_chat_member(w.group, w.bob, true)
        .await
        .expect("unban");
    assert_eq!(w.sim.member(w.group, w.bob), MemberState::Left);
}

#[tokio::test]
async fn a_kick_is_a_ban_that_ends_by_itself_even_when_the_unban_fails() {
    let w = world();
    let before = UnixTime::now().secs();
    w.api.kick_member(w.group, w.bob).await.expect("kick");
    let ban = w.sim.calls_to("banChatMember").pop().expect("ban sent");
    let until = ban.params["until_date"].as_i64().expect("until_date sent");
    // Telegram: under 30 s (or 0, or over 366 days) would be a ban forever.
    assert!(
        until >= before + 60,
        "until_date {until} is at least 60 s ahead of {before}"
    );
    assert!(until <= UnixTime::now().secs() + 600, "and short: {until}");
    w.sim
        .join(w.group, w.bob)
        .expect("a kicked member can rejoin");

    // The unban fails: the member stays banned only until the ban's end, never forever.
    w.sim
        .inject(Fault::on("unbanChatMember", FaultKind::ServerError(500)));
    let err = w.api.kick_member(w.group, w.bob).await.unwrap_err();
    assert_eq!(err.kind(), "server");
    match w.sim.member(w.group, w.bob) {
        MemberState::Kicked { until } => {
            assert!(until >= before + 60, "a ban that expires: {until}");
        }
        other => panic!("banned until the ban ends, got {other:?}"),
    }
}

#[tokio::test]
async fn callbacks_are_answered_once() {
    let w = world();
    let id = w
        .api
        .send_message(w.group.into(), &warning("join"))
        .await
        .expect("send");
    let query = w
        .sim
        .press_button(w.group, id, w.bob, "v:123")
        .expect("button exists");
    w.api
        .answer_callback(&query, Some("this button is not for you"), true)
        .await
        .expect("answer");
    let answer = w.sim.callback_answer(&query).expect("answered");
    assert_eq!(answer.text.as_deref(), Some("this button is not for you"));
    assert!(answer.show_alert);
    let err = w
        .api
        .answer_callback(&query, None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TelegramError::BadRequest(d) if d.contains("query is too old")),
        "{err}"
    );
    assert!(w.sim.press_button(w.group, id, w.bob, "forged").is_err());
}

#[tokio::test]
async fn invite_links() {
    let w = world();
    let a = w
        .api
        .create_chat_invite_link(w.channel.into(), Some("gmbot"))
        .await
        .expect("create");
    let b = w
        .api
        .export_chat_invite_link(w.channel.into())
        .await
        .expect("export");
    let c = w
        .api
        .export_chat_invite_link(w.channel.into())
        .await
        .expect("export again");
    assert!(w.sim.invite_link_valid(&a), "created links survive exports");
    assert!(
        !w.sim.invite_link_valid(&b),
        "export revokes the previous primary link"
    );
    assert!(w.sim.invite_link_valid(&c));
    // Without can_invite_users.
    w.sim
        .set_bot_rights(w.group, w.owner, Some(AdminRights::bare()))
        .expect("rights");
    let err = w
        .api
        .create_chat_invite_link(w.group.into(), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not_enough_rights", "{err}");
}

#[tokio::test]
async fn updates_by_polling_with_offsets() {
    let w = world();
    // Nothing before the bot declares allowed_updates (chat_member is off by default).
    let first = w
        .api
        .get_updates_with(None, 100, 0, &ALLOWED_UPDATES)
        .await
        .expect("poll");
    let offset = first.next_offset;
    w.sim.post(w.group, w.bob, "hi all").expect("post");
    let carol = w.sim.add_user("Carol");
    w.sim.join(w.channel, carol).expect("subscribe");
    let sent = w
        .api
        .send_message(w.group.into(), &warning("x"))
        .await
        .expect("send");
    let query = w
        .sim
        .press_button(w.group, sent, w.bob, "v:123")
        .expect("press");

    let batch = w.api.get_updates(offset).await.expect("poll");
    assert!(batch.malformed.is_empty());
    let kinds: Vec<&str> = batch
        .updates
        .iter()
        .map(|u| match &u.content {
            UpdateContent::Message(_) => "message",
            UpdateContent::ChatMember(_) => "chat_member",
            UpdateContent::CallbackQuery(_) => "callback_query",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["message", "chat_member", "callback_query"]);
    if let UpdateContent::Message(m) = &batch.updates[0].content {
        assert_eq!(m.text.as_deref(), Some("hi all"));
        assert_eq!(m.chat.id, w.group.0);
    }
    if let UpdateContent::CallbackQuery(q) = &batch.updates[2].content {
        assert_eq!(q.id, query);
        assert_eq!(q.data.as_deref(), Some("v:123"));
    }
    // Confirmed updates are not delivered again.
    let again = w
        .api
        .get_updates_with(batch.next_offset, 100, 0, &ALLOWED_UPDATES)
        .await
        .expect("poll");
    assert!(again.updates.is_empty());
    assert_eq!(w.sim.pending_updates(), 0);
}

#[tokio::test]
async fn webhook_calls() {
    let w = world();
    w.api
        .set_webhook(
            "http://127.0.0.1:9/hook",
            Some("s3cret"),
            &ALLOWED_UPDATES,
            5,
            false,
        )
        .await
        .expect("setWebhook");
    let info = w.api.get_webhook_info().await.expect("info");
    assert_eq!(info.url, "http://127.0.0.1:9/hook");
    assert_eq!(info.max_connections, Some(5));
    let err = w.api.get_updates(None).await.unwrap_err();
    assert!(
        matches!(&err, TelegramError::BadRequest(d) if d.starts_with("Conflict")),
        "{err}"
    );
    w.api.delete_webhook(true).await.expect("deleteWebhook");
    assert_eq!(w.api.get_webhook_info().await.expect("info").url, "");
    assert!(w
        .api
        .get_updates_with(None, 10, 0, &ALLOWED_UPDATES)
        .await
        .is_ok());
}

#[tokio::test]
async fn rate_limits_server_errors_and_broken_answers() {
    let w = world();
    let g: ChatId = w.group.into();
    w.sim
        .inject(Fault::on("sendMessage", FaultKind::RetryAfter(7)));
    assert_eq!(
        w.api.send_message(g, &warning("x")).await,
        Err(TelegramError::RetryAfter {
            retry_after: Duration::from_secs(7)
        })
    );
    w.sim.inject(Fault::on_any(FaultKind::ServerError(502)));
    let err = w.api.get_chat_member(g, w.bob).await.unwrap_err();
    assert_eq!(
        err,
        TelegramError::Server {
            code: 502,
            description: "Bad Gateway".into()
        }
    );
    assert!(err.is_transient());
    w.sim
        .inject(Fault::on("getChatMember", FaultKind::MalformedBody));
    let err = w.api.get_chat_member(g, w.bob).await.unwrap_err();
    assert!(
        matches!(&err, TelegramError::Network(d) if d.contains("malformed")),
        "{err}"
    );
    w.sim.inject(Fault::on(
        "sendMessage",
        FaultKind::Error {
            code: 403,
            description: "Forbidden: bot was blocked by the user".into(),
        },
    ));
    assert_eq!(
        w.api
            .send_message(g, &warning("x"))
            .await
            .unwrap_err()
            .kind(),
        "forbidden"
    );
    // Everything works again once the faults are used up.
    assert_eq!(
        w.api.get_chat_member(g, w.bob).await,
        Ok(ChatMemberStatus::Member)
    );
}

#[tokio::test]
async fn timeouts_and_dead_servers_are_network_errors() {
    let w = world();
    let slow = client(&w.sim, Duration::from_millis(300));
    w.sim.inject(Fault::on(
        "getMe",
        FaultKind::Delay(Duration::from_millis(1500)),
    ));
    let err = slow.get_me().await.unwrap_err();
    assert!(
        matches!(&err, TelegramError::Network(d) if d.contains("timed out")),
        "{err}"
    );

    let secret = token_secret(&w.sim);
    let token = BotToken::parse(w.sim.token()).expect("token");
    // A port nobody listens on.
    let dead = BotApi::new(
        token,
        BotApiOptions::with_base_url("http://127.0.0.1:9".parse().expect("url")),
    )
    .expect("client");
    let err = dead
        .get_chat_member(ChatId(-1), UserId(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "network", "{err}");
    assert!(!err.to_string().contains(&secret), "{err}");
}

#[tokio::test]
async fn wrong_token_and_the_token_never_leaks() {
    let w = world();
    let secret = token_secret(&w.sim);
    let wrong = BotToken::parse("7000000001:AAFwrongTokenFor_tests-0123456789xyz").expect("shape");
    let api = BotApi::new(
        wrong,
        BotApiOptions::with_base_url(w.sim.base_url().parse().expect("url")),
    )
    .expect("client");
    let err = api.get_me().await.unwrap_err();
    assert_eq!(err.kind(), "forbidden");
    assert!(err.to_string().contains("Unauthorized"), "{err}");

    // Collect every error and Debug output the real client can produce.
    let mut texts = vec![format!("{:?}", w.api), format!("{err:?}"), err.to_string()];
    w.sim.inject(Fault::on_any(FaultKind::MalformedBody));
    let e = w.api.get_me().await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    w.sim.inject(Fault::on_any(FaultKind::RetryAfter(1)));
    let e = w.api.get_me().await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = w.api.get_chat_member(ChatId(-5), w.bob).await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = w
        .api
        .restrict_member(GroupId(-5), w.bob, None)
        .await
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = w
        .api
        .delete_message(w.group.into(), MessageId(999))
        .await
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));
    for text in texts {
        assert!(!text.contains(&secret), "token leaked: {text}");
        assert!(!text.contains(w.sim.token()), "token leaked: {text}");
    }
}
