//! The soak with faults, shared by `cargo bench -p gmbot-bot --bench soak` (10 minutes) and
//! the CI test `gmbot-bot/tests/soak.rs` (60 s): several `gmbot-bot` processes in webhook mode
//! on one private PostgreSQL and one private Redis, the simulated Telegram (in this process)
//! delivering through its load balancer to all of them over ≥ 1,000 keep-alive connections,
//! a mixed workload across many groups, faults at scheduled times, and the invariants checked
//! at the end from the simulated Telegram's own state and call log.
//!
//! - `services` — the private Redis and PostgreSQL, the bot processes, `/proc/net/tcp`.
//! - `workload` — the world (groups, channels, members), the events and what each expects.
//! - `verdict` — the invariants, the fault recovery times and the report.
#![allow(dead_code)] // the bench and the test use different parts

pub(crate) mod services;
pub(crate) mod verdict;
pub(crate) mod workload;

use std::path::PathBuf;
use std::time::Duration;

/// What one soak run does. [`SoakConfig::from_env`] reads the `GMBOT_SOAK_…` variables.
#[derive(Debug, Clone)]
pub(crate) struct SoakConfig {
    /// The `gmbot-bot` binary (`GMBOT_SOAK_BIN` overrides the one cargo built).
    pub(crate) bin: PathBuf,
    /// Length of the workload (`GMBOT_SOAK_SECONDS`).
    pub(crate) duration: Duration,
    /// Bot processes (`GMBOT_SOAK_INSTANCES`, default 3).
    pub(crate) instances: usize,
    /// Keep-alive connections in total, spread over the instances
    /// (`GMBOT_SOAK_CONNECTIONS`, default 1,002 = 334 per instance).
    pub(crate) connections: usize,
    /// Workload events per second (`GMBOT_SOAK_RATE`).
    pub(crate) rate: u32,
    /// Protected groups (`GMBOT_SOAK_GROUPS`).
    pub(crate) groups: usize,
    /// Subscribed members per group.
    pub(crate) members_per_group: usize,
    /// Faults on (`GMBOT_SOAK_FAULTS=0` turns them off, for a baseline).
    pub(crate) faults: bool,
    /// Longest wait after the workload for the bot to finish what it was given.
    pub(crate) settle: Duration,
    /// The bot's global message budget (`GMBOT_MESSAGES_PER_SECOND` given to every instance).
    pub(crate) messages_per_second: u32,
    /// The bot's per-group message budget (`GMBOT_GROUP_MESSAGES_PER_MINUTE`).
    pub(crate) group_messages_per_minute: u32,
    /// Restrictions and deletions per second (`GMBOT_ACTIONS_PER_SECOND`,
    /// `GMBOT_DELETES_PER_SECOND`).
    pub(crate) actions_per_second: u32,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl SoakConfig {
    /// The soak of `default_seconds` (overridden by `GMBOT_SOAK_SECONDS`), at `default_rate`
    /// events/s, for the binary `bin`.
    pub(crate) fn from_env(
        bin: PathBuf,
        default_seconds: u64,
        default_rate: u32,
        groups: usize,
    ) -> Self {
        let seconds = env_u64("GMBOT_SOAK_SECONDS")
            .unwrap_or(default_seconds)
            .max(20);
        Self {
            // An optimised build of the bot can be measured with the debug harness.
            bin: std::env::var_os("GMBOT_SOAK_BIN").map_or(bin, PathBuf::from),
            duration: Duration::from_secs(seconds),
            instances: env_u64("GMBOT_SOAK_INSTANCES").map_or(3, |n| n.clamp(1, 8) as usize),
            connections: env_u64("GMBOT_SOAK_CONNECTIONS").map_or(1_002, |n| n.max(1) as usize),
            rate: env_u64("GMBOT_SOAK_RATE").map_or(default_rate, |n| n.clamp(1, 10_000) as u32),
            groups: env_u64("GMBOT_SOAK_GROUPS").map_or(groups, |n| n.clamp(8, 1_000) as usize),
            members_per_group: 20,
            faults: std::env::var("GMBOT_SOAK_FAULTS").map_or(true, |v| v.trim() != "0"),
            settle: Duration::from_secs((seconds / 2).clamp(30, 120)),
            messages_per_second: 4,
            group_messages_per_minute: 20,
            actions_per_second: 30,
        }
    }
}
