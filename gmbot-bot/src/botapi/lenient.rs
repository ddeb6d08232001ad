//! Lenient decoding of the Bot API objects GMBot reads: updates, messages, chats, members,
//! callback queries and `getChat` answers, from any Bot API version from 7.x to today's.
//!
//! Why our own types and not `frankenstein`'s: its structs follow the newest Bot API to the
//! letter, so every field a newer version added is required (an older server's
//! `getChatAdministrators` fails on the missing `can_send_welcome_messages`, its `getChat` on
//! `accepted_gift_types`), and its enums are closed (a new `ChatMember` status or chat type
//! fails the whole answer, or the whole update). Patching the JSON before handing it over
//! would chase every new required field forever. These types declare only the fields the bot
//! reads; everything else is ignored, so fields added later never matter. Of the fields read,
//! those every version since 5.x sends (`is_member`, `can_restrict_members`, …) are required —
//! guessing them would turn a broken answer into a wrong verdict — while the booleans newer
//! versions added are `false` when missing. Unknown enum values are kept as unknown
//! ([`ChatType::Other`], [`ChatMember::Unknown`], [`UpdateContent::Other`]), never an error.
//! TELEGRAM.md, "Older and newer servers".
//!
//! The names follow `frankenstein`'s (and so the Bot API's), so code reading them reads the
//! same; requests are still built with `frankenstein`'s typed parameters.

use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A Telegram user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// User id (Telegram sends it as a number that fits 52 bits).
    pub id: u64,
    /// Whether this is a bot.
    pub is_bot: bool,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: Option<String>,
    /// @username without `@`.
    pub username: Option<String>,
}

/// A chat's type; types added after this version are kept as [`ChatType::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatType {
    /// Private chat.
    Private,
    /// Basic group.
    Group,
    /// Supergroup.
    Supergroup,
    /// Channel.
    Channel,
    /// A type this version does not know, with Telegram's name for it.
    Other(String),
}

impl<'de> Deserialize<'de> for ChatType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "private" => Self::Private,
            "group" => Self::Group,
            "supergroup" => Self::Supergroup,
            "channel" => Self::Channel,
            _ => Self::Other(name),
        })
    }
}

/// A chat as it appears in messages and member updates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Chat {
    /// Chat id.
    pub id: i64,
    /// Its type.
    #[serde(rename = "type")]
    pub type_field: ChatType,
    /// Title (groups, channels).
    pub title: Option<String>,
    /// Public username without `@`.
    pub username: Option<String>,
    /// First name (private chats).
    pub first_name: Option<String>,
}

/// A `getChat` answer: the parts GMBot reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatFullInfo {
    /// Chat id.
    pub id: i64,
    /// Its type.
    #[serde(rename = "type")]
    pub type_field: ChatType,
    /// Title (groups, channels).
    pub title: Option<String>,
    /// Public username without `@`.
    pub username: Option<String>,
    /// First name (private chats).
    pub first_name: Option<String>,
    /// A group's default member permissions. Every field is optional in the Bot API, so
    /// `frankenstein`'s type is lenient already; permissions an older server does not send
    /// stay unset when they are restored.
    pub permissions: Option<frankenstein::types::ChatPermissions>,
}

/// A message: the fields GMBot reads (text or caption, sender, service fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    /// Message id.
    pub message_id: i64,
    /// Unix time it was sent (0 for an inaccessible message).
    pub date: u64,
    /// The chat it belongs to.
    pub chat: Chat,
    /// Sender; absent in channels.
    pub from: Option<User>,
    /// The chat it was sent on behalf of (anonymous admin, channel, automatic forward).
    pub sender_chat: Option<Chat>,
    /// An automatic forward of a linked channel's post.
    pub is_automatic_forward: Option<bool>,
    /// Text.
    pub text: Option<String>,
    /// Caption of media.
    pub caption: Option<String>,
    /// Service message: members who joined.
    pub new_chat_members: Option<Vec<User>>,
    /// Service message: the member who left.
    pub left_chat_member: Option<User>,
    /// Service message: the group became this supergroup.
    pub migrate_to_chat_id: Option<i64>,
    /// Service message: this supergroup was that group.
    pub migrate_from_chat_id: Option<i64>,
}

/// The message a callback button was attached to: accessible or not, it has these fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageRef {
    /// Message id (`0` when absent: an ephemeral message is named by `ephemeral_message_id`).
    #[serde(default)]
    pub message_id: i64,
    /// The chat it belongs to.
    pub chat: Chat,
}

/// The answer to a send that may have been ephemeral (Bot API 10.2): an ephemeral message
/// carries `ephemeral_message_id`; an ordinary one only `message_id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentRef {
    /// The message id (absent, or not a real id, for an ephemeral message).
    pub message_id: Option<i64>,
    /// The ephemeral message's id.
    pub ephemeral_message_id: Option<i64>,
}

