//! The admin commands end to end: `App` over the real Bot API client, against the simulated
//! Telegram, on an in-memory SQLite store. Each test acts as Telegram users through the
//! simulator's control API, hands the bot the message or button press the simulator produced,
//! and checks what the bot answered (in the simulator) and stored.

use std::sync::Arc;
use std::time::Duration;

use gmbot_bot::app::{App, AppDeps, BotIdentity};
use gmbot_bot::commands::{self, settings};
use gmbot_bot::sim::{AdminRights, Fault, FaultKind, SimMessage, Simulator};
use gmbot_bot::update::{CallbackQuery, Chat, ChatKind, Message, User};
use gmbot_bot::{BotApi, BotApiOptions, BotToken};
use gmbot_core::cache::{MemoryCache, MemoryCacheConfig};
use gmbot_core::clock::{Clock, SystemClock};
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::{
    ChannelId, ChatId, GroupId, MessageId, NewRestriction, NonMemberAction, RestrictionKind,
    UnixTime, UserId,
};
use gmbot_core::engine::{Action, EngineConfig, MessageContext};
use gmbot_core::store::{self, MigrationMode, Store};
use prometheus::Registry;

const GROUP_TITLE: &str = "Test group";

struct Harness {
    sim: Simulator,
    app: App,
    store: Arc<dyn Store>,
    bot: UserId,
    owner: UserId,
    /// A plain member of the group.
    bob: UserId,
    group: GroupId,
    /// Public channel `@test_news`, owned by `owner`, the bot an admin.
    channel: ChannelId,
}

async fn harness() -> Harness {
    let sim = Simulator::start().expect("simulator starts");
    let owner = sim.add_user_with("Owner", None, Some("the_owner"));
    let bob = sim.add_user("Bob");
    let group = sim
        .create_supergroup(GROUP_TITLE, owner)
        .expect("group created");
    let channel = sim
        .create_channel("News", Some("test_news"), owner)
        .expect("channel created");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot joins group");
    sim.add_bot(channel, owner, Some(AdminRights::bare()))
        .expect("bot joins channel");
    sim.join(group, bob).expect("bob joins");

    let token = BotToken::parse(sim.token()).expect("simulator token");
    let options = BotApiOptions {
        base_url: sim.base_url().parse().expect("simulator URL"),
        request_timeout: Duration::from_secs(5),
        ..BotApiOptions::default()
    };
    let api = BotApi::new(token, options).expect("client");
    let me = sim.bot();
    let url = "sqlite::memory:".parse().expect("url");
    let store = store::open(&url, MigrationMode::Apply)
        .await
        .expect("sqlite store");
    let registry = Registry::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let cache = Arc::new(
        MemoryCache::new(MemoryCacheConfig::default(), Arc::clone(&clock), &registry)
            .expect("cache"),
    );
    let app = App::new(AppDeps {
        me: BotIdentity {
            id: me.id,
            username: me
                .username
                .clone()
                .expect("the simulated bot has a username"),
        },
        store: Arc::clone(&store),
        telegram: Arc::new(api),
        cache,
        clock,
        dispatch: DispatchConfig {
            // Many replies into one group in one test: don't wait for the 20/min budget.
            group_per_minute: 10_000,
            group_burst: 100,
            global_per_second: 10_000,
            global_burst: 100,
            private_per_second: 1_000,
            private_burst: 100,
            ..DispatchConfig::default()
        },
        engine: EngineConfig::default(),
        registry,
    })
    .expect("app builds");
    Harness {
        sim,
        app,
        store,
        bot: me.id,
        owner,
        bob,
        group,
        channel,
    }
}

impl Harness {
    fn user(&self, id: UserId) -> User {
        let u = self.sim.user(id).expect("known user");
        User {
            id,
            is_bot: u.is_bot,
            first_name: u.first_name,
            last_name: u.last_name,
            username: u.username,
        }
    }

