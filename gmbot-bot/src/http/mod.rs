//! The HTTP listener: the Telegram webhook plus `/health`, `/ready` and `/metrics`, on `tiny_http`.
//!
//! `tiny_http` is blocking, so a few dedicated threads take requests off the
//! listener. What needs no async work is answered right there: `/health`,
//! 404/405, and the webhook (the ingress is synchronous and only enqueues).
//! `/ready` and `/metrics` first ask the database and Redis (so that
//! `gmbot_dependency_up` is current at every scrape), so they are handed to the
//! tokio runtime together with the request, and the task answers when the
//! probes finish — the HTTP thread never waits on them.
//!
//! Nothing served here quotes the token, a secret or a URL with credentials:
//! readiness failures name the dependency and a short reason only, the full
//! error goes to the log.
//!
//! ## Layout
//!
//! - `routes` — [`HttpRoutes`] (what one listener serves) and the routing table (404/405).
//! - `ready` — the readiness probes behind `/ready` and `gmbot_dependency_up`.
//! - `webhook` — the [`WebhookEndpoint`] seam and the capped body read.

mod ready;
mod routes;
mod webhook;

use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Request, Response, Server};

pub use self::ready::{probe, ProbeFailure, Readiness, RedisPing};
pub use self::routes::{HttpRoutes, DEFAULT_PROBE_TIMEOUT};
pub use self::webhook::{HttpReply, WebhookEndpoint, DEFAULT_MAX_BODY, SECRET_HEADER};

pub(crate) use self::routes::Route;
use self::routes::Routed;

/// Threads taking requests off one listener. Requests are short (the webhook
/// only enqueues, `/ready` is handed to tokio), so a few threads suffice; four
/// answer about 40,000 small requests/s on loopback on two cores.
pub const DEFAULT_THREADS: usize = 4;

/// Threads of a webhook listener whose requests each wait for their update's write to the
/// update journal (`GMBOT_WEBHOOK_JOURNAL`): a thread is blocked for about one database round
/// trip per request, so more of them keep the throughput.
pub const WRITE_AHEAD_THREADS: usize = 32;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Binding the address failed (in use, no permission, …).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        reason: String,
    },
    /// A worker thread could not be started.
    #[error("cannot start an HTTP worker thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Running listeners (one, or two with `METRICS_LISTEN`). Dropping the guard (or
/// calling [`HttpServerGuard::stop`]) stops taking requests and joins the worker
/// threads; requests already accepted are answered.
pub struct HttpServerGuard {
    listeners: Vec<Listener>,
}

struct Listener {
    server: Arc<Server>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<SocketAddr> = self.listeners.iter().map(|l| l.addr).collect();
        f.debug_struct("HttpServerGuard")
            .field("listeners", &addrs)
            .finish()
    }
}

impl HttpServerGuard {
    /// The address the (first, public) listener bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A guard always holds at least one listener: both constructors start one first.
        self.listeners
            .first()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |l| l.addr)
    }

    /// The address of the separate `/health`, `/ready`, `/metrics` listener, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listeners.get(1).map(|l| l.addr)
    }

    /// Stops the listeners and waits for their threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for mut listener in self.listeners.drain(..) {
            listener.stopping.store(true, Ordering::SeqCst);
            // `unblock` wakes one thread blocked in `recv`; wake each of them.
            for _ in 0..listener.workers.len() {
                listener.server.unblock();
            }
            for worker in listener.workers.drain(..) {
                if worker.join().is_err() {
                    log::error!("an HTTP worker thread panicked");
                }
            }
            let addr = listener.addr;
            // Dropping the server tells tiny_http's own accept thread to close the socket; it
            // does so a moment later, on that thread. Wait (bounded) until the port refuses
            // connections, so that a stopped listener is really gone when this returns.
            drop(listener);
            let probe = if addr.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while std::time::Instant::now() < deadline
                && std::net::TcpStream::connect_timeout(
                    &probe,
                    std::time::Duration::from_millis(50),
                )
                .is_ok()
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

impl Drop for HttpServerGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts serving `routes` on `listen` with [`DEFAULT_THREADS`] threads.
///
/// Must be called from inside a tokio runtime: `/ready` and `/metrics` run their probes on it.
pub fn serve(listen: SocketAddr, routes: HttpRoutes) -> Result<HttpServerGuard, HttpError> {
    serve_with(listen, routes, DEFAULT_THREADS)
}

/// Like [`serve`], with a chosen number of worker threads (at least one).
pub fn serve_with(
    listen: SocketAddr,
    routes: HttpRoutes,
    threads: usize,
) -> Result<HttpServerGuard, HttpError> {
    let mut guard = HttpServerGuard {
        listeners: Vec::with_capacity(1),
    };
    start(&mut guard, listen, Arc::new(routes), threads)?;
    Ok(guard)
}

/// `HTTP_LISTEN` and `METRICS_LISTEN` as configured: with `metrics` set, `listen` serves
/// the webhook and `/health`, and `metrics` serves `/health`, `/ready` and `/metrics`
/// (one thread is plenty there); without it, `listen` serves everything.
pub fn serve_split(
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    routes: HttpRoutes,
    threads: usize,
) -> Result<HttpServerGuard, HttpError> {
    let Some(metrics) = metrics else {
        return serve_with(listen, routes, threads);
    };
    let observability = routes.observability_only();
    let mut guard = HttpServerGuard {
        listeners: Vec::with_capacity(2),
    };
    start(
        &mut guard,
        listen,
        Arc::new(routes.without_observability()),
        threads,
    )?;
    start(&mut guard, metrics, Arc::new(observability), 1)?;
    Ok(guard)
}

