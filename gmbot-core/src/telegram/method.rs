//! The closed set of [`TelegramApi`](super::TelegramApi) methods, named as the Bot API names them.
//!
//! Used wherever a call must be identified without its arguments: metric
//! labels (bounded by construction), the dispatcher's budget rules and the
//! in-memory Telegram's call log and error injection.

use std::fmt;

/// One method of the [`TelegramApi`](super::TelegramApi) port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `getChatMember`.
    GetChatMember,
    /// `getChatAdministrators`.
    GetChatAdministrators,
    /// `deleteMessage`.
    DeleteMessage,
    /// `deleteMessages` (up to 100 messages of one chat in one call).
    DeleteMessages,
    /// `restrictChatMember` (mute).
    RestrictMember,
    /// `restrictChatMember` with the group's default permissions (unmute).
    UnrestrictMember,
    /// `banChatMember` + `unbanChatMember`.
    KickMember,
    /// `sendMessage`.
    SendMessage,
    /// `answerCallbackQuery`.
    AnswerCallback,
    /// `getChat` (resolving `/protect @channel`, reading a chat's type and title).
    GetChat,
    /// `createChatInviteLink` (one stored link per private channel).
    CreateInviteLink,
    /// `editMessageText` (the settings keyboard).
    EditMessage,
    /// `banChatSenderChat` (a member posted as a foreign channel).
    BanSenderChat,
    /// `approveChatJoinRequest` (the join gate).
    ApproveJoinRequest,
    /// `declineChatJoinRequest` (the join gate).
    DeclineJoinRequest,
    /// `answerChatJoinRequestQuery` (Bot API 10.1 join request queries).
    AnswerJoinRequestQuery,
    /// `sendMessage` with `ephemeral_message_parameters` (a warning only its member sees).
    SendEphemeral,
    /// `deleteEphemeralMessage`.
    DeleteEphemeral,
    /// MTProto `channels.getParticipants`: one page of a group's member list (audits).
    GetParticipants,
}

impl Method {
    /// Every method, for iteration (metrics pre-registration, tests).
    pub const ALL: [Method; 19] = [
        Method::GetChatMember,
        Method::GetChatAdministrators,
        Method::DeleteMessage,
        Method::DeleteMessages,
        Method::RestrictMember,
        Method::UnrestrictMember,
        Method::KickMember,
        Method::SendMessage,
        Method::AnswerCallback,
        Method::GetChat,
        Method::CreateInviteLink,
        Method::EditMessage,
        Method::BanSenderChat,
        Method::ApproveJoinRequest,
        Method::DeclineJoinRequest,
        Method::AnswerJoinRequestQuery,
        Method::SendEphemeral,
        Method::DeleteEphemeral,
        Method::GetParticipants,
    ];

    /// The Bot API name (MTProto's for `channels.getParticipants`; `unrestrictChatMember` is
    /// GMBot's name for the lifting `restrictChatMember`, `kickChatMember` for ban + unban,
    /// `sendEphemeralMessage` for `sendMessage` with ephemeral parameters).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::GetChatMember => "getChatMember",
            Method::GetChatAdministrators => "getChatAdministrators",
            Method::DeleteMessage => "deleteMessage",
            Method::DeleteMessages => "deleteMessages",
            Method::RestrictMember => "restrictChatMember",
            Method::UnrestrictMember => "unrestrictChatMember",
            Method::KickMember => "kickChatMember",
            Method::SendMessage => "sendMessage",
            Method::AnswerCallback => "answerCallbackQuery",
            Method::GetChat => "getChat",
            Method::CreateInviteLink => "createChatInviteLink",
            Method::EditMessage => "editMessageText",
            Method::BanSenderChat => "banChatSenderChat",
            Method::ApproveJoinRequest => "approveChatJoinRequest",
            Method::DeclineJoinRequest => "declineChatJoinRequest",
            Method::AnswerJoinRequestQuery => "answerChatJoinRequestQuery",
            Method::SendEphemeral => "sendEphemeralMessage",
            Method::DeleteEphemeral => "deleteEphemeralMessage",
            Method::GetParticipants => "channels.getParticipants",
        }
    }

    /// A read: answered from Telegram's state without changing anything.
    /// Reads have their own, looser flood limits (TELEGRAM.md, "Limits").
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Method::GetChatMember
                | Method::GetChatAdministrators
                | Method::GetChat
                | Method::GetParticipants
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
