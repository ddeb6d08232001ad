//! `verify` and `recheck`: the order of checks that turns a (group, sender, context) into a [`Verdict`].

use std::time::Instant;

use crate::cache::MembershipKey;
use crate::domain::{
    ChannelId, ChatId, FailurePolicy, GroupId, GroupSettings, Membership, UnknownReason, UserId,
};

use super::channel_faults::unknown_reason;
use super::config_cache::GroupConfig;
use super::context::MessageContext;
use super::decision::{
    deny_actions, foreign_sender_chat_actions, Action, Actions, ChannelList, Decision,
    ExemptReason, NotEnforcedReason, UnverifiableChannel, UnverifiableList, Verdict,
};
use super::error::EngineError;
use super::Engine;

/// Where memberships come from, and what the verdict is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// The membership cache first, for a message or a join (deny → delete, mute, warn).
    Cached,
    /// Telegram directly, refreshing the cache: a recheck (the "I've joined" button).
    Fresh,
    /// The membership cache first, for a recheck (allow → unmute; deny → nothing
    /// new): a join the cache already holds (events mode).
    CachedRecheck,
}

impl Lookup {
    /// A recheck of a member who may be muted: its verdict unmutes or changes nothing.
    fn is_recheck(self) -> bool {
        matches!(self, Self::Fresh | Self::CachedRecheck)
    }
}

impl Engine {
    /// Decides whether `user` may speak in `group`.
    ///
    /// Fails only when the group's configuration cannot be read and none is
    /// cached (the database is down): the caller should retry the update
    /// later. Telegram failures are never errors; see [`Verdict::unverifiable`].
    pub async fn verify(
        &self,
        group: GroupId,
        user: UserId,
        ctx: MessageContext,
    ) -> Result<Verdict, EngineError> {
        let started = Instant::now();
        let result = self.decide(group, user, &ctx, Lookup::Cached).await;
        self.finish(group, user, result, started)
    }

    /// Verifies `user` again, asking Telegram for every linked channel instead
    /// of the cache, and stores the answers in the cache. For the "I've joined"
    /// button: a user who just subscribed must not wait for a cached "not a
    /// member" to expire.
    ///
    /// An allowed (or exempt, or no longer enforced) recheck implies
    /// [`Action::Unrestrict`]; a denied one implies nothing new (the member is
    /// already muted and their message already gone). A recheck that could
    /// not verify some channel (429, 5xx, timeout, bot not a channel admin)
    /// never implies [`Action::Unrestrict`], even when the group fails open:
    /// the caller should ask the member to try again.
    pub async fn recheck(&self, group: GroupId, user: UserId) -> Result<Verdict, EngineError> {
        let started = Instant::now();
        let result = self
            .decide(group, user, &MessageContext::no_message(), Lookup::Fresh)
            .await;
        self.finish(group, user, result, started)
    }

    /// Loads `user`'s memberships of `group`'s channels into the cache (single flight, so a
    /// verification asking meanwhile waits for the same call) without deciding anything or
    /// counting a verification. For read-ahead: the updates queued behind a busy chat's
    /// current one are handled in order, but their Telegram reads need not wait for it.
    /// Each channel is looked up exactly as a verification does it (cache, channels failing
    /// for everyone, single flight). Does nothing for an unknown or unenforced group. Returns
    /// whether some channel answered "not a member" (the update will likely be denied).
    pub async fn prefetch(&self, group: GroupId, user: UserId) -> bool {
        let inner = &*self.inner;
        let now_ms = inner.clock.now_millis();
        let Ok(cached) = inner
            .configs
            .get(group, now_ms, &*inner.store, &*inner.clock)
            .await
        else {
            return false;
        };
        let Some(config) = cached.as_deref() else {
            return false;
        };
        if config.not_enforced().is_some() {
            return false;
        }
        let mut not_member = false;
        for channel in config.channels() {
            if let Some(id) = channel.id {
                // The verification's own lookup: cache, failing channels, single flight.
                let (membership, _) = self.membership(id, user, Lookup::Cached).await;
                not_member |= matches!(membership, Membership::NotMember(_));
            }
        }
        not_member
    }

