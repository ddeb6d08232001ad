//! The verification engine against the real SQLite store (in memory), the
//! memory cache, the in-memory Telegram and a manual clock.
//!
//! Run: `cargo test -p gmbot-core --test engine`.

use std::sync::Arc;
use std::time::Duration;

use gmbot_core::cache::{
    MembershipCache, MembershipKey, MemoryCache, MemoryCacheConfig, TtlPolicy,
};
use gmbot_core::clock::ManualClock;
use gmbot_core::domain::{
    ChannelId, ChannelRef, ChatId, ChatMemberStatus, EnforcedChannel, FailurePolicy, GroupId,
    MessageId, NonMemberAction, ProtectRequest, SettingChange, UnixTime, UnknownReason, UserId,
};
use gmbot_core::engine::{
    Action, Decision, Engine, EngineConfig, EnginePorts, ExemptReason, MessageContext,
    NotEnforcedReason, Verdict,
};
use gmbot_core::store::{self, MigrationMode, Store};
use gmbot_core::telegram::{ChatAdmin, MemoryTelegram, Method, TelegramError};
use prometheus::Registry;

const GROUP: GroupId = GroupId(-100_500);
const C1: ChannelId = ChannelId(-100_601);
const C2: ChannelId = ChannelId(-100_602);
const C3: ChannelId = ChannelId(-100_603);
const START: UnixTime = UnixTime(1_700_000_000);

const ALICE: UserId = UserId(1_001);
const BOB: UserId = UserId(1_002);
const CAROL: UserId = UserId(1_003);

struct Harness {
    engine: Engine,
    cache: Arc<MemoryCache>,
    store: Arc<dyn Store>,
    tg: MemoryTelegram,
    clock: ManualClock,
    registry: Registry,
}

impl Harness {
    /// A group protected by `channels`, with `changes` applied to its settings.
    async fn new(tg: MemoryTelegram, channels: &[ChannelId], changes: &[SettingChange]) -> Self {
        let url = "sqlite::memory:".parse().expect("valid url");
        let store = store::open(&url, MigrationMode::Apply)
            .await
            .expect("open sqlite memory store");
        store
            .protect(
                &ProtectRequest {
                    group: GROUP,
                    title: Some("Test group".into()),
                    owner: None,
                    channels: channels
                        .iter()
                        .map(|c| EnforcedChannel::from_ref(ChannelRef::Id(*c)))
                        .collect(),
                },
                START,
            )
            .await
            .expect("protect");
        if !changes.is_empty() {
            store
                .update_settings(GROUP, changes, START)
                .await
                .expect("settings");
        }
        let clock = ManualClock::new(START);
        let registry = Registry::new();
        let cache = MemoryCache::new(
            MemoryCacheConfig {
                max_capacity: 10_000,
                ttl: TtlPolicy::default().without_jitter(),
            },
            Arc::new(clock.clone()),
            &registry,
        )
        .expect("memory cache");
        let cache = Arc::new(cache);
        let engine = Engine::new(
            EnginePorts {
                store: store.clone(),
                telegram: Arc::new(tg.clone()),
                cache: cache.clone(),
                clock: Arc::new(clock.clone()),
            },
            EngineConfig::default(),
            &registry,
        )
        .expect("engine");
        Self {
            engine,
            cache,
            store,
            tg,
            clock,
            registry,
        }
    }

    async fn verify(&self, user: UserId, ctx: MessageContext) -> Verdict {
        self.engine.verify(GROUP, user, ctx).await.expect("verdict")
    }

    /// A message by `user` in the group, as the frontend would pass it.
    async fn message(&self, user: UserId) -> Verdict {
        let id = self.tg.post_message(GROUP, user).expect("group exists");
        self.verify(user, MessageContext::message(id)).await
    }

    async fn change(&self, changes: &[SettingChange]) {
        self.store
            .update_settings(GROUP, changes, START)
            .await
            .expect("settings");
        self.engine.invalidate_group(GROUP).await;
    }

    fn counter(&self, result: &str) -> u64 {
        let families = self.registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == "gmbot_verifications_total")
            .expect("verifications counter registered");
        family
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == result))
            .map(|m| m.get_counter().get_value() as u64)
            .unwrap_or(0)
    }
}

/// Telegram with the group and channels, the bot admin everywhere.
fn telegram(channels: &[ChannelId]) -> MemoryTelegram {
    channels
        .iter()
        .fold(MemoryTelegram::new().add_group(GROUP), |tg, c| {
            tg.add_channel(*c)
        })
}

