//! Per-group settings an admin changes with `/settings`, and the closed set of changes they can make.
//!
//! Settings are stored as one JSON document per group; every field has a
//! default, so a document written by an older version still loads.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::ids::UserId;

/// What happens to a non-member who writes in a protected group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NonMemberAction {
    /// Delete the message and mute the member until they join (default).
    #[default]
    Mute,
    /// Delete the message only.
    DeleteOnly,
    /// Delete the message and remove the member from the group (they may rejoin).
    Kick,
}

impl NonMemberAction {
    /// The stable name used in the database, the CLI and the settings keyboard.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::DeleteOnly => "delete_only",
            Self::Kick => "kick",
        }
    }
}

/// What the engine decides when membership cannot be determined
/// (bot not admin of the channel, channel gone, Telegram down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Let the member speak (default: a misconfiguration must not silence a group).
    #[default]
    Open,
    /// Treat the member as not subscribed.
    Closed,
}

impl FailurePolicy {
    /// The stable name used in the database, the CLI and the settings keyboard.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// A group's enforcement settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupSettings {
    /// Action on a non-member's message.
    pub action: NonMemberAction,
    /// How long a mute lasts, in seconds; `0` means until the member joins.
    pub mute_seconds: u32,
    /// Seconds after which the bot deletes its own warning.
    pub warning_ttl_seconds: u32,
    /// At most one warning per member per this many seconds.
    pub warning_cooldown_seconds: u32,
    /// Fail open or closed when membership is unknown.
    pub failure_policy: FailurePolicy,
    /// Let other bots write without being verified.
    pub exempt_bots: bool,
    /// Verify members as they join the group, before they write.
    pub check_on_join: bool,
    /// Mute a member in the linked groups as soon as they leave a channel.
    pub strict_leave: bool,
    /// Ban a channel from the group (`banChatSenderChat`) when a member posts
    /// on its behalf and it is not one of the group's own chats.
    pub ban_channel_senders: bool,
    /// Users an admin has exempted by hand.
    pub allowlist: BTreeSet<UserId>,
    /// Decide join requests (`chat_join_request`): approve subscribers at once, give
    /// non-subscribers `join_wait_seconds` to join the channels, then decline. Needs the
    /// bot's `can_invite_users` right in the group. Off by default: the admins decide.
    pub join_gate: bool,
    /// How long a non-subscriber's join request waits for them to join the channels.
    pub join_wait_seconds: u32,
    /// Show a member's warning to that member only (Bot API 10.2 ephemeral messages), with
    /// the public, auto-deleted warning as the fallback.
    pub private_warnings: bool,
}

/// How long a non-subscriber's join request waits by default (10 minutes).
pub const DEFAULT_JOIN_WAIT_SECONDS: u32 = 600;

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            action: NonMemberAction::Mute,
            mute_seconds: 0,
            warning_ttl_seconds: 60,
            warning_cooldown_seconds: 300,
            failure_policy: FailurePolicy::Open,
            exempt_bots: true,
            check_on_join: true,
            strict_leave: true,
            ban_channel_senders: true,
            allowlist: BTreeSet::new(),
            join_gate: false,
            join_wait_seconds: DEFAULT_JOIN_WAIT_SECONDS,
            private_warnings: false,
        }
    }
}

/// Upper bound on the allow-list, so one group cannot grow its settings document without limit.
pub const MAX_ALLOWLIST: usize = 1000;

/// One change to a group's settings. Changes are applied inside the store's
/// transaction, so two admins changing different settings at once both win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingChange {
    /// Set the action on non-members.
    Action(NonMemberAction),
    /// Set the mute length in seconds (0 = until joined).
    MuteSeconds(u32),
    /// Set the warning auto-delete delay in seconds.
    WarningTtlSeconds(u32),
    /// Set the warning cool-down in seconds.
    WarningCooldownSeconds(u32),
    /// Set fail-open or fail-closed.
    FailurePolicy(FailurePolicy),
    /// Exempt other bots or not.
    ExemptBots(bool),
    /// Check members on join or not.
    CheckOnJoin(bool),
    /// Mute on channel leave or not.
    StrictLeave(bool),
    /// Ban foreign channels whose posts are deleted, or not.
    BanChannelSenders(bool),
    /// Add a user to the allow-list.
    Allow(UserId),
    /// Remove a user from the allow-list.
    Disallow(UserId),
    /// Decide join requests or leave them to the admins.
    JoinGate(bool),
    /// Set how long a non-subscriber's join request waits, in seconds.
    JoinWaitSeconds(u32),
    /// Show warnings to the member only, or in the group.
    PrivateWarnings(bool),
}

