//! Resolving channels stored by username only (`gmbot protect --channel @name` without a
//! token): `getChat @name` gives the id, which is stored, so the channel is enforced.
//!
//! Runs at start for every protected group ([`resolve_all`], in the background) and whenever
//! a verification finds a linked channel without an id ([`resolve_group_soon`], at most once
//! a minute per group). Until a channel is resolved, `/status` and `gmbot status` show it as
//! unresolved; a channel that cannot be resolved is logged with the reason and the admins are
//! told once (the channel is not a channel, or does not exist, or the bot is not in it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gmbot_core::domain::{ChannelId, EnforcedChannel, GroupId};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::{ChatTarget, ChatType};

use crate::app::App;

/// How often one group's unresolved channels are tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// What [`resolve_group`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveReport {
    /// Channels whose id was found and stored.
    pub resolved: u32,
    /// Channels Telegram could not resolve (logged, admins told).
    pub failed: u32,
}

/// Resolves every channel of `group` that has a username and no id.
pub async fn resolve_group(app: &App, group: GroupId) -> Result<ResolveReport, StoreError> {
    let mut report = ResolveReport::default();
    let Some(g) = app.store().group(group).await? else {
        return Ok(report);
    };
    for channel in g.channels.iter().filter(|c| c.id.is_none()) {
        let Some(username) = &channel.username else {
            continue;
        };
        let target = ChatTarget::Username(username.clone());
        let problem = match app.telegram().get_chat(&target).await {
            Ok(info) if info.kind == ChatType::Channel => match ChannelId::new(info.id.get()) {
                Ok(id) => {
                    let resolved = EnforcedChannel {
                        id: Some(id),
                        username: channel.username.clone(),
                        title: info.title.clone().or_else(|| channel.title.clone()),
                        invite_link: channel.invite_link.clone(),
                    };
                    app.store().update_channel(&resolved).await?;
                    app.engine().invalidate_group(group).await;
                    log::info!(
                        group_id = group.get(),
                        channel_id = id.get(),
                        username = username.as_str();
                        "channel resolved"
                    );
                    report.resolved += 1;
                    continue;
                }
                Err(_) => "Telegram gave it an id that is not a channel's".to_owned(),
            },
            Ok(_) => "it is not a channel".to_owned(),
            Err(err) => err.to_string(),
        };
        report.failed += 1;
        log::warn!(
            group_id = group.get(),
            username = username.as_str(),
            reason = problem.as_str();
            "cannot resolve a linked channel"
        );
        let html = format!(
            "⚠️ Admins: I cannot find the channel <b>@{}</b> linked to this group ({}). \
             Check the username, and add me to the channel as an administrator.",
            super::warn::escape_html(username.as_str()),
            super::warn::escape_html(&problem)
        );
        let key = format!("resolve:{}", username.as_str());
        let app = app.clone();
        tokio::spawn(async move {
            if app.flows().claim_notice(group, key).await {
                let msg = gmbot_core::telegram::OutgoingMessage {
                    html,
                    buttons: Vec::new(),
                    reply_to: None,
                    silent: true,
                };
                if let Err(err) = app.telegram().send_message(group.into(), &msg).await {
                    log::info!(group_id = group.get(), error:display = err; "cannot tell the admins about an unresolved channel");
                }
            }
        });
    }
    Ok(report)
}

/// Resolves the unresolved channels of every protected group (at start).
pub async fn resolve_all(app: &App) -> Result<ResolveReport, StoreError> {
    let mut total = ResolveReport::default();
    for g in app.store().list_groups().await? {
        if g.channels
            .iter()
            .any(|c| c.id.is_none() && c.username.is_some())
        {
            let r = resolve_group(app, g.id).await?;
            total.resolved += r.resolved;
            total.failed += r.failed;
        }
    }
    Ok(total)
}

/// Recently tried groups, so a busy group with an unresolvable channel is not asked about on
/// every message.
#[derive(Debug, Default)]
pub struct ResolveGate {
    tried: Mutex<HashMap<GroupId, Instant>>,
}

impl ResolveGate {
    fn claim(&self, group: GroupId) -> bool {
        let mut tried = self
            .tried
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if tried.len() > 10_000 {
            tried.retain(|_, at| now.duration_since(*at) < RETRY_AFTER);
        }
        match tried.get(&group) {
            Some(at) if now.duration_since(*at) < RETRY_AFTER => false,
            _ => {
                tried.insert(group, now);
                true
            }
        }
    }
}

/// Resolves `group`'s unresolved channels in the background, at most once a minute.
pub fn resolve_group_soon(app: &App, group: GroupId) {
    if !app.flows().resolve_gate().claim(group) {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(err) = resolve_group(&app, group).await {
            log::warn!(group_id = group.get(), error:display = err; "cannot resolve the group's channels: the store failed");
        }
    });
}
