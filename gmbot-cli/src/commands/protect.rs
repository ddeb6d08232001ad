//! `gmbot protect`: creates a protection, or adds channels to an existing one.
//!
//! Channels are stored as given (id or username). Whether the bot is an admin
//! of each channel, and what the channel's id is, is checked against Telegram
//! by the bot, which records what it learns.

use gmbot_core::domain::{
    ChannelRef, EnforcedChannel, GroupId, GroupState, ProtectRequest, ProtectedGroup, UnixTime,
};

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
    let title = args.title.as_deref().map(validate_title).transpose()?;
    let channels = unique(args.channels)
        .into_iter()
        .map(EnforcedChannel::from_ref)
        .collect();
    let store = db.open().await?;
    let before = store.group(args.group).await?;
    let req = ProtectRequest {
        group: args.group,
        title,
        owner: None,
        channels,
    };
    let group = store.protect(&req, UnixTime::now()).await?;
    Ok(report(before.as_ref(), &group))
}

/// What `protect` and `import-env` print: what changed, then the channels now required.
pub(crate) fn report(before: Option<&ProtectedGroup>, after: &ProtectedGroup) -> String {
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
    out.push_str(
        "note: the bot must be an admin of each channel to see its members; it checks this when it starts\n",
    );
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