    /// Like [`Engine::recheck`], but memberships come from the cache (Telegram
    /// only on a miss). For the cache mode kept by events: the bot has just
    /// written the join it saw into the cache, and asking Telegram again would
    /// only repeat what the event said.
    pub async fn recheck_cached(
        &self,
        group: GroupId,
        user: UserId,
    ) -> Result<Verdict, EngineError> {
        let started = Instant::now();
        let result = self
            .decide(
                group,
                user,
                &MessageContext::no_message(),
                Lookup::CachedRecheck,
            )
            .await;
        self.finish(group, user, result, started)
    }

    pub(super) fn finish(
        &self,
        group: GroupId,
        user: UserId,
        result: Result<Verdict, EngineError>,
        started: Instant,
    ) -> Result<Verdict, EngineError> {
        let elapsed = started.elapsed();
        let metrics = &self.inner.metrics;
        match &result {
            Ok(verdict) => {
                metrics.record(verdict, elapsed);
                log::debug!(
                    group_id = group.get(),
                    user_id = user.get(),
                    decision = verdict.decision.as_str(),
                    latency_us = elapsed.as_micros();
                    "verified"
                );
            }
            Err(err) => {
                metrics.record_error(elapsed);
                log::warn!(
                    group_id = group.get(),
                    user_id = user.get(),
                    error:display = err;
                    "verification failed"
                );
            }
        }
        result
    }

    pub(super) async fn decide(
        &self,
        group: GroupId,
        user: UserId,
        ctx: &MessageContext,
        lookup: Lookup,
    ) -> Result<Verdict, EngineError> {
        let inner = &*self.inner;
        // One clock read for both snapshot caches (the membership cache reads its own).
        let now_ms = inner.clock.now_millis();
        let cached = inner
            .configs
            .get(group, now_ms, &*inner.store, &*inner.clock)
            .await
            .map_err(|source| EngineError::Store { group, source })?;
        let Some(config) = cached.as_deref() else {
            return Ok(allowed(
                Decision::NotEnforced(NotEnforcedReason::UnknownGroup),
                lookup,
            ));
        };
        if let Some(reason) = config.not_enforced() {
            return Ok(allowed(Decision::NotEnforced(reason), lookup));
        }
        let settings = config.settings();

        match sender_chat_rule(group, user, ctx, config) {
            SenderChat::Exempt(reason) => return Ok(allowed(Decision::Exempt(reason), lookup)),
            SenderChat::Foreign(chat) => {
                let actions = if lookup.is_recheck() {
                    Actions::new()
                } else {
                    foreign_sender_chat_actions(settings, ctx.message, chat)
                };
                return Ok(Verdict {
                    decision: Decision::Deny {
                        missing: config.channels().iter().cloned().collect(),
                    },
                    actions,
                    unverifiable: UnverifiableList::new(),
                    cache_hits: 0,
                });
            }
            SenderChat::User => {}
        }
        if let Some(reason) = exemption_without_io(user, ctx, settings) {
            return Ok(allowed(Decision::Exempt(reason), lookup));
        }
        let admins = inner
            .admins
            .get(group, now_ms, &*inner.telegram, &*inner.clock)
            .await;
        if let Some(reason) = admins.role(user) {
            return Ok(allowed(Decision::Exempt(reason), lookup));
        }

        let mut missing = ChannelList::new();
        let mut unverifiable = UnverifiableList::new();
        let mut cache_hits = 0;
        for channel in config.channels() {
            let membership = match channel.id {
                Some(id) => {
                    let (membership, hit) = self.membership(id, user, lookup).await;
                    cache_hits += u32::from(hit);
                    membership
                }
                // Linked by username and never resolved to an id: nothing to ask Telegram.
                None => Membership::Unknown(UnknownReason::ChannelNotFound),
            };
            match membership {
                Membership::Member(_) => {}
                Membership::NotMember(_) => missing.push(channel.clone()),
                Membership::Unknown(reason) => {
                    unverifiable.push(UnverifiableChannel {
                        channel: channel.clone(),
                        reason,
                    });
                    if settings.failure_policy == FailurePolicy::Closed {
                        missing.push(channel.clone());
                    }
                }
            }
        }

        let mut verdict = if missing.is_empty() {
            allowed(Decision::Allow, lookup)
        } else if lookup == Lookup::Cached && !admins.is_known() {
            // No admin list was ever fetched: the sender may be an admin.
            // Acting against someone whose status is unknown is worse than
            // letting one message through (the next one is checked again).
            log::info!(
                group_id = group.get(),
                user_id = user.get();
                "not acting: the group's admins are unknown"
            );
            allowed(Decision::Allow, lookup)
        } else {
            let actions = if lookup.is_recheck() {
                Actions::new()
            } else {
                deny_actions(settings, ctx.message, inner.clock.unix_now())
            };
            Verdict {
                decision: Decision::Deny { missing },
                actions,
                unverifiable: UnverifiableList::new(),
                cache_hits: 0,
            }
        };
        if lookup.is_recheck() && !unverifiable.is_empty() {
            // An unknown answer never lifts a restriction (TELEGRAM.md,
            // "Membership"), whatever the failure policy let through.
            verdict.actions.retain(|a| *a != Action::Unrestrict);
        }
        verdict.unverifiable = unverifiable;
        verdict.cache_hits = cache_hits;
        Ok(verdict)
    }

