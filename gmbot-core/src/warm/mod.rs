//! Cache warm-up: re-verify the most recently active members first, in the dispatcher's bulk lane, so the first messages after a cold start hit the cache.
//!
//! After a restart the in-process cache is empty (and after a Redis restart
//! or failover, the shared one too): every member who writes costs a
//! `getChatMember` until the cache has filled, and the first minutes of a
//! busy deployment are its worst. The members most likely to write next are
//! those who wrote last, so the warm-up walks every protected group's seen
//! members ([`Store::recently_seen`]) merged into one sequence, most recent
//! first, and looks each of their (channel, member) keys up through the
//! cache ([`MembershipCache::get_or_load`]: a key already cached costs
//! nothing, a missing one is loaded once, and a live lookup of the same key
//! shares that load).
//!
//! It never competes with live traffic:
//! - its Telegram calls go through the dispatcher's [`Lane::Bulk`], behind
//!   every live call when a budget is short, and it waits while calls of the
//!   interactive or enforcement lanes are queued (a raid, a 429 pause);
//! - it makes at most [`WarmConfig::calls_per_second`] calls (keys found in
//!   the cache are free), [`WarmConfig::concurrency`] at a time;
//! - it stops at the first of: every member seen within
//!   [`WarmConfig::seen_within`] done, [`WarmConfig::max_members`] members,
//!   [`WarmConfig::max_duration`], or the stop signal (shutdown);
//! - a channel whose members the bot cannot read (not an admin there, chat
//!   gone) is skipped after its first such answer.
//!
//! What it writes is an ordinary load: an event for the key that arrives
//! meanwhile wins over it (see [`crate::cache`]).

mod order;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::cache::{CacheSource, MembershipCache, MembershipKey};
use crate::clock::Clock;
use crate::dispatch::{Dispatcher, Lane, LaneApi};
use crate::domain::{ChannelId, ChatId, GroupId, UnixTime};
use crate::store::{Store, StoreError};
use crate::telegram::{TelegramApi, TelegramError};

use self::order::RecencyOrder;

/// Bounds and pace of a warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmConfig {
    /// Members re-verified at most (each costs up to one call per channel of its group). `0` = none.
    pub max_members: u32,
    /// Wall time after which the warm-up stops wherever it is.
    pub max_duration: Duration,
    /// Telegram calls per second at most (keys found in a cache layer cost none).
    pub calls_per_second: u32,
    /// Keys looked up at once.
    pub concurrency: usize,
    /// Members last seen longer ago than this are not warmed.
    pub seen_within: Duration,
}

impl Default for WarmConfig {
    /// 20,000 members, 5 minutes, 50 calls/s, 4 at once, seen within a day.
    fn default() -> Self {
        Self {
            max_members: 20_000,
            max_duration: Duration::from_secs(300),
            calls_per_second: 50,
            concurrency: 4,
            seen_within: Duration::from_secs(24 * 3600),
        }
    }
}