fn missing_ids(v: &Verdict) -> Vec<ChannelId> {
    v.missing().iter().filter_map(|c| c.id).collect()
}

fn admin(user: UserId) -> ChatAdmin {
    ChatAdmin {
        user,
        is_bot: false,
        is_creator: false,
        can_delete_messages: true,
        can_restrict_members: true,
        can_invite_users: true,
    }
}

// ----- exemptions ------------------------------------------------------------

#[tokio::test]
async fn creator_and_admins_are_exempt_without_a_channel_check() {
    let tg = telegram(&[C1])
        .set_member(GROUP, ALICE, ChatMemberStatus::Creator)
        .set_admin(GROUP, admin(BOB));
    let h = Harness::new(tg, &[C1], &[]).await;

    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::Exempt(ExemptReason::Creator)
    );
    assert_eq!(
        h.message(BOB).await.decision,
        Decision::Exempt(ExemptReason::Admin)
    );
    // Neither is subscribed, and neither was looked up.
    assert_eq!(h.tg.count(Method::GetChatMember), 0);
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 1);
    // A plain member is checked.
    let v = h.message(CAROL).await;
    assert_eq!(missing_ids(&v), vec![C1]);
    assert_eq!(h.counter("exempt"), 2);
    assert_eq!(h.counter("denied"), 1);
}

#[tokio::test]
async fn anonymous_admin_is_exempt_only_when_posting_as_this_group() {
    let h = Harness::new(telegram(&[C1]), &[C1], &[]).await;
    let anon = UserId::GROUP_ANONYMOUS_BOT;
    let as_group = MessageContext::message(MessageId(5))
        .from_bot()
        .with_sender_chat(ChatId::from(GROUP));
    assert_eq!(
        h.verify(anon, as_group).await.decision,
        Decision::Exempt(ExemptReason::AnonymousAdmin)
    );
    assert_eq!(h.tg.calls(), vec![], "no I/O for an anonymous admin");

    // Same account with another chat as sender: not an admin of this group,
    // and not exempt as "another bot" either (exempt_bots is on by default).
    let as_other = MessageContext::message(MessageId(6))
        .from_bot()
        .with_sender_chat(ChatId(-100_999));
    let v = h.verify(anon, as_other).await;
    assert_eq!(missing_ids(&v), vec![C1]);
    assert!(!h
        .verify(anon, MessageContext::message(MessageId(7)).from_bot())
        .await
        .decision
        .is_allowed());
}

#[tokio::test]
async fn automatic_forwards_from_the_linked_channel_are_exempt() {
    let h = Harness::new(telegram(&[C1]), &[C1], &[]).await;
    let forward = MessageContext::message(MessageId(9))
        .automatic_forward()
        .with_sender_chat(ChatId::from(C1));
    assert_eq!(
        h.verify(UserId::SERVICE_ACCOUNT, forward).await.decision,
        Decision::Exempt(ExemptReason::AutomaticForward)
    );
    // The service account without the flag (older clients) is exempt too.
    assert_eq!(
        h.verify(
            UserId::SERVICE_ACCOUNT,
            MessageContext::message(MessageId(10))
        )
        .await
        .decision,
        Decision::Exempt(ExemptReason::AutomaticForward)
    );
    assert_eq!(h.tg.calls(), vec![]);
}

