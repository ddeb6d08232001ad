//! The outbound dispatcher: every Telegram call goes through it, within budget and by priority.
//!
//! Telegram answers a bot that sends too fast with `429 Too Many Requests`
//! and, if it keeps going, with longer and longer waits. GMBot therefore
//! never calls a [`TelegramApi`](crate::telegram::TelegramApi) adapter
//! directly: the [`Dispatcher`] wraps it (and implements the same trait),
//! spends the budgets of [`DispatchConfig`], orders waiting calls by
//! [`Lane`], waits out 429s and retries transient failures.

mod config;
mod dispatcher;
mod error;
mod lane;
mod metrics;
mod scheduler;

pub use self::config::DispatchConfig;
pub use self::dispatcher::{Dispatcher, LaneApi};
pub use self::error::DispatchError;
pub use self::lane::Lane;
