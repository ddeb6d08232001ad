//! The join gate and private warnings end to end: the real Bot API client against the
//! simulated Telegram, a SQLite file store (reopened to play a restart) and the memory cache;
//! updates are fetched with `getUpdates`, converted and handed to `handlers::handle`. The
//! app's clock is a `ManualClock`, so a 10-minute wait passes without sleeping; the
//! simulator keeps wall-clock time for what Telegram times (the 5-minute private-message
//! window, the 10 seconds of a join request query), which tests move with
//! `age_join_request`.

#[path = "../../gmbot-core/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use gmbot_bot::app::{App, AppDeps, BotIdentity};
use gmbot_bot::botapi::{convert, ALLOWED_UPDATES};
use gmbot_bot::flows::{self, gate};
use gmbot_bot::handlers;
use gmbot_bot::sim::{AdminRights, EphemeralSupport, MemberState, SimMessage, Simulator};
use gmbot_bot::update::{Update, UpdateKind};
use gmbot_bot::{BotApi, BotApiOptions, BotToken};
use gmbot_core::cache::{MemoryCache, MemoryCacheConfig};
use gmbot_core::clock::{Clock, ManualClock};
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::{
    ChannelId, ChannelUsername, EnforcedChannel, GroupId, JoinRequestState, MessageId, Owner,
    ProtectRequest, SettingChange, UnixTime, UserId,
};
use gmbot_core::engine::EngineConfig;
use gmbot_core::store::{self, DatabaseUrl, MigrationMode, Store};
use gmbot_core::telegram::{OutgoingMessage, TelegramApi, TelegramError};
use prometheus::Registry;

use support::{sqlite_file_url, SqliteFile};

// ---------------------------------------------------------------------------------------------
// The fixture.

struct H {
    sim: Simulator,
    poll: BotApi,
    offset: Option<i64>,
    app: App,
    store: Arc<dyn Store>,
    clock: ManualClock,
    url: DatabaseUrl,
    _file: SqliteFile,
    owner: UserId,
    /// Subscribed to the channel, not in the group.
    alice: UserId,
    /// Neither subscribed nor in the group.
    bob: UserId,
    group: GroupId,
    channel: ChannelId,
}

fn client(sim: &Simulator) -> BotApi {
    let token = BotToken::parse(sim.token()).expect("simulator token has a real token's shape");
    let options = BotApiOptions {
        base_url: sim.base_url().parse().expect("simulator URL"),
        request_timeout: Duration::from_secs(10),
        long_poll: Duration::from_secs(1),
        ..BotApiOptions::default()
    };
    BotApi::new(token, options).expect("client builds")
}

/// An app over `store`, as a fresh process would build it (nothing in memory).
fn app(sim: &Simulator, store: Arc<dyn Store>, clock: &ManualClock) -> App {
    let registry = Registry::new();
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let cache = MemoryCache::new(MemoryCacheConfig::default(), clock.clone(), &registry)
        .expect("memory cache");
    App::with_flows(
        AppDeps {
            me: BotIdentity {
                id: sim.bot().id,
                username: "gmbot_test_bot".to_owned(),
            },
            store,
            telegram: Arc::new(client(sim)),
            cache: Arc::new(cache),
            clock,
            dispatch: DispatchConfig {
                group_per_minute: 10_000,
                group_burst: 1_000,
                global_per_second: 10_000,
                global_burst: 1_000,
                backoff_base: Duration::from_millis(1),
                backoff_max: Duration::from_millis(5),
                ..DispatchConfig::default()
            },
            engine: EngineConfig::default(),
            registry,
        },
        flows::FlowConfig::default(),
    )
    .expect("app builds")
}

