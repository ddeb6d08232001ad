//! The `/protect` checks: can this group require these channels, and if not, what exactly to fix.
//!
//! Shared by the bot's `/protect` and `/status` commands and by `gmbot protect`
//! in the CLI, through the [`TelegramApi`] port only. The checks are the ones
//! every channel guard needs and users of such bots most often get wrong
//! (TELEGRAM.md, "What users of existing bots complain about"):
//!
//! - the group is a supergroup the bot can see (Telegram restricts members of
//!   supergroups only), and the caller, if known, is one of its admins;
//! - the bot is an admin of the group with **Delete messages** and **Ban users**
//!   (`can_delete_messages`, `can_restrict_members`);
//! - each channel resolves (`getChat`) and is a channel;
//! - the bot is an admin of each channel: Telegram reveals channel members
//!   only to channel admins (`getChatMember` answers "member list is
//!   inaccessible" otherwise — a missing right, not a non-member);
//! - the caller, if known, is an admin of each channel: nobody may enforce
//!   somebody else's channel;
//! - for a private channel (no username), the bot may invite users, so it can
//!   create the one invite link the warnings show (`createChatInviteLink` —
//!   never `exportChatInviteLink`, which revokes the previous link).
//!
//! [`check_join_gate`] is the check behind the join gate, run by `/status` and `/protect`
//! when a group has it on: answering join requests needs the bot's **Invite users via
//! link** right (`can_invite_users`) in the group.
//!
//! Every failed check is reported, not only the first, each as a
//! [`SetupProblem`] whose text says what to do. Nothing is created until
//! every check passed.

use std::fmt;

use crate::domain::{ChannelId, ChannelRef, EnforcedChannel, GroupId, UserId};
use crate::telegram::{ChatAdmin, ChatInfo, ChatTarget, ChatType, TelegramApi, TelegramError};

/// At most this many channels in one `/protect` (each costs a few Telegram calls).
pub const MAX_CHANNELS: usize = 10;

/// What to check: who asks to protect which group with which channels.
#[derive(Debug, Clone, Copy)]
pub struct ProtectCheck<'a> {
    /// The bot's own user id.
    pub bot: UserId,
    /// The group to protect.
    pub group: GroupId,
    /// The admin asking, if known (the CLI has none): must be an admin of the
    /// group and of every channel.
    pub caller: Option<UserId>,
    /// The channels, as named.
    pub channels: &'a [ChannelRef],
    /// Channels already stored: a private channel's stored invite link is
    /// reused rather than a new one created.
    pub known: &'a [EnforcedChannel],
}

/// The outcome of checks that all passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectPlan {
    /// The group's title, as Telegram reports it.
    pub group_title: Option<String>,
    /// Every channel resolved: id, username, title and, for a private channel, its invite link.
    pub channels: Vec<EnforcedChannel>,
}

