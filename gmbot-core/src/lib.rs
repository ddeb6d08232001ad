//! # gmbot-core
//!
//! The engine of GMBot, a channel guard for Telegram: in every protected
//! group, a member who writes must be subscribed to the channels linked to
//! that group. This crate holds everything that decision needs and nothing
//! of Telegram's transport: plain domain types, the ports (traits) the engine
//! depends on, the engine itself, and the adapters that implement the ports
//! (SQLite and PostgreSQL stores, memory and Redis caches).
//!
//! ## Layout
//!
//! - [`audit`] — batch audits: the [`MemberDirectory`](audit::MemberDirectory) port, the
//!   member-list sweep past Telegram's 10,000-per-filter cap, and the checkpoint types.
//! - [`cache`] — the [`MembershipCache`](cache::MembershipCache) port and its memory,
//!   Redis and layered adapters (TTLs with jitter, single flight, pub/sub invalidation).
//! - [`clock`] — the [`Clock`](clock::Clock) port (real and manual clocks).
//! - [`coordination`] — what several instances agree on through Redis (or in process):
//!   [`LeaseStore`](coordination::LeaseStore) leases with fencing for periodic jobs,
//!   [`ClaimStore`](coordination::ClaimStore) once-only claims, and
//!   [`GroupEvents`](coordination::GroupEvents) that drop cached group configurations and
//!   admin lists on every instance.
//! - [`dispatch`] — the outbound [`Dispatcher`](dispatch::Dispatcher): Telegram's
//!   budgets, priority lanes, 429 pauses and retries around any `TelegramApi`; the
//!   [`SharedBudget`](dispatch::SharedBudget) port and its Redis adapter, so that several
//!   instances spend one bot's budget.
//! - [`domain`] — ids, groups, channels, settings, restrictions (no I/O).
//! - [`engine`] — the verification [`Engine`](engine::Engine): group config →
//!   exemptions → linked channels, returning a decision and its actions.
//! - [`setup`] — the `/protect` checks (rights in the group and channels, invite
//!   links), shared by the bot and the CLI.
//! - [`store`] — the [`Store`](store::Store) port, its SQLite and PostgreSQL
//!   adapters, migrations and `DATABASE_URL` parsing.
//! - [`telegram`] — the [`TelegramApi`](telegram::TelegramApi) port the frontends implement,
//!   and [`MemoryTelegram`](telegram::MemoryTelegram), a scripted in-memory Telegram.
//! - [`warm`] — the cache [`WarmUp`](warm::WarmUp): re-verifies the most recently
//!   seen members first, in the dispatcher's bulk lane, bounded in count and time.
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), gmbot_core::store::StoreError> {
//! use gmbot_core::domain::{ChannelRef, EnforcedChannel, GroupId, ProtectRequest, UnixTime};
//! use gmbot_core::store::{self, MigrationMode};
//!
//! let url = "sqlite::memory:".parse()?;
//! let store = store::open(&url, MigrationMode::Apply).await?;
//! let channel: ChannelRef = "@my_channel".parse().expect("valid username");
//! let req = ProtectRequest {
//!     group: GroupId(-1001234567890),
//!     title: Some("My group".into()),
//!     owner: None,
//!     channels: vec![EnforcedChannel::from_ref(channel)],
//! };
//! let group = store.protect(&req, UnixTime::now()).await?;
//! assert!(group.is_enforced());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod cache;
pub mod clock;
pub mod coordination;
pub mod dispatch;
pub mod domain;
pub mod engine;
pub mod setup;
pub mod store;
pub mod telegram;
pub mod warm;
