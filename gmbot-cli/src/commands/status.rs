//! `gmbot status`: one group in full — channels, settings, active restrictions, members seen,
//! join requests waiting for the join gate.

use gmbot_core::domain::{FailurePolicy, GroupId, GroupSettings, GroupState, ProtectedGroup};
use gmbot_core::store::StoreError;
use serde::Serialize;

use crate::database::Database;
use crate::error::CliError;
use crate::output::{self, Format};
use crate::table::key_values;
use crate::view::{channels_table, GroupView};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The group's chat id (negative; supergroups look like -1001234567890).
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    group: GroupId,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `status --format json`: the list view of the group plus the details.
#[derive(Debug, Serialize)]
struct StatusView<'a> {
    #[serde(flatten)]
    group: GroupView,
    paused_reason: Option<&'a str>,
    owner_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
    settings: &'a GroupSettings,
    active_restrictions: u64,
    seen_members: u64,
    pending_join_requests: u64,
}

pub(super) async fn run(db: &Database, args: Args) -> Result<String, CliError> {
    let store = db.open().await?;
    let group = store
        .group(args.group)
        .await?
        .ok_or(StoreError::UnknownGroup(args.group))?;
    let active = store.count_active_restrictions(args.group).await?;
    let seen = store.count_seen(args.group).await?;
    let pending = store.count_pending_join_requests(args.group).await?;
    match args.format {
        Format::Json => output::json(&StatusView {
            group: GroupView::from(&group),
            paused_reason: group.paused_reason.as_deref(),
            owner_id: group.owner.map(|o| o.get()),
            created_at: group.created_at.secs(),
            updated_at: group.updated_at.secs(),
            settings: &group.settings,
            active_restrictions: active,
            seen_members: seen,
            pending_join_requests: pending,
        }),
        Format::Table => Ok(text(&group, active, seen, pending)),
    }
}

fn text(g: &ProtectedGroup, active: u64, seen: u64, pending: u64) -> String {
    let state = match g.state {
        GroupState::Paused => match &g.paused_reason {
            Some(reason) => format!("paused: {reason}"),
            None => "paused".to_owned(),
        },
        _ if g.is_enforced() => "active (messages are verified)".to_owned(),
        GroupState::Active => "active, but no channel is linked (nothing is verified)".to_owned(),
        GroupState::Unprotected => "unprotected (nothing is verified)".to_owned(),
    };
    let mut out = key_values(
        &[
            ("group", g.id.to_string()),
            ("title", g.title.clone().unwrap_or_default()),
            ("state", state),
            ("owner", g.owner.map(|o| o.to_string()).unwrap_or_default()),
            ("protected since", output::time(g.created_at)),
            ("last changed", output::time(g.updated_at)),
            ("active restrictions", active.to_string()),
            ("members seen", seen.to_string()),
            ("join requests waiting", pending.to_string()),
        ],
        0,
    );
    out.push_str(&format!("channels ({}):\n", g.channels.len()));
    if g.channels.is_empty() {
        out.push_str("  none: add one with `gmbot protect --group ID --channel @name`\n");
    } else {
        out.push_str(&channels_table(&g.channels, 2));
    }
    out.push_str("settings:\n");
    out.push_str(&key_values(&settings_pairs(&g.settings), 2));
    out
}

fn settings_pairs(s: &GroupSettings) -> Vec<(&'static str, String)> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    vec![
        ("action on non-members", s.action.as_str().to_owned()),
        (
            "mute length",
            if s.mute_seconds == 0 {
                "until the member joins".to_owned()
            } else {
                format!("{} s", s.mute_seconds)
            },
        ),
        (
            "warning deleted after",
            format!("{} s", s.warning_ttl_seconds),
        ),
        (
            "warning cool-down",
            format!("{} s", s.warning_cooldown_seconds),
        ),
        (
            "membership unknown",
            match s.failure_policy {
                FailurePolicy::Open => "let the member write (fail open)".to_owned(),
                FailurePolicy::Closed => "treat as not joined (fail closed)".to_owned(),
            },
        ),
        ("exempt other bots", yes_no(s.exempt_bots)),
        ("check on join", yes_no(s.check_on_join)),
        ("strict leave", yes_no(s.strict_leave)),
        ("ban channel posters", yes_no(s.ban_channel_senders)),
        (
            "join gate",
            if s.join_gate {
                format!("on (non-subscribers get {} s to join)", s.join_wait_seconds)
            } else {
                "off (join requests are left to the admins)".to_owned()
            },
        ),
        ("private warnings", yes_no(s.private_warnings)),
        (
            "allow-list",
            if s.allowlist.is_empty() {
                "empty".to_owned()
            } else {
                s.allowlist
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ]
}
