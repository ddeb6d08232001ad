//! The simulator's state rendered as Bot API objects. Rendering goes through the typed
//! structs of the `frankenstein` crate so every answer has Telegram's exact field set.

use frankenstein::gifts::AcceptedGiftTypes;
use frankenstein::types::{
    Chat, ChatFullInfo, ChatMember, ChatMemberAdministrator, ChatMemberBanned, ChatMemberLeft,
    ChatMemberMember, ChatMemberOwner, ChatMemberRestricted, ChatType, InlineKeyboardButton,
    InlineKeyboardMarkup, Message, User,
};

use super::chat::{ChatKind, MessageKind, SimChat, SimMessage, SimUser};
use super::member::MemberState;
use super::world::World;

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn user(u: &SimUser) -> User {
    User::builder()
        .id(unsigned(u.id.0))
        .is_bot(u.is_bot)
        .first_name(u.first_name.as_str())
        .maybe_last_name(u.last_name.clone())
        .maybe_username(u.username.clone())
        .build()
}

/// `getMe`: the bot with its capabilities.
pub(crate) fn me(u: &SimUser) -> User {
    User {
        can_join_groups: Some(true),
        can_read_all_group_messages: Some(false),
        supports_inline_queries: Some(false),
        ..user(u)
    }
}

fn chat_type(kind: ChatKind) -> ChatType {
    match kind {
        ChatKind::Private => ChatType::Private,
        ChatKind::Group => ChatType::Group,
        ChatKind::Supergroup => ChatType::Supergroup,
        ChatKind::Channel => ChatType::Channel,
    }
}

pub(crate) fn chat(c: &SimChat) -> Chat {
    let private = c.kind == ChatKind::Private;
    Chat::builder()
        .id(c.id)
        .type_field(chat_type(c.kind))
        .maybe_title((!private).then(|| c.title.clone()))
        .maybe_first_name(private.then(|| c.title.clone()))
        .maybe_username(c.username.clone())
        .build()
}

pub(crate) fn chat_full(c: &SimChat) -> ChatFullInfo {
    let private = c.kind == ChatKind::Private;
    ChatFullInfo::builder()
        .id(c.id)
        .type_field(chat_type(c.kind))
        .accepted_gift_types(AcceptedGiftTypes {
            unlimited_gifts: false,
            limited_gifts: false,
            unique_gifts: false,
            premium_subscription: false,
            gifts_from_channels: false,
        })
        .maybe_title((!private).then(|| c.title.clone()))
        .maybe_first_name(private.then(|| c.title.clone()))
        .maybe_username(c.username.clone())
        .maybe_permissions(c.is_group().then(|| c.default_permissions.to_api()))
        .max_reaction_count(11)
        .accent_color_id(0)
        .build()
}