    /// One channel membership: cache then Telegram (single flight), or
    /// Telegram then cache for a recheck; and whether a cache layer answered.
    async fn membership(
        &self,
        channel: ChannelId,
        user: UserId,
        lookup: Lookup,
    ) -> (Membership, bool) {
        let inner = &*self.inner;
        let key = MembershipKey::new(channel, user);
        let answer = match lookup {
            Lookup::Cached | Lookup::CachedRecheck => {
                // The hit path: synchronous, no allocation, no boxed future.
                if let Some(status) = inner.cache.get_local(key) {
                    return (Membership::from(status), true);
                }
                if let Some(reason) = inner.faults.get(channel, &*inner.clock).await {
                    return (Membership::Unknown(reason), false);
                }
                let loader = inner.telegram.get_chat_member(ChatId::from(channel), user);
                match inner.cache.get_or_load(key, loader).await {
                    Ok(l) if l.source.is_hit() => return (Membership::from(l.status), true),
                    other => other.map(|l| l.status),
                }
            }
            Lookup::Fresh => {
                // Telegram first, then the cache — unless a join or leave of this
                // member arrived meanwhile, which is newer than this answer.
                let loader = inner.telegram.get_chat_member(ChatId::from(channel), user);
                let answer = inner.cache.refresh(key, loader).await;
                if answer.is_ok() {
                    inner.faults.clear(channel).await;
                }
                answer
            }
        };
        let membership = match answer {
            Ok(status) => Membership::from(status),
            Err(err) => {
                inner.faults.note(channel, &err, &*inner.clock).await;
                log::debug!(
                    channel_id = channel.get(),
                    user_id = user.get(),
                    error:display = err;
                    "membership unknown"
                );
                Membership::Unknown(unknown_reason(&err))
            }
        };
        (membership, false)
    }
}

/// A verdict that lets the sender speak; a recheck that lets them speak lifts their mute.
fn allowed(decision: Decision, lookup: Lookup) -> Verdict {
    let mut verdict = Verdict::new(decision);
    if lookup.is_recheck() {
        verdict.actions.push(Action::Unrestrict);
    }
    verdict
}

/// What a message's `sender_chat` (and placeholder sender) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SenderChat {
    /// Sent by a user as themselves: verify them.
    User,
    /// Sent on behalf of a chat the group trusts.
    Exempt(ExemptReason),
    /// Sent on behalf of any other chat: deleted, that chat banned (by
    /// setting). `None`: a placeholder sender without `sender_chat`.
    Foreign(Option<ChatId>),
}

