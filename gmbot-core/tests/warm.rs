//! The cache warm-up against the real SQLite store (in memory), the memory cache, the
//! dispatcher and the in-memory Telegram: order (most recently seen first, across groups),
//! bounds (members, time, rate, seen-within), the stop signal, cached keys that cost nothing,
//! unreadable channels, and yielding to live calls.
//!
//! Run: `cargo test -p gmbot-core --test warm`. Real time, each test bounded to a few seconds.

use std::sync::Arc;
use std::time::Duration;

use gmbot_core::cache::{MembershipCache, MembershipKey, MemoryCache, MemoryCacheConfig};
use gmbot_core::clock::ManualClock;
use gmbot_core::dispatch::{DispatchConfig, Dispatcher, Lane};
use gmbot_core::domain::{
    ChannelId, ChannelRef, ChatId, ChatMemberStatus, EnforcedChannel, GroupId, MessageId,
    ProtectRequest, UnixTime, UserId,
};
use gmbot_core::store::{self, MigrationMode, Store};
use gmbot_core::telegram::{Call, MemoryTelegram, Method, TelegramApi};
use gmbot_core::warm::{WarmConfig, WarmError, WarmPorts, WarmScope, WarmStop, WarmUp};
use prometheus::Registry;

const NOW: UnixTime = UnixTime(1_700_000_000);
const G1: GroupId = GroupId(-100_001);
const G2: GroupId = GroupId(-100_002);
const C1: ChannelId = ChannelId(-100_101);
const C2: ChannelId = ChannelId(-100_102);
const C3: ChannelId = ChannelId(-100_103);

struct Harness {
    store: Arc<dyn Store>,
    cache: Arc<MemoryCache>,
    tg: MemoryTelegram,
    dispatcher: Dispatcher,
}

impl Harness {
    /// G1 requires C1 and C2; G2 requires C3. Every user is a member of every channel.
    async fn new(dispatch: DispatchConfig) -> Self {
        let store = store::open(
            &"sqlite::memory:".parse().expect("url"),
            MigrationMode::Apply,
        )
        .await
        .expect("store");
        for (group, channels) in [(G1, vec![C1, C2]), (G2, vec![C3])] {
            store
                .protect(
                    &ProtectRequest {
                        group,
                        title: None,
                        owner: None,
                        channels: channels
                            .into_iter()
                            .map(|c| EnforcedChannel::from_ref(ChannelRef::Id(c)))
                            .collect(),
                    },
                    NOW,
                )
                .await
                .expect("protect");
        }
        let clock = ManualClock::new(NOW);
        let tg = MemoryTelegram::new()
            .add_group(G1)
            .add_group(G2)
            .add_channel(C1)
            .add_channel(C2)
            .add_channel(C3);
        let mut tg = tg;
        for user in 1..=200 {
            for c in [C1, C2, C3] {
                tg = tg.set_member(c, UserId(user), ChatMemberStatus::Member);
            }
        }
        let registry = Registry::new();
        let cache = Arc::new(
            MemoryCache::new(
                MemoryCacheConfig::default(),
                Arc::new(clock.clone()),
                &registry,
            )
            .expect("cache"),
        );
        let dispatcher =
            Dispatcher::new(Arc::new(tg.clone()), dispatch, &registry).expect("dispatcher");
        Self {
            store,
            cache,
            tg,
            dispatcher,
        }
    }

    /// Records sightings: (group, user, seconds before now).
    async fn seen(&self, rows: &[(GroupId, i64, i64)]) {
        let rows: Vec<_> = rows
            .iter()
            .map(|&(g, u, ago)| (g, UserId(u), UnixTime(NOW.0 - ago)))
            .collect();
        self.store.record_seen_many(&rows).await.expect("seen");
    }

    fn warm_up(&self, config: WarmConfig) -> WarmUp {
        WarmUp::new(
            WarmPorts {
                store: Arc::clone(&self.store),
                cache: self.cache.clone(),
                dispatcher: self.dispatcher.clone(),
                clock: Arc::new(ManualClock::new(NOW)),
            },
            config,
        )
        .expect("valid config")
    }

    /// The (chat, user) of every getChatMember, in call order.
    fn member_calls(&self) -> Vec<(ChatId, UserId)> {
        self.tg
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::GetChatMember { chat, user } => Some((chat, user)),
                _ => None,
            })
            .collect()
    }
}

