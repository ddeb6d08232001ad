//! Webhook delivery through a load balancer: several bot instances behind one webhook URL.
//!
//! Telegram knows one webhook URL; with several instances it points at a load balancer,
//! which spreads the POSTs over the instances. [`Simulator::deliver_through_balancer`] makes
//! the simulator play both: every instance registers the same (balancer's) URL with
//! `setWebhook`, and the simulator POSTs each update, with the registered path, query and
//! secret, to one of the given instance addresses instead of that URL.
//!
//! - **Connections**: `connections_per_target` keep-alive connections to each instance, each
//!   carrying one request at a time (Telegram's `max_connections`, per instance). They are
//!   opened as soon as the instance answers and kept open while idle, so the connections are
//!   really there at once, not only at the peak of the load.
//! - **Routing**: round robin over the instances in rotation that have a free connection.
//! - **Health**: an instance is in rotation while its health path (`/ready` by default)
//!   answers 200, checked every `health_interval`; a refused connection, a reset or a timeout
//!   takes it out at once until the next check succeeds (what a load balancer's passive
//!   check does). With no instance in rotation, updates wait, as Telegram's do when the
//!   webhook fails.
//! - **Retries**: an update whose delivery failed (no answer, or an answer other than 2xx)
//!   goes back to the queue and is delivered next to another instance when there is one:
//!   at once the first time, then with Telegram's backoff (50 ms doubling, at most 3.2 s).
//!   A 2xx answer settles it.
//!
//! Every attempt is logged ([`Delivery`]) with the instance and the time, and the balancer
//! counts open connections and requests in flight ([`BalancerStats`]).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::SimError;
use super::world::Shared;
use super::Simulator;

/// How the simulated load balancer delivers.
#[derive(Debug, Clone)]
pub struct BalancerOptions {
    /// The instances' listening addresses (`HTTP_LISTEN`), in a fixed order: a
    /// [`Delivery::target`] is an index into it.
    pub targets: Vec<SocketAddr>,
    /// Keep-alive connections to each instance (each carries one request at a time).
    pub connections_per_target: usize,
    /// Path polled to decide whether an instance is in rotation (200 = yes); `None` keeps
    /// every instance in rotation except after a failed delivery, until the next interval.
    pub health_path: Option<String>,
    /// How often the health path is polled.
    pub health_interval: Duration,
    /// How long one POST may take before it counts as a timeout.
    pub post_timeout: Duration,
}

impl Default for BalancerOptions {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            connections_per_target: 40,
            health_path: Some("/ready".to_owned()),
            health_interval: Duration::from_secs(1),
            post_timeout: Duration::from_secs(10),
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The update's `update_id`.
    pub update_id: u32,
    /// The instance (index into [`BalancerOptions::targets`]).
    pub target: usize,
    /// When the attempt ended, counted from the simulator's start (as `RecordedCall::at`).
    pub at: Duration,
    /// The HTTP status answered; `None` when there was no answer (refused, reset, timeout).
    pub status: Option<u16>,
}

impl Delivery {
    /// Whether the instance took the update (2xx).
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One instance as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStats {
    /// Its address.
    pub addr: SocketAddr,
    /// In rotation now.
    pub healthy: bool,
    /// Open connections to it now.
    pub open_connections: usize,
    /// Deliveries it answered with 2xx.
    pub delivered: u64,
    /// Attempts that failed on it (no answer or not 2xx).
    pub failed: u64,
}

/// What the balancer has done so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BalancerStats {
    /// Open connections to all instances now.
    pub open_connections: usize,
    /// The most connections that were open at once.
    pub peak_open_connections: usize,
    /// Requests being answered right now.
    pub in_flight: usize,
    /// The most requests that were in flight at once.
    pub peak_in_flight: usize,
    /// Per instance, in the order of [`BalancerOptions::targets`].
    pub targets: Vec<TargetStats>,
}