    fn group_chat(&self) -> Chat {
        Chat {
            id: self.group.into(),
            kind: ChatKind::Supergroup,
            title: Some(GROUP_TITLE.into()),
            username: None,
        }
    }

    /// The message as the bot would receive it, once the simulator accepted it.
    fn message(&self, chat: Chat, id: MessageId, from: UserId, text: &str) -> Message {
        Message {
            chat,
            id,
            date: UnixTime::now(),
            from: Some(self.user(from)),
            sender_chat: None,
            is_automatic_forward: false,
            text: Some(text.to_owned()),
            new_chat_members: Vec::new(),
            left_chat_member: None,
            migrate_to_chat_id: None,
            migrate_from_chat_id: None,
        }
    }

    /// Hands a message to the commands, as the message handler does.
    async fn deliver(&self, msg: &Message) {
        let text = msg.text.as_deref().unwrap_or_default();
        if let Some(cmd) = commands::parse(text, &self.app.me().username) {
            commands::handle(&self.app, msg, cmd)
                .await
                .expect("command handled");
        }
    }

    /// `user` writes `text` in the group; the bot handles it.
    async fn say(&self, user: UserId, text: &str) -> MessageId {
        let id = self
            .sim
            .post(self.group, user, text)
            .expect("user may post");
        let msg = self.message(self.group_chat(), id, user, text);
        self.deliver(&msg).await;
        id
    }

    /// `user` writes `text` to the bot in private; the bot handles it.
    async fn say_private(&self, user: UserId, text: &str) {
        let id = self.sim.send_private(user, text).expect("private message");
        let chat = Chat {
            id: user.into(),
            kind: ChatKind::Private,
            title: None,
            username: None,
        };
        let msg = self.message(chat, id, user, text);
        self.deliver(&msg).await;
    }

    /// The bot's messages in a chat, oldest first.
    fn bot_messages(&self, chat: impl Into<ChatId>) -> Vec<SimMessage> {
        let mut all: Vec<SimMessage> = self
            .sim
            .messages(chat)
            .into_iter()
            .filter(|m| m.from == Some(self.bot))
            .collect();
        all.sort_by_key(|m| m.id);
        all
    }

    /// The bot's last message in the group (panics if it said nothing).
    fn last_reply(&self) -> SimMessage {
        self.bot_messages(self.group)
            .pop()
            .expect("the bot replied in the group")
    }

    async fn protect_news(&self) {
        self.say(self.owner, "/protect @test_news").await;
        let g = self
            .store
            .group(self.group)
            .await
            .expect("store")
            .expect("group stored");
        assert!(g.is_enforced(), "{g:?}");
    }

    /// Presses (or forges) a settings button as `user` and hands the callback to the bot.
    async fn press(&self, message: MessageId, user: UserId, data: &str, forged: bool) -> String {
        let id = if forged {
            self.sim.send_callback(self.group, message, user, data)
        } else {
            self.sim.press_button(self.group, message, user, data)
        }
        .expect("callback sent");
        let cq = CallbackQuery {
            id: id.clone(),
            from: self.user(user),
            message: Some((self.group.into(), message)),
            data: Some(data.to_owned()),
        };
        settings::handle_callback(&self.app, &cq)
            .await
            .expect("callback handled");
        id
    }
}