/// A press on an inline button.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallbackQuery {
    /// Query id, for `answerCallbackQuery`.
    pub id: String,
    /// Who pressed.
    pub from: User,
    /// The message with the button (absent for inline-mode messages).
    pub message: Option<MessageRef>,
    /// The button's `callback_data`.
    pub data: Option<String>,
}

/// `ChatMemberOwner`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMemberOwner {
    /// The owner.
    pub user: User,
    /// Hidden in the member list.
    #[serde(default)]
    pub is_anonymous: bool,
    /// Custom title.
    pub custom_title: Option<String>,
}

/// `ChatMemberAdministrator`: the rights GMBot checks, which every version since 5.x sends.
/// Rights added later are not read, so their absence cannot matter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMemberAdministrator {
    /// The admin.
    pub user: User,
    /// Hidden in the member list.
    #[serde(default)]
    pub is_anonymous: bool,
    /// May delete other members' messages.
    pub can_delete_messages: bool,
    /// May restrict, ban and unban members.
    pub can_restrict_members: bool,
    /// May invite users (and create invite links).
    pub can_invite_users: bool,
    /// Bot API 10.x; `false` when an older server leaves it out.
    #[serde(default)]
    pub can_send_welcome_messages: bool,
    /// Custom title.
    pub custom_title: Option<String>,
}

/// `ChatMemberMember`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMemberMember {
    /// The member.
    pub user: User,
    /// When a paid subscription ends.
    pub until_date: Option<u64>,
}

/// `ChatMemberRestricted`: `is_member` decides a subscription and is required; the
/// permissions default to `false` (the restrictive side) when a version does not send them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMemberRestricted {
    /// The member.
    pub user: User,
    /// Still in the chat (a restricted user counts as subscribed only with `true`).
    pub is_member: bool,
    /// May send text messages.
    #[serde(default)]
    pub can_send_messages: bool,
    /// May send audios.
    #[serde(default)]
    pub can_send_audios: bool,
    /// May send documents.
    #[serde(default)]
    pub can_send_documents: bool,
    /// May send photos.
    #[serde(default)]
    pub can_send_photos: bool,
    /// May send videos.
    #[serde(default)]
    pub can_send_videos: bool,
    /// May send video notes.
    #[serde(default)]
    pub can_send_video_notes: bool,
    /// May send voice notes.
    #[serde(default)]
    pub can_send_voice_notes: bool,
    /// May send polls.
    #[serde(default)]
    pub can_send_polls: bool,
    /// May send stickers, GIFs, games, inline results.
    #[serde(default)]
    pub can_send_other_messages: bool,
    /// May add link previews.
    #[serde(default)]
    pub can_add_web_page_previews: bool,
    /// May react to messages (not sent by 7.x servers).
    #[serde(default)]
    pub can_react_to_messages: bool,
    /// May edit their own tag (Bot API 10.x).
    #[serde(default)]
    pub can_edit_tag: bool,
    /// May change the chat's info.
    #[serde(default)]
    pub can_change_info: bool,
    /// May invite users.
    #[serde(default)]
    pub can_invite_users: bool,
    /// May pin messages.
    #[serde(default)]
    pub can_pin_messages: bool,
    /// May manage topics.
    #[serde(default)]
    pub can_manage_topics: bool,
    /// Restricted until then (0 = forever).
    #[serde(default)]
    pub until_date: u64,
}

/// `ChatMemberLeft`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMemberLeft {
    /// The user.
    pub user: User,
}

/// `ChatMemberBanned` (status `kicked`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMemberBanned {
    /// The user.
    pub user: User,
    /// Banned until then (0 = forever).
    #[serde(default)]
    pub until_date: u64,
}

/// A chat member, by `status`; a status this version does not know is kept as
/// [`ChatMember::Unknown`] with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatMember {
    /// `creator`.
    Creator(ChatMemberOwner),
    /// `administrator`.
    Administrator(ChatMemberAdministrator),
    /// `member`.
    Member(ChatMemberMember),
    /// `restricted`.
    Restricted(ChatMemberRestricted),
    /// `left`.
    Left(ChatMemberLeft),
    /// `kicked`.
    Kicked(ChatMemberBanned),
    /// A status added after this version.
    Unknown {
        /// Telegram's name for it.
        status: String,
        /// The user, when the entry has a readable one.
        user: Option<User>,
    },
}