#[tokio::test]
async fn posts_as_a_channel_are_allowed_only_for_the_groups_own_chats() {
    let h = Harness::new(telegram(&[C1]), &[C1], &[]).await;
    let placeholder = UserId::CHANNEL_BOT;
    let as_chat = |id: i64, chat: ChatId| {
        MessageContext::message(MessageId(id))
            .from_bot()
            .with_sender_chat(chat)
    };
    // As one of the group's enforced channels, or as the group itself: allowed.
    assert_eq!(
        h.verify(placeholder, as_chat(1, ChatId::from(C1)))
            .await
            .decision,
        Decision::Exempt(ExemptReason::OwnChannel)
    );
    assert_eq!(
        h.verify(placeholder, as_chat(2, ChatId::from(GROUP)))
            .await
            .decision,
        Decision::Exempt(ExemptReason::AnonymousAdmin)
    );
    // As any other channel: denied although the placeholder is a bot and bots
    // are exempt by default; deleted, the channel banned, one warning — and
    // the shared placeholder is never restricted.
    let foreign = ChatId(-100_777);
    let v = h.verify(placeholder, as_chat(3, foreign)).await;
    assert_eq!(missing_ids(&v), vec![C1]);
    assert_eq!(
        v.actions.as_slice(),
        &[
            Action::DeleteMessage(MessageId(3)),
            Action::BanSenderChat(foreign),
            Action::WarnSenderChat {
                delete_after_seconds: 60,
                cooldown_seconds: 300,
            },
        ]
    );
    assert_eq!(h.tg.calls(), vec![], "decided without I/O");
    // The placeholder without a sender_chat names no one: deleted, nothing banned.
    let v = h
        .verify(
            placeholder,
            MessageContext::message(MessageId(4)).from_bot(),
        )
        .await;
    assert!(!v.decision.is_allowed());
    assert!(!v.actions.iter().any(|a| matches!(
        a,
        Action::Restrict { .. } | Action::Kick | Action::BanSenderChat(_)
    )));

    // With the setting off the channel is not banned; the post still goes.
    h.change(&[SettingChange::BanChannelSenders(false)]).await;
    let v = h.verify(placeholder, as_chat(5, foreign)).await;
    assert_eq!(v.actions[0], Action::DeleteMessage(MessageId(5)));
    assert!(!v
        .actions
        .iter()
        .any(|a| matches!(a, Action::BanSenderChat(_))));
}

#[tokio::test]
async fn bots_are_exempt_only_while_the_group_exempts_them() {
    let bot = UserId(5_555);
    let h = Harness::new(telegram(&[C1]), &[C1], &[]).await;
    let ctx = MessageContext::message(MessageId(3)).from_bot();
    assert_eq!(
        h.verify(bot, ctx).await.decision,
        Decision::Exempt(ExemptReason::Bot)
    );
    h.change(&[SettingChange::ExemptBots(false)]).await;
    let v = h.verify(bot, ctx).await;
    assert_eq!(missing_ids(&v), vec![C1]);
}

#[tokio::test]
async fn allowlisted_users_are_exempt() {
    let h = Harness::new(telegram(&[C1]), &[C1], &[SettingChange::Allow(ALICE)]).await;
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::Exempt(ExemptReason::Allowlisted)
    );
    assert_eq!(h.tg.count(Method::GetChatMember), 0);
    assert!(!h.message(BOB).await.decision.is_allowed());
}

// ----- memberships -----------------------------------------------------------

#[tokio::test]
async fn statuses_map_to_subscribed_or_not() {
    let cases = [
        (UserId(2_001), ChatMemberStatus::Member, true),
        (UserId(2_002), ChatMemberStatus::Administrator, true),
        (UserId(2_003), ChatMemberStatus::Creator, true),
        (
            UserId(2_004),
            ChatMemberStatus::Restricted { is_member: true },
            true,
        ),
        (
            UserId(2_005),
            ChatMemberStatus::Restricted { is_member: false },
            false,
        ),
        (UserId(2_006), ChatMemberStatus::Left, false),
        (UserId(2_007), ChatMemberStatus::Kicked, false),
    ];
    let tg = cases
        .iter()
        .fold(telegram(&[C1]), |tg, (u, s, _)| tg.set_member(C1, *u, *s));
    let h = Harness::new(tg, &[C1], &[]).await;
    for (user, status, subscribed) in cases {
        let v = h.message(user).await;
        if subscribed {
            assert_eq!(v.decision, Decision::Allow, "{status:?}");
            assert!(v.actions.is_empty(), "{status:?}");
        } else {
            assert_eq!(missing_ids(&v), vec![C1], "{status:?}");
        }
        assert!(v.unverifiable.is_empty());
    }
    // A user Telegram has never seen is `left`.
    assert_eq!(missing_ids(&h.message(UserId(2_999)).await), vec![C1]);
}

#[tokio::test]
async fn every_linked_channel_must_be_joined() {
    let tg = telegram(&[C1, C2, C3])
        .set_member(C1, ALICE, ChatMemberStatus::Member)
        .set_member(C2, BOB, ChatMemberStatus::Member)
        .set_member(C1, CAROL, ChatMemberStatus::Member)
        .set_member(C2, CAROL, ChatMemberStatus::Member)
        .set_member(C3, CAROL, ChatMemberStatus::Restricted { is_member: true });
    let h = Harness::new(tg, &[C1, C2, C3], &[]).await;
    assert_eq!(missing_ids(&h.message(ALICE).await), vec![C2, C3]);
    assert_eq!(missing_ids(&h.message(BOB).await), vec![C1, C3]);
    assert_eq!(h.message(CAROL).await.decision, Decision::Allow);
}

