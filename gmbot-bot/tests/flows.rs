//! The verification flows end to end: the real Bot API client against the simulated Telegram,
//! a `sqlite::memory:` store and the memory cache; updates are fetched from the simulator
//! with `getUpdates`, converted, and handed to `handlers::handle`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gmbot_bot::app::{App, AppDeps, BotIdentity};
use gmbot_bot::botapi::{convert, ALLOWED_UPDATES};
use gmbot_bot::flows::{self, lift_group, reconcile_once};
use gmbot_bot::handlers;
use gmbot_bot::outbox::OutboxConfig;
use gmbot_bot::sim::{
    AdminRights, Fault, FaultKind, MemberState, Permissions, SimMessage, Simulator,
};
use gmbot_bot::update::{Update, UpdateKind};
use gmbot_bot::{BotApi, BotApiOptions, BotToken};
use gmbot_core::cache::{MemoryCache, MemoryCacheConfig};
use gmbot_core::clock::{Clock, SystemClock};
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::{
    ChannelId, ChannelRef, ChannelUsername, EnforcedChannel, GroupId, GroupSettings, GroupState,
    JoinRequest, JoinRequestState, JournaledUpdate, LiftReason, MessageId, NewJoinRequest,
    NewRestriction, NonMemberAction, Owner, ProtectRequest, ProtectedGroup, Restriction,
    RestrictionId, RestrictionKind, RestrictionState, SeenMember, SettingChange, UnixTime, UserId,
};
use gmbot_core::engine::EngineConfig;
use gmbot_core::store::{self, MigrationMode, Store, StoreResult};
use prometheus::Registry;

// ---------------------------------------------------------------------------------------------
// A store that counts seen-member writes.

struct CountingStore {
    inner: Arc<dyn Store>,
    seen_single: AtomicUsize,
    seen_batches: AtomicUsize,
}

