//! `/ready` of the real bot (`run::Bot`, webhook mode, PostgreSQL) against the simulated
//! Telegram while its dependencies fail: a private Redis killed and restarted (the instance
//! stays ready, reports itself degraded, and verifications go on), and PostgreSQL cut off by
//! a proxy (not ready: 503).
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (database `test`), `redis-server` on the PATH (a private
//! server on a free port, killed by the test: never the shared one) and, for the database
//! case, Redis at 127.0.0.1:6379.

mod e2e_support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_support::{
    settle, start_configured, wait_until, world, PgSchema, RedisPrefix, Running, Transport, World,
    SECRET,
};
use gmbot_bot::run::RunOptions;
use gmbot_bot::Config;
use gmbot_core::dispatch::DispatchConfig;
use tokio::net::{TcpListener, TcpStream};

/// A `redis-server` of this test's own on a free port, killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers `PING`.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (apt-get install redis-server)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: what a crash or an OOM kill does; nothing is flushed or said goodbye to.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of PostgreSQL whose access can be cut and restored.
struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (open, conns) = (Arc::clone(&open), Arc::clone(&conns));
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: refused at once
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().expect("lock").push(task);
                }
            })
        };
        Self {
            addr,
            open,
            conns,
            accept,
        }
    }

    /// Cuts every connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.conns.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Status, JSON body (or the metrics text as a JSON string) of `GET path`.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

async fn ready(addr: SocketAddr) -> (u16, serde_json::Value) {
    let started = Instant::now();
    let (status, body) = get(addr, "/ready").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "/ready is bounded by its probe timeout: took {:?}",
        started.elapsed()
    );
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/ready body {body:?}: {e}"));
    (status, v)
}

