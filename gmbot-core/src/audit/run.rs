//! An audit run as the store keeps it: its cursor, its options and what it found per member.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::sweep::DirectoryCursor;
use crate::domain::{GroupId, UnixTime, UserId};

/// Row id of an audit run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuditRunId(pub i64);

impl fmt::Display for AuditRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditState {
    /// Started and not finished: it can be resumed (at most one per group).
    Running,
    /// Every member was checked.
    Finished,
    /// Given up in favour of a new run (its results are kept).
    Abandoned,
}

impl AuditState {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Abandoned => "abandoned",
        }
    }

    /// Parses a stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "finished" => Self::Finished,
            "abandoned" => Self::Abandoned,
            _ => return None,
        })
    }
}

/// Where the members of a run come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSource {
    /// The member directory (MTProto), then the members seen writing.
    Directory,
    /// Only the members seen writing (no MTProto credentials).
    SeenOnly,
}

impl AuditSource {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::SeenOnly => "seen_only",
        }
    }

    /// Parses a stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        Some(match s {
            "directory" => Self::Directory,
            "seen_only" => Self::SeenOnly,
            _ => return None,
        })
    }
}

/// Where a run goes on from: the next page to list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum AuditCursor {
    /// The member directory's sweep, at this page.
    Directory {
        /// The page.
        at: DirectoryCursor,
    },
    /// The members seen writing, by user id after `after`.
    Seen {
        /// The last user id of the previous page (`None`: from the start).
        after: Option<UserId>,
    },
    /// Nothing left to list.
    Done,
}

impl AuditCursor {
    /// The first page of a run from `source`.
    pub fn start(source: AuditSource) -> Self {
        match source {
            AuditSource::Directory => Self::Directory {
                at: DirectoryCursor::start(),
            },
            AuditSource::SeenOnly => Self::Seen { after: None },
        }
    }
}

/// What the audit found for one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Subscribed to every linked channel.
    Subscribed,
    /// Not subscribed to at least one linked channel (Telegram said so).
    NotSubscribed,
    /// Some channel could not be checked and none was known to be missing.
    Unverifiable,
    /// Not checked: an admin, an allow-listed user, a bot the group exempts.
    Exempt,
}

impl AuditOutcome {
    /// The stable name stored in the database and printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribed => "subscribed",
            Self::NotSubscribed => "not_subscribed",
            Self::Unverifiable => "unverifiable",
            Self::Exempt => "exempt",
        }
    }

    /// Parses a stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        Some(match s {
            "subscribed" => Self::Subscribed,
            "not_subscribed" => Self::NotSubscribed,
            "unverifiable" => Self::Unverifiable,
            "exempt" => Self::Exempt,
            _ => return None,
        })
    }
}

/// One member's result within a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberOutcome {
    /// The member.
    pub user: UserId,
    /// What was found.
    pub outcome: AuditOutcome,
    /// Muted by this run (`--apply`).
    pub restricted: bool,
}

/// A run to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewAuditRun {
    /// The group audited.
    pub group: GroupId,
    /// Whether non-subscribers are muted.
    pub apply: bool,
    /// Where members come from.
    pub source: AuditSource,
}

/// An audit run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRun {
    /// Row id.
    pub id: AuditRunId,
    /// The group audited.
    pub group: GroupId,
    /// Running, finished or abandoned.
    pub state: AuditState,
    /// Whether non-subscribers are muted.
    pub apply: bool,
    /// Where members come from.
    pub source: AuditSource,
    /// The next page to list.
    pub cursor: AuditCursor,
    /// Pages finished so far (over every resumption).
    pub pages: u64,
    /// The group's member count as the directory last reported it.
    pub directory_total: Option<u64>,
    /// When the run was started.
    pub started_at: UnixTime,
    /// When its last page was recorded.
    pub updated_at: UnixTime,
    /// When it finished or was abandoned.
    pub ended_at: Option<UnixTime>,
}

/// One finished page: written in one transaction, so a run resumes after the
/// last page whose results are stored, and no member is counted twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// Where the run goes on from after this page.
    pub next: AuditCursor,
    /// The members this page checked (members already recorded in the run are ignored).
    pub outcomes: Vec<MemberOutcome>,
    /// The group's member count as the directory reported it on this page, if it did.
    pub directory_total: Option<u64>,
}

/// What a run found so far, counted in the store (each member once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCounts {
    /// Members recorded (every outcome).
    pub members: u64,
    /// Subscribed to every channel.
    pub subscribed: u64,
    /// Missing at least one channel.
    pub not_subscribed: u64,
    /// Could not be checked.
    pub unverifiable: u64,
    /// Not checked (admins, allow-listed, exempt bots).
    pub exempt: u64,
    /// Muted by the run.
    pub restricted: u64,
}

impl AuditCounts {
    /// Members whose channels were checked: everyone but the exempt.
    pub fn checked(&self) -> u64 {
        self.subscribed + self.not_subscribed + self.unverifiable
    }

    /// Adds one member's outcome.
    pub fn add(&mut self, m: &MemberOutcome) {
        self.members += 1;
        match m.outcome {
            AuditOutcome::Subscribed => self.subscribed += 1,
            AuditOutcome::NotSubscribed => self.not_subscribed += 1,
            AuditOutcome::Unverifiable => self.unverifiable += 1,
            AuditOutcome::Exempt => self.exempt += 1,
        }
        self.restricted += u64::from(m.restricted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            AuditState::Running,
            AuditState::Finished,
            AuditState::Abandoned,
        ] {
            assert_eq!(AuditState::from_db(s.as_str()), Some(s));
        }
        for s in [AuditSource::Directory, AuditSource::SeenOnly] {
            assert_eq!(AuditSource::from_db(s.as_str()), Some(s));
        }
        for o in [
            AuditOutcome::Subscribed,
            AuditOutcome::NotSubscribed,
            AuditOutcome::Unverifiable,
            AuditOutcome::Exempt,
        ] {
            assert_eq!(AuditOutcome::from_db(o.as_str()), Some(o));
        }
        assert_eq!(AuditOutcome::from_db("maybe"), None);
    }

    #[test]
    fn cursors_are_stored_as_tagged_json() {
        let c = AuditCursor::start(AuditSource::Directory);
        let text = serde_json::to_string(&c).expect("json");
        assert_eq!(
            text,
            r#"{"phase":"directory","at":{"query":"recent","offset":0}}"#
        );
        let seen = AuditCursor::Seen {
            after: Some(UserId(5)),
        };
        let text = serde_json::to_string(&seen).expect("json");
        assert_eq!(
            serde_json::from_str::<AuditCursor>(&text).expect("back"),
            seen
        );
        assert_eq!(
            serde_json::to_string(&AuditCursor::Done).expect("json"),
            r#"{"phase":"done"}"#
        );
    }

    #[test]
    fn counts_add_up() {
        let mut c = AuditCounts::default();
        for (outcome, restricted) in [
            (AuditOutcome::Subscribed, false),
            (AuditOutcome::NotSubscribed, true),
            (AuditOutcome::Exempt, false),
            (AuditOutcome::Unverifiable, false),
        ] {
            c.add(&MemberOutcome {
                user: UserId(1),
                outcome,
                restricted,
            });
        }
        assert_eq!((c.members, c.checked(), c.restricted), (4, 3, 1));
    }
}
