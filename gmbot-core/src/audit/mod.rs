//! Batch audits: every member of a group checked against its channels, resumably.
//!
//! The Bot API cannot list a group's members; MTProto can, 200 at a time and
//! at most about 10,000 per filter. This module holds what an audit needs that
//! is not a transport:
//!
//! - [`MemberDirectory`], the port a frontend implements to list members one
//!   page at a time (the MTProto adapter and the simulated Telegram do);
//! - [`DirectoryCursor`], the sweep that walks the recent members first and then
//!   `ChannelParticipantsSearch` prefixes, refining a prefix that matches more
//!   than the cap, so groups far past 10,000 members are listed;
//! - the checkpoint types the [`Store`](crate::store::Store) keeps in
//!   `audit_runs` and `audit_members`: where a run stopped ([`AuditCursor`]) and
//!   what it found for each member ([`MemberOutcome`]), so a killed audit resumes
//!   at its last finished page and counts every member once.

mod directory;
mod run;
mod sweep;

pub use self::directory::{DirectoryMember, MemberDirectory, MemberPage};
pub use self::run::{
    AuditCounts, AuditCursor, AuditOutcome, AuditPage, AuditRun, AuditRunId, AuditSource,
    AuditState, MemberOutcome, NewAuditRun,
};
pub use self::sweep::{
    DirectoryCursor, DirectoryQuery, FILTER_CAP, MAX_QUERY_LEN, PAGE_LIMIT, SEARCH_ALPHABET,
};