struct Job {
    id: u32,
    body: Vec<u8>,
    path: String,
    secret: Option<String>,
}

struct Target {
    addr: SocketAddr,
    queue: VecDeque<Job>,
    /// Jobs queued or being delivered (at most one per connection).
    outstanding: usize,
    healthy: bool,
    delivered: u64,
    failed: u64,
    open: usize,
}

struct State {
    targets: Vec<Target>,
    deliveries: Vec<Delivery>,
    next: usize,
}

pub(crate) struct Balancer {
    options: BalancerOptions,
    state: Mutex<State>,
    /// One per target: wakes that target's connection threads when a job is queued.
    wake: Vec<Condvar>,
    stop: AtomicBool,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

impl Balancer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self, shared: &Shared) -> bool {
        self.stop.load(Ordering::Acquire) || shared.is_stopped()
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _guard = self.lock();
        for c in &self.wake {
            c.notify_all();
        }
    }

    fn opened(&self, target: usize) {
        let n = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_open.fetch_max(n, Ordering::AcqRel);
        self.lock().targets[target].open += 1;
    }

    fn closed(&self, target: usize) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        let mut s = self.lock();
        s.targets[target].open = s.targets[target].open.saturating_sub(1);
    }
}

/// The backoff before delivering an update again after `attempts` failed ones: none after the
/// first (another instance is tried at once), then 50 ms doubling up to 3.2 s.
fn backoff(attempts: u32) -> Duration {
    if attempts <= 1 {
        Duration::ZERO
    } else {
        Duration::from_millis(50 << (attempts - 2).min(6))
    }
}

impl Simulator {
    /// Delivers webhook updates through a simulated load balancer to these instances (see
    /// the module docs) instead of to the URL given to `setWebhook`; the URL's path, query and
    /// the secret are kept. Stays on until the simulator stops. Fails if there is no target
    /// or no connection, or if a balancer is already running.
    pub fn deliver_through_balancer(&self, options: BalancerOptions) -> Result<(), SimError> {
        if options.targets.is_empty() || options.connections_per_target == 0 {
            return Err(SimError::Start(
                "a load balancer needs at least one target and one connection".into(),
            ));
        }
        let mut slot = self.balancer.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(SimError::Start("a load balancer is already running".into()));
        }
        let targets = options
            .targets
            .iter()
            .map(|&addr| Target {
                addr,
                queue: VecDeque::new(),
                outstanding: 0,
                healthy: options.health_path.is_none(),
                delivered: 0,
                failed: 0,
                open: 0,
            })
            .collect();
        let balancer = Arc::new(Balancer {
            wake: options.targets.iter().map(|_| Condvar::new()).collect(),
            options,
            state: Mutex::new(State {
                targets,
                deliveries: Vec::new(),
                next: 0,
            }),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        });
        self.with(|w| w.balanced = true);
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                // Connection threads only parse status lines: a small stack is plenty.
                .stack_size(256 * 1024)
                .spawn(f)
                .map(|_| ())
                .map_err(|e| SimError::Start(e.to_string()))
        };
        {
            let (shared, b) = (Arc::clone(&self.shared), Arc::clone(&balancer));
            spawn("sim-lb".into(), Box::new(move || dispatch(&shared, &b)))?;
        }
        {
            let (shared, b) = (Arc::clone(&self.shared), Arc::clone(&balancer));
            spawn(
                "sim-lb-health".into(),
                Box::new(move || health(&shared, &b)),
            )?;
        }
        for t in 0..balancer.options.targets.len() {
            for k in 0..balancer.options.connections_per_target {
                let (shared, b) = (Arc::clone(&self.shared), Arc::clone(&balancer));
                spawn(
                    format!("sim-lb-{t}-{k}"),
                    Box::new(move || connection(&shared, &b, t)),
                )?;
            }
        }
        *slot = Some(balancer);
        Ok(())
    }

    /// The load balancer's counters (`None` without [`Self::deliver_through_balancer`]).
    pub fn balancer_stats(&self) -> Option<BalancerStats> {
        let slot = self.balancer.lock().unwrap_or_else(|e| e.into_inner());
        let b = slot.as_ref()?;
        let s = b.lock();
        Some(BalancerStats {
            open_connections: b.open.load(Ordering::Acquire),
            peak_open_connections: b.peak_open.load(Ordering::Acquire),
            in_flight: b.in_flight.load(Ordering::Acquire),
            peak_in_flight: b.peak_in_flight.load(Ordering::Acquire),
            targets: s
                .targets
                .iter()
                .map(|t| TargetStats {
                    addr: t.addr,
                    healthy: t.healthy,
                    open_connections: t.open,
                    delivered: t.delivered,
                    failed: t.failed,
                })
                .collect(),
        })
    }

    /// Every delivery attempt the load balancer made so far, in the order they ended.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let slot = self.balancer.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .map(|b| b.lock().deliveries.clone())
            .unwrap_or_default()
    }
}

