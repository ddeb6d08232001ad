//! `sendMessage`, `deleteMessage`, `editMessageText`, with Telegram's checks on text length,
//! HTML markup and inline keyboards (`callback_data` is 1–64 bytes).

use serde_json::Value;

use gmbot_core::domain::{MessageId, UserId};

use super::super::api_error::ApiError;
use super::super::chat::{ChatKind, SimButton, SimChat, SimMessage};
use super::super::html;
use super::super::member::MemberState;
use super::super::params::{ChatRef, Params};
use super::super::render;
use super::super::world::{now, World};

/// Telegram's limit on message text, in UTF-16 code units after entity parsing.
const MAX_TEXT: usize = 4096;

/// Resolves a chat the bot may post in. A private chat needs the user to have started the
/// bot, or a join request of theirs sent less than 5 minutes ago and not yet answered (Bot
/// API `ChatJoinRequest.user_chat_id`); the chat is opened on the bot's first message then.
fn writable_chat(world: &mut World, chat_ref: &ChatRef) -> Result<i64, ApiError> {
    if let ChatRef::Id(id) = chat_ref {
        if *id > 0 {
            if !world.users.contains_key(id) {
                return Err(ApiError::chat_not_found());
            }
            if !world.may_message_privately(*id) {
                return Err(ApiError::forbidden(
                    "bot can't initiate conversation with a user",
                ));
            }
            if !world.chats.contains_key(id) {
                let user = world.user_or_placeholder(*id);
                let mut chat = SimChat::new(
                    *id,
                    ChatKind::Private,
                    &user.first_name,
                    user.username.as_deref(),
                );
                chat.members.insert(*id, MemberState::Member);
                chat.members.insert(world.bot_id(), MemberState::Member);
                world.chats.insert(*id, chat);
            }
        }
    }
    let id = world.resolve_joined(chat_ref)?;
    let chat = world.chat(id)?;
    match (chat.kind, chat.member(world.bot_id(), now())) {
        (ChatKind::Channel, state) => {
            if state.rights().is_some_and(|r| r.can_post_messages) {
                Ok(id)
            } else {
                Err(ApiError::bad_request(
                    "need administrator rights in the channel chat",
                ))
            }
        }
        (_, MemberState::Restricted { permissions, .. }) if !permissions.can_send_messages => Err(
            ApiError::bad_request("not enough rights to send text messages to the chat"),
        ),
        _ => Ok(id),
    }
}

/// Text as users will see it, after checking markup and length.
fn plain_text(p: &Params) -> Result<(String, Option<String>), ApiError> {
    let text = p
        .string("text")
        .ok_or_else(|| ApiError::bad_request("message text is empty"))?;
    let (plain, html) = match p.string("parse_mode").as_deref() {
        None => (text, None),
        Some(m) if m.eq_ignore_ascii_case("html") => (
            html::to_plain(&text).map_err(ApiError::bad_request)?,
            Some(text),
        ),
        Some(m) if m.eq_ignore_ascii_case("markdown") || m.eq_ignore_ascii_case("markdownv2") => {
            (text, None)
        }
        Some(_) => return Err(ApiError::bad_request("unsupported parse_mode")),
    };
    if plain.trim().is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    if plain.encode_utf16().count() > MAX_TEXT {
        return Err(ApiError::bad_request("message is too long"));
    }
    Ok((plain, html))
}

fn button(v: &Value) -> Result<SimButton, ApiError> {
    let bad =
        |what: &str| ApiError::bad_request(format!("can't parse inline keyboard button: {what}"));
    let text = v
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Field \"text\" must be of type String"))?;
    let url = v.get("url").and_then(Value::as_str).map(str::to_owned);
    let data = v
        .get("callback_data")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(d) = &data {
        if d.is_empty() || d.len() > 64 {
            return Err(ApiError::bad_request("BUTTON_DATA_INVALID"));
        }
    }
    if let Some(u) = &url {
        let ok = url::Url::parse(u)
            .map(|u| matches!(u.scheme(), "http" | "https" | "tg"))
            .unwrap_or(false);
        if !ok {
            return Err(ApiError::bad_request("BUTTON_URL_INVALID"));
        }
    }
    if url.is_none() && data.is_none() {
        return Err(bad("Text buttons are unallowed in the inline keyboard"));
    }
    Ok(SimButton {
        text: text.to_owned(),
        url,
        callback_data: data,
    })
}

/// The inline keyboard of `reply_markup`; other keyboard kinds carry no buttons here.
fn keyboard(p: &Params) -> Result<Vec<Vec<SimButton>>, ApiError> {
    let Some(markup) = p.json("reply_markup")? else {
        return Ok(Vec::new());
    };
    let Some(rows) = markup.get("inline_keyboard") else {
        return Ok(Vec::new());
    };
    let rows = rows
        .as_array()
        .ok_or_else(|| ApiError::bad_request("field \"inline_keyboard\" must be an Array"))?;
    rows.iter()
        .map(|row| {
            row.as_array()
                .ok_or_else(|| ApiError::bad_request("can't parse inline keyboard row"))?
                .iter()
                .map(button)
                .collect()
        })
        .collect()
}

