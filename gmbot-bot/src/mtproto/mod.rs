//! The MTProto frontend (grammers): what only MTProto can do for a bot — list a group's members.
//!
//! [`MtprotoConnection::open`] takes the session's lease in the store, loads the session
//! ([`StoreSession`]), starts a grammers connection pool (`SenderPool` → `Client`, its
//! runner on a task) and signs the bot in with its token when the session is not
//! authorized yet. [`MtprotoDirectory`] lists members with it.
//!
//! - **One pool per session.** grammers forbids using one session in two pools at once.
//!   The lease row in `mtproto_sessions` enforces it across processes: the holder renews it
//!   every [`LEASE_RENEW`] and gives it back on [`MtprotoConnection::close`]; a process that
//!   died leaves it to run out after [`LEASE_TTL`]. Another process asking meanwhile is told
//!   who holds it. Two instances that need MTProto at once use two session names.
//! - **Retries are the dispatcher's.** The pool's retry policy is off, so `FLOOD_WAIT_X`
//!   comes back as [`RetryAfter`](gmbot_core::telegram::TelegramError::RetryAfter) to the
//!   dispatcher's bulk lane, which pauses and retries with every other bulk call in view.
//! - **Reconnects.** A connection that breaks fails its calls with a network error (retried
//!   with backoff by the dispatcher); grammers opens a new connection on the next call.
//! - [`convert`] is the conversion layer (TL objects → GMBot types), tested on constructed
//!   TL objects.

pub mod convert;
mod directory;
mod session;

use std::sync::Arc;
use std::time::Duration;

use gmbot_core::domain::UnixTime;
use gmbot_core::store::{SessionLease, Store};
use gmbot_core::telegram::TelegramError;
use grammers_client::client::ClientConfiguration;
use grammers_client::sender::{ConnectionParams, NoRetries};
use grammers_client::{Client, SenderPool};

use crate::config::MtprotoCredentials;
use crate::secret::BotToken;

pub use self::directory::MtprotoDirectory;
pub use self::session::{SessionError, StoreSession};

/// How long a lease lasts without renewal (a crashed holder frees the session after this).
pub const LEASE_TTL: Duration = Duration::from_secs(300);
/// How often the holder renews its lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(60);
/// The session name used unless another is given.
pub const DEFAULT_SESSION: &str = "default";

