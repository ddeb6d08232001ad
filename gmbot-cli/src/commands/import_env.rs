//! `gmbot import-env`: turns a v1 `.env` (one group, one channel) into the equivalent protection.
//!
//! v1 read `GROUP_ID` (the group), `CHANNEL_ID` (`@name` or the channel's
//! numeric id) and `CHANNEL_URL` (the link in the warning). A public link
//! gives the channel's username; a private invite link is stored as the
//! channel's invite link, so the bot reuses it instead of creating another.
//! `GROUP_ID` and `CHANNEL_ID` are required; `CHANNEL_URL` is optional
//! (without it the bot creates an invite link for a private channel).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use gmbot_core::domain::{ChannelRef, EnforcedChannel, GroupId, ProtectRequest, UnixTime};

use super::protect;
use crate::database::Database;
use crate::env_file;
use crate::error::CliError;
use crate::tme_link::{self, TmeLink};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The v1 configuration file.
    #[arg(long, value_name = "PATH", default_value = ".env")]
    env_file: PathBuf,
}

pub(super) async fn run(db: &Database, args: Args) -> Result<String, CliError> {
    let path = &args.env_file;
    let vars = env_file::parse(&read(path)?).map_err(|e| {
        CliError::usage(e).context(format!("{} is not a valid .env file", path.display()))
    })?;
    let (group, channel) = protection(&vars).map_err(|e| {
        e.context(format!(
            "{} does not describe a v1 protection",
            path.display()
        ))
    })?;

    let store = db.open().await?;
    let before = store.group(group).await?;
    let req = ProtectRequest {
        group,
        title: None,
        owner: None,
        channels: vec![channel],
    };
    let after = store.protect(&req, UnixTime::now()).await?;
    Ok(format!(
        "imported {}\n{}",
        path.display(),
        protect::report(before.as_ref(), &after)
    ))
}

fn read(path: &Path) -> Result<String, CliError> {
    let what = || format!("cannot read {}", path.display());
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
            CliError::usage(anyhow!(
                "{} is not a text file (it is not valid UTF-8)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CliError::usage(e).context(format!(
            "{}: pass the v1 configuration file with --env-file PATH",
            what()
        ))),
        Err(e) => Err(CliError::runtime(e).context(what())),
    }
}

/// The group and channel the v1 variables describe.
fn protection(vars: &BTreeMap<String, String>) -> Result<(GroupId, EnforcedChannel), CliError> {
    let group: GroupId = required(vars, "GROUP_ID", "the group's chat id, e.g. -1001234567890")?
        .parse()
        .map_err(|e| invalid("GROUP_ID", e))?;
    let channel_ref: ChannelRef = required(
        vars,
        "CHANNEL_ID",
        "the channel's @username or its chat id, e.g. -1009876543210",
    )?
    .parse()
    .map_err(|e| invalid("CHANNEL_ID", e))?;
    let mut channel = EnforcedChannel::from_ref(channel_ref);

    let link = vars
        .get("CHANNEL_URL")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    if let Some(link) = link {
        match tme_link::parse(link).map_err(|e| invalid("CHANNEL_URL", e))? {
            TmeLink::Public(name) => match &channel.username {
                Some(given) if *given != name => {
                    return Err(CliError::usage(anyhow!(
                        "CHANNEL_ID names {given} but CHANNEL_URL links to {name}: make them name the same channel"
                    )));
                }
                _ => channel.username = Some(name),
            },
            TmeLink::Invite(url) => channel.invite_link = Some(url),
        }
    }
    Ok((group, channel))
}

fn required<'a>(
    vars: &'a BTreeMap<String, String>,
    name: &str,
    what: &str,
) -> Result<&'a str, CliError> {
    match vars.get(name).map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(CliError::usage(anyhow!(
            "{name} is empty: set it to {what}"
        ))),
        None => Err(CliError::usage(anyhow!(
            "{name} is missing: set it to {what}"
        ))),
    }
}

fn invalid(name: &str, e: impl Into<anyhow::Error>) -> CliError {
    CliError::usage(e).context(format!("invalid {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmbot_core::domain::{ChannelId, ChannelUsername};

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn public_channel_by_name_and_link() {
        let (group, channel) = protection(&vars(&[
            ("GROUP_ID", "-1001"),
            ("CHANNEL_ID", "@my_channel"),
            ("CHANNEL_URL", "https://t.me/my_channel"),
        ]))
        .expect("valid");
        assert_eq!(group, GroupId(-1001));
        assert_eq!(channel.id, None);
        assert_eq!(
            channel.username,
            Some(ChannelUsername::parse("my_channel").expect("valid"))
        );
        assert_eq!(channel.invite_link, None);
    }

    #[test]
    fn private_channel_keeps_its_invite_link() {
        let (_, channel) = protection(&vars(&[
            ("GROUP_ID", "-1001"),
            ("CHANNEL_ID", "-1002"),
            ("CHANNEL_URL", "https://t.me/+AbCdEf"),
        ]))
        .expect("valid");
        assert_eq!(channel.id, Some(ChannelId(-1002)));
        assert_eq!(channel.username, None);
        assert_eq!(channel.invite_link.as_deref(), Some("https://t.me/+AbCdEf"));
    }

    #[test]
    fn numeric_id_with_public_link_gets_both() {
        let (_, channel) = protection(&vars(&[
            ("GROUP_ID", "-1001"),
            ("CHANNEL_ID", "-1002"),
            ("CHANNEL_URL", "t.me/my_channel"),
        ]))
        .expect("valid");
        assert_eq!(channel.id, Some(ChannelId(-1002)));
        assert!(channel.username.is_some());
    }

    #[test]
    fn errors_name_the_variable() {
        for (pairs, needle) in [
            (vec![("CHANNEL_ID", "@my_channel")], "GROUP_ID is missing"),
            (
                vec![("GROUP_ID", ""), ("CHANNEL_ID", "@my_channel")],
                "GROUP_ID is empty",
            ),
            (vec![("GROUP_ID", "-1")], "CHANNEL_ID is missing"),
            (
                vec![("GROUP_ID", "42"), ("CHANNEL_ID", "@my_channel")],
                "invalid GROUP_ID",
            ),
            (
                vec![("GROUP_ID", "-1"), ("CHANNEL_ID", "@ab")],
                "invalid CHANNEL_ID",
            ),
            (
                vec![
                    ("GROUP_ID", "-1"),
                    ("CHANNEL_ID", "@my_channel"),
                    ("CHANNEL_URL", "ftp://t.me/my_channel"),
                ],
                "invalid CHANNEL_URL",
            ),
            (
                vec![
                    ("GROUP_ID", "-1"),
                    ("CHANNEL_ID", "@my_channel"),
                    ("CHANNEL_URL", "https://t.me/other_channel"),
                ],
                "make them name the same channel",
            ),
        ] {
            let e = protection(&vars(&pairs)).expect_err(needle);
            assert!(e.message().contains(needle), "{needle}: {}", e.message());
            assert_eq!(e.code(), crate::error::EXIT_USAGE);
        }
    }
}
