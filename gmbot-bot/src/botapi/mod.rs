//! The Bot API over HTTP(S): [`BotApi`] implements `gmbot-core`'s
//! [`TelegramApi`] port and offers the transport calls (`getUpdates`, webhooks, `getMe`)
//! and the setup calls (`getChat`, invite links) the bot needs.
//!
//! Requests are typed by the `frankenstein` crate (Bot API 10, custom base URL), which fits:
//! it speaks JSON over a `reqwest` client we configure, exposes Telegram's
//! `error_code`/`description`/`parameters` untouched, and strips the URL (with the token) from
//! its transport errors. Answers and updates are decoded by [`lenient`] — our own types for
//! what the bot reads, so a Bot API 7.x server and one newer than `frankenstein` both decode;
//! an answer that still cannot be read is [`TelegramError::Decode`], counted and logged once
//! per method, never retried. On top of it this module adds what the port needs: error
//! classification, token redaction, the group-permissions cache for unmuting, and per-update
//! parsing so one malformed update cannot wedge `getUpdates`.

pub mod convert;
mod decode_failures;
mod error;
pub mod lenient;
mod permissions;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use frankenstein::methods::{
    AnswerCallbackQueryParams, AnswerChatJoinRequestQueryParams, ApproveChatJoinRequestParams,
    BanChatMemberParams, BanChatSenderChatParams, CreateChatInviteLinkParams,
    DeclineChatJoinRequestParams, DeleteEphemeralMessageParams, DeleteMessageParams,
    DeleteMessagesParams, DeleteWebhookParams, EditMessageTextParams, ExportChatInviteLinkParams,
    GetChatAdministratorsParams, GetChatMemberCountParams, GetChatMemberParams, GetChatParams,
    GetUpdatesParams, RestrictChatMemberParams, SendMessageParams, SetWebhookParams,
    UnbanChatMemberParams,
};
use frankenstein::response::MethodResponse;
use frankenstein::types::{
    AllowedUpdate, ChatPermissions, EphemeralMessageParameters, InlineKeyboardButton,
    InlineKeyboardMarkup, ReplyMarkup, ReplyParameters, User,
};
use frankenstein::updates::WebhookInfo;
use frankenstein::{AsyncTelegramApi, ParseMode};
use prometheus::Registry;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use gmbot_core::domain::{ChatId, ChatMemberStatus, GroupId, MessageId, UnixTime, UserId};
use gmbot_core::telegram::{
    ChatAdmin, ChatInfo, ChatTarget, ChatType, EphemeralId, InlineButton, JoinQueryAnswer,
    OutgoingMessage, Posted, TelegramApi, TelegramError, TelegramResult, KICK_BAN_SECS,
};

use crate::config::{Config, DEFAULT_API_URL};
use crate::secret::BotToken;

use self::decode_failures::DecodeFailures;
pub use self::error::classify;
use self::lenient::{ChatFullInfo, ChatMember, Update};
use self::permissions::PermissionsCache;

/// The update kinds GMBot asks for. `chat_member` must be listed explicitly or Telegram never
/// sends it; an omitted list would keep whatever was set before.
pub const ALLOWED_UPDATES: [AllowedUpdate; 6] = [
    AllowedUpdate::Message,
    // An edit can turn an allowed message into anything (TELEGRAM.md, "Updates").
    AllowedUpdate::EditedMessage,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::ChatMember,
    AllowedUpdate::MyChatMember,
    // The join gate; Telegram sends it only to admins with can_invite_users.
    AllowedUpdate::ChatJoinRequest,
];

/// How to reach the Bot API.
#[derive(Debug, Clone)]
pub struct BotApiOptions {
    /// Base URL (`TELEGRAM_API_URL`), without `/bot<token>`.
    pub base_url: Url,
    /// Timeout of an ordinary call.
    pub request_timeout: Duration,
    /// Timeout to establish a connection.
    pub connect_timeout: Duration,
    /// The `timeout` sent with `getUpdates`; that call's HTTP timeout is this plus
    /// `request_timeout`, so a long poll is never cut short by the client.
    pub long_poll: Duration,
    /// How long a group's default permissions (for unmuting) are reused.
    pub permissions_ttl: Duration,
}