/// Hands waiting updates to targets with a free connection.
fn dispatch(shared: &Shared, b: &Balancer) {
    let mut w = shared.lock();
    loop {
        if b.stopped(shared) {
            return;
        }
        let now = Instant::now();
        let mut wake_at = now + Duration::from_millis(100);
        if let Some(hook) = w.webhook.clone() {
            let path = url::Url::parse(&hook.url).map_or_else(
                |_| "/".to_owned(),
                |u| match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_owned(),
                },
            );
            let mut s = b.lock();
            let conns = b.options.connections_per_target;
            let n = s.targets.len();
            for u in w.updates.pending.iter_mut() {
                if u.in_flight {
                    continue;
                }
                if let Some(at) = u.not_before.filter(|&at| at > now) {
                    wake_at = wake_at.min(at);
                    continue;
                }
                let free = |t: &Target| t.healthy && t.outstanding < conns;
                if !s.targets.iter().any(free) {
                    break;
                }
                let start = s.next;
                // Another instance in rotation takes a failed update, even if it has to wait
                // for a free connection; the one that failed it only when it is alone.
                let others_up = (0..n).any(|t| Some(t) != u.avoid && s.targets[t].healthy);
                let pick = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&t| free(&s.targets[t]) && Some(t) != u.avoid)
                    .or_else(|| u.avoid.filter(|&t| !others_up && free(&s.targets[t])));
                let Some(t) = pick else { continue };
                s.next = (t + 1) % n;
                u.in_flight = true;
                let target = &mut s.targets[t];
                target.outstanding += 1;
                target.queue.push_back(Job {
                    id: u.id,
                    body: u.body.to_string().into_bytes(),
                    path: path.clone(),
                    secret: hook.secret_token.clone(),
                });
                b.wake[t].notify_one();
            }
        }
        let timeout = wake_at.saturating_duration_since(Instant::now());
        w = match shared.changed.wait_timeout(w, timeout) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

/// Polls each target's health path; without one, puts every target back in rotation.
fn health(shared: &Shared, b: &Balancer) {
    while !b.stopped(shared) {
        for (t, addr) in b.options.targets.iter().enumerate() {
            let up = match &b.options.health_path {
                Some(path) => get_status(*addr, path) == Some(200),
                None => true,
            };
            b.lock().targets[t].healthy = up;
        }
        shared.changed.notify_all();
        let until = Instant::now() + b.options.health_interval;
        while Instant::now() < until && !b.stopped(shared) {
            std::thread::sleep(Duration::from_millis(50).min(b.options.health_interval));
        }
    }
}

fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader).ok()
}

/// Reads one HTTP/1.1 response (status line, headers, `Content-Length` body); the status.
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    Ok(status)
}

struct Conn {
    reader: BufReader<TcpStream>,
    used: bool,
}

