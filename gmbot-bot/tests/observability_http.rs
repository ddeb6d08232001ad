//! The HTTP listener over real HTTP: `/health`, `/ready` (database and Redis up, down and back;
//! Redis down only degrades it),
//! `/metrics` (parses, has the expected families, passes `promtool`), 404/405, the webhook's
//! body cap, and no secret in any answer.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (database `test`) and Redis at 127.0.0.1:6379.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gmbot_bot::app::{App, AppDeps, BotIdentity};
use gmbot_bot::http::{self, HttpReply, HttpRoutes, WebhookEndpoint, SECRET_HEADER};
use gmbot_core::cache::{
    LayeredCache, LayeredCacheConfig, MembershipCache, MemoryCache, MemoryCacheConfig,
};
use gmbot_core::clock::{Clock, SystemClock};
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::{ChatId, UserId};
use gmbot_core::engine::EngineConfig;
use gmbot_core::store::{DatabaseUrl, MigrationMode, PostgresStore, SqliteStore, Store};
use gmbot_core::telegram::MemoryTelegram;
use prometheus::Registry;
use tokio::net::{TcpListener, TcpStream};

const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS: &str = "redis://127.0.0.1:6379";
/// A password in the database URL (trust auth ignores it): it must never be served.
const DB_PASSWORD: &str = "hunter2-db-password";

fn app_with(
    store: Arc<dyn Store>,
    cache: Option<Arc<dyn MembershipCache>>,
    registry: Registry,
) -> App {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let cache = cache.unwrap_or_else(|| {
        Arc::new(
            MemoryCache::new(MemoryCacheConfig::default(), Arc::clone(&clock), &registry)
                .expect("memory cache"),
        )
    });
    App::new(AppDeps {
        me: BotIdentity {
            id: UserId(7_000_000_001),
            username: "gmbot_test_bot".to_owned(),
        },
        store,
        telegram: Arc::new(MemoryTelegram::new()),
        cache,
        clock,
        dispatch: DispatchConfig::default(),
        engine: EngineConfig::default(),
        registry,
    })
    .expect("app builds")
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url: DatabaseUrl = format!("sqlite://{}", dir.path().join("gmbot.db").display())
        .parse()
        .expect("sqlite url");
    Arc::new(
        SqliteStore::open(&url, MigrationMode::Apply)
            .await
            .expect("sqlite store opens"),
    )
}

fn serve(routes: HttpRoutes) -> http::HttpServerGuard {
    http::serve_with("127.0.0.1:0".parse().expect("addr"), routes, 2).expect("listener starts")
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn request(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    body: Option<Vec<u8>>,
    secret: Option<&str>,
) -> Answer {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(s) = secret {
        req = req.header(SECRET_HEADER, s);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request answered");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(reqwest::Method::GET, addr, path, None, None).await
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Family name -> (type, help).
type Families = BTreeMap<String, (String, String)>;

/// Parses the text exposition format: the families, and every sample line.
fn parse_metrics(text: &str) -> (Families, Vec<(String, f64)>) {
    let mut families = Families::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            families.entry(name.to_owned()).or_default().1 = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE has a type");
            families.entry(name.to_owned()).or_default().0 = ty.to_owned();
        } else if !line.trim().is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            samples.push((series.to_owned(), value));
        }
    }
    (families, samples)
}

fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

