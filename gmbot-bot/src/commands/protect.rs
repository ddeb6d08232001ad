//! `/protect @channel [@channel…]`: the setup wizard.
//!
//! Runs every check of [`gmbot_core::setup`] against Telegram (caller and bot
//! rights in the group, each channel resolved, bot and caller admins of each
//! channel, an invite link for a private channel) and answers with everything
//! that must be fixed, or stores the protection and summarises it.

use gmbot_core::domain::{
    ChannelRef, EnforcedChannel, GroupSettings, NonMemberAction, Owner, ProtectRequest, UserId,
};
use gmbot_core::setup::{check_join_gate, check_protect, ProtectCheck, SetupProblem};

use super::caller::admin_gate;
use super::reply::{escape, quote, reply_text};
use crate::app::App;
use crate::handlers::HandleError;
use crate::update::Message;

/// Answers `/protect`.
pub(crate) async fn run(app: &App, msg: &Message, args: &[String]) -> Result<(), HandleError> {
    let Some((group, caller)) = admin_gate(app, msg, "protect", "/protect @yourchannel").await?
    else {
        return Ok(());
    };
    if args.is_empty() {
        return reply_text(app, msg, "Which channel? Send /protect @yourchannel".into()).await;
    }
    let mut named = Vec::with_capacity(args.len());
    let mut invalid = Vec::new();
    for arg in args {
        match arg.parse::<ChannelRef>() {
            Ok(r) => named.push(r),
            Err(_) => invalid.push(quote(arg)),
        }
    }
    if !invalid.is_empty() {
        let html = format!(
            "<b>{}</b> is not a channel name. Send /protect @yourchannel \
             (a public channel's @username, 5–32 letters, digits or _), \
             or the numeric id of a private channel (-100…).",
            invalid.join(", ")
        );
        return reply_text(app, msg, html).await;
    }
    let Some(caller) = caller else {
        let html =
            "You are posting as the group, so I can't check that you administer the channel. \
                    Turn off <i>Remain anonymous</i> in your admin rights, send the command again, \
                    then switch it back on."
                .to_owned();
        return reply_text(app, msg, html).await;
    };
    let stored = app.store().group(group).await?;
    let known: Vec<EnforcedChannel> = stored.map(|g| g.channels).unwrap_or_default();
    let check = ProtectCheck {
        bot: app.me().id,
        group,
        caller: Some(caller),
        channels: &named,
        known: &known,
    };
    let plan = match check_protect(&**app.telegram(), &check).await {
        Ok(plan) => plan,
        Err(problems) => {
            if problems.contains(&SetupProblem::CallerNotGroupAdmin) {
                // Demoted between the two checks: still never a public error.
                super::caller::log_refused(msg, "protect");
                return Ok(());
            }
            log::info!(
                group_id = group.get(),
                user_id = caller.get(),
                problems = problems.problems().len();
                "protect refused: setup incomplete"
            );
            let list: Vec<String> = problems
                .problems()
                .iter()
                .map(|p| format!("• {}", escape(&p.to_string())))
                .collect();
            let html = format!(
                "<b>I can't protect this group yet.</b>\n{}\n\nThen send the command again.",
                list.join("\n")
            );
            return reply_text(app, msg, html).await;
        }
    };
    record_owner(app, msg, caller).await?;
    let now = app.clock().unix_now();
    let req = ProtectRequest {
        group,
        title: plan.group_title.clone().or_else(|| msg.chat.title.clone()),
        owner: Some(caller),
        channels: plan.channels.clone(),
    };
    app.store().protect(&req, now).await?;
    // `protect` keeps what it already knew about a channel; refresh titles,
    // usernames and invite links with what Telegram just said.
    for channel in &plan.channels {
        app.store().update_channel(channel).await?;
    }
    app.engine().invalidate_group(group).await;
    let stored = app.store().group(group).await?;
    let (channels, settings) = match &stored {
        Some(g) => (g.channels.as_slice(), g.settings.clone()),
        None => (plan.channels.as_slice(), GroupSettings::default()),
    };
    log::info!(
        group_id = group.get(),
        user_id = caller.get(),
        channels = channels.len();
        "group protected"
    );
    let mut html = format!(
        "✅ <b>This group is protected.</b>\nMembers must join: {}\n{}\n\
         Change this with /settings; /status shows my rights at any time.",
        channel_list(channels),
        action_summary(&settings)
    );
    if settings.join_gate {
        // Not a reason to refuse the protection: only the join gate needs this right.
        if let Some(problem) = check_join_gate(&**app.telegram(), app.me().id, group).await {
            html.push_str(&format!("\n⚠️ {}", escape(&problem.to_string())));
        }
    }
    reply_text(app, msg, html).await
}