#[tokio::test]
async fn protect_resolves_and_stores_the_channel() {
    let h = harness().await;
    h.protect_news().await;
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert_eq!(g.title.as_deref(), Some(GROUP_TITLE));
    assert_eq!(g.owner, Some(h.owner));
    assert_eq!(g.channels.len(), 1);
    let c = &g.channels[0];
    assert_eq!(c.id, Some(h.channel));
    assert_eq!(c.username.as_ref().map(|u| u.as_str()), Some("test_news"));
    assert_eq!(c.title.as_deref(), Some("News"));
    assert_eq!(c.invite_link, None, "a public channel needs no invite link");
    let reply = h.last_reply();
    assert!(
        reply.text.contains("This group is protected"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("@test_news"), "{}", reply.text);
    // The owner was recorded; they have not started the bot in private yet.
    let owner = h.store.owner(h.owner).await.expect("store").expect("owner");
    assert!(!owner.can_be_messaged);
    assert_eq!(owner.username.as_deref(), Some("the_owner"));
    h.say_private(h.owner, "/start").await;
    let owner = h.store.owner(h.owner).await.expect("store").expect("owner");
    assert!(owner.can_be_messaged, "/start in private is remembered");
}

#[tokio::test]
async fn protect_works_against_an_older_bot_api_server() {
    let h = harness().await;
    // A Bot API 7.x server: no can_send_welcome_messages on admins, no accepted_gift_types…
    h.sim.set_legacy_shape(true);
    let started = std::time::Instant::now();
    h.protect_news().await;
    let reply = h.last_reply();
    assert!(
        reply.text.contains("This group is protected"),
        "{}",
        reply.text
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no retries");
    let calls = h.sim.calls_to("getChatAdministrators");
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|c| c.status == 200), "{calls:?}");
}

#[tokio::test]
async fn an_unreadable_answer_ends_setup_at_once_without_retries() {
    let h = harness().await;
    h.sim.inject(
        Fault::on(
            "getChatAdministrators",
            FaultKind::Answer(serde_json::json!([{"status": "administrator"}])),
        )
        .always(),
    );
    let started = std::time::Instant::now();
    h.say(h.owner, "/protect @test_news").await;
    assert!(started.elapsed() < Duration::from_secs(5), "no retries");
    // One read for the group; the channel's check may read once too. Never a retry.
    let n = h.sim.calls_to("getChatAdministrators").len();
    assert!((1..=2).contains(&n), "{n} calls");
    let g = h.store.group(h.group).await.expect("store");
    assert!(g.as_ref().is_none_or(|g| !g.is_enforced()), "{g:?}");
    let reply = h.last_reply();
    assert!(
        reply.text.contains("could not read"),
        "the owner is told what happened: {}",
        reply.text
    );
}

#[tokio::test]
async fn addressed_commands_count_and_other_bots_commands_do_not() {
    let h = harness().await;
    let name = h.app.me().username.to_ascii_uppercase();
    h.say(h.owner, "/protect@other_guard_bot @test_news").await;
    assert!(h.bot_messages(h.group).is_empty());
    assert!(h.store.group(h.group).await.expect("store").is_none());
    h.say(h.owner, &format!("/protect@{name} @test_news")).await;
    assert!(h.store.group(h.group).await.expect("store").is_some());
}

#[tokio::test]
async fn private_channel_gets_one_created_invite_link() {
    let h = harness().await;
    let secret = h
        .sim
        .create_channel("Secret <club>", None, h.owner)
        .expect("private channel");
    h.sim
        .add_bot(secret, h.owner, Some(AdminRights::moderator()))
        .expect("bot admin of the private channel");
    let cmd = format!("/protect {}", secret.get());
    h.say(h.owner, &cmd).await;
    let g = h.store.group(h.group).await.expect("store").expect("group");
    let link = g.channels[0]
        .invite_link
        .clone()
        .expect("invite link stored");
    assert!(h.sim.invite_link_valid(&link));
    // Protecting again reuses the stored link: nothing created, nothing revoked.
    h.say(h.owner, &cmd).await;
    assert_eq!(h.sim.calls_to("createChatInviteLink").len(), 1);
    assert!(h.sim.calls_to("exportChatInviteLink").is_empty());
    assert!(h.sim.invite_link_valid(&link));
    let links = h.sim.invite_links(secret);
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(!links[0].1, "not the primary link");
    // The title is escaped in the summary (the simulator parses the HTML).
    let reply = h.last_reply();
    assert!(reply.text.contains("Secret <club>"), "{}", reply.text);
}

