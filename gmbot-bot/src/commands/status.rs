//! `/status`: linked channels, the bot's rights in the group and in each
//! channel (and what is missing), members muted now, join requests waiting
//! (with the join gate on, and whether the bot may answer them), and
//! verifications and the cache hit rate.
//!
//! Metrics labels never carry a group id, so the per-group numbers come from
//! the in-process [`GroupStats`](crate::group_stats::GroupStats) (this
//! instance, since it started); the cache hit rate is the process-wide one
//! from the registry.

use gmbot_core::domain::GroupState;
use gmbot_core::setup::{check_join_gate, diagnose};
use prometheus::Registry;

use super::caller::admin_gate;
use super::protect::{action_summary, channel_list};
use super::reply::{escape, reply_text};
use crate::app::App;
use crate::handlers::HandleError;
use crate::update::Message;

/// Answers `/status`.
pub(crate) async fn run(app: &App, msg: &Message) -> Result<(), HandleError> {
    let Some((group, _)) = admin_gate(app, msg, "status", "/status").await? else {
        return Ok(());
    };
    let stored = app
        .store()
        .group(group)
        .await?
        .filter(|g| g.state != GroupState::Unprotected);
    let Some(stored) = stored else {
        let html = "This group is not protected. Send <code>/protect @yourchannel</code> to start."
            .to_owned();
        return reply_text(app, msg, html).await;
    };
    let state = match stored.state {
        GroupState::Active if stored.channels.is_empty() => {
            "⚠️ on, but no channel is linked: send /protect @yourchannel".to_owned()
        }
        GroupState::Active => "✅ protected".to_owned(),
        GroupState::Paused => format!(
            "⏸ paused{}",
            stored
                .paused_reason
                .as_deref()
                .map(|r| format!(" ({})", escape(r)))
                .unwrap_or_default()
        ),
        GroupState::Unprotected => "off".to_owned(),
    };
    let mut problems = diagnose(&**app.telegram(), app.me().id, group, &stored.channels).await;
    if stored.settings.join_gate {
        if let Some(p) = check_join_gate(&**app.telegram(), app.me().id, group).await {
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    }
    let rights = if problems.is_empty() {
        "✅ I have every right I need here and in each channel.".to_owned()
    } else {
        let list: Vec<String> = problems
            .iter()
            .map(|p| format!("• {}", escape(&p.to_string())))
            .collect();
        format!("⚠️ To fix:\n{}", list.join("\n"))
    };
    let muted = app.store().count_active_restrictions(group).await?;
    let join_requests = join_request_line(app, group, &stored.settings).await?;
    let counts = app.group_stats().get(group);
    let hit_rate = cache_hit_rate(app.registry())
        .map_or_else(|| "n/a".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let html = format!(
        "<b>Status</b>: {state}\n\
         <b>Channels</b>: {channels}\n\
         {action}\n\
         <b>My rights</b>: {rights}\n\
         <b>Muted now</b>: {muted}\n\
         <b>Join requests</b>: {join_requests}\n\
         <b>Verifications</b> (this instance, since it started): {total} — {allowed} allowed, \
         {exempt} exempt, {denied} denied, {unverifiable} unverifiable\n\
         <b>Cache hits</b> (this group): {cache_hits}\n\
         <b>Cache hit rate</b> (all groups): {hit_rate}",
        channels = channel_list(&stored.channels),
        action = action_summary(&stored.settings),
        total = counts.verifications,
        allowed = counts.allowed,
        exempt = counts.exempt,
        denied = counts.denied,
        unverifiable = counts.unverifiable,
        cache_hits = counts.cache_hits,
    );
    let mut html = html;
    if let Some(raid) = app.flows().raids().status(group, app.clock().now_millis()) {
        let minutes = app.clock().now_millis().saturating_sub(raid.since_ms) / 60_000;
        html.push_str(&format!(
            "\n🚨 <b>Raid going on</b> for {minutes} min: {} non-subscribers denied since it started; \
             the outbox holds {} actions",
            raid.denials,
            app.outbox().depth().queued
        ));
    }
    reply_text(app, msg, html).await
}

/// The join gate in words: off, or on with the wait and the requests waiting now (and when
/// the next one is decided).
async fn join_request_line(
    app: &App,
    group: gmbot_core::domain::GroupId,
    settings: &gmbot_core::domain::GroupSettings,
) -> Result<String, HandleError> {
    if !settings.join_gate {
        return Ok("left to the admins (join gate off)".to_owned());
    }
    let wait = super::protect::duration_words(settings.join_wait_seconds);
    let pending = app.store().count_pending_join_requests(group).await?;
    if pending == 0 {
        return Ok(format!(
            "I decide them (non-subscribers get {wait} to join); none waiting"
        ));
    }
    let next = app.store().pending_join_requests(group, 1).await?;
    let soonest = next
        .first()
        .map(|r| {
            let secs = (r.expires_at.secs() - app.clock().unix_now().secs()).max(0);
            let secs = u32::try_from(secs).unwrap_or(u32::MAX);
            format!(
                ", the next decided in {}",
                super::protect::duration_words(secs)
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "I decide them (non-subscribers get {wait} to join); {pending} waiting for the requester to join{soonest}"
    ))
}

/// Share of membership lookups answered without a Telegram call, from the
/// cache's counters: `1 − loads / lookups`. `None` before the first lookup or
/// when the cache records elsewhere.
fn cache_hit_rate(registry: &Registry) -> Option<f64> {
    let mut lookups = 0.0_f64;
    let mut loads = 0.0_f64;
    for family in registry.gather() {
        match family.name() {
            "gmbot_cache_requests_total" => {
                for m in family.get_metric() {
                    // Every lookup passes the in-process layer first.
                    let l1 = m
                        .get_label()
                        .iter()
                        .any(|l| l.name() == "layer" && l.value() == "l1");
                    let counted = m.get_label().iter().any(|l| {
                        l.name() == "result" && (l.value() == "hit" || l.value() == "miss")
                    });
                    if l1 && counted {
                        lookups += m.get_counter().get_value();
                    }
                }
            }
            "gmbot_cache_loads_total" => {
                loads += family
                    .get_metric()
                    .iter()
                    .map(|m| m.get_counter().get_value())
                    .sum::<f64>();
            }
            _ => {}
        }
    }
    (lookups > 0.0).then(|| (1.0 - loads / lookups).clamp(0.0, 1.0))
}
