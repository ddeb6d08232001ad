//! Row decoding of the audit and MTProto-session tables, shared by both adapters
//! (the column orders of their `AUDIT_RUN_COLS`, `SESSION_COLS` and `PEER_COLS`).

use super::mtproto::{MtprotoDcOption, MtprotoPeer, MtprotoSession, MtprotoUpdates};
use super::rows::{Bad, Columns, Subject};
use crate::audit::{
    AuditCounts, AuditCursor, AuditOutcome, AuditRun, AuditRunId, AuditSource, AuditState,
};
use crate::domain::{GroupId, UnixTime};

/// Columns of an audit run, in the order [`audit_run`] reads them.
pub(super) const AUDIT_RUN_COLS: &str = "id, group_id, state, apply, source, cursor, pages, \
     directory_total, started_at, updated_at, ended_at";

/// Columns of a session, in the order [`session`] reads them.
pub(super) const SESSION_COLS: &str = "name, home_dc, dc_options, updates";

/// Columns of a peer, in the order [`peer`] reads them.
pub(super) const PEER_COLS: &str = "peer_id, access_hash, is_bot, is_self, channel_kind";

fn closed<R: Columns, T>(
    row: &R,
    column: usize,
    group: GroupId,
    what: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, R::Error> {
    let value = row.text(column)?;
    parse(&value).ok_or_else(|| {
        row.bad(
            column,
            Bad::Unknown {
                of: Subject::Group(group),
                what,
                value: &value,
            },
        )
    })
}

fn json<R: Columns, T: serde::de::DeserializeOwned>(
    row: &R,
    column: usize,
    what: &'static str,
) -> Result<T, R::Error> {
    let text = row.text(column)?;
    serde_json::from_str(&text).map_err(|e| row.bad(column, Bad::Json(what, e)))
}

/// An `audit_runs` row.
pub(super) fn audit_run<R: Columns>(row: &R) -> Result<AuditRun, R::Error> {
    let group = GroupId(row.int(1)?);
    let cursor: AuditCursor = json(row, 5, "audit cursor")?;
    Ok(AuditRun {
        id: AuditRunId(row.int(0)?),
        group,
        state: closed(row, 2, group, "audit state", AuditState::from_db)?,
        apply: row.flag(3)?,
        source: closed(row, 4, group, "audit source", AuditSource::from_db)?,
        cursor,
        pages: u64::try_from(row.int(6)?).unwrap_or(0),
        directory_total: row.opt_int(7)?.and_then(|n| u64::try_from(n).ok()),
        started_at: UnixTime(row.int(8)?),
        updated_at: UnixTime(row.int(9)?),
        ended_at: row.opt_int(10)?.map(UnixTime),
    })
}

/// Adds one `(outcome, restricted, count)` row of a grouped count to `counts`.
pub(super) fn add_count<R: Columns>(
    row: &R,
    group: GroupId,
    counts: &mut AuditCounts,
) -> Result<(), R::Error> {
    let outcome = closed(row, 0, group, "audit outcome", AuditOutcome::from_db)?;
    let restricted = row.flag(1)?;
    let n = u64::try_from(row.int(2)?).unwrap_or(0);
    counts.members += n;
    match outcome {
        AuditOutcome::Subscribed => counts.subscribed += n,
        AuditOutcome::NotSubscribed => counts.not_subscribed += n,
        AuditOutcome::Unverifiable => counts.unverifiable += n,
        AuditOutcome::Exempt => counts.exempt += n,
    }
    if restricted {
        counts.restricted += n;
    }
    Ok(())
}

/// An `mtproto_sessions` row.
pub(super) fn session<R: Columns>(row: &R) -> Result<MtprotoSession, R::Error> {
    let dc_options: Vec<MtprotoDcOption> = json(row, 2, "MTProto DC options")?;
    let updates: MtprotoUpdates = json(row, 3, "MTProto update state")?;
    Ok(MtprotoSession {
        name: row.text(0)?,
        home_dc: i32::try_from(row.int(1)?).unwrap_or(0),
        dc_options,
        updates,
    })
}

/// An `mtproto_peers` row.
pub(super) fn peer<R: Columns>(row: &R) -> Result<MtprotoPeer, R::Error> {
    Ok(MtprotoPeer {
        peer_id: row.int(0)?,
        access_hash: row.opt_int(1)?,
        is_bot: row.opt_flag(2)?,
        is_self: row.opt_flag(3)?,
        channel_kind: row.opt_text(4)?,
    })
}

/// The JSON stored for a session's DC options and update state.
pub(super) fn session_json(s: &MtprotoSession) -> super::StoreResult<(String, String)> {
    let enc = |e: serde_json::Error| super::StoreError::Backend(Box::new(e));
    Ok((
        serde_json::to_string(&s.dc_options).map_err(enc)?,
        serde_json::to_string(&s.updates).map_err(enc)?,
    ))
}

/// The JSON stored for a cursor.
pub(super) fn cursor_json(c: &AuditCursor) -> super::StoreResult<String> {
    serde_json::to_string(c).map_err(|e| super::StoreError::Backend(Box::new(e)))
}
