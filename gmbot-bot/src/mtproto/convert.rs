//! The conversion layer between grammers' TL objects and GMBot's types: a
//! `channels.getParticipants` answer as a [`MemberPage`], an MTProto error as a
//! [`TelegramError`] of the kind the dispatcher and the audit act on.
//!
//! Kept free of I/O so tests build TL objects by hand and check every case; the
//! simulated Telegram's member directory sends real TL bytes through the same functions.

use gmbot_core::audit::{DirectoryMember, MemberPage};
use gmbot_core::domain::{ChatMemberStatus, UserId};
use gmbot_core::telegram::{TelegramError, TelegramResult};
use grammers_client::sender::RpcError;
use grammers_client::tl;
use grammers_client::InvocationError;

const GET_PARTICIPANTS: &str = "channels.getParticipants";

/// A `channels.getParticipants` answer as one page of members.
///
/// Left members and banned *peers* that are not users are not members and are dropped,
/// as are deleted accounts (they can never write) and the bot itself. A member banned
/// with `view_messages` is kicked (outside the group); any other banned member is
/// restricted, still a member unless `left` says otherwise. A participant whose user
/// object is missing from the answer is kept as a non-bot.
pub fn member_page(answer: tl::enums::channels::ChannelParticipants) -> TelegramResult<MemberPage> {
    use tl::enums::channels::ChannelParticipants as Answer;
    use tl::enums::ChannelParticipant as P;
    let p = match answer {
        Answer::Participants(p) => p,
        Answer::NotModified => {
            return Err(TelegramError::Decode {
                method: GET_PARTICIPANTS.to_owned(),
                detail: "channels.channelParticipantsNotModified although no hash was sent"
                    .to_owned(),
            })
        }
    };
    let mut users = std::collections::HashMap::with_capacity(p.users.len());
    for u in &p.users {
        if let tl::enums::User::User(u) = u {
            users.insert(u.id, (u.bot, u.deleted));
        }
    }
    let listed = u32::try_from(p.participants.len()).unwrap_or(u32::MAX);
    let mut members = Vec::with_capacity(p.participants.len());
    for participant in p.participants {
        let (id, status) = match participant {
            P::Participant(x) => (x.user_id, ChatMemberStatus::Member),
            // The bot itself: never audited.
            P::ParticipantSelf(_) => continue,
            P::Creator(x) => (x.user_id, ChatMemberStatus::Creator),
            P::Admin(x) if x.is_self => continue,
            P::Admin(x) => (x.user_id, ChatMemberStatus::Administrator),
            P::Banned(x) => {
                let tl::enums::Peer::User(u) = x.peer else {
                    continue;
                };
                let tl::enums::ChatBannedRights::Rights(rights) = x.banned_rights;
                if rights.view_messages {
                    (u.user_id, ChatMemberStatus::Kicked)
                } else {
                    (
                        u.user_id,
                        ChatMemberStatus::Restricted { is_member: !x.left },
                    )
                }
            }
            P::Left(_) => continue,
        };
        if matches!(
            status,
            ChatMemberStatus::Kicked | ChatMemberStatus::Restricted { is_member: false }
        ) {
            continue;
        }
        let (is_bot, deleted) = users.get(&id).copied().unwrap_or((false, false));
        if deleted {
            continue;
        }
        members.push(DirectoryMember {
            user: UserId(id),
            is_bot,
            status,
        });
    }
    Ok(MemberPage {
        total: u32::try_from(p.count).unwrap_or(0),
        listed,
        members,
    })
}

/// The access hash of channel `bare_id` in a `channels.getChannels` answer.
pub fn channel_access_hash(chats: &tl::enums::messages::Chats, bare_id: i64) -> Option<i64> {
    let list = match chats {
        tl::enums::messages::Chats::Chats(c) => &c.chats,
        tl::enums::messages::Chats::Slice(c) => &c.chats,
    };
    list.iter().find_map(|c| match c {
        tl::enums::Chat::Channel(ch) if ch.id == bare_id => ch.access_hash,
        tl::enums::Chat::ChannelForbidden(ch) if ch.id == bare_id => Some(ch.access_hash),
        _ => None,
    })
}

/// An MTProto failure as the kind of Telegram error callers act on.
pub fn invocation_error(e: InvocationError) -> TelegramError {
    match e {
        InvocationError::Rpc(rpc) => rpc_error(&rpc),
        // The connection broke or the pool's runner is gone: the next call reconnects.
        InvocationError::Io(e) => TelegramError::Network(format!("MTProto connection: {e}")),
        InvocationError::Transport(e) => TelegramError::Network(format!("MTProto transport: {e}")),
        InvocationError::Dropped(why) => {
            TelegramError::Network(format!("MTProto request dropped: {why}"))
        }
        InvocationError::Authentication(e) => {
            TelegramError::Network(format!("MTProto key exchange failed: {e}"))
        }
        InvocationError::Deserialize(e) => TelegramError::Decode {
            method: "MTProto".to_owned(),
            detail: e.to_string(),
        },
        InvocationError::InvalidDc => {
            TelegramError::BadRequest("MTProto: a data centre the session does not know".to_owned())
        }
        InvocationError::Session(e) => {
            TelegramError::Network(format!("MTProto session storage failed: {e}"))
        }
    }
}