async fn harness() -> H {
    let sim = Simulator::start().expect("simulator starts");
    let owner = sim.add_user("Owner");
    let alice = sim.add_user("Alice");
    let bob = sim.add_user_with("<b>Bob</b>", None, None);
    let group = sim
        .create_supergroup("Gated <group>", owner)
        .expect("group");
    let channel = sim
        .create_channel("News", Some("gate_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot joins the group");
    sim.add_bot(channel, owner, Some(AdminRights::full()))
        .expect("bot joins the channel");
    sim.join(channel, alice).expect("alice subscribes");

    let (file, url) = sqlite_file_url();
    let store = store::open(&url, MigrationMode::Apply)
        .await
        .expect("store opens");
    let clock = ManualClock::new(UnixTime::now());
    let app = app(&sim, store.clone(), &clock);
    let now = app.clock().unix_now();
    store
        .upsert_owner(&Owner {
            user_id: owner,
            username: None,
            display_name: Some("Owner".to_owned()),
            can_be_messaged: true,
            created_at: now,
        })
        .await
        .expect("owner");
    store
        .protect(
            &ProtectRequest {
                group,
                title: Some("Gated <group>".to_owned()),
                owner: Some(owner),
                channels: vec![EnforcedChannel {
                    id: Some(channel),
                    username: Some(ChannelUsername::parse("gate_news").expect("username")),
                    title: Some("News".to_owned()),
                    invite_link: None,
                }],
            },
            now,
        )
        .await
        .expect("protect");
    store
        .update_settings(group, &[SettingChange::JoinGate(true)], now)
        .await
        .expect("gate on");
    let mut h = H {
        poll: client(&sim),
        sim,
        offset: None,
        app,
        store,
        clock,
        url,
        _file: file,
        owner,
        alice,
        bob,
        group,
        channel,
    };
    h.skip_updates().await;
    h
}

impl H {
    async fn fetch(&mut self) -> Vec<Update> {
        let batch = self
            .poll
            .get_updates_with(self.offset, 100, 0, &ALLOWED_UPDATES)
            .await
            .expect("getUpdates");
        assert!(batch.malformed.is_empty(), "{:?}", batch.malformed);
        if let Some(next) = batch.next_offset {
            self.offset = Some(next);
        }
        batch.updates.into_iter().map(convert::update).collect()
    }

    /// Forgets the updates waiting (the bot never sees them).
    async fn skip_updates(&mut self) {
        while !self.fetch().await.is_empty() {}
    }

    /// Handles every update until none is left (handling may produce more), and lets the
    /// outbox carry out what the handlers queued.
    async fn pump(&mut self) -> usize {
        let mut n = 0;
        loop {
            self.app.outbox().idle().await;
            let updates = self.fetch().await;
            if updates.is_empty() {
                return n;
            }
            for u in updates {
                n += 1;
                handlers::handle(&self.app, u)
                    .await
                    .expect("update handled");
            }
        }
    }

    async fn set(&self, change: SettingChange) {
        self.store
            .update_settings(self.group, &[change], self.app.clock().unix_now())
            .await
            .expect("settings");
        self.app.engine().invalidate_group(self.group).await;
    }

    /// The bot's messages in a private chat.
    fn private_messages(&self, user: UserId) -> Vec<SimMessage> {
        let bot = self.sim.bot().id;
        self.sim
            .messages(user)
            .into_iter()
            .filter(|m| m.from == Some(bot))
            .collect()
    }

    fn calls(&self, method: &str) -> usize {
        self.sim.calls_to(method).len()
    }

    /// Calls of `method` that succeeded.
    fn ok_calls(&self, method: &str) -> usize {
        self.sim.calls_to(method).iter().filter(|c| c.ok()).count()
    }

    async fn state(&self, user: UserId) -> Option<JoinRequestState> {
        self.store
            .join_request(self.group, user)
            .await
            .expect("store read")
            .map(|r| r.state)
    }

    fn is_member(&self, user: UserId) -> bool {
        self.sim.member(self.group, user) == MemberState::Member
    }

    /// Presses the "let me in" button of the bot's last private message to `user`.
    async fn press_let_me_in(&mut self, user: UserId) -> String {
        let m = self
            .private_messages(user)
            .pop()
            .expect("a private message from the bot");
        let cq = self
            .sim
            .press_button(user, m.id, user, &gate::gate_data(self.group))
            .expect("the button is there");
        self.pump().await;
        self.sim
            .callback_answer(&cq)
            .and_then(|a| a.text)
            .expect("the press is answered")
    }

    async fn finish(self) {
        self.app.shutdown().await;
    }
}

/// `gmbot_verifications_total`, all results together.
fn verifications(app: &App) -> f64 {
    app.registry()
        .gather()
        .iter()
        .filter(|f| f.name() == "gmbot_verifications_total")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum()
}

fn data_of(m: &SimMessage) -> Vec<String> {
    m.buttons
        .iter()
        .flatten()
        .filter_map(|b| b.callback_data.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The join gate.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribers_request_is_approved_at_once_and_their_join_is_not_checked_again() {
    let mut h = harness().await;
    h.sim.request_join(h.group, h.alice).expect("alice asks");
    h.pump().await;
    assert!(h.is_member(h.alice), "alice is in");
    assert!(!h.sim.join_request_pending(h.group, h.alice));
    assert_eq!(h.ok_calls("approveChatJoinRequest"), 1);
    assert!(
        h.private_messages(h.alice).is_empty(),
        "nothing to tell her"
    );
    assert_eq!(h.state(h.alice).await, None, "nothing to remember either");
    // The approval's join (chat_member and the service message) was handled without a
    // second verification, and nobody was muted or warned.
    assert_eq!(verifications(&h.app), 1.0);
    assert_eq!(h.calls("restrictChatMember"), 0);
    assert!(h.sim.can_post(h.group, h.alice));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_subscriber_is_told_joins_presses_and_is_approved() {
    let mut h = harness().await;
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    h.pump().await;
    assert!(
        h.sim.join_request_pending(h.group, h.bob),
        "not declined at once"
    );
    assert!(!h.is_member(h.bob));
    assert_eq!(h.calls("declineChatJoinRequest"), 0);
    let row = h
        .store
        .join_request(h.group, h.bob)
        .await
        .expect("read")
        .expect("the request is remembered");
    assert_eq!(row.state, JoinRequestState::Pending);
    assert!(row.notice.is_some(), "the private message is recorded");
    assert_eq!(
        row.expires_at.secs() - h.app.clock().unix_now().secs(),
        600,
        "the default wait"
    );

    // He was told in private, though he never started the bot.
    let dm = h.private_messages(h.bob);
    assert_eq!(dm.len(), 1, "{dm:?}");
    let html = dm[0].html.as_deref().expect("HTML");
    assert!(
        html.contains("Gated &lt;group&gt;"),
        "title escaped: {html}"
    );
    assert!(html.contains("10 min"), "{html}");
    let urls: Vec<_> = dm[0]
        .buttons
        .iter()
        .flatten()
        .filter_map(|b| b.url.clone())
        .collect();
    assert_eq!(urls, vec!["https://t.me/gate_news".to_owned()]);
    assert_eq!(data_of(&dm[0]), vec![gate::gate_data(h.group)]);

    // Pressing before joining: told what is missing, still waiting.
    let answer = h.press_let_me_in(h.bob).await;
    assert!(
        answer.starts_with("You still need to join") && answer.contains("News"),
        "{answer}"
    );
    assert!(h.sim.join_request_pending(h.group, h.bob));

    // He joins (the bot does not see the channel update) and presses again after the
    // re-check cool-down: approved, and the private message loses its button.
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    h.skip_updates().await;
    h.clock.advance(Duration::from_secs(6));
    let answer = h.press_let_me_in(h.bob).await;
    assert_eq!(answer, gate::APPROVED);
    assert!(h.is_member(h.bob), "bob is in");
    assert!(!h.sim.join_request_pending(h.group, h.bob));
    assert_eq!(h.state(h.bob).await, Some(JoinRequestState::Approved));
    let dm = h.private_messages(h.bob);
    assert!(
        dm[0].buttons.is_empty() && dm[0].text.contains("approved"),
        "{dm:?}"
    );
    // A press on the old button (a stale client) changes nothing.
    let cq = h
        .sim
        .send_callback(h.bob, dm[0].id, h.bob, &gate::gate_data(h.group))
        .expect("press");
    h.pump().await;
    assert_eq!(
        h.sim.callback_answer(&cq).and_then(|a| a.text).as_deref(),
        Some(gate::ALREADY_IN)
    );
    assert_eq!(h.ok_calls("approveChatJoinRequest"), 1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_the_channel_approves_a_pending_request() {
    let mut h = harness().await;
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    h.pump().await;
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    h.pump().await;
    assert!(h.is_member(h.bob), "approved when the channel join arrived");
    assert_eq!(h.state(h.bob).await, Some(JoinRequestState::Approved));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_subscriber_is_declined_when_the_wait_runs_out() {
    let mut h = harness().await;
    h.set(SettingChange::JoinWaitSeconds(300)).await;
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    h.pump().await;
    assert!(h.private_messages(h.bob)[0].text.contains("5 min"));

    h.clock.advance(Duration::from_secs(299));
    let report = gate::sweep_once(&h.app).await;
    assert_eq!(report.checked, 0, "not due yet: {report:?}");
    assert!(h.sim.join_request_pending(h.group, h.bob));

    h.clock.advance(Duration::from_secs(1));
    let report = gate::sweep_once(&h.app).await;
    assert_eq!((report.checked, report.declined), (1, 1), "{report:?}");
    assert!(
        !h.sim.join_request_pending(h.group, h.bob),
        "declined in Telegram"
    );
    assert!(!h.is_member(h.bob));
    assert_eq!(h.state(h.bob).await, Some(JoinRequestState::Declined));
    let dm = h.private_messages(h.bob);
    assert!(
        dm[0].text.contains("declined") && dm[0].buttons.is_empty(),
        "{dm:?}"
    );
    // Nothing is due any more.
    assert_eq!(gate::sweep_once(&h.app).await.checked, 0);

    // Asking again starts over: a new wait, a new private message.
    h.sim.request_join(h.group, h.bob).expect("bob asks again");
    h.pump().await;
    assert_eq!(h.state(h.bob).await, Some(JoinRequestState::Pending));
    assert_eq!(h.private_messages(h.bob).len(), 2);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_wait_resumes_the_pending_requests_from_the_store() {
    let mut h = harness().await;
    let carol = h.sim.add_user("Carol");
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    h.sim.request_join(h.group, carol).expect("carol asks");
    h.pump().await;
    assert_eq!(
        h.store
            .count_pending_join_requests(h.group)
            .await
            .expect("count"),
        2
    );

    // The process stops; a new one opens the same database (nothing in memory survives).
    h.app.shutdown().await;
    drop(std::mem::replace(&mut h.store, {
        store::open(&h.url, MigrationMode::Require)
            .await
            .expect("the database reopens")
    }));
    h.app = app(&h.sim, h.store.clone(), &h.clock);

    // Bob joined while the bot was down and presses the button of the old process's message.
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    h.skip_updates().await;
    let answer = h.press_let_me_in(h.bob).await;
    assert_eq!(answer, gate::APPROVED);
    assert!(h.is_member(h.bob));

    // Carol never joins: the new process declines her when her wait runs out.
    h.clock.advance(Duration::from_secs(601));
    let report = gate::sweep_once(&h.app).await;
    assert_eq!((report.checked, report.declined), (1, 1), "{report:?}");
    assert!(!h.sim.join_request_pending(h.group, carol));
    assert_eq!(h.state(carol).await, Some(JoinRequestState::Declined));
    assert!(h.private_messages(carol)[0].text.contains("declined"));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_request_queries_are_answered_through_their_query_id() {
    let mut h = harness().await;
    // A subscriber: approved through the query, not approveChatJoinRequest.
    let q = h
        .sim
        .request_join_via_guard(h.group, h.alice)
        .expect("alice asks");
    h.pump().await;
    assert_eq!(h.sim.join_query_answer(&q).as_deref(), Some("approve"));
    assert!(h.is_member(h.alice));
    assert_eq!(h.calls("approveChatJoinRequest"), 0);

    // A non-subscriber: queued within the query's 10 seconds, then an ordinary pending
    // request the gate decides — here approved when he joins the channel.
    let q = h
        .sim
        .request_join_via_guard(h.group, h.bob)
        .expect("bob asks");
    h.pump().await;
    assert_eq!(h.sim.join_query_answer(&q).as_deref(), Some("queue"));
    assert!(h.sim.join_request_pending(h.group, h.bob));
    assert_eq!(h.private_messages(h.bob).len(), 1, "told in private");
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    h.pump().await;
    assert!(h.is_member(h.bob));
    assert_eq!(h.ok_calls("approveChatJoinRequest"), 1);

    // A query the bot answers too late (after 10 s) falls back to approveChatJoinRequest.
    let dave = h.sim.add_user("Dave");
    h.sim.join(h.channel, dave).expect("dave subscribes");
    h.skip_updates().await;
    let q = h
        .sim
        .request_join_via_guard(h.group, dave)
        .expect("dave asks");
    h.sim
        .age_join_request(h.group, dave, Duration::from_secs(11));
    h.pump().await;
    assert_eq!(h.sim.join_query_answer(&q), None, "the query had expired");
    assert!(h.is_member(dave), "approved the ordinary way");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_left_to_the_admins_when_the_gate_is_off() {
    let mut h = harness().await;
    h.set(SettingChange::JoinGate(false)).await;
    h.sim.request_join(h.group, h.alice).expect("alice asks");
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    h.pump().await;
    assert!(h.sim.join_request_pending(h.group, h.alice));
    assert!(h.sim.join_request_pending(h.group, h.bob));
    assert_eq!(
        h.calls("approveChatJoinRequest") + h.calls("declineChatJoinRequest"),
        0
    );
    assert!(h.private_messages(h.bob).is_empty());

    // Switched off while a request waits: the sweep leaves it to the admins.
    h.set(SettingChange::JoinGate(true)).await;
    let carol = h.sim.add_user("Carol");
    h.sim.request_join(h.group, carol).expect("carol asks");
    h.pump().await;
    h.set(SettingChange::JoinGate(false)).await;
    h.clock.advance(Duration::from_secs(601));
    let report = gate::sweep_once(&h.app).await;
    assert_eq!(report.released, 1, "{report:?}");
    assert!(
        h.sim.join_request_pending(h.group, carol),
        "still for the admins"
    );
    assert_eq!(h.state(carol).await, Some(JoinRequestState::Released));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_settings_say_when_the_gate_lacks_the_invite_right() {
    let mut h = harness().await;
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    h.pump().await;
    h.sim
        .set_bot_rights(
            h.group,
            h.owner,
            Some(AdminRights {
                can_invite_users: false,
                ..AdminRights::moderator()
            }),
        )
        .expect("rights changed");
    h.pump().await;
    h.sim.post(h.group, h.owner, "/status").expect("/status");
    h.pump().await;
    let bot = h.sim.bot().id;
    let status = h
        .sim
        .messages(h.group)
        .into_iter()
        .rev()
        .find(|m| m.from == Some(bot) && m.text.contains("Status"))
        .expect("a status reply");
    assert!(
        status.text.contains("1 waiting"),
        "pending requests shown: {}",
        status.text
    );
    assert!(
        status
            .text
            .contains("can't approve or decline join requests"),
        "{}",
        status.text
    );

    // At the deadline the decline is refused: the request is left to the admins, who are told.
    h.clock.advance(Duration::from_secs(601));
    let report = gate::sweep_once(&h.app).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(h.state(h.bob).await, Some(JoinRequestState::Released));
    assert!(h.sim.join_request_pending(h.group, h.bob));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_may_write_to_a_requester_for_five_minutes_only() {
    let h = harness().await;
    let api = client(&h.sim);
    let msg = OutgoingMessage {
        html: "hello".into(),
        ..OutgoingMessage::default()
    };
    // Without a request or /start: refused.
    assert!(matches!(
        api.send_message(h.bob.into(), &msg).await,
        Err(TelegramError::Forbidden(_))
    ));
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    assert!(api.send_message(h.bob.into(), &msg).await.is_ok());
    h.sim
        .age_join_request(h.group, h.bob, Duration::from_secs(301));
    assert!(matches!(
        api.send_message(h.bob.into(), &msg).await,
        Err(TelegramError::Forbidden(_))
    ));
    h.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Private warnings.

/// Bob and Carol in the group, not subscribed; private warnings on.
async fn private_warnings() -> H {
    let mut h = harness().await;
    h.sim.join(h.group, h.bob).expect("bob joins");
    h.set(SettingChange::CheckOnJoin(false)).await;
    h.set(SettingChange::PrivateWarnings(true)).await;
    h.skip_updates().await;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_warning_is_seen_by_the_muted_member_only() {
    let mut h = private_warnings().await;
    h.sim.join(h.group, h.alice).expect("alice joins");
    h.skip_updates().await;
    let posted = h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;
    assert!(h.sim.message(h.group, posted).expect("message").deleted);
    assert!(!h.sim.can_post(h.group, h.bob), "muted");

    let bot = h.sim.bot().id;
    assert!(
        h.sim
            .visible_messages(h.group)
            .iter()
            .all(|m| m.from != Some(bot)),
        "nothing from the bot in the group's history"
    );
    let ephemeral = h.sim.ephemeral_messages(h.group);
    assert_eq!(ephemeral.len(), 1);
    assert_eq!(ephemeral[0].receiver, h.bob);
    let seen = |u: UserId| {
        h.sim
            .messages_seen_by(h.group, u)
            .into_iter()
            .filter(|m| m.from == Some(bot))
            .count()
    };
    assert_eq!((seen(h.bob), seen(h.alice), seen(h.owner)), (1, 0, 0));
    let call = &h.sim.calls_to("sendMessage")[0];
    assert_eq!(
        call.params["ephemeral_message_parameters"]["receiver_user_id"],
        serde_json::json!(h.bob.get())
    );
    assert_eq!(
        h.app.flows().timers().scheduled(),
        1,
        "its deletion is scheduled"
    );

    // His "I've joined" on the private warning unmutes him and removes it.
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    h.skip_updates().await;
    let data = format!("j:{}", h.bob.get());
    assert!(
        h.sim
            .press_ephemeral_button(h.group, ephemeral[0].id, h.alice, &data)
            .is_err(),
        "nobody else sees it, so nobody else can press it"
    );
    let cq = h
        .sim
        .press_ephemeral_button(h.group, ephemeral[0].id, h.bob, &data)
        .expect("bob presses");
    h.pump().await;
    assert!(h.sim.callback_answer(&cq).is_some());
    assert!(h.sim.can_post(h.group, h.bob), "unmuted");
    assert!(
        h.sim.ephemeral_messages(h.group)[0].message.deleted,
        "removed"
    );
    assert_eq!(h.ok_calls("deleteEphemeralMessage"), 1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_private_warning_falls_back_to_the_public_one() {
    let mut h = private_warnings().await;
    h.sim.set_ephemeral_support(EphemeralSupport::Refused);
    h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;
    assert!(!h.sim.can_post(h.group, h.bob), "muted");
    let sends = h.sim.calls_to("sendMessage");
    assert_eq!(sends.len(), 2, "{sends:?}");
    assert!(
        !sends[0].ok()
            && sends[0]
                .params
                .get("ephemeral_message_parameters")
                .is_some()
    );
    assert!(
        sends[1].ok()
            && sends[1]
                .params
                .get("ephemeral_message_parameters")
                .is_none()
    );
    let bot = h.sim.bot().id;
    let public: Vec<_> = h
        .sim
        .visible_messages(h.group)
        .into_iter()
        .filter(|m| m.from == Some(bot))
        .collect();
    assert_eq!(public.len(), 1, "the public warning");
    assert_eq!(data_of(&public[0]), vec![format!("j:{}", h.bob.get())]);
    assert!(h.sim.ephemeral_messages(h.group).is_empty());
    assert_eq!(
        h.app.flows().timers().scheduled(),
        1,
        "auto-deleted as usual"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_ephemeral_messages_posts_the_warning_publicly_once() {
    let mut h = private_warnings().await;
    h.sim.set_ephemeral_support(EphemeralSupport::Ignored);
    h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;
    assert_eq!(
        h.calls("sendMessage"),
        1,
        "one send: the server posted it for everyone"
    );
    let bot = h.sim.bot().id;
    let public: Vec<MessageId> = h
        .sim
        .visible_messages(h.group)
        .into_iter()
        .filter(|m| m.from == Some(bot))
        .map(|m| m.id)
        .collect();
    assert_eq!(public.len(), 1);
    assert_eq!(
        h.app.flows().timers().scheduled(),
        1,
        "deleted later like a public warning"
    );
    // Joining deletes it with deleteMessage, as the public warning it is.
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    h.pump().await;
    assert!(h.sim.message(h.group, public[0]).expect("warning").deleted);
    assert_eq!(h.calls("deleteEphemeralMessage"), 0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_a_join_request_are_keyed_by_the_requester() {
    let mut h = harness().await;
    h.sim.request_join(h.group, h.bob).expect("bob asks");
    let updates = h.fetch().await;
    let [u] = updates.as_slice() else {
        panic!("one update: {updates:?}")
    };
    let UpdateKind::ChatJoinRequest(r) = &u.kind else {
        panic!("a join request: {u:?}")
    };
    assert_eq!((r.from.id, r.user_chat.get()), (h.bob, h.bob.get()));
    assert_eq!(r.query_id, None);
    assert_eq!(u.sequence_key(), h.bob.get());
    assert_eq!(u.kind.name(), "chat_join_request");
    h.finish().await;
}