/// Why an MTProto connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MtprotoError {
    /// Another process holds the session.
    #[error("the MTProto session `{name}` is in use by {holder} until {until} (Unix time): wait for it to finish, or give this process another session name")]
    SessionBusy {
        /// The session.
        name: String,
        /// Who holds it.
        holder: String,
        /// Until when.
        until: i64,
    },
    /// The session could not be read or written.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The store failed.
    #[error("MTProto session storage: {0}")]
    Store(#[from] gmbot_core::store::StoreError),
    /// Telegram refused or could not be reached.
    #[error("MTProto sign-in failed: {0}")]
    Telegram(#[from] TelegramError),
}

/// A signed-in MTProto connection holding its session's lease.
pub struct MtprotoConnection {
    client: Client,
    session: Arc<StoreSession>,
    store: Arc<dyn Store>,
    holder: String,
    runner: tokio::task::JoinHandle<()>,
    renewer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MtprotoConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtprotoConnection")
            .field("session", &self.session.name())
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// `host:pid`, naming this process in a lease.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// A holder `host:pid` of this host whose process no longer exists.
fn holder_is_dead(holder: &str) -> bool {
    let mine = holder_name();
    let (Some((host, pid)), Some((my_host, _))) = (holder.rsplit_once(':'), mine.rsplit_once(':'))
    else {
        return false;
    };
    host == my_host
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

fn lease_until(now: UnixTime) -> UnixTime {
    now.plus(LEASE_TTL)
}

impl MtprotoConnection {
    /// Leases session `name`, connects and signs the bot in if the session is not yet.
    pub async fn open(
        store: Arc<dyn Store>,
        name: &str,
        credentials: &MtprotoCredentials,
        token: &BotToken,
    ) -> Result<Self, MtprotoError> {
        let holder = holder_name();
        let now = UnixTime::now();
        let mut lease = store
            .lease_mtproto_session(name, &holder, lease_until(now), now)
            .await?;
        if let SessionLease::HeldBy {
            holder: other,
            until,
        } = &lease
        {
            if holder_is_dead(other) {
                // A process of this host that died (killed mid-audit) cannot renew: take its
                // lease now instead of making the resumed run wait for it to run out.
                log::info!(session = name, holder = other.as_str(); "taking over the lease of a process that is gone");
                let after = UnixTime(until.secs().saturating_add(1));
                lease = store
                    .lease_mtproto_session(name, &holder, lease_until(now), after)
                    .await?;
            }
        }
        if let SessionLease::HeldBy { holder, until } = lease {
            return Err(MtprotoError::SessionBusy {
                name: name.to_owned(),
                holder,
                until: until.secs(),
            });
        }
        let opened =
            Self::connect(Arc::clone(&store), name, credentials, token, holder.clone()).await;
        if opened.is_err() {
            if let Err(e) = store.release_mtproto_session(name, &holder).await {
                log::warn!(error:display = e; "cannot release the MTProto session lease");
            }
        }
        opened
    }

    async fn connect(
        store: Arc<dyn Store>,
        name: &str,
        credentials: &MtprotoCredentials,
        token: &BotToken,
        holder: String,
    ) -> Result<Self, MtprotoError> {
        let session = Arc::new(StoreSession::load(Arc::clone(&store), name).await?);
        let params = ConnectionParams {
            retry_policy: Box::new(NoRetries),
            ..ConnectionParams::default()
        };
        let pool = SenderPool::with_configuration(Arc::clone(&session), credentials.api_id, params);
        let client = Client::with_configuration(
            pool.handle,
            ClientConfiguration {
                // Members listed by an audit are not kept in the session.
                auto_cache_peers: false,
            },
        );
        // Updates are not read over MTProto (the Bot API delivers them): dropping the
        // receiver makes the pool stop forwarding them.
        drop(pool.updates);
        let runner = tokio::spawn(pool.runner.run());
        let renewer = tokio::spawn(renew(Arc::clone(&store), name.to_owned(), holder.clone()));
        let conn = Self {
            client,
            session,
            store,
            holder,
            runner,
            renewer,
        };
        let authorized = conn
            .client
            .is_authorized()
            .await
            .map_err(convert::invocation_error);
        match authorized {
            Ok(true) => {}
            Ok(false) => {
                conn.client
                    .bot_sign_in(token.expose(), credentials.api_hash.expose())
                    .await
                    .map_err(convert::invocation_error)?;
                log::info!(session = name; "signed in to MTProto as the bot");
            }
            Err(e) => {
                conn.close().await;
                return Err(e.into());
            }
        }
        Ok(conn)
    }

    /// The member directory on this connection.
    pub fn directory(&self) -> MtprotoDirectory {
        MtprotoDirectory::new(self.client.clone(), Arc::clone(&self.session))
    }

    /// The grammers client (raw calls, tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Disconnects and gives the session's lease back.
    pub async fn close(self) {
        self.client.disconnect();
        self.renewer.abort();
        // The runner ends once its connections are closed; bound the wait.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.runner).await;
        if let Err(e) = self
            .store
            .release_mtproto_session(self.session.name(), &self.holder)
            .await
        {
            log::warn!(error:display = e; "cannot release the MTProto session lease");
        }
    }
}

async fn renew(store: Arc<dyn Store>, name: String, holder: String) {
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        let now = UnixTime::now();
        match store
            .lease_mtproto_session(&name, &holder, lease_until(now), now)
            .await
        {
            Ok(SessionLease::Granted) => {}
            Ok(SessionLease::HeldBy { holder: other, .. }) => {
                log::error!(session = name.as_str(), holder = other.as_str(); "the MTProto session lease was taken over");
            }
            Err(e) => log::warn!(error:display = e; "cannot renew the MTProto session lease"),
        }
    }
}
