//! What several instances of one bot agree on besides the store and the membership cache: who runs a periodic job (leases), who does a once-only thing (claims), and which per-group caches every instance must drop (group events).
//!
//! Three small ports, each no wider than its consumer needs:
//!
//! - [`LeaseStore`] — a named lease with a time to live and a fencing token. [`HeldLease`]
//!   keeps one renewed in the background and hands the job a [`Fence`] that turns false
//!   *before* the lease can have passed to another holder (see [`lease`](self::HeldLease)).
//! - [`ClaimStore`] — "the first to claim this key within this time wins": one warning per
//!   cool-down, one notice per problem, one handling of a join, across instances.
//! - [`GroupEvents`] — "group X's configuration (or admin list) changed": every instance
//!   drops its cached copy at once.
//! - [`WarningBoard`] — "group X's warning is on screen as message M, naming these members":
//!   one consolidated warning per group at a time, whichever instance posted it.
//!
//! Adapters, one file each: [`LocalCoordination`] (in-process: one instance, or tests) and
//! [`RedisCoordination`] (`SET NX PX`, Lua compare-and-extend and compare-and-delete, pub/sub).
//! Redis is an accelerator, never a dependency of a verification: every Redis call is
//! bounded by a short timeout, an outage is logged once and skipped fast, and the callers
//! decide what an unanswered claim means (the bot falls back to its in-process claim).

mod lease;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{GroupId, MessageId, UserId};

pub use self::lease::{Fence, HeldLease, Lease, LeaseLost};
pub use self::memory::LocalCoordination;
pub use self::redis::{RedisCoordination, RedisCoordinationConfig, SubscriptionGuard};

/// Why a coordination call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL `{url}`: {source}")]
    InvalidRedisUrl {
        /// The URL as given, without its password.
        url: String,
        /// What the Redis client objected to.
        #[source]
        source: ::redis::RedisError,
    },
    /// Redis did not answer in time, refused the call, or is being skipped during an outage.
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
}

/// Named leases: at most one holder of a name at a time, for at most its time to live
/// unless renewed.
///
/// Used as `Arc<dyn LeaseStore>`; [`HeldLease::acquire`] is the usual way in.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes `name` for `ttl` if nobody holds it: `Some` with a fresh token and a generation
    /// greater than every earlier holder's, `None` if another holder has it.
    async fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CoordinationError>;

    /// Extends `lease` by its time to live from now if it is still held with its token:
    /// `Ok(true)`; `Ok(false)` if it expired or another holder took it.
    async fn renew(&self, lease: &Lease) -> Result<bool, CoordinationError>;

    /// Gives `lease` up if it is still held with its token (a later holder's is left alone).
    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError>;
}

/// Once-only claims: the first caller to claim a key within its time wins.
#[async_trait]
pub trait ClaimStore: Send + Sync + 'static {
    /// `Ok(true)` if nobody claimed `key` within the last `ttl` (this caller now holds it for
    /// `ttl`), `Ok(false)` if someone did.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, CoordinationError>;

    /// Forgets `key`'s claim: the next claim wins at once.
    async fn forget(&self, key: &str) -> Result<(), CoordinationError>;

    /// Whether someone holds `key`'s claim now (without claiming it).
    async fn is_claimed(&self, key: &str) -> Result<bool, CoordinationError>;
}

/// A change every instance's per-group caches must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupEvent {
    /// The group's settings, state or channels changed (`/protect`, `/unprotect`, `/settings`,
    /// the bot's rights, a migration): drop its cached configuration.
    Config(GroupId),
    /// An admin was promoted or demoted: drop its cached admin list.
    Admins(GroupId),
    /// The subscription was (re)made: events published meanwhile may be lost, so drop every
    /// cached group (only ever delivered to a listener, never published).
    Resync,
}

impl GroupEvent {
    /// The wire form: `c:{group}` or `a:{group}`.
    fn encode(self) -> Option<String> {
        match self {
            Self::Config(g) => Some(format!("c:{}", g.get())),
            Self::Admins(g) => Some(format!("a:{}", g.get())),
            Self::Resync => None,
        }
    }