#[tokio::test]
async fn a_cache_hit_makes_no_telegram_call() {
    let tg = telegram(&[C1, C2])
        .set_member(C1, ALICE, ChatMemberStatus::Member)
        .set_member(C2, ALICE, ChatMemberStatus::Member);
    let h = Harness::new(tg, &[C1, C2], &[]).await;
    assert_eq!(h.message(ALICE).await.decision, Decision::Allow);
    let calls = h.tg.calls().len();
    assert_eq!(h.tg.count(Method::GetChatMember), 2);
    for _ in 0..10 {
        let v = h.verify(ALICE, MessageContext::message(MessageId(1))).await;
        assert_eq!(v.decision, Decision::Allow);
    }
    assert_eq!(h.tg.calls().len(), calls, "hits must not call Telegram");
    // Non-members are cached too (for their shorter TTL).
    h.message(BOB).await;
    let calls = h.tg.count(Method::GetChatMember);
    h.verify(BOB, MessageContext::message(MessageId(2))).await;
    assert_eq!(h.tg.count(Method::GetChatMember), calls);
    assert_eq!(h.counter("allowed"), 11);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_call_per_key() {
    let tg = telegram(&[C1]).set_member(C1, ALICE, ChatMemberStatus::Member);
    tg.set_latency(Duration::from_millis(50));
    let h = Harness::new(tg, &[C1], &[]).await;
    let checks = (0..200).map(|_| h.verify(ALICE, MessageContext::no_message()));
    let verdicts = futures_join_all(checks).await;
    assert!(verdicts.iter().all(|v| v.decision == Decision::Allow));
    assert_eq!(h.tg.count(Method::GetChatMember), 1);
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 1);
}

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

// ----- unknown membership -----------------------------------------------------

#[tokio::test]
async fn unknown_membership_fails_open_and_is_reported() {
    // The bot is not an admin of C2: Telegram hides its members.
    let tg = telegram(&[C1, C2])
        .set_member(C1, ALICE, ChatMemberStatus::Member)
        .set_bot_channel_admin(C2, false);
    let h = Harness::new(tg, &[C1, C2], &[]).await;
    let v = h.message(ALICE).await;
    assert_eq!(v.decision, Decision::Allow);
    assert!(v.actions.is_empty());
    assert_eq!(v.unverifiable.len(), 1);
    assert_eq!(v.unverifiable[0].channel.id, Some(C2));
    assert_eq!(v.unverifiable[0].reason, UnknownReason::NotChannelAdmin);
    assert_eq!(h.counter("unverifiable"), 1);
    assert_eq!(h.counter("allowed"), 0);

    // A non-member of C1 is still denied for C1 only.
    let v = h.message(BOB).await;
    assert_eq!(missing_ids(&v), vec![C1]);
    assert_eq!(v.unverifiable.len(), 1);
}

#[tokio::test]
async fn unknown_membership_fails_closed_when_the_group_says_so() {
    let tg = telegram(&[C1, C2])
        .set_member(C1, ALICE, ChatMemberStatus::Member)
        .set_member(C2, ALICE, ChatMemberStatus::Member)
        .remove_chat(C2);
    let h = Harness::new(
        tg,
        &[C1, C2],
        &[SettingChange::FailurePolicy(FailurePolicy::Closed)],
    )
    .await;
    let v = h.message(ALICE).await;
    assert_eq!(missing_ids(&v), vec![C2]);
    assert_eq!(v.unverifiable.len(), 1);
    assert_eq!(v.unverifiable[0].reason, UnknownReason::ChannelNotFound);
    assert!(v.actions.contains(&Action::Restrict { until: None }));
}

