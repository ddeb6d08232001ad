//! The `TelegramApi` port: the narrow set of Telegram calls the engine and the bot's flows need.
//!
//! Frontends (Bot API over HTTPS, MTProto) implement it; `gmbot-core` never
//! speaks a transport itself. Errors are classified into the kinds callers
//! must treat differently — a rate limit is waited out, missing rights are
//! reported to admins, a network error is retried — never by parsing text.

mod error;
mod memory;
mod method;
mod types;

use async_trait::async_trait;

use crate::domain::{ChatId, ChatMemberStatus, GroupId, MessageId, UnixTime, UserId};

pub use self::error::{TelegramError, TelegramResult};
pub use self::memory::{
    ActiveRestriction, Call, ChatKind, ChatPermissions, MemoryTelegram, RecordedCall,
    SentEphemeral, SentMessage, DEFAULT_BOT_ID,
};
pub use self::method::Method;
pub use self::types::{
    ChatAdmin, ChatInfo, ChatTarget, ChatType, EphemeralId, InlineButton, JoinQueryAnswer,
    OutgoingMessage, Posted, KICK_BAN_SECS,
};

/// At most this many message ids go into one `deleteMessages` call (Bot API limit).
pub const MAX_BULK_DELETE: usize = 100;

/// What GMBot asks of Telegram.
#[async_trait]
pub trait TelegramApi: Send + Sync + 'static {
    /// `getChatMember`: the user's status in a chat. For a channel this needs
    /// the bot to be a channel administrator (else [`TelegramError::NotEnoughRights`]).
    async fn get_chat_member(&self, chat: ChatId, user: UserId)
        -> TelegramResult<ChatMemberStatus>;

    /// `getChatAdministrators`: the chat's creator and administrators with their rights.
    async fn get_chat_administrators(&self, chat: ChatId) -> TelegramResult<Vec<ChatAdmin>>;

    /// `deleteMessage`.
    async fn delete_message(&self, chat: ChatId, message: MessageId) -> TelegramResult<()>;

    /// `deleteMessages`: up to [`MAX_BULK_DELETE`] messages of one chat in one call; messages
    /// already gone are skipped (TELEGRAM.md, "Acting"). The default makes one
    /// [`delete_message`](Self::delete_message) call each and ignores "not found", for
    /// frontends without the bulk method; it fails with the first other error.
    async fn delete_messages(&self, chat: ChatId, messages: &[MessageId]) -> TelegramResult<()> {
        for &message in messages {
            match self.delete_message(chat, message).await {
                Ok(()) | Err(TelegramError::BadRequest(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `restrictChatMember` with every send permission off, until `until`
    /// (`None` = until lifted; Telegram treats < 30 s or > 366 days as forever).
    async fn restrict_member(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()>;

    /// Lifts a restriction by restoring the group's *default* permissions
    /// (`getChat.permissions`), never "everything allowed".
    async fn unrestrict_member(&self, group: GroupId, user: UserId) -> TelegramResult<()>;

    /// `banChatSenderChat`: bans a channel from `group`, so its owner can no
    /// longer post there on its behalf (lifted with `unbanChatSenderChat`).
    /// Needs `can_restrict_members`.
    async fn ban_sender_chat(&self, group: GroupId, sender_chat: ChatId) -> TelegramResult<()>;

    /// Removes a member without a lasting ban: `banChatMember` until [`KICK_BAN_SECS`] from
    /// now (never 0, which would be forever), then `unbanChatMember` with `only_if_banned`.
    /// When the unban fails the error is returned, and the ban still ends by itself.
    async fn kick_member(&self, group: GroupId, user: UserId) -> TelegramResult<()>;

    /// `sendMessage` with HTML text and an optional inline keyboard; returns the new message's id.
    async fn send_message(
        &self,
        chat: ChatId,
        message: &OutgoingMessage,
    ) -> TelegramResult<MessageId>;

    /// `answerCallbackQuery`; every callback must be answered or the user's spinner hangs.
    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        show_alert: bool,
    ) -> TelegramResult<()>;

    /// `getChat`: a chat's type, title and username, by id or public `@username`.
    /// A private chat the bot is not in is [`TelegramError::ChatNotFound`].
    async fn get_chat(&self, chat: &ChatTarget) -> TelegramResult<ChatInfo>;

    /// `createChatInviteLink`: a new additional invite link (needs `can_invite_users`).
    /// Never `exportChatInviteLink`, which revokes the previous primary link
    /// (TELEGRAM.md, "Acting"): create one link per private channel and store it.
    async fn create_invite_link(&self, chat: ChatId) -> TelegramResult<String>;

    /// `editMessageText` (HTML) of one of the bot's messages, replacing its
    /// buttons (none = removed); `reply_to` and `silent` are ignored. An edit that
    /// changes nothing succeeds (Telegram's "message is not modified" is not a failure here).
    async fn edit_message(
        &self,
        chat: ChatId,
        message: MessageId,
        msg: &OutgoingMessage,
    ) -> TelegramResult<()>;

    /// `approveChatJoinRequest`: lets `user` into `group` (needs `can_invite_users`).
    async fn approve_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()>;

    /// `declineChatJoinRequest` (needs `can_invite_users`).
    async fn decline_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()>;

    /// `answerChatJoinRequestQuery` (Bot API 10.1): the answer to a join request that
    /// carried a `query_id`, which must come within 10 seconds of the request. `group` is the
    /// chat asked to join (it names the call for budgets and 429 pauses; Telegram needs only
    /// the query id).
    async fn answer_join_request_query(
        &self,
        group: GroupId,
        query_id: &str,
        answer: JoinQueryAnswer,
    ) -> TelegramResult<()>;

    /// `sendMessage` with `ephemeral_message_parameters { receiver_user_id }` (Bot API 10.2):
    /// the message is shown in `chat` to `receiver` only (delivery is not guaranteed while
    /// they are offline). A server that ignores the parameters posts an ordinary message,
    /// reported as [`Posted::Public`]. The default refuses: a frontend without ephemeral
    /// messages makes callers fall back to a public message.
    async fn send_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: &OutgoingMessage,
    ) -> TelegramResult<Posted> {
        let _ = (chat, receiver, message);
        Err(TelegramError::BadRequest(
            "ephemeral messages are not supported by this frontend".into(),
        ))
    }

    /// `deleteEphemeralMessage`: removes an ephemeral message from its receiver's screen.
    async fn delete_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: EphemeralId,
    ) -> TelegramResult<()> {
        let _ = (chat, receiver, message);
        Err(TelegramError::BadRequest(
            "ephemeral messages are not supported by this frontend".into(),
        ))
    }
}
