//! The shared budget: dispatchers of several instances sharing one Redis never exceed the
//! bot's budget in any window; a Redis outage falls back to `1/N` each and back; a 429 seen
//! by one instance pauses the others; garbage from Redis is an error, never a panic.
//!
//! Needs Redis at 127.0.0.1:6379 (every test uses its own key prefix and deletes its keys)
//! and `redis-server` on the PATH: the outage test starts a private one on a free port and
//! kills only that. Real time (the dispatchers talk to a real Redis), bounded: each test
//! stops its load by itself after a few seconds.

#[path = "support/capture_log.rs"]
mod capture_log;
#[path = "support/private_redis.rs"]
mod private_redis;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capture_log::{count_logs, install_logger};
use gmbot_core::dispatch::{
    BucketRate, BudgetBucket, BudgetError, DispatchConfig, Dispatcher, RedisBudget,
    RedisBudgetConfig, ReserveOptions, SharedBudget, SharedBudgetOptions, SlotRequest,
};
use gmbot_core::domain::{ChatId, ChatMemberStatus, GroupId, MessageId, UserId};
use gmbot_core::telegram::{
    ChatTarget, MemoryTelegram, Method, OutgoingMessage, TelegramApi, TelegramError,
};
use private_redis::PrivateRedis;
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio::time::Instant;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const ALICE: UserId = UserId(11);
const GROUPS: usize = 60;

// ---------------------------------------------------------------- log capture

// ---------------------------------------------------------------- fixtures

fn unique_prefix(case: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "gmbot-test:budget:{case}:{}:{nanos}:{}:",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis url");
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(c)) => c,
        other => panic!(
            "Redis is unreachable at {url} ({other:?}); these tests need it: start it with \
             `redis-server --daemonize yes --port 6379 --save '' --appendonly no`"
        ),
    }
}

async fn delete_prefix(url: &str, prefix: &str) {
    let mut conn = connect(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

fn group(i: usize) -> GroupId {
    GroupId(-1_000_000 - i64::try_from(i).expect("small index"))
}

fn telegram() -> MemoryTelegram {
    let mut tg = MemoryTelegram::new();
    for i in 0..GROUPS {
        tg = tg
            .add_group(group(i))
            .set_member(group(i), ALICE, ChatMemberStatus::Member);
    }
    tg
}

fn options(url: &str, prefix: &str, instances: u32) -> SharedBudgetOptions {
    let budget = RedisBudget::new(&RedisBudgetConfig {
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        op_timeout: Duration::from_millis(250),
    })
    .expect("budget");
    SharedBudgetOptions {
        instances: Some(instances),
        probe_interval: Duration::from_millis(200),
        settle: Duration::from_millis(400),
        ..SharedBudgetOptions::new(Arc::new(budget))
    }
}

struct Instance {
    tg: MemoryTelegram,
    dispatcher: Dispatcher,
    registry: Registry,
}

fn instance(options: SharedBudgetOptions) -> Instance {
    let tg = telegram();
    let registry = Registry::new();
    let dispatcher = Dispatcher::with_shared_budget(
        Arc::new(tg.clone()),
        DispatchConfig::default(),
        options,
        &registry,
    )
    .expect("dispatcher");
    Instance {
        tg,
        dispatcher,
        registry,
    }
}

/// Keeps `workers` restrict calls (and as many deletions) in flight on `d` until `stop`.
fn restrict_load(d: &Dispatcher, workers: usize, stop: &Arc<AtomicBool>, tasks: &mut JoinSet<()>) {
    for w in 0..workers {
        let d = d.clone();
        let stop = Arc::clone(stop);
        tasks.spawn(async move {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let g = group((w + k) % GROUPS);
                let _ = d.restrict_member(g, ALICE, None).await;
                let _ = d
                    .delete_message(g.into(), MessageId(i64::try_from(k).unwrap_or(0) + 1))
                    .await;
                k += 1;
            }
        });
    }
}

fn times(tg: &MemoryTelegram, method: Method) -> Vec<Instant> {
    tg.timed_calls()
        .into_iter()
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

fn merged(instances: &[&Instance], method: Method) -> Vec<Instant> {
    instances
        .iter()
        .flat_map(|i| times(&i.tg, method))
        .collect()
}

/// Sum of the samples of `name` (with `label="value"` if given) in the text exposition.
fn metric(registry: &Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encodes");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            let wanted = label.is_none_or(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")));
            (n == name && wanted)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

