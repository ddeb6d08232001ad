//! Conversion of the Bot API's updates (decoded by [`super::lenient`]) into the
//! transport-neutral [`crate::update::Update`] the handlers see.
//!
//! Total by construction: every input maps to some update, never a panic. Ids Telegram sends as
//! unsigned (`User.id`, `update_id`) are converted with a saturating fallback (a user id above
//! `i64::MAX` cannot exist, but input is input). Kinds GMBot does not handle become
//! [`UpdateKind::Other`] with a bounded name, so they are still counted and logged; so does a
//! member update whose status is newer than this version (`Other("chat_member")`): it is no
//! evidence of a join or a leave.

use super::lenient::{
    Chat as TgChat, ChatMemberUpdated, ChatType, Message as TgMessage, Update as TgUpdate,
    UpdateContent, User as TgUser,
};

use gmbot_core::domain::{ChatId, MessageId, UnixTime, UserId};

use super::{chat_admin, member_status};
use crate::update::{
    CallbackQuery, Chat, ChatKind, ChatMemberUpdate, JoinRequest, Message, Update, UpdateKind, User,
};

/// Converts one Bot API update.
pub fn update(u: TgUpdate) -> Update {
    let id = u.update_id;
    let kind = match u.content {
        UpdateContent::Message(m) => UpdateKind::Message(message(&m)),
        UpdateContent::EditedMessage(m) => UpdateKind::EditedMessage(message(&m)),
        UpdateContent::CallbackQuery(q) => UpdateKind::CallbackQuery(CallbackQuery {
            id: q.id,
            from: user(&q.from),
            message: q
                .message
                .as_ref()
                .map(|m| (ChatId(m.chat.id), MessageId(m.message_id))),
            data: q.data,
        }),
        UpdateContent::ChatMember(c) => {
            member_update(&c).map_or(UpdateKind::Other("chat_member"), UpdateKind::ChatMember)
        }
        UpdateContent::MyChatMember(c) => member_update(&c).map_or(
            UpdateKind::Other("my_chat_member"),
            UpdateKind::MyChatMember,
        ),
        UpdateContent::ChatJoinRequest(r) => UpdateKind::ChatJoinRequest(JoinRequest {
            chat: chat(&r.chat),
            from: user(&r.from),
            user_chat: ChatId(r.user_chat_id),
            date: time(r.date),
            query_id: r.query_id,
        }),
        other => UpdateKind::Other(other_name(&other)),
    };
    Update { id, kind }
}

/// Parses a webhook body (one JSON update) and converts it.
pub fn from_json(body: &[u8]) -> Result<Update, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    TgUpdate::from_value(value).map(update)
}

/// The `allowed_updates` name of a kind GMBot does not handle (a closed set: metrics labels).
fn other_name(content: &UpdateContent) -> &'static str {
    match content {
        UpdateContent::Message(_) => "message",
        UpdateContent::EditedMessage(_) => "edited_message",
        UpdateContent::CallbackQuery(_) => "callback_query",
        UpdateContent::ChatMember(_) => "chat_member",
        UpdateContent::MyChatMember(_) => "my_chat_member",
        UpdateContent::ChatJoinRequest(_) => "chat_join_request",
        UpdateContent::Other(name) => name,
    }
}

fn user_id(raw: u64) -> UserId {
    UserId(i64::try_from(raw).unwrap_or(i64::MAX))
}