#[tokio::test]
async fn transient_errors_are_unknown_never_a_verdict() {
    let tg = telegram(&[C1]).set_member(C1, ALICE, ChatMemberStatus::Member);
    let h = Harness::new(tg, &[C1], &[]).await;
    for err in [
        TelegramError::Network("connection reset".into()),
        TelegramError::Server {
            code: 502,
            description: "Bad Gateway".into(),
        },
        TelegramError::UserNotFound("PARTICIPANT_ID_INVALID".into()),
        TelegramError::RetryAfter {
            retry_after: Duration::from_secs(3),
        },
    ] {
        h.tg.fail_next(Method::GetChatMember, err.clone());
        let v = h.message(ALICE).await;
        assert_eq!(v.decision, Decision::Allow, "{err}");
        assert_eq!(
            v.unverifiable[0].reason,
            UnknownReason::TelegramUnavailable,
            "{err}"
        );
    }
    // Nothing unknown was cached: the next message asks again and gets the real answer.
    let before = h.tg.count(Method::GetChatMember);
    let v = h.message(ALICE).await;
    assert_eq!(v.decision, Decision::Allow);
    assert!(v.unverifiable.is_empty());
    assert_eq!(h.tg.count(Method::GetChatMember), before + 1);
}

#[tokio::test]
async fn a_channel_failing_for_everyone_is_not_asked_again_during_the_back_off() {
    let tg = telegram(&[C1]).set_bot_channel_admin(C1, false);
    let h = Harness::new(tg, &[C1], &[]).await;
    for user in [ALICE, BOB, CAROL] {
        let v = h.message(user).await;
        assert_eq!(v.unverifiable[0].reason, UnknownReason::NotChannelAdmin);
    }
    assert_eq!(h.tg.count(Method::GetChatMember), 1);
    // The back-off ends; the bot was made a channel admin meanwhile.
    let _ = h.tg.clone().set_bot_channel_admin(C1, true);
    h.clock.advance(Duration::from_secs(31));
    let v = h.message(ALICE).await;
    assert!(v.unverifiable.is_empty());
    assert_eq!(missing_ids(&v), vec![C1]);
    assert_eq!(h.tg.count(Method::GetChatMember), 2);
}

// ----- caches -----------------------------------------------------------------

#[tokio::test]
async fn group_config_is_cached_until_invalidated_or_expired() {
    let tg = telegram(&[C1]);
    let h = Harness::new(tg, &[C1], &[]).await;
    let v = h.message(ALICE).await;
    assert!(matches!(v.actions[1], Action::Restrict { .. }));

    // Changed behind the engine's back: the cached config still applies.
    h.store
        .update_settings(
            GROUP,
            &[SettingChange::Action(NonMemberAction::Kick)],
            START,
        )
        .await
        .expect("settings");
    let v = h.message(ALICE).await;
    assert!(matches!(v.actions[1], Action::Restrict { .. }));

    // Invalidation makes the change visible at once.
    h.engine.invalidate_group(GROUP).await;
    let v = h.message(ALICE).await;
    assert_eq!(v.actions[1], Action::Kick);

    // Without an invalidation, the change shows after the 30 s TTL.
    assert!(h.store.unprotect(GROUP, START).await.expect("unprotect"));
    h.clock.advance(Duration::from_secs(29));
    assert!(!h.message(ALICE).await.decision.is_allowed());
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::NotEnforced(NotEnforcedReason::Unprotected)
    );
}

/// Group events: every invalidation is published once to the other instances; an event
/// applied from another instance drops the cached copy here without being published again.
#[tokio::test]
async fn invalidations_are_published_and_applied_events_drop_the_cached_copy() {
    use gmbot_core::coordination::{GroupEvent, GroupEvents};
    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<GroupEvent>>);
    #[async_trait::async_trait]
    impl GroupEvents for Recorded {
        async fn publish(&self, event: GroupEvent) {
            self.0.lock().expect("lock").push(event);
        }
    }
    let tg = telegram(&[C1]);
    let h = Harness::new(tg, &[C1], &[]).await;
    let published = Arc::new(Recorded::default());
    assert!(h.engine.publish_to(published.clone()));
    assert!(!h.message(ALICE).await.decision.is_allowed());
    // Promoted elsewhere: the admins event another instance published refetches the list.
    let admin_calls = h.tg.count(Method::GetChatAdministrators);
    h.engine.apply(GroupEvent::Admins(GROUP)).await;
    assert!(!h.message(ALICE).await.decision.is_allowed());
    assert_eq!(h.tg.count(Method::GetChatAdministrators), admin_calls + 1);

    // Another instance unprotected the group: the event it published drops the copy here.
    assert!(h.store.unprotect(GROUP, START).await.expect("unprotect"));
    assert!(
        !h.message(ALICE).await.decision.is_allowed(),
        "still cached"
    );
    h.engine.apply(GroupEvent::Config(GROUP)).await;
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::NotEnforced(NotEnforcedReason::Unprotected)
    );
    h.engine.apply(GroupEvent::Resync).await;
    assert!(
        published.0.lock().expect("lock").is_empty(),
        "applied, not published"
    );

    // Changes made here are published, once each.
    h.engine.invalidate_group(GROUP).await;
    h.engine.invalidate_admins(GROUP).await;
    assert_eq!(
        *published.0.lock().expect("lock"),
        vec![GroupEvent::Config(GROUP), GroupEvent::Admins(GROUP)]
    );
}

