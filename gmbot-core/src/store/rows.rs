//! Row decoding shared by the SQLite and PostgreSQL adapters: how stored
//! columns become domain types, independent of the driver that reads them.
//!
//! Each adapter implements [`Columns`] for its driver's row type (reading a
//! column and reporting a value that does not decode, in its own error type);
//! the functions here assemble the domain values in the column order of the
//! adapters' `*_cols!` macros.

use super::error::{StoreError, StoreResult};
use crate::domain::{
    ChannelId, ChannelUsername, ChatId, EnforcedChannel, GroupId, GroupSettings, GroupState,
    JoinRequest, JoinRequestState, LiftReason, MessageId, Owner, ProtectedGroup, Restriction,
    RestrictionId, RestrictionKind, RestrictionState, SeenMember, SettingChange, UnixTime, UserId,
    UsernameParseError,
};

/// A stored value that was read but does not decode.
pub(super) enum Bad<'a> {
    /// A closed-set text column (`what`: state, kind, lift reason) holds an unknown value.
    Unknown {
        /// The row's group or restriction.
        of: Subject,
        /// Which column it is, in words.
        what: &'static str,
        /// The value found.
        value: &'a str,
    },
    /// A group's settings are not valid JSON for [`GroupSettings`].
    Settings(GroupId, serde_json::Error),
    /// A channel's username does not parse.
    Username(UsernameParseError),
    /// A JSON column (`what`: an audit cursor, a session's DC options) does not decode.
    Json(&'static str, serde_json::Error),
}

/// Whose row a [`Bad`] value is in.
#[derive(Clone, Copy)]
pub(super) enum Subject {
    /// A `protected_groups` row.
    Group(GroupId),
    /// A `restrictions` row.
    Restriction(RestrictionId),
    /// A `join_requests` row.
    JoinRequest(GroupId, UserId),
}

/// One result row, as a driver reads it.
pub(super) trait Columns {
    /// The driver's error for a column that cannot be read or decoded.
    type Error;
    /// A `BIGINT`/`INTEGER` column.
    fn int(&self, column: usize) -> Result<i64, Self::Error>;
    /// A nullable integer column.
    fn opt_int(&self, column: usize) -> Result<Option<i64>, Self::Error>;
    /// A text column.
    fn text(&self, column: usize) -> Result<String, Self::Error>;
    /// A nullable text column.
    fn opt_text(&self, column: usize) -> Result<Option<String>, Self::Error>;
    /// A boolean column.
    fn flag(&self, column: usize) -> Result<bool, Self::Error>;
    /// A nullable boolean column.
    fn opt_flag(&self, column: usize) -> Result<Option<bool>, Self::Error>;
    /// The error for column `column`, read but not decodable as `bad` says.
    fn bad(&self, column: usize, bad: Bad<'_>) -> Self::Error;
}

/// Decodes a closed-set text column (state, kind, reason).
fn text_enum<R: Columns, T>(
    row: &R,
    column: usize,
    of: Subject,
    what: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, R::Error> {
    let value = row.text(column)?;
    parse(&value).ok_or_else(|| {
        row.bad(
            column,
            Bad::Unknown {
                of,
                what,
                value: &value,
            },
        )
    })
}

/// Reads a group's stored settings JSON and applies `changes` to it, as
/// `update_settings` does on both databases.
pub(super) fn apply_settings(
    group: GroupId,
    text: &str,
    changes: &[SettingChange],
) -> StoreResult<GroupSettings> {
    let mut settings: GroupSettings = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("group {group}: settings: {e}")))?;
    for change in changes {
        settings.apply(change)?;
    }
    Ok(settings)
}

