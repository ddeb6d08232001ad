//! The settings keyboard: its text, its buttons and the callback data they carry.
//!
//! Callback data is `s:` followed by a short code (Telegram allows 1–64
//! bytes). It names a *preset*, never a free value: a forged callback can at
//! worst pick another preset, and only an admin's press is ever applied.

use gmbot_core::domain::{FailurePolicy, GroupSettings, NonMemberAction, SettingChange};
use gmbot_core::telegram::{InlineButton, OutgoingMessage};

use crate::commands::protect::duration_words;
use crate::commands::reply::escape;

/// Prefix of every settings callback.
pub const PREFIX: &str = "s:";

/// Mute lengths offered, in seconds (`0` = until the member joins).
pub const MUTE_PRESETS: [u32; 5] = [0, 600, 3600, 86_400, 604_800];

/// Warning auto-delete delays offered, in seconds.
pub const WARNING_PRESETS: [u32; 4] = [15, 30, 60, 300];

/// How long a non-subscriber's join request may wait, offered in seconds.
pub const JOIN_WAIT_PRESETS: [u32; 4] = [300, 600, 1800, 3600];

/// What one settings button asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Press {
    /// Apply a change.
    Change(SettingChange),
    /// Close the keyboard.
    Done,
}

/// Parses settings callback data; `None` for anything that is not one of our buttons.
pub fn parse_press(data: &str) -> Option<Press> {
    let code = data.strip_prefix(PREFIX)?;
    let (key, value) = code.split_once(':').unwrap_or((code, ""));
    let flag = || match value {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    };
    let preset = |presets: &[u32]| {
        value
            .parse::<u32>()
            .ok()
            .filter(|v| presets.contains(v) && value == v.to_string())
    };
    let change = match key {
        "done" if value.is_empty() => return Some(Press::Done),
        "a" => SettingChange::Action(match value {
            "mute" => NonMemberAction::Mute,
            "del" => NonMemberAction::DeleteOnly,
            "kick" => NonMemberAction::Kick,
            _ => return None,
        }),
        "m" => SettingChange::MuteSeconds(preset(&MUTE_PRESETS)?),
        "w" => SettingChange::WarningTtlSeconds(preset(&WARNING_PRESETS)?),
        "j" => SettingChange::CheckOnJoin(flag()?),
        "l" => SettingChange::StrictLeave(flag()?),
        "b" => SettingChange::ExemptBots(flag()?),
        "c" => SettingChange::BanChannelSenders(flag()?),
        "g" => SettingChange::JoinGate(flag()?),
        "gw" => SettingChange::JoinWaitSeconds(preset(&JOIN_WAIT_PRESETS)?),
        "p" => SettingChange::PrivateWarnings(flag()?),
        "f" => SettingChange::FailurePolicy(match value {
            "open" => FailurePolicy::Open,
            "closed" => FailurePolicy::Closed,
            _ => return None,
        }),
        _ => return None,
    };
    Some(Press::Change(change))
}

fn button(text: String, data: String) -> InlineButton {
    InlineButton::Callback { text, data }
}

