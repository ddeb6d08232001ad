//! `gmbot protect`: creates a protection, or adds channels to an existing one.
//!
//! With `TELEGRAM_BOT_TOKEN` set, the same checks as the bot's `/protect` run
//! first against the Bot API (`TELEGRAM_API_URL` honoured): the bot is an
//! admin of the group with delete and restrict rights, each channel exists and
//! the bot is one of its admins, a private channel gets its one invite link.
//! Every problem is printed and nothing is stored (exit 1); on success the
//! resolved ids, titles and invite links are stored. There is no caller to
//! check: the operator speaks for the group's admins.
//!
//! Without a token the channels are stored as given (id or username), and the
//! bot checks them against Telegram when it starts.

use anyhow::anyhow;
use gmbot_bot::{BotApi, BotApiOptions, BotToken};
use gmbot_core::domain::{
    ChannelRef, EnforcedChannel, GroupId, GroupState, ProtectRequest, ProtectedGroup, UnixTime,
};
use gmbot_core::setup::{check_protect, ProtectCheck};

use crate::database::Database;
use crate::error::CliError;
use crate::view::{channels_table, group_name};

/// Longest group title Telegram allows.
const MAX_TITLE_CHARS: usize = 128;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The group's chat id (negative; supergroups look like -1001234567890).
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    group: GroupId,
    /// A channel members must join: @username or numeric id (-100…). Repeat for several.
    #[arg(
        long = "channel",
        value_name = "@NAME|ID",
        required = true,
        allow_negative_numbers = true
    )]
    channels: Vec<ChannelRef>,
    /// The group's title, shown in listings.
    #[arg(long, value_name = "TITLE")]
    title: Option<String>,
}

pub(super) async fn run(db: &Database, args: Args) -> Result<String, CliError> {
    let mut title = args.title.as_deref().map(validate_title).transpose()?;
    let named = unique(args.channels);
    let telegram = telegram_from_env()?;
    let store = db.open().await?;
    let before = store.group(args.group).await?;
    let (channels, checked) = match &telegram {
        Some(api) => {
            let known = before
                .as_ref()
                .map(|g| g.channels.clone())
                .unwrap_or_default();
            let check = ProtectCheck {
                bot: api.bot_id(),
                group: args.group,
                caller: None,
                channels: &named,
                known: &known,
            };
            let plan = check_protect(api, &check).await.map_err(|problems| {
                let list: Vec<String> = problems
                    .problems()
                    .iter()
                    .map(|p| format!("  - {p}"))
                    .collect();
                CliError::runtime(anyhow!(
                    "group {} is not ready to be protected; fix this, then run the command again:\n{}",
                    args.group,
                    list.join("\n")
                ))
            })?;
            title = title.or(plan.group_title);
            (plan.channels, true)
        }
        None => (
            named.into_iter().map(EnforcedChannel::from_ref).collect(),
            false,
        ),
    };
    let req = ProtectRequest {
        group: args.group,
        title,
        owner: None,
        channels: channels.clone(),
    };
    let mut group = store.protect(&req, UnixTime::now()).await?;
    if checked {
        // `protect` keeps what it already knew about a channel; record what Telegram said.
        for channel in &channels {
            store.update_channel(channel).await?;
        }
        if let Some(g) = store.group(args.group).await? {
            group = g;
        }
        return Ok(report_with(
            before.as_ref(),
            &group,
            "checked against Telegram: the bot has the rights it needs in the group and in every channel\n",
        ));
    }
    Ok(report(before.as_ref(), &group))
}

/// The Bot API client, when `TELEGRAM_BOT_TOKEN` is set (`TELEGRAM_API_URL` overrides the base URL).
pub(crate) fn telegram_from_env() -> Result<Option<BotApi>, CliError> {
    let token = match std::env::var("TELEGRAM_BOT_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t,
        _ => return Ok(None),
    };
    let token = BotToken::parse(token.trim()).map_err(|e| {
        CliError::usage(anyhow!(
            "TELEGRAM_BOT_TOKEN is not a bot token ({e}); copy it from @BotFather, or unset it to skip the Telegram checks"
        ))
    })?;
    let mut options = BotApiOptions::default();
    if let Ok(raw) = std::env::var("TELEGRAM_API_URL") {
        let raw = raw.trim().trim_end_matches('/');
        if !raw.is_empty() {
            options.base_url = raw
                .parse()
                .ok()
                .filter(|u: &url::Url| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| {
                    CliError::usage(anyhow!(
                        "TELEGRAM_API_URL is not an http:// or https:// URL (expected e.g. https://api.telegram.org)"
                    ))
                })?;
        }
    }
    let api = BotApi::new(token, options)
        .map_err(|e| CliError::runtime(anyhow!("cannot build the Bot API client: {e}")))?;
    Ok(Some(api))
}

/// What `protect` and `import-env` print: what changed, then the channels now required.
pub(crate) fn report(before: Option<&ProtectedGroup>, after: &ProtectedGroup) -> String {
    report_with(
        before,
        after,
        "note: the bot must be an admin of each channel to see its members; when it starts (and when a member writes) it looks up every channel stored by @username with getChat, stores its id and enforces it from then on; until then `gmbot status` shows the channel as unresolved\n",
    )
}

/// [`report`] with its closing note.
fn report_with(before: Option<&ProtectedGroup>, after: &ProtectedGroup, note: &str) -> String {
    let added = after
        .channels
        .len()
        .saturating_sub(before.map_or(0, |b| b.channels.len()));
    let name = group_name(after);
    let mut out = match before {
        None => format!("group {name} is now protected\n"),
        Some(b) if b.state != GroupState::Active => format!("group {name} is protected again\n"),
        Some(_) => format!("group {name} was already protected: {added} channel(s) added\n"),
    };
    out.push_str("members must join every channel below:\n");
    out.push_str(&channels_table(&after.channels, 2));
    out.push_str(note);
    out
}

fn validate_title(title: &str) -> Result<String, CliError> {
    let t = title.trim();
    if t.is_empty() {
        return Err(CliError::usage(anyhow::anyhow!(
            "--title is empty: give the group's title or leave the option out"
        )));
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(CliError::usage(anyhow::anyhow!(
            "--title is longer than Telegram's {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(t.to_owned())
}

/// The channels in the order given, each once (usernames compare case-insensitively).
fn unique(channels: Vec<ChannelRef>) -> Vec<ChannelRef> {
    let mut out: Vec<ChannelRef> = Vec::with_capacity(channels.len());
    for c in channels {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_channels_are_dropped_in_order() {
        let parse = |s: &str| s.parse::<ChannelRef>().expect("valid channel");
        let got = unique(vec![
            parse("@first_channel"),
            parse("-1001"),
            parse("@FIRST_channel"),
        ]);
        assert_eq!(got, vec![parse("@first_channel"), parse("-1001")]);
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(validate_title("  My group ").ok(), Some("My group".into()));
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"x".repeat(129)).is_err());
    }
}
