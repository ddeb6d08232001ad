//! Joins and leaves: check on join (groups), auto-unmute on join and strict leave (channels).
//!
//! - A member joining a protected group with `check_on_join` is verified at
//!   once and, if not subscribed, muted and warned before they write. Telegram
//!   reports a join twice (the `new_chat_members` service message and a
//!   `chat_member` update); the second copy within a minute is ignored.
//! - A member joining a linked channel is unmuted in every active group
//!   linked to it where the bot restricted them and they now satisfy every
//!   channel of that group.
//! - A member leaving a linked channel is, with `strict_leave`, muted and
//!   warned at once in each linked group where they were seen writing.
//! - With the join gate on, a member the gate just let in is not checked on join (they were
//!   checked a moment ago), and joining a linked channel approves a pending join request.
//! - Either way the cached membership follows the event first: invalidated in
//!   the default `ttl` cache mode, replaced by the event's status in `events`
//!   mode (`GMBOT_CACHE_MODE`, see docs/operations.md).

use gmbot_core::cache::MembershipKey;
use gmbot_core::domain::{ChannelId, GroupId, LiftReason};
use gmbot_core::engine::MessageContext;

use crate::app::App;
use crate::handlers::HandleError;
use crate::update::{ChatMemberUpdate, User};

use gmbot_core::dispatch::Lane;

use super::enforce;

/// A member joined `group` (service message or `chat_member`): verify them now
/// if the group checks on join.
pub async fn member_joined_group(
    app: &App,
    group: GroupId,
    member: &User,
) -> Result<(), HandleError> {
    if member.id == app.me().id {
        // The bot's own membership arrives as `my_chat_member`.
        return Ok(());
    }
    if !app.flows().claim_join(group, member.id).await {
        return Ok(());
    }
    let Some(config) = app.engine().group_config(group).await? else {
        return Ok(());
    };
    if config.not_enforced().is_some() || !config.settings().check_on_join {
        return Ok(());
    }
    if config.settings().join_gate && super::gate::admitted(app, group, member.id).await? {
        log::debug!(group_id = group.get(), user_id = member.id.get(); "member let in by the join gate: not checked again");
        return Ok(());
    }
    let mut ctx = MessageContext::no_message();
    if member.is_bot {
        ctx = ctx.from_bot();
    }
    let _guard = app.flows().member_lock(group, member.id).await;
    let verdict = app.engine().verify(group, member.id, ctx).await?;
    log::info!(
        group_id = group.get(),
        user_id = member.id.get(),
        decision = verdict.decision.as_str();
        "member joined the group"
    );
    enforce::perform(app, group, member, &verdict).await?;
    if super::second_look::wanted(&verdict) {
        // Let in because Telegram did not answer: looked at again once it does.
        super::second_look::schedule(app, group, member.clone(), ctx);
    }
    Ok(())
}

/// Someone's membership changed in a channel (`chat_member`).
pub async fn channel_member_changed(
    app: &App,
    channel: ChannelId,
    update: &ChatMemberUpdate,
) -> Result<(), HandleError> {
    let key = MembershipKey::new(channel, update.user.id);
    if app.flows().config().cache_mode.events_write() {
        // Events mode: the event is the truth now (it is newer than any load of
        // this key in flight, which therefore does not overwrite it), so the
        // strict-leave check below and the member's next message are hits.
        app.cache().insert(key, update.new).await;
    } else {
        app.cache().invalidate(key).await;
    }
    if update.joined() {
        channel_joined(app, channel, &update.user).await
    } else if update.left() {
        channel_left(app, channel, &update.user).await
    } else {
        Ok(())
    }
}

/// Unmutes the member in every active linked group where they are restricted
/// and now satisfy all of that group's channels.
async fn channel_joined(app: &App, channel: ChannelId, member: &User) -> Result<(), HandleError> {
    let groups = app.store().groups_for_channel(channel).await?;
    let mut first_error = None;
    for group in groups {
        let result: Result<(), HandleError> = async {
            super::gate::channel_joined(app, group, member.id).await?;
            let _guard = app.flows().member_lock(group, member.id).await;
            if app
                .store()
                .active_restriction(group, member.id)
                .await?
                .is_none()
                && !app.outbox().has_work_for(group, member.id)
            {
                return Ok(());
            }
            // Every channel of the group: joining this one may not be enough. Asked afresh,
            // unless the cache is kept by events: then it holds this join already (and
            // whatever else the bot saw), and Telegram is asked only for what it lacks.
            let verdict = if app.flows().config().cache_mode.events_write() {
                app.engine().recheck_cached(group, member.id).await?
            } else {
                app.engine().recheck(group, member.id).await?
            };
            log::info!(
                group_id = group.get(),
                user_id = member.id.get(),
                channel_id = channel.get(),
                decision = verdict.decision.as_str();
                "member joined a linked channel"
            );
            if verdict.decision.is_allowed() {
                // Queued, not awaited: the unmute waits for its budget in the outbox, after
                // (or instead of) the member's mute still queued there.
                drop(
                    app.outbox()
                        .lift(group, member.id, LiftReason::Joined, Lane::Interactive),
                );
            }
            Ok(())
        }
        .await;
        if let Err(err) = result {
            log::warn!(group_id = group.get(), user_id = member.id.get(), error:display = err; "cannot re-check a member after a channel join");
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// With `strict_leave`, mutes and warns the member in the linked groups where they were seen.
async fn channel_left(app: &App, channel: ChannelId, member: &User) -> Result<(), HandleError> {
    let groups = app.store().groups_for_channel(channel).await?;
    let mut first_error = None;
    for group in groups {
        let result: Result<(), HandleError> = async {
            let Some(config) = app.engine().group_config(group).await? else {
                return Ok(());
            };
            if config.not_enforced().is_some() || !config.settings().strict_leave {
                return Ok(());
            }
            let seen = app.flows().seen().is_pending(group, member.id)
                || app.store().seen_member(group, member.id).await?.is_some();
            if !seen {
                return Ok(());
            }
            let _guard = app.flows().member_lock(group, member.id).await;
            let verdict = app
                .engine()
                .verify(group, member.id, MessageContext::no_message())
                .await?;
            log::info!(
                group_id = group.get(),
                user_id = member.id.get(),
                channel_id = channel.get(),
                decision = verdict.decision.as_str();
                "member left a linked channel"
            );
            enforce::perform(app, group, member, &verdict).await?;
            Ok(())
        }
        .await;
        if let Err(err) = result {
            log::warn!(group_id = group.get(), user_id = member.id.get(), error:display = err; "cannot apply strict leave");
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}