/// A group row (`group_cols!`: id, title, owner, state, paused reason,
/// settings, created, updated), with the channels read separately.
pub(super) fn group<R: Columns>(
    row: &R,
    channels: Vec<EnforcedChannel>,
) -> Result<ProtectedGroup, R::Error> {
    let id = GroupId(row.int(0)?);
    let settings = row.text(5)?;
    Ok(ProtectedGroup {
        id,
        title: row.opt_text(1)?,
        owner: row.opt_int(2)?.map(UserId),
        state: text_enum(row, 3, Subject::Group(id), "state", GroupState::from_db)?,
        paused_reason: row.opt_text(4)?,
        channels,
        settings: serde_json::from_str(&settings).map_err(|e| row.bad(5, Bad::Settings(id, e)))?,
        created_at: UnixTime(row.int(6)?),
        updated_at: UnixTime(row.int(7)?),
    })
}

/// A channel whose four columns (`channel_cols!`) start at `at`.
pub(super) fn channel<R: Columns>(row: &R, at: usize) -> Result<EnforcedChannel, R::Error> {
    let username = row
        .opt_text(at + 1)?
        .map(|u| ChannelUsername::parse(&u))
        .transpose()
        .map_err(|e| row.bad(at + 1, Bad::Username(e)))?;
    Ok(EnforcedChannel {
        id: row.opt_int(at)?.map(ChannelId),
        username,
        title: row.opt_text(at + 2)?,
        invite_link: row.opt_text(at + 3)?,
    })
}

/// A restriction row (`restriction_cols!`).
pub(super) fn restriction<R: Columns>(row: &R) -> Result<Restriction, R::Error> {
    let id = RestrictionId(row.int(0)?);
    let of = Subject::Restriction(id);
    Ok(Restriction {
        id,
        group: GroupId(row.int(1)?),
        user: UserId(row.int(2)?),
        kind: text_enum(row, 3, of, "kind", RestrictionKind::from_db)?,
        state: text_enum(row, 4, of, "state", RestrictionState::from_db)?,
        reason: row.text(5)?,
        placed_at: UnixTime(row.int(6)?),
        until: row.opt_int(7)?.map(UnixTime),
        lifted_at: row.opt_int(8)?.map(UnixTime),
        lift_reason: match row.opt_text(9)? {
            Some(r) => Some(LiftReason::from_db(&r).ok_or_else(|| {
                row.bad(
                    9,
                    Bad::Unknown {
                        of,
                        what: "lift reason",
                        value: &r,
                    },
                )
            })?),
            None => None,
        },
    })
}

/// An owner row: user id, username, display name, can be messaged, created.
pub(super) fn owner<R: Columns>(row: &R) -> Result<Owner, R::Error> {
    Ok(Owner {
        user_id: UserId(row.int(0)?),
        username: row.opt_text(1)?,
        display_name: row.opt_text(2)?,
        can_be_messaged: row.flag(3)?,
        created_at: UnixTime(row.int(4)?),
    })
}

/// A seen-member row: group id, user id, first seen, last seen.
pub(super) fn seen<R: Columns>(row: &R) -> Result<SeenMember, R::Error> {
    Ok(SeenMember {
        group: GroupId(row.int(0)?),
        user: UserId(row.int(1)?),
        first_seen: UnixTime(row.int(2)?),
        last_seen: UnixTime(row.int(3)?),
    })
}

/// A join request row (`join_request_cols!`: group id, user id, user chat id, requested,
/// expires, notice message id, state, decided).
pub(super) fn join_request<R: Columns>(row: &R) -> Result<JoinRequest, R::Error> {
    let group = GroupId(row.int(0)?);
    let user = UserId(row.int(1)?);
    Ok(JoinRequest {
        group,
        user,
        user_chat: ChatId(row.int(2)?),
        requested_at: UnixTime(row.int(3)?),
        expires_at: UnixTime(row.int(4)?),
        notice: row.opt_int(5)?.map(MessageId),
        state: text_enum(
            row,
            6,
            Subject::JoinRequest(group, user),
            "join request state",
            JoinRequestState::from_db,
        )?,
        decided_at: row.opt_int(7)?.map(UnixTime),
    })
}