fn reply_target(p: &Params) -> Result<(Option<i64>, bool), ApiError> {
    let reply = p.json("reply_parameters")?;
    let from_params = reply
        .as_ref()
        .and_then(|r| r.get("message_id"))
        .and_then(Value::as_i64);
    let allow = reply
        .as_ref()
        .and_then(|r| r.get("allow_sending_without_reply"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || p.flag("allow_sending_without_reply")?.unwrap_or(false);
    Ok((from_params.or(p.int("reply_to_message_id")?), allow))
}

pub(super) fn send_message(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let id = writable_chat(world, &p.chat("chat_id")?)?;
    let (plain, html) = plain_text(p)?;
    let buttons = keyboard(p)?;
    let (reply_to, allow_without) = reply_target(p)?;
    let silent = p.flag("disable_notification")?.unwrap_or(false);
    let bot = world.bot.id;
    if p.json("ephemeral_message_parameters")?.is_some() {
        let mut msg = SimMessage::text(MessageId(0), Some(bot), &plain, now());
        msg.html = html.clone();
        msg.buttons = buttons.clone();
        msg.silent = silent;
        if let Some(answer) = super::super::join_requests::send_ephemeral(world, id, p, msg)? {
            return Ok(answer);
        }
    }
    let chat = world.chat_mut(id)?;
    let reply_to = match reply_to {
        Some(r) if chat.messages.get(&r).is_some_and(|m| !m.deleted) => Some(MessageId(r)),
        Some(_) if !allow_without => {
            return Err(ApiError::bad_request("message to be replied not found"))
        }
        _ => None,
    };
    let mid = chat.next_id();
    let from = (chat.kind != ChatKind::Channel).then_some(bot);
    let mut msg = SimMessage::text(mid, from, &plain, now());
    msg.html = html;
    msg.buttons = buttons;
    msg.reply_to = reply_to;
    msg.silent = silent;
    if chat.kind == ChatKind::Channel {
        msg.sender_chat = Some(id);
    }
    chat.push(msg.clone());
    let chat = world.chat(id)?;
    super::to_json(&render::message(world, chat, &msg))
}

/// `deleteMessages`: 1–100 ids of one chat; ids already gone are skipped, as in Telegram.
pub(super) fn delete_messages(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let id = world.resolve_joined(&p.chat("chat_id")?)?;
    let ids: Vec<i64> = p
        .typed("message_ids")?
        .ok_or_else(|| ApiError::bad_request("message_ids is empty"))?;
    if ids.is_empty() || ids.len() > 100 {
        return Err(ApiError::bad_request(
            "message_ids must contain 1-100 identifiers",
        ));
    }
    let mut deleted = 0;
    for mid in ids {
        match delete_one(world, id, mid) {
            Ok(()) => deleted += 1,
            Err(e) if e.description.ends_with("message to delete not found") => {}
            Err(e) => return Err(e),
        }
    }
    if deleted == 0 {
        return Err(ApiError::bad_request("message to delete not found"));
    }
    Ok(Value::Bool(true))
}

pub(super) fn delete_message(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let id = world.resolve_joined(&p.chat("chat_id")?)?;
    let mid = p.req_int("message_id")?;
    delete_one(world, id, mid)?;
    Ok(Value::Bool(true))
}

fn delete_one(world: &mut World, id: i64, mid: i64) -> Result<(), ApiError> {
    let bot = world.bot.id;
    let bot_state = world.chat(id)?.member(bot.0, now());
    let chat = world.chat_mut(id)?;
    let kind = chat.kind;
    let msg = chat
        .messages
        .get_mut(&mid)
        .filter(|m| !m.deleted)
        .ok_or_else(|| ApiError::bad_request("message to delete not found"))?;
    let own = msg.from == Some(bot) || (kind == ChatKind::Channel && msg.from.is_none());
    let may_delete = own
        || kind == ChatKind::Private
        || bot_state.rights().is_some_and(|r| r.can_delete_messages);
    if !may_delete {
        return Err(ApiError::bad_request("message can't be deleted"));
    }
    msg.deleted = true;
    Ok(())
}

pub(super) fn edit_message_text(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let id = world.resolve_joined(&p.chat("chat_id")?)?;
    let mid = p.req_int("message_id")?;
    let (plain, html) = plain_text(p)?;
    // Omitting reply_markup removes the inline keyboard, as in Telegram.
    let buttons = keyboard(p)?;
    let bot: UserId = world.bot.id;
    let chat = world.chat_mut(id)?;
    let kind = chat.kind;
    let msg = chat
        .messages
        .get_mut(&mid)
        .filter(|m| !m.deleted)
        .ok_or_else(|| ApiError::bad_request("message to edit not found"))?;
    let own = msg.from == Some(bot) || (kind == ChatKind::Channel && msg.from.is_none());
    if !own {
        return Err(ApiError::bad_request("message can't be edited"));
    }
    if msg.text == plain && msg.html == html && msg.buttons == buttons {
        return Err(ApiError::bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    msg.text = plain;
    msg.html = html;
    msg.buttons = buttons;
    msg.edited = true;
    let msg = msg.clone();
    let chat = world.chat(id)?;
    super::to_json(&render::message(world, chat, &msg))
}