/// Records the caller as the group's owner, keeping whether they can be messaged.
async fn record_owner(app: &App, msg: &Message, caller: UserId) -> Result<(), HandleError> {
    let existing = app.store().owner(caller).await?;
    let from = msg.from.as_ref().filter(|u| u.id == caller);
    let owner = Owner {
        user_id: caller,
        username: from
            .and_then(|u| u.username.clone())
            .or_else(|| existing.as_ref().and_then(|o| o.username.clone())),
        display_name: from
            .map(crate::update::User::display_name)
            .or_else(|| existing.as_ref().and_then(|o| o.display_name.clone())),
        can_be_messaged: existing.as_ref().is_some_and(|o| o.can_be_messaged),
        created_at: existing
            .as_ref()
            .map_or_else(|| app.clock().unix_now(), |o| o.created_at),
    };
    app.store().upsert_owner(&owner).await?;
    Ok(())
}

/// The linked channels, escaped, with their join links.
pub(crate) fn channel_list(channels: &[EnforcedChannel]) -> String {
    let names: Vec<String> = channels
        .iter()
        .map(|c| {
            let name = match (&c.username, &c.title) {
                (Some(u), _) => format!("@{}", u.as_str()),
                (None, Some(t)) => format!("“{t}”"),
                (None, None) => c.to_string(),
            };
            let shown = match c.join_url() {
                Some(url) => format!("<a href=\"{}\">{}</a>", escape(&url), escape(&name)),
                None => escape(&name),
            };
            if c.id.is_none() {
                format!(
                    "{shown} (unresolved: I look its id up with getChat; not enforced until then)"
                )
            } else {
                shown
            }
        })
        .collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// What happens to a non-member, in words.
pub(crate) fn action_summary(s: &GroupSettings) -> String {
    match s.action {
        NonMemberAction::Mute if s.mute_seconds == 0 => {
            "A non-member's message is deleted and they are muted until they join.".into()
        }
        NonMemberAction::Mute => format!(
            "A non-member's message is deleted and they are muted for {} or until they join.",
            duration_words(s.mute_seconds)
        ),
        NonMemberAction::DeleteOnly => "A non-member's message is deleted.".into(),
        NonMemberAction::Kick => {
            "A non-member's message is deleted and they are removed from the group (they may come back after joining).".into()
        }
    }
}

/// `90` → "1 min 30 s", `3600` → "1 h", `86400` → "1 day".
pub(crate) fn duration_words(secs: u32) -> String {
    match secs {
        0 => "0 s".into(),
        s if s % 86_400 == 0 => {
            let d = s / 86_400;
            if d % 7 == 0 {
                let w = d / 7;
                format!("{w} week{}", if w == 1 { "" } else { "s" })
            } else {
                format!("{d} day{}", if d == 1 { "" } else { "s" })
            }
        }
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s if s > 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_words(30), "30 s");
        assert_eq!(duration_words(90), "1 min 30 s");
        assert_eq!(duration_words(600), "10 min");
        assert_eq!(duration_words(3600), "1 h");
        assert_eq!(duration_words(86_400), "1 day");
        assert_eq!(duration_words(2 * 86_400), "2 days");
        assert_eq!(duration_words(7 * 86_400), "1 week");
    }

    #[test]
    fn channel_titles_are_escaped() {
        let c = EnforcedChannel {
            id: Some(gmbot_core::domain::ChannelId(-1001)),
            username: None,
            title: Some("<b>x</b>".into()),
            invite_link: Some("https://t.me/+abc".into()),
        };
        let html = channel_list(&[c]);
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("href=\"https://t.me/+abc\""), "{html}");
    }
}
