//! What the engine concludes: the [`Decision`], the [`Action`]s it implies, and the [`Verdict`] holding both.
//!
//! The collections are inline ([`SmallVec`]) so that a verdict on the hit
//! path allocates nothing: an allowed member carries empty lists, and a denied
//! one at most a few shared (`Arc`) channel handles.

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::domain::{
    ChatId, EnforcedChannel, GroupSettings, MessageId, NonMemberAction, UnixTime, UnknownReason,
};

/// Channels named by a verdict: shared handles to the group's configured
/// channels (clone = reference count, no copy of names or links).
pub type ChannelList = SmallVec<[Arc<EnforcedChannel>; 2]>;

/// The actions a verdict implies, in the order the frontend should perform them.
pub type Actions = SmallVec<[Action; 3]>;

/// The channels whose membership could not be determined.
pub type UnverifiableList = SmallVec<[UnverifiableChannel; 1]>;

/// Why a sender is let through without a channel check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExemptReason {
    /// The group's owner (`creator` in `getChatAdministrators`).
    Creator,
    /// A group administrator.
    Admin,
    /// An anonymous admin posting as the group (`from` = GroupAnonymousBot, `sender_chat` = the group).
    AnonymousAdmin,
    /// A post of the linked channel forwarded automatically (`from` = 777000 or `is_automatic_forward`).
    AutomaticForward,
    /// A message sent on behalf of one of the group's own enforced channels
    /// (`from` = Channel_Bot 136817688, `sender_chat` = that channel).
    OwnChannel,
    /// Another bot, and the group exempts bots.
    Bot,
    /// On the group's allow-list.
    Allowlisted,
}

impl ExemptReason {
    /// A stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creator => "creator",
            Self::Admin => "admin",
            Self::AnonymousAdmin => "anonymous_admin",
            Self::AutomaticForward => "automatic_forward",
            Self::OwnChannel => "own_channel",
            Self::Bot => "bot",
            Self::Allowlisted => "allowlisted",
        }
    }
}

/// Why a group is not enforced at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotEnforcedReason {
    /// The store does not know the group.
    UnknownGroup,
    /// Protection was switched off (`/unprotect`).
    Unprotected,
    /// Protection is paused (the bot lost its rights).
    Paused,
    /// The group is active but has no linked channel.
    NoChannels,
}

impl NotEnforcedReason {
    /// A stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownGroup => "unknown_group",
            Self::Unprotected => "unprotected",
            Self::Paused => "paused",
            Self::NoChannels => "no_channels",
        }
    }
}

/// Whether the sender may speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The sender has joined every linked channel (or membership was unknown
    /// and the group fails open — see [`Verdict::unverifiable`]).
    Allow,
    /// The sender is not checked (admin, anonymous admin, automatic forward, …).
    Exempt(ExemptReason),
    /// The group is not protected, paused, or has no channel: nothing to enforce.
    /// Kept apart from [`Decision::Allow`] so callers can skip all enforcement
    /// bookkeeping (warnings, seen-member records) for such groups.
    NotEnforced(NotEnforcedReason),
    /// The sender must join these channels first (in the group's order). With
    /// a fail-closed group, channels whose membership is unknown are listed
    /// here too (and in [`Verdict::unverifiable`]).
    Deny {
        /// The channels not joined.
        missing: ChannelList,
    },
}