#[tokio::test]
async fn without_an_argument_it_asks_for_the_channel() {
    let h = harness().await;
    h.say(h.owner, "/protect").await;
    assert_eq!(
        h.last_reply().text,
        "Which channel? Send /protect @yourchannel"
    );
}

#[tokio::test]
async fn bot_not_group_admin_or_missing_rights() {
    let h = harness().await;
    h.sim
        .set_bot_rights(h.group, h.owner, None)
        .expect("bot demoted");
    h.say(h.owner, "/protect @test_news").await;
    let text = h.last_reply().text;
    assert!(
        text.contains(
            "Make me an administrator of this group with the rights Delete messages and Ban users"
        ),
        "{text}"
    );
    let no_restrict = AdminRights {
        can_restrict_members: false,
        ..AdminRights::moderator()
    };
    h.sim
        .set_bot_rights(h.group, h.owner, Some(no_restrict))
        .expect("bot promoted without restrict");
    h.say(h.owner, "/protect @test_news").await;
    let text = h.last_reply().text;
    assert!(text.contains("lack the right Ban users"), "{text}");
    assert!(h.store.group(h.group).await.expect("store").is_none());
}

#[tokio::test]
async fn channel_not_found() {
    let h = harness().await;
    h.say(h.owner, "/protect @no_such_channel").await;
    let text = h.last_reply().text;
    assert!(
        text.contains("I can't find the channel @no_such_channel"),
        "{text}"
    );
}

#[tokio::test]
async fn bot_not_channel_admin() {
    let h = harness().await;
    h.sim
        .set_bot_rights(h.channel, h.owner, None)
        .expect("bot removed from the channel");
    h.say(h.owner, "/protect @test_news").await;
    let text = h.last_reply().text;
    assert!(
        text.contains("Make me an administrator of @test_news with no extra rights needed — Telegram only shows channel members to its admins."),
        "{text}"
    );
    assert!(h.store.group(h.group).await.expect("store").is_none());
}

#[tokio::test]
async fn caller_not_channel_admin() {
    let h = harness().await;
    let admin = h.sim.add_user("Group admin");
    h.sim.join(h.group, admin).expect("joins");
    h.sim
        .promote(h.group, admin, AdminRights::moderator())
        .expect("promoted in the group only");
    h.say(admin, "/protect @test_news").await;
    let text = h.last_reply().text;
    assert!(
        text.contains("You are not an administrator of @test_news"),
        "{text}"
    );
    assert!(h.store.group(h.group).await.expect("store").is_none());
}

#[tokio::test]
async fn anonymous_admin_is_told_to_show_themselves() {
    let h = harness().await;
    let text = "/protect @test_news";
    let id = h
        .sim
        .post_as_anonymous_admin(h.group, text)
        .expect("anonymous post");
    let mut msg = h.message(h.group_chat(), id, UserId::GROUP_ANONYMOUS_BOT, text);
    msg.sender_chat = Some(h.group_chat());
    h.deliver(&msg).await;
    assert!(h.last_reply().text.contains("Remain anonymous"));
    assert!(h.store.group(h.group).await.expect("store").is_none());
}

#[tokio::test]
async fn non_admin_gets_no_public_error_for_any_admin_command() {
    let h = harness().await;
    h.protect_news().await;
    let before = h.bot_messages(h.group).len();
    let sends_before = h.sim.calls_to("sendMessage").len();
    for cmd in [
        "/protect @test_news",
        "/protect",
        "/unprotect",
        "/status",
        "/settings",
        "/settings allow 12345",
        "/settings disallow 12345",
    ] {
        h.say(h.bob, cmd).await;
    }
    assert_eq!(h.bot_messages(h.group).len(), before);
    assert_eq!(h.sim.calls_to("sendMessage").len(), sends_before);
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert!(g.is_enforced(), "still protected");
    assert!(g.settings.allowlist.is_empty());
    // /help is for everybody, with the button to add the bot to a group.
    h.say(h.bob, "/help").await;
    let help = h.last_reply();
    let url = format!("https://t.me/{}?startgroup=true", h.app.me().username);
    assert!(
        help.buttons
            .iter()
            .flatten()
            .any(|b| format!("{b:?}").contains(&url)),
        "{:?}",
        help.buttons
    );
}