impl ChatMember {
    /// The member's user, if known.
    pub fn user(&self) -> Option<&User> {
        match self {
            Self::Creator(m) => Some(&m.user),
            Self::Administrator(m) => Some(&m.user),
            Self::Member(m) => Some(&m.user),
            Self::Restricted(m) => Some(&m.user),
            Self::Left(m) => Some(&m.user),
            Self::Kicked(m) => Some(&m.user),
            Self::Unknown { user, .. } => user.as_ref(),
        }
    }
}

impl<'de> Deserialize<'de> for ChatMember {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let status = value
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| D::Error::missing_field("status"))?
            .to_owned();
        fn variant<T: DeserializeOwned, E: serde::de::Error>(v: Value) -> Result<T, E> {
            serde_json::from_value(v).map_err(E::custom)
        }
        Ok(match status.as_str() {
            "creator" => Self::Creator(variant(value)?),
            "administrator" => Self::Administrator(variant(value)?),
            "member" => Self::Member(variant(value)?),
            "restricted" => Self::Restricted(variant(value)?),
            "left" => Self::Left(variant(value)?),
            "kicked" => Self::Kicked(variant(value)?),
            _ => Self::Unknown {
                user: value
                    .get("user")
                    .and_then(|u| serde_json::from_value(u.clone()).ok()),
                status,
            },
        })
    }
}

/// A change of someone's membership (`chat_member`, `my_chat_member`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMemberUpdated {
    /// The chat.
    pub chat: Chat,
    /// Who made the change.
    pub from: User,
    /// When.
    pub date: u64,
    /// Before.
    pub old_chat_member: ChatMember,
    /// After.
    pub new_chat_member: ChatMember,
}

/// A request to join a chat (`chat_join_request`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatJoinRequest {
    /// The chat asked to join.
    pub chat: Chat,
    /// Who asked.
    pub from: User,
    /// The private chat with the requester (Bot API 5.4 `user_chat_id`; every version the
    /// bot supports sends it).
    pub user_chat_id: i64,
    /// When.
    pub date: u64,
    /// Bot API 10.1: set when the request is a query for this bot as the chat's guard bot.
    pub query_id: Option<String>,
}

/// What an update carries. The kinds GMBot handles are decoded; every other kind is named
/// (a closed set of names, for metrics labels), and a kind newer than this version is
/// `Other("other")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateContent {
    /// `message`.
    Message(Message),
    /// `edited_message`.
    EditedMessage(Message),
    /// `callback_query`.
    CallbackQuery(CallbackQuery),
    /// `chat_member`.
    ChatMember(ChatMemberUpdated),
    /// `my_chat_member`.
    MyChatMember(ChatMemberUpdated),
    /// `chat_join_request`.
    ChatJoinRequest(ChatJoinRequest),
    /// Any other kind, by its `allowed_updates` name.
    Other(&'static str),
}

/// The update kinds of the Bot API that GMBot does not decode, by name.
const OTHER_KINDS: [&str; 20] = [
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "chat_boost",
    "removed_chat_boost",
    "managed_bot",
    "guest_message",
    "chat_join_request_query",
];

/// The update kinds GMBot decodes, by name: one of them is still an `Other` kind when it
/// carries nothing the bot can act on (a member update whose status is newer than this
/// version is `Other("chat_member")`).
const DECODED_KINDS: [&str; 6] = [
    "message",
    "edited_message",
    "callback_query",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
];

/// The static name of an update kind that is kept as an `Other` kind (one GMBot does not
/// decode, or a decoded one it cannot act on), `"other"` for a name it does not know.
pub fn other_kind_name(name: &str) -> &'static str {
    OTHER_KINDS
        .iter()
        .chain(DECODED_KINDS.iter())
        .find(|k| **k == name)
        .copied()
        .unwrap_or("other")
}

/// One update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Telegram's `update_id`.
    pub update_id: i64,
    /// What it carries.
    pub content: UpdateContent,
}

impl Update {
    /// Decodes one update from its JSON value.
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let Value::Object(mut map) = value else {
            return Err(serde_json::Error::custom("an update is a JSON object"));
        };
        let update_id = map
            .get("update_id")
            .ok_or_else(|| serde_json::Error::missing_field("update_id"))?
            .as_i64()
            .filter(|id| *id >= 0)
            .ok_or_else(|| serde_json::Error::custom("update_id is not a non-negative integer"))?;
        fn take<T: DeserializeOwned>(
            map: &mut serde_json::Map<String, Value>,
            key: &str,
        ) -> Option<Result<T, serde_json::Error>> {
            map.remove(key).map(|v| {
                serde_json::from_value(v)
                    .map_err(|e| serde_json::Error::custom(format!("{key}: {e}")))
            })
        }
        let content = if let Some(m) = take(&mut map, "message") {
            UpdateContent::Message(m?)
        } else if let Some(m) = take(&mut map, "edited_message") {
            UpdateContent::EditedMessage(m?)
        } else if let Some(q) = take(&mut map, "callback_query") {
            UpdateContent::CallbackQuery(q?)
        } else if let Some(c) = take(&mut map, "chat_member") {
            UpdateContent::ChatMember(c?)
        } else if let Some(c) = take(&mut map, "my_chat_member") {
            UpdateContent::MyChatMember(c?)
        } else if let Some(r) = take(&mut map, "chat_join_request") {
            UpdateContent::ChatJoinRequest(r?)
        } else if let Some(name) = OTHER_KINDS.iter().find(|k| map.contains_key(**k)) {
            UpdateContent::Other(name)
        } else if map.len() > 1 {
            // A kind added after this version.
            UpdateContent::Other("other")
        } else {
            return Err(serde_json::Error::custom("an update without content"));
        };
        Ok(Self { update_id, content })
    }
}

