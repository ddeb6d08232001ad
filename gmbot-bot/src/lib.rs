//! # gmbot-bot
//!
//! GMBot's Telegram side: the Bot API client that implements `gmbot-core`'s
//! [`TelegramApi`](gmbot_core::telegram::TelegramApi) port, configuration from the
//! environment, and the simulated Telegram that tests, benchmarks and the demo run against.
//!
//! ## Layout
//!
//! - [`app`] — [`App`](app::App): store, engine, cache, dispatcher and metrics wired together.
//! - [`update`] — the transport-neutral update model the handlers work on.
//! - [`metrics`] — the bot's own Prometheus metrics.
//! - [`config`] — environment variables parsed once into [`Config`].
//! - [`secret`] — [`BotToken`] and [`SecretString`], which never print their value.
//! - [`botapi`] — [`BotApi`], the HTTP Bot API client (typed by `frankenstein`), and the
//!   classification of Telegram's error answers.
//! - [`sim`] — [`Simulator`](sim::Simulator), the fake Bot API server on 127.0.0.1.

pub mod app;
pub mod botapi;
pub mod config;
pub mod metrics;
pub mod secret;
pub mod sim;
pub mod update;

pub use botapi::{BotApi, BotApiOptions};
pub use config::{Config, ConfigError};
pub use secret::{BotToken, SecretString};
