//! Who sent a command: a group administrator (named or anonymous) or anybody else.

use gmbot_core::domain::{ChatId, GroupId, UserId};
use gmbot_core::telegram::{OutgoingMessage, TelegramError};

use crate::app::App;
use crate::update::{ChatKind, Message};

/// The sender of a command in a group, as far as admin commands are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An administrator or the creator of the group. `None`: an anonymous
    /// admin posting as the group (Telegram hides who it is).
    Admin(Option<UserId>),
    /// Anybody else, or a channel posting in the group.
    Other,
}

/// The group a message was sent in, if it was sent in a group.
pub(crate) fn group_of(msg: &Message) -> Option<GroupId> {
    msg.chat.is_group().then(|| GroupId(msg.chat.id.get()))
}

/// Whether the message came from a private chat with the bot.
pub(crate) fn is_private(msg: &Message) -> bool {
    msg.chat.kind == ChatKind::Private
}

/// Asks Telegram (not a cache: a demoted admin must lose access at once)
/// whether the sender of `msg` administers `group`.
pub(crate) async fn role(app: &App, msg: &Message, group: GroupId) -> Result<Role, TelegramError> {
    if let Some(sender_chat) = &msg.sender_chat {
        // Only administrators can post as the group itself (`sender_chat` = the
        // group, `from` = GroupAnonymousBot); a channel posting here is nobody's admin.
        return Ok(if sender_chat.id == msg.chat.id {
            Role::Admin(None)
        } else {
            Role::Other
        });
    }
    let Some(from) = &msg.from else {
        return Ok(Role::Other);
    };
    is_admin(app, group, from.id).await.map(|admin| {
        if admin {
            Role::Admin(Some(from.id))
        } else {
            Role::Other
        }
    })
}

/// Whether `user` is the creator or an administrator of `group`, asked fresh.
pub(crate) async fn is_admin(
    app: &App,
    group: GroupId,
    user: UserId,
) -> Result<bool, TelegramError> {
    match app.telegram().get_chat_member(group.into(), user).await {
        Ok(status) => Ok(status.is_admin()),
        // Unknown to the group: certainly not its admin.
        Err(TelegramError::UserNotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Logs a refused command (never answered in public).
pub(crate) fn log_refused(msg: &Message, command: &str) {
    log::info!(
        group_id = msg.chat.id.get(),
        user_id = msg.from.as_ref().map_or(0, |u| u.id.get()),
        command = command;
        "admin command from a non-admin ignored"
    );
}

/// The common entry of every admin command: in private, explains how to use
/// `command` in a group; in a group, lets only administrators through
/// (others are ignored and logged). Returns the group and the admin, if named.
pub(crate) async fn admin_gate(
    app: &App,
    msg: &Message,
    command: &str,
    usage: &str,
) -> Result<Option<(GroupId, Option<UserId>)>, crate::handlers::HandleError> {
    if is_private(msg) {
        let html = format!(
            "/{command} works in a group: add me to your group as an administrator, then send <code>{usage}</code> there. /help explains the setup."
        );
        super::reply::reply_text(app, msg, html).await?;
        return Ok(None);
    }
    let Some(group) = group_of(msg) else {
        return Ok(None);
    };
    match role(app, msg, group).await? {
        Role::Admin(user) => Ok(Some((group, user))),
        Role::Other => {
            log_refused(msg, command);
            Ok(None)
        }
    }
}

/// Whether `user` may change what the bot does to members of `group`: its creator, or an
/// administrator with `can_restrict_members` ("Ban users"). Asked fresh, like [`is_admin`].
pub(crate) async fn can_restrict(
    app: &App,
    group: GroupId,
    user: UserId,
) -> Result<bool, TelegramError> {
    let admins = app.telegram().get_chat_administrators(group.into()).await?;
    Ok(admins
        .iter()
        .any(|a| a.user == user && (a.is_creator || a.can_restrict_members)))
}

/// The gate of the commands that change enforcement (`/unprotect`, `/settings`): past
/// [`admin_gate`], only the creator or an admin with "Ban users" — the right those
/// commands exercise (lifting every mute, choosing mute or kick). Other admins get a
/// short private answer, never a public one. An anonymous admin passes: Telegram hides who
/// posts as the group, and only admins can.
pub(crate) async fn restrict_gate(
    app: &App,
    msg: &Message,
    command: &str,
    usage: &str,
) -> Result<Option<(GroupId, Option<UserId>)>, crate::handlers::HandleError> {
    let Some((group, admin)) = admin_gate(app, msg, command, usage).await? else {
        return Ok(None);
    };
    let Some(user) = admin else {
        return Ok(Some((group, None)));
    };
    if can_restrict(app, group, user).await? {
        return Ok(Some((group, Some(user))));
    }
    log_refused(msg, command);
    let title = msg.chat.title.as_deref().unwrap_or("this group");
    let html = format!(
        "Only the creator of <b>{}</b> or an administrator with the right <i>Ban users</i> can use /{command} there.",
        super::reply::quote(title)
    );
    let private = OutgoingMessage {
        html,
        ..OutgoingMessage::default()
    };
    // A bot can write only to users who started it; for the others Telegram refuses
    // (403), and saying nothing is the right answer.
    if let Err(e) = app
        .telegram()
        .send_message(ChatId::from(user), &private)
        .await
    {
        log::debug!(user_id = user.get(), error:display = e; "could not answer a refused command in private");
    }
    Ok(None)
}