impl WarmConfig {
    /// Checks the values: a positive rate, concurrency and duration.
    pub fn validate(&self) -> Result<(), WarmError> {
        if self.calls_per_second == 0 {
            return Err(WarmError::InvalidConfig(
                "calls_per_second must be at least 1".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(WarmError::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        if self.max_duration.is_zero() {
            return Err(WarmError::InvalidConfig(
                "max_duration must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}

/// Which groups to warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmScope {
    /// Every group whose protection is enforced now.
    All,
    /// One group (an error if it is not known or not enforced).
    Group(GroupId),
}

/// Why a warm-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmStop {
    /// Every member seen within the window was warmed.
    Done,
    /// [`WarmConfig::max_members`] was reached.
    MaxMembers,
    /// [`WarmConfig::max_duration`] passed.
    Deadline,
    /// The stop signal fired (shutdown, Ctrl-C).
    Stopped,
}

impl WarmStop {
    /// A short name for logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::MaxMembers => "max_members",
            Self::Deadline => "deadline",
            Self::Stopped => "stopped",
        }
    }
}

/// What a warm-up did (also its progress, while it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmReport {
    /// Enforced groups in scope.
    pub groups: usize,
    /// Members taken, most recent first.
    pub members: u64,
    /// (channel, member) keys looked up.
    pub keys: u64,
    /// Keys a cache layer already had (no Telegram call).
    pub cached: u64,
    /// Keys Telegram answered (now cached).
    pub loaded: u64,
    /// Keys Telegram failed on (not cached).
    pub failed: u64,
    /// Channels given up because Telegram refused to show their members.
    pub skipped_channels: Vec<ChannelId>,
    /// When the most recent and the oldest member taken were last seen.
    pub seen_range: Option<(UnixTime, UnixTime)>,
    /// Why it ended (`None` while it runs).
    pub stop: Option<WarmStop>,
    /// Wall time so far.
    pub elapsed: Duration,
}

/// Why a warm-up could not run.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// The store failed (listing groups or reading seen members).
    #[error("cannot read the groups or their seen members: {0}")]
    Store(#[from] StoreError),
    /// [`WarmScope::Group`] names a group the store does not know.
    #[error("group {0} is not known")]
    UnknownGroup(GroupId),
    /// [`WarmScope::Group`] names a group that is not enforced now.
    #[error("group {group} is not enforced now ({reason}): there is nothing to warm")]
    NotEnforced {
        /// The group.
        group: GroupId,
        /// Its state, or why its channels cannot be checked.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid warm-up configuration: {0}")]
    InvalidConfig(String),
}

/// What a warm-up works with.
#[derive(Clone)]
pub struct WarmPorts {
    /// Where the groups and their seen members are.
    pub store: Arc<dyn Store>,
    /// The cache to fill.
    pub cache: Arc<dyn MembershipCache>,
    /// Telegram: the warm-up's calls go through its bulk lane, and it yields
    /// while the live lanes have calls waiting.
    pub dispatcher: Dispatcher,
    /// Time for "seen within".
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WarmPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPorts").finish_non_exhaustive()
    }
}

/// How often the warm-up looks again whether the live lanes are clear.
const YIELD_POLL: Duration = Duration::from_millis(50);

/// What [`WarmUp::on_progress`] calls.
type ProgressFn = Box<dyn Fn(&WarmReport) + Send + Sync>;

/// One warm-up: its ports, bounds and an optional progress callback.
pub struct WarmUp {
    ports: WarmPorts,
    config: WarmConfig,
    progress: Option<(Duration, ProgressFn)>,
}

impl std::fmt::Debug for WarmUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmUp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The enforced groups in scope, each with the channels whose ids are known.
async fn groups_in_scope(
    store: &dyn Store,
    scope: WarmScope,
) -> Result<Vec<(GroupId, Vec<ChannelId>)>, WarmError> {
    let groups = match scope {
        WarmScope::All => store.list_groups().await?,
        WarmScope::Group(id) => {
            let group = store.group(id).await?.ok_or(WarmError::UnknownGroup(id))?;
            if !group.is_enforced() {
                let reason = if group.channels.is_empty() {
                    "no linked channel".to_owned()
                } else {
                    group.state.as_str().to_owned()
                };
                return Err(WarmError::NotEnforced { group: id, reason });
            }
            if group.channels.iter().all(|c| c.id.is_none()) {
                return Err(WarmError::NotEnforced {
                    group: id,
                    reason:
                        "its channels are known by username only; the bot resolves them at start"
                            .into(),
                });
            }
            vec![group]
        }
    };
    Ok(groups
        .into_iter()
        .filter(|g| g.is_enforced())
        .map(|g| {
            let ids: Vec<ChannelId> = g.channels.iter().filter_map(|c| c.id).collect();
            (g.id, ids)
        })
        .filter(|(_, ids)| !ids.is_empty())
        .collect())
}

/// Whether an error means the bot cannot read this channel's members at all.
fn channel_unreadable(err: &TelegramError) -> bool {
    matches!(
        err,
        TelegramError::NotEnoughRights(_)
            | TelegramError::ChatNotFound(_)
            | TelegramError::Forbidden(_)
    )
}

impl WarmUp {
    /// A warm-up with these ports and bounds.
    pub fn new(ports: WarmPorts, config: WarmConfig) -> Result<Self, WarmError> {
        config.validate()?;
        Ok(Self {
            ports,
            config,
            progress: None,
        })
    }

    /// Calls `report` with the progress every `every` while it runs.
    #[must_use]
    pub fn on_progress(
        mut self,
        every: Duration,
        report: impl Fn(&WarmReport) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some((every.max(Duration::from_millis(100)), Box::new(report)));
        self
    }

    /// Warms `scope` until done, a bound, or `stop` resolves.
    pub async fn run(
        &self,
        scope: WarmScope,
        stop: impl Future<Output = ()>,
    ) -> Result<WarmReport, WarmError> {
        let started = Instant::now();
        let deadline = started + self.config.max_duration;
        let groups = groups_in_scope(self.ports.store.as_ref(), scope).await?;
        let mut report = WarmReport {
            groups: groups.len(),
            members: 0,
            keys: 0,
            cached: 0,
            loaded: 0,
            failed: 0,
            skipped_channels: Vec::new(),
            seen_range: None,
            stop: None,
            elapsed: Duration::ZERO,
        };
        let within = i64::try_from(self.config.seen_within.as_secs()).unwrap_or(i64::MAX);
        let cutoff = UnixTime(self.ports.clock.unix_now().0.saturating_sub(within));
        let mut order = RecencyOrder::new(Arc::clone(&self.ports.store), groups, cutoff);
        let lane = self.ports.dispatcher.lane(Lane::Bulk);
        let interval = Duration::from_secs(1) / self.config.calls_per_second;
        let mut pace = Pace {
            next: started,
            interval,
        };
        let mut warmed: HashSet<MembershipKey> = HashSet::new();
        let mut skipped: HashSet<ChannelId> = HashSet::new();
        let mut pending: Vec<MembershipKey> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let mut next_progress = self.progress.as_ref().map(|(every, _)| started + *every);
        let mut members_done = false;
        let mut hit_max = false;
        let mut stopped = false;
        tokio::pin!(stop);

        let stop_reason = loop {
            if stopped {
                break WarmStop::Stopped;
            }
            if Instant::now() >= deadline {
                break WarmStop::Deadline;
            }
            // Fill the pipeline: keys of the next members, most recent first.
            while in_flight.len() < self.config.concurrency {
                if let Some(key) = pending.pop() {
                    if skipped.contains(&key.channel) {
                        continue;
                    }
                    report.keys += 1;
                    if self.ports.cache.get_local(key).is_some() {
                        report.cached += 1;
                        continue;
                    }
                    in_flight.push(self.warm_key(&lane, key, pace.ready_at()));
                    continue;
                }
                if members_done {
                    break;
                }
                if report.members >= u64::from(self.config.max_members) {
                    members_done = true;
                    hit_max = true;
                    break;
                }
                let next = tokio::select! {
                    biased;
                    () = &mut stop, if !stopped => {
                        stopped = true;
                        break;
                    }
                    () = tokio::time::sleep_until(deadline) => break,
                    next = order.next() => next?,
                };
                let Some(member) = next else {
                    members_done = true;
                    break;
                };
                report.members += 1;
                report.seen_range = Some(match report.seen_range {
                    None => (member.last_seen, member.last_seen),
                    Some((newest, _)) => (newest, member.last_seen),
                });
                // Reversed so that `pop` takes the group's channels in their order.
                pending.extend(
                    member
                        .channels
                        .iter()
                        .rev()
                        .map(|&c| MembershipKey::new(c, member.user))
                        .filter(|k| warmed.insert(*k)),
                );
            }
            if in_flight.is_empty() {
                if members_done && pending.is_empty() {
                    break if hit_max {
                        WarmStop::MaxMembers
                    } else {
                        WarmStop::Done
                    };
                }
                // Stopped or past the deadline while reading members: the top of the loop says which.
                continue;
            }
            let progress_at = next_progress.unwrap_or(deadline);
            tokio::select! {
                biased;
                () = &mut stop, if !stopped => stopped = true,
                () = tokio::time::sleep_until(deadline) => {}
                () = tokio::time::sleep_until(progress_at), if next_progress.is_some() => {
                    if let Some((every, report_fn)) = &self.progress {
                        report.elapsed = started.elapsed();
                        report_fn(&report);
                        next_progress = Some(Instant::now() + *every);
                    }
                }
                Some((key, outcome)) = in_flight.next() => match outcome {
                    Outcome::Cached => report.cached += 1,
                    Outcome::Loaded => {
                        report.loaded += 1;
                        pace.spent();
                    }
                    Outcome::Failed(err) => {
                        report.failed += 1;
                        pace.spent();
                        if channel_unreadable(&err) && skipped.insert(key.channel) {
                            report.skipped_channels.push(key.channel);
                            log::warn!(
                                channel_id = key.channel.get(),
                                error:display = err;
                                "cache warm-up skips a channel whose members the bot cannot read"
                            );
                        }
                    }
                },
            }
        };
        // Loads still running are dropped: a live lookup waiting on one takes it over.
        drop(in_flight);
        report.stop = Some(stop_reason);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Looks one key up: after the pace allows a call and the live lanes are
    /// clear, through the cache, loading in the bulk lane on a miss.
    async fn warm_key(
        &self,
        lane: &LaneApi,
        key: MembershipKey,
        ready_at: Instant,
    ) -> (MembershipKey, Outcome) {
        tokio::time::sleep_until(ready_at).await;
        while self.live_backlog() {
            tokio::time::sleep(YIELD_POLL).await;
        }
        let loader = lane.get_chat_member(ChatId::from(key.channel), key.user);
        let outcome = match self.ports.cache.get_or_load(key, loader).await {
            Ok(l) if l.source == CacheSource::Loaded => Outcome::Loaded,
            Ok(_) => Outcome::Cached,
            Err(err) => Outcome::Failed(err),
        };
        (key, outcome)
    }

    /// Whether live calls (a user waiting, enforcement) are queued in the dispatcher.
    fn live_backlog(&self) -> bool {
        let d = &self.ports.dispatcher;
        d.queue_depth(Lane::Interactive) + d.queue_depth(Lane::Enforcement) > 0
    }
}

/// One key's result.
enum Outcome {
    Cached,
    Loaded,
    Failed(TelegramError),
}

/// The call pace: a Telegram call spends one interval; keys found in a
/// cache layer spend nothing.
struct Pace {
    next: Instant,
    interval: Duration,
}

impl Pace {
    /// When the next key may start.
    fn ready_at(&self) -> Instant {
        self.next
    }

    /// A call was made: the next one waits an interval more.
    fn spent(&mut self) {
        self.next = self.next.max(Instant::now()) + self.interval;
    }
}

impl WarmReport {
    /// Telegram calls made (loads and failures).
    pub fn calls(&self) -> u64 {
        self.loaded + self.failed
    }
}