/// Why a settings change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Telegram treats restrictions shorter than 30 s or longer than 366 days as
    /// permanent (Bot API `restrictChatMember.until_date`), which would surprise an admin.
    #[error("mute length {0} s is outside 30 s..366 days (use 0 for 'until the member joins')")]
    MuteLength(u32),
    /// A warning must live long enough to be read and short enough not to linger.
    #[error("warning delay {0} s is outside 5 s..24 h")]
    WarningTtl(u32),
    /// The cool-down is bounded to one day.
    #[error("warning cool-down {0} s is more than 24 h")]
    Cooldown(u32),
    /// The allow-list is full.
    #[error("the allow-list already holds {MAX_ALLOWLIST} users")]
    AllowlistFull,
    /// A join request must wait long enough for someone to join a channel, and not for days.
    #[error("join request wait {0} s is outside 1 min..24 h")]
    JoinWait(u32),
}

impl GroupSettings {
    /// Applies one change after validating it; the settings are unchanged on error.
    pub fn apply(&mut self, change: &SettingChange) -> Result<(), SettingsError> {
        const DAY: u32 = 24 * 3600;
        match *change {
            SettingChange::Action(a) => self.action = a,
            SettingChange::MuteSeconds(s) => {
                if s != 0 && !(30..=366 * DAY).contains(&s) {
                    return Err(SettingsError::MuteLength(s));
                }
                self.mute_seconds = s;
            }
            SettingChange::WarningTtlSeconds(s) => {
                if !(5..=DAY).contains(&s) {
                    return Err(SettingsError::WarningTtl(s));
                }
                self.warning_ttl_seconds = s;
            }
            SettingChange::WarningCooldownSeconds(s) => {
                if s > DAY {
                    return Err(SettingsError::Cooldown(s));
                }
                self.warning_cooldown_seconds = s;
            }
            SettingChange::FailurePolicy(p) => self.failure_policy = p,
            SettingChange::ExemptBots(b) => self.exempt_bots = b,
            SettingChange::CheckOnJoin(b) => self.check_on_join = b,
            SettingChange::StrictLeave(b) => self.strict_leave = b,
            SettingChange::BanChannelSenders(b) => self.ban_channel_senders = b,
            SettingChange::Allow(u) => {
                if !self.allowlist.contains(&u) && self.allowlist.len() >= MAX_ALLOWLIST {
                    return Err(SettingsError::AllowlistFull);
                }
                self.allowlist.insert(u);
            }
            SettingChange::Disallow(u) => {
                self.allowlist.remove(&u);
            }
            SettingChange::JoinGate(b) => self.join_gate = b,
            SettingChange::JoinWaitSeconds(s) => {
                if !(60..=DAY).contains(&s) {
                    return Err(SettingsError::JoinWait(s));
                }
                self.join_wait_seconds = s;
            }
            SettingChange::PrivateWarnings(b) => self.private_warnings = b,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_documents_load_with_defaults() {
        let s: GroupSettings = serde_json::from_str(r#"{"action":"kick"}"#).expect("parses");
        assert_eq!(s.action, NonMemberAction::Kick);
        assert_eq!(
            s.warning_ttl_seconds,
            GroupSettings::default().warning_ttl_seconds
        );
    }

    #[test]
    fn invalid_changes_leave_settings_untouched() {
        let mut s = GroupSettings::default();
        assert_eq!(
            s.apply(&SettingChange::MuteSeconds(10)),
            Err(SettingsError::MuteLength(10))
        );
        assert_eq!(s, GroupSettings::default());
        s.apply(&SettingChange::MuteSeconds(3600)).expect("valid");
        s.apply(&SettingChange::Allow(UserId(5))).expect("valid");
        assert_eq!(s.mute_seconds, 3600);
        assert!(s.allowlist.contains(&UserId(5)));
    }

    #[test]
    fn the_join_gate_is_off_by_default_and_its_wait_is_bounded() {
        let s: GroupSettings = serde_json::from_str("{}").expect("parses");
        assert!(!s.join_gate && !s.private_warnings);
        assert_eq!(s.join_wait_seconds, DEFAULT_JOIN_WAIT_SECONDS);
        let mut s = GroupSettings::default();
        for bad in [0, 59, 86_401] {
            assert_eq!(
                s.apply(&SettingChange::JoinWaitSeconds(bad)),
                Err(SettingsError::JoinWait(bad))
            );
        }
        assert_eq!(s, GroupSettings::default());
        s.apply(&SettingChange::JoinWaitSeconds(1800))
            .expect("valid");
        s.apply(&SettingChange::JoinGate(true)).expect("valid");
        s.apply(&SettingChange::PrivateWarnings(true))
            .expect("valid");
        assert!(s.join_gate && s.private_warnings);
        assert_eq!(s.join_wait_seconds, 1800);
    }
}