/// Records one of everything so every family has series.
async fn exercise(app: &App) {
    let m = app.metrics();
    m.updates.with_label_values(&["message", "webhook"]).inc();
    m.update_duration
        .with_label_values(&["message"])
        .observe(0.002);
    m.webhook_rejections
        .with_label_values(&["unauthorized"])
        .inc();
    m.errors.with_label_values(&["telegram"]).inc();
    m.actions.with_label_values(&["restrict", "ok"]).inc();
    m.reconciliation_lifts.with_label_values(&["joined"]).inc();
    m.last_update.set(1_700_000_000.0);
    // A real call through the dispatcher: Telegram call counters and latency.
    let _ = app
        .telegram()
        .get_chat_member(ChatId(-1_001), UserId(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_404_405_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_with(sqlite_store(&dir).await, None, Registry::new());
    exercise(&app).await;
    let server = serve(HttpRoutes::new(app.clone()));
    let addr = server.local_addr();

    let health = get(addr, "/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(json(&health.body), serde_json::json!({"status": "ok"}));
    assert_eq!(health.headers["content-type"], "application/json");

    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain; version=0.0.4"));
    let (families, samples) = parse_metrics(&metrics.body);
    for (name, (ty, help)) in &families {
        assert!(name.starts_with("gmbot_"), "{name} lacks the gmbot_ prefix");
        assert!(!help.trim().is_empty(), "{name} has no HELP");
        assert!(!ty.is_empty(), "{name} has no TYPE");
        if ty == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} must end in _total"
            );
        }
    }
    let expected = [
        ("gmbot_updates_total", "counter"),
        ("gmbot_update_duration_seconds", "histogram"),
        ("gmbot_webhook_rejections_total", "counter"),
        ("gmbot_errors_total", "counter"),
        ("gmbot_enforcement_actions_total", "counter"),
        ("gmbot_active_restrictions", "gauge"),
        ("gmbot_reconciliation_lifts_total", "counter"),
        ("gmbot_reconciliation_backlog", "gauge"),
        ("gmbot_last_update_timestamp_seconds", "gauge"),
        ("gmbot_dependency_up", "gauge"),
        ("gmbot_ready_degraded", "gauge"),
        ("gmbot_build_info", "gauge"),
        ("gmbot_verifications_total", "counter"),
        ("gmbot_verification_duration_seconds", "histogram"),
        ("gmbot_cache_requests_total", "counter"),
        ("gmbot_telegram_calls_total", "counter"),
        ("gmbot_telegram_call_duration_seconds", "histogram"),
        ("gmbot_ratelimit_waits_total", "counter"),
        ("gmbot_telegram_429_total", "counter"),
        ("gmbot_dispatch_queue_depth", "gauge"),
    ];
    for (name, ty) in expected {
        let got = families.get(name).map(|f| f.0.as_str());
        assert_eq!(got, Some(ty), "family {name} missing or mistyped");
    }
    // The scrape itself probed the database (nothing called /ready yet).
    assert_eq!(
        sample(&samples, r#"gmbot_dependency_up{dependency="database"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&samples, "gmbot_ready_degraded"), Some(0.0));
    assert_eq!(
        sample(
            &samples,
            &format!(
                r#"gmbot_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    // Bounded labels only: no id of a user or group anywhere in a label.
    let label_names: BTreeSet<&str> = samples
        .iter()
        .filter_map(|(s, _)| s.split_once('{').map(|(_, l)| l.trim_end_matches('}')))
        .flat_map(|labels| {
            labels
                .split(',')
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        })
        .collect();
    for id_label in [
        "user_id",
        "group_id",
        "chat_id",
        "channel_id",
        "update_id",
        "user",
        "group",
    ] {
        assert!(
            !label_names.contains(id_label),
            "label {id_label} is unbounded"
        );
    }

    let ready = get(addr, "/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let v = json(&ready.body);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["dependencies"]["database"], "ok");
    assert!(
        v["dependencies"].get("redis").is_none(),
        "Redis is not configured"
    );

    // HEAD is allowed on the read-only endpoints.
    let head = request(reqwest::Method::HEAD, addr, "/health", None, None).await;
    assert_eq!(head.status, 200);

    let missing = get(addr, "/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(json(&missing.body)["error"], "not found");
    let webhook_not_configured = request(
        reqwest::Method::POST,
        addr,
        "/telegram/webhook",
        Some(b"{}".to_vec()),
        None,
    )
    .await;
    assert_eq!(webhook_not_configured.status, 404);

    for path in ["/health", "/ready", "/metrics"] {
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let a = request(method.clone(), addr, path, Some(b"x".to_vec()), None).await;
            assert_eq!(a.status, 405, "{method} {path}");
            assert_eq!(a.headers["allow"], "GET, HEAD", "{method} {path}");
        }
    }
    server.stop();
}

/// A webhook endpoint that records what reached it.
#[derive(Default)]
struct Recorder {
    bodies: Mutex<Vec<(Option<String>, Vec<u8>)>>,
}

impl WebhookEndpoint for Recorder {
    fn accept(&self, secret_header: Option<&str>, body: &[u8]) -> HttpReply {
        self.bodies
            .lock()
            .expect("lock")
            .push((secret_header.map(str::to_owned), body.to_vec()));
        HttpReply::json(200, r#"{"ok":true}"#)
    }
}

/// Sends a chunked POST (no Content-Length) of `size` bytes and returns the status line.
fn chunked_post(addr: SocketAddr, path: &str, size: usize) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("write head");
    let chunk = vec![b'a'; 4096];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        // The server may answer and close before reading everything.
        if s.write_all(format!("{n:x}\r\n").as_bytes()).is_err()
            || s.write_all(&chunk[..n]).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
        left -= n;
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_route_caps_the_body_and_split_listeners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_with(sqlite_store(&dir).await, None, Registry::new());
    let recorder = Arc::new(Recorder::default());
    const MAX: usize = 64 * 1024;
    // The public listener when METRICS_LISTEN is set: webhook and /health only.
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let listeners = http::serve_split(
        local,
        Some(local),
        HttpRoutes::new(app.clone()).with_webhook_limit("/tg/hook", recorder.clone(), MAX),
        2,
    )
    .expect("both listeners start");
    let addr = listeners.local_addr();

    let ok = request(
        reqwest::Method::POST,
        addr,
        "/tg/hook?x=1",
        Some(br#"{"update_id":1}"#.to_vec()),
        Some("s3cret"),
    )
    .await;
    assert_eq!(ok.status, 200);
    {
        let got = recorder.bodies.lock().expect("lock");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.as_deref(), Some("s3cret"));
        assert_eq!(got[0].1, br#"{"update_id":1}"#);
    }
    // Exactly at the cap is accepted; one byte over is refused before the ingress sees it.
    let at_cap = request(
        reqwest::Method::POST,
        addr,
        "/tg/hook",
        Some(vec![b' '; MAX]),
        None,
    )
    .await;
    assert_eq!(at_cap.status, 200);
    let over = request(
        reqwest::Method::POST,
        addr,
        "/tg/hook",
        Some(vec![b' '; MAX + 1]),
        None,
    )
    .await;
    assert_eq!(over.status, 413);
    // Without a Content-Length the cap holds while reading.
    let status = tokio::task::spawn_blocking(move || chunked_post(addr, "/tg/hook", 4 * MAX))
        .await
        .expect("chunked post");
    assert!(status.contains(" 413 "), "{status}");
    assert_eq!(
        recorder.bodies.lock().expect("lock").len(),
        2,
        "oversized bodies never reach the ingress"
    );
    assert_eq!(
        app.metrics()
            .webhook_rejections
            .with_label_values(&["too_large"])
            .get(),
        2
    );

    let wrong_method = get(addr, "/tg/hook").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "POST");
    assert_eq!(get(addr, "/health").await.status, 200);
    assert_eq!(get(addr, "/metrics").await.status, 404);
    assert_eq!(get(addr, "/ready").await.status, 404);

    // The METRICS_LISTEN side serves the rest, and no webhook.
    let paddr = listeners.metrics_addr().expect("a metrics listener");
    assert_ne!(paddr, addr);
    assert_eq!(get(paddr, "/metrics").await.status, 200);
    assert_eq!(get(paddr, "/ready").await.status, 200);
    assert_eq!(
        request(
            reqwest::Method::POST,
            paddr,
            "/tg/hook",
            Some(b"{}".to_vec()),
            None
        )
        .await
        .status,
        404
    );
    drop(listeners);
    // Stopped: nothing listens any more.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener stopped on drop"
    );
    assert!(
        TcpStream::connect(paddr).await.is_err(),
        "metrics listener stopped on drop"
    );
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
            let open = Arc::clone(&open);
            let conns = Arc::clone(&conns);
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        drop(inbound); // refused: closed at once
                        continue;
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

/// A private schema in the test database, dropped at the end.
struct Schema {
    name: String,
}

fn pg(sql: String) {
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(PG_BASE, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {PG_BASE} ({e}). These tests need it: start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
            )
        });
        c.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

impl Schema {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "gmbot_obs_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        pg(format!("CREATE SCHEMA {name}"));
        Self { name }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        pg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_while_postgres_is_unreachable_and_recovers() {
    let schema = Schema::new();
    let proxy = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let url: DatabaseUrl = format!(
        "postgres://postgres:{DB_PASSWORD}@{}/test?options=-csearch_path%3D{}",
        proxy.addr, schema.name
    )
    .parse()
    .expect("pg url");
    let store = PostgresStore::open(&url, MigrationMode::Apply)
        .await
        .expect(
            "PostgreSQL store opens through the proxy (is PostgreSQL running on 127.0.0.1:5432?)",
        );
    let app = app_with(Arc::new(store), None, Registry::new());
    let server = serve(HttpRoutes::new(app.clone()).probe_timeout(Duration::from_millis(500)));
    let addr = server.local_addr();

    let ready = get(addr, "/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    proxy.cut();
    let started = std::time::Instant::now();
    let down = get(addr, "/ready").await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the probe is bounded by its timeout"
    );
    let v = json(&down.body);
    assert_eq!(v["status"], "not_ready");
    let reason = v["failed"]["database"].as_str().expect("database named");
    assert!(["timeout", "unreachable"].contains(&reason), "{reason}");
    // The process itself is fine.
    assert_eq!(get(addr, "/health").await.status, 200);
    let metrics = get(addr, "/metrics").await;
    let (_, samples) = parse_metrics(&metrics.body);
    assert_eq!(
        sample(&samples, r#"gmbot_dependency_up{dependency="database"}"#),
        Some(0.0)
    );
    for body in [&down.body, &metrics.body] {
        assert!(!body.contains(DB_PASSWORD), "a secret leaked: {body}");
        assert!(!body.contains("127.0.0.1"), "a host leaked: {body}");
    }

    proxy.restore();
    let mut recovered = false;
    for _ in 0..40 {
        if get(addr, "/ready").await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "/ready did not recover after PostgreSQL came back"
    );
    let (_, samples) = parse_metrics(&get(addr, "/metrics").await.body);
    assert_eq!(
        sample(&samples, r#"gmbot_dependency_up{dependency="database"}"#),
        Some(1.0)
    );
    server.stop();
}

async fn layered(url: &str, registry: &Registry) -> Arc<LayeredCache> {
    let mut config = LayeredCacheConfig::new(url);
    let prefix = format!("gmbot-obs-{}-{}:", std::process::id(), url.len());
    config.redis.key_prefix = prefix.clone();
    config.redis.invalidation_channel = format!("{prefix}invalidate");
    config.redis.op_timeout = Duration::from_millis(300);
    Arc::new(
        LayeredCache::connect(config, Arc::new(SystemClock::new()), registry)
            .await
            .expect("layered cache builds even without Redis"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_degrades_without_redis_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");

    // Redis up.
    let registry = Registry::new();
    let cache = layered(REDIS, &registry).await;
    assert!(
        cache.ping().await.is_ok(),
        "Redis is unreachable at {REDIS}; start it with `redis-server --daemonize yes`"
    );
    let app = app_with(sqlite_store(&dir).await, Some(cache.clone()), registry);
    let server = serve(HttpRoutes::new(app.clone()).with_redis(cache));
    let up = get(server.local_addr(), "/ready").await;
    assert_eq!(up.status, 200, "{}", up.body);
    let v = json(&up.body);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["dependencies"]["redis"], "ok");
    assert!(v.get("degraded").is_none(), "{v}");
    server.stop();

    // Redis at a closed port (with a password in its URL, which must not leak): still
    // ready — the load balancer keeps the instance — but degraded.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let registry = Registry::new();
    let redis_password = "redis-pass-4711";
    let cache = layered(
        &format!("redis://:{redis_password}@127.0.0.1:{closed}"),
        &registry,
    )
    .await;
    let dir2 = tempfile::tempdir().expect("tempdir");
    let app = app_with(sqlite_store(&dir2).await, Some(cache.clone()), registry);
    let server = serve(HttpRoutes::new(app).with_redis(cache));
    let addr = server.local_addr();
    let down = get(addr, "/ready").await;
    assert_eq!(down.status, 200, "{}", down.body);
    let v = json(&down.body);
    assert_eq!(v["status"], "degraded");
    let reason = v["degraded"]["redis"].as_str().expect("redis named");
    assert!(["timeout", "unreachable"].contains(&reason), "{v}");
    assert_eq!(v["dependencies"]["redis"], reason);
    assert_eq!(v["dependencies"]["database"], "ok");
    assert!(v.get("failed").is_none(), "nothing required failed: {v}");
    let metrics = get(addr, "/metrics").await.body;
    let (_, samples) = parse_metrics(&metrics);
    assert_eq!(
        sample(&samples, r#"gmbot_dependency_up{dependency="redis"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&samples, r#"gmbot_dependency_up{dependency="database"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&samples, "gmbot_ready_degraded"), Some(1.0));
    for body in [&down.body, &metrics] {
        assert!(!body.contains(redis_password), "a secret leaked: {body}");
    }
    server.stop();
}

/// `promtool check metrics` on a real scrape: no errors, no warnings. CI installs promtool;
/// elsewhere the test says so and passes only when CI is not set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics() {
    let promtool = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    let Some(promtool) = promtool else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing in CI: apt-get install --no-install-recommends prometheus"
        );
        eprintln!("promtool not installed; skipping `promtool check metrics` (CI runs it)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    let cache = layered(REDIS, &registry).await;
    let app = app_with(sqlite_store(&dir).await, Some(cache.clone()), registry);
    exercise(&app).await;
    let server = serve(HttpRoutes::new(app).with_redis(cache));
    let _ = get(server.local_addr(), "/ready").await;
    let text = get(server.local_addr(), "/metrics").await.body;
    server.stop();

    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("metrics written to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}\n---\n{text}"
    );
    assert!(report.trim().is_empty(), "promtool warned:\n{report}");
}
