//! The simulated Telegram's load balancer (`Simulator::deliver_through_balancer`): updates
//! spread over several webhook instances, a failed delivery retried on another instance,
//! instances whose health path is not 200 left out, idle keep-alive connections kept open.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gmbot_bot::sim::{AdminRights, BalancerOptions, Simulator};
use gmbot_core::domain::{GroupId, UserId};

/// (path, secret header) of each POST received.
type Posts = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A webhook instance: answers POSTs with `post_status`, `/ready` with `ready_status`, and
/// records the path and secret header of every POST.
struct Instance {
    server: Arc<tiny_http::Server>,
    posts: Posts,
}

impl Instance {
    fn start(post_status: u16, ready_status: u16) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listens"));
        let posts: Posts = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..4 {
            let (server, posts) = (Arc::clone(&server), Arc::clone(&posts));
            std::thread::spawn(move || {
                while let Ok(mut req) = server.recv() {
                    let status = if *req.method() == tiny_http::Method::Post {
                        let mut body = String::new();
                        let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
                        let secret = req
                            .headers()
                            .iter()
                            .find(|h| h.field.equiv("X-Telegram-Bot-Api-Secret-Token"))
                            .map(|h| h.value.to_string());
                        posts
                            .lock()
                            .expect("lock")
                            .push((req.url().to_owned(), secret));
                        post_status
                    } else {
                        ready_status
                    };
                    let _ = req
                        .respond(tiny_http::Response::from_string("{}").with_status_code(status));
                }
            });
        }
        Self { server, posts }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.server_addr().to_ip().expect("ip address")
    }

    fn posts(&self) -> usize {
        self.posts.lock().expect("lock").len()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        for _ in 0..4 {
            self.server.unblock();
        }
    }
}

/// A simulator with a webhook registered at an address nobody listens on (the balancer's, as
/// Telegram knows it) and a group with a member whose messages make updates; no update
/// waiting yet.
fn simulator() -> (Simulator, GroupId, UserId) {
    let sim = Simulator::start().expect("simulator");
    let client = reqwest::blocking::Client::new();
    let answer: serde_json::Value = client
        .post(format!("{}/bot{}/setWebhook", sim.base_url(), sim.token()))
        .json(&serde_json::json!({
            "url": "http://127.0.0.1:9/tg/hook?x=1",
            "secret_token": "lb_secret",
        }))
        .send()
        .expect("setWebhook")
        .json()
        .expect("json");
    assert_eq!(answer["ok"], true, "{answer}");
    let owner = sim.add_user("Owner");
    let group = sim.create_supergroup("G", owner).expect("group");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot");
    let user = sim.add_user("Writer");
    sim.join(group, user).expect("joins");
    sim.discard_pending_updates();
    (sim, group, user)
}

fn emit_updates(sim: &Simulator, group: GroupId, user: UserId, n: usize) {
    for i in 0..n {
        sim.post(group, user, &format!("message {i}"))
            .expect("posts");
    }
}

fn wait(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_delivery_goes_to_another_instance_and_a_2xx_settles_it() {
    let failing = Instance::start(503, 200);
    let healthy = Instance::start(200, 200);
    let (sim, group, user) = simulator();
    sim.deliver_through_balancer(BalancerOptions {
        targets: vec![failing.addr(), healthy.addr()],
        connections_per_target: 3,
        ..BalancerOptions::default()
    })
    .expect("balancer");
    // Both instances in rotation before the updates come.
    wait("both instances in rotation", Duration::from_secs(5), || {
        sim.balancer_stats()
            .is_some_and(|s| s.targets.iter().all(|t| t.healthy))
    });
    emit_updates(&sim, group, user, 20);
    wait("every update delivered", Duration::from_secs(20), || {
        sim.pending_updates() == 0
    });
    let deliveries = sim.deliveries();
    let mut delivered: Vec<u32> = deliveries
        .iter()
        .filter(|d| d.ok())
        .map(|d| d.update_id)
        .collect();
    delivered.sort_unstable();
    let unique = {
        let mut u = delivered.clone();
        u.dedup();
        u
    };
    assert_eq!(
        delivered.len(),
        20,
        "each update settled once: {deliveries:?}"
    );
    assert_eq!(unique.len(), 20);
    assert!(
        deliveries.iter().filter(|d| d.ok()).all(|d| d.target == 1),
        "only the healthy instance answered 2xx"
    );
    assert!(
        failing.posts() > 0,
        "round robin tried the failing instance too"
    );
    // Every update refused by instance 0 was delivered next to instance 1.
    for d in deliveries.iter().filter(|d| d.target == 0) {
        assert_eq!(d.status, Some(503));
        let after = deliveries
            .iter()
            .skip_while(|x| *x != d)
            .skip(1)
            .find(|x| x.update_id == d.update_id)
            .expect("retried");
        assert_eq!(after.target, 1, "retried on the other instance");
    }
    let posts = healthy.posts.lock().expect("lock").clone();
    assert!(posts
        .iter()
        .all(|(path, secret)| path == "/tg/hook?x=1" && secret.as_deref() == Some("lb_secret")));
    let stats = sim.balancer_stats().expect("stats");
    assert_eq!(stats.targets[1].delivered, 20);
    assert_eq!(stats.targets[0].failed, failing.posts() as u64);
}

#[test]
fn an_instance_that_is_not_ready_gets_nothing_and_idle_connections_stay_open() {
    let unready = Instance::start(200, 503);
    let ready = Instance::start(200, 200);
    let (sim, group, user) = simulator();
    sim.deliver_through_balancer(BalancerOptions {
        targets: vec![unready.addr(), ready.addr()],
        connections_per_target: 5,
        health_interval: Duration::from_millis(200),
        ..BalancerOptions::default()
    })
    .expect("balancer");
    assert!(
        sim.deliver_through_balancer(BalancerOptions {
            targets: vec![ready.addr()],
            ..BalancerOptions::default()
        })
        .is_err(),
        "one balancer per simulator"
    );
    wait(
        "the ready instance's connections",
        Duration::from_secs(5),
        || {
            sim.balancer_stats()
                .is_some_and(|s| s.targets[1].open_connections == 5)
        },
    );
    emit_updates(&sim, group, user, 10);
    wait("every update delivered", Duration::from_secs(20), || {
        sim.pending_updates() == 0
    });
    assert_eq!(
        unready.posts(),
        0,
        "an instance out of rotation gets no update"
    );
    assert_eq!(ready.posts(), 10);
    // Idle, the connections are still there: opened once, not per request.
    std::thread::sleep(Duration::from_millis(600));
    let stats = sim.balancer_stats().expect("stats");
    assert_eq!(stats.targets[1].open_connections, 5);
    assert_eq!(stats.targets[0].open_connections, 0);
    assert!(!stats.targets[0].healthy);
    assert_eq!(stats.peak_open_connections, 5);
}
