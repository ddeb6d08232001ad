//! Raid detection: a group where many non-subscribers are denied within a short window.
//!
//! Every denial of a group is counted in a sliding window (default: a raid is 20 denials
//! within 60 s, `GMBOT_RAID_DENIALS` / `GMBOT_RAID_WINDOW_SECONDS`). The moment a group
//! crosses the threshold the raid starts: one log line, `gmbot_raids_total` counts it,
//! `gmbot_groups_under_raid` goes up, and the owner is told once. It ends when a whole window
//! passes without reaching the threshold again. `/status` shows a raid going on. The
//! enforcement itself does not change in a raid — the outbox already deletes in bulk and
//! consolidates the warnings — the detection is for the people who run the group.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use gmbot_core::domain::GroupId;
use prometheus::{IntCounter, IntGauge};

/// What counts as a raid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaidConfig {
    /// Denials within [`window`](Self::window) that make a raid.
    pub denials: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RaidConfig {
    fn default() -> Self {
        Self {
            denials: 20,
            window: Duration::from_secs(60),
        }
    }
}

/// A raid going on, for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaidStatus {
    /// Milliseconds (app clock) when it started.
    pub since_ms: u64,
    /// Denials since it started.
    pub denials: u64,
}

#[derive(Debug, Default)]
struct GroupWindow {
    recent: VecDeque<u64>,
    raid: Option<RaidStatus>,
}

/// Per-group denial windows. Memory: at most `denials` timestamps per group seen denying
/// within the window; quiet groups are forgotten.
#[derive(Debug)]
pub struct RaidWatch {
    config: RaidConfig,
    groups: Mutex<HashMap<GroupId, GroupWindow>>,
    started: IntCounter,
    active: IntGauge,
}

/// What one denial meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaidEvent {
    /// Nothing new.
    None,
    /// This denial started a raid.
    Started,
}

impl RaidWatch {
    pub(crate) fn new(config: RaidConfig, started: IntCounter, active: IntGauge) -> Self {
        Self {
            config: RaidConfig {
                denials: config.denials.max(1),
                window: config.window.max(Duration::from_secs(1)),
            },
            groups: Mutex::new(HashMap::new()),
            started,
            active,
        }
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.config.window.as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a denial in `group` at `now_ms`.
    pub fn denied(&self, group: GroupId, now_ms: u64) -> RaidEvent {
        let window = self.window_ms();
        let threshold = self.config.denials as usize;
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if groups.len() > 100_000 {
            self.forget_quiet(&mut groups, now_ms);
        }
        let g = groups.entry(group).or_default();
        while g
            .recent
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= window)
        {
            g.recent.pop_front();
        }
        g.recent.push_back(now_ms);
        if g.recent.len() > threshold {
            g.recent.pop_front();
        }
        if let Some(raid) = &mut g.raid {
            raid.denials += 1;
            return RaidEvent::None;
        }
        if g.recent.len() >= threshold {
            g.raid = Some(RaidStatus {
                since_ms: now_ms,
                denials: threshold as u64,
            });
            self.started.inc();
            self.active.inc();
            return RaidEvent::Started;
        }
        RaidEvent::None
    }

    /// The raid going on in `group`, if any (ending it if a window passed quietly).
    pub fn status(&self, group: GroupId, now_ms: u64) -> Option<RaidStatus> {
        let window = self.window_ms();
        let threshold = self.config.denials as usize;
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let g = groups.get_mut(&group)?;
        let in_window = g
            .recent
            .iter()
            .filter(|&&t| now_ms.saturating_sub(t) < window)
            .count();
        if g.raid.is_some()
            && in_window < threshold
            && g.recent
                .back()
                .is_none_or(|&t| now_ms.saturating_sub(t) >= window)
        {
            g.raid = None;
            self.active.dec();
            log::info!(group_id = group.get(); "raid over");
        }
        g.raid
    }

    fn forget_quiet(&self, groups: &mut HashMap<GroupId, GroupWindow>, now_ms: u64) {
        let window = self.window_ms();
        groups.retain(|_, g| {
            let quiet = g
                .recent
                .back()
                .is_none_or(|&t| now_ms.saturating_sub(t) >= window);
            if quiet && g.raid.is_some() {
                self.active.dec();
            }
            !quiet
        });
    }

    /// The thresholds in force.
    pub fn config(&self) -> RaidConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(denials: u32) -> RaidWatch {
        RaidWatch::new(
            RaidConfig {
                denials,
                window: Duration::from_secs(60),
            },
            IntCounter::new("r", "r").expect("counter"),
            IntGauge::new("a", "a").expect("gauge"),
        )
    }

    #[test]
    fn starts_once_at_the_threshold_and_ends_after_a_quiet_window() {
        let w = watch(3);
        let g = GroupId(-100);
        assert_eq!(w.denied(g, 0), RaidEvent::None);
        assert_eq!(w.denied(g, 1_000), RaidEvent::None);
        assert_eq!(w.denied(g, 2_000), RaidEvent::Started);
        assert_eq!(w.denied(g, 3_000), RaidEvent::None, "told once");
        assert_eq!(w.started.get(), 1);
        assert_eq!(w.active.get(), 1);
        let s = w.status(g, 4_000).expect("raid on");
        assert_eq!((s.since_ms, s.denials), (2_000, 4));
        assert_eq!(w.status(GroupId(-200), 4_000), None, "per group");
        assert_eq!(w.status(g, 63_001), None, "a quiet window ends it");
        assert_eq!(w.active.get(), 0);
    }

    #[test]
    fn denials_spread_wider_than_the_window_are_no_raid() {
        let w = watch(3);
        let g = GroupId(-100);
        for i in 0..10u64 {
            assert_eq!(w.denied(g, i * 31_000), RaidEvent::None, "denial {i}");
        }
        assert_eq!(w.started.get(), 0);
    }
}