fn time(secs: u64) -> UnixTime {
    UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Converts a user.
pub fn user(u: &TgUser) -> User {
    User {
        id: user_id(u.id),
        is_bot: u.is_bot,
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        username: u.username.clone(),
    }
}

/// Converts a chat.
pub fn chat(c: &TgChat) -> Chat {
    Chat {
        id: ChatId(c.id),
        kind: match c.type_field {
            ChatType::Private => ChatKind::Private,
            ChatType::Group => ChatKind::Group,
            ChatType::Supergroup => ChatKind::Supergroup,
            ChatType::Channel => ChatKind::Channel,
            ChatType::Other(_) => ChatKind::Other,
        },
        title: c.title.clone(),
        username: c.username.clone(),
    }
}

/// Converts a message (text or caption; service fields for joins, leaves and migrations).
pub fn message(m: &TgMessage) -> Message {
    Message {
        chat: chat(&m.chat),
        id: MessageId(m.message_id),
        date: time(m.date),
        from: m.from.as_ref().map(user),
        sender_chat: m.sender_chat.as_ref().map(chat),
        is_automatic_forward: m.is_automatic_forward.unwrap_or(false),
        text: m.text.clone().or_else(|| m.caption.clone()),
        new_chat_members: m
            .new_chat_members
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(user)
            .collect(),
        left_chat_member: m.left_chat_member.as_ref().map(user),
        migrate_to_chat_id: m.migrate_to_chat_id.map(ChatId),
        migrate_from_chat_id: m.migrate_from_chat_id.map(ChatId),
    }
}

/// `None` when either status is newer than this version.
fn member_update(c: &ChatMemberUpdated) -> Option<ChatMemberUpdate> {
    Some(ChatMemberUpdate {
        chat: chat(&c.chat),
        actor: user(&c.from),
        date: time(c.date),
        user: user(c.new_chat_member.user()?),
        old: member_status(&c.old_chat_member)?,
        new: member_status(&c.new_chat_member)?,
        new_rights: chat_admin(&c.new_chat_member),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmbot_core::domain::ChatMemberStatus;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Update {
        from_json(v.to_string().as_bytes()).expect("valid update")
    }

    fn group() -> serde_json::Value {
        json!({"id": -1001, "type": "supergroup", "title": "G <b>"})
    }

    #[test]
    fn text_message() {
        let u = parse(json!({
            "update_id": 7,
            "message": {
                "message_id": 42, "date": 1700000000, "chat": group(),
                "from": {"id": 5, "is_bot": false, "first_name": "A<", "last_name": "B", "username": "ab"},
                "text": "hello"
            }
        }));
        assert_eq!(u.id, 7);
        let UpdateKind::Message(m) = u.kind else {
            panic!("not a message: {u:?}")
        };
        assert_eq!(m.chat.id, ChatId(-1001));
        assert_eq!(m.chat.kind, ChatKind::Supergroup);
        assert_eq!(m.id, MessageId(42));
        assert_eq!(m.date, UnixTime(1_700_000_000));
        let from = m.from.expect("from");
        assert_eq!(from.id, UserId(5));
        assert_eq!(from.display_name(), "A< B");
        assert_eq!(m.text.as_deref(), Some("hello"));
        assert!(!m.is_automatic_forward && m.sender_chat.is_none());
        assert!(m.new_chat_members.is_empty() && m.left_chat_member.is_none());
    }

    #[test]
    fn caption_sender_chat_and_automatic_forward() {
        let u = parse(json!({
            "update_id": 8,
            "message": {
                "message_id": 1, "date": 1, "chat": group(),
                "from": {"id": 777000, "is_bot": false, "first_name": "Telegram"},
                "sender_chat": {"id": -1002, "type": "channel", "title": "News", "username": "news"},
                "is_automatic_forward": true,
                "caption": "photo caption"
            }
        }));
        let UpdateKind::Message(m) = u.kind else {
            panic!("not a message")
        };
        assert!(m.is_automatic_forward);
        let sc = m.sender_chat.expect("sender_chat");
        assert_eq!(
            (sc.id, sc.kind, sc.username.as_deref()),
            (ChatId(-1002), ChatKind::Channel, Some("news"))
        );
        assert_eq!(m.text.as_deref(), Some("photo caption"));
    }

    #[test]
    fn service_messages() {
        let joined = parse(json!({
            "update_id": 9,
            "message": {
                "message_id": 2, "date": 1, "chat": group(),
                "from": {"id": 6, "is_bot": false, "first_name": "C"},
                "new_chat_members": [
                    {"id": 6, "is_bot": false, "first_name": "C"},
                    {"id": 7, "is_bot": true, "first_name": "D"}
                ]
            }
        }));
        let UpdateKind::Message(m) = joined.kind else {
            panic!("not a message")
        };
        assert_eq!(
            m.new_chat_members.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![UserId(6), UserId(7)]
        );
        assert!(m.new_chat_members[1].is_bot);

        let left = parse(json!({
            "update_id": 10,
            "message": {
                "message_id": 3, "date": 1, "chat": group(),
                "left_chat_member": {"id": 6, "is_bot": false, "first_name": "C"}
            }
        }));
        let UpdateKind::Message(m) = left.kind else {
            panic!("not a message")
        };
        assert_eq!(m.left_chat_member.map(|u| u.id), Some(UserId(6)));
        assert!(m.from.is_none());

        let migrated = parse(json!({
            "update_id": 11,
            "message": {
                "message_id": 4, "date": 1, "chat": {"id": -55, "type": "group", "title": "old"},
                "migrate_to_chat_id": -1009
            }
        }));
        let UpdateKind::Message(m) = migrated.kind else {
            panic!("not a message")
        };
        assert_eq!(m.chat.kind, ChatKind::Group);
        assert_eq!(m.migrate_to_chat_id, Some(ChatId(-1009)));
        let from = parse(json!({
            "update_id": 12,
            "message": {
                "message_id": 1, "date": 1, "chat": group(), "migrate_from_chat_id": -55
            }
        }));
        let UpdateKind::Message(m) = from.kind else {
            panic!("not a message")
        };
        assert_eq!(m.migrate_from_chat_id, Some(ChatId(-55)));
    }

    #[test]
    fn callback_query_accessible_and_not() {
        let u = parse(json!({
            "update_id": 13,
            "callback_query": {
                "id": "cb1", "chat_instance": "x", "data": "j:5",
                "from": {"id": 5, "is_bot": false, "first_name": "A"},
                "message": {"message_id": 77, "date": 1, "chat": group(), "text": "warning"}
            }
        }));
        let UpdateKind::CallbackQuery(q) = u.kind else {
            panic!("not a callback")
        };
        assert_eq!(q.id, "cb1");
        assert_eq!(q.from.id, UserId(5));
        assert_eq!(q.data.as_deref(), Some("j:5"));
        assert_eq!(q.message, Some((ChatId(-1001), MessageId(77))));

        let old = parse(json!({
            "update_id": 14,
            "callback_query": {
                "id": "cb2", "chat_instance": "x",
                "from": {"id": 5, "is_bot": false, "first_name": "A"},
                "message": {"message_id": 78, "date": 0, "chat": group()}
            }
        }));
        let UpdateKind::CallbackQuery(q) = old.kind else {
            panic!("not a callback")
        };
        assert_eq!(q.message, Some((ChatId(-1001), MessageId(78))));
        assert!(q.data.is_none());
    }

    #[test]
    fn chat_member_and_my_chat_member_with_rights() {
        let u = parse(json!({
            "update_id": 15,
            "chat_member": {
                "chat": {"id": -1002, "type": "channel", "title": "News"},
                "from": {"id": 6, "is_bot": false, "first_name": "C"},
                "date": 5,
                "old_chat_member": {"status": "left", "user": {"id": 6, "is_bot": false, "first_name": "C"}},
                "new_chat_member": {"status": "member", "user": {"id": 6, "is_bot": false, "first_name": "C"}}
            }
        }));
        let UpdateKind::ChatMember(c) = u.kind else {
            panic!("not chat_member")
        };
        assert!(c.joined() && !c.left());
        assert_eq!(c.user.id, UserId(6));
        assert_eq!(c.chat.kind, ChatKind::Channel);
        assert!(c.new_rights.is_none());

        let admin = json!({
            "status": "administrator", "user": {"id": 99, "is_bot": true, "first_name": "GMBot"},
            "can_be_edited": false, "is_anonymous": false, "can_manage_chat": true,
            "can_delete_messages": true, "can_manage_video_chats": false,
            "can_restrict_members": false, "can_promote_members": false,
            "can_change_info": false, "can_invite_users": true,
            "can_post_stories": false, "can_edit_stories": false, "can_delete_stories": false,
            "can_send_welcome_messages": false
        });
        let u = parse(json!({
            "update_id": 16,
            "my_chat_member": {
                "chat": group(),
                "from": {"id": 1, "is_bot": false, "first_name": "Owner"},
                "date": 5,
                "old_chat_member": {"status": "member", "user": {"id": 99, "is_bot": true, "first_name": "GMBot"}},
                "new_chat_member": admin
            }
        }));
        let UpdateKind::MyChatMember(c) = u.kind else {
            panic!("not my_chat_member")
        };
        assert_eq!(c.actor.id, UserId(1));
        assert_eq!(c.user.id, UserId(99));
        assert_eq!(c.new, ChatMemberStatus::Administrator);
        let rights = c.new_rights.expect("rights");
        assert!(rights.can_delete_messages && !rights.can_restrict_members);
        assert!(rights.can_invite_users && !rights.is_creator);
    }

    #[test]
    fn edited_messages_convert_like_messages() {
        let u = parse(json!({
            "update_id": 17,
            "edited_message": {
                "message_id": 1, "date": 1, "edit_date": 2, "chat": group(),
                "from": {"id": 5, "is_bot": false, "first_name": "A"},
                "text": "x"
            }
        }));
        assert_eq!(u.kind.name(), "edited_message");
        let UpdateKind::EditedMessage(m) = u.kind else {
            panic!("not an edit: {u:?}")
        };
        assert_eq!(m.id, MessageId(1));
        assert_eq!(m.from.map(|f| f.id), Some(UserId(5)));
        assert_eq!(m.text.as_deref(), Some("x"));
    }

    #[test]
    fn other_kinds_are_named() {
        let u = parse(json!({
            "update_id": 18,
            "channel_post": {"message_id": 1, "date": 1, "chat": {"id": -3, "type": "channel", "title": "c"}, "text": "x"}
        }));
        assert_eq!(u.kind.name(), "channel_post");
    }

    #[test]
    fn odd_input_is_an_error_or_a_value_never_a_panic() {
        for body in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"{\"update_id\": -1, \"message\": {}}",
            b"{\"update_id\": 1}",
            b"{\"update_id\": 1, \"message\": {\"message_id\": 1}}",
            b"\xff\xfe",
        ] {
            assert!(from_json(body).is_err(), "{body:?}");
        }
        // A huge user id converts without panicking.
        let u = parse(json!({
            "update_id": 4294967295u32,
            "message": {
                "message_id": 1, "date": 18446744073709551615u64, "chat": group(),
                "from": {"id": 18446744073709551615u64, "is_bot": false, "first_name": ""}
            }
        }));
        assert_eq!(u.id, 4_294_967_295);
        let UpdateKind::Message(m) = u.kind else {
            panic!("not a message")
        };
        assert_eq!(m.from.map(|f| f.id), Some(UserId(i64::MAX)));
        assert_eq!(m.date, UnixTime(i64::MAX));
    }
}