/// One failed check, with what to do about it in its `Display`.
///
/// Channel names in the texts are plain text (a channel title may contain
/// `<` or `&`): escape them before sending as HTML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupProblem {
    /// No channel was named.
    #[error(
        "Which channel? Send /protect @yourchannel (for a private channel, its numeric id -100…)."
    )]
    NoChannels,
    /// Too many channels in one request.
    #[error("That is {given} channels; one group can require at most {max}. Name fewer channels.")]
    TooManyChannels {
        /// How many were named.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// The bot cannot see the group.
    #[error("I can't see this group. Add me to the group as an administrator, then try again.")]
    GroupNotFound,
    /// The "group" is not a group.
    #[error("This chat is a {}, not a group. Protection works in groups.", kind.as_str())]
    NotAGroup {
        /// What it is.
        kind: ChatType,
    },
    /// A basic group: Telegram lets bots restrict members only in supergroups.
    #[error("This is a basic group, and Telegram lets bots mute members only in supergroups. Upgrade it: in the group's settings set Chat history for new members to Visible (or make the group public), then run the command again in the upgraded group.")]
    BasicGroup,
    /// The caller is not an admin of the group.
    #[error("Only an administrator of this group can set up protection.")]
    CallerNotGroupAdmin,
    /// The bot is not an admin of the group.
    #[error("Make me an administrator of this group with the rights Delete messages and Ban users (I mute non-subscribers and delete their messages).")]
    BotNotGroupAdmin,
    /// The bot is an admin of the group but lacks a right it needs.
    #[error("I'm an administrator of this group but lack {}: open the group's administrators, edit my rights and switch {} on.", missing_rights(*.delete_messages, *.restrict_members), if *.delete_messages && *.restrict_members { "them" } else { "it" })]
    BotMissingGroupRights {
        /// `can_delete_messages` is missing.
        delete_messages: bool,
        /// `can_restrict_members` is missing.
        restrict_members: bool,
    },
    /// The join gate is on, and the bot may not approve or decline join requests.
    #[error("The join gate is on, but I can't approve or decline join requests: give me the right Invite users via link (Add members) in this group, or switch the gate off in /settings.")]
    BotCannotApproveJoinRequests,
    /// A channel cannot be found.
    #[error("I can't find the channel {channel}. Check the spelling; for a private channel, first make me one of its administrators, then send its numeric id (-100…).")]
    ChannelNotFound {
        /// The channel as named.
        channel: String,
    },
    /// The named chat is not a channel.
    #[error("{channel} is a {}, not a channel. Name a channel (by @username or its -100… id).", kind.as_str())]
    NotAChannel {
        /// The chat as named.
        channel: String,
        /// What it is.
        kind: ChatType,
    },
    /// The bot is not an admin of the channel, so it cannot read its members.
    #[error("Make me an administrator of {channel} with no extra rights needed — Telegram only shows channel members to its admins.")]
    BotNotChannelAdmin {
        /// The channel.
        channel: String,
    },
    /// The caller is not an admin of the channel.
    #[error("You are not an administrator of {channel}; only its administrators may require it. Ask one of them to run this command, or to make you an administrator of {channel}.")]
    CallerNotChannelAdmin {
        /// The channel.
        channel: String,
    },
    /// A private channel, and the bot may not create an invite link for it.
    #[error("{channel} is private, so members need an invite link to join: give me the Invite users via link (Add subscribers) right in {channel}. I create one link and keep it.")]
    BotCannotInvite {
        /// The channel.
        channel: String,
    },
    /// Creating the invite link failed.
    #[error("I could not create an invite link for {channel} ({error}). Check that I may invite users there, then try again.")]
    InviteLinkFailed {
        /// The channel.
        channel: String,
        /// Telegram's answer.
        error: TelegramError,
    },
    /// Telegram did not answer a check; retrying later may work.
    #[error(
        "Telegram did not answer while I was checking {checking} ({error}). Try again in a minute."
    )]
    Telegram {
        /// What was being checked.
        checking: String,
        /// The failure.
        error: TelegramError,
    },
}

fn missing_rights(delete: bool, restrict: bool) -> &'static str {
    match (delete, restrict) {
        (true, true) => "the rights Delete messages and Ban users",
        (true, false) => "the right Delete messages",
        (false, _) => "the right Ban users (needed to mute members)",
    }
}

/// Every problem found by one run of the checks (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupProblems(pub Vec<SetupProblem>);

impl SetupProblems {
    /// The problems.
    pub fn problems(&self) -> &[SetupProblem] {
        &self.0
    }

    /// Whether one of them is `problem`.
    pub fn contains(&self, problem: &SetupProblem) -> bool {
        self.0.contains(problem)
    }
}

impl fmt::Display for SetupProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SetupProblems {}