#[tokio::test]
async fn admin_list_is_cached_for_its_ttl_and_invalidatable() {
    let tg = telegram(&[C1]);
    let h = Harness::new(tg, &[C1], &[]).await;
    assert!(!h.message(ALICE).await.decision.is_allowed());
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 1);

    // Promoted in Telegram: the cached list does not know yet.
    let _ = h.tg.clone().set_admin(GROUP, admin(ALICE));
    h.clock.advance(Duration::from_secs(299));
    assert!(!h.message(ALICE).await.decision.is_allowed());
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 1);

    // TTL (5 min) over: fetched again.
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::Exempt(ExemptReason::Admin)
    );
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 2);

    // Demoted, and the frontend saw it: invalidation refetches at once.
    let _ =
        h.tg.clone()
            .set_member(GROUP, ALICE, ChatMemberStatus::Member);
    h.engine.invalidate_admins(GROUP).await;
    assert!(!h.message(ALICE).await.decision.is_allowed());
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 3);
}

#[tokio::test]
async fn with_no_admin_list_nobody_is_acted_against_and_it_retries_later() {
    let tg = telegram(&[C1]).set_admin(GROUP, admin(ALICE)).set_member(
        C1,
        BOB,
        ChatMemberStatus::Member,
    );
    tg.fail_next(
        Method::GetChatAdministrators,
        TelegramError::Network("timeout".into()),
    );
    let h = Harness::new(tg, &[C1], &[]).await;
    // Admin list unknown: Alice (an admin, not subscribed) could be an admin
    // or a member; nothing is done against her.
    let v = h.message(ALICE).await;
    assert_eq!(v.decision, Decision::Allow);
    assert!(v.actions.is_empty(), "{:?}", v.actions);
    // Not a member either (a non-subscriber gets through this one message).
    assert!(h.message(CAROL).await.actions.is_empty());
    assert_eq!(h.message(BOB).await.decision, Decision::Allow);
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 1);
    h.clock.advance(Duration::from_secs(31));
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::Exempt(ExemptReason::Admin)
    );
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 2);
    assert!(!h.message(CAROL).await.decision.is_allowed());
}

#[tokio::test]
async fn a_failed_admin_list_fetch_keeps_the_last_good_list() {
    let tg = telegram(&[C1]).set_admin(GROUP, admin(ALICE));
    let h = Harness::new(tg, &[C1], &[]).await;
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::Exempt(ExemptReason::Admin)
    );
    // The list expires and the next fetch fails: Alice is still an admin,
    // and members are still checked and denied.
    h.clock.advance(Duration::from_secs(301));
    h.tg.fail_next(
        Method::GetChatAdministrators,
        TelegramError::Server {
            code: 502,
            description: "Bad Gateway".into(),
        },
    );
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::Exempt(ExemptReason::Admin)
    );
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 2);
    let v = h.message(CAROL).await;
    assert!(!v.decision.is_allowed());
    assert!(matches!(v.actions[1], Action::Restrict { .. }));
    // Kept only for the failure back-off, then asked again.
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 2);
    h.clock.advance(Duration::from_secs(31));
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::Exempt(ExemptReason::Admin)
    );
    assert_eq!(h.tg.count(Method::GetChatAdministrators), 3);
}

