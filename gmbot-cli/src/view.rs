//! What the CLI shows of a group and its channels, as JSON objects and as table rows.
//!
//! The JSON field names are a stable interface for scripts (see docs/cli.md):
//! fields may be added, none renamed or removed.

use gmbot_core::domain::{EnforcedChannel, GroupState, ProtectedGroup};
use serde::Serialize;

use crate::table::{clean, Table};

/// A group in `groups list --format json` (and the head of `status --format json`).
#[derive(Debug, Serialize)]
pub(crate) struct GroupView {
    pub(crate) group_id: i64,
    /// True when the group is active and has at least one channel, i.e. messages are verified.
    pub(crate) enabled: bool,
    pub(crate) state: GroupState,
    pub(crate) title: Option<String>,
    pub(crate) channels: Vec<ChannelView>,
}

/// A channel a group requires.
#[derive(Debug, Serialize)]
pub(crate) struct ChannelView {
    pub(crate) channel_id: Option<i64>,
    /// Without the `@`.
    pub(crate) username: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) invite_link: Option<String>,
}

impl From<&ProtectedGroup> for GroupView {
    fn from(g: &ProtectedGroup) -> Self {
        Self {
            group_id: g.id.get(),
            enabled: g.is_enforced(),
            state: g.state,
            title: g.title.clone(),
            channels: g.channels.iter().map(ChannelView::from).collect(),
        }
    }
}

impl From<&EnforcedChannel> for ChannelView {
    fn from(c: &EnforcedChannel) -> Self {
        Self {
            channel_id: c.id.map(|id| id.get()),
            username: c.username.as_ref().map(|u| u.as_str().to_owned()),
            title: c.title.clone(),
            invite_link: c.invite_link.clone(),
        }
    }
}

/// A group's channels as a table: id, username, title and the link members follow.
pub(crate) fn channels_table(channels: &[EnforcedChannel], indent: usize) -> String {
    let mut table = Table::new(&["CHANNEL ID", "USERNAME", "TITLE", "JOIN LINK"]);
    for c in channels {
        table.row(vec![
            c.id.map_or_else(
                || "unresolved (the bot looks it up)".to_owned(),
                |id| id.to_string(),
            ),
            c.username
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_default(),
            c.title.clone().unwrap_or_default(),
            c.join_url()
                .unwrap_or_else(|| "(created by the bot)".to_owned()),
        ]);
    }
    table.render(indent)
}

/// The group's id and, if known, its title: `-100123 (Title)`.
pub(crate) fn group_name(g: &ProtectedGroup) -> String {
    match &g.title {
        Some(t) => format!("{} ({})", g.id, clean(t)),
        None => g.id.to_string(),
    }
}
