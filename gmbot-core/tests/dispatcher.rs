//! The outbound dispatcher against the in-memory Telegram, on tokio's paused clock:
//! budgets, lane priority, bounded waiting, 429 pauses, retries and metrics.

use std::sync::Arc;
use std::time::Duration;

use gmbot_core::dispatch::{DispatchConfig, DispatchError, Dispatcher, Lane};
use gmbot_core::domain::{ChannelId, ChatId, ChatMemberStatus, GroupId, UserId};
use gmbot_core::telegram::{
    Call, MemoryTelegram, Method, OutgoingMessage, RecordedCall, TelegramApi, TelegramError,
};
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio::time::Instant;

const ALICE: UserId = UserId(11);

fn group(i: usize) -> GroupId {
    GroupId(-1_000_000 - i64::try_from(i).expect("small index"))
}

/// A Telegram with `groups` groups (all with ALICE as a member) and a dispatcher on it.
fn world(groups: usize, config: DispatchConfig) -> (MemoryTelegram, Dispatcher, Registry) {
    let mut tg = MemoryTelegram::new();
    for i in 0..groups {
        tg = tg
            .add_group(group(i))
            .set_member(group(i), ALICE, ChatMemberStatus::Member);
    }
    let registry = Registry::new();
    let api: Arc<dyn TelegramApi> = Arc::new(tg.clone());
    let dispatcher = Dispatcher::new(api, config, &registry).expect("valid dispatcher");
    (tg, dispatcher, registry)
}

fn text(s: &str) -> OutgoingMessage {
    OutgoingMessage {
        html: s.to_owned(),
        ..OutgoingMessage::default()
    }
}

fn times_of(calls: &[RecordedCall], method: Method) -> Vec<Instant> {
    calls
        .iter()
        .filter(|c| c.call.method() == method)
        .map(|c| c.at)
        .collect()
}

/// The largest number of instants in any half-open window `[t, t + window)`.
fn max_in_window(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// One sample line of the text exposition: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parsed text exposition of the registry.
fn samples(registry: &Registry) -> Vec<Sample> {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encodes");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("number"))
        })
        .collect()
}

