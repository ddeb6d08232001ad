//! The MTProto conversion layer on constructed grammers TL objects: member pages, access
//! hashes, errors; and the TL bytes the simulated directory sends decode back to the same.

use gmbot_bot::mtproto::convert::{
    channel_access_hash, invocation_error, member_page, rpc_error, tl_banned_rights,
    tl_full_admin_rights, tl_user,
};
use gmbot_core::domain::{ChatMemberStatus, UserId};
use gmbot_core::telegram::TelegramError;
use grammers_client::sender::RpcError;
use grammers_client::tl::{self, Deserializable, Serializable};
use grammers_client::InvocationError;

fn user_peer(id: i64) -> tl::enums::Peer {
    tl::enums::Peer::User(tl::types::PeerUser { user_id: id })
}

fn page() -> tl::enums::channels::ChannelParticipants {
    use tl::enums::ChannelParticipant as P;
    let participants = vec![
        P::Creator(tl::types::ChannelParticipantCreator {
            user_id: 1,
            admin_rights: tl_full_admin_rights(),
            rank: None,
        }),
        P::Admin(tl::types::ChannelParticipantAdmin {
            can_edit: false,
            is_self: true,
            user_id: 2,
            // `self` and `inviter_id` share flag bit 1 in the TL schema: both or neither.
            inviter_id: Some(1),
            promoted_by: 1,
            date: 0,
            admin_rights: tl_full_admin_rights(),
            rank: None,
        }),
        P::Admin(tl::types::ChannelParticipantAdmin {
            can_edit: true,
            is_self: false,
            user_id: 3,
            inviter_id: None,
            promoted_by: 1,
            date: 0,
            admin_rights: tl_full_admin_rights(),
            rank: Some("mod".into()),
        }),
        P::Participant(tl::types::ChannelParticipant {
            user_id: 4,
            date: 5,
            subscription_until_date: None,
            rank: None,
        }),
        P::ParticipantSelf(tl::types::ChannelParticipantSelf {
            via_request: false,
            user_id: 2,
            inviter_id: 1,
            date: 0,
            subscription_until_date: None,
            rank: None,
        }),
        P::Banned(tl::types::ChannelParticipantBanned {
            left: false,
            peer: user_peer(5),
            kicked_by: 1,
            date: 0,
            banned_rights: tl_banned_rights(false, 0),
            rank: None,
        }),
        P::Banned(tl::types::ChannelParticipantBanned {
            left: false,
            peer: user_peer(6),
            kicked_by: 1,
            date: 0,
            banned_rights: tl_banned_rights(true, 0),
            rank: None,
        }),
        P::Banned(tl::types::ChannelParticipantBanned {
            left: true,
            peer: user_peer(7),
            kicked_by: 1,
            date: 0,
            banned_rights: tl_banned_rights(false, 0),
            rank: None,
        }),
        P::Left(tl::types::ChannelParticipantLeft { peer: user_peer(8) }),
        // A channel banned from the group is not a member.
        P::Banned(tl::types::ChannelParticipantBanned {
            left: false,
            peer: tl::enums::Peer::Channel(tl::types::PeerChannel { channel_id: 9 }),
            kicked_by: 1,
            date: 0,
            banned_rights: tl_banned_rights(true, 0),
            rank: None,
        }),
        P::Participant(tl::types::ChannelParticipant {
            user_id: 10,
            date: 5,
            subscription_until_date: None,
            rank: None,
        }),
        P::Participant(tl::types::ChannelParticipant {
            user_id: 11,
            date: 5,
            subscription_until_date: None,
            rank: None,
        }),
        // No user object in the answer: kept, as a non-bot.
        P::Participant(tl::types::ChannelParticipant {
            user_id: 12,
            date: 5,
            subscription_until_date: None,
            rank: None,
        }),
    ];
    let mut deleted = tl_user(11, "Gone", None, None, false);
    deleted.deleted = true;
    let users = vec![
        tl::enums::User::User(tl_user(1, "Owner", None, Some("owner"), false)),
        tl::enums::User::User(tl_user(3, "Mod", Some("Erator"), None, false)),
        tl::enums::User::User(tl_user(4, "Anna", None, None, false)),
        tl::enums::User::User(tl_user(5, "Muted", None, None, false)),
        tl::enums::User::User(tl_user(10, "Helper", None, Some("helper_bot"), true)),
        tl::enums::User::User(deleted),
        tl::enums::User::Empty(tl::types::UserEmpty { id: 99 }),
    ];
    tl::enums::channels::ChannelParticipants::Participants(
        tl::types::channels::ChannelParticipants {
            count: 4_825,
            participants,
            chats: Vec::new(),
            users,
        },
    )
}