fn connect(b: &Balancer, t: usize) -> Option<Conn> {
    let addr = b.options.targets[t];
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(b.options.post_timeout)).ok()?;
    stream
        .set_write_timeout(Some(b.options.post_timeout))
        .ok()?;
    // Small requests on a kept connection: do not wait to fill a segment.
    let _ = stream.set_nodelay(true);
    b.opened(t);
    Some(Conn {
        reader: BufReader::new(stream),
        used: false,
    })
}

fn post(b: &Balancer, t: usize, conn: &mut Conn, job: &Job) -> std::io::Result<u16> {
    let addr = b.options.targets[t];
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        job.path,
        job.body.len()
    );
    if let Some(secret) = &job.secret {
        head.push_str(&format!("X-Telegram-Bot-Api-Secret-Token: {secret}\r\n"));
    }
    head.push_str("\r\n");
    let stream = conn.reader.get_mut();
    stream.write_all(head.as_bytes())?;
    stream.write_all(&job.body)?;
    read_response(&mut conn.reader)
}

/// One keep-alive connection to target `t`: opened while the target answers, one request at
/// a time.
fn connection(shared: &Shared, b: &Balancer, t: usize) {
    let mut conn: Option<Conn> = None;
    loop {
        if b.stopped(shared) {
            break;
        }
        if conn.is_none() && b.lock().targets[t].healthy {
            conn = connect(b, t);
        }
        let job = {
            let mut s = b.lock();
            loop {
                if b.stopped(shared) {
                    break None;
                }
                if let Some(job) = s.targets[t].queue.pop_front() {
                    break Some(job);
                }
                let (g, timeout) = match b.wake[t].wait_timeout(s, Duration::from_millis(500)) {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                s = g;
                if timeout.timed_out() && conn.is_none() {
                    // Look again whether the target came back, to open the connection.
                    break None;
                }
            }
        };
        let Some(job) = job else { continue };
        let n = b.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        b.peak_in_flight.fetch_max(n, Ordering::AcqRel);
        let mut status = None;
        // A kept connection the instance has closed fails at once: open a new one, once.
        for _ in 0..2 {
            if conn.is_none() {
                conn = connect(b, t);
            }
            let Some(c) = conn.as_mut() else { break };
            let reused = c.used;
            match post(b, t, c, &job) {
                Ok(s) => {
                    c.used = true;
                    status = Some(s);
                    break;
                }
                Err(e) => {
                    conn = None;
                    b.closed(t);
                    let stale = reused
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::UnexpectedEof
                                | std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::ConnectionAborted
                        );
                    if !stale {
                        break;
                    }
                }
            }
        }
        b.in_flight.fetch_sub(1, Ordering::AcqRel);
        finish(shared, b, t, job.id, status);
    }
    if conn.is_some() {
        b.closed(t);
    }
}

/// Settles one attempt: a 2xx removes the update, anything else sends it back to the queue.
fn finish(shared: &Shared, b: &Balancer, t: usize, id: u32, status: Option<u16>) {
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    {
        let mut w = shared.lock();
        if ok {
            w.updates.pending.retain(|u| u.id != id);
        } else if let Some(u) = w.updates.pending.iter_mut().find(|u| u.id == id) {
            u.in_flight = false;
            u.attempts += 1;
            u.avoid = Some(t);
            u.not_before = Some(Instant::now() + backoff(u.attempts));
        }
        let mut s = b.lock();
        let target = &mut s.targets[t];
        target.outstanding = target.outstanding.saturating_sub(1);
        if ok {
            target.delivered += 1;
        } else {
            target.failed += 1;
            if status.is_none() {
                // Passive health check: out of rotation until the next active check.
                target.healthy = false;
            }
        }
        s.deliveries.push(Delivery {
            update_id: id,
            target: t,
            at: shared.started.elapsed(),
            status,
        });
    }
    shared.changed.notify_all();
}