impl Decision {
    /// The sender may speak (anything but [`Decision::Deny`]).
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Self::Deny { .. })
    }

    /// A stable name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Exempt(_) => "exempt",
            Self::NotEnforced(_) => "not_enforced",
            Self::Deny { .. } => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow => f.write_str("allow"),
            Self::Exempt(r) => write!(f, "exempt ({})", r.as_str()),
            Self::NotEnforced(r) => write!(f, "not enforced ({})", r.as_str()),
            Self::Deny { missing } => {
                f.write_str("deny (missing")?;
                for c in missing {
                    write!(f, " {c}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Something the frontend should do because of a verdict. The engine itself
/// talks to no one; the frontend performs these through the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Delete the offending message.
    DeleteMessage(MessageId),
    /// Mute the member (every send permission off).
    Restrict {
        /// When Telegram lifts the mute by itself; `None` = until the member
        /// joins (the bot lifts it). From the group's `mute_seconds`.
        until: Option<UnixTime>,
    },
    /// Remove the member from the group without a lasting ban.
    Kick,
    /// Post a warning with the Join and "I've joined" buttons (at most one per
    /// member per `cooldown_seconds`, deleted after `delete_after_seconds`).
    Warn {
        /// The group's `warning_ttl_seconds`.
        delete_after_seconds: u32,
        /// The group's `warning_cooldown_seconds`.
        cooldown_seconds: u32,
        /// The group's `private_warnings`: show it to the member only (Bot API 10.2
        /// ephemeral message), falling back to the public warning.
        private: bool,
    },
    /// Lift the restrictions the bot placed on this member (after a recheck found them subscribed).
    Unrestrict,
    /// Ban the chat the message was sent on behalf of from the group
    /// (`banChatSenderChat`): a member posting as a foreign channel.
    /// Never a restriction of the placeholder sender (Channel_Bot is shared by every such post).
    BanSenderChat(ChatId),
    /// Post the short warning for a message sent on behalf of a foreign
    /// channel: post as yourself after joining (at most one per group per
    /// `cooldown_seconds`, deleted after `delete_after_seconds`).
    WarnSenderChat {
        /// The group's `warning_ttl_seconds`.
        delete_after_seconds: u32,
        /// The group's `warning_cooldown_seconds`.
        cooldown_seconds: u32,
    },
}

/// The outcome classes of `gmbot_verifications_total{result}` (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerificationResult {
    /// Every linked channel joined.
    Allowed,
    /// Exempt sender.
    Exempt,
    /// Denied: some channel not joined.
    Denied,
    /// Some channel could not be checked (allowed or denied by the failure policy).
    Unverifiable,
    /// The group is not enforced.
    NotEnforced,
}

impl VerificationResult {
    /// Every result, in label order.
    pub const ALL: [VerificationResult; 5] = [
        Self::Allowed,
        Self::Exempt,
        Self::Denied,
        Self::Unverifiable,
        Self::NotEnforced,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Exempt => "exempt",
            Self::Denied => "denied",
            Self::Unverifiable => "unverifiable",
            Self::NotEnforced => "not_enforced",
        }
    }
}

/// One channel whose membership could not be determined, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiableChannel {
    /// The channel as the group links it.
    pub channel: Arc<EnforcedChannel>,
    /// What went wrong (bot not a channel admin, channel gone, Telegram unavailable).
    pub reason: UnknownReason,
}

/// The engine's answer for one sender in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the sender may speak.
    pub decision: Decision,
    /// What to do about it (empty when the sender may speak after a plain check).
    pub actions: Actions,
    /// Channels that could not be checked; the group's failure policy decided
    /// for them. Non-empty means the admins should be told (once) what to fix.
    pub unverifiable: UnverifiableList,
    /// Channel memberships answered by the membership cache, without a Telegram call
    /// (`/status` counts them per group).
    pub cache_hits: u32,
}

impl Verdict {
    /// A verdict with no actions and nothing unverifiable.
    pub fn new(decision: Decision) -> Self {
        Self {
            decision,
            actions: Actions::new(),
            unverifiable: UnverifiableList::new(),
            cache_hits: 0,
        }
    }

    /// How this verdict is counted in `gmbot_verifications_total`:
    /// [`VerificationResult::Unverifiable`] when any channel could not be
    /// checked (whatever the policy then decided), else by decision.
    pub fn result(&self) -> VerificationResult {
        if !self.unverifiable.is_empty() {
            return VerificationResult::Unverifiable;
        }
        match self.decision {
            Decision::Allow => VerificationResult::Allowed,
            Decision::Exempt(_) => VerificationResult::Exempt,
            Decision::NotEnforced(_) => VerificationResult::NotEnforced,
            Decision::Deny { .. } => VerificationResult::Denied,
        }
    }