/// Sum of the samples of `name` (for a histogram: its `_count`) matching `labels`.
fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let histogram_count = format!("{name}_count");
    samples(registry)
        .iter()
        .filter(|(n, _, _)| n == name || *n == histogram_count)
        .filter(|(_, ls, _)| {
            labels
                .iter()
                .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn one_group_gets_at_most_20_messages_a_minute() {
    let (tg, dispatcher, _registry) = world(1, DispatchConfig::default());
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let d = dispatcher.clone();
        tasks.spawn(async move {
            d.send_message(group(0).into(), &text(&format!("m{i}")))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("sent");
    }
    let elapsed = start.elapsed();
    // One message every 3 s after the first: 99 × 3 s. A strict 20-per-minute
    // window would allow 240 s at best; the bucket never beats it.
    assert!(elapsed >= Duration::from_secs(297), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(298), "{elapsed:?}");
    let sends = times_of(&tg.timed_calls(), Method::SendMessage);
    assert_eq!(sends.len(), 100);
    assert_eq!(max_in_window(&sends, Duration::from_secs(60)), 20);
}

#[tokio::test(start_paused = true)]
async fn messages_across_groups_run_at_30_per_second() {
    let (tg, dispatcher, _registry) = world(200, DispatchConfig::default());
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let d = dispatcher.clone();
        tasks.spawn(async move { d.send_message(group(i).into(), &text("hi")).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("sent");
    }
    let elapsed = start.elapsed().as_secs_f64();
    // 199 intervals of 1/30 s, each rounded up to tokio's 1 ms timer tick
    // (33.3 ms → 34 ms): between 29 and 30 messages per second.
    assert!(
        (199.0 / 30.0..=199.0 / 29.0).contains(&elapsed),
        "{elapsed}"
    );
    let sends = times_of(&tg.timed_calls(), Method::SendMessage);
    assert_eq!(max_in_window(&sends, Duration::from_secs(1)), 30);
}

#[tokio::test(start_paused = true)]
async fn moderation_writes_share_the_global_budget_but_not_the_group_one() {
    // 200 restrictions spread over 50 groups: bounded by 30/s overall, not by
    // 20/min per group (restrictions post nothing into the group).
    let (tg, dispatcher, _registry) = world(50, DispatchConfig::default());
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let d = dispatcher.clone();
        let user = UserId(100 + i64::try_from(i).expect("small"));
        tasks.spawn(async move { d.restrict_member(group(i % 50), user, None).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("restricted");
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        (199.0 / 30.0..=199.0 / 29.0).contains(&elapsed),
        "{elapsed}"
    );
    let restricts = times_of(&tg.timed_calls(), Method::RestrictMember);
    assert_eq!(restricts.len(), 200);
    assert_eq!(max_in_window(&restricts, Duration::from_secs(1)), 30);
}

#[tokio::test(start_paused = true)]
async fn reads_are_not_throttled_by_the_message_budget() {
    let channel = ChannelId(-100_777);
    let (tg, dispatcher, _registry) = world(1, DispatchConfig::default());
    let tg = tg.add_channel(channel);
    let start = Instant::now();
    // Saturate the message budget first.
    let mut sends = JoinSet::new();
    for _ in 0..50 {
        let d = dispatcher.clone();
        sends.spawn(async move { d.send_message(group(0).into(), &text("x")).await });
    }
    tokio::task::yield_now().await;
    let mut reads = JoinSet::new();
    for i in 0..500 {
        let d = dispatcher.clone();
        let user = UserId(1_000 + i);
        reads.spawn(async move { d.get_chat_member(channel.into(), user).await });
    }
    while let Some(r) = reads.join_next().await {
        assert_eq!(r.expect("task"), Ok(ChatMemberStatus::Left));
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "reads did not wait");
    assert_eq!(tg.count(Method::GetChatMember), 500);
    assert!(dispatcher.queue_depth(Lane::Notify) > 40);
    sends.abort_all();
}

#[tokio::test(start_paused = true)]
async fn a_read_budget_can_be_configured() {
    let config = DispatchConfig {
        reads_per_second: Some(100),
        ..DispatchConfig::default()
    };
    let (tg, dispatcher, _registry) = world(1, config);
    let start = Instant::now();
    let mut reads = JoinSet::new();
    for i in 0..201 {
        let d = dispatcher.lane(Lane::Bulk);
        reads.spawn(async move { d.get_chat_member(group(0).into(), UserId(1_000 + i)).await });
    }
    while let Some(r) = reads.join_next().await {
        r.expect("task").expect("read");
    }
    // A read bucket holds 20 ms of its rate (2 reads at 100/s): 2 at once, then 199 at 100/s.
    assert_eq!(start.elapsed(), Duration::from_millis(1_990));
    assert_eq!(tg.count(Method::GetChatMember), 201);
}

#[tokio::test(start_paused = true)]
async fn higher_lanes_go_first_under_contention() {
    let config = DispatchConfig {
        global_per_second: 10,
        ..DispatchConfig::default()
    };
    let (tg, dispatcher, _registry) = world(21, config);
    // Spend the only token, so everything below has to queue.
    dispatcher
        .send_message(group(20).into(), &text("first"))
        .await
        .expect("sent");
    let lanes = [
        Lane::Bulk,
        Lane::Notify,
        Lane::Enforcement,
        Lane::Interactive,
    ];
    let mut tasks = JoinSet::new();
    // Lowest lane first, so arrival order is the opposite of priority order.
    for (l, lane) in lanes.iter().enumerate() {
        for k in 0..5 {
            let api = dispatcher.lane(*lane);
            let chat = group(l * 5 + k);
            tasks.spawn(async move { api.send_message(chat.into(), &text("x")).await });
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("sent");
    }
    let served: Vec<Lane> = tg
        .calls()
        .iter()
        .skip(1)
        .map(|c| {
            let Call::SendMessage { chat, .. } = c else {
                panic!("unexpected call {c:?}");
            };
            let index = (-chat.get() - 1_000_000) as usize;
            lanes[index / 5]
        })
        .collect();
    let mut expected = Vec::new();
    for lane in Lane::ALL {
        expected.extend([lane; 5]);
    }
    assert_eq!(served, expected);
}

#[tokio::test(start_paused = true)]
async fn bulk_is_not_starved_by_constant_interactive_load() {
    let config = DispatchConfig::default(); // 30/s, starvation limit 5 s
    let limit = config.starvation_limit;
    let (tg, dispatcher, _registry) = world(400, config);
    let start = Instant::now();
    // 40 interactive messages/s for 9 s (more than the 30/s budget), each to its own group.
    let producer = {
        let d = dispatcher.clone();
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            for i in 0..360 {
                let api = d.lane(Lane::Interactive);
                tasks.spawn(async move { api.send_message(group(i).into(), &text("i")).await });
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("task").expect("sent");
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bulk_start = Instant::now();
    dispatcher
        .lane(Lane::Bulk)
        .send_message(group(399).into(), &text("bulk"))
        .await
        .expect("sent");
    let waited = bulk_start.elapsed();
    // It waits while higher lanes keep the budget busy...
    assert!(waited >= limit, "{waited:?}");
    // ...but no longer than the starvation limit plus one token interval.
    assert!(
        waited <= limit + Duration::from_millis(34),
        "bulk waited {waited:?}"
    );
    // The interactive load was really saturating the budget meanwhile.
    assert!(dispatcher.queue_depth(Lane::Interactive) > 0);
    producer.await.expect("producer");
    assert!(start.elapsed() > Duration::from_secs(9));
    assert_eq!(tg.count(Method::SendMessage), 361);
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_that_chat_exactly_while_others_proceed() {
    let (tg, dispatcher, registry) = world(2, DispatchConfig::default());
    let (a, b) = (ChatId::from(group(0)), ChatId::from(group(1)));
    tg.fail_next(
        Method::SendMessage,
        TelegramError::RetryAfter {
            retry_after: Duration::from_secs(7),
        },
    );
    let start = Instant::now();
    let first = {
        let d = dispatcher.clone();
        tokio::spawn(async move { d.send_message(a, &text("a1")).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = {
        let d = dispatcher.clone();
        tokio::spawn(async move { d.send_message(a, &text("a2")).await })
    };
    dispatcher
        .send_message(b, &text("b1"))
        .await
        .expect("b goes");
    assert_eq!(start.elapsed(), Duration::from_secs(1), "b was not held");
    first.await.expect("task").expect("a1 retried");
    second.await.expect("task").expect("a2 sent");
    let at = |chat: ChatId| -> Vec<Duration> {
        tg.timed_calls()
            .iter()
            .filter(|c| c.call.chat() == Some(chat))
            .map(|c| c.at - start)
            .collect()
    };
    // a1 at 0 (429), retried at exactly 7 s; a2 behind it, 3 s later
    // (20/min; the wake-up rounds up to tokio's 1 ms tick).
    let a_calls = at(a);
    assert_eq!(a_calls[..2], [Duration::ZERO, Duration::from_secs(7)]);
    assert!(
        a_calls[2] >= Duration::from_secs(10) && a_calls[2] <= Duration::from_millis(10_002),
        "{a_calls:?}"
    );
    assert_eq!(a_calls.len(), 3);
    assert_eq!(at(b), vec![Duration::from_secs(1)]);
    assert_eq!(
        counter(&registry, "gmbot_telegram_429_total", &[("lane", "notify")]),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_global_retry_after_pauses_everything() {
    let (tg, dispatcher, _registry) = world(1, DispatchConfig::default());
    tg.fail_next(
        Method::AnswerCallback,
        TelegramError::RetryAfter {
            retry_after: Duration::from_secs(5),
        },
    );
    let start = Instant::now();
    let answer = {
        let d = dispatcher.clone();
        tokio::spawn(async move { d.answer_callback("cb", Some("ok"), false).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let message = text("x");
    let (read, send) = tokio::join!(
        dispatcher.get_chat_member(group(0).into(), ALICE),
        dispatcher.send_message(group(0).into(), &message),
    );
    assert_eq!(read, Ok(ChatMemberStatus::Member));
    assert!(send.is_ok());
    answer.await.expect("task").expect("answered on retry");
    let calls = tg.timed_calls();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[0].at, start);
    for c in &calls[1..] {
        assert_eq!(c.at - start, Duration::from_secs(5), "{:?}", c.call);
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_backoff_up_to_the_limit() {
    let config = DispatchConfig {
        max_retries: 3,
        backoff_base: Duration::from_millis(400),
        ..DispatchConfig::default()
    };
    let (tg, dispatcher, registry) = world(1, config);
    let bad_gateway = TelegramError::Server {
        code: 502,
        description: "Bad Gateway".into(),
    };
    tg.fail_next_times(Method::GetChatMember, bad_gateway.clone(), 10);
    let result = dispatcher.get_chat_member(group(0).into(), ALICE).await;
    assert_eq!(result, Err(bad_gateway));
    let times = times_of(&tg.timed_calls(), Method::GetChatMember);
    assert_eq!(times.len(), 4, "one call and three retries");
    for (k, pair) in times.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let full = Duration::from_millis(400) * 2u32.pow(u32::try_from(k).expect("small"));
        // Jittered into [full/2, full], rounded up to tokio's 1 ms timer.
        assert!(
            gap >= full / 2 && gap <= full + Duration::from_millis(1),
            "retry {k}: {gap:?}"
        );
    }
    assert_eq!(
        counter(
            &registry,
            "gmbot_telegram_calls_total",
            &[("method", "getChatMember"), ("outcome", "server")]
        ),
        4.0
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failures_below_the_limit_end_in_success() {
    let (tg, dispatcher, registry) = world(1, DispatchConfig::default());
    tg.fail_next_times(
        Method::SendMessage,
        TelegramError::Network("connection reset".into()),
        2,
    );
    let id = dispatcher
        .send_message(group(0).into(), &text("hello"))
        .await
        .expect("third attempt succeeds");
    assert_eq!(tg.count(Method::SendMessage), 3);
    assert_eq!(tg.sent_messages().len(), 1);
    assert_eq!(tg.sent_messages()[0].id, id);
    let ok = counter(
        &registry,
        "gmbot_telegram_calls_total",
        &[("method", "sendMessage"), ("outcome", "ok")],
    );
    let net = counter(
        &registry,
        "gmbot_telegram_calls_total",
        &[("method", "sendMessage"), ("outcome", "network")],
    );
    assert_eq!((ok, net), (1.0, 2.0));
}

#[tokio::test(start_paused = true)]
async fn other_errors_return_at_once() {
    let channel = ChannelId(-100_555);
    let (tg, dispatcher, _registry) = world(1, DispatchConfig::default());
    let tg = tg
        .add_channel(channel)
        .set_bot_channel_admin(channel, false);
    let start = Instant::now();
    let err = dispatcher
        .get_chat_member(channel.into(), ALICE)
        .await
        .expect_err("not a channel admin");
    assert_eq!(
        err,
        TelegramError::NotEnoughRights("member list is inaccessible".into())
    );
    tg.fail_next(
        Method::SendMessage,
        TelegramError::BadRequest("nope".into()),
    );
    let err = dispatcher
        .send_message(group(0).into(), &text("x"))
        .await
        .expect_err("bad request");
    assert_eq!(err, TelegramError::BadRequest("nope".into()));
    // Telegram refuses to restrict the owner: no retry either.
    let owner = UserId(5);
    let tg = tg.set_member(group(0), owner, ChatMemberStatus::Creator);
    let err = dispatcher
        .restrict_member(group(0), owner, None)
        .await
        .expect_err("owner");
    assert_eq!(
        err,
        TelegramError::BadRequest("can't remove chat owner".into())
    );
    // One attempt each; a retry would have backed off ≥ 250 ms.
    assert_eq!(tg.calls().len(), 3);
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_are_recorded_with_bounded_labels() {
    let config = DispatchConfig {
        global_per_second: 10,
        ..DispatchConfig::default()
    };
    let (tg, dispatcher, registry) = world(5, config);
    let mut tasks = JoinSet::new();
    for i in 0..5 {
        let api = dispatcher.lane(Lane::Bulk);
        tasks.spawn(async move { api.unrestrict_member(group(i), ALICE).await });
    }
    tokio::task::yield_now().await;
    assert_eq!(
        counter(&registry, "gmbot_dispatch_queue_depth", &[("lane", "bulk")]),
        4.0
    );
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("unrestricted");
    }
    assert_eq!(tg.count(Method::UnrestrictMember), 5);
    let c = |name: &str, labels: &[(&str, &str)]| counter(&registry, name, labels);
    assert_eq!(
        c(
            "gmbot_telegram_calls_total",
            &[("method", "unrestrictChatMember"), ("outcome", "ok")]
        ),
        5.0
    );
    assert_eq!(
        c(
            "gmbot_telegram_call_duration_seconds",
            &[("method", "unrestrictChatMember")]
        ),
        5.0
    );
    assert_eq!(c("gmbot_ratelimit_waits_total", &[("lane", "bulk")]), 4.0);
    assert_eq!(
        c("gmbot_ratelimit_waits_total", &[("lane", "interactive")]),
        0.0
    );
    assert_eq!(c("gmbot_dispatch_queue_depth", &[("lane", "bulk")]), 0.0);
    // Every lane's series exists from the start, and labels come from closed sets.
    for (_, labels, _) in samples(&registry) {
        for (name, value) in labels {
            let allowed: Vec<&str> = match name.as_str() {
                "lane" => Lane::ALL.iter().map(|l| l.as_str()).collect(),
                "method" => Method::ALL.iter().map(|m| m.as_str()).collect(),
                "le" => continue,
                "outcome" => vec![
                    "ok",
                    "retry_after",
                    "not_enough_rights",
                    "chat_not_found",
                    "user_not_found",
                    "forbidden",
                    "bad_request",
                    "server",
                    "network",
                ],
                other => panic!("unexpected label {other}"),
            };
            assert!(allowed.contains(&value.as_str()), "{value}");
        }
    }
    let lanes_seen = samples(&registry)
        .iter()
        .filter(|(n, _, _)| n == "gmbot_telegram_429_total")
        .count();
    assert_eq!(lanes_seen, 4);
}

#[tokio::test]
async fn construction_checks_config_and_registry() {
    let registry = Registry::new();
    let api: Arc<dyn TelegramApi> = Arc::new(MemoryTelegram::new());
    let bad = DispatchConfig {
        global_per_second: 0,
        ..DispatchConfig::default()
    };
    assert!(matches!(
        Dispatcher::new(Arc::clone(&api), bad, &registry),
        Err(DispatchError::Config { .. })
    ));
    let _first = Dispatcher::new(Arc::clone(&api), DispatchConfig::default(), &registry)
        .expect("first dispatcher");
    assert!(matches!(
        Dispatcher::new(api, DispatchConfig::default(), &registry),
        Err(DispatchError::Metrics(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_does_not_hold_up_the_queue() {
    let config = DispatchConfig {
        actions_per_second: 1,
        ..DispatchConfig::default()
    };
    let (tg, dispatcher, _registry) = world(3, config);
    dispatcher
        .restrict_member(group(0), UserId(50), None)
        .await
        .expect("first");
    let start = Instant::now();
    let waiting = {
        let d = dispatcher.clone();
        tokio::spawn(async move { d.restrict_member(group(1), UserId(51), None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    waiting.abort();
    let _ = waiting.await;
    dispatcher
        .restrict_member(group(2), UserId(52), None)
        .await
        .expect("next");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(tg.count(Method::RestrictMember), 2);
    assert_eq!(dispatcher.queue_depth(Lane::Enforcement), 0);
}

#[tokio::test(start_paused = true)]
async fn a_paused_chat_holds_every_budgeted_call_until_the_pause_ends() {
    let (tg, dispatcher, _registry) = world(2, DispatchConfig::default());
    let (a, b) = (ChatId::from(group(0)), ChatId::from(group(1)));
    let start = Instant::now();
    dispatcher.pause_chat(a, Duration::from_secs(3));
    let d = dispatcher.clone();
    let held = tokio::spawn(async move {
        // No such message: the call is made (and answered "not found") after the pause.
        let _ = d.delete_message(a, gmbot_core::domain::MessageId(1)).await;
        d.send_message(a, &text("after")).await.expect("sent");
    });
    let _ = dispatcher
        .delete_message(b, gmbot_core::domain::MessageId(1))
        .await;
    assert_eq!(start.elapsed(), Duration::ZERO, "another chat is not held");
    held.await.expect("task");
    let at: Vec<Duration> = tg
        .timed_calls()
        .iter()
        .filter(|c| c.call.chat() == Some(a))
        .map(|c| c.at - start)
        .collect();
    assert_eq!(at.len(), 2);
    assert!(at.iter().all(|t| *t >= Duration::from_secs(3)), "{at:?}");
}