/// How a channel is named in problem texts: `@username`, else `“Title” (-100…)`.
pub fn channel_label(info: &ChatInfo) -> String {
    match (&info.username, &info.title) {
        (Some(u), _) => format!("@{u}"),
        (None, Some(t)) => format!("“{t}” ({})", info.id),
        (None, None) => info.id.to_string(),
    }
}

/// The group-level checks: the group is a supergroup the bot sees, the caller
/// is one of its admins, the bot is an admin with the rights it needs.
/// Returns the group's `getChat` answer (if any) and the problems found.
pub async fn check_group(
    tg: &dyn TelegramApi,
    bot: UserId,
    group: GroupId,
    caller: Option<UserId>,
) -> (Option<ChatInfo>, Vec<SetupProblem>) {
    let mut problems = Vec::new();
    let info = match tg.get_chat(&ChatTarget::Id(group.into())).await {
        Ok(info) => info,
        Err(TelegramError::ChatNotFound(_) | TelegramError::Forbidden(_)) => {
            return (None, vec![SetupProblem::GroupNotFound]);
        }
        Err(error) => {
            return (
                None,
                vec![SetupProblem::Telegram {
                    checking: "this group".into(),
                    error,
                }],
            );
        }
    };
    match info.kind {
        ChatType::Supergroup => {}
        ChatType::Group => problems.push(SetupProblem::BasicGroup),
        kind => return (Some(info), vec![SetupProblem::NotAGroup { kind }]),
    }
    let admins = match tg.get_chat_administrators(group.into()).await {
        Ok(admins) => admins,
        Err(TelegramError::ChatNotFound(_) | TelegramError::Forbidden(_)) => {
            problems.push(SetupProblem::GroupNotFound);
            return (Some(info), problems);
        }
        Err(error) => {
            problems.push(SetupProblem::Telegram {
                checking: "this group's administrators".into(),
                error,
            });
            return (Some(info), problems);
        }
    };
    if let Some(caller) = caller {
        if !admins.iter().any(|a| a.user == caller) {
            problems.push(SetupProblem::CallerNotGroupAdmin);
        }
    }
    match admins.iter().find(|a| a.user == bot) {
        None => problems.push(SetupProblem::BotNotGroupAdmin),
        Some(rights) if !rights.can_delete_messages || !rights.can_restrict_members => {
            problems.push(SetupProblem::BotMissingGroupRights {
                delete_messages: !rights.can_delete_messages,
                restrict_members: !rights.can_restrict_members,
            });
        }
        Some(_) => {}
    }
    (Some(info), problems)
}

/// The check behind the join gate: answering join requests (`approveChatJoinRequest`,
/// `declineChatJoinRequest`) needs the bot to be an administrator of the group with
/// `can_invite_users`. Returns the problem, if any (a failed lookup is reported as such).
pub async fn check_join_gate(
    tg: &dyn TelegramApi,
    bot: UserId,
    group: GroupId,
) -> Option<SetupProblem> {
    match tg.get_chat_administrators(group.into()).await {
        Ok(admins) => match admins.iter().find(|a| a.user == bot) {
            Some(me) if me.can_invite_users || me.is_creator => None,
            _ => Some(SetupProblem::BotCannotApproveJoinRequests),
        },
        Err(error) => Some(SetupProblem::Telegram {
            checking: "my rights for join requests".into(),
            error,
        }),
    }
}

/// A channel that passed its checks; `needs_link` when it is private and has no stored link yet.
struct ResolvedChannel {
    channel: EnforcedChannel,
    label: String,
    needs_link: bool,
}

