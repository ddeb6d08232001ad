//! # gmbot-bot
//!
//! GMBot's Telegram side: the Bot API client that implements `gmbot-core`'s
//! [`TelegramApi`](gmbot_core::telegram::TelegramApi) port, configuration from the
//! environment, and the simulated Telegram that tests, benchmarks and the demo run against.
//!
//! ## Layout
//!
//! - [`app`] — [`App`](app::App): store, engine, cache, dispatcher and metrics wired together.
//! - [`audit`] — `gmbot audit`'s runner: every member of a group checked in the bulk lane,
//!   a checkpoint per page, `--apply` muting as the bot does.
//! - [`update`] — the transport-neutral update model the handlers work on.
//! - [`metrics`] — the bot's own Prometheus metrics.
//! - [`config`] — environment variables parsed once into [`Config`].
//! - [`secret`] — [`BotToken`] and [`SecretString`], which never print their value.
//! - [`botapi`] — [`BotApi`], the HTTP Bot API client (typed by `frankenstein`), and the
//!   classification of Telegram's error answers.
//! - [`mtproto`] — the MTProto frontend (grammers): a session on the store, sign-in, the
//!   member directory that `gmbot audit` lists groups with.
//! - [`http`] — the `tiny_http` listener: webhook, `/health`, `/ready`, `/metrics`.
//! - [`logging`] — `env_logger` as text or JSON lines, with the records' key-values.
//! - [`sentry`] — error and panic reports to Sentry, tagged with their context, scrubbed.
//! - [`handlers`] — [`handlers::handle`], the one `match` over update kinds every transport calls.
//! - [`runtime`] — de-duplication and the per-chat sequencer: one chat's updates in order,
//!   different chats concurrently.
//! - [`outbox`] — actions waiting for their Telegram budget: round-robin across groups, bulk
//!   deletes, consolidated warnings, bounded queues.
//! - [`flows`] — enforcing verdicts, warnings, lifting, joins and leaves, the bot's own status,
//!   migrations, reconciliation and seen-member batching.
//! - [`commands`] — the admin commands (`/protect`, `/status`, `/settings`, …) and the settings keyboard.
//! - [`group_stats`] — per-group verification counters shown by `/status`.
//! - [`sim`] — [`Simulator`](sim::Simulator), the fake Bot API server on 127.0.0.1.
//! - `fuzzing` (hidden, not an API) — the entry points of the fuzz targets in `fuzz/`, with
//!   the properties they check (docs/testing.md, "Fuzzing").

pub mod app;
pub mod audit;
pub mod botapi;
pub mod commands;
pub mod config;
pub mod demo;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod group_stats;
pub mod handlers;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod mtproto;
pub mod outbox;
pub mod run;
pub mod runtime;
pub mod secret;
pub mod sentry;
pub mod sim;
pub mod transport;
pub mod update;

pub use botapi::{BotApi, BotApiOptions};
pub use config::{Config, ConfigError};
pub use secret::{BotToken, SecretString};