fn mark(on: bool, text: &str) -> String {
    if on {
        format!("✓ {text}")
    } else {
        text.to_owned()
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn mute_label(secs: u32) -> String {
    if secs == 0 {
        "until joined".into()
    } else {
        duration_words(secs)
    }
}

/// The settings message: the current values in words and the keyboard to change them.
pub fn settings_message(title: Option<&str>, s: &GroupSettings) -> OutgoingMessage {
    let action = match s.action {
        NonMemberAction::Mute => "delete the message and mute",
        NonMemberAction::DeleteOnly => "delete the message only",
        NonMemberAction::Kick => "delete the message and remove from the group",
    };
    let html = format!(
        "<b>Settings{}</b>\n\
         Non-members who write: {action}\n\
         Mute length: {}\n\
         Warning deleted after: {}\n\
         Check members when they join: {}\n\
         Mute members who leave the channel at once: {}\n\
         When membership can't be checked: {}\n\
         Other bots: {}\n\
         Posts on behalf of other channels: deleted{}\n\
         Join requests: {}\n\
         Warnings shown: {}\n\
         Allow-list: {} user(s) — <code>/settings allow USER_ID</code>, <code>/settings disallow USER_ID</code>",
        title.map(|t| format!(" — {}", escape(t))).unwrap_or_default(),
        mute_label(s.mute_seconds),
        duration_words(s.warning_ttl_seconds),
        on_off(s.check_on_join),
        on_off(s.strict_leave),
        match s.failure_policy {
            FailurePolicy::Open => "let them write (fail open)",
            FailurePolicy::Closed => "treat them as non-members (fail closed)",
        },
        if s.exempt_bots { "exempt" } else { "verified" },
        if s.ban_channel_senders {
            ", and the channel banned"
        } else {
            ""
        },
        if s.join_gate {
            format!(
                "I decide: subscribers get in at once, others have {} to join (I need Invite users)",
                duration_words(s.join_wait_seconds)
            )
        } else {
            "left to the admins".to_owned()
        },
        if s.private_warnings {
            "to the member only (in the group if that fails)"
        } else {
            "in the group"
        },
        s.allowlist.len(),
    );
    let actions = vec![
        button(
            mark(s.action == NonMemberAction::Mute, "Mute"),
            "s:a:mute".into(),
        ),
        button(
            mark(s.action == NonMemberAction::DeleteOnly, "Delete only"),
            "s:a:del".into(),
        ),
        button(
            mark(s.action == NonMemberAction::Kick, "Kick"),
            "s:a:kick".into(),
        ),
    ];
    let mutes = MUTE_PRESETS
        .iter()
        .map(|&v| {
            button(
                mark(s.mute_seconds == v, &mute_label(v)),
                format!("s:m:{v}"),
            )
        })
        .collect();
    let warnings = WARNING_PRESETS
        .iter()
        .map(|&v| {
            button(
                mark(
                    s.warning_ttl_seconds == v,
                    &format!("Warning {}", duration_words(v)),
                ),
                format!("s:w:{v}"),
            )
        })
        .collect();
    let toggles = vec![
        button(
            format!("Check on join: {}", on_off(s.check_on_join)),
            format!("s:j:{}", u8::from(!s.check_on_join)),
        ),
        button(
            format!("Strict leave: {}", on_off(s.strict_leave)),
            format!("s:l:{}", u8::from(!s.strict_leave)),
        ),
        button(
            format!("Ban channel posters: {}", on_off(s.ban_channel_senders)),
            format!("s:c:{}", u8::from(!s.ban_channel_senders)),
        ),
    ];
    let policy = vec![
        button(
            match s.failure_policy {
                FailurePolicy::Open => "Fail open ✓ → closed".to_owned(),
                FailurePolicy::Closed => "Fail closed ✓ → open".to_owned(),
            },
            match s.failure_policy {
                FailurePolicy::Open => "s:f:closed".to_owned(),
                FailurePolicy::Closed => "s:f:open".to_owned(),
            },
        ),
        button(
            format!("Exempt bots: {}", on_off(s.exempt_bots)),
            format!("s:b:{}", u8::from(!s.exempt_bots)),
        ),
    ];
    let gate = vec![
        button(
            format!("Join gate: {}", on_off(s.join_gate)),
            format!("s:g:{}", u8::from(!s.join_gate)),
        ),
        button(
            format!("Private warnings: {}", on_off(s.private_warnings)),
            format!("s:p:{}", u8::from(!s.private_warnings)),
        ),
    ];
    let waits = JOIN_WAIT_PRESETS
        .iter()
        .map(|&v| {
            button(
                mark(
                    s.join_wait_seconds == v,
                    &format!("Join wait {}", duration_words(v)),
                ),
                format!("s:gw:{v}"),
            )
        })
        .collect();
    let done = vec![button("Done".into(), "s:done".into())];
    OutgoingMessage {
        html,
        buttons: vec![actions, mutes, warnings, toggles, policy, gate, waits, done],
        reply_to: None,
        silent: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_button_parses_back_to_its_change() {
        let msg = settings_message(Some("<g>"), &GroupSettings::default());
        assert!(msg.html.contains("&lt;g&gt;"));
        let mut count = 0;
        for b in msg.buttons.iter().flatten() {
            let InlineButton::Callback { data, .. } = b else {
                panic!("only callback buttons")
            };
            assert!(data.len() <= 64, "{data}");
            let press = parse_press(data).expect("our own data parses");
            if let Press::Change(change) = press {
                let mut s = GroupSettings::default();
                s.apply(&change).expect("every preset is valid");
            }
            count += 1;
        }
        assert_eq!(
            count,
            3 + MUTE_PRESETS.len()
                + WARNING_PRESETS.len()
                + 3
                + 2
                + 2
                + JOIN_WAIT_PRESETS.len()
                + 1
        );
    }

    #[test]
    fn forged_data_is_refused() {
        for data in [
            "",
            "s:",
            "s:m:12",
            "s:m:010",
            "s:m:600x",
            "s:w:1",
            "s:a:ban",
            "s:j:2",
            "s:done:1",
            "s:f:maybe",
            "v:123",
            "s:m:99999999999999999999",
            "s:'; DROP TABLE groups;--",
            "s:g:",
            "s:g:yes",
            "s:gw:601",
            "s:gw:0600",
            "s:gw:60",
            "s:p:2",
        ] {
            assert_eq!(parse_press(data), None, "{data}");
        }
        assert_eq!(
            parse_press("s:m:3600"),
            Some(Press::Change(SettingChange::MuteSeconds(3600)))
        );
        assert_eq!(
            parse_press("s:j:0"),
            Some(Press::Change(SettingChange::CheckOnJoin(false)))
        );
        assert_eq!(
            parse_press("s:g:1"),
            Some(Press::Change(SettingChange::JoinGate(true)))
        );
        assert_eq!(
            parse_press("s:gw:1800"),
            Some(Press::Change(SettingChange::JoinWaitSeconds(1800)))
        );
        assert_eq!(
            parse_press("s:p:1"),
            Some(Press::Change(SettingChange::PrivateWarnings(true)))
        );
    }
}
