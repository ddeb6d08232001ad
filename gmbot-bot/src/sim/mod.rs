//! # The simulated Telegram
//!
//! A real Bot API HTTP server on 127.0.0.1 that tests, benchmarks and the demo run the bot
//! against, since nothing here can reach Telegram. It keeps users, chats (private, groups,
//! supergroups, channels), memberships with Telegram's statuses and rights, messages and
//! callback queries; it serves `/bot<token>/<method>` (GET query, POST JSON or form) with
//! Telegram's JSON shapes and error texts; it delivers updates by `getUpdates` (offset,
//! limit, long-poll timeout, `allowed_updates`) or by webhook POSTs; and it records every call.
//!
//! Tests drive it through the control API on [`Simulator`] (act as users and admins, inject
//! faults, read the call log), not over HTTP.
//!
//! ## Layout
//!
//! - `world` — the state behind one lock; `updates` — the update queue and `getUpdates`;
//!   `events` — membership changes and the `chat_member`/`my_chat_member` updates they emit.
//! - `methods/` — one file per group of Bot API methods; `server` — HTTP routing and long
//!   polls; `delivery` — webhook POSTs; `balancer` — webhook POSTs spread over several bot
//!   instances, as a load balancer in front of them would.
//! - `member`, `chat` — Telegram's data model; `render` — the model as Bot API JSON.
//! - `directory` — MTProto's `channels.getParticipants` for audits (TL binary over HTTP at
//!   `/mtproto/…`) and [`SimDirectory`], its client.
//! - `faults`, `calls` — injected failures and the call log; `control` — the test-facing API;
//!   `legacy` — answers in an older Bot API version's shape.
//! - `join_requests` — join requests (and Bot API 10.1 join request queries) and ephemeral
//!   messages (Bot API 10.2) as the control API drives and inspects them.
//!
//! ## Known differences from Telegram
//!
//! Webhooks may be plain `http` (loopback only); file uploads (multipart) are not supported;
//! flood limits are not enforced unless injected; the HTML check covers tags and entities,
//! not every nuance of Telegram's parser.

mod api_error;
mod balancer;
mod calls;
mod chat;
mod control;
mod delivery;
mod directory;
mod error;
mod events;
mod faults;
mod html;
mod join_requests;
mod legacy;
mod member;
mod methods;
mod params;
mod render;
mod server;
mod updates;
mod world;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use gmbot_core::domain::UserId;

pub use self::api_error::ApiError;
pub use self::balancer::{BalancerOptions, BalancerStats, Delivery, TargetStats};
pub use self::calls::RecordedCall;
pub use self::chat::{ChatKind, MessageKind, SimButton, SimEphemeral, SimMessage, SimUser};
pub use self::directory::{generated_name, ParticipantsRequest, SimDirectory, GET_PARTICIPANTS};
pub use self::error::SimError;
pub use self::faults::{Fault, FaultKind};
pub use self::member::{AdminRights, MemberState, Permissions};
pub use self::world::{CallbackAnswer, EphemeralSupport};

use self::world::{Shared, World};

/// A token with the shape of a real one, for tests and the demo.
pub const DEFAULT_TOKEN: &str = "7000000001:AAFsimulatedTokenFor_tests-01234567";

/// How to start a simulator.
#[derive(Clone)]
pub struct SimulatorOptions {
    /// The bot token the server accepts; its digits before `:` are the bot's user id.
    pub token: String,
    /// The bot's username (without `@`).
    pub bot_username: String,
    /// The bot's display name.
    pub bot_name: String,
    /// HTTP worker threads (long polls run on their own threads and do not hold one).
    pub workers: usize,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        Self {
            token: DEFAULT_TOKEN.to_owned(),
            bot_username: "gmbot_test_bot".to_owned(),
            bot_name: "GMBot".to_owned(),
            workers: 4,
        }
    }
}

impl fmt::Debug for SimulatorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorOptions")
            .field("token", &"<redacted>")
            .field("bot_username", &self.bot_username)
            .field("workers", &self.workers)
            .finish()
    }
}

/// A running simulated Telegram. Dropping it stops the server.
pub struct Simulator {
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    balancer: std::sync::Mutex<Option<Arc<balancer::Balancer>>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Simulator {
    /// Starts a simulator with the default token and bot on 127.0.0.1, on a free port.
    pub fn start() -> Result<Self, SimError> {
        Self::start_with(SimulatorOptions::default())
    }

    /// Starts a simulator with these options.
    pub fn start_with(opts: SimulatorOptions) -> Result<Self, SimError> {
        let bot_id = opts
            .token
            .split_once(':')
            .and_then(|(id, _)| id.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .ok_or_else(|| SimError::Start("the token must look like <bot id>:<secret>".into()))?;
        let bot = SimUser {
            id: UserId(bot_id),
            first_name: opts.bot_name.clone(),
            last_name: None,
            username: Some(opts.bot_username.clone()),
            is_bot: true,
        };
        let mut world = World::new(bot);
        world.seed_service_accounts();
        let shared = Arc::new(Shared::new(opts.token, world));
        let server =
            tiny_http::Server::http("127.0.0.1:0").map_err(|e| SimError::Start(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| SimError::Start("not listening on an IP address".into()))?;
        let server = Arc::new(server);
        let mut workers = Vec::new();
        for i in 0..opts.workers.max(1) {
            let (shared, server) = (Arc::clone(&shared), Arc::clone(&server));
            let handle = std::thread::Builder::new()
                .name(format!("sim-http-{i}"))
                .spawn(move || server::worker(shared, server))
                .map_err(|e| SimError::Start(e.to_string()))?;
            workers.push(handle);
        }
        Ok(Self {
            shared,
            server,
            addr,
            workers,
            balancer: std::sync::Mutex::new(None),
        })
    }

    /// `http://127.0.0.1:<port>`: the value for `TELEGRAM_API_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token the simulator accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The bot's own user.
    pub fn bot(&self) -> SimUser {
        self.shared.lock().bot.clone()
    }

    /// Stops serving: workers exit, long polls answer empty, webhook delivery ends.
    pub fn stop(&mut self) {
        self.shared.stop();
        if let Some(b) = self
            .balancer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            b.stop();
        }
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for handle in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = handle.join();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}