#[tokio::test]
async fn recheck_bypasses_the_cache_and_refreshes_it() {
    let tg = telegram(&[C1]);
    let h = Harness::new(tg, &[C1], &[]).await;
    assert!(!h.message(ALICE).await.decision.is_allowed());
    let calls = h.tg.count(Method::GetChatMember);

    // Alice joins; the cached "left" still answers verify.
    let _ = h.tg.clone().set_member(C1, ALICE, ChatMemberStatus::Member);
    assert!(!h.message(ALICE).await.decision.is_allowed());
    assert_eq!(h.tg.count(Method::GetChatMember), calls);

    // The button: asks Telegram, allows, implies an unmute.
    let v = h.engine.recheck(GROUP, ALICE).await.expect("verdict");
    assert_eq!(v.decision, Decision::Allow);
    assert_eq!(v.actions.as_slice(), &[Action::Unrestrict]);
    assert_eq!(h.tg.count(Method::GetChatMember), calls + 1);

    // The cache now holds the fresh answer.
    assert_eq!(h.message(ALICE).await.decision, Decision::Allow);
    assert_eq!(h.tg.count(Method::GetChatMember), calls + 1);

    // A recheck of someone still not subscribed denies with no new action.
    let v = h.engine.recheck(GROUP, BOB).await.expect("verdict");
    assert_eq!(missing_ids(&v), vec![C1]);
    assert!(v.actions.is_empty());
}

/// Events mode: the join the bot saw is in the cache; the recheck it triggers reads it
/// there (Telegram only for a channel the cache does not know) and keeps the recheck's
/// meaning: allow → unmute, deny → nothing new.
#[tokio::test]
async fn a_cached_recheck_reads_the_cache_and_unmutes_or_changes_nothing() {
    let tg = telegram(&[C1, C2]);
    let _ = tg.clone().set_member(C2, ALICE, ChatMemberStatus::Member);
    let h = Harness::new(tg, &[C1, C2], &[]).await;
    assert!(!h.message(ALICE).await.decision.is_allowed());
    let calls = h.tg.count(Method::GetChatMember);

    // The join event of C1, written by the bot; Telegram is not asked again.
    h.cache
        .insert(MembershipKey::new(C1, ALICE), ChatMemberStatus::Member)
        .await;
    let v = h
        .engine
        .recheck_cached(GROUP, ALICE)
        .await
        .expect("verdict");
    assert_eq!(v.decision, Decision::Allow);
    assert_eq!(v.actions.as_slice(), &[Action::Unrestrict]);
    assert_eq!(
        h.tg.count(Method::GetChatMember),
        calls,
        "both channels from the cache"
    );

    // Bob: C1 unknown to the cache (one call), not subscribed: denied, no new action.
    let v = h.engine.recheck_cached(GROUP, BOB).await.expect("verdict");
    assert_eq!(missing_ids(&v), vec![C1, C2]);
    assert!(v.actions.is_empty(), "{:?}", v.actions);
    assert_eq!(h.tg.count(Method::GetChatMember), calls + 2);

    // An unverifiable channel never unmutes.
    h.tg.fail_next(
        Method::GetChatMember,
        TelegramError::Network("timeout".into()),
    );
    let v = h
        .engine
        .recheck_cached(GROUP, CAROL)
        .await
        .expect("verdict");
    assert!(!v.actions.contains(&Action::Unrestrict), "{:?}", v.actions);
}

#[tokio::test]
async fn a_recheck_that_cannot_verify_never_implies_an_unmute() {
    let tg = telegram(&[C1]);
    let h = Harness::new(tg, &[C1], &[]).await;
    for err in [
        TelegramError::RetryAfter {
            retry_after: Duration::from_secs(3),
        },
        TelegramError::Server {
            code: 502,
            description: "Bad Gateway".into(),
        },
        TelegramError::Network("timeout".into()),
        TelegramError::UserNotFound("user not found".into()),
    ] {
        h.tg.fail_next(Method::GetChatMember, err.clone());
        let v = h.engine.recheck(GROUP, ALICE).await.expect("verdict");
        // The group fails open, so the decision lets her speak, but nothing is lifted.
        assert_eq!(v.decision, Decision::Allow, "{err:?}");
        assert!(v.actions.is_empty(), "{err:?}: {:?}", v.actions);
        assert_eq!(v.unverifiable.len(), 1, "{err:?}");
    }
}

// ----- actions ----------------------------------------------------------------