fn fast() -> WarmConfig {
    WarmConfig {
        max_members: 1_000,
        max_duration: Duration::from_secs(10),
        calls_per_second: 10_000,
        concurrency: 1,
        seen_within: Duration::from_secs(24 * 3600),
    }
}

fn ch(c: ChannelId) -> ChatId {
    ChatId::from(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_recently_seen_first_across_groups_and_bounded_by_count() {
    let h = Harness::new(DispatchConfig::default()).await;
    h.seen(&[
        (G1, 1, 50),
        (G2, 2, 10),
        (G1, 3, 5),
        (G2, 4, 40),
        (G1, 5, 30),
        (G2, 3, 1),
    ])
    .await;
    let report = h
        .warm_up(WarmConfig {
            max_members: 4,
            ..fast()
        })
        .run(WarmScope::All, std::future::pending())
        .await
        .expect("warm-up");
    assert_eq!(report.stop, Some(WarmStop::MaxMembers));
    assert_eq!(report.members, 4);
    // G2/3 (1 s ago), G1/3 (5 s), G2/2 (10 s), G1/5 (30 s); not G2/4 (40 s) nor G1/1 (50 s).
    assert_eq!(
        h.member_calls(),
        vec![
            (ch(C3), UserId(3)),
            (ch(C1), UserId(3)),
            (ch(C2), UserId(3)),
            (ch(C3), UserId(2)),
            (ch(C1), UserId(5)),
            (ch(C2), UserId(5)),
        ]
    );
    assert_eq!((report.keys, report.loaded, report.cached), (6, 6, 0));
    assert_eq!(
        report.seen_range,
        Some((UnixTime(NOW.0 - 1), UnixTime(NOW.0 - 30)))
    );
    for (c, u) in [(C3, 3), (C1, 3), (C2, 5)] {
        assert_eq!(
            h.cache.get_local(MembershipKey::new(c, UserId(u))),
            Some(ChatMemberStatus::Member),
            "warmed keys are cached"
        );
    }
    assert_eq!(h.cache.get_local(MembershipKey::new(C1, UserId(1))), None);

    // A second run finds everything cached and makes no call; one group only.
    h.tg.clear_calls();
    let again = h
        .warm_up(WarmConfig {
            max_members: 2,
            ..fast()
        })
        .run(WarmScope::Group(G1), std::future::pending())
        .await
        .expect("warm-up");
    assert_eq!((again.groups, again.members, again.keys), (1, 2, 4));
    assert_eq!((again.cached, again.loaded), (4, 0));
    assert!(h.member_calls().is_empty(), "cached keys cost no call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_when_every_recent_member_is_warm_and_old_ones_are_left() {
    let h = Harness::new(DispatchConfig::default()).await;
    h.seen(&[(G2, 1, 60), (G2, 2, 3 * 3600), (G2, 3, 10)]).await;
    let report = h
        .warm_up(WarmConfig {
            seen_within: Duration::from_secs(3600),
            ..fast()
        })
        .run(WarmScope::All, std::future::pending())
        .await
        .expect("warm-up");
    assert_eq!(report.stop, Some(WarmStop::Done));
    assert_eq!(
        h.member_calls(),
        vec![(ch(C3), UserId(3)), (ch(C3), UserId(1))],
        "a member seen 3 h ago is outside a 1 h window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_to_the_rate() {
    let h = Harness::new(DispatchConfig::default()).await;
    let rows: Vec<_> = (1..=12).map(|u| (G2, u, u)).collect();
    h.seen(&rows).await;
    let started = std::time::Instant::now();
    let report = h
        .warm_up(WarmConfig {
            calls_per_second: 20,
            concurrency: 2,
            ..fast()
        })
        .run(WarmScope::All, std::future::pending())
        .await
        .expect("warm-up");
    let took = started.elapsed();
    assert_eq!(report.loaded, 12);
    // 12 calls at 20/s: at least 10 intervals of 50 ms after the first concurrent pair.
    assert!(took >= Duration::from_millis(450), "12 calls in {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let times: Vec<_> = h.tg.timed_calls().into_iter().map(|c| c.at).collect();
    for window in times.windows(3) {
        assert!(
            window[2] - window[0] >= Duration::from_millis(45),
            "more than 2 calls within 50 ms: {times:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_at_the_deadline_and_at_the_stop_signal() {
    let h = Harness::new(DispatchConfig::default()).await;
    let rows: Vec<_> = (1..=100).map(|u| (G2, u, u)).collect();
    h.seen(&rows).await;
    let slow = WarmConfig {
        calls_per_second: 10,
        max_duration: Duration::from_millis(350),
        ..fast()
    };
    let started = std::time::Instant::now();
    let report = h
        .warm_up(slow)
        .run(WarmScope::All, std::future::pending())
        .await
        .expect("warm-up");
    assert_eq!(report.stop, Some(WarmStop::Deadline));
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!((2..=6).contains(&report.loaded), "{report:?}");

    h.tg.clear_calls();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = h.warm_up(WarmConfig {
        max_duration: Duration::from_secs(60),
        ..slow
    });
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _ = tx.send(());
    };
    let started = std::time::Instant::now();
    let (report, ()) = tokio::join!(
        run.run(WarmScope::All, async {
            let _ = rx.await;
        }),
        stopper
    );
    let report = report.expect("warm-up");
    assert_eq!(report.stop, Some(WarmStop::Stopped));
    assert!(started.elapsed() < Duration::from_millis(700));
    assert!(h.member_calls().len() <= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_bot_cannot_read_is_skipped_after_one_call() {
    let h = Harness::new(DispatchConfig::default()).await;
    let tg = h.tg.clone().set_bot_channel_admin(C1, false);
    drop(tg);
    h.seen(&[(G1, 1, 1), (G1, 2, 2), (G1, 3, 3)]).await;
    let report = h
        .warm_up(fast())
        .run(WarmScope::All, std::future::pending())
        .await
        .expect("warm-up");
    assert_eq!(report.stop, Some(WarmStop::Done));
    assert_eq!(report.skipped_channels, vec![C1]);
    assert_eq!(report.failed, 1);
    assert_eq!(report.loaded, 3, "C2 is still warmed for every member");
    let c1_calls = h
        .member_calls()
        .iter()
        .filter(|(c, _)| *c == ch(C1))
        .count();
    assert_eq!(c1_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_unenforced_groups_are_errors() {
    let h = Harness::new(DispatchConfig::default()).await;
    let err = h
        .warm_up(fast())
        .run(WarmScope::Group(GroupId(-999)), std::future::pending())
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, WarmError::UnknownGroup(GroupId(-999))),
        "{err}"
    );
    h.store.unprotect(G2, NOW).await.expect("unprotect");
    let err = h
        .warm_up(fast())
        .run(WarmScope::Group(G2), std::future::pending())
        .await
        .expect_err("not enforced");
    assert!(err.to_string().contains("not enforced"), "{err}");
    assert!(WarmUp::new(
        WarmPorts {
            store: Arc::clone(&h.store),
            cache: h.cache.clone(),
            dispatcher: h.dispatcher.clone(),
            clock: Arc::new(ManualClock::new(NOW)),
        },
        WarmConfig {
            calls_per_second: 0,
            ..fast()
        }
    )
    .is_err());
}

/// Live enforcement calls queued in the dispatcher (deletions at 10/s): the warm-up
/// makes no call until they are through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_while_live_calls_are_queued() {
    let h = Harness::new(DispatchConfig {
        actions_per_second: 10,
        ..DispatchConfig::default()
    })
    .await;
    h.seen(&[(G2, 1, 1), (G2, 2, 2)]).await;
    let mut live = tokio::task::JoinSet::new();
    for i in 0..8 {
        let d = h.dispatcher.lane(Lane::Enforcement);
        let tg = h.tg.clone();
        live.spawn(async move {
            let msg = tg.post_message(G1, UserId(7)).unwrap_or(MessageId(i));
            let _ = d.delete_message(ChatId::from(G1), msg).await;
        });
    }
    // Let the deletions queue up.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(h.dispatcher.queue_depth(Lane::Enforcement) > 0);
    let report = h
        .warm_up(fast())
        .run(WarmScope::All, std::future::pending())
        .await
        .expect("warm-up");
    while live.join_next().await.is_some() {}
    assert_eq!(report.loaded, 2);
    let calls = h.tg.timed_calls();
    let last_delete = calls
        .iter()
        .filter(|c| c.call.method() == Method::DeleteMessage)
        .map(|c| c.at)
        .max()
        .expect("deletions");
    let first_read = calls
        .iter()
        .filter(|c| c.call.method() == Method::GetChatMember)
        .map(|c| c.at)
        .min()
        .expect("reads");
    assert!(
        first_read >= last_delete,
        "the warm-up read before the queued live calls went"
    );
}