    /// The channels the sender must join (empty unless denied).
    pub fn missing(&self) -> &[Arc<EnforcedChannel>] {
        match &self.decision {
            Decision::Deny { missing } => missing,
            _ => &[],
        }
    }
}

/// The actions a denial implies under the group's settings.
///
/// - `mute`: delete the message, restrict (until `now + mute_seconds`, or
///   until joined when `mute_seconds` is 0), warn;
/// - `delete_only`: delete the message, warn;
/// - `kick`: delete the message, kick — no warning, since the member can no
///   longer see the group (they may rejoin once subscribed).
pub(crate) fn deny_actions(
    settings: &GroupSettings,
    message: Option<MessageId>,
    now: UnixTime,
) -> Actions {
    let mut actions = Actions::new();
    if let Some(m) = message {
        actions.push(Action::DeleteMessage(m));
    }
    let warn = Action::Warn {
        delete_after_seconds: settings.warning_ttl_seconds,
        cooldown_seconds: settings.warning_cooldown_seconds,
        private: settings.private_warnings,
    };
    match settings.action {
        NonMemberAction::Mute => {
            // Telegram reads an `until_date` under 30 s from now as "forever";
            // settings validation keeps mute_seconds at 0 or >= 30 s.
            let until = (settings.mute_seconds != 0)
                .then(|| now.plus(std::time::Duration::from_secs(settings.mute_seconds.into())));
            actions.push(Action::Restrict { until });
            actions.push(warn);
        }
        NonMemberAction::DeleteOnly => actions.push(warn),
        NonMemberAction::Kick => actions.push(Action::Kick),
    }
    actions
}

/// The actions for a message sent on behalf of a chat that is neither the
/// group, its linked channel's automatic forward nor one of its channels:
/// delete it, ban that chat from the group (if the group says so), warn once.
/// The placeholder sender is never restricted or kicked.
pub(crate) fn foreign_sender_chat_actions(
    settings: &GroupSettings,
    message: Option<MessageId>,
    chat: Option<ChatId>,
) -> Actions {
    let mut actions = Actions::new();
    if let Some(m) = message {
        actions.push(Action::DeleteMessage(m));
    }
    if let Some(chat) = chat.filter(|_| settings.ban_channel_senders) {
        actions.push(Action::BanSenderChat(chat));
    }
    actions.push(Action::WarnSenderChat {
        delete_after_seconds: settings.warning_ttl_seconds,
        cooldown_seconds: settings.warning_cooldown_seconds,
    });
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mute_until_follows_settings() {
        let mut s = GroupSettings {
            mute_seconds: 3600,
            ..GroupSettings::default()
        };
        let a = deny_actions(&s, Some(MessageId(7)), UnixTime(1000));
        assert_eq!(a[0], Action::DeleteMessage(MessageId(7)));
        assert_eq!(
            a[1],
            Action::Restrict {
                until: Some(UnixTime(4600))
            }
        );
        assert!(matches!(a[2], Action::Warn { .. }));
        s.mute_seconds = 0;
        let a = deny_actions(&s, None, UnixTime(1000));
        assert_eq!(a[0], Action::Restrict { until: None });
        assert!(!a.spilled());
    }

    #[test]
    fn labels() {
        assert_eq!(
            Verdict::new(Decision::Allow).result(),
            VerificationResult::Allowed
        );
        let mut v = Verdict::new(Decision::Deny {
            missing: ChannelList::new(),
        });
        assert_eq!(v.result(), VerificationResult::Denied);
        v.unverifiable.push(UnverifiableChannel {
            channel: Arc::new(EnforcedChannel::from_ref(crate::domain::ChannelRef::Id(
                crate::domain::ChannelId(-1001),
            ))),
            reason: UnknownReason::NotChannelAdmin,
        });
        assert_eq!(v.result(), VerificationResult::Unverifiable);
    }
}