/// Messages sent on behalf of a chat, decided before any user rule: their
/// `from` is a placeholder (GroupAnonymousBot, Channel_Bot, 777000) that is
/// never a member to verify, restrict or exempt as "a bot" (TELEGRAM.md, "Updates").
fn sender_chat_rule(
    group: GroupId,
    user: UserId,
    ctx: &MessageContext,
    config: &GroupConfig,
) -> SenderChat {
    if user == UserId::SERVICE_ACCOUNT || ctx.is_automatic_forward {
        // The linked channel's posts arrive from 777000 with is_automatic_forward (Bot API `Message`).
        return SenderChat::Exempt(ExemptReason::AutomaticForward);
    }
    let placeholder = user == UserId::GROUP_ANONYMOUS_BOT || user == UserId::CHANNEL_BOT;
    let chat = match ctx.sender_chat {
        Some(chat) => chat,
        // A placeholder with no sender_chat names nobody: nothing to verify or
        // exempt. Treat it like a post as a chat the group does not trust,
        // without a chat to ban.
        None if placeholder => return SenderChat::Foreign(None),
        None => return SenderChat::User,
    };
    if chat == ChatId::from(group) {
        // An anonymous admin's message has from = GroupAnonymousBot and
        // sender_chat = the group itself (TELEGRAM.md, "Updates").
        return SenderChat::Exempt(ExemptReason::AnonymousAdmin);
    }
    if config
        .channels()
        .iter()
        .any(|c| c.id.is_some_and(|id| ChatId::from(id) == chat))
    {
        return SenderChat::Exempt(ExemptReason::OwnChannel);
    }
    SenderChat::Foreign(Some(chat))
}

/// Exemptions decided from the message and the settings alone, checked
/// before anything that may need a Telegram call.
fn exemption_without_io(
    user: UserId,
    ctx: &MessageContext,
    settings: &GroupSettings,
) -> Option<ExemptReason> {
    if ctx.sender_is_bot && settings.exempt_bots {
        return Some(ExemptReason::Bot);
    }
    if settings.allowlist.contains(&user) {
        return Some(ExemptReason::Allowlisted);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ChannelId, ChannelRef, EnforcedChannel, GroupState, ProtectedGroup, UnixTime,
    };

    fn config(group: GroupId, channel: ChannelId) -> GroupConfig {
        GroupConfig::new(ProtectedGroup {
            id: group,
            title: None,
            owner: None,
            state: GroupState::Active,
            paused_reason: None,
            channels: vec![EnforcedChannel::from_ref(ChannelRef::Id(channel))],
            settings: GroupSettings::default(),
            created_at: UnixTime(0),
            updated_at: UnixTime(0),
        })
    }

    #[test]
    fn sender_chats_are_trusted_only_when_they_are_the_group_or_its_channels() {
        let g = GroupId(-1_001);
        let own = ChannelId(-1_003);
        let c = config(g, own);
        let ctx = MessageContext::no_message().from_bot();
        for placeholder in [UserId::GROUP_ANONYMOUS_BOT, UserId::CHANNEL_BOT] {
            assert_eq!(
                sender_chat_rule(g, placeholder, &ctx.with_sender_chat(ChatId(g.get())), &c),
                SenderChat::Exempt(ExemptReason::AnonymousAdmin)
            );
            assert_eq!(
                sender_chat_rule(g, placeholder, &ctx.with_sender_chat(own.into()), &c),
                SenderChat::Exempt(ExemptReason::OwnChannel)
            );
            assert_eq!(
                sender_chat_rule(g, placeholder, &ctx.with_sender_chat(ChatId(-1_002)), &c),
                SenderChat::Foreign(Some(ChatId(-1_002)))
            );
            assert_eq!(
                sender_chat_rule(g, placeholder, &ctx, &c),
                SenderChat::Foreign(None)
            );
        }
        assert_eq!(
            sender_chat_rule(g, UserId(5), &MessageContext::no_message(), &c),
            SenderChat::User
        );
    }
}