#[test]
fn a_participants_page_becomes_the_members_to_audit() {
    let got = member_page(page()).expect("converts");
    assert_eq!(got.total, 4_825);
    assert_eq!(
        got.listed, 13,
        "the sweep moves on by every participant Telegram listed"
    );
    let members: Vec<(i64, bool, ChatMemberStatus)> = got
        .members
        .iter()
        .map(|m| (m.user.get(), m.is_bot, m.status))
        .collect();
    assert_eq!(
        members,
        vec![
            (1, false, ChatMemberStatus::Creator),
            (3, false, ChatMemberStatus::Administrator),
            (4, false, ChatMemberStatus::Member),
            (5, false, ChatMemberStatus::Restricted { is_member: true }),
            (10, true, ChatMemberStatus::Member),
            (12, false, ChatMemberStatus::Member),
        ]
    );
    assert!(
        !got.members.iter().any(|m| m.user == UserId(2)),
        "the bot itself"
    );
}

#[test]
fn not_modified_is_a_decoding_failure_not_an_empty_page() {
    let err =
        member_page(tl::enums::channels::ChannelParticipants::NotModified).expect_err("no page");
    assert!(matches!(err, TelegramError::Decode { .. }), "{err}");
}

#[test]
fn the_bytes_the_simulator_sends_decode_to_the_same_page() {
    let bytes = page().to_bytes();
    let back = tl::enums::channels::ChannelParticipants::from_bytes(&bytes).expect("decodes");
    assert_eq!(
        member_page(back).expect("page"),
        member_page(page()).expect("page")
    );
    let err = tl::enums::RpcError::Error(tl::types::RpcError {
        error_code: 420,
        error_message: "FLOOD_WAIT_7".into(),
    });
    let tl::enums::RpcError::Error(back) =
        tl::enums::RpcError::from_bytes(&err.to_bytes()).expect("decodes");
    assert_eq!(
        rpc_error(&RpcError::from(back)),
        TelegramError::RetryAfter {
            retry_after: std::time::Duration::from_secs(7)
        }
    );
}

#[test]
fn access_hashes_come_from_get_channels() {
    let chats = tl::enums::messages::Chats::Chats(tl::types::messages::Chats {
        chats: vec![
            tl::enums::Chat::Empty(tl::types::ChatEmpty { id: 5 }),
            tl::enums::Chat::ChannelForbidden(tl::types::ChannelForbidden {
                broadcast: false,
                megagroup: true,
                monoforum: false,
                id: 2_000_000_001,
                access_hash: -42,
                title: "Gone".into(),
                until_date: None,
            }),
        ],
    });
    assert_eq!(channel_access_hash(&chats, 2_000_000_001), Some(-42));
    assert_eq!(channel_access_hash(&chats, 7), None);
}

fn rpc(code: i32, message: &str) -> TelegramError {
    rpc_error(&RpcError::from(tl::types::RpcError {
        error_code: code,
        error_message: message.into(),
    }))
}

#[test]
fn errors_are_classified_for_the_dispatcher() {
    assert_eq!(
        rpc(420, "FLOOD_WAIT_31"),
        TelegramError::RetryAfter {
            retry_after: std::time::Duration::from_secs(31)
        }
    );
    assert!(matches!(
        rpc(400, "CHAT_ADMIN_REQUIRED"),
        TelegramError::NotEnoughRights(_)
    ));
    assert!(matches!(
        rpc(400, "CHANNEL_PRIVATE"),
        TelegramError::ChatNotFound(_)
    ));
    assert!(matches!(
        rpc(400, "USER_NOT_PARTICIPANT"),
        TelegramError::UserNotFound(_)
    ));
    assert!(matches!(
        rpc(401, "AUTH_KEY_UNREGISTERED"),
        TelegramError::Forbidden(_)
    ));
    assert!(matches!(
        rpc(400, "SOMETHING_NEW"),
        TelegramError::BadRequest(_)
    ));
    let server = rpc(500, "INTERDC_2_CALL_ERROR");
    assert!(server.is_transient(), "{server}");
    assert!(rpc(-503, "Timeout").is_transient());
    assert!(rpc(303, "NETWORK_MIGRATE_4").is_transient());
    // A broken connection is retried; grammers reconnects on the next call.
    let io = invocation_error(InvocationError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "reset",
    )));
    assert!(io.is_transient(), "{io}");
    assert!(invocation_error(InvocationError::Dropped("runner gone")).is_transient());
}