#[tokio::test]
async fn actions_follow_the_group_settings() {
    let h = Harness::new(telegram(&[C1]), &[C1], &[]).await;
    let msg = MessageId(42);

    // Default: mute until joined, with a warning.
    let v = h.verify(ALICE, MessageContext::message(msg)).await;
    assert_eq!(
        v.actions.as_slice(),
        &[
            Action::DeleteMessage(msg),
            Action::Restrict { until: None },
            Action::Warn {
                delete_after_seconds: 60,
                cooldown_seconds: 300,
                private: false
            },
        ]
    );

    // Timed mute: until = now + mute_seconds on the injected clock.
    h.change(&[
        SettingChange::MuteSeconds(3_600),
        SettingChange::WarningTtlSeconds(30),
    ])
    .await;
    h.clock.advance(Duration::from_secs(10));
    let v = h.verify(ALICE, MessageContext::message(msg)).await;
    assert_eq!(
        v.actions[1],
        Action::Restrict {
            until: Some(UnixTime(START.secs() + 10 + 3_600))
        }
    );
    assert_eq!(
        v.actions[2],
        Action::Warn {
            delete_after_seconds: 30,
            cooldown_seconds: 300,
            private: false
        }
    );

    h.change(&[SettingChange::Action(NonMemberAction::DeleteOnly)])
        .await;
    let v = h.verify(ALICE, MessageContext::message(msg)).await;
    assert_eq!(v.actions.len(), 2);
    assert_eq!(v.actions[0], Action::DeleteMessage(msg));
    assert!(matches!(v.actions[1], Action::Warn { .. }));

    h.change(&[SettingChange::Action(NonMemberAction::Kick)])
        .await;
    let v = h.verify(ALICE, MessageContext::message(msg)).await;
    assert_eq!(
        v.actions.as_slice(),
        &[Action::DeleteMessage(msg), Action::Kick]
    );

    // A check without a message (member joined) has nothing to delete.
    let v = h.verify(ALICE, MessageContext::no_message()).await;
    assert_eq!(v.actions.as_slice(), &[Action::Kick]);

    // Allowed senders imply nothing.
    let _ = h.tg.clone().set_member(C1, BOB, ChatMemberStatus::Member);
    assert!(h.message(BOB).await.actions.is_empty());
}

// ----- groups that are not enforced ------------------------------------------

#[tokio::test]
async fn groups_that_are_not_enforced_allow_without_io() {
    let h = Harness::new(telegram(&[C1]), &[C1], &[]).await;
    let other = GroupId(-100_777);
    let v = h
        .engine
        .verify(other, ALICE, MessageContext::message(MessageId(1)))
        .await
        .expect("verdict");
    assert_eq!(
        v.decision,
        Decision::NotEnforced(NotEnforcedReason::UnknownGroup)
    );

    assert!(h
        .store
        .pause(GROUP, "bot lost its rights", START)
        .await
        .expect("pause"));
    h.engine.invalidate_group(GROUP).await;
    assert_eq!(
        h.message(ALICE).await.decision,
        Decision::NotEnforced(NotEnforcedReason::Paused)
    );
    assert_eq!(h.tg.calls().len(), 0);
    assert_eq!(h.counter("not_enforced"), 2);

    // A recheck in a group no longer enforced lifts the mute.
    let v = h.engine.recheck(GROUP, ALICE).await.expect("verdict");
    assert_eq!(v.actions.as_slice(), &[Action::Unrestrict]);
}

#[tokio::test]
async fn latency_is_recorded_without_ids_in_labels() {
    let tg = telegram(&[C1]).set_member(C1, ALICE, ChatMemberStatus::Member);
    let h = Harness::new(tg, &[C1], &[]).await;
    for _ in 0..3 {
        h.message(ALICE).await;
    }
    let families = h.registry.gather();
    let hist = families
        .iter()
        .find(|f| f.name() == "gmbot_verification_duration_seconds")
        .expect("histogram registered");
    let m = &hist.get_metric()[0];
    assert_eq!(m.get_histogram().get_sample_count(), 3);
    let bounds: Vec<f64> = m
        .get_histogram()
        .get_bucket()
        .iter()
        .map(|b| b.upper_bound())
        .collect();
    assert!(
        bounds.contains(&0.001) && bounds.contains(&0.5),
        "{bounds:?}"
    );
    for f in families
        .iter()
        .filter(|f| f.name().starts_with("gmbot_verification"))
    {
        for m in f.get_metric() {
            for l in m.get_label() {
                assert_eq!(l.name(), "result");
            }
        }
    }
    // A second engine cannot register into the same registry.
    assert!(Engine::new(
        EnginePorts {
            store: h.store.clone(),
            telegram: Arc::new(h.tg.clone()),
            cache: Arc::new(
                MemoryCache::new(
                    MemoryCacheConfig::default(),
                    Arc::new(h.clock.clone()),
                    &Registry::new()
                )
                .expect("cache")
            ),
            clock: Arc::new(h.clock.clone()),
        },
        EngineConfig::default(),
        &h.registry
    )
    .is_err());
}