/// The value of one series (exact name and labels) in a scrape.
async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Polls `/ready` until its `status` is `want` (bounded: 20 s).
async fn ready_becomes(addr: SocketAddr, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = ready(addr).await;
        if v["status"] == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "/ready did not become {want} within 20 s: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the bot in webhook mode on `database_url` (migrated at start) and `redis_url`.
async fn start(w: &World, database_url: &str, redis_url: &str, prefix: &str) -> Running {
    let config = Config::from_vars([
        ("TELEGRAM_BOT_TOKEN", w.sim.token().to_owned()),
        ("TELEGRAM_API_URL", w.sim.base_url()),
        ("DATABASE_URL", database_url.to_owned()),
        ("GMBOT_MIGRATE", "auto".to_owned()),
        ("REDIS_URL", redis_url.to_owned()),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("WEBHOOK_URL", "http://127.0.0.1:0/tg/hook".to_owned()),
        ("WEBHOOK_SECRET", SECRET.to_owned()),
    ])
    .expect("configuration");
    let options = RunOptions {
        dispatch: DispatchConfig {
            global_burst: 30,
            group_burst: 20,
            backoff_base: Duration::from_millis(20),
            ..DispatchConfig::default()
        },
        redis_prefix: prefix.to_owned(),
        startup_attempts: 2,
        ..RunOptions::default()
    };
    start_configured(&w.sim, &config, Transport::Webhook, options).await
}

/// A non-subscriber who writes is deleted and muted; asserts it.
async fn denied(w: &World, bot: &Running, user: gmbot_core::domain::UserId, text: &str) {
    let m = w.sim.post(w.group, user, text).expect("posts");
    settle(&w.sim, &bot.monitor).await;
    // The deletion and the mute go out through the outbox at the Telegram budget, which
    // right after a Redis failure is the local fallback share, starting after its gap.
    wait_until("a non-subscriber's message is deleted", || {
        w.sim.message(w.group, m).is_some_and(|m| m.deleted)
    })
    .await;
    wait_until("the non-subscriber is muted", || {
        !w.sim.can_post(w.group, user)
    })
    .await;
}

/// A subscriber who writes keeps the message; asserts it.
async fn allowed(w: &World, bot: &Running, user: gmbot_core::domain::UserId, text: &str) {
    let m = w.sim.post(w.group, user, text).expect("posts");
    settle(&w.sim, &bot.monitor).await;
    assert!(
        w.sim.message(w.group, m).is_some_and(|m| !m.deleted),
        "a subscriber's message stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_degrades_ready_and_verification_goes_on() {
    let w = world();
    let dan = w.sim.add_user("Dan");
    let erin = w.sim.add_user("Erin");
    for u in [dan, erin] {
        w.sim.join(w.group, u).expect("joins the group");
    }
    w.sim.join(w.channel, erin).expect("erin subscribes");
    let pg = PgSchema::new();
    let mut redis = PrivateRedis::start();
    let prefix = format!("gmbot:ready:{}:", std::process::id());
    let bot = start(&w, pg.url(), &redis.url(), &prefix).await;
    let addr = bot.addr;

    let (code, v) = ready(addr).await;
    assert_eq!((code, &v["status"]), (200, &"ready".into()), "{v}");
    assert_eq!(v["dependencies"]["redis"], "ok");
    assert_eq!(metric(addr, "gmbot_ready_degraded").await, Some(0.0));

    w.sim
        .post(w.group, w.owner, "/protect @e2e_news")
        .expect("owner posts");
    settle(&w.sim, &bot.monitor).await;
    denied(&w, &bot, w.bob, "before the outage").await;

    // Redis dies: the instance stays in the load balancer (200), says it is degraded.
    redis.kill();
    let killed = Instant::now();
    let (code, v) = ready(addr).await;
    eprintln!(
        "/ready answered {code} {} {} ms after the kill",
        v["status"],
        killed.elapsed().as_millis()
    );
    assert_eq!(code, 200, "a Redis outage must not fail /ready: {v}");
    assert_eq!(v["status"], "degraded", "{v}");
    let reason = v["degraded"]["redis"].as_str().unwrap_or_default();
    assert!(["unreachable", "timeout"].contains(&reason), "{v}");
    assert_eq!(v["dependencies"]["database"], "ok", "{v}");
    assert!(v.get("failed").is_none(), "{v}");
    assert_eq!(metric(addr, "gmbot_ready_degraded").await, Some(1.0));
    assert_eq!(
        metric(addr, r#"gmbot_dependency_up{dependency="redis"}"#).await,
        Some(0.0)
    );

    // Verifications go on from the in-process cache and Telegram.
    allowed(&w, &bot, w.alice, "during the outage").await;
    denied(&w, &bot, w.carol, "during the outage").await;
    w.sim.join(w.channel, w.bob).expect("bob subscribes");
    settle(&w.sim, &bot.monitor).await;
    assert!(
        w.sim.can_post(w.group, w.bob),
        "joining the channel unmutes"
    );
    allowed(&w, &bot, w.bob, "subscribed now").await;
    allowed(&w, &bot, erin, "first message, during the outage").await;

    // Redis is back: plain ready again, and the bot goes on.
    redis.restart();
    let back = Instant::now();
    let v = ready_becomes(addr, "ready").await;
    eprintln!(
        "/ready plain ready again {} ms after redis-server answered",
        back.elapsed().as_millis()
    );
    assert_eq!(v["dependencies"]["redis"], "ok", "{v}");
    assert!(v.get("degraded").is_none(), "{v}");
    assert_eq!(metric(addr, "gmbot_ready_degraded").await, Some(0.0));
    assert_eq!(
        metric(addr, r#"gmbot_dependency_up{dependency="redis"}"#).await,
        Some(1.0)
    );
    denied(&w, &bot, dan, "after the outage").await;

    let stats = bot.monitor.stats();
    assert_eq!(stats.failed, 0, "{stats:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_fails_ready() {
    let w = world();
    let pg = PgSchema::new();
    let redis = RedisPrefix::new();
    let proxy = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let through_proxy = pg
        .url()
        .replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    assert_ne!(
        through_proxy,
        pg.url(),
        "the test database must be at 127.0.0.1:5432 for the proxy"
    );
    let bot = start(&w, &through_proxy, e2e_support::REDIS_URL, &redis.prefix).await;
    let addr = bot.addr;
    let (code, v) = ready(addr).await;
    assert_eq!((code, &v["status"]), (200, &"ready".into()), "{v}");

    // The database is a dependency: not ready, and only it is named.
    proxy.cut();
    let (code, v) = ready(addr).await;
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["status"], "not_ready", "{v}");
    let reason = v["failed"]["database"].as_str().unwrap_or_default();
    assert!(["unreachable", "timeout"].contains(&reason), "{v}");
    assert_eq!(v["dependencies"]["redis"], "ok", "{v}");
    assert!(v.get("degraded").is_none(), "{v}");
    assert_eq!(
        get(addr, "/health").await.0,
        200,
        "the process itself is fine"
    );
    assert_eq!(
        metric(addr, r#"gmbot_dependency_up{dependency="database"}"#).await,
        Some(0.0)
    );
    assert_eq!(metric(addr, "gmbot_ready_degraded").await, Some(0.0));

    proxy.restore();
    let back = Instant::now();
    ready_becomes(addr, "ready").await;
    eprintln!(
        "/ready ready again {} ms after the database was reachable",
        back.elapsed().as_millis()
    );
    bot.stop().await;
}
