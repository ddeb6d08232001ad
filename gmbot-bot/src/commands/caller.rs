//! Who sent a command: a group administrator (named or anonymous) or anybody else.

use gmbot_core::domain::{GroupId, UserId};
use gmbot_core::telegram::TelegramError;

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
