//! The coordination contract (leases, claims, warning boards) run against both adapters (in-process and
//! Redis), plus what only Redis does: group events between instances, a lease taken over
//! after its holder vanished, and a Redis killed mid-lease (a private `redis-server`).
//!
//! Needs Redis at 127.0.0.1:6379 and `redis-server` on the PATH. Every test uses its own key
//! prefix and channel and deletes its keys at the end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gmbot_core::coordination::{
    BoardMember, BoardSlot, ClaimStore, GroupEvent, GroupEvents, HeldLease, LeaseStore,
    LocalCoordination, RedisCoordination, RedisCoordinationConfig, WarningBoard,
};
use gmbot_core::domain::{GroupId, MessageId, UserId};
use tokio::time::Instant;

#[path = "support/private_redis.rs"]
mod private_redis;

use private_redis::PrivateRedis;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn prefix(case: &str) -> String {
    format!(
        "gmbot:test:coord:{case}:{}:{:08x}:",
        std::process::id(),
        rand::random::<u32>()
    )
}

fn redis(prefix: &str, url: &str) -> RedisCoordination {
    let mut c = RedisCoordinationConfig::new(url);
    c.key_prefix = prefix.to_owned();
    c.events_channel = format!("{prefix}groups");
    c.op_timeout = Duration::from_millis(250);
    RedisCoordination::open(c).expect("valid URL")
}

/// Deletes the test's keys.
async fn cleanup(prefix: &str) {
    let client = redis::Client::open(REDIS_URL).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at 127.0.0.1:6379");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .expect("DEL");
    }
}

async fn lease_contract(store: Arc<dyn LeaseStore>) {
    let ttl = Duration::from_millis(600);
    let a = store
        .try_acquire("job", ttl)
        .await
        .expect("answers")
        .expect("free");
    assert!(
        store
            .try_acquire("job", ttl)
            .await
            .expect("answers")
            .is_none(),
        "held: nobody else gets it"
    );
    assert!(
        store
            .try_acquire("other", ttl)
            .await
            .expect("answers")
            .is_some(),
        "names are independent"
    );
    // Renewed with its token, it outlives its first time to live.
    for _ in 0..4 {
        tokio::time::sleep(ttl / 3).await;
        assert!(store.renew(&a).await.expect("answers"));
    }
    assert!(store
        .try_acquire("job", ttl)
        .await
        .expect("answers")
        .is_none());
    // A forged token neither renews nor releases.
    let mut forged = a.clone();
    forged.token = format!("{}:deadbeef", a.generation);
    assert!(!store.renew(&forged).await.expect("answers"));
    store.release(&forged).await.expect("answers");
    assert!(store
        .try_acquire("job", ttl)
        .await
        .expect("answers")
        .is_none());
    // Released: free at once, with a greater generation.
    store.release(&a).await.expect("answers");
    let b = store
        .try_acquire("job", ttl)
        .await
        .expect("answers")
        .expect("released");
    assert!(b.generation > a.generation);
    assert!(
        !store.renew(&a).await.expect("answers"),
        "an old tenure stays dead"
    );
    // Not renewed: it runs out by itself.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(!store.renew(&b).await.expect("answers"));
    let c = store
        .try_acquire("job", ttl)
        .await
        .expect("answers")
        .expect("expired");
    assert!(c.generation > b.generation);
    store.release(&a).await.expect("a stale release answers");
    assert!(
        store.renew(&c).await.expect("answers"),
        "a stale release does not touch the new tenure"
    );
}