/// An RPC error (`code`, `NAME_X`) as a Telegram error. `FLOOD_WAIT_X` (420) waits `X` seconds.
pub fn rpc_error(rpc: &RpcError) -> TelegramError {
    let name = rpc.name.as_str();
    if rpc.code == 420 || matches!(name, "FLOOD_WAIT" | "FLOOD_PREMIUM_WAIT" | "SLOWMODE_WAIT") {
        let secs = rpc.value.unwrap_or(1).max(1);
        return TelegramError::RetryAfter {
            retry_after: std::time::Duration::from_secs(u64::from(secs)),
        };
    }
    let text = match rpc.value {
        Some(v) => format!("{name} ({v})"),
        None => name.to_owned(),
    };
    match rpc.code {
        401 => TelegramError::Forbidden(format!("{text}: the bot is not signed in to MTProto")),
        // *_MIGRATE_X: the call belongs to another data centre; asking again after the
        // session moved home succeeds.
        303 => TelegramError::Network(format!("{text}: asked to use another data centre")),
        c if !(0..500).contains(&c) => TelegramError::Server {
            code: u16::try_from(c.unsigned_abs()).unwrap_or(500),
            description: text,
        },
        _ => match name {
            "CHAT_ADMIN_REQUIRED" | "CHAT_WRITE_FORBIDDEN" | "RIGHT_FORBIDDEN" => {
                TelegramError::NotEnoughRights(text)
            }
            "CHANNEL_INVALID"
            | "CHANNEL_PRIVATE"
            | "CHAT_ID_INVALID"
            | "PEER_ID_INVALID"
            | "CHANNEL_PUBLIC_GROUP_NA" => TelegramError::ChatNotFound(text),
            "USER_NOT_PARTICIPANT" | "PARTICIPANT_ID_INVALID" | "USER_ID_INVALID" => {
                TelegramError::UserNotFound(text)
            }
            "USER_BANNED_IN_CHANNEL" | "USER_DEACTIVATED" | "AUTH_KEY_UNREGISTERED" => {
                TelegramError::Forbidden(text)
            }
            _ => TelegramError::BadRequest(text),
        },
    }
}

/// A `user` TL object with the given fields and every other flag off (the simulator's
/// answers, tests). Fields that share a flag bit with another are set together, or the
/// bytes would not decode.
pub fn tl_user(
    id: i64,
    first_name: &str,
    last_name: Option<&str>,
    username: Option<&str>,
    bot: bool,
) -> tl::types::User {
    tl::types::User {
        is_self: false,
        contact: false,
        mutual_contact: false,
        deleted: false,
        bot,
        bot_chat_history: false,
        bot_nochats: false,
        verified: false,
        restricted: false,
        min: false,
        bot_inline_geo: false,
        support: false,
        scam: false,
        apply_min_photo: false,
        fake: false,
        bot_attach_menu: false,
        premium: false,
        attach_menu_enabled: false,
        bot_can_edit: false,
        close_friend: false,
        stories_hidden: false,
        stories_unavailable: false,
        contact_require_premium: false,
        bot_business: false,
        bot_has_main_app: false,
        bot_forum_view: false,
        bot_forum_can_manage_topics: false,
        bot_can_manage_bots: false,
        bot_guestchat: false,
        bot_guard: false,
        id,
        access_hash: Some(id.wrapping_mul(0x5DEE_CE66D)),
        first_name: Some(first_name.to_owned()),
        last_name: last_name.map(str::to_owned),
        username: username.map(str::to_owned),
        phone: None,
        photo: None,
        status: None,
        // `bot` and `bot_info_version` share flag bit 14 in the schema: both or neither.
        bot_info_version: bot.then_some(1),
        restriction_reason: None,
        bot_inline_placeholder: None,
        lang_code: None,
        emoji_status: None,
        usernames: None,
        stories_max_id: None,
        color: None,
        profile_color: None,
        bot_active_users: None,
        bot_verification_icon: None,
        send_paid_messages_stars: None,
        linked_community_id: None,
    }
}

/// Admin rights with every right on (the owner's, in the simulator's answers and tests).
pub fn tl_full_admin_rights() -> tl::enums::ChatAdminRights {
    tl::enums::ChatAdminRights::Rights(tl::types::ChatAdminRights {
        change_info: true,
        post_messages: true,
        edit_messages: true,
        delete_messages: true,
        ban_users: true,
        invite_users: true,
        pin_messages: true,
        add_admins: true,
        anonymous: false,
        manage_call: true,
        other: true,
        manage_topics: true,
        post_stories: true,
        edit_stories: true,
        delete_stories: true,
        manage_direct_messages: true,
        manage_ranks: true,
        manage_linked_peers: true,
        manage_welcome_messages: true,
    })
}

/// Banned rights: `view_messages` (kicked) or a full mute, until `until_date` (0 = forever).
pub fn tl_banned_rights(kicked: bool, until_date: i32) -> tl::enums::ChatBannedRights {
    let mute = !kicked;
    tl::enums::ChatBannedRights::Rights(tl::types::ChatBannedRights {
        view_messages: kicked,
        send_messages: mute,
        send_media: mute,
        send_stickers: mute,
        send_gifs: mute,
        send_games: mute,
        send_inline: mute,
        embed_links: mute,
        send_polls: mute,
        change_info: mute,
        invite_users: false,
        pin_messages: mute,
        manage_topics: mute,
        send_photos: mute,
        send_videos: mute,
        send_roundvideos: mute,
        send_audios: mute,
        send_voices: mute,
        send_docs: mute,
        send_plain: mute,
        edit_rank: false,
        send_reactions: false,
        manage_linked_peers: false,
        until_date,
    })
}