/// The checks of one channel. `known` is the stored record of it, if any.
async fn check_channel(
    tg: &dyn TelegramApi,
    bot: UserId,
    caller: Option<UserId>,
    named: &ChannelRef,
    known: &[EnforcedChannel],
) -> Result<ResolvedChannel, Vec<SetupProblem>> {
    let as_named = named.to_string();
    let info = match tg.get_chat(&ChatTarget::from(named)).await {
        Ok(info) => info,
        Err(
            TelegramError::ChatNotFound(_)
            | TelegramError::Forbidden(_)
            | TelegramError::UserNotFound(_)
            | TelegramError::BadRequest(_),
        ) => return Err(vec![SetupProblem::ChannelNotFound { channel: as_named }]),
        Err(error) => {
            return Err(vec![SetupProblem::Telegram {
                checking: as_named,
                error,
            }])
        }
    };
    if info.kind != ChatType::Channel {
        return Err(vec![SetupProblem::NotAChannel {
            channel: as_named,
            kind: info.kind,
        }]);
    }
    let label = channel_label(&info);
    let not_admin = || SetupProblem::BotNotChannelAdmin {
        channel: label.clone(),
    };
    // The very call the engine makes for every member: proves it will work.
    match tg.get_chat_member(info.id, bot).await {
        Ok(status) if status.is_admin() => {}
        Ok(_)
        | Err(
            TelegramError::NotEnoughRights(_)
            | TelegramError::ChatNotFound(_)
            | TelegramError::Forbidden(_)
            | TelegramError::UserNotFound(_),
        ) => return Err(vec![not_admin()]),
        Err(error) => {
            return Err(vec![SetupProblem::Telegram {
                checking: label,
                error,
            }])
        }
    }
    let id = ChannelId(info.id.get());
    let private = info.username.is_none();
    let stored_link = known
        .iter()
        .find(|k| k.id == Some(id))
        .and_then(|k| k.invite_link.clone());
    let needs_link = private && stored_link.is_none();
    let mut problems = Vec::new();
    if caller.is_some() || needs_link {
        let admins: Vec<ChatAdmin> = match tg.get_chat_administrators(info.id).await {
            Ok(admins) => admins,
            Err(TelegramError::NotEnoughRights(_) | TelegramError::ChatNotFound(_)) => {
                return Err(vec![not_admin()])
            }
            Err(error) => {
                return Err(vec![SetupProblem::Telegram {
                    checking: format!("the administrators of {label}"),
                    error,
                }])
            }
        };
        if let Some(caller) = caller {
            if !admins.iter().any(|a| a.user == caller) {
                problems.push(SetupProblem::CallerNotChannelAdmin {
                    channel: label.clone(),
                });
            }
        }
        if needs_link
            && !admins
                .iter()
                .any(|a| a.user == bot && (a.can_invite_users || a.is_creator))
        {
            problems.push(SetupProblem::BotCannotInvite {
                channel: label.clone(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ResolvedChannel {
        channel: EnforcedChannel {
            id: Some(id),
            username: info
                .username
                .as_deref()
                .and_then(|u| crate::domain::ChannelUsername::parse(u).ok()),
            title: info.title.clone(),
            invite_link: if private { stored_link } else { None },
        },
        label,
        needs_link,
    })
}

/// Runs every `/protect` check; on success creates the missing invite links
/// (one per private channel, reusing a stored one) and returns the resolved channels.
///
/// ```
/// # async fn demo() {
/// use gmbot_core::domain::{ChannelId, ChannelRef, ChatMemberStatus, GroupId, UserId};
/// use gmbot_core::setup::{check_protect, ProtectCheck, SetupProblem};
/// use gmbot_core::telegram::MemoryTelegram;
///
/// let (group, channel, admin) = (GroupId(-1_001), ChannelId(-1_002), UserId(7));
/// let tg = MemoryTelegram::new()
///     .add_group(group)
///     .add_channel(channel)
///     .set_username(channel, Some("news"))
///     .set_member(group, admin, ChatMemberStatus::Creator)
///     .set_bot_channel_admin(channel, false);
/// let named: Vec<ChannelRef> = vec!["@news".parse().expect("valid")];
/// let check = ProtectCheck {
///     bot: tg.bot_id(),
///     group,
///     caller: Some(admin),
///     channels: &named,
///     known: &[],
/// };
/// let problems = check_protect(&tg, &check).await.expect_err("bot is not a channel admin");
/// assert!(problems.contains(&SetupProblem::BotNotChannelAdmin { channel: "@news".into() }));
/// # }
/// ```
pub async fn check_protect(
    tg: &dyn TelegramApi,
    check: &ProtectCheck<'_>,
) -> Result<ProtectPlan, SetupProblems> {
    if check.channels.is_empty() {
        return Err(SetupProblems(vec![SetupProblem::NoChannels]));
    }
    if check.channels.len() > MAX_CHANNELS {
        return Err(SetupProblems(vec![SetupProblem::TooManyChannels {
            given: check.channels.len(),
            max: MAX_CHANNELS,
        }]));
    }
    let (group_info, mut problems) = check_group(tg, check.bot, check.group, check.caller).await;
    let mut resolved: Vec<ResolvedChannel> = Vec::new();
    for named in check.channels {
        match check_channel(tg, check.bot, check.caller, named, check.known).await {
            Ok(r) => {
                // Two names for one channel (@name and its id): keep one.
                if !resolved.iter().any(|o| o.channel.id == r.channel.id) {
                    resolved.push(r);
                }
            }
            Err(found) => {
                for p in found {
                    if !problems.contains(&p) {
                        problems.push(p);
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(SetupProblems(problems));
    }
    for r in &mut resolved {
        if !r.needs_link {
            continue;
        }
        let Some(id) = r.channel.id else { continue };
        match tg.create_invite_link(id.into()).await {
            Ok(link) => r.channel.invite_link = Some(link),
            Err(error) => problems.push(SetupProblem::InviteLinkFailed {
                channel: r.label.clone(),
                error,
            }),
        }
    }
    if !problems.is_empty() {
        return Err(SetupProblems(problems));
    }
    Ok(ProtectPlan {
        group_title: group_info.and_then(|i| i.title),
        channels: resolved.into_iter().map(|r| r.channel).collect(),
    })
}

/// Re-runs the checks for a group already protected (no caller, nothing
/// created), for `/status`: an empty list means every right is in place.
pub async fn diagnose(
    tg: &dyn TelegramApi,
    bot: UserId,
    group: GroupId,
    channels: &[EnforcedChannel],
) -> Vec<SetupProblem> {
    let (_, mut problems) = check_group(tg, bot, group, None).await;
    for channel in channels {
        let named = match (channel.id, &channel.username) {
            (Some(id), _) => ChannelRef::Id(id),
            (None, Some(u)) => ChannelRef::Username(u.clone()),
            (None, None) => continue,
        };
        if let Err(found) = check_channel(tg, bot, None, &named, channels).await {
            problems.extend(found);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChatId, ChatMemberStatus};
    use crate::telegram::{MemoryTelegram, Method, DEFAULT_BOT_ID};

    const GROUP: GroupId = GroupId(-100_100);
    const PUBLIC: ChannelId = ChannelId(-100_200);
    const PRIVATE: ChannelId = ChannelId(-100_300);
    const ADMIN: UserId = UserId(11);
    const MEMBER: UserId = UserId(12);

    /// A group and two channels in which everything is in order for ADMIN.
    fn world() -> MemoryTelegram {
        MemoryTelegram::new()
            .add_group(GROUP)
            .set_title(GROUP, "Chat <&> friends")
            .add_channel(PUBLIC)
            .set_title(PUBLIC, "News")
            .set_username(PUBLIC, Some("news_channel"))
            .add_channel(PRIVATE)
            .set_title(PRIVATE, "Secret")
            .set_member(GROUP, ADMIN, ChatMemberStatus::Administrator)
            .set_member(GROUP, MEMBER, ChatMemberStatus::Member)
            .set_member(PUBLIC, ADMIN, ChatMemberStatus::Creator)
            .set_member(PRIVATE, ADMIN, ChatMemberStatus::Administrator)
    }

    fn refs(names: &[&str]) -> Vec<ChannelRef> {
        names
            .iter()
            .map(|n| n.parse().expect("valid channel ref"))
            .collect()
    }

    async fn run(
        tg: &MemoryTelegram,
        caller: Option<UserId>,
        names: &[&str],
    ) -> Result<ProtectPlan, SetupProblems> {
        let named = refs(names);
        check_protect(
            tg,
            &ProtectCheck {
                bot: DEFAULT_BOT_ID,
                group: GROUP,
                caller,
                channels: &named,
                known: &[],
            },
        )
        .await
    }

    fn bot_rights(delete: bool, restrict: bool, invite: bool) -> ChatAdmin {
        ChatAdmin {
            user: DEFAULT_BOT_ID,
            is_bot: true,
            is_creator: false,
            can_delete_messages: delete,
            can_restrict_members: restrict,
            can_invite_users: invite,
        }
    }

    #[tokio::test]
    async fn the_join_gate_needs_the_invite_right() {
        let tg = world();
        assert_eq!(check_join_gate(&tg, DEFAULT_BOT_ID, GROUP).await, None);
        let tg = tg.set_admin(
            GROUP,
            ChatAdmin {
                user: DEFAULT_BOT_ID,
                is_bot: true,
                is_creator: false,
                can_delete_messages: true,
                can_restrict_members: true,
                can_invite_users: false,
            },
        );
        assert_eq!(
            check_join_gate(&tg, DEFAULT_BOT_ID, GROUP).await,
            Some(SetupProblem::BotCannotApproveJoinRequests)
        );
    }

    #[tokio::test]
    async fn everything_in_order_resolves_channels_and_creates_one_link() {
        let tg = world();
        let plan = run(&tg, Some(ADMIN), &["@News_Channel", "-100300", "-100200"])
            .await
            .expect("all checks pass");
        assert_eq!(plan.group_title.as_deref(), Some("Chat <&> friends"));
        assert_eq!(plan.channels.len(), 2, "duplicate removed: {plan:?}");
        let public = &plan.channels[0];
        assert_eq!(public.id, Some(PUBLIC));
        assert_eq!(
            public.username.as_ref().map(|u| u.as_str()),
            Some("news_channel")
        );
        assert_eq!(public.title.as_deref(), Some("News"));
        assert_eq!(public.invite_link, None);
        let private = &plan.channels[1];
        assert_eq!(private.id, Some(PRIVATE));
        assert_eq!(private.username, None);
        let links = tg.invite_links();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].0, ChatId::from(PRIVATE));
        assert_eq!(private.invite_link.as_deref(), Some(links[0].1.as_str()));
        assert_eq!(tg.count(Method::CreateInviteLink), 1);
    }

    #[tokio::test]
    async fn a_stored_invite_link_is_reused_never_recreated() {
        let tg = world();
        let named = refs(&["-100300"]);
        let known = vec![EnforcedChannel {
            id: Some(PRIVATE),
            username: None,
            title: Some("Secret".into()),
            invite_link: Some("https://t.me/+stored".into()),
        }];
        let plan = check_protect(
            &tg,
            &ProtectCheck {
                bot: DEFAULT_BOT_ID,
                group: GROUP,
                caller: None,
                channels: &named,
                known: &known,
            },
        )
        .await
        .expect("passes");
        assert_eq!(
            plan.channels[0].invite_link.as_deref(),
            Some("https://t.me/+stored")
        );
        assert_eq!(tg.count(Method::CreateInviteLink), 0);
    }

    #[tokio::test]
    async fn no_channels_asks_which() {
        let problems = run(&world(), Some(ADMIN), &[]).await.expect_err("none");
        assert_eq!(problems.problems(), &[SetupProblem::NoChannels]);
        assert!(problems.to_string().contains("/protect @yourchannel"));
    }

    #[tokio::test]
    async fn too_many_channels() {
        let names: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("@chan_{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let problems = run(&world(), Some(ADMIN), &names).await.expect_err("limit");
        assert!(matches!(
            problems.problems(),
            [SetupProblem::TooManyChannels { .. }]
        ));
    }

    #[tokio::test]
    async fn caller_not_group_admin() {
        let tg = world().set_member(PUBLIC, MEMBER, ChatMemberStatus::Administrator);
        let problems = run(&tg, Some(MEMBER), &["@news_channel"])
            .await
            .expect_err("not admin");
        assert_eq!(problems.problems(), &[SetupProblem::CallerNotGroupAdmin]);
    }

    #[tokio::test]
    async fn group_unknown_or_not_a_supergroup() {
        let tg = world().remove_chat(GROUP);
        let problems = run(&tg, Some(ADMIN), &["@news_channel"])
            .await
            .expect_err("no group");
        assert_eq!(problems.problems(), &[SetupProblem::GroupNotFound]);

        // A channel id given as the group.
        let tg = world();
        let (_, found) = check_group(&tg, DEFAULT_BOT_ID, GroupId(PUBLIC.get()), None).await;
        assert_eq!(
            found,
            vec![SetupProblem::NotAGroup {
                kind: ChatType::Channel
            }]
        );
    }

    #[tokio::test]
    async fn bot_not_group_admin() {
        let tg = world().set_bot_admin(GROUP, false);
        let problems = run(&tg, Some(ADMIN), &["@news_channel"])
            .await
            .expect_err("bot not admin");
        assert_eq!(problems.problems(), &[SetupProblem::BotNotGroupAdmin]);
        let text = problems.to_string();
        assert!(
            text.contains("Delete messages") && text.contains("Ban users"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn bot_missing_group_rights_names_each() {
        let tg = world().set_admin(GROUP, bot_rights(true, false, false));
        let problems = run(&tg, Some(ADMIN), &["@news_channel"])
            .await
            .expect_err("no restrict");
        assert_eq!(
            problems.problems(),
            &[SetupProblem::BotMissingGroupRights {
                delete_messages: false,
                restrict_members: true
            }]
        );
        assert!(problems.to_string().contains("Ban users"));
        assert!(!problems.to_string().contains("Delete messages"));

        let tg = world().set_admin(GROUP, bot_rights(false, false, true));
        let text = run(&tg, Some(ADMIN), &["@news_channel"])
            .await
            .expect_err("none")
            .to_string();
        assert!(
            text.contains("Delete messages and Ban users") && text.contains("them"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn channel_not_found() {
        let problems = run(&world(), Some(ADMIN), &["@no_such_channel"])
            .await
            .expect_err("unknown");
        assert_eq!(
            problems.problems(),
            &[SetupProblem::ChannelNotFound {
                channel: "@no_such_channel".into()
            }]
        );
        // A private channel the bot is not in is invisible.
        let tg = world().set_member(PRIVATE, DEFAULT_BOT_ID, ChatMemberStatus::Left);
        let problems = run(&tg, Some(ADMIN), &["-100300"])
            .await
            .expect_err("invisible");
        assert_eq!(
            problems.problems(),
            &[SetupProblem::ChannelNotFound {
                channel: "-100300".into()
            }]
        );
    }

    #[tokio::test]
    async fn a_group_is_not_a_channel() {
        let tg = world().set_username(GROUP, Some("some_group"));
        let problems = run(&tg, Some(ADMIN), &["@some_group"])
            .await
            .expect_err("group");
        assert_eq!(
            problems.problems(),
            &[SetupProblem::NotAChannel {
                channel: "@some_group".into(),
                kind: ChatType::Supergroup
            }]
        );
    }

    #[tokio::test]
    async fn bot_not_channel_admin() {
        let tg = world().set_bot_channel_admin(PUBLIC, false);
        let problems = run(&tg, Some(ADMIN), &["@news_channel"])
            .await
            .expect_err("not channel admin");
        assert_eq!(
            problems.to_string(),
            "Make me an administrator of @news_channel with no extra rights needed — Telegram only shows channel members to its admins."
        );
    }

    #[tokio::test]
    async fn caller_not_channel_admin() {
        let tg = world().set_member(PUBLIC, ADMIN, ChatMemberStatus::Member);
        let problems = run(&tg, Some(ADMIN), &["@news_channel"])
            .await
            .expect_err("caller not channel admin");
        assert_eq!(
            problems.problems(),
            &[SetupProblem::CallerNotChannelAdmin {
                channel: "@news_channel".into()
            }]
        );
        // Without a caller (the CLI) the check does not apply.
        assert!(run(&tg, None, &["@news_channel"]).await.is_ok());
    }

    #[tokio::test]
    async fn private_channel_needs_the_invite_right() {
        let tg = world().set_admin(PRIVATE, bot_rights(false, false, false));
        let problems = run(&tg, Some(ADMIN), &["-100300"])
            .await
            .expect_err("no invite right");
        assert_eq!(
            problems.problems(),
            &[SetupProblem::BotCannotInvite {
                channel: "“Secret” (-100300)".into()
            }]
        );
        assert_eq!(tg.count(Method::CreateInviteLink), 0);
    }

    #[tokio::test]
    async fn every_problem_is_reported_and_nothing_is_created() {
        let tg = world()
            .set_admin(GROUP, bot_rights(true, false, true))
            .set_bot_channel_admin(PUBLIC, false);
        let problems = run(
            &tg,
            Some(ADMIN),
            &["@news_channel", "-100300", "@missing_one"],
        )
        .await
        .expect_err("several problems");
        assert_eq!(problems.problems().len(), 3, "{problems}");
        assert_eq!(problems.to_string().lines().count(), 3);
        assert_eq!(tg.count(Method::CreateInviteLink), 0);
    }

    #[tokio::test]
    async fn telegram_failures_say_try_again() {
        let tg = world();
        tg.fail_next(
            Method::GetChatMember,
            TelegramError::Server {
                code: 502,
                description: "Bad Gateway".into(),
            },
        );
        let problems = run(&tg, Some(ADMIN), &["@news_channel"])
            .await
            .expect_err("Telegram down");
        assert!(matches!(
            problems.problems(),
            [SetupProblem::Telegram { .. }]
        ));
        assert!(problems.to_string().contains("Try again"));
    }

    #[tokio::test]
    async fn invite_link_failure_is_reported() {
        let tg = world();
        tg.fail_next(
            Method::CreateInviteLink,
            TelegramError::NotEnoughRights("not enough rights to manage chat invite link".into()),
        );
        let problems = run(&tg, Some(ADMIN), &["-100300"])
            .await
            .expect_err("link failed");
        assert!(matches!(
            problems.problems(),
            [SetupProblem::InviteLinkFailed { .. }]
        ));
    }

    #[tokio::test]
    async fn diagnose_lists_what_is_missing_for_stored_channels() {
        let tg = world();
        let plan = run(&tg, Some(ADMIN), &["@news_channel", "-100300"])
            .await
            .expect("passes");
        assert!(diagnose(&tg, DEFAULT_BOT_ID, GROUP, &plan.channels)
            .await
            .is_empty());
        let tg = tg.set_bot_channel_admin(PRIVATE, false);
        let found = diagnose(&tg, DEFAULT_BOT_ID, GROUP, &plan.channels).await;
        assert_eq!(
            found,
            vec![SetupProblem::BotNotChannelAdmin {
                channel: "“Secret” (-100300)".into()
            }]
        );
        // The stored link is enough: no new one is created.
        assert_eq!(tg.invite_links().len(), 1);
    }
}
