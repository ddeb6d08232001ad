//! Priority lanes of the outbound dispatcher, highest first.

use crate::telegram::Method;

/// Which queue a Telegram call waits in when the budget is short.
///
/// Under contention a higher lane always goes first; a call that has waited
/// longer than [`DispatchConfig::starvation_limit`](super::DispatchConfig::starvation_limit)
/// goes before every call that arrived after it, whatever their lanes, so a
/// low lane is never starved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// A user is waiting: the "I've joined" button's answer and unmute.
    Interactive,
    /// Enforcement: deleting a message, restricting or kicking a member.
    Enforcement,
    /// Warnings and replies to admins.
    Notify,
    /// Background work: audits, reconciliation, cache warm-up.
    Bulk,
}

impl Lane {
    /// Every lane, highest priority first.
    pub const ALL: [Lane; 4] = [
        Lane::Interactive,
        Lane::Enforcement,
        Lane::Notify,
        Lane::Bulk,
    ];

    /// Position in [`Lane::ALL`] (0 = highest).
    pub fn index(self) -> usize {
        match self {
            Lane::Interactive => 0,
            Lane::Enforcement => 1,
            Lane::Notify => 2,
            Lane::Bulk => 3,
        }
    }

    /// A stable lowercase name (metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Interactive => "interactive",
            Lane::Enforcement => "enforcement",
            Lane::Notify => "notify",
            Lane::Bulk => "bulk",
        }
    }

    /// The lane a call takes through the dispatcher's own
    /// [`TelegramApi`](crate::telegram::TelegramApi) implementation: unmuting,
    /// callback answers and the answers to join requests (a requester is waiting, and a
    /// join request query must be answered within 10 seconds) are interactive, membership
    /// reads, deletions, restrictions and kicks are enforcement, sent and edited messages
    /// and the setup calls behind admin commands (`getChat`, invite links) are notifications,
    /// member listings (`channels.getParticipants`, audits) are bulk work.
    pub fn default_for(method: Method) -> Lane {
        match method {
            Method::UnrestrictMember
            | Method::AnswerCallback
            | Method::ApproveJoinRequest
            | Method::DeclineJoinRequest
            | Method::AnswerJoinRequestQuery => Lane::Interactive,
            Method::GetChatMember
            | Method::GetChatAdministrators
            | Method::DeleteMessage
            | Method::DeleteMessages
            | Method::RestrictMember
            | Method::KickMember
            | Method::BanSenderChat
            | Method::DeleteEphemeral => Lane::Enforcement,
            Method::SendMessage
            | Method::SendEphemeral
            | Method::EditMessage
            | Method::GetChat
            | Method::CreateInviteLink => Lane::Notify,
            Method::GetParticipants => Lane::Bulk,
        }
    }
}