    /// Parses [`Self::encode`]'s form; `None` for anything else.
    fn decode(text: &str) -> Option<Self> {
        let (kind, id) = text.split_once(':')?;
        let group = GroupId::new(id.parse().ok()?).ok()?;
        match kind {
            "c" => Some(Self::Config(group)),
            "a" => Some(Self::Admins(group)),
            _ => None,
        }
    }
}

/// Publishes [`GroupEvent`]s to every instance (the publisher applies its own at once).
#[async_trait]
pub trait GroupEvents: Send + Sync + 'static {
    /// Tells every other instance. Best effort and bounded in time: an instance that misses
    /// it still sees the change when its cached copy expires (30 s for a configuration).
    async fn publish(&self, event: GroupEvent);
}

/// A member named on a group's shared warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardMember {
    /// The member.
    pub id: UserId,
    /// Their display name, unescaped.
    pub name: String,
}

/// Who a group's shared warning gathers: every member added while it is up is counted, the
/// first ones are named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoardView {
    /// Members gathered, each counted once.
    pub count: u64,
    /// The first of them, at most the `max_named` of [`WarningBoard::join`].
    pub named: Vec<BoardMember>,
}

/// What [`WarningBoard::join`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardSlot {
    /// No warning is up: the caller posts it and then calls [`WarningBoard::posted`] (or
    /// [`WarningBoard::clear`] if the post failed). The slot is the caller's for the board's
    /// time to live.
    Post,
    /// Another caller is posting the warning right now: the members were added, and that
    /// caller edits them in once its message is up.
    Queued,
    /// A warning is up as `message`: the members were added; the caller edits the message
    /// into `view`. `left` is how long the warning still gathers members.
    Shown {
        /// The warning message.
        message: MessageId,
        /// Everyone gathered, the caller's members included.
        view: BoardView,
        /// Time left before the next member gets a new warning.
        left: Duration,
    },
}

/// One consolidated warning per group at a time, across instances: the first caller posts
/// it, the others add their members to it and edit it, until its time to live (the group's
/// warning cool-down) has passed since it was posted.
#[async_trait]
pub trait WarningBoard: Send + Sync + 'static {
    /// Adds `members` to `group`'s warning, taking the slot (as `token`, for `ttl`) if no
    /// warning is up. `max_named` bounds [`BoardView::named`].
    async fn join(
        &self,
        group: GroupId,
        token: &str,
        members: &[BoardMember],
        max_named: usize,
        ttl: Duration,
    ) -> Result<BoardSlot, CoordinationError>;

    /// The holder of the [`BoardSlot::Post`] slot (`token`) posted `message`: everyone
    /// gathered meanwhile, its own members included, or `None` if the slot is no longer its
    /// own (it ran out while posting).
    async fn posted(
        &self,
        group: GroupId,
        token: &str,
        message: MessageId,
    ) -> Result<Option<BoardView>, CoordinationError>;

    /// The warning is gone (the post by `token` failed, or `message` can no longer be
    /// edited): the next member posts a new one. A slot taken since by someone else is left
    /// alone.
    async fn clear(
        &self,
        group: GroupId,
        token: &str,
        message: Option<MessageId>,
    ) -> Result<(), CoordinationError>;

    /// The group's shown warning and whom it gathers, without adding anyone; `None` while
    /// no warning is up (or one is being posted). The default knows nothing (`None`):
    /// implementations override it.
    async fn shown(
        &self,
        _group: GroupId,
    ) -> Result<Option<(MessageId, BoardView)>, CoordinationError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_events_round_trip_and_reject_junk() {
        for e in [
            GroupEvent::Config(GroupId(-1_001_234)),
            GroupEvent::Admins(GroupId(-5)),
        ] {
            let text = e.encode().expect("publishable");
            assert_eq!(GroupEvent::decode(&text), Some(e));
        }
        assert_eq!(GroupEvent::Resync.encode(), None);
        for bad in ["", "c:", "c:x", "x:-5", "c:5", "c-5", "a:-5:1"] {
            assert_eq!(GroupEvent::decode(bad), None, "{bad:?}");
        }
    }
}
