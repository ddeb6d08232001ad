//! The outbound dispatcher: every Telegram call goes through it, within budget and by priority.
//!
//! Telegram answers a bot that sends too fast with `429 Too Many Requests`
//! and, if it keeps going, with longer and longer waits. GMBot therefore
//! never calls a [`TelegramApi`](crate::telegram::TelegramApi) adapter
//! directly: the [`Dispatcher`] wraps it (and implements the same trait),
//! spends the budgets of [`DispatchConfig`], orders waiting calls by
//! [`Lane`], waits out 429s and retries transient failures.
//!
//! With several instances the budgets are the bot's, not each process's:
//! [`Dispatcher::with_shared_budget`] draws them from a [`SharedBudget`]
//! ([`RedisBudget`]: GCRA in Lua, one round trip per batch of slots), and
//! falls back to `1/N` of each budget while the store is unreachable.

mod budget;
mod budget_task;
mod config;
mod dispatcher;
mod error;
mod lane;
mod metrics;
mod redis_budget;
mod scheduler;

pub use self::budget::{
    BucketRate, BudgetBucket, BudgetError, Heartbeat, Reservation, ReserveAnswer, ReserveOptions,
    SharedBudget, SharedBudgetOptions, SlotRequest,
};
pub use self::config::DispatchConfig;
pub use self::dispatcher::{Dispatcher, LaneApi};
pub use self::error::DispatchError;
pub use self::lane::Lane;
pub use self::redis_budget::{RedisBudget, RedisBudgetConfig};