#[tokio::test]
async fn unprotect_and_settings_need_the_creator_or_the_ban_users_right() {
    let h = harness().await;
    h.protect_news().await;
    // Dave is an admin who may delete messages but not ban users; he started the bot.
    let dave = h.sim.add_user("Dave");
    h.sim.join(h.group, dave).expect("joins");
    let rights = AdminRights {
        can_restrict_members: false,
        ..AdminRights::moderator()
    };
    h.sim.promote(h.group, dave, rights).expect("promoted");
    h.sim.start_bot(dave).expect("started the bot");
    let in_group = h.bot_messages(h.group).len();
    for cmd in ["/unprotect", "/settings", "/settings allow 12345"] {
        h.say(dave, cmd).await;
    }
    assert_eq!(h.bot_messages(h.group).len(), in_group, "no public answer");
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert!(g.is_enforced(), "still protected");
    assert!(g.settings.allowlist.is_empty(), "settings unchanged");
    let private = h.bot_messages(dave);
    assert_eq!(private.len(), 3, "{private:?}");
    assert!(
        private.iter().all(|m| m.text.contains("Ban users")),
        "{private:?}"
    );
    // An admin with the right may.
    let erin = h.sim.add_user("Erin");
    h.sim.join(h.group, erin).expect("joins");
    h.sim
        .promote(h.group, erin, AdminRights::moderator())
        .expect("promoted");
    h.say(erin, "/settings").await;
    assert!(!h.last_reply().buttons.is_empty(), "the settings keyboard");
    h.say(erin, "/unprotect").await;
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert!(!g.is_enforced());
}

#[tokio::test]
async fn group_commands_in_private_explain_how_to_use_them() {
    let h = harness().await;
    for cmd in ["/protect @test_news", "/status", "/unprotect", "/settings"] {
        h.say_private(h.owner, cmd).await;
    }
    let replies = h.bot_messages(h.owner);
    assert_eq!(replies.len(), 4);
    assert!(replies.iter().all(|m| m.text.contains("works in a group")));
    h.say_private(h.bob, "/help").await;
    assert!(h.bot_messages(h.bob)[0]
        .text
        .contains("/protect @yourchannel"));
}

#[tokio::test]
async fn unprotect_leaves_nobody_muted() {
    let h = harness().await;
    h.protect_news().await;
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("joins");
    // Two members muted the way the enforcement flow does it: recorded, restricted, confirmed.
    for user in [h.bob, carol] {
        let row = h
            .store
            .record_restriction(
                &NewRestriction {
                    group: h.group,
                    user,
                    kind: RestrictionKind::Mute,
                    until: None,
                    reason: "not subscribed".into(),
                },
                UnixTime::now(),
            )
            .await
            .expect("recorded");
        h.app
            .telegram()
            .restrict_member(h.group, user, None)
            .await
            .expect("muted");
        h.store
            .confirm_restriction(h.group, row.id)
            .await
            .expect("confirmed");
        assert!(!h.sim.can_post(h.group, user));
    }
    h.say(h.owner, "/unprotect").await;
    assert!(h.last_reply().text.contains("I unmuted 2 members"));
    for user in [h.bob, carol] {
        assert!(h.sim.can_post(h.group, user), "{user} can write again");
    }
    assert_eq!(
        h.store
            .count_active_restrictions(h.group)
            .await
            .expect("store"),
        0
    );
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert!(!g.is_enforced());
    // The engine sees it at once.
    let verdict = h
        .app
        .engine()
        .verify(h.group, h.bob, MessageContext::message(MessageId(1)))
        .await
        .expect("verdict");
    assert!(verdict.decision.is_allowed() || verdict.actions.is_empty());
}