impl<'de> Deserialize<'de> for Update {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl fmt::Display for ChatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Private => "private",
            Self::Group => "group",
            Self::Supergroup => "supergroup",
            Self::Channel => "channel",
            Self::Other(name) => name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({"id": 6, "is_bot": false, "first_name": "C"})
    }

    #[test]
    fn administrator_without_newer_rights_decodes() {
        let m: ChatMember = serde_json::from_value(json!({
            "status": "administrator", "user": user(),
            "can_delete_messages": true, "can_restrict_members": false, "can_invite_users": true
        }))
        .expect("decodes");
        let ChatMember::Administrator(a) = m else {
            panic!("admin")
        };
        assert!(a.can_delete_messages && !a.can_restrict_members && a.can_invite_users);
        assert!(!a.can_send_welcome_messages && !a.is_anonymous);
    }

    #[test]
    fn a_right_every_version_sends_is_required() {
        let err = serde_json::from_value::<ChatMember>(json!({
            "status": "administrator", "user": user(), "can_delete_messages": true
        }))
        .expect_err("can_restrict_members is required");
        assert!(err.to_string().contains("can_restrict_members"), "{err}");
        let err =
            serde_json::from_value::<ChatMember>(json!({"status": "restricted", "user": user()}))
                .expect_err("is_member is required");
        assert!(err.to_string().contains("is_member"), "{err}");
    }

    #[test]
    fn unknown_status_and_chat_type_are_kept() {
        let m: ChatMember =
            serde_json::from_value(json!({"status": "guest", "user": user(), "x": 1}))
                .expect("decodes");
        assert_eq!(
            m.user().map(|u| u.id),
            Some(6),
            "the user of an unknown status is kept"
        );
        assert!(matches!(m, ChatMember::Unknown { ref status, .. } if status == "guest"));
        let c: Chat = serde_json::from_value(json!({"id": -1, "type": "hub", "title": "t"}))
            .expect("decodes");
        assert_eq!(c.type_field, ChatType::Other("hub".into()));
        assert_eq!(c.type_field.to_string(), "hub");
    }

    #[test]
    fn update_kinds() {
        let u = |v: Value| Update::from_value(v).map(|u| u.content);
        assert!(matches!(
            u(json!({"update_id": 1, "poll": {"id": "p"}})),
            Ok(UpdateContent::Other("poll"))
        ));
        assert!(matches!(
            u(json!({"update_id": 1, "brand_new_kind": {}})),
            Ok(UpdateContent::Other("other"))
        ));
        let r = u(json!({"update_id": 1, "chat_join_request": {
            "chat": {"id": -1001, "type": "supergroup", "title": "G"},
            "from": user(), "user_chat_id": 6, "date": 5, "bio": "hi",
            "query_id": "q1", "invite_link": {"anything": "newer"}
        }}))
        .expect("a join request decodes");
        let UpdateContent::ChatJoinRequest(r) = r else {
            panic!("join request")
        };
        assert_eq!((r.user_chat_id, r.query_id.as_deref()), (6, Some("q1")));
        let older = u(json!({"update_id": 1, "chat_join_request": {
            "chat": {"id": -1001, "type": "supergroup"}, "from": user(),
            "user_chat_id": 6, "date": 5
        }}));
        assert!(
            matches!(older, Ok(UpdateContent::ChatJoinRequest(ref r)) if r.query_id.is_none()),
            "a server before 10.1 sends no query_id: {older:?}"
        );
        assert!(u(json!({"update_id": 1})).is_err());
        assert!(u(json!({"update_id": -1, "poll": {}})).is_err());
        assert!(u(json!([])).is_err());
        let err = u(json!({"update_id": 1, "message": {"message_id": 1}})).expect_err("no chat");
        assert!(err.to_string().starts_with("message: "), "{err}");
    }
}