#[async_trait]
impl Store for CountingStore {
    async fn upsert_owner(&self, owner: &Owner) -> StoreResult<()> {
        self.inner.upsert_owner(owner).await
    }
    async fn owner(&self, user: UserId) -> StoreResult<Option<Owner>> {
        self.inner.owner(user).await
    }
    async fn protect(&self, req: &ProtectRequest, at: UnixTime) -> StoreResult<ProtectedGroup> {
        self.inner.protect(req, at).await
    }
    async fn unprotect(&self, group: GroupId, at: UnixTime) -> StoreResult<bool> {
        self.inner.unprotect(group, at).await
    }
    async fn pause(&self, group: GroupId, reason: &str, at: UnixTime) -> StoreResult<bool> {
        self.inner.pause(group, reason, at).await
    }
    async fn resume(&self, group: GroupId, at: UnixTime) -> StoreResult<bool> {
        self.inner.resume(group, at).await
    }
    async fn group(&self, group: GroupId) -> StoreResult<Option<ProtectedGroup>> {
        self.inner.group(group).await
    }
    async fn list_groups(&self) -> StoreResult<Vec<ProtectedGroup>> {
        self.inner.list_groups().await
    }
    async fn link_channel(
        &self,
        group: GroupId,
        channel: &EnforcedChannel,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner.link_channel(group, channel, at).await
    }
    async fn unlink_channel(
        &self,
        group: GroupId,
        channel: &ChannelRef,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner.unlink_channel(group, channel, at).await
    }
    async fn update_channel(&self, channel: &EnforcedChannel) -> StoreResult<bool> {
        self.inner.update_channel(channel).await
    }
    async fn update_settings(
        &self,
        group: GroupId,
        changes: &[SettingChange],
        at: UnixTime,
    ) -> StoreResult<GroupSettings> {
        self.inner.update_settings(group, changes, at).await
    }
    async fn groups_for_channel(&self, channel: ChannelId) -> StoreResult<Vec<GroupId>> {
        self.inner.groups_for_channel(channel).await
    }
    async fn migrate_group(&self, from: GroupId, to: GroupId, at: UnixTime) -> StoreResult<()> {
        self.inner.migrate_group(from, to, at).await
    }
    async fn place_restriction(
        &self,
        new: &NewRestriction,
        at: UnixTime,
    ) -> StoreResult<(Restriction, bool)> {
        self.inner.place_restriction(new, at).await
    }
    async fn confirm_restriction(&self, group: GroupId, id: RestrictionId) -> StoreResult<bool> {
        self.inner.confirm_restriction(group, id).await
    }
    async fn lift_restriction(
        &self,
        group: GroupId,
        id: RestrictionId,
        reason: LiftReason,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner.lift_restriction(group, id, reason, at).await
    }
    async fn lift_member(
        &self,
        group: GroupId,
        user: UserId,
        reason: LiftReason,
        at: UnixTime,
    ) -> StoreResult<Vec<Restriction>> {
        self.inner.lift_member(group, user, reason, at).await
    }
    async fn active_restriction(
        &self,
        group: GroupId,
        user: UserId,
    ) -> StoreResult<Option<Restriction>> {
        self.inner.active_restriction(group, user).await
    }
    async fn active_restrictions(&self, group: GroupId) -> StoreResult<Vec<Restriction>> {
        self.inner.active_restrictions(group).await
    }
    async fn count_active_restrictions(&self, group: GroupId) -> StoreResult<u64> {
        self.inner.count_active_restrictions(group).await
    }
    async fn active_restrictions_for_user(&self, user: UserId) -> StoreResult<Vec<Restriction>> {
        self.inner.active_restrictions_for_user(user).await
    }
    async fn active_restrictions_page(
        &self,
        after: Option<RestrictionId>,
        limit: u32,
    ) -> StoreResult<Vec<Restriction>> {
        self.inner.active_restrictions_page(after, limit).await
    }
    async fn restriction_history(
        &self,
        group: GroupId,
        limit: u32,
    ) -> StoreResult<Vec<Restriction>> {
        self.inner.restriction_history(group, limit).await
    }
    async fn record_seen(&self, group: GroupId, user: UserId, at: UnixTime) -> StoreResult<()> {
        self.seen_single.fetch_add(1, Ordering::SeqCst);
        self.inner.record_seen(group, user, at).await
    }
    async fn seen_members(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<SeenMember>> {
        self.inner.seen_members(group, after, limit).await
    }
    async fn recently_seen(
        &self,
        group: GroupId,
        before: Option<(UnixTime, UserId)>,
        limit: u32,
    ) -> StoreResult<Vec<SeenMember>> {
        self.inner.recently_seen(group, before, limit).await
    }
    async fn count_seen(&self, group: GroupId) -> StoreResult<u64> {
        self.inner.count_seen(group).await
    }
    async fn record_seen_many(&self, rows: &[(GroupId, UserId, UnixTime)]) -> StoreResult<()> {
        self.seen_batches.fetch_add(1, Ordering::SeqCst);
        self.inner.record_seen_many(rows).await
    }
    async fn seen_member(&self, group: GroupId, user: UserId) -> StoreResult<Option<SeenMember>> {
        self.inner.seen_member(group, user).await
    }
    async fn journal_updates(&self, updates: &[JournaledUpdate]) -> StoreResult<()> {
        self.inner.journal_updates(updates).await
    }
    async fn take_journaled_updates(
        &self,
        limit: usize,
        now: UnixTime,
        until: UnixTime,
    ) -> StoreResult<Vec<JournaledUpdate>> {
        self.inner.take_journaled_updates(limit, now, until).await
    }
    async fn journal_held_updates(
        &self,
        updates: &[JournaledUpdate],
        until: UnixTime,
    ) -> StoreResult<Vec<i64>> {
        self.inner.journal_held_updates(updates, until).await
    }
    async fn hold_journaled_updates(&self, update_ids: &[i64], until: UnixTime) -> StoreResult<()> {
        self.inner.hold_journaled_updates(update_ids, until).await
    }
    async fn forget_journaled_updates(&self, update_ids: &[i64]) -> StoreResult<()> {
        self.inner.forget_journaled_updates(update_ids).await
    }
    async fn count_journaled_updates(&self) -> StoreResult<u64> {
        self.inner.count_journaled_updates().await
    }
    async fn record_join_request(&self, new: &NewJoinRequest) -> StoreResult<JoinRequest> {
        self.inner.record_join_request(new).await
    }
    async fn join_request(&self, group: GroupId, user: UserId) -> StoreResult<Option<JoinRequest>> {
        self.inner.join_request(group, user).await
    }
    async fn set_join_request_notice(
        &self,
        group: GroupId,
        user: UserId,
        notice: MessageId,
    ) -> StoreResult<bool> {
        self.inner
            .set_join_request_notice(group, user, notice)
            .await
    }
    async fn decide_join_request(
        &self,
        group: GroupId,
        user: UserId,
        state: JoinRequestState,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner.decide_join_request(group, user, state, at).await
    }
    async fn pending_join_requests(
        &self,
        group: GroupId,
        limit: u32,
    ) -> StoreResult<Vec<JoinRequest>> {
        self.inner.pending_join_requests(group, limit).await
    }
    async fn count_pending_join_requests(&self, group: GroupId) -> StoreResult<u64> {
        self.inner.count_pending_join_requests(group).await
    }
    async fn due_join_requests(&self, now: UnixTime, limit: u32) -> StoreResult<Vec<JoinRequest>> {
        self.inner.due_join_requests(now, limit).await
    }
    async fn purge_join_requests(&self, before: UnixTime) -> StoreResult<u64> {
        self.inner.purge_join_requests(before).await
    }
    async fn start_audit(
        &self,
        new: &gmbot_core::audit::NewAuditRun,
        at: UnixTime,
    ) -> StoreResult<gmbot_core::audit::AuditRun> {
        self.inner.start_audit(new, at).await
    }
    async fn unfinished_audit(
        &self,
        group: GroupId,
    ) -> StoreResult<Option<gmbot_core::audit::AuditRun>> {
        self.inner.unfinished_audit(group).await
    }
    async fn audit_run(
        &self,
        group: GroupId,
        run: gmbot_core::audit::AuditRunId,
    ) -> StoreResult<Option<gmbot_core::audit::AuditRun>> {
        self.inner.audit_run(group, run).await
    }
    async fn audited_members(
        &self,
        group: GroupId,
        run: gmbot_core::audit::AuditRunId,
        users: &[UserId],
    ) -> StoreResult<Vec<UserId>> {
        self.inner.audited_members(group, run, users).await
    }
    async fn record_audit_page(
        &self,
        group: GroupId,
        run: gmbot_core::audit::AuditRunId,
        page: &gmbot_core::audit::AuditPage,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner.record_audit_page(group, run, page, at).await
    }
    async fn record_audit_outcomes(
        &self,
        group: GroupId,
        run: gmbot_core::audit::AuditRunId,
        outcomes: &[gmbot_core::audit::MemberOutcome],
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner
            .record_audit_outcomes(group, run, outcomes, at)
            .await
    }
    async fn end_audit(
        &self,
        group: GroupId,
        run: gmbot_core::audit::AuditRunId,
        state: gmbot_core::audit::AuditState,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner.end_audit(group, run, state, at).await
    }
    async fn audit_counts(
        &self,
        group: GroupId,
        run: gmbot_core::audit::AuditRunId,
    ) -> StoreResult<gmbot_core::audit::AuditCounts> {
        self.inner.audit_counts(group, run).await
    }
    async fn audit_not_subscribed(
        &self,
        group: GroupId,
        run: gmbot_core::audit::AuditRunId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<UserId>> {
        self.inner
            .audit_not_subscribed(group, run, after, limit)
            .await
    }
    async fn mtproto_session(&self, name: &str) -> StoreResult<Option<store::MtprotoSession>> {
        self.inner.mtproto_session(name).await
    }
    async fn save_mtproto_session(
        &self,
        session: &store::MtprotoSession,
        at: UnixTime,
    ) -> StoreResult<()> {
        self.inner.save_mtproto_session(session, at).await
    }
    async fn lease_mtproto_session(
        &self,
        name: &str,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> StoreResult<store::SessionLease> {
        self.inner
            .lease_mtproto_session(name, holder, until, now)
            .await
    }
    async fn release_mtproto_session(&self, name: &str, holder: &str) -> StoreResult<bool> {
        self.inner.release_mtproto_session(name, holder).await
    }
    async fn mtproto_peer(
        &self,
        name: &str,
        peer_id: i64,
    ) -> StoreResult<Option<store::MtprotoPeer>> {
        self.inner.mtproto_peer(name, peer_id).await
    }
    async fn mtproto_self(&self, name: &str) -> StoreResult<Option<store::MtprotoPeer>> {
        self.inner.mtproto_self(name).await
    }
    async fn save_mtproto_peers(
        &self,
        name: &str,
        peers: &[store::MtprotoPeer],
    ) -> StoreResult<()> {
        self.inner.save_mtproto_peers(name, peers).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture.

struct H {
    sim: Simulator,
    poll: BotApi,
    offset: Option<i64>,
    app: App,
    store: Arc<CountingStore>,
    bot: UserId,
    owner: UserId,
    /// In the group and subscribed to the channel.
    alice: UserId,
    /// In the group only; HTML in the name.
    bob: UserId,
    group: GroupId,
    channel: ChannelId,
}

const BOB_FIRST: &str = "<b>Bob</b> & \"Co\"";

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

fn public_channel(id: ChannelId, username: &str, title: &str) -> EnforcedChannel {
    EnforcedChannel {
        id: Some(id),
        username: Some(ChannelUsername::parse(username).expect("username")),
        title: Some(title.to_owned()),
        invite_link: None,
    }
}

async fn harness() -> H {
    harness_with(flows::FlowConfig::default()).await
}

async fn harness_with(flow_config: flows::FlowConfig) -> H {
    harness_with_dispatch(flow_config, |_| {}).await
}

/// The fixture with the dispatcher's budgets changed by `tweak`.
async fn harness_with_dispatch(
    flow_config: flows::FlowConfig,
    tweak: impl FnOnce(&mut DispatchConfig),
) -> H {
    harness_with_outbox(flow_config, tweak, OutboxConfig::default()).await
}

/// The fixture with the outbox's tunables too.
async fn harness_with_outbox(
    flow_config: flows::FlowConfig,
    tweak: impl FnOnce(&mut DispatchConfig),
    outbox: OutboxConfig,
) -> H {
    let sim = Simulator::start().expect("simulator starts");
    let bot = sim.bot().id;
    let owner = sim.add_user("Owner");
    let alice = sim.add_user_with("Alice", Some("A."), Some("alice"));
    let bob = sim.add_user_with(BOB_FIRST, None, None);
    let group = sim.create_supergroup("Test group", owner).expect("group");
    let channel = sim
        .create_channel("News", Some("test_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot joins group");
    sim.add_bot(channel, owner, Some(AdminRights::full()))
        .expect("bot joins channel");
    for (chat, user) in [
        (group.into(), alice),
        (group.into(), bob),
        (channel.into(), alice),
    ] {
        let chat: gmbot_core::domain::ChatId = chat;
        sim.join(chat, user).expect("join");
    }

    let url: store::DatabaseUrl = "sqlite::memory:".parse().expect("url");
    let inner = store::open(&url, MigrationMode::Apply)
        .await
        .expect("in-memory store");
    let store = Arc::new(CountingStore {
        inner,
        seen_single: AtomicUsize::new(0),
        seen_batches: AtomicUsize::new(0),
    });
    let registry = Registry::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let cache = MemoryCache::new(MemoryCacheConfig::default(), clock.clone(), &registry)
        .expect("memory cache");
    let dispatch = DispatchConfig {
        group_per_minute: 10_000,
        group_burst: 1_000,
        global_per_second: 10_000,
        global_burst: 1_000,
        // Retries of 5xx answers stay, but without seconds of backoff in tests.
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..DispatchConfig::default()
    };
    let mut dispatch = dispatch;
    tweak(&mut dispatch);
    let app = App::with_options(
        AppDeps {
            me: BotIdentity {
                id: bot,
                username: "gmbot_test_bot".to_owned(),
            },
            store: store.clone(),
            telegram: Arc::new(client(&sim)),
            cache: Arc::new(cache),
            clock,
            dispatch,
            engine: EngineConfig::default(),
            registry,
        },
        flow_config,
        outbox,
    )
    .expect("app builds");

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
                title: Some("Test group".to_owned()),
                owner: Some(owner),
                channels: vec![public_channel(channel, "test_news", "News")],
            },
            now,
        )
        .await
        .expect("protect");

    let mut h = H {
        poll: client(&sim),
        sim,
        offset: None,
        app,
        store,
        bot,
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

    /// Forgets the updates produced by the setup.
    async fn skip_updates(&mut self) {
        while !self.fetch().await.is_empty() {}
    }

    /// Handles every update until the simulator has none left (handling may produce more).
    async fn pump(&mut self) -> usize {
        self.pump_where(|_| true).await
    }

    /// Like [`H::pump`], dropping the updates `keep` refuses.
    async fn pump_where(&mut self, keep: impl Fn(&Update) -> bool) -> usize {
        let mut n = 0;
        loop {
            // The handlers queued their actions; let the outbox carry them out.
            self.app.outbox().idle().await;
            let updates = self.fetch().await;
            if updates.is_empty() {
                return n;
            }
            for u in updates {
                if keep(&u) {
                    n += 1;
                    handlers::handle(&self.app, u)
                        .await
                        .expect("update handled");
                }
            }
        }
    }

    fn bot_messages(&self, chat: impl Into<gmbot_core::domain::ChatId>) -> Vec<SimMessage> {
        self.sim
            .messages(chat)
            .into_iter()
            .filter(|m| m.from == Some(self.bot))
            .collect()
    }

    fn warnings(&self, group: GroupId) -> Vec<SimMessage> {
        self.bot_messages(group)
            .into_iter()
            .filter(|m| !m.buttons.is_empty())
            .collect()
    }

    fn calls(&self, method: &str, chat: i64) -> usize {
        self.sim
            .calls_to(method)
            .iter()
            .filter(|c| c.int("chat_id") == Some(chat))
            .count()
    }

    async fn active(&self, group: GroupId, user: UserId) -> Option<Restriction> {
        self.store
            .active_restriction(group, user)
            .await
            .expect("store read")
    }

    async fn set(&self, group: GroupId, change: SettingChange) {
        self.store
            .update_settings(group, &[change], self.app.clock().unix_now())
            .await
            .expect("settings");
        self.app.engine().invalidate_group(group).await;
    }

    /// A second protected supergroup linked to the same channel, with `members` in it.
    async fn second_group(&mut self, members: &[UserId]) -> GroupId {
        let g = self
            .sim
            .create_supergroup("Second group", self.owner)
            .expect("group");
        self.sim
            .add_bot(g, self.owner, Some(AdminRights::moderator()))
            .expect("bot joins");
        for &m in members {
            self.sim.join(g, m).expect("join");
        }
        self.store
            .protect(
                &ProtectRequest {
                    group: g,
                    title: Some("Second group".to_owned()),
                    owner: Some(self.owner),
                    channels: vec![public_channel(self.channel, "test_news", "News")],
                },
                self.app.clock().unix_now(),
            )
            .await
            .expect("protect");
        self.skip_updates().await;
        g
    }

    async fn finish(self) {
        self.app.shutdown().await;
    }
}

fn data_of(m: &SimMessage) -> Vec<String> {
    m.buttons
        .iter()
        .flatten()
        .filter_map(|b| b.callback_data.clone())
        .collect()
}

fn urls_of(m: &SimMessage) -> Vec<String> {
    m.buttons
        .iter()
        .flatten()
        .filter_map(|b| b.url.clone())
        .collect()
}

fn is_muted(state: MemberState) -> bool {
    matches!(state, MemberState::Restricted { permissions, .. } if !permissions.can_send_messages)
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_member_is_allowed() {
    let mut h = harness().await;
    let id = h.sim.post(h.group, h.alice, "hello").expect("alice posts");
    assert_eq!(h.pump().await, 1);
    assert_eq!(h.calls("deleteMessage", h.group.get()), 0);
    assert_eq!(h.sim.calls_to("restrictChatMember").len(), 0);
    assert!(h.warnings(h.group).is_empty());
    assert!(!h.sim.message(h.group, id).expect("message").deleted);
    assert!(h.sim.can_post(h.group, h.alice));
    assert_eq!(h.active(h.group, h.alice).await, None);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_subscriber_is_deleted_muted_and_warned_with_escaped_name_and_buttons() {
    let mut h = harness().await;
    let id = h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;

    assert!(
        h.sim.message(h.group, id).expect("message").deleted,
        "deleted"
    );
    assert!(is_muted(h.sim.member(h.group, h.bob)), "muted in Telegram");
    assert!(!h.sim.can_post(h.group, h.bob));
    let row = h
        .active(h.group, h.bob)
        .await
        .expect("restriction recorded");
    assert_eq!(
        row.state,
        RestrictionState::Active,
        "confirmed after the call"
    );
    assert_eq!(row.kind, RestrictionKind::Mute);

    let warnings = h.warnings(h.group);
    assert_eq!(warnings.len(), 1, "one warning");
    let w = &warnings[0];
    let html = w.html.as_deref().expect("sent as HTML");
    assert!(
        html.contains("&lt;b&gt;Bob&lt;/b&gt; &amp; &quot;Co&quot;"),
        "name escaped: {html}"
    );
    assert!(!html.contains("<b>Bob</b>"), "no raw markup from the name");
    assert!(
        w.text.contains(BOB_FIRST),
        "readers see the name as typed: {}",
        w.text
    );
    assert_eq!(urls_of(w), vec!["https://t.me/test_news".to_owned()]);
    assert_eq!(data_of(w), vec![format!("j:{}", h.bob.get())]);
    assert_eq!(h.app.flows().timers().scheduled(), 1, "deletion scheduled");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_warning_per_member_per_cooldown() {
    let mut h = harness().await;
    // Delete-only keeps Bob able to write, so he is denied again and again.
    h.set(h.group, SettingChange::Action(NonMemberAction::DeleteOnly))
        .await;
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("join");
    h.skip_updates().await;
    for i in 0..4 {
        h.sim
            .post(h.group, h.bob, &format!("bob {i}"))
            .expect("post");
        h.sim
            .post(h.group, carol, &format!("carol {i}"))
            .expect("post");
    }
    h.pump().await;
    let left: Vec<String> = h
        .sim
        .messages(h.group)
        .into_iter()
        .filter(|m| (m.text.starts_with("bob") || m.text.starts_with("carol")) && !m.deleted)
        .map(|m| m.text)
        .collect();
    assert!(left.is_empty(), "every message deleted, left: {left:?}");
    assert!(
        h.calls("deleteMessage", h.group.get()) + h.calls("deleteMessages", h.group.get()) < 8,
        "deletions waiting together went out in bulk"
    );
    assert_eq!(h.sim.calls_to("restrictChatMember").len(), 0, "delete-only");
    // Bob's personal warning was shown when Carol was denied: it became one warning for both.
    let warnings = h.warnings(h.group);
    assert_eq!(warnings.len(), 1, "one warning message in the group");
    assert_eq!(data_of(&warnings[0]), vec!["j:any".to_owned()]);
    assert!(
        warnings[0].text.contains("2 members")
            && warnings[0].text.contains("Bob")
            && warnings[0].text.contains("Carol"),
        "{}",
        warnings[0].text
    );
    assert_eq!(
        h.sim.calls_to("sendMessage").len(),
        1,
        "one warning per member, together"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_join_unmutes_in_every_linked_group() {
    let mut h = harness().await;
    let second = h.second_group(&[h.bob]).await;
    h.sim.post(h.group, h.bob, "one").expect("post");
    h.sim.post(second, h.bob, "two").expect("post");
    h.pump().await;
    assert!(!h.sim.can_post(h.group, h.bob) && !h.sim.can_post(second, h.bob));
    assert_eq!(h.warnings(h.group).len() + h.warnings(second).len(), 2);

    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    h.pump().await;
    for g in [h.group, second] {
        assert!(h.sim.can_post(g, h.bob), "unmuted in {g}");
        assert_eq!(h.active(g, h.bob).await, None, "lifted in the store");
        assert!(
            h.warnings(g).iter().all(|w| w.deleted),
            "warning deleted in {g}"
        );
    }
    let history = h
        .store
        .restriction_history(h.group, 10)
        .await
        .expect("history");
    assert_eq!(history[0].lift_reason, Some(LiftReason::Joined));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_button_works_for_the_member_only() {
    // Presses follow each other at once here; the cool-down has its own test.
    let mut h = harness_with(flows::FlowConfig {
        recheck_cooldown: Duration::ZERO,
        ..flows::FlowConfig::default()
    })
    .await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    let w = h.warnings(h.group).remove(0);
    let data = format!("j:{}", h.bob.get());

    // Someone else: no re-check.
    let before = h.sim.calls_to("getChatMember").len();
    let cq = h
        .sim
        .press_button(h.group, w.id, h.alice, &data)
        .expect("alice presses");
    h.pump().await;
    let answer = h.sim.callback_answer(&cq).expect("answered");
    assert_eq!(answer.text.as_deref(), Some("This button is not for you."));
    assert_eq!(h.sim.calls_to("getChatMember").len(), before, "no re-check");

    // The member, not subscribed yet: an alert naming the channel.
    let cq = h
        .sim
        .press_button(h.group, w.id, h.bob, &data)
        .expect("bob presses");
    h.pump().await;
    let answer = h.sim.callback_answer(&cq).expect("answered");
    assert!(answer.show_alert);
    assert!(
        answer.text.as_deref().is_some_and(|t| t.contains("News")),
        "{answer:?}"
    );
    assert!(!h.sim.can_post(h.group, h.bob));

    // Subscribes (the channel update is not delivered: the button alone must do it).
    h.sim.join(h.channel, h.bob).expect("subscribe");
    let cq = h
        .sim
        .press_button(h.group, w.id, h.bob, &data)
        .expect("bob presses");
    h.pump_where(|u| !matches!(u.kind, UpdateKind::ChatMember(_)))
        .await;
    let answer = h.sim.callback_answer(&cq).expect("answered");
    assert_eq!(answer.text.as_deref(), Some("Welcome! You can write now."));
    assert!(h.sim.can_post(h.group, h.bob), "unmuted");
    assert!(
        h.sim.message(h.group, w.id).expect("warning").deleted,
        "warning deleted"
    );
    assert_eq!(h.active(h.group, h.bob).await, None);
    // The group's defaults are restored, not "everything allowed".
    let unrestrict = h.sim.calls_to("restrictChatMember");
    let last = unrestrict.last().expect("unrestrict call");
    assert_eq!(last.int("user_id"), Some(h.bob.get()));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_callback_data_is_answered_and_changes_nothing() {
    let mut h = harness().await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    let alice_msg = h.sim.post(h.group, h.alice, "a message").expect("post");
    h.pump().await;
    let w = h.warnings(h.group).remove(0);
    h.sim.join(h.channel, h.bob).expect("subscribe");
    h.skip_updates().await;
    let restricts = h.sim.calls_to("restrictChatMember").len();

    for data in [
        "j:abc".to_owned(),
        "j:-5".to_owned(),
        "j:".to_owned(),
        "zzz".to_owned(),
        "j:99999999999999999999999".to_owned(),
        format!("j:{} ", h.bob.get()),
    ] {
        let cq = h
            .sim
            .send_callback(h.group, w.id, h.bob, &data)
            .expect("callback");
        h.pump().await;
        let answer = h.sim.callback_answer(&cq).expect("answered");
        assert_eq!(
            answer.text.as_deref(),
            Some("This button is no longer valid."),
            "{data:?}"
        );
    }
    assert_eq!(h.sim.calls_to("restrictChatMember").len(), restricts);
    assert!(!h.sim.can_post(h.group, h.bob));

    // Bob's own data on Alice's message: Bob is re-checked and unmuted, Alice's message stays.
    let cq = h
        .sim
        .send_callback(h.group, alice_msg, h.bob, &format!("j:{}", h.bob.get()))
        .expect("callback");
    h.pump().await;
    assert_eq!(
        h.sim.callback_answer(&cq).and_then(|a| a.text).as_deref(),
        Some("Welcome! You can write now.")
    );
    assert!(!h.sim.message(h.group, alice_msg).expect("msg").deleted);
    h.finish().await;
}

/// Shared claims with Redis unreachable: every claim is decided in process, as on one
/// instance — the member is warned (never a missing warning), once per cool-down, and no
/// verification waits long for Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_claims_fall_back_to_the_in_process_cooldown_when_redis_is_down() {
    use gmbot_core::coordination::{RedisCoordination, RedisCoordinationConfig};
    let mut h = harness().await;
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let dead = Arc::new(
        RedisCoordination::open(RedisCoordinationConfig::new(format!(
            "redis://127.0.0.1:{port}"
        )))
        .expect("valid URL"),
    );
    let shared = flows::Shared::new(
        dead.clone(),
        dead.clone(),
        dead,
        Duration::from_secs(15),
        h.app.registry(),
    )
    .expect("metrics register");
    assert!(h.app.flows().share(shared));
    h.set(h.group, SettingChange::Action(NonMemberAction::DeleteOnly))
        .await;
    h.skip_updates().await;
    let started = std::time::Instant::now();
    for i in 0..3 {
        h.sim
            .post(h.group, h.bob, &format!("bob {i}"))
            .expect("post");
    }
    h.pump().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "handling did not wait on Redis: {:?}",
        started.elapsed()
    );
    assert_eq!(
        h.warnings(h.group).len(),
        1,
        "warned once, by this instance"
    );
    let unavailable = h
        .app
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == "gmbot_shared_claims_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "result" && l.value() == "unavailable")
        })
        .map(|m| m.get_counter().get_value())
        .sum::<f64>();
    assert!(unavailable >= 3.0, "every claim fell back: {unavailable}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_join_mutes_and_warns_before_they_write_once() {
    let mut h = harness().await;
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("carol joins");
    let handled = h.pump().await;
    assert!(
        handled >= 2,
        "service message and chat_member both delivered ({handled})"
    );
    assert!(is_muted(h.sim.member(h.group, carol)));
    let restricts: Vec<_> = h
        .sim
        .calls_to("restrictChatMember")
        .into_iter()
        .filter(|c| c.int("user_id") == Some(carol.get()))
        .collect();
    assert_eq!(restricts.len(), 1, "handled once");
    assert_eq!(h.warnings(h.group).len(), 1);

    // With the setting off, a newcomer is left alone until they write.
    h.set(h.group, SettingChange::CheckOnJoin(false)).await;
    let dave = h.sim.add_user("Dave");
    h.sim.join(h.group, dave).expect("dave joins");
    h.pump().await;
    assert!(h.sim.can_post(h.group, dave));
    assert_eq!(h.warnings(h.group).len(), 1);

    // A subscribed newcomer is let in.
    h.set(h.group, SettingChange::CheckOnJoin(true)).await;
    let erin = h.sim.add_user("Erin");
    h.sim.join(h.channel, erin).expect("subscribe");
    h.sim.join(h.group, erin).expect("erin joins");
    h.pump().await;
    assert!(h.sim.can_post(h.group, erin));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_leave_mutes_members_seen_writing() {
    let mut h = harness().await;
    let quiet = h.sim.add_user("Quiet");
    h.sim.join(h.group, quiet).expect("join");
    h.sim.join(h.channel, quiet).expect("subscribe");
    h.sim.post(h.group, h.alice, "hi").expect("post");
    h.pump().await;
    assert!(h.sim.can_post(h.group, h.alice));

    h.sim.leave(h.channel, h.alice).expect("alice leaves");
    h.sim.leave(h.channel, quiet).expect("quiet leaves");
    h.pump().await;
    assert!(
        is_muted(h.sim.member(h.group, h.alice)),
        "seen: muted at once"
    );
    assert!(h.active(h.group, h.alice).await.is_some());
    let w = h.warnings(h.group);
    assert_eq!(w.len(), 1);
    assert_eq!(data_of(&w[0]), vec![format!("j:{}", h.alice.get())]);
    assert!(h.sim.can_post(h.group, quiet), "never seen: left alone");

    // Rejoining lifts it again.
    h.sim.join(h.channel, h.alice).expect("rejoin");
    h.pump().await;
    assert!(h.sim.can_post(h.group, h.alice));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_demoted_pauses_and_tells_the_owner_then_resumes() {
    let mut h = harness().await;
    h.sim
        .start_bot(h.owner)
        .expect("owner opens the private chat");
    h.skip_updates().await;

    h.sim
        .set_bot_rights(h.group, h.owner, Some(AdminRights::bare()))
        .expect("demote");
    h.pump().await;
    let g = h.store.group(h.group).await.expect("read").expect("group");
    assert_eq!(g.state, GroupState::Paused);
    assert!(g.paused_reason.is_some());
    let told = h.owner_told().await;
    assert_eq!(told.len(), 1, "owner told");
    assert!(told[0].text.contains("paused"), "{}", told[0].text);

    // Paused: nothing enforced.
    h.sim.post(h.group, h.bob, "free").expect("post");
    h.pump().await;
    assert_eq!(h.calls("deleteMessage", h.group.get()), 0);

    h.sim
        .set_bot_rights(h.group, h.owner, Some(AdminRights::moderator()))
        .expect("promote back");
    h.pump().await;
    let g = h.store.group(h.group).await.expect("read").expect("group");
    assert_eq!(g.state, GroupState::Active);
    let told = h.owner_told().await;
    assert_eq!(told.len(), 2);
    assert!(told[1].text.contains("resumed"), "{}", told[1].text);

    // Losing the channel pauses too.
    h.sim
        .remove_bot(h.channel, h.owner)
        .expect("removed from channel");
    h.pump().await;
    let g = h.store.group(h.group).await.expect("read").expect("group");
    assert_eq!(g.state, GroupState::Paused);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_to_a_supergroup_keeps_the_protection() {
    let mut h = harness().await;
    let basic = h.sim.create_basic_group("Basic", h.owner).expect("group");
    h.sim
        .add_bot(basic, h.owner, Some(AdminRights::moderator()))
        .expect("bot");
    h.sim.join(basic, h.bob).expect("join");
    h.store
        .protect(
            &ProtectRequest {
                group: basic,
                title: Some("Basic".to_owned()),
                owner: Some(h.owner),
                channels: vec![public_channel(h.channel, "test_news", "News")],
            },
            h.app.clock().unix_now(),
        )
        .await
        .expect("protect");
    h.skip_updates().await;

    let sup = h.sim.migrate_to_supergroup(basic).expect("migrate");
    h.pump().await;
    assert!(h.store.group(basic).await.expect("read").is_none());
    let g = h.store.group(sup).await.expect("read").expect("moved");
    assert_eq!(g.state, GroupState::Active);
    assert_eq!(g.channels.len(), 1);

    h.sim.post(sup, h.bob, "hi").expect("post");
    h.pump().await;
    assert!(
        is_muted(h.sim.member(sup, h.bob)),
        "enforced in the new supergroup"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lift_group_leaves_nobody_muted() {
    let mut h = harness().await;
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("join");
    h.pump().await; // check on join mutes Carol
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    assert!(!h.sim.can_post(h.group, h.bob) && !h.sim.can_post(h.group, carol));

    h.store
        .unprotect(h.group, h.app.clock().unix_now())
        .await
        .expect("unprotect");
    let summary = lift_group(&h.app, h.group, LiftReason::Unprotected)
        .await
        .expect("lift");
    assert_eq!(
        summary,
        flows::LiftSummary {
            lifted: 2,
            failed: 0
        }
    );
    assert!(h.sim.can_post(h.group, h.bob) && h.sim.can_post(h.group, carol));
    assert!(h
        .store
        .active_restrictions(h.group)
        .await
        .expect("read")
        .is_empty());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lift_group_keeps_rows_whose_unmute_failed() {
    let mut h = harness().await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    h.sim
        .set_bot_rights(h.group, h.owner, Some(AdminRights::bare()))
        .expect("demote");
    h.skip_updates().await;
    let summary = lift_group(&h.app, h.group, LiftReason::Unprotected)
        .await
        .expect("lift");
    assert_eq!(
        summary,
        flows::LiftSummary {
            lifted: 0,
            failed: 1
        }
    );
    assert!(
        h.active(h.group, h.bob).await.is_some(),
        "kept for reconciliation"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_that_outlasts_the_retries_stays_pending_and_a_refused_one_is_closed() {
    let mut h = harness().await;
    // Telegram answers 502 to every restriction: the dispatcher's retries run out.
    h.sim
        .inject(Fault::on("restrictChatMember", FaultKind::ServerError(502)).always());
    h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;
    assert!(
        h.sim.can_post(h.group, h.bob),
        "not muted: every call failed"
    );
    let row = h
        .active(h.group, h.bob)
        .await
        .expect("kept for reconciliation");
    assert_eq!(row.state, RestrictionState::Pending);

    // A refusal (400) is an answer about the mute itself: the row is closed.
    h.sim.clear_faults();
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("join");
    h.skip_updates().await;
    h.sim.inject(
        Fault::on(
            "restrictChatMember",
            FaultKind::Error {
                code: 400,
                description: "Bad Request: user is an administrator of the chat".into(),
            },
        )
        .always(),
    );
    h.sim.post(h.group, carol, "spam").expect("carol posts");
    h.pump().await;
    assert!(
        h.active(h.group, carol).await.is_none(),
        "closed as not applied"
    );
    h.sim.clear_faults();
    h.finish().await;
}

/// Polls `done` every 20 ms for up to `within`.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Telegram answers `kind` to every deletion and restriction until the faults are cleared.
fn storm(h: &H, kind: FaultKind) {
    for method in ["deleteMessage", "deleteMessages", "restrictChatMember"] {
        h.sim.inject(Fault::on(method, kind.clone()).always());
    }
}

/// A counter of the bot's by its label.
fn counted(
    h: &H,
    counter: fn(&gmbot_bot::metrics::BotMetrics) -> &prometheus::IntCounterVec,
    label: &str,
) -> u64 {
    counter(h.app.metrics()).with_label_values(&[label]).get()
}

/// The retries after a storm, at test speed: 100 ms, then twice as long each time.
fn quick_retries(attempts: u32) -> OutboxConfig {
    OutboxConfig {
        retry_first: Duration::from_millis(100),
        retry_attempts: attempts,
        ..OutboxConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_that_outlasts_the_retries_is_waited_out_and_then_enforced() {
    let mut h = harness_with_outbox(flows::FlowConfig::default(), |_| {}, quick_retries(10)).await;
    // Telegram answers 502 to every deletion and restriction, longer than the dispatcher's
    // own retries last; a raid's bulk deletion included.
    storm(&h, FaultKind::ServerError(502));
    let spam = h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;
    let retried = |h: &H, kind: &str| counted(h, |m| &m.outbox_retries, kind);
    assert!(
        eventually(Duration::from_secs(5), || retried(&h, "delete") >= 2
            && retried(&h, "restrict") >= 2)
        .await,
        "the deletion and the mute are tried again while the storm lasts"
    );
    assert!(!h.sim.message(h.group, spam).expect("message").deleted);
    assert!(h.sim.can_post(h.group, h.bob), "not muted yet");
    let row = h.active(h.group, h.bob).await.expect("the mute waits");
    assert_eq!(row.state, RestrictionState::Pending);
    // Reconciliation leaves a mute the outbox still retries to it.
    let report = reconcile_once(&h.app).await;
    assert_eq!(report.reapplied, 0, "{report:?}");

    // The storm ends: the next retry deletes the message and mutes the member.
    h.sim.clear_faults();
    assert!(
        eventually(Duration::from_secs(10), || h
            .sim
            .message(h.group, spam)
            .is_some_and(|m| m.deleted)
            && !h.sim.can_post(h.group, h.bob))
        .await,
        "deleted and muted once Telegram answers again"
    );
    assert!(
        eventually(Duration::from_secs(5), || h.app.outbox().retries_waiting()
            == 0)
        .await
    );
    let row = h.active(h.group, h.bob).await.expect("muted");
    assert_eq!(row.state, RestrictionState::Active, "confirmed");
    for kind in ["delete", "restrict"] {
        assert_eq!(counted(&h, |m| &m.outbox_given_up, kind), 0);
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_subscribes_during_the_storm_is_not_muted_by_the_retry() {
    let mut h = harness_with_outbox(flows::FlowConfig::default(), |_| {}, quick_retries(10)).await;
    // Every restriction fails, the unmute of the lift included (it is a restriction too).
    h.sim
        .inject(Fault::on("restrictChatMember", FaultKind::ServerError(502)).always());
    h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;
    assert!(h.active(h.group, h.bob).await.is_some(), "the mute waits");
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    // The lift fails too (the storm); the mute's next retry asks Telegram afresh, finds bob
    // subscribed and drops itself instead of waiting out the storm to mute him.
    h.pump().await;
    assert!(
        eventually(Duration::from_secs(10), || h.app.outbox().retries_waiting()
            == 0)
        .await,
        "the retry dropped itself"
    );
    h.app.outbox().idle().await;
    h.sim.clear_faults();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    h.app.outbox().idle().await;
    assert!(h.sim.can_post(h.group, h.bob), "never muted");
    assert_eq!(h.app.outbox().retries_waiting(), 0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_let_through_while_telegram_could_not_answer_is_looked_at_again() {
    let mut h = harness().await;
    // Membership reads fail past the dispatcher's retries: the open policy lets both write.
    h.sim
        .inject(Fault::on("getChatMember", FaultKind::ServerError(502)).always());
    let spam = h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    let hello = h.sim.post(h.group, h.alice, "hello").expect("alice posts");
    h.pump().await;
    assert!(!h.sim.message(h.group, spam).expect("message").deleted);
    assert!(h.sim.can_post(h.group, h.bob), "let through for now");
    let looks = |h: &H, outcome: &str| counted(h, |m| &m.second_looks, outcome);
    assert_eq!(looks(&h, "scheduled"), 2);
    // Telegram answers again: the second look deletes bob's message and mutes him, and
    // leaves alice's (she is subscribed).
    h.sim.clear_faults();
    assert!(
        eventually(Duration::from_secs(10), || h
            .sim
            .message(h.group, spam)
            .is_some_and(|m| m.deleted)
            && !h.sim.can_post(h.group, h.bob))
        .await,
        "denied on the second look"
    );
    assert!(
        eventually(Duration::from_secs(5), || looks(&h, "denied") == 1
            && looks(&h, "allowed") == 1)
        .await
    );
    h.app.outbox().idle().await;
    assert!(!h.sim.message(h.group, hello).expect("message").deleted);
    assert!(h.sim.can_post(h.group, h.alice));
    assert!(
        h.active(h.group, h.bob).await.is_some(),
        "muted in the store"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_let_in_while_telegram_could_not_answer_is_looked_at_again() {
    let mut h = harness().await;
    h.sim
        .inject(Fault::on("getChatMember", FaultKind::ServerError(502)).always());
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("carol joins");
    h.pump().await;
    assert!(h.sim.can_post(h.group, carol), "let in for now");
    h.sim.clear_faults();
    assert!(
        eventually(Duration::from_secs(10), || !h.sim.can_post(h.group, carol)).await,
        "muted on the second look"
    );
    h.app.outbox().idle().await;
    assert!(h.active(h.group, carol).await.is_some());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_after_their_last_attempt_and_the_mute_stays_for_reconciliation() {
    let mut h = harness_with_outbox(flows::FlowConfig::default(), |_| {}, quick_retries(2)).await;
    storm(&h, FaultKind::RetryAfter(0));
    let spam = h.sim.post(h.group, h.bob, "spam").expect("bob posts");
    h.pump().await;
    let given_up = |h: &H, kind: &str| counted(h, |m| &m.outbox_given_up, kind);
    assert!(
        eventually(Duration::from_secs(10), || given_up(&h, "delete") == 1
            && given_up(&h, "restrict") == 1)
        .await,
        "given up after two retries each"
    );
    for kind in ["delete", "restrict"] {
        assert_eq!(counted(&h, |m| &m.outbox_retries, kind), 2, "{kind}");
    }
    assert_eq!(h.app.outbox().retries_waiting(), 0);
    assert!(!h.sim.message(h.group, spam).expect("message").deleted);
    let row = h
        .active(h.group, h.bob)
        .await
        .expect("kept for reconciliation");
    assert_eq!(row.state, RestrictionState::Pending);
    h.sim.clear_faults();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_repairs_crashes_and_lifts_expired_and_unprotected() {
    let mut h = harness().await;
    let now = h.app.clock().unix_now();
    let old = UnixTime(now.secs() - 120);
    let carol = h.sim.add_user("Carol");
    let dave = h.sim.add_user("Dave");
    let erin = h.sim.add_user("Erin");
    for u in [carol, dave, erin] {
        h.sim.join(h.group, u).expect("join");
    }
    h.sim.join(h.channel, dave).expect("dave subscribed");
    h.skip_updates().await;
    let record = |user, until, at| {
        let store = h.store.clone();
        let group = h.group;
        async move {
            store
                .record_restriction(
                    &NewRestriction {
                        group,
                        user,
                        kind: RestrictionKind::Mute,
                        until,
                        reason: "test".to_owned(),
                    },
                    at,
                )
                .await
                .expect("record")
        }
    };
    // Crash between record and call: pending, nothing in Telegram.
    let bob_row = record(h.bob, None, old).await; // not subscribed: must end up muted
    let alice_row = record(h.alice, None, old).await; // subscribed: lifted
                                                      // Call done, confirmation lost: pending, restricted in Telegram, and subscribed since.
    let dave_row = record(dave, None, old).await;
    h.app
        .telegram()
        .restrict_member(h.group, dave, None)
        .await
        .expect("restrict");
    // Too fresh to touch.
    let erin_row = record(erin, None, now).await;
    // Expired.
    let carol_row = record(carol, Some(UnixTime(now.secs() - 10)), old).await;

    // A restriction in a group no longer protected.
    let second = h.second_group(&[h.bob]).await;
    h.app
        .telegram()
        .restrict_member(second, h.bob, None)
        .await
        .expect("restrict");
    let second_row = h
        .store
        .record_restriction(
            &NewRestriction {
                group: second,
                user: h.bob,
                kind: RestrictionKind::Mute,
                until: None,
                reason: "test".to_owned(),
            },
            old,
        )
        .await
        .expect("record");
    h.store
        .confirm_restriction(second, second_row.id)
        .await
        .expect("confirm");
    h.store.unprotect(second, now).await.expect("unprotect");

    let report = reconcile_once(&h.app).await;
    assert_eq!(report.checked, 6, "{report:?}");
    assert_eq!(report.lifted_joined, 2, "{report:?}");
    assert_eq!(report.lifted_expired, 1, "{report:?}");
    assert_eq!(report.lifted_unprotected, 1, "{report:?}");
    assert_eq!(report.reapplied, 1, "{report:?}");
    assert_eq!(report.kept, 1, "{report:?}");
    assert!(!report.aborted);

    let state = |g, u| {
        let store = h.store.clone();
        async move {
            store
                .active_restriction(g, u)
                .await
                .expect("read")
                .map(|r| (r.id, r.state))
        }
    };
    assert_eq!(
        state(h.group, h.bob).await,
        Some((bob_row.id, RestrictionState::Active))
    );
    assert!(
        is_muted(h.sim.member(h.group, h.bob)),
        "bob muted after the repair"
    );
    assert_eq!(state(h.group, h.alice).await, None);
    assert!(h.sim.can_post(h.group, h.alice));
    assert_eq!(state(h.group, dave).await, None);
    assert!(h.sim.can_post(h.group, dave), "dave unmuted");
    assert_eq!(
        state(h.group, erin).await,
        Some((erin_row.id, RestrictionState::Pending))
    );
    assert_eq!(state(h.group, carol).await, None);
    assert_eq!(state(second, h.bob).await, None);
    assert!(h.sim.can_post(second, h.bob), "unprotected group: unmuted");
    let _ = (alice_row, dave_row, carol_row);

    let lifts = |reason: &str| {
        h.app
            .metrics()
            .reconciliation_lifts
            .with_label_values(&[reason])
            .get()
    };
    assert_eq!(
        (lifts("joined"), lifts("expired"), lifts("unprotected")),
        (2, 1, 1)
    );
    assert_eq!(h.app.metrics().active_restrictions.get(), 2);
    assert_eq!(h.app.metrics().reconciliation_backlog.get(), 0);

    // A second pass changes nothing.
    let again = reconcile_once(&h.app).await;
    assert_eq!((again.checked, again.lifted()), (2, 0), "{again:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_members_are_written_in_batches() {
    let mut h = harness().await;
    let mut users = vec![h.alice];
    for i in 0..4 {
        let u = h.sim.add_user(&format!("Member {i}"));
        h.sim.join(h.group, u).expect("join");
        h.sim.join(h.channel, u).expect("subscribe");
        users.push(u);
    }
    h.skip_updates().await;
    const PER_USER: usize = 40;
    for i in 0..PER_USER {
        for &u in &users {
            h.sim.post(h.group, u, &format!("m{i}")).expect("post");
        }
    }
    let handled = h.pump().await;
    assert_eq!(handled, PER_USER * users.len());
    h.app.flows().seen().flush().await.expect("flush");
    let batches = h.store.seen_batches.load(Ordering::SeqCst);
    let singles = h.store.seen_single.load(Ordering::SeqCst);
    assert_eq!(singles, 0, "never one write per message");
    assert!(
        (1..=20).contains(&batches),
        "{handled} messages written in {batches} batches"
    );
    assert_eq!(
        h.store.count_seen(h.group).await.expect("count"),
        users.len() as u64
    );
    for &u in &users {
        assert!(h
            .store
            .seen_member(h.group, u)
            .await
            .expect("read")
            .is_some());
    }
    println!("seen members: {handled} messages, {batches} store writes");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverifiable_and_unlinked_channels_are_reported_to_admins_once() {
    let mut h = harness().await;
    // A private channel the bot administers but has no invite link for, and one it is not in.
    let private = h
        .sim
        .create_channel("Secret", None, h.owner)
        .expect("channel");
    h.sim
        .add_bot(private, h.owner, Some(AdminRights::full()))
        .expect("bot");
    let foreign = h
        .sim
        .create_channel("Foreign", Some("foreign_news"), h.owner)
        .expect("channel");
    let now = h.app.clock().unix_now();
    for c in [
        EnforcedChannel {
            id: Some(private),
            username: None,
            title: Some("Secret".to_owned()),
            invite_link: None,
        },
        public_channel(foreign, "foreign_news", "Foreign"),
    ] {
        h.store.link_channel(h.group, &c, now).await.expect("link");
    }
    h.app.engine().invalidate_group(h.group).await;
    h.skip_updates().await;

    h.sim.post(h.group, h.bob, "one").expect("post");
    h.pump().await;
    let notices: Vec<String> = h
        .bot_messages(h.group)
        .into_iter()
        .filter(|m| m.buttons.is_empty())
        .map(|m| m.text)
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices
        .iter()
        .any(|t| t.contains("Foreign") && t.contains("administrator")));
    assert!(notices
        .iter()
        .any(|t| t.contains("Secret") && t.contains("invite link")));
    let w = h.warnings(h.group).remove(0);
    assert!(w.text.contains("Secret"));
    assert_eq!(
        urls_of(&w),
        vec!["https://t.me/test_news".to_owned()],
        "no Join button without a link, and none exported"
    );
    assert!(
        h.sim.invite_links(private).is_empty(),
        "no link exported per warning"
    );

    // The same problems again: no new notice.
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("join");
    h.pump().await;
    h.sim.post(h.group, carol, "two").ok();
    h.pump().await;
    let notices = h
        .bot_messages(h.group)
        .into_iter()
        .filter(|m| m.buttons.is_empty())
        .count();
    assert_eq!(notices, 2, "told once");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_task_runs_at_start_and_stops() {
    let mut h = harness().await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    h.store
        .unprotect(h.group, h.app.clock().unix_now())
        .await
        .expect("unprotect");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let guard = flows::spawn_reconciler(h.app.clone(), Duration::from_secs(3600), async {
        let _ = rx.await;
    });
    // Bounded wait for the first pass (it runs at start).
    let mut lifted = false;
    for _ in 0..200 {
        if h.active(h.group, h.bob).await.is_none() {
            lifted = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lifted, "the first pass ran at start");
    assert!(h.sim.can_post(h.group, h.bob));
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), guard.stop())
        .await
        .expect("the reconciler stops");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_as_a_foreign_channel_is_deleted_and_the_channel_banned() {
    let mut h = harness().await;
    // Bob owns a channel of his own and posts in the group on its behalf.
    let own = h
        .sim
        .create_channel("Bob's channel", Some("bobs_channel"), h.bob)
        .expect("channel");
    h.skip_updates().await;
    let id = h
        .sim
        .post_as_channel(h.group, own, h.bob, "buy now")
        .expect("bob posts as his channel");
    h.pump().await;

    assert!(
        h.sim.message(h.group, id).expect("message").deleted,
        "the post is deleted"
    );
    // The ban is sent in the background (the handler does not wait for it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !h.sim.sender_chat_banned(h.group, own) {
        assert!(std::time::Instant::now() < deadline, "channel banned");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let bans = h.sim.calls_to("banChatSenderChat");
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].int("sender_chat_id"), Some(own.get()));
    // The placeholder sender (Channel_Bot) is shared: nobody is restricted.
    assert_eq!(h.sim.calls_to("restrictChatMember").len(), 0);
    assert!(h.sim.can_post(h.group, h.bob), "Bob himself is not muted");
    assert_eq!(h.active(h.group, UserId::CHANNEL_BOT).await, None);
    // One short warning: post as yourself after joining, with the Join link, no
    // "I've joined" button bound to the placeholder.
    let warnings: Vec<SimMessage> = h
        .bot_messages(h.group)
        .into_iter()
        .filter(|m| m.text.contains("on behalf of a channel"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", h.bot_messages(h.group));
    assert!(
        warnings[0].text.contains("post as yourself"),
        "{}",
        warnings[0].text
    );
    assert_eq!(
        urls_of(&warnings[0]),
        vec!["https://t.me/test_news".to_owned()]
    );
    assert!(data_of(&warnings[0]).is_empty());
    // Telegram now refuses further posts as that channel.
    assert!(h.sim.post_as_channel(h.group, own, h.bob, "again").is_err());

    // Posting as the group's own enforced channel stays.
    let ok = h
        .sim
        .post_as_channel(h.group, h.channel, h.owner, "news")
        .expect("the owner posts as the channel");
    h.pump().await;
    assert!(!h.sim.message(h.group, ok).expect("message").deleted);
    assert!(!h.sim.sender_chat_banned(h.group, h.channel));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_channel_posts_are_deleted_without_a_ban_when_the_setting_is_off() {
    let mut h = harness().await;
    h.set(h.group, SettingChange::BanChannelSenders(false))
        .await;
    let own = h
        .sim
        .create_channel("Bob's channel", None, h.bob)
        .expect("channel");
    h.skip_updates().await;
    let id = h
        .sim
        .post_as_channel(h.group, own, h.bob, "buy now")
        .expect("post");
    h.pump().await;
    assert!(h.sim.message(h.group, id).expect("message").deleted);
    assert!(h.sim.calls_to("banChatSenderChat").is_empty());
    assert!(!h.sim.sender_chat_banned(h.group, own));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_after_leaving_the_channel_is_deleted_and_muted() {
    let mut h = harness().await;
    // Strict leave off: the leave itself must not be what mutes her.
    h.set(h.group, SettingChange::StrictLeave(false)).await;
    let id = h.sim.post(h.group, h.alice, "hello").expect("post");
    h.pump().await;
    assert!(!h.sim.message(h.group, id).expect("message").deleted);

    h.sim
        .leave(h.channel, h.alice)
        .expect("alice leaves the channel");
    h.pump().await;
    assert!(h.sim.can_post(h.group, h.alice), "not muted by the leave");
    h.sim
        .edit_message(h.group, id, h.alice, "something else entirely")
        .expect("alice edits");
    assert!(h.pump().await >= 1, "the edit reaches the bot");

    assert!(
        h.sim.message(h.group, id).expect("message").deleted,
        "edited message deleted"
    );
    assert!(is_muted(h.sim.member(h.group, h.alice)), "muted");
    assert!(h.active(h.group, h.alice).await.is_some());
    assert_eq!(h.warnings(h.group).len(), 1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_button_never_unmutes_on_an_unverifiable_answer_and_cools_down() {
    let mut h = harness().await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    let w = h.warnings(h.group).remove(0);
    let data = format!("j:{}", h.bob.get());
    // Bob really joined, but Telegram fails every membership read (the group fails open).
    h.sim.join(h.channel, h.bob).expect("subscribe");
    h.skip_updates().await;
    h.sim
        .inject(Fault::on("getChatMember", FaultKind::ServerError(502)).always());
    let cq = h
        .sim
        .press_button(h.group, w.id, h.bob, &data)
        .expect("press");
    h.pump().await;
    let answer = h.sim.callback_answer(&cq).expect("answered");
    assert!(
        answer
            .text
            .as_deref()
            .is_some_and(|t| t.contains("try again in a moment")),
        "{answer:?}"
    );
    assert!(!h.sim.can_post(h.group, h.bob), "still muted");
    assert!(h.active(h.group, h.bob).await.is_some(), "row still active");
    assert!(!h.sim.message(h.group, w.id).expect("warning").deleted);

    // A second press within the cool-down asks Telegram nothing.
    h.sim.clear_faults();
    let reads = h.sim.calls_to("getChatMember").len();
    let cq = h
        .sim
        .press_button(h.group, w.id, h.bob, &data)
        .expect("press");
    h.pump().await;
    let answer = h.sim.callback_answer(&cq).expect("answered");
    assert_eq!(
        answer.text.as_deref(),
        Some("Please wait a few seconds before checking again.")
    );
    assert_eq!(h.sim.calls_to("getChatMember").len(), reads, "no re-check");
    assert!(!h.sim.can_post(h.group, h.bob));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_not_participant_is_not_a_member_for_the_button() {
    let mut h = harness().await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    let w = h.warnings(h.group).remove(0);
    h.sim.inject(Fault::on(
        "getChatMember",
        FaultKind::Error {
            code: 400,
            description: "Bad Request: USER_NOT_PARTICIPANT".to_owned(),
        },
    ));
    let cq = h
        .sim
        .press_button(h.group, w.id, h.bob, &format!("j:{}", h.bob.get()))
        .expect("press");
    h.pump().await;
    let answer = h.sim.callback_answer(&cq).expect("answered");
    assert!(answer.show_alert, "{answer:?}");
    assert!(
        answer
            .text
            .as_deref()
            .is_some_and(|t| t.starts_with("You still need to join") && t.contains("News")),
        "{answer:?}"
    );
    assert!(!h.sim.can_post(h.group, h.bob));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn button_presses_beyond_the_recheck_budget_ask_telegram_nothing() {
    let mut h = harness().await;
    let burst = flows::FlowConfig::default().recheck_burst as usize;
    let mut pressers = Vec::new();
    for i in 0..burst + 3 {
        let u = h.sim.add_user(&format!("Member {i}"));
        h.sim.join(h.group, u).expect("join");
        pressers.push(u);
    }
    h.skip_updates().await;
    for &u in &pressers {
        h.sim.post(h.group, u, "hi").expect("post");
    }
    h.pump().await;
    // The warnings were consolidated into one, whose button re-checks whoever presses it.
    let warnings = h.warnings(h.group);
    assert_eq!(warnings.len(), 1);
    let reads = h.sim.calls_to("getChatMember").len();
    let mut answers = Vec::new();
    for u in &pressers {
        let cq = h
            .sim
            .press_button(h.group, warnings[0].id, *u, "j:any")
            .expect("press");
        answers.push(cq);
    }
    h.pump().await;
    let rechecks = h.sim.calls_to("getChatMember").len() - reads;
    assert!(
        rechecks <= burst + 1,
        "{rechecks} re-checks for a burst of {burst}"
    );
    let refused = answers
        .iter()
        .filter(|cq| {
            h.sim
                .callback_answer(cq)
                .and_then(|a| a.text)
                .is_some_and(|t| t.contains("try again in a moment"))
        })
        .count();
    assert!(refused >= 2, "{refused} presses refused");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_button_frees_a_member_who_joined_even_without_an_active_row() {
    let mut h = harness().await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    let w = h.warnings(h.group).remove(0);
    assert!(!h.sim.can_post(h.group, h.bob));
    // The row is gone (closed by hand, a lost write…) while Telegram still mutes Bob.
    h.store
        .lift_member(
            h.group,
            h.bob,
            LiftReason::Expired,
            h.app.clock().unix_now(),
        )
        .await
        .expect("close the row");
    assert_eq!(h.active(h.group, h.bob).await, None);

    h.sim.join(h.channel, h.bob).expect("subscribe");
    let cq = h
        .sim
        .press_button(h.group, w.id, h.bob, &format!("j:{}", h.bob.get()))
        .expect("press");
    h.pump_where(|u| !matches!(u.kind, UpdateKind::ChatMember(_)))
        .await;
    let answer = h.sim.callback_answer(&cq).expect("answered");
    assert_eq!(answer.text.as_deref(), Some("Welcome! You can write now."));
    assert!(h.sim.can_post(h.group, h.bob), "unmuted in Telegram");
    assert!(h.sim.message(h.group, w.id).expect("warning").deleted);
    assert_eq!(h.active(h.group, h.bob).await, None);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restricted_by_an_admin_keeps_that_restriction() {
    let mut h = harness().await;
    // An admin took Bob's media rights; he may still write text.
    let admin_restriction = MemberState::Restricted {
        is_member: true,
        permissions: Permissions {
            can_send_photos: false,
            can_send_videos: false,
            can_send_documents: false,
            ..Permissions::group_default()
        },
        until: 0,
    };
    h.sim
        .set_member(h.group, h.bob, admin_restriction, h.owner)
        .expect("admin restricts bob");
    h.skip_updates().await;
    let id = h
        .sim
        .post(h.group, h.bob, "hi")
        .expect("bob may write text");
    h.pump().await;

    assert!(
        h.sim.message(h.group, id).expect("message").deleted,
        "deleted"
    );
    assert!(
        h.sim.calls_to("restrictChatMember").is_empty(),
        "the admin's restriction is not replaced by the bot's mute"
    );
    assert_eq!(h.sim.member(h.group, h.bob), admin_restriction);
    assert_eq!(h.active(h.group, h.bob).await, None, "no row of the bot's");
    // Warned with the Join link, but with no "I've joined" button: there is no mute of
    // the bot's to lift, and a lift would restore the group's defaults over the admin's choice.
    let warnings: Vec<SimMessage> = h
        .bot_messages(h.group)
        .into_iter()
        .filter(|m| m.text.contains("please join"))
        .collect();
    assert_eq!(warnings.len(), 1);
    assert!(
        data_of(&warnings[0]).is_empty(),
        "{:?}",
        warnings[0].buttons
    );
    assert_eq!(
        urls_of(&warnings[0]),
        vec!["https://t.me/test_news".to_owned()]
    );
    h.finish().await;
}

impl H {
    /// The bot's messages to the owner, once the notices sent in the background arrived (they
    /// wait for the private chat's budget): waits until the count stops growing.
    async fn owner_told(&self) -> Vec<SimMessage> {
        let mut last = usize::MAX;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let told = self.bot_messages(self.owner);
            if told.len() == last || std::time::Instant::now() > deadline {
                return told;
            }
            last = told.len();
            tokio::time::sleep(Duration::from_millis(1_200)).await;
        }
    }

    /// Handles every update waiting, without waiting for the outbox to carry out the actions.
    async fn handle_waiting(&mut self) -> usize {
        let updates = self.fetch().await;
        let n = updates.len();
        for u in updates {
            handlers::handle(&self.app, u)
                .await
                .expect("update handled");
        }
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raid_is_cleaned_up_in_bulk_with_one_warning_and_another_group_goes_first() {
    // Two deletions a second: the raid's deletions pile up behind the delete budget, as they
    // do in a real raid, and each call takes all of them that wait (up to 100).
    let mut h = harness_with_dispatch(flows::FlowConfig::default(), |d| {
        d.deletes_per_second = 2;
    })
    .await;
    h.sim
        .start_bot(h.owner)
        .expect("owner opens the private chat");
    let carol = h.sim.add_user("Carol");
    let second = h.second_group(&[carol]).await;
    let raiders: Vec<UserId> = (0..200)
        .map(|i| h.sim.add_user(&format!("Raider {i}")))
        .collect();
    for &r in &raiders {
        h.sim.join(h.group, r).expect("join");
    }
    h.skip_updates().await;
    let raid_started = std::time::Instant::now();
    let posted: Vec<_> = raiders
        .iter()
        .map(|&r| h.sim.post(h.group, r, "spam").expect("raider posts"))
        .collect();
    // The handlers only queue: 200 mutes wait for the restrict budget (30/s, ≈ 6.7 s).
    // (Mutes that landed meanwhile come back as chat_member updates: handled too.)
    let mut handled = 0;
    loop {
        let n = h.handle_waiting().await;
        handled += n;
        if n == 0 && handled >= 200 {
            break;
        }
    }
    h.sim.post(second, carol, "hello").expect("carol posts");
    assert!(h.handle_waiting().await >= 1);
    let sim = &h.sim;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while sim.can_post(second, carol) {
        assert!(std::time::Instant::now() < deadline, "carol never muted");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let raiders_muted = raiders
        .iter()
        .filter(|&&r| !sim.can_post(h.group, r))
        .count();
    assert!(
        raiders_muted < 100,
        "the other group's mute went ahead of the raid's backlog ({raiders_muted} raiders muted first)"
    );

    h.pump().await;
    for (&r, &m) in raiders.iter().zip(&posted) {
        assert!(!h.sim.can_post(h.group, r), "raider {r} muted");
        assert!(h.active(h.group, r).await.is_some(), "raider {r} has a row");
        assert!(
            h.sim.message(h.group, m).is_some_and(|m| m.deleted),
            "message of {r} deleted"
        );
    }
    assert_eq!(
        h.store
            .count_active_restrictions(h.group)
            .await
            .expect("count"),
        200
    );
    let single = h.calls("deleteMessage", h.group.get());
    let bulk = h.calls("deleteMessages", h.group.get());
    // One call per token of the delete budget (2/s, plus the first at once), each taking
    // every deletion waiting: never one call per message.
    let budget_calls = (raid_started.elapsed().as_secs_f64() * 2.0).ceil() as usize + 1;
    assert!(
        bulk >= 2 && bulk + single <= budget_calls,
        "bulk deletes: {bulk} deleteMessages, {single} deleteMessage, in {:?} at 2 calls/s",
        raid_started.elapsed()
    );
    let warnings = h.warnings(h.group);
    assert_eq!(warnings.len(), 1, "one warning message for the whole raid");
    assert!(
        warnings[0].text.contains("200 members"),
        "{}",
        warnings[0].text
    );
    assert_eq!(data_of(&warnings[0]), vec!["j:any".to_owned()]);
    // Nobody in the other group but Carol was touched; Carol was warned there.
    assert_eq!(
        h.store
            .count_active_restrictions(second)
            .await
            .expect("count"),
        1
    );
    assert!(
        h.sim.can_post(h.group, h.alice),
        "a subscriber is untouched"
    );
    // The raid was noticed once: metric, owner told.
    let metrics = prometheus::TextEncoder::new()
        .encode_to_string(&h.app.registry().gather())
        .expect("encode");
    assert!(metrics.contains("gmbot_raids_total 1"), "raid counted");
    // The notice is sent in the background.
    let told = || -> Vec<String> {
        h.bot_messages(h.owner)
            .into_iter()
            .map(|m| m.text)
            .filter(|t| t.contains("raid"))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while told().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(told().len(), 1, "owner told once: {:?}", told());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_while_the_mute_is_queued_leaves_the_member_free_and_without_a_row() {
    use gmbot_bot::sim::{Fault, FaultKind};

    let mut h = harness().await;
    // Telegram is slow to apply Bob's mute: it is still being carried out when his join
    // arrives.
    h.sim.inject(
        Fault::on(
            "restrictChatMember",
            FaultKind::Delay(std::time::Duration::from_millis(1500)),
        )
        .times(1),
    );
    h.sim.post(h.group, h.bob, "hi").expect("post");
    assert_eq!(h.handle_waiting().await, 1);
    assert!(
        h.active(h.group, h.bob).await.is_some(),
        "pending row recorded"
    );
    let sim = &h.sim;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while sim.calls_to("deleteMessage").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the outbox started");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(sim.can_post(h.group, h.bob), "the mute is not applied yet");
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    assert!(h.handle_waiting().await >= 1, "the join is handled");
    h.pump().await;
    assert!(h.sim.can_post(h.group, h.bob), "Bob can write");
    assert_eq!(h.active(h.group, h.bob).await, None, "no open row");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_whose_row_was_closed_while_it_was_on_its_way_is_undone() {
    use gmbot_bot::sim::{Fault, FaultKind};
    use gmbot_core::domain::{LiftReason, UnixTime};

    let mut h = harness().await;
    // Bob's mute is slow to land; meanwhile he subscribes and another path (another
    // instance, whose outbox this one cannot see) closes his row.
    h.sim.inject(
        Fault::on(
            "restrictChatMember",
            FaultKind::Delay(std::time::Duration::from_millis(1500)),
        )
        .times(1),
    );
    h.sim.post(h.group, h.bob, "hi").expect("post");
    assert_eq!(h.handle_waiting().await, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.sim.calls_to("deleteMessage").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the outbox started");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    h.sim.join(h.channel, h.bob).expect("bob subscribes");
    // The join update goes to the other instance: this one never handles it.
    h.skip_updates().await;
    let closed = h
        .store
        .lift_member(h.group, h.bob, LiftReason::Joined, UnixTime::now())
        .await
        .expect("store");
    assert_eq!(closed.len(), 1, "the other path closed the pending row");
    h.pump().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !h.sim.can_post(h.group, h.bob) {
        assert!(
            std::time::Instant::now() < deadline,
            "the late mute is undone: Bob can write"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(h.active(h.group, h.bob).await, None, "no open row");
    assert_eq!(
        h.sim.calls_to("restrictChatMember").len(),
        2,
        "the mute, then its undoing"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consolidated_button_frees_whoever_joined_and_answers_others_privately() {
    let mut h = harness().await;
    let carol = h.sim.add_user("Carol");
    h.sim.join(h.group, carol).expect("join");
    h.skip_updates().await;
    h.sim.post(h.group, h.bob, "one").expect("post");
    h.sim.post(h.group, carol, "two").expect("post");
    h.pump().await;
    let warnings = h.warnings(h.group);
    assert_eq!(warnings.len(), 1);
    assert_eq!(data_of(&warnings[0]), vec!["j:any".to_owned()]);
    // Alice is not muted: a short answer only she sees.
    let answer = h
        .sim
        .press_button(h.group, warnings[0].id, h.alice, "j:any")
        .expect("press");
    h.pump().await;
    assert_eq!(
        h.sim.callback_answer(&answer).and_then(|a| a.text),
        Some(gmbot_bot::flows::joined_button::NOT_MUTED.to_owned())
    );
    h.sim.join(h.channel, carol).expect("carol subscribes");
    h.skip_updates().await;
    let answer = h
        .sim
        .press_button(h.group, warnings[0].id, carol, "j:any")
        .expect("press");
    h.pump().await;
    assert!(h.sim.can_post(h.group, carol), "Carol freed");
    assert!(!h.sim.can_post(h.group, h.bob), "Bob still muted");
    assert_eq!(
        h.sim.callback_answer(&answer).and_then(|a| a.text),
        Some(gmbot_bot::flows::joined_button::WELCOME.to_owned())
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chats_updates_are_handled_in_arrival_order_by_the_runtime() {
    use gmbot_bot::runtime::{Offer, Runtime, RuntimeConfig, Transport};

    let mut h = harness().await;
    // Ten demotions and promotions of the bot, ending promoted: applied out of order, the
    // group would end paused.
    for _ in 0..10 {
        h.sim
            .set_bot_rights(h.group, h.owner, Some(AdminRights::bare()))
            .expect("demote");
        h.sim
            .set_bot_rights(h.group, h.owner, Some(AdminRights::moderator()))
            .expect("promote");
    }
    let updates = h.fetch().await;
    assert_eq!(updates.len(), 20);
    let runtime = Runtime::start(h.app.clone(), RuntimeConfig::default());
    let sender = runtime.sender();
    for u in updates {
        assert_eq!(sender.try_offer(u, Transport::Webhook), Offer::Queued);
    }
    let monitor = runtime.monitor();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !monitor.is_idle() {
        assert!(
            std::time::Instant::now() < deadline,
            "runtime idle: {:?} in flight {} queued {}",
            monitor.stats(),
            monitor.in_flight(),
            monitor.queued()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = runtime.shutdown().await;
    assert_eq!(report.stats.handled, 20);
    let g = h.store.group(h.group).await.expect("read").expect("group");
    assert_eq!(
        g.state,
        GroupState::Active,
        "the last update (a promotion) won"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_stored_by_username_only_is_resolved_and_then_enforced() {
    let mut h = harness().await;
    let carol = h.sim.add_user("Carol");
    let other = h
        .sim
        .create_channel("Other news", Some("other_news"), h.owner)
        .expect("channel");
    h.sim
        .add_bot(other, h.owner, Some(AdminRights::full()))
        .expect("bot joins channel");
    // Protected as `gmbot protect --channel @test_news` does without a token: no id.
    let by_name = |name: &str| {
        let r: ChannelRef = name.parse().expect("channel ref");
        EnforcedChannel::from_ref(r)
    };
    let mut groups = Vec::new();
    for title in ["Named A", "Named B"] {
        let g = h.sim.create_supergroup(title, h.owner).expect("group");
        h.sim
            .add_bot(g, h.owner, Some(AdminRights::moderator()))
            .expect("bot joins");
        h.sim.join(g, carol).expect("join");
        h.store
            .protect(
                &ProtectRequest {
                    group: g,
                    title: Some(title.to_owned()),
                    owner: Some(h.owner),
                    channels: vec![by_name("@other_news")],
                },
                h.app.clock().unix_now(),
            )
            .await
            .expect("protect");
        groups.push(g);
    }
    h.skip_updates().await;
    let (a, b) = (groups[0], groups[1]);

    // At start: every unresolved channel is looked up and its id stored.
    let report = flows::resolve::resolve_all(&h.app).await.expect("resolve");
    assert_eq!(report.resolved, 1, "one channel row, shared by both groups");
    for g in [a, b] {
        let stored = h.store.group(g).await.expect("read").expect("group");
        assert_eq!(stored.channels[0].id, Some(other), "id stored for {g}");
    }
    let first = h.sim.post(a, carol, "hello").expect("post");
    h.pump().await;
    assert!(
        h.sim.message(a, first).is_some_and(|m| m.deleted),
        "enforced in A"
    );
    assert!(!h.sim.can_post(a, carol), "Carol muted in A");
    assert!(
        h.bot_messages(a)
            .iter()
            .all(|m| !m.text.contains("cannot check who joined")),
        "no false alarm about the channel"
    );

    // A username that leads nowhere stays unresolved and is reported once.
    let g = h.sim.create_supergroup("Named C", h.owner).expect("group");
    h.sim
        .add_bot(g, h.owner, Some(AdminRights::moderator()))
        .expect("bot joins");
    h.store
        .protect(
            &ProtectRequest {
                group: g,
                title: None,
                owner: Some(h.owner),
                channels: vec![by_name("@no_such_channel")],
            },
            h.app.clock().unix_now(),
        )
        .await
        .expect("protect");
    let report = flows::resolve::resolve_group(&h.app, g)
        .await
        .expect("resolve");
    assert_eq!((report.resolved, report.failed), (0, 1));
    let stored = h.store.group(g).await.expect("read").expect("group");
    assert_eq!(stored.channels[0].id, None);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_raided_chat_cannot_fill_the_webhook_queue() {
    use gmbot_bot::runtime::{Offer, Runtime, RuntimeConfig, Transport};
    use gmbot_bot::sim::{Fault, FaultKind};

    let mut h = harness().await;
    let raiders: Vec<UserId> = (0..6)
        .map(|i| {
            let u = h.sim.add_user(&format!("Raider {i}"));
            h.sim.join(h.group, u).expect("joins");
            u
        })
        .collect();
    let dave = h.sim.add_user("Dave");
    let other = h.second_group(&[dave]).await;
    h.skip_updates().await;
    for &r in &raiders {
        h.sim.post(h.group, r, "raid!").expect("raider posts");
    }
    h.sim.post(other, dave, "hello").expect("dave posts");
    h.sim
        .set_bot_rights(h.group, h.owner, Some(AdminRights::full()))
        .expect("rights change");
    let updates = h.fetch().await;
    assert_eq!(updates.len(), 8);
    // The first raider's handling waits for Telegram, so the others wait behind it.
    h.sim.inject(
        Fault::on(
            "getChatMember",
            FaultKind::Delay(Duration::from_millis(500)),
        )
        .always(),
    );
    // Room for 8, a quarter of it (2 waiting) per chat's messages.
    let runtime = Runtime::start(
        h.app.clone(),
        RuntimeConfig {
            queue_capacity: 8,
            read_ahead: 0,
            ..RuntimeConfig::default()
        },
    );
    let sender = runtime.sender();
    let offers: Vec<Offer> = updates
        .into_iter()
        .map(|u| {
            let offer = sender.try_offer(u, Transport::Webhook);
            // Let the first one start, so that the next ones queue behind it.
            std::thread::sleep(Duration::from_millis(20));
            offer
        })
        .collect();
    use Offer::{Full, Queued};
    assert_eq!(
        offers,
        vec![Queued, Queued, Queued, Full, Full, Full, Queued, Queued],
        "the raided chat's messages beyond its share are refused; the other group's message and the bot's rights change are taken"
    );
    h.sim.clear_faults();
    let report = runtime.shutdown().await;
    assert_eq!(report.stats.handled, 5, "{report:?}");
    h.finish().await;
}

/// What a leave and a rejoin cost in each cache mode: `events` writes the event's status,
/// so the strict-leave check and the next message are hits; `ttl` invalidates, so both ask.
async fn leave_and_rejoin(mode: gmbot_core::cache::CacheMode) -> (usize, H) {
    let mut h = harness_with(flows::FlowConfig {
        cache_mode: mode,
        ..flows::FlowConfig::default()
    })
    .await;
    let chan = h.channel.get();
    h.sim.post(h.group, h.alice, "hi").expect("post");
    h.pump().await;
    assert_eq!(h.calls("getChatMember", chan), 1, "first sight asks");
    h.sim.leave(h.channel, h.alice).expect("alice leaves");
    h.pump().await;
    assert!(is_muted(h.sim.member(h.group, h.alice)), "strict leave");
    let key = gmbot_core::cache::MembershipKey::new(h.channel, h.alice);
    let after_leave = h.calls("getChatMember", chan);
    match mode {
        gmbot_core::cache::CacheMode::Events => {
            assert_eq!(
                after_leave, 1,
                "the leave event answered the strict-leave check"
            );
            assert_eq!(
                h.app.cache().get_local(key),
                Some(gmbot_core::domain::ChatMemberStatus::Left)
            );
        }
        gmbot_core::cache::CacheMode::Ttl => {
            assert_eq!(after_leave, 2, "invalidated: the strict-leave check asks");
        }
    }
    h.sim.join(h.channel, h.alice).expect("rejoin");
    h.pump().await;
    assert!(h.sim.can_post(h.group, h.alice), "unmuted on rejoin");
    assert_eq!(
        h.app.cache().get_local(key),
        Some(gmbot_core::domain::ChatMemberStatus::Member),
        "the join (events mode) or the recheck's answer (ttl mode) is cached"
    );
    h.sim.post(h.group, h.alice, "back").expect("post");
    h.pump().await;
    (h.calls("getChatMember", chan), h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_mode_keeps_the_cache_true_with_fewer_calls() {
    let (events, h) = leave_and_rejoin(gmbot_core::cache::CacheMode::Events).await;
    h.finish().await;
    let (ttl, h) = leave_and_rejoin(gmbot_core::cache::CacheMode::Ttl).await;
    h.finish().await;
    // Events: first sight only (the leave and the rejoin are in the cache). TTL: also the
    // strict-leave check and the rejoin's recheck.
    assert_eq!((events, ttl), (1, 3));
}

/// An edit of the shown warning that fails with a 5xx after every retry is no reason for a
/// second warning (the message is most likely still up): the member is kept with the shown
/// warning and named at its next edit. A warning that is gone gets a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_edit_of_the_shown_warning_posts_no_second_one() {
    let mut h = harness().await;
    h.set(h.group, SettingChange::CheckOnJoin(false)).await;
    let (carol, dave) = (h.sim.add_user("Carol"), h.sim.add_user("Dave"));
    h.sim.join(h.group, carol).expect("carol joins");
    h.sim.join(h.group, dave).expect("dave joins");
    h.skip_updates().await;
    h.sim.post(h.group, h.bob, "hi").expect("post");
    h.pump().await;
    assert_eq!(h.warnings(h.group).len(), 1);

    h.sim
        .inject(Fault::on("editMessageText", FaultKind::ServerError(502)).always());
    h.sim.post(h.group, carol, "hi").expect("post");
    h.pump().await;
    assert!(!h.sim.can_post(h.group, carol), "carol is muted");
    let warnings = h.warnings(h.group);
    assert_eq!(
        warnings.len(),
        1,
        "no second warning: {:?}",
        warnings.iter().map(|m| &m.text).collect::<Vec<_>>()
    );

    h.sim.clear_faults();
    h.sim.post(h.group, dave, "hi").expect("post");
    h.pump().await;
    let warnings = h.warnings(h.group);
    assert_eq!(warnings.len(), 1);
    for name in ["Carol", "Dave"] {
        assert!(
            warnings[0].text.contains(name),
            "{name} named: {}",
            warnings[0].text
        );
    }
    h.finish().await;
}