#[tokio::test]
async fn status_shows_channels_rights_and_what_is_missing() {
    let h = harness().await;
    h.say(h.owner, "/status").await;
    assert!(h.last_reply().text.contains("not protected"));
    h.protect_news().await;
    h.say(h.owner, "/status").await;
    let text = h.last_reply().text;
    assert!(text.contains("protected"), "{text}");
    assert!(text.contains("@test_news"), "{text}");
    assert!(text.contains("every right I need"), "{text}");
    assert!(text.contains("Muted now: 0"), "{text}");
    assert!(text.contains("Verifications"), "{text}");
    h.sim
        .set_bot_rights(h.channel, h.owner, None)
        .expect("bot removed from the channel");
    h.say(h.owner, "/status").await;
    let text = h.last_reply().text;
    assert!(
        text.contains("Make me an administrator of @test_news"),
        "{text}"
    );
}

#[tokio::test]
async fn status_counts_this_groups_verifications_denials_and_cache_hits() {
    let h = harness().await;
    h.protect_news().await;
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("joins the group");
    h.sim.join(h.channel, carol).expect("subscribes");
    // Carol writes three times (one Telegram check, then two cache hits); Bob, who is not
    // subscribed, once (one check, denied).
    for (update_id, (user, text)) in (1000..).zip([
        (carol, "one"),
        (carol, "two"),
        (carol, "three"),
        (h.bob, "hi"),
    ]) {
        let id = h.sim.post(h.group, user, text).expect("may post");
        let msg = h.message(h.group_chat(), id, user, text);
        gmbot_bot::handlers::handle(
            &h.app,
            gmbot_bot::update::Update {
                id: update_id,
                kind: gmbot_bot::update::UpdateKind::Message(msg),
            },
        )
        .await
        .expect("handled");
    }
    h.say(h.owner, "/status").await;
    let text = h.last_reply().text;
    assert!(
        text.contains("since it started): 4 — 3 allowed, 0 exempt, 1 denied, 0 unverifiable"),
        "{text}"
    );
    assert!(text.contains("Cache hits (this group): 2"), "{text}");
}

#[tokio::test]
async fn settings_keyboard_changes_persist_and_take_effect_at_once() {
    let h = harness().await;
    h.protect_news().await;
    // A first verification caches the group's configuration (mute by default).
    let verdict = h
        .app
        .engine()
        .verify(h.group, h.bob, MessageContext::message(MessageId(1)))
        .await
        .expect("verdict");
    assert!(
        verdict
            .actions
            .iter()
            .any(|a| matches!(a, Action::Restrict { .. })),
        "{verdict:?}"
    );
    h.say(h.owner, "/settings").await;
    let keyboard = h.last_reply();
    assert!(keyboard.text.contains("Non-members who write"));
    let cb = h.press(keyboard.id, h.owner, "s:a:kick", false).await;
    let answer = h.sim.callback_answer(&cb).expect("answered");
    assert_eq!(answer.text.as_deref(), Some("Saved."));
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert_eq!(g.settings.action, NonMemberAction::Kick);
    let edited = h.sim.message(h.group, keyboard.id).expect("keyboard");
    assert!(edited.edited);
    assert!(format!("{:?}", edited.buttons).contains("✓ Kick"));
    // The next verification uses the new action, without waiting for the config TTL.
    let verdict = h
        .app
        .engine()
        .verify(h.group, h.bob, MessageContext::message(MessageId(2)))
        .await
        .expect("verdict");
    assert!(
        verdict.actions.iter().any(|a| matches!(a, Action::Kick)),
        "{verdict:?}"
    );
    // More presses on the edited keyboard.
    h.press(keyboard.id, h.owner, "s:m:3600", false).await;
    h.press(keyboard.id, h.owner, "s:j:0", false).await;
    h.press(keyboard.id, h.owner, "s:f:closed", false).await;
    let s = h
        .store
        .group(h.group)
        .await
        .expect("store")
        .expect("group")
        .settings;
    assert_eq!(s.mute_seconds, 3600);
    assert!(!s.check_on_join);
    assert_eq!(s.failure_policy, gmbot_core::domain::FailurePolicy::Closed);
    // Done closes the keyboard.
    h.press(keyboard.id, h.owner, "s:done", false).await;
    let closed = h.sim.message(h.group, keyboard.id).expect("keyboard");
    assert!(closed.buttons.is_empty());
}