impl Default for BotApiOptions {
    fn default() -> Self {
        Self {
            base_url: Url::parse(DEFAULT_API_URL).unwrap_or_else(|_| unreachable!("constant URL")),
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            long_poll: Duration::from_secs(30),
            permissions_ttl: Duration::from_secs(60),
        }
    }
}

impl BotApiOptions {
    /// Defaults with the configured base URL.
    pub fn from_config(config: &Config) -> Self {
        Self {
            base_url: config.api_url.clone(),
            ..Self::default()
        }
    }

    /// Defaults with this base URL (e.g. the simulator's).
    pub fn with_base_url(base_url: Url) -> Self {
        Self {
            base_url,
            ..Self::default()
        }
    }
}

/// One `getUpdates` answer, parsed update by update.
#[derive(Debug, Default)]
pub struct UpdateBatch {
    /// The updates that parsed.
    pub updates: Vec<Update>,
    /// Updates that did not parse: their id (if readable) and the parse error. They are
    /// confirmed with the rest so they are not fetched again forever.
    pub malformed: Vec<(Option<i64>, String)>,
    /// The `offset` for the next call: highest (non-negative) `update_id` seen + 1.
    pub next_offset: Option<i64>,
}

impl UpdateBatch {
    /// Parses a `getUpdates` result, update by update: one that does not parse is kept in
    /// [`malformed`](Self::malformed) with serde's message (not yet redacted: the client
    /// redacts it before logging), and counts towards [`next_offset`](Self::next_offset)
    /// like the others when its `update_id` is readable.
    pub fn from_values(values: Vec<Value>) -> Self {
        let mut batch = Self::default();
        for value in values {
            let id = value.get("update_id").and_then(Value::as_i64);
            // Update ids are non-negative (a negative `offset` would ask for the last updates
            // instead of confirming any), and the highest one has no successor: the offset
            // stays at it rather than overflowing.
            if let Some(id) = id.filter(|id| *id >= 0) {
                let next = id.saturating_add(1);
                batch.next_offset = Some(batch.next_offset.map_or(next, |o: i64| o.max(next)));
            }
            match Update::from_value(value) {
                Ok(u) => batch.updates.push(u),
                Err(e) => batch.malformed.push((id, e.to_string())),
            }
        }
        batch
    }
}

/// The Bot API client.
#[derive(Clone)]
pub struct BotApi {
    token: BotToken,
    base_url: Url,
    bot: frankenstein::client_reqwest::Bot,
    poll_bot: frankenstein::client_reqwest::Bot,
    long_poll: Duration,
    permissions: PermissionsCache,
    decode_failures: DecodeFailures,
}

impl fmt::Debug for BotApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the inner clients: their api_url contains the token.
        f.debug_struct("BotApi")
            .field("token", &self.token)
            .field("base_url", &self.base_url.as_str())
            .finish()
    }
}

fn uid(user: UserId) -> TelegramResult<u64> {
    u64::try_from(user.0).map_err(|_| TelegramError::BadRequest(format!("invalid user id {user}")))
}

fn mid(message: MessageId) -> TelegramResult<i32> {
    i32::try_from(message.0)
        .map_err(|_| TelegramError::BadRequest(format!("invalid message id {message}")))
}

fn until_secs(t: UnixTime) -> u64 {
    u64::try_from(t.secs()).unwrap_or(0)
}

/// Every permission off: the mute.
fn muted() -> ChatPermissions {
    let f = Some(false);
    ChatPermissions {
        can_send_messages: f,
        can_send_audios: f,
        can_send_documents: f,
        can_send_photos: f,
        can_send_videos: f,
        can_send_video_notes: f,
        can_send_voice_notes: f,
        can_send_polls: f,
        can_send_other_messages: f,
        can_add_web_page_previews: f,
        can_react_to_messages: f,
        can_edit_tag: f,
        can_change_info: f,
        can_invite_users: f,
        can_pin_messages: f,
        can_manage_topics: f,
    }
}

