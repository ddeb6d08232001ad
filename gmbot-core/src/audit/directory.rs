//! The `MemberDirectory` port: a group's members, one page at a time.

use async_trait::async_trait;

use super::sweep::DirectoryCursor;
use crate::domain::{ChatMemberStatus, GroupId, UserId};
use crate::telegram::TelegramResult;

/// One member as the directory lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryMember {
    /// The member.
    pub user: UserId,
    /// A bot account (exempt when the group exempts bots).
    pub is_bot: bool,
    /// Their status in the group.
    pub status: ChatMemberStatus,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    /// How many members match the page's query, as Telegram counts them (for
    /// [`DirectoryQuery::Recent`](super::DirectoryQuery::Recent): the group's member count).
    pub total: u32,
    /// How many participants Telegram returned, before dropping those that are not
    /// members to audit (left, banned, deleted accounts, the bot itself): the sweep moves
    /// on by this many.
    pub listed: u32,
    /// The members of this page (at most [`PAGE_LIMIT`](super::PAGE_LIMIT)), in
    /// Telegram's order. A page may hold fewer than asked although more match.
    pub members: Vec<DirectoryMember>,
}

/// Lists a group's members page by page (MTProto `channels.getParticipants`).
///
/// Failures are [`TelegramError`](crate::telegram::TelegramError)s, classified
/// as for the Bot API: `FLOOD_WAIT_X` is
/// [`RetryAfter`](crate::telegram::TelegramError::RetryAfter), a bot that is not
/// an admin of the group is
/// [`NotEnoughRights`](crate::telegram::TelegramError::NotEnoughRights), a lost
/// connection is [`Network`](crate::telegram::TelegramError::Network). Callers
/// route calls through the dispatcher's bulk lane, which waits and retries.
#[async_trait]
pub trait MemberDirectory: Send + Sync + 'static {
    /// The page at `cursor` (its query, from its offset, at most
    /// [`PAGE_LIMIT`](super::PAGE_LIMIT) members).
    async fn page(&self, group: GroupId, cursor: &DirectoryCursor) -> TelegramResult<MemberPage>;
}