pub(crate) fn member(u: &SimUser, state: MemberState) -> ChatMember {
    let user = user(u);
    match state {
        MemberState::Creator { is_anonymous } => ChatMember::Creator(ChatMemberOwner {
            user,
            custom_title: None,
            is_anonymous,
        }),
        MemberState::Administrator(r) => ChatMember::Administrator(ChatMemberAdministrator {
            user,
            can_be_edited: false,
            is_anonymous: r.is_anonymous,
            can_manage_chat: r.can_manage_chat,
            can_delete_messages: r.can_delete_messages,
            can_manage_video_chats: false,
            can_restrict_members: r.can_restrict_members,
            can_promote_members: r.can_promote_members,
            can_change_info: r.can_change_info,
            can_invite_users: r.can_invite_users,
            can_post_messages: Some(r.can_post_messages),
            can_edit_messages: Some(r.can_edit_messages),
            can_pin_messages: Some(r.can_pin_messages),
            can_post_stories: Some(false),
            can_edit_stories: Some(false),
            can_delete_stories: Some(false),
            can_manage_topics: Some(false),
            can_manage_direct_messages: None,
            can_manage_tags: None,
            can_send_welcome_messages: false,
            custom_title: None,
        }),
        MemberState::Member => ChatMember::Member(ChatMemberMember {
            tag: None,
            user,
            until_date: None,
        }),
        MemberState::Restricted {
            is_member,
            permissions: p,
            until,
        } => ChatMember::Restricted(ChatMemberRestricted {
            tag: None,
            user,
            is_member,
            can_send_messages: p.can_send_messages,
            can_send_audios: p.can_send_audios,
            can_send_documents: p.can_send_documents,
            can_send_photos: p.can_send_photos,
            can_send_videos: p.can_send_videos,
            can_send_video_notes: p.can_send_video_notes,
            can_send_voice_notes: p.can_send_voice_notes,
            can_send_polls: p.can_send_polls,
            can_send_other_messages: p.can_send_other_messages,
            can_add_web_page_previews: p.can_add_web_page_previews,
            can_react_to_messages: p.can_react_to_messages,
            can_edit_tag: false,
            can_change_info: p.can_change_info,
            can_invite_users: p.can_invite_users,
            can_pin_messages: p.can_pin_messages,
            can_manage_topics: p.can_manage_topics,
            until_date: unsigned(until),
        }),
        MemberState::Left => ChatMember::Left(ChatMemberLeft { user }),
        MemberState::Kicked { until } => ChatMember::Kicked(ChatMemberBanned {
            user,
            until_date: unsigned(until),
        }),
    }
}

pub(crate) fn keyboard(rows: &[Vec<super::chat::SimButton>]) -> Option<InlineKeyboardMarkup> {
    if rows.is_empty() {
        return None;
    }
    let inline_keyboard = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|b| {
                    InlineKeyboardButton::builder()
                        .text(b.text.as_str())
                        .maybe_url(b.url.clone())
                        .maybe_callback_data(b.callback_data.clone())
                        .build()
                })
                .collect()
        })
        .collect();
    Some(
        InlineKeyboardMarkup::builder()
            .inline_keyboard(inline_keyboard)
            .build(),
    )
}

pub(crate) fn message(world: &World, c: &SimChat, m: &SimMessage) -> Message {
    let from = m.from.map(|u| user(&world.user_or_placeholder(u.0)));
    let sender_chat = m.sender_chat.and_then(|id| world.chats.get(&id)).map(chat);
    let reply = m.reply_to.and_then(|r| c.messages.get(&r.0)).map(|r| {
        Box::new(message(
            world,
            c,
            &SimMessage {
                reply_to: None,
                ..r.clone()
            },
        ))
    });
    let (new_members, left, migrate_to, migrate_from) = match &m.kind {
        MessageKind::Text => (None, None, None, None),
        MessageKind::NewMembers(ids) => (
            Some(
                ids.iter()
                    .map(|u| user(&world.user_or_placeholder(u.0)))
                    .collect(),
            ),
            None,
            None,
            None,
        ),
        MessageKind::LeftMember(u) => (
            None,
            Some(Box::new(user(&world.user_or_placeholder(u.0)))),
            None,
            None,
        ),
        MessageKind::MigrateTo(id) => (None, None, Some(*id), None),
        MessageKind::MigrateFrom(id) => (None, None, None, Some(*id)),
    };
    Message::builder()
        .message_id(i32::try_from(m.id.0).unwrap_or(i32::MAX))
        .date(unsigned(m.date))
        .chat(Box::new(chat(c)))
        .maybe_from(from.map(Box::new))
        .maybe_sender_chat(sender_chat.map(Box::new))
        .maybe_text((m.kind == MessageKind::Text).then(|| m.text.clone()))
        .maybe_is_automatic_forward(m.is_automatic_forward.then_some(true))
        .maybe_reply_to_message(reply)
        .maybe_new_chat_members(new_members)
        .maybe_left_chat_member(left)
        .maybe_migrate_to_chat_id(migrate_to)
        .maybe_migrate_from_chat_id(migrate_from)
        .maybe_reply_markup(keyboard(&m.buttons).map(Box::new))
        .maybe_edit_date(m.edited.then_some(unsigned(m.date)))
        .build()
}