fn keyboard(rows: &[Vec<InlineButton>]) -> Option<InlineKeyboardMarkup> {
    if rows.is_empty() {
        return None;
    }
    let inline_keyboard = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|b| match b {
                    InlineButton::Url { text, url } => InlineKeyboardButton::builder()
                        .text(text.as_str())
                        .url(url.as_str())
                        .build(),
                    InlineButton::Callback { text, data } => InlineKeyboardButton::builder()
                        .text(text.as_str())
                        .callback_data(data.as_str())
                        .build(),
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

/// The port's view of a `getChat` answer.
pub fn chat_info(c: &ChatFullInfo) -> ChatInfo {
    let kind = match c.type_field {
        lenient::ChatType::Private => ChatType::Private,
        lenient::ChatType::Group => ChatType::Group,
        lenient::ChatType::Supergroup => ChatType::Supergroup,
        lenient::ChatType::Channel => ChatType::Channel,
        lenient::ChatType::Other(_) => ChatType::Other,
    };
    ChatInfo {
        id: ChatId(c.id),
        kind,
        title: c.title.clone().or_else(|| c.first_name.clone()),
        username: c.username.clone(),
    }
}

/// The port's view of a `ChatMember`; `None` for a status this version does not know, which
/// is no verdict either way (neither subscribed nor not).
pub fn member_status(m: &ChatMember) -> Option<ChatMemberStatus> {
    Some(match m {
        ChatMember::Creator(_) => ChatMemberStatus::Creator,
        ChatMember::Administrator(_) => ChatMemberStatus::Administrator,
        ChatMember::Member(_) => ChatMemberStatus::Member,
        // Telegram: a restricted user counts as subscribed only with is_member = true.
        ChatMember::Restricted(r) => ChatMemberStatus::Restricted {
            is_member: r.is_member,
        },
        ChatMember::Left(_) => ChatMemberStatus::Left,
        ChatMember::Kicked(_) => ChatMemberStatus::Kicked,
        ChatMember::Unknown { .. } => return None,
    })
}

/// The port's view of an administrator entry; `None` for non-admins (and for a status this
/// version does not know: no rights are assumed).
pub fn chat_admin(m: &ChatMember) -> Option<ChatAdmin> {
    let id = |u: &lenient::User| UserId(i64::try_from(u.id).unwrap_or(i64::MAX));
    match m {
        ChatMember::Creator(o) => Some(ChatAdmin {
            user: id(&o.user),
            is_bot: o.user.is_bot,
            is_creator: true,
            can_delete_messages: true,
            can_restrict_members: true,
            can_invite_users: true,
        }),
        ChatMember::Administrator(a) => Some(ChatAdmin {
            user: id(&a.user),
            is_bot: a.user.is_bot,
            is_creator: false,
            can_delete_messages: a.can_delete_messages,
            can_restrict_members: a.can_restrict_members,
            can_invite_users: a.can_invite_users,
        }),
        _ => None,
    }
}

impl BotApi {
    /// A client for this token. Fails only if the HTTP client cannot be built.
    pub fn new(token: BotToken, options: BotApiOptions) -> TelegramResult<Self> {
        let client = |timeout: Duration| {
            reqwest::Client::builder()
                .connect_timeout(options.connect_timeout)
                .timeout(timeout)
                .build()
                .map_err(|e| error::network(&token, &e))
        };
        let api_url = format!(
            "{}/bot{}",
            options.base_url.as_str().trim_end_matches('/'),
            token.expose()
        );
        let bot = frankenstein::client_reqwest::Bot::builder()
            .api_url(api_url.as_str())
            .client(client(options.request_timeout)?)
            .build();
        let poll_bot = frankenstein::client_reqwest::Bot::builder()
            .api_url(api_url)
            .client(client(options.long_poll + options.request_timeout)?)
            .build();
        Ok(Self {
            token,
            base_url: options.base_url,
            bot,
            poll_bot,
            long_poll: options.long_poll,
            permissions: PermissionsCache::new(options.permissions_ttl),
            decode_failures: DecodeFailures::new(),
        })
    }

    /// Registers the client's own metric (`gmbot_telegram_decode_failures_total{method}`).
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        self.decode_failures.register(registry)
    }

    /// The bot's id (from its token).
    pub fn bot_id(&self) -> UserId {
        UserId(self.token.bot_id())
    }

    fn fail(&self, e: frankenstein::Error) -> TelegramError {
        error::from_client(&self.token, e)
    }

    /// One call: the answer's envelope through `frankenstein` (errors, `retry_after`), its
    /// `result` decoded here, so a result of an unexpected shape is a [`TelegramError::Decode`]
    /// rather than the network error `frankenstein` would report.
    async fn call<P, T>(&self, method: &'static str, params: &P) -> TelegramResult<T>
    where
        P: Serialize + fmt::Debug + Sync,
        T: DeserializeOwned,
    {
        let raw: MethodResponse<Value> = self
            .bot
            .request(method, Some(params))
            .await
            .map_err(|e| self.fail(e))?;
        self.decode(method, raw.result)
    }

    fn decode<T: DeserializeOwned>(&self, method: &str, value: Value) -> TelegramResult<T> {
        serde_json::from_value(value)
            .map_err(|e| self.decode_failed(method, self.token.redact(&e.to_string())))
    }

    fn decode_failed(&self, method: &str, detail: String) -> TelegramError {
        self.decode_failures.note(method, detail)
    }

    /// `getMe`: checks the token and returns the bot's user (its username is needed to
    /// recognise `/cmd@BotUsername`).
    pub async fn get_me(&self) -> TelegramResult<User> {
        let raw: MethodResponse<Value> = self
            .bot
            .request("getMe", None::<()>)
            .await
            .map_err(|e| self.fail(e))?;
        self.decode("getMe", raw.result)
    }

    /// `getUpdates` with the configured long-poll timeout and [`ALLOWED_UPDATES`].
    pub async fn get_updates(&self, offset: Option<i64>) -> TelegramResult<UpdateBatch> {
        let timeout = u32::try_from(self.long_poll.as_secs()).unwrap_or(50);
        self.get_updates_with(offset, 100, timeout, &ALLOWED_UPDATES)
            .await
    }

    /// `getUpdates` with every parameter. Each update is parsed on its own: one Telegram
    /// adds a field this client does not know cannot block the queue.
    pub async fn get_updates_with(
        &self,
        offset: Option<i64>,
        limit: u32,
        timeout: u32,
        allowed: &[AllowedUpdate],
    ) -> TelegramResult<UpdateBatch> {
        let params = GetUpdatesParams::builder()
            .maybe_offset(offset)
            .limit(limit.clamp(1, 100))
            .timeout(timeout)
            .allowed_updates(allowed.to_vec())
            .build();
        let raw: MethodResponse<Vec<serde_json::Value>> = self
            .poll_bot
            .request("getUpdates", Some(&params))
            .await
            .map_err(|e| self.fail(e))?;
        let mut batch = UpdateBatch::from_values(raw.result);
        for (_, detail) in &mut batch.malformed {
            *detail = self.token.redact(detail);
            self.decode_failed("getUpdates", detail.clone());
        }
        Ok(batch)
    }

    /// `setWebhook` with a secret token, the update kinds and the connection cap.
    pub async fn set_webhook(
        &self,
        url: &str,
        secret_token: Option<&str>,
        allowed: &[AllowedUpdate],
        max_connections: u32,
        drop_pending_updates: bool,
    ) -> TelegramResult<()> {
        let params = SetWebhookParams::builder()
            .url(url)
            .maybe_secret_token(secret_token.map(str::to_owned))
            .allowed_updates(allowed.to_vec())
            .max_connections(max_connections.clamp(1, 100))
            .drop_pending_updates(drop_pending_updates)
            .build();
        self.call::<_, Value>("setWebhook", &params).await?;
        Ok(())
    }

    /// `deleteWebhook` (needed before `getUpdates` works again).
    pub async fn delete_webhook(&self, drop_pending_updates: bool) -> TelegramResult<()> {
        let params = DeleteWebhookParams::builder()
            .drop_pending_updates(drop_pending_updates)
            .build();
        self.call::<_, Value>("deleteWebhook", &params).await?;
        Ok(())
    }

    /// `getWebhookInfo`.
    pub async fn get_webhook_info(&self) -> TelegramResult<WebhookInfo> {
        let raw: MethodResponse<Value> = self
            .bot
            .request("getWebhookInfo", None::<()>)
            .await
            .map_err(|e| self.fail(e))?;
        self.decode("getWebhookInfo", raw.result)
    }

    /// `getChat` by id.
    pub async fn get_chat(&self, chat: ChatId) -> TelegramResult<ChatFullInfo> {
        let params = GetChatParams::builder().chat_id(chat.0).build();
        self.call("getChat", &params).await
    }

    /// `getChat` by public username (`@name` or `name`), to resolve `/protect @channel`.
    pub async fn get_chat_by_username(&self, username: &str) -> TelegramResult<ChatFullInfo> {
        let name = format!("@{}", username.trim_start_matches('@'));
        let params = GetChatParams::builder().chat_id(name).build();
        self.call("getChat", &params).await
    }

    /// `getChatMember` with Telegram's full answer (rights, restrictions).
    pub async fn get_chat_member_full(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> TelegramResult<ChatMember> {
        let params = GetChatMemberParams::builder()
            .chat_id(chat.0)
            .user_id(uid(user)?)
            .build();
        self.call("getChatMember", &params).await
    }

    /// `getChatMemberCount`.
    pub async fn get_chat_member_count(&self, chat: ChatId) -> TelegramResult<u32> {
        let params = GetChatMemberCountParams::builder().chat_id(chat.0).build();
        self.call("getChatMemberCount", &params).await
    }

    /// `editMessageText` (HTML), replacing the buttons (none = remove them).
    pub async fn edit_message_text(
        &self,
        chat: ChatId,
        message: MessageId,
        new: &OutgoingMessage,
    ) -> TelegramResult<()> {
        let params = EditMessageTextParams::builder()
            .chat_id(chat.0)
            .message_id(mid(message)?)
            .text(new.html.as_str())
            .parse_mode(ParseMode::Html)
            .maybe_reply_markup(keyboard(&new.buttons))
            .build();
        // The result (the edited Message, or true) is not read.
        self.call::<_, Value>("editMessageText", &params).await?;
        Ok(())
    }

    /// `banChatMember` until `until` (`None` = forever).
    pub async fn ban_chat_member(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        let params = BanChatMemberParams::builder()
            .chat_id(group.0)
            .user_id(uid(user)?)
            .maybe_until_date(until.map(until_secs))
            .build();
        self.call::<_, Value>("banChatMember", &params).await?;
        Ok(())
    }

    /// `unbanChatMember`; with `only_if_banned` a present member is left alone.
    pub async fn unban_chat_member(
        &self,
        group: GroupId,
        user: UserId,
        only_if_banned: bool,
    ) -> TelegramResult<()> {
        let params = UnbanChatMemberParams::builder()
            .chat_id(group.0)
            .user_id(uid(user)?)
            .only_if_banned(only_if_banned)
            .build();
        self.call::<_, Value>("unbanChatMember", &params).await?;
        Ok(())
    }

    /// `createChatInviteLink`: a new additional link (needs `can_invite_users`). Use this,
    /// once, for a private channel's Join button — never `exportChatInviteLink`, which
    /// revokes the previous primary link.
    pub async fn create_chat_invite_link(
        &self,
        chat: ChatId,
        name: Option<&str>,
    ) -> TelegramResult<String> {
        let params = CreateChatInviteLinkParams::builder()
            .chat_id(chat.0)
            .maybe_name(name.map(str::to_owned))
            .build();
        #[derive(serde::Deserialize)]
        struct Link {
            invite_link: String,
        }
        let link: Link = self.call("createChatInviteLink", &params).await?;
        Ok(link.invite_link)
    }

    /// `exportChatInviteLink`: a new primary link; **revokes the previous one**.
    pub async fn export_chat_invite_link(&self, chat: ChatId) -> TelegramResult<String> {
        let params = ExportChatInviteLinkParams::builder()
            .chat_id(chat.0)
            .build();
        self.call("exportChatInviteLink", &params).await
    }

    /// The group's default member permissions (`getChat.permissions`), cached briefly.
    pub async fn default_permissions(&self, group: GroupId) -> TelegramResult<ChatPermissions> {
        if let Some(p) = self.permissions.get(group) {
            return Ok(p);
        }
        let chat = self.get_chat(group.into()).await?;
        // A group always reports its permissions; if an answer lacks them, restore what a
        // group allows by default (send everything, no info/pin/topic changes).
        let perms = chat.permissions.unwrap_or_else(|| {
            let t = Some(true);
            ChatPermissions {
                can_change_info: Some(false),
                can_pin_messages: Some(false),
                can_manage_topics: Some(false),
                can_edit_tag: Some(false),
                can_invite_users: t,
                ..ChatPermissions {
                    can_send_messages: t,
                    can_send_audios: t,
                    can_send_documents: t,
                    can_send_photos: t,
                    can_send_videos: t,
                    can_send_video_notes: t,
                    can_send_voice_notes: t,
                    can_send_polls: t,
                    can_send_other_messages: t,
                    can_add_web_page_previews: t,
                    can_react_to_messages: t,
                    ..muted()
                }
            }
        });
        self.permissions.put(group, perms);
        Ok(perms)
    }

    /// Drops the cached default permissions of a group (after its settings changed).
    pub fn forget_permissions(&self, group: GroupId) {
        self.permissions.forget(group);
    }

    async fn restrict(
        &self,
        group: GroupId,
        user: UserId,
        permissions: ChatPermissions,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        // Sent explicitly: without it Telegram lets some permissions imply others.
        let params = RestrictChatMemberParams::builder()
            .chat_id(group.0)
            .user_id(uid(user)?)
            .permissions(permissions)
            .use_independent_chat_permissions(true)
            .maybe_until_date(until.map(until_secs))
            .build();
        self.call::<_, Value>("restrictChatMember", &params).await?;
        Ok(())
    }
}

#[async_trait]
impl TelegramApi for BotApi {
    async fn get_chat_member(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> TelegramResult<ChatMemberStatus> {
        match self.get_chat_member_full(chat, user).await {
            Ok(member) => member_status(&member).ok_or_else(|| {
                let status = match &member {
                    ChatMember::Unknown { status, .. } => status.as_str(),
                    _ => "",
                };
                // A status newer than this version: no verdict, and asking again will not help.
                self.decode_failed(
                    "getChatMember",
                    format!("unknown ChatMember status `{status}`"),
                )
            }),
            // USER_NOT_PARTICIPANT is Telegram's verdict "not in this chat" (MTProto
            // channels.getParticipant; pyrogram's UserNotParticipant): a value, not an error.
            // "user not found" is not: the reference answers a non-member with status `left`,
            // so that error names no verdict and stays unknown (TELEGRAM.md, "Membership").
            Err(TelegramError::UserNotFound(text))
                if text.to_ascii_uppercase().contains("USER_NOT_PARTICIPANT") =>
            {
                Ok(ChatMemberStatus::Left)
            }
            Err(err) => Err(err),
        }
    }

    async fn get_chat_administrators(&self, chat: ChatId) -> TelegramResult<Vec<ChatAdmin>> {
        let params = GetChatAdministratorsParams::builder()
            .chat_id(chat.0)
            .build();
        let list: Vec<ChatMember> = self.call("getChatAdministrators", &params).await?;
        Ok(list.iter().filter_map(chat_admin).collect())
    }

    async fn delete_message(&self, chat: ChatId, message: MessageId) -> TelegramResult<()> {
        let params = DeleteMessageParams::builder()
            .chat_id(chat.0)
            .message_id(mid(message)?)
            .build();
        self.call::<_, Value>("deleteMessage", &params).await?;
        Ok(())
    }

    async fn delete_messages(&self, chat: ChatId, messages: &[MessageId]) -> TelegramResult<()> {
        let ids = messages
            .iter()
            .map(|&m| mid(m))
            .collect::<Result<Vec<_>, _>>()?;
        let params = DeleteMessagesParams::builder()
            .chat_id(chat.0)
            .message_ids(ids)
            .build();
        self.bot
            .delete_messages(&params)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn restrict_member(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        self.restrict(group, user, muted(), until).await
    }

    async fn unrestrict_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        let defaults = self.default_permissions(group).await?;
        self.restrict(group, user, defaults, None).await
    }

    async fn kick_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        // Telegram: a ban with until_date < 30 s ahead is forever. A ban that ends by itself,
        // then the unban that lets the member back at once; if the unban fails, only the
        // ban's short end remains.
        let until = UnixTime(UnixTime::now().secs() + KICK_BAN_SECS);
        self.ban_chat_member(group, user, Some(until)).await?;
        self.unban_chat_member(group, user, true).await
    }

    async fn ban_sender_chat(&self, group: GroupId, sender_chat: ChatId) -> TelegramResult<()> {
        let params = BanChatSenderChatParams::builder()
            .chat_id(group.0)
            .sender_chat_id(sender_chat.0)
            .build();
        self.bot
            .ban_chat_sender_chat(&params)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn send_message(
        &self,
        chat: ChatId,
        message: &OutgoingMessage,
    ) -> TelegramResult<MessageId> {
        let reply = message.reply_to.map(mid).transpose()?.map(|id| {
            ReplyParameters::builder()
                .message_id(id)
                .allow_sending_without_reply(true)
                .build()
        });
        let params = SendMessageParams::builder()
            .chat_id(chat.0)
            .text(message.html.as_str())
            .parse_mode(ParseMode::Html)
            .maybe_reply_markup(keyboard(&message.buttons).map(ReplyMarkup::InlineKeyboardMarkup))
            .maybe_reply_parameters(reply)
            .maybe_disable_notification(message.silent.then_some(true))
            .build();
        let sent: lenient::MessageRef = self.call("sendMessage", &params).await?;
        Ok(MessageId(sent.message_id))
    }

    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        show_alert: bool,
    ) -> TelegramResult<()> {
        let params = AnswerCallbackQueryParams::builder()
            .callback_query_id(callback_id)
            .maybe_text(text.map(str::to_owned))
            .show_alert(show_alert)
            .build();
        self.call::<_, Value>("answerCallbackQuery", &params)
            .await?;
        Ok(())
    }

    async fn get_chat(&self, chat: &ChatTarget) -> TelegramResult<ChatInfo> {
        let full = match chat {
            ChatTarget::Id(id) => BotApi::get_chat(self, *id).await?,
            ChatTarget::Username(name) => self.get_chat_by_username(name.as_str()).await?,
        };
        Ok(chat_info(&full))
    }

    async fn create_invite_link(&self, chat: ChatId) -> TelegramResult<String> {
        self.create_chat_invite_link(chat, Some("GMBot")).await
    }

    async fn edit_message(
        &self,
        chat: ChatId,
        message: MessageId,
        msg: &OutgoingMessage,
    ) -> TelegramResult<()> {
        match self.edit_message_text(chat, message, msg).await {
            // The message already shows exactly this: the edit's goal is met.
            Err(TelegramError::BadRequest(text)) if text.contains("message is not modified") => {
                Ok(())
            }
            other => other,
        }
    }

    async fn approve_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        let params = ApproveChatJoinRequestParams::builder()
            .chat_id(group.0)
            .user_id(uid(user)?)
            .build();
        self.call::<_, Value>("approveChatJoinRequest", &params)
            .await?;
        Ok(())
    }

    async fn decline_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        let params = DeclineChatJoinRequestParams::builder()
            .chat_id(group.0)
            .user_id(uid(user)?)
            .build();
        self.call::<_, Value>("declineChatJoinRequest", &params)
            .await?;
        Ok(())
    }

    async fn answer_join_request_query(
        &self,
        _group: GroupId,
        query_id: &str,
        answer: JoinQueryAnswer,
    ) -> TelegramResult<()> {
        let params = AnswerChatJoinRequestQueryParams::builder()
            .chat_join_request_query_id(query_id)
            .result(answer.as_str())
            .build();
        self.call::<_, Value>("answerChatJoinRequestQuery", &params)
            .await?;
        Ok(())
    }

    async fn send_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: &OutgoingMessage,
    ) -> TelegramResult<Posted> {
        // Bot API 10.3 moved the 10.2 parameters (`receiver_user_id`, …) into
        // `ephemeral_message_parameters`; frankenstein 0.52 sends the 10.3 shape.
        let params = SendMessageParams::builder()
            .chat_id(chat.0)
            .ephemeral_message_parameters(
                EphemeralMessageParameters::builder()
                    .receiver_user_id(uid(receiver)?)
                    .build(),
            )
            .text(message.html.as_str())
            .parse_mode(ParseMode::Html)
            .maybe_reply_markup(keyboard(&message.buttons).map(ReplyMarkup::InlineKeyboardMarkup))
            .maybe_disable_notification(message.silent.then_some(true))
            .build();
        let sent: lenient::SentRef = self.call("sendMessage", &params).await?;
        match (sent.ephemeral_message_id, sent.message_id) {
            (Some(id), _) => Ok(Posted::Ephemeral(EphemeralId(id))),
            // A server that does not know the parameters ignores them and posts for everyone.
            (None, Some(id)) if id > 0 => Ok(Posted::Public(MessageId(id))),
            _ => Err(self.decode_failed(
                "sendMessage",
                "the answer has neither ephemeral_message_id nor message_id".to_owned(),
            )),
        }
    }

    async fn delete_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: EphemeralId,
    ) -> TelegramResult<()> {
        let id = i32::try_from(message.0).map_err(|_| {
            TelegramError::BadRequest(format!("invalid ephemeral message id {message}"))
        })?;
        let params = DeleteEphemeralMessageParams::builder()
            .chat_id(chat.0)
            .receiver_user_id(uid(receiver)?)
            .ephemeral_message_id(id)
            .build();
        self.call::<_, Value>("deleteEphemeralMessage", &params)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::UpdateBatch;

    /// Found by the fuzz corpus (`fuzz/corpus/update_decode/`): the largest `update_id`
    /// overflowed the next offset (a panic in debug builds, a negative offset in release).
    #[test]
    fn the_largest_update_id_does_not_overflow_the_offset() {
        let batch = UpdateBatch::from_values(vec![
            json!({"update_id": i64::MAX, "poll": {}}),
            json!({"update_id": 3, "poll": {}}),
        ]);
        assert_eq!(batch.updates.len(), 2);
        assert_eq!(batch.next_offset, Some(i64::MAX));
    }

    #[test]
    fn negative_ids_never_become_the_offset() {
        let batch = UpdateBatch::from_values(vec![json!({"update_id": -5, "poll": {}})]);
        assert_eq!(
            batch.next_offset, None,
            "a negative offset asks for the last updates"
        );
        assert_eq!(batch.malformed.len(), 1);
        let batch = UpdateBatch::from_values(vec![
            json!({"update_id": -5, "poll": {}}),
            json!({"update_id": 9, "message": {"message_id": 1}}),
            json!("no object"),
        ]);
        assert_eq!(batch.next_offset, Some(10));
        assert_eq!(batch.malformed.len(), 3, "{:?}", batch.malformed);
        assert_eq!(batch.malformed[1].0, Some(9));
    }
}