fn text(s: &str) -> OutgoingMessage {
    OutgoingMessage {
        html: s.to_owned(),
        ..OutgoingMessage::default()
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_spend_one_budget_in_every_window() {
    let prefix = unique_prefix("three");
    let instances: Vec<Instance> = (0..3)
        .map(|_| instance(options(REDIS_URL, &prefix, 3)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for (n, i) in instances.iter().enumerate() {
        restrict_load(&i.dispatcher, 20, &stop, &mut tasks);
        // Every instance writes to every group twice, and to private chats: the global
        // budget and each group's 20/min are contended by all three.
        for round in 0..2 {
            for g in 0..GROUPS {
                let d = i.dispatcher.clone();
                tasks.spawn(async move {
                    let _ = d
                        .send_message(group(g).into(), &text(&format!("{n}/{round}/{g}")))
                        .await;
                });
            }
        }
    }
    let run = Duration::from_secs(4);
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let all: Vec<&Instance> = instances.iter().collect();
    let second = Duration::from_secs(1);
    let restricts = merged(&all, Method::RestrictMember);
    let deletes = merged(&all, Method::DeleteMessage);
    let messages = merged(&all, Method::SendMessage);
    let per_instance: Vec<usize> = instances
        .iter()
        .map(|i| times(&i.tg, Method::RestrictMember).len())
        .collect();
    eprintln!(
        "restricts {} (per instance {per_instance:?}, max/s {}), deletes {} (max/s {}), \
         messages {} (max/s {})",
        restricts.len(),
        max_in_window(&restricts, second),
        deletes.len(),
        max_in_window(&deletes, second),
        messages.len(),
        max_in_window(&messages, second),
    );
    for i in &instances {
        eprintln!(
            "fallbacks {} reserved {} used {} expired {} garbage {} unavailable {}",
            metric(&i.registry, "gmbot_budget_fallbacks_total", None),
            metric(
                &i.registry,
                "gmbot_budget_slots_total",
                Some(("outcome", "reserved"))
            ),
            metric(
                &i.registry,
                "gmbot_budget_slots_total",
                Some(("outcome", "used"))
            ),
            metric(
                &i.registry,
                "gmbot_budget_slots_total",
                Some(("outcome", "expired"))
            ),
            metric(
                &i.registry,
                "gmbot_budget_reservations_total",
                Some(("outcome", "garbage"))
            ),
            metric(
                &i.registry,
                "gmbot_budget_reservations_total",
                Some(("outcome", "unavailable"))
            ),
        );
    }
    assert!(max_in_window(&restricts, second) <= 30, "restrict budget");
    assert!(max_in_window(&deletes, second) <= 30, "delete budget");
    assert!(max_in_window(&messages, second) <= 30, "message budget");
    // One group's 20/min: slots 3 s apart (less the grace and spread), whichever
    // instance sends.
    let mut per_group: HashMap<ChatId, Vec<Instant>> = HashMap::new();
    for i in &instances {
        for c in i.tg.timed_calls() {
            if c.call.method() == Method::SendMessage {
                if let Some(chat) = c.call.chat() {
                    per_group.entry(chat).or_default().push(c.at);
                }
            }
        }
    }
    for (chat, at) in &per_group {
        assert!(
            max_in_window(at, Duration::from_millis(2_900)) <= 1,
            "group {chat:?} got two messages within 2.9 s"
        );
    }
    // The budget is spent, not wasted: most of the 4 s worth, and by every instance.
    let budget = 4 * 30;
    assert!(
        restricts.len() * 10 >= budget * 6,
        "only {} restricts in 4 s",
        restricts.len()
    );
    assert!(messages.len() >= GROUPS, "{} messages", messages.len());
    assert!(per_instance.iter().all(|&n| n >= 10), "{per_instance:?}");
    let reserved = metric(
        &instances[0].registry,
        "gmbot_budget_slots_total",
        Some(("outcome", "reserved")),
    );
    let round_trips = metric(
        &instances[0].registry,
        "gmbot_budget_reservations_total",
        Some(("outcome", "ok")),
    );
    eprintln!("instance 0: {reserved} slots reserved in {round_trips} round trips");
    assert!(reserved > 0.0);
    assert_eq!(
        metric(&instances[0].registry, "gmbot_budget_fallbacks_total", None),
        0.0
    );
    drop(instances);
    delete_prefix(REDIS_URL, &prefix).await;
}

/// The control: without the shared budget, three instances send three budgets (what the
/// test above would catch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_budget_three_instances_send_three_budgets() {
    let instances: Vec<Instance> = (0..3)
        .map(|_| {
            let tg = telegram();
            let registry = Registry::new();
            let dispatcher =
                Dispatcher::new(Arc::new(tg.clone()), DispatchConfig::default(), &registry)
                    .expect("dispatcher");
            Instance {
                tg,
                dispatcher,
                registry,
            }
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for i in &instances {
        restrict_load(&i.dispatcher, 20, &stop, &mut tasks);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let all: Vec<&Instance> = instances.iter().collect();
    let max = max_in_window(
        &merged(&all, Method::RestrictMember),
        Duration::from_secs(1),
    );
    assert!(max > 45, "three local budgets gave only {max} in a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_to_one_nth_each_and_returns() {
    install_logger();
    let mut server = PrivateRedis::start().await;
    let url = server.url();
    let target = url.trim_start_matches("redis://").to_owned();
    let prefix = unique_prefix("outage");
    let a = instance(options(&url, &prefix, 2));
    let b = instance(options(&url, &prefix, 2));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    restrict_load(&a.dispatcher, 20, &stop, &mut tasks);
    restrict_load(&b.dispatcher, 20, &stop, &mut tasks);

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(a.dispatcher.budget_fallback(), Some(false));
    server.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.dispatcher.budget_fallback(), Some(true), "A fell back");
    assert_eq!(b.dispatcher.budget_fallback(), Some(true), "B fell back");
    assert_eq!(metric(&a.registry, "gmbot_budget_fallback", None), 1.0);
    assert_eq!(metric(&a.registry, "gmbot_budget_instances", None), 2.0);
    let restarted = Instant::now();
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.dispatcher.budget_fallback() != Some(false)
        || b.dispatcher.budget_fallback() != Some(false)
    {
        assert!(
            Instant::now() < deadline,
            "the instances did not return to the shared budget"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let second = Duration::from_secs(1);
    let all = merged(&[&a, &b], Method::RestrictMember);
    let between = |from: Instant, to: Instant, t: &[Instant]| -> Vec<Instant> {
        t.iter()
            .copied()
            .filter(|x| *x >= from && *x < to)
            .collect()
    };
    let a_times = times(&a.tg, Method::RestrictMember);
    let b_times = times(&b.tg, Method::RestrictMember);
    // The fallback proper: from a second after the kill to the restart.
    let fallback_a = between(killed + second, restarted, &a_times);
    let fallback_b = between(killed + second, restarted, &b_times);
    let after = between(recovered, recovered + Duration::from_secs(2), &all);
    eprintln!(
        "restricts: {} in all (max/s {}); in the fallback A {} (max/s {}), B {} (max/s {}); \
         {} in the 2 s after the return; return took {:?}",
        all.len(),
        max_in_window(&all, second),
        fallback_a.len(),
        max_in_window(&fallback_a, second),
        fallback_b.len(),
        max_in_window(&fallback_b, second),
        after.len(),
        recovered - restarted,
    );
    // Never over the bot's budget, in any window: before, across both transitions, after.
    assert!(max_in_window(&all, second) <= 30, "bot budget exceeded");
    assert!(
        max_in_window(&max_deletes(&a, &b), second) <= 30,
        "delete budget exceeded"
    );
    // Each instance on its half during the outage, and still working.
    assert!(max_in_window(&fallback_a, second) <= 15);
    assert!(max_in_window(&fallback_b, second) <= 15);
    assert!(
        fallback_a.len() >= 15 && fallback_b.len() >= 15,
        "calls went on during the outage"
    );
    assert!(after.len() >= 20, "calls went on after the return");
    // Said once each, not once per call: one warning and one recovery line per instance.
    assert_eq!(
        count_logs(log::Level::Warn, &[&target, "unreachable"]),
        2,
        "one warning per instance"
    );
    assert_eq!(
        count_logs(log::Level::Info, &[&target, "answers again"]),
        2,
        "one recovery line per instance"
    );
    for i in [&a, &b] {
        assert_eq!(
            metric(&i.registry, "gmbot_budget_fallbacks_total", None),
            1.0
        );
        assert_eq!(metric(&i.registry, "gmbot_budget_fallback", None), 0.0);
    }
    drop((a, b));
    drop(server);
}

fn max_deletes(a: &Instance, b: &Instance) -> Vec<Instant> {
    merged(&[a, b], Method::DeleteMessage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_seen_by_one_instance_pauses_the_others() {
    let prefix = unique_prefix("pause");
    let a = instance(options(REDIS_URL, &prefix, 2));
    let b = instance(options(REDIS_URL, &prefix, 2));
    let conn = connect(REDIS_URL).await;
    let pause_left = |key: String| {
        let mut conn = conn.clone();
        async move {
            let until: Option<i64> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("GET");
            let (s, us): (i64, i64) = redis::cmd("TIME")
                .query_async(&mut conn)
                .await
                .expect("TIME");
            until.map(|u| {
                Duration::from_micros(u64::try_from(u - (s * 1_000_000 + us)).unwrap_or(0))
            })
        }
    };

    // A chat's 429: B's next message to that group waits it out; to another group it does not.
    let g = group(1);
    a.tg.fail_next(
        Method::SendMessage,
        TelegramError::RetryAfter {
            retry_after: Duration::from_secs(2),
        },
    );
    let sender = a.dispatcher.clone();
    let first = tokio::spawn(async move { sender.send_message(g.into(), &text("a")).await });
    let key = format!("{prefix}pause:{}", ChatId::from(g).get());
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        if let Some(left) = pause_left(key.clone()).await {
            break left;
        }
        assert!(
            Instant::now() < deadline,
            "the chat pause never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let started = Instant::now();
    b.dispatcher
        .send_message(group(2).into(), &text("other group"))
        .await
        .expect("another group is not paused");
    assert!(started.elapsed() < Duration::from_millis(500));
    let started = Instant::now();
    b.dispatcher
        .send_message(g.into(), &text("b"))
        .await
        .expect("sent after the pause");
    assert!(
        started.elapsed() + Duration::from_millis(50) >= left,
        "B's message went after {:?} of a {left:?} pause",
        started.elapsed()
    );
    first
        .await
        .expect("joins")
        .expect("A's message went after its pause");

    // A bot-wide 429 (a call without a chat): B's restrictions wait too.
    a.tg.fail_next(
        Method::GetChat,
        TelegramError::RetryAfter {
            retry_after: Duration::from_secs(2),
        },
    );
    let getter = a.dispatcher.clone();
    let first = tokio::spawn(async move {
        getter
            .get_chat(&ChatTarget::Username(
                gmbot_core::domain::ChannelUsername::parse("somechannel").expect("valid"),
            ))
            .await
    });
    let key = format!("{prefix}pause");
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        if let Some(left) = pause_left(key.clone()).await {
            break left;
        }
        assert!(
            Instant::now() < deadline,
            "the bot's pause never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let started = Instant::now();
    b.dispatcher
        .restrict_member(group(3), ALICE, None)
        .await
        .expect("restricted after the pause");
    assert!(
        started.elapsed() + Duration::from_millis(50) >= left,
        "B's restriction went after {:?} of a {left:?} pause",
        started.elapsed()
    );
    let _ = first.await.expect("joins");
    drop((a, b));
    delete_prefix(REDIS_URL, &prefix).await;
}

fn restrict_request() -> Vec<SlotRequest> {
    vec![SlotRequest {
        buckets: vec![(
            BudgetBucket::Restrict,
            BucketRate {
                interval: Duration::from_millis(34),
                burst: 1,
            },
        )],
        count: 1,
    }]
}

fn reserve_options() -> ReserveOptions {
    ReserveOptions {
        horizon: Duration::from_millis(200),
        grace: Duration::from_millis(30),
        resume_gap: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_in_redis_are_errors_and_the_dispatcher_falls_back() {
    let prefix = unique_prefix("garbage");
    let mut conn = connect(REDIS_URL).await;
    let budget = RedisBudget::new(&RedisBudgetConfig {
        url: REDIS_URL.to_owned(),
        key_prefix: prefix.clone(),
        op_timeout: Duration::from_millis(500),
    })
    .expect("budget");

    // Sound first: a slot now, then none within 34 ms.
    let answer = budget
        .reserve(&restrict_request(), reserve_options())
        .await
        .expect("reserves");
    assert_eq!(answer.reservations.len(), 1);
    assert_eq!(answer.reservations[0].slots.len(), 1);

    // A bucket key holding text.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}r"))
        .arg("banana")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let err = budget
        .reserve(&restrict_request(), reserve_options())
        .await
        .expect_err("a foreign value is an error");
    assert!(matches!(err, BudgetError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("does not hold a number"), "{err}");
    // A bucket key of another type.
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}r"))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}r"))
        .arg("x")
        .query_async(&mut conn)
        .await
        .expect("RPUSH");
    let err = budget
        .reserve(&restrict_request(), reserve_options())
        .await
        .expect_err("a list is an error");
    assert!(matches!(err, BudgetError::Protocol { .. }), "{err:?}");
    // The instance set of another type.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}inst"))
        .arg("7")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let err = budget
        .heartbeat("me", Duration::from_secs(5))
        .await
        .expect_err("a string instance set is an error");
    assert!(matches!(err, BudgetError::Protocol { .. }), "{err:?}");

    // A dispatcher on those keys still restricts: it falls back and says why.
    let i = instance(options(REDIS_URL, &prefix, 2));
    tokio::time::timeout(
        Duration::from_secs(5),
        i.dispatcher.restrict_member(group(0), ALICE, None),
    )
    .await
    .expect("within 5 s")
    .expect("restricted on the fallback share");
    assert_eq!(i.dispatcher.budget_fallback(), Some(true));
    assert!(
        metric(
            &i.registry,
            "gmbot_budget_reservations_total",
            Some(("outcome", "garbage"))
        ) >= 1.0
    );
    drop(i);
    delete_prefix(REDIS_URL, &prefix).await;
}

/// A server that speaks RESP but answers every script with `reply`.
fn garbage_server(reply: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut out = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                loop {
                    // One command: *N then N bulk strings.
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let Some(n) = line
                        .trim()
                        .strip_prefix('*')
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        return;
                    };
                    let mut name = String::new();
                    for k in 0..n {
                        let mut len = String::new();
                        let _ = reader.read_line(&mut len);
                        let len: usize = len.trim().trim_start_matches('$').parse().unwrap_or(0);
                        let mut buf = vec![0u8; len + 2];
                        if reader.read_exact(&mut buf).is_err() {
                            return;
                        }
                        if k == 0 {
                            name = String::from_utf8_lossy(&buf[..len]).to_ascii_uppercase();
                        }
                    }
                    let answer = if name.starts_with("EVAL") {
                        reply
                    } else {
                        "+OK\r\n"
                    };
                    if out.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_of_the_wrong_shape_are_errors_not_panics() {
    for reply in [
        "+OK\r\n",
        ":5\r\n",
        "$6\r\nbanana\r\n",
        "*2\r\n$3\r\nabc\r\n:1\r\n",
        // No pause, no chat pause, no retry, 5 slots for a request of 1.
        "*4\r\n:0\r\n:0\r\n:-1\r\n:5\r\n",
        // Too short.
        "*2\r\n:0\r\n:0\r\n",
        // A slot in the past.
        "*5\r\n:0\r\n:0\r\n:-1\r\n:1\r\n:-7\r\n",
        // Too long.
        "*6\r\n:0\r\n:0\r\n:-1\r\n:1\r\n:7\r\n:9\r\n",
    ] {
        let port = garbage_server(reply);
        let budget = RedisBudget::new(&RedisBudgetConfig {
            url: format!("redis://127.0.0.1:{port}"),
            key_prefix: "gmbot-test:garbage:".into(),
            op_timeout: Duration::from_millis(500),
        })
        .expect("budget");
        let err = budget
            .reserve(&restrict_request(), reserve_options())
            .await
            .expect_err(reply);
        assert!(
            matches!(err, BudgetError::Protocol { .. }),
            "{reply:?}: {err:?}"
        );
        let beat = budget.heartbeat("me", Duration::from_secs(5)).await;
        assert!(
            matches!(beat, Err(BudgetError::Protocol { .. })),
            "{reply:?}: {beat:?}"
        );
    }
}