/// Binds `listen` and starts its worker threads into `guard` (which stops them
/// if a later step fails).
fn start(
    guard: &mut HttpServerGuard,
    listen: SocketAddr,
    routes: Arc<HttpRoutes>,
    threads: usize,
) -> Result<(), HttpError> {
    let server = Server::http(listen).map_err(|e| HttpError::Bind {
        addr: listen,
        reason: e.to_string(),
    })?;
    let addr = server.server_addr().to_ip().unwrap_or(listen);
    let server = Arc::new(server);
    let stopping = Arc::new(AtomicBool::new(false));
    guard.listeners.push(Listener {
        server: Arc::clone(&server),
        addr,
        stopping: Arc::clone(&stopping),
        workers: Vec::new(),
    });
    for i in 0..threads.max(1) {
        let server = Arc::clone(&server);
        let routes = Arc::clone(&routes);
        let stopping = Arc::clone(&stopping);
        let worker = std::thread::Builder::new()
            .name(format!("gmbot-http-{}-{i}", addr.port()))
            .spawn(move || serve_requests(&server, &routes, &stopping))
            // The guard joins the threads already started when it drops.
            .map_err(HttpError::Thread)?;
        if let Some(l) = guard.listeners.last_mut() {
            l.workers.push(worker);
        }
    }
    log::info!(listen = addr.to_string().as_str(); "HTTP listener started");
    Ok(())
}

/// One worker's loop. `recv` fails when unblocked for shutdown, and also on a
/// failed `accept` (e.g. out of file descriptors): only the former ends the loop.
fn serve_requests(server: &Server, routes: &Arc<HttpRoutes>, stopping: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => handle(routes, request),
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                log::warn!(error:display = e; "HTTP listener could not accept a connection");
                // Do not spin while the condition lasts.
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// How a routed request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Right away: the reply, and the `Allow` header of a 405.
    Now(HttpReply, Option<&'static str>),
    /// After probing the dependencies, on tokio (`/ready`, `/metrics`).
    Probe(Route),
}

/// The answer to a routed request; `webhook` reads the body and hands it to the endpoint.
fn answer(routed: Routed, webhook: impl FnOnce() -> HttpReply) -> Answer {
    match routed {
        Routed::NotFound => Answer::Now(HttpReply::json(404, r#"{"error":"not found"}"#), None),
        Routed::MethodNotAllowed(allow) => Answer::Now(
            HttpReply::json(405, r#"{"error":"method not allowed"}"#),
            Some(allow),
        ),
        Routed::Found(Route::Health) => {
            Answer::Now(HttpReply::json(200, r#"{"status":"ok"}"#), None)
        }
        Routed::Found(Route::Webhook) => Answer::Now(webhook(), None),
        Routed::Found(route @ (Route::Ready | Route::Metrics)) => Answer::Probe(route),
    }
}

/// A request given as parts, answered as the listener answers it (routing, then the
/// webhook's capped body read and its endpoint), with no socket: the fuzz targets' entry
/// (`fuzz/`). `declared` is the body length the request declared; `observability` and
/// `webhook_path` are the listener's routes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn answer_parts(
    method: &Method,
    url: &str,
    observability: bool,
    webhook_path: &str,
    headers: &[Header],
    declared: Option<usize>,
    body: &mut dyn Read,
    endpoint: &dyn WebhookEndpoint,
    max_body: usize,
) -> Answer {
    let routed = routes::route(method, url, observability, Some(webhook_path));
    answer(routed, || {
        let secret = webhook::secret_header(headers);
        webhook::accept_parts(declared, secret, body, endpoint, max_body)
    })
}

/// Routes one request and answers it (or hands it to tokio for `/ready` and `/metrics`).
fn handle(routes: &Arc<HttpRoutes>, mut request: Request) {
    let routed = routes.route(request.method(), request.url());
    let route = match answer(routed, || routes.webhook(&mut request)) {
        Answer::Now(reply, allow) => return respond(request, reply, allow),
        Answer::Probe(route) => route,
    };
    // Both probe the dependencies (a scrape keeps `gmbot_dependency_up`
    // current even when nothing polls /ready): async work, on tokio.
    let Some(runtime) = routes.runtime_handle().cloned() else {
        let reply = match route {
            Route::Metrics => routes.metrics(),
            _ => ready::no_runtime(),
        };
        return respond(request, reply, None);
    };
    let routes = Arc::clone(routes);
    runtime.spawn(async move {
        let readiness = routes.probe().await;
        let reply = match route {
            Route::Metrics => routes.metrics(),
            _ => readiness.reply(),
        };
        // Writing the answer is blocking socket I/O: off the async workers.
        let _ = tokio::task::spawn_blocking(move || respond(request, reply, None)).await;
    });
}

fn respond(request: Request, reply: HttpReply, allow: Option<&'static str>) {
    let headers = [
        Some(("Content-Type", reply.content_type)),
        Some(("Cache-Control", "no-store")),
        allow.map(|a| ("Allow", a)),
    ]
    .into_iter()
    .flatten()
    // Static ASCII names and values: `from_bytes` cannot fail on them.
    .filter_map(|(name, value)| Header::from_bytes(name.as_bytes(), value.as_bytes()).ok())
    .collect();
    let body = reply.body.into_bytes();
    let len = body.len();
    let response = Response::new(
        reply.status.into(),
        headers,
        Cursor::new(body),
        Some(len),
        None,
    );
    // The client may have gone; nothing to do about it.
    let _ = request.respond(response);
}