#[tokio::test]
async fn spoofed_settings_callbacks_are_refused() {
    let h = harness().await;
    h.protect_news().await;
    h.say(h.owner, "/settings").await;
    let keyboard = h.last_reply();
    // A member pressing (or forging) a button: refused privately, nothing changes.
    for data in ["s:a:del", "s:b:0"] {
        let cb = h.press(keyboard.id, h.bob, data, true).await;
        let answer = h.sim.callback_answer(&cb).expect("answered");
        assert!(answer.show_alert);
        assert!(answer.text.as_deref().is_some_and(
            |t| t.contains("Only the group's creator or an administrator with the right Ban users")
        ));
    }
    // An admin forging a value the keyboard never offers.
    let cb = h.press(keyboard.id, h.owner, "s:m:12", true).await;
    assert!(h.sim.callback_answer(&cb).is_some());
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert_eq!(g.settings, gmbot_core::domain::GroupSettings::default());
    assert!(
        !h.sim
            .message(h.group, keyboard.id)
            .expect("keyboard")
            .edited
    );
}

#[tokio::test]
async fn allow_list_by_command() {
    let h = harness().await;
    h.protect_news().await;
    h.say(h.owner, &format!("/settings allow {}", h.bob)).await;
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert!(g.settings.allowlist.contains(&h.bob));
    // Allow-listed at once: exempt.
    let verdict = h
        .app
        .engine()
        .verify(h.group, h.bob, MessageContext::message(MessageId(1)))
        .await
        .expect("verdict");
    assert!(verdict.actions.is_empty(), "{verdict:?}");
    h.say(h.owner, &format!("/settings disallow {}", h.bob))
        .await;
    let g = h.store.group(h.group).await.expect("store").expect("group");
    assert!(g.settings.allowlist.is_empty());
}

#[tokio::test]
async fn injection_in_arguments_is_harmless() {
    let h = harness().await;
    h.say(
        h.owner,
        "/protect <b>bold</b> @x'); DROP TABLE protected_groups;--",
    )
    .await;
    let reply = h.last_reply();
    // Quoted back as text: the simulator parsed the HTML, so markup would have vanished.
    assert!(reply.text.contains("<b>bold</b>"), "{}", reply.text);
    assert!(reply.text.contains("@x');"), "{}", reply.text);
    h.say(h.owner, "/settings allow 1;DELETE").await;
    assert!(h.last_reply().text.contains("not protected yet"));
    h.protect_news().await;
    h.say(h.owner, "/settings allow 1;DELETE").await;
    assert!(h.last_reply().text.contains("1;DELETE is not a user id"));
    h.say(h.owner, "/settings allow 1 OR 1=1; DELETE FROM owners")
        .await;
    assert!(h.last_reply().text.contains("/settings allow USER_ID"));
    h.say(h.owner, "/settings allow <i>7</i>").await;
    assert!(h.last_reply().text.contains("<i>7</i> is not a user id"));
    // The store is intact.
    assert_eq!(h.store.list_groups().await.expect("store").len(), 1);
    assert!(h.store.owner(h.owner).await.expect("store").is_some());
}