async fn claim_contract(store: Arc<dyn ClaimStore>) {
    let ttl = Duration::from_millis(500);
    assert!(!store.is_claimed("w:-1:7").await.expect("answers"));
    assert!(store.claim("w:-1:7", ttl).await.expect("answers"));
    assert!(store.is_claimed("w:-1:7").await.expect("answers"));
    assert!(!store.claim("w:-1:7", ttl).await.expect("answers"));
    assert!(
        store.claim("w:-1:8", ttl).await.expect("answers"),
        "per key"
    );
    store.forget("w:-1:7").await.expect("answers");
    assert!(
        store.claim("w:-1:7", ttl).await.expect("answers"),
        "forgotten"
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(
        store.claim("w:-1:8", ttl).await.expect("answers"),
        "expired"
    );
}

fn member(id: i64, name: &str) -> BoardMember {
    BoardMember {
        id: UserId(id),
        name: name.to_owned(),
    }
}

/// One warning per group at a time: the first joiner posts, joiners meanwhile are queued and
/// handed to the poster, later ones edit; members are counted once and the first `max` named;
/// a cleared or expired board is posted afresh; another group is independent.
async fn board_contract(board: Arc<dyn WarningBoard>) {
    let (g, other) = (GroupId(-1_001), GroupId(-1_002));
    let ttl = Duration::from_millis(800);
    let a = [member(1, "Ann \"Quote\" <b>"), member(2, "Bob")];
    assert_eq!(
        board.join(g, "t1", &a, 3, ttl).await.expect("answers"),
        BoardSlot::Post
    );
    assert_eq!(
        board
            .join(g, "t2", &[member(2, "Bob"), member(3, "Cy")], 3, ttl)
            .await
            .expect("answers"),
        BoardSlot::Queued,
        "someone is posting"
    );
    assert!(
        board
            .posted(g, "t2", MessageId(9))
            .await
            .expect("answers")
            .is_none(),
        "only the slot's holder posts"
    );
    assert_eq!(
        board.shown(g).await.expect("answers"),
        None,
        "nothing shown while it is being posted"
    );
    let view = board
        .posted(g, "t1", MessageId(10))
        .await
        .expect("answers")
        .expect("the slot is t1's");
    assert_eq!(view.count, 3, "Bob counted once");
    assert_eq!(
        view.named,
        vec![a[0].clone(), a[1].clone(), member(3, "Cy")]
    );
    match board
        .join(g, "t3", &[member(4, "Di"), member(1, "Ann")], 3, ttl)
        .await
        .expect("answers")
    {
        BoardSlot::Shown {
            message,
            view,
            left,
        } => {
            assert_eq!(message, MessageId(10));
            assert_eq!(view.count, 4);
            assert_eq!(view.named.len(), 3, "at most max named");
            assert!(left <= ttl && left > Duration::ZERO, "{left:?}");
        }
        other => panic!("expected the shown warning, got {other:?}"),
    }
    let (message, seen) = board
        .shown(g)
        .await
        .expect("answers")
        .expect("a warning is shown");
    assert_eq!(message, MessageId(10));
    assert_eq!(seen.count, 4, "shown adds nobody");
    assert_eq!(seen.named.len(), 3);
    assert_eq!(board.shown(other).await.expect("answers"), None);
    assert_eq!(
        board
            .join(other, "t3", &[member(1, "Ann")], 3, ttl)
            .await
            .expect("answers"),
        BoardSlot::Post,
        "per group"
    );
    board
        .clear(g, "t9", Some(MessageId(11)))
        .await
        .expect("answers");
    assert!(
        matches!(
            board.join(g, "t4", &[], 3, ttl).await.expect("answers"),
            BoardSlot::Shown { .. }
        ),
        "a clear for another message leaves the board alone"
    );
    board
        .clear(g, "t9", Some(MessageId(10)))
        .await
        .expect("answers");
    assert_eq!(
        board
            .join(g, "t5", &[member(5, "Ed")], 3, ttl)
            .await
            .expect("answers"),
        BoardSlot::Post,
        "cleared: posted afresh"
    );
    board.clear(g, "t5", None).await.expect("answers");
    assert_eq!(
        board
            .join(g, "t6", &[member(5, "Ed")], 3, ttl)
            .await
            .expect("answers"),
        BoardSlot::Post
    );
    let view = board
        .posted(g, "t6", MessageId(12))
        .await
        .expect("answers")
        .expect("t6's");
    assert_eq!(view.count, 1, "a new board counts afresh");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(
        board
            .join(g, "t7", &[member(5, "Ed")], 3, ttl)
            .await
            .expect("answers"),
        BoardSlot::Post,
        "expired"
    );
}

#[tokio::test]
async fn the_in_process_adapter_keeps_the_contract() {
    let c = Arc::new(LocalCoordination::new());
    lease_contract(c.clone()).await;
    claim_contract(c.clone()).await;
    board_contract(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_adapter_keeps_the_contract() {
    let p = prefix("contract");
    let c = Arc::new(redis(&p, REDIS_URL));
    lease_contract(c.clone()).await;
    claim_contract(c.clone()).await;
    board_contract(c).await;
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_posts_a_groups_warning_and_the_others_join_it() {
    let p = prefix("board");
    let instances: Vec<Arc<RedisCoordination>> =
        (0..3).map(|_| Arc::new(redis(&p, REDIS_URL))).collect();
    let g = GroupId(-1_003);
    let mut tasks = Vec::new();
    for (i, c) in instances.iter().enumerate() {
        for k in 0..10 {
            let c = Arc::clone(c);
            let id = i64::try_from(i * 10 + k).expect("small") + 1;
            tasks.push(tokio::spawn(async move {
                let slot = c
                    .join(
                        g,
                        &format!("t{id}"),
                        &[member(id, "m")],
                        10,
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("answers");
                (id, slot)
            }));
        }
    }
    let mut posters = Vec::new();
    for t in tasks {
        let (id, slot) = t.await.expect("task");
        if slot == BoardSlot::Post {
            posters.push(id);
        }
    }
    assert_eq!(
        posters.len(),
        1,
        "one poster among 30 concurrent joins: {posters:?}"
    );
    let view = instances[0]
        .posted(g, &format!("t{}", posters[0]), MessageId(77))
        .await
        .expect("answers")
        .expect("the poster's slot");
    assert_eq!(view.count, 30, "every member gathered");
    assert_eq!(view.named.len(), 10);
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_won_once_across_instances() {
    let p = prefix("claims");
    let instances: Vec<Arc<RedisCoordination>> =
        (0..3).map(|_| Arc::new(redis(&p, REDIS_URL))).collect();
    let mut tasks = Vec::new();
    for round in 0..20 {
        for c in &instances {
            let c = Arc::clone(c);
            tasks.push(tokio::spawn(async move {
                c.claim(&format!("n:-5:raid:{round}"), Duration::from_secs(30))
                    .await
                    .expect("answers")
            }));
        }
    }
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 20, "one winner per key among three instances");
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_events_reach_the_other_instances_but_not_their_publisher() {
    let p = prefix("events");
    let (a, b) = (redis(&p, REDIS_URL), redis(&p, REDIS_URL));
    let heard_a = Arc::new(Mutex::new(Vec::new()));
    let heard_b = Arc::new(Mutex::new(Vec::new()));
    let (ha, hb) = (Arc::clone(&heard_a), Arc::clone(&heard_b));
    let ga = a.subscribe(Arc::new(move |e| ha.lock().expect("lock").push(e)));
    let gb = b.subscribe(Arc::new(move |e| hb.lock().expect("lock").push(e)));
    assert!(ga.wait_subscribed(Duration::from_secs(5)).await);
    assert!(gb.wait_subscribed(Duration::from_secs(5)).await);
    let g = GroupId(-1_000_777);
    let sent = Instant::now();
    a.publish(GroupEvent::Config(g)).await;
    b.publish(GroupEvent::Admins(g)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while heard_b.lock().expect("lock").len() < 2 || heard_a.lock().expect("lock").len() < 2 {
        assert!(Instant::now() < deadline, "events did not arrive");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let latency = sent.elapsed();
    eprintln!("two group events published and heard by both instances in {latency:?}");
    assert!(latency < Duration::from_millis(500), "{latency:?}");
    assert_eq!(
        *heard_b.lock().expect("lock"),
        vec![GroupEvent::Resync, GroupEvent::Config(g)],
        "B hears A's event (after its subscription's resync), not its own echo"
    );
    assert_eq!(
        *heard_a.lock().expect("lock"),
        vec![GroupEvent::Resync, GroupEvent::Admins(g)]
    );
    drop((ga, gb));
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_holder_is_replaced_within_one_lease_period() {
    let p = prefix("takeover");
    let ttl = Duration::from_millis(1_500);
    let (a, b): (Arc<dyn LeaseStore>, Arc<dyn LeaseStore>) = (
        Arc::new(redis(&p, REDIS_URL)),
        Arc::new(redis(&p, REDIS_URL)),
    );
    let held = HeldLease::acquire(a, "reconcile", ttl)
        .await
        .expect("answers")
        .expect("free");
    assert!(
        held.ready().await,
        "ready once any earlier holder is certainly gone"
    );
    // Held and renewed well past its time to live, B keeps being refused.
    let until = Instant::now() + ttl * 2;
    while Instant::now() < until {
        assert!(HeldLease::acquire(b.clone(), "reconcile", ttl)
            .await
            .expect("answers")
            .is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held.is_held());
    let first = held.lease().generation;
    // The holder dies: no release.
    let died = Instant::now();
    drop(held);
    let poll = ttl / 10;
    let taken = loop {
        if let Some(h) = HeldLease::acquire(b.clone(), "reconcile", ttl)
            .await
            .expect("answers")
        {
            break h;
        }
        assert!(
            died.elapsed() < ttl * 2,
            "not taken over within two lease periods"
        );
        tokio::time::sleep(poll).await;
    };
    let after = died.elapsed();
    assert!(after <= ttl + poll * 2, "taken over after {after:?}");
    assert!(
        after >= ttl / 2,
        "not before the old lease ran out ({after:?})"
    );
    assert!(taken.lease().generation > first);
    assert!(taken.ready().await);
    taken.release().await;
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_lease_never_lets_two_holders_run_at_once() {
    let mut server = PrivateRedis::start().await;
    let p = prefix("killed");
    let ttl = Duration::from_millis(2_000);
    let (a, b): (Arc<dyn LeaseStore>, Arc<dyn LeaseStore>) = (
        Arc::new(redis(&p, &server.url())),
        Arc::new(redis(&p, &server.url())),
    );
    let held_a = HeldLease::acquire(a, "sweep", ttl)
        .await
        .expect("answers")
        .expect("free");
    assert!(held_a.lease().fresh, "a first start is a fresh store");
    assert!(held_a.ready().await);
    let fence_a = held_a.fence();
    let generation_a = held_a.lease().generation;
    let a_stopped = tokio::spawn(async move {
        fence_a.lost().await;
        Instant::now()
    });
    // Let a renewal happen, then kill Redis right after one (the worst moment: A believes it
    // holds the lease for almost a whole period) and bring it back at once, empty: the lease
    // and its generation counter are gone, B finds the name free while A still runs.
    tokio::time::sleep(ttl / 3 + Duration::from_millis(50)).await;
    let killed = Instant::now();
    server.restart().await;
    let (held_b, asked) = loop {
        let asked = Instant::now();
        if let Some(h) = HeldLease::acquire(b.clone(), "sweep", ttl)
            .await
            .unwrap_or(None)
        {
            break (h, asked);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "B never took it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        held_b.lease().fresh,
        "B sees a store without the lease's history"
    );
    assert!(
        held_b.lease().generation > generation_a,
        "generations keep growing across the loss ({} then {})",
        generation_a,
        held_b.lease().generation
    );
    assert!(held_b.ready().await, "B runs after waiting a period");
    let b_runs = Instant::now();
    assert!(b_runs >= asked + ttl, "B waited a whole lease period");
    let a_stopped = tokio::time::timeout(ttl, a_stopped)
        .await
        .expect("A gives the lease up within a period")
        .expect("task");
    assert!(
        a_stopped < b_runs,
        "A had stopped before B started: never two holders running"
    );
    assert!(
        a_stopped < killed + ttl,
        "A stops within one lease period of the loss"
    );
    drop(held_a);
    held_b.release().await;
}
