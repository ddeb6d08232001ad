//! The SQLite side of the audit and MTProto-session methods: the statements, run by the
//! `Store` implementation in `sqlite.rs` on a pooled connection or inside its transaction.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::audit::{
    AuditCounts, AuditPage, AuditRun, AuditRunId, AuditState, MemberOutcome, NewAuditRun,
};
use crate::domain::{GroupId, UnixTime, UserId};
use crate::store::audit_rows::{self as ar, AUDIT_RUN_COLS, PEER_COLS, SESSION_COLS};
use crate::store::error::{StoreError, StoreResult};
use crate::store::mtproto::{MtprotoPeer, MtprotoSession, SessionLease};

/// Rows per multi-row insert (four parameters each, far below SQLite's 32,766).
const CHUNK: usize = 500;

fn one_run(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<AuditRun>> {
    let sql = format!("SELECT {AUDIT_RUN_COLS} FROM audit_runs WHERE {filter}");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params, |r| ar::audit_run(r))
        .optional()?)
}

pub(super) fn start(conn: &Connection, new: &NewAuditRun, at: UnixTime) -> StoreResult<AuditRun> {
    super::require_group(conn, new.group)?;
    let cursor = ar::cursor_json(&crate::audit::AuditCursor::start(new.source))?;
    let sql = format!(
        "INSERT INTO audit_runs (group_id, state, apply, source, cursor, pages, started_at, updated_at) \
         VALUES (?1, 'running', ?2, ?3, ?4, 0, ?5, ?5) RETURNING {AUDIT_RUN_COLS}"
    );
    conn.prepare_cached(&sql)?
        .query_row(
            params![new.group.0, new.apply, new.source.as_str(), cursor, at.0],
            |r| ar::audit_run(r),
        )
        .map_err(|e| {
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                StoreError::Conflict(format!(
                    "group {} has an unfinished audit: resume it or end it first",
                    new.group
                ))
            } else {
                e.into()
            }
        })
}

pub(super) fn unfinished(conn: &Connection, group: GroupId) -> StoreResult<Option<AuditRun>> {
    one_run(conn, "group_id = ?1 AND state = 'running'", [group.0])
}

pub(super) fn run_by_id(
    conn: &Connection,
    group: GroupId,
    run: AuditRunId,
) -> StoreResult<Option<AuditRun>> {
    one_run(conn, "group_id = ?1 AND id = ?2", params![group.0, run.0])
}

pub(super) fn audited(
    conn: &Connection,
    group: GroupId,
    run: AuditRunId,
    users: &[UserId],
) -> StoreResult<Vec<UserId>> {
    let mut found = Vec::new();
    for chunk in users.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT m.user_id FROM audit_members m JOIN audit_runs r ON r.id = m.run_id \
             WHERE r.group_id = ? AND m.run_id = ? AND m.user_id IN ({marks})"
        );
        let values: Vec<i64> = [group.0, run.0]
            .into_iter()
            .chain(chunk.iter().map(|u| u.0))
            .collect();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(values), |r| r.get(0).map(UserId))?;
        for row in rows {
            found.push(row?);
        }
    }
    Ok(found)
}

pub(super) fn record_page(
    tx: &Connection,
    group: GroupId,
    run: AuditRunId,
    page: &AuditPage,
    at: UnixTime,
) -> StoreResult<bool> {
    let cursor = ar::cursor_json(&page.next)?;
    let total = page.directory_total.and_then(|t| i64::try_from(t).ok());
    let n = tx
        .prepare_cached(
            "UPDATE audit_runs SET cursor = ?3, pages = pages + 1, updated_at = ?4, \
               directory_total = COALESCE(?5, directory_total) \
             WHERE id = ?1 AND group_id = ?2 AND state = 'running'",
        )?
        .execute(params![run.0, group.0, cursor, at.0, total])?;
    if n == 0 {
        return Ok(false);
    }
    insert_outcomes(tx, run, &page.outcomes)?;
    Ok(true)
}

pub(super) fn record_outcomes(
    tx: &Connection,
    group: GroupId,
    run: AuditRunId,
    outcomes: &[MemberOutcome],
    at: UnixTime,
) -> StoreResult<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE audit_runs SET updated_at = ?3 \
             WHERE id = ?1 AND group_id = ?2 AND state = 'running'",
        )?
        .execute(params![run.0, group.0, at.0])?;
    if n == 0 {
        return Ok(false);
    }
    insert_outcomes(tx, run, outcomes)?;
    Ok(true)
}

/// Inserts outcomes; a member the run recorded already keeps its first one.
fn insert_outcomes(
    tx: &Connection,
    run: AuditRunId,
    outcomes: &[MemberOutcome],
) -> StoreResult<()> {
    for chunk in outcomes.chunks(CHUNK) {
        let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO audit_members (run_id, user_id, outcome, restricted) VALUES {values} \
             ON CONFLICT (run_id, user_id) DO NOTHING"
        );
        let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() * 4);
        for m in chunk {
            params.push(run.0.into());
            params.push(m.user.0.into());
            params.push(m.outcome.as_str().to_owned().into());
            params.push(i64::from(m.restricted).into());
        }
        tx.prepare_cached(&sql)?.execute(params_from_iter(params))?;
    }
    Ok(())
}

pub(super) fn end(
    conn: &Connection,
    group: GroupId,
    run: AuditRunId,
    state: AuditState,
    at: UnixTime,
) -> StoreResult<bool> {
    if state == AuditState::Running {
        return Err(StoreError::Conflict(
            "an audit is ended as finished or abandoned, not running".to_owned(),
        ));
    }
    let n = conn
        .prepare_cached(
            "UPDATE audit_runs SET state = ?3, ended_at = ?4, updated_at = ?4 \
             WHERE id = ?1 AND group_id = ?2 AND state = 'running'",
        )?
        .execute(params![run.0, group.0, state.as_str(), at.0])?;
    Ok(n > 0)
}

pub(super) fn counts(
    conn: &Connection,
    group: GroupId,
    run: AuditRunId,
) -> StoreResult<AuditCounts> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.outcome, m.restricted, COUNT(*) FROM audit_members m \
         JOIN audit_runs r ON r.id = m.run_id \
         WHERE r.group_id = ?1 AND m.run_id = ?2 GROUP BY m.outcome, m.restricted",
    )?;
    let mut rows = stmt.query(params![group.0, run.0])?;
    let mut counts = AuditCounts::default();
    while let Some(row) = rows.next()? {
        ar::add_count(row, group, &mut counts)?;
    }
    Ok(counts)
}

pub(super) fn not_subscribed(
    conn: &Connection,
    group: GroupId,
    run: AuditRunId,
    after: Option<UserId>,
    limit: u32,
) -> StoreResult<Vec<UserId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.user_id FROM audit_members m JOIN audit_runs r ON r.id = m.run_id \
         WHERE r.group_id = ?1 AND m.run_id = ?2 AND m.outcome = 'not_subscribed' AND m.user_id > ?3 \
         ORDER BY m.user_id LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            group.0,
            run.0,
            after.map_or(i64::MIN, |u| u.0),
            i64::from(limit)
        ],
        |r| r.get(0).map(UserId),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// --- MTProto sessions ---------------------------------------------------------

pub(super) fn session(conn: &Connection, name: &str) -> StoreResult<Option<MtprotoSession>> {
    let sql = format!("SELECT {SESSION_COLS} FROM mtproto_sessions WHERE name = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([name], |r| ar::session(r))
        .optional()?)
}

pub(super) fn save_session(conn: &Connection, s: &MtprotoSession, at: UnixTime) -> StoreResult<()> {
    let (dcs, updates) = ar::session_json(s)?;
    conn.prepare_cached(
        "INSERT INTO mtproto_sessions (name, home_dc, dc_options, updates, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (name) DO UPDATE SET home_dc = excluded.home_dc, \
           dc_options = excluded.dc_options, updates = excluded.updates, \
           updated_at = excluded.updated_at",
    )?
    .execute(params![s.name, s.home_dc, dcs, updates, at.0])?;
    Ok(())
}

pub(super) fn lease(
    tx: &Connection,
    name: &str,
    holder: &str,
    until: UnixTime,
    now: UnixTime,
) -> StoreResult<SessionLease> {
    tx.prepare_cached(
        "INSERT INTO mtproto_sessions (name, updated_at) VALUES (?1, ?2) \
         ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, now.0])?;
    let n = tx
        .prepare_cached(
            "UPDATE mtproto_sessions SET lease_holder = ?2, lease_until = ?3 \
             WHERE name = ?1 AND (lease_holder IS NULL OR lease_until IS NULL \
               OR lease_until < ?4 OR lease_holder = ?2)",
        )?
        .execute(params![name, holder, until.0, now.0])?;
    if n > 0 {
        return Ok(SessionLease::Granted);
    }
    let (holder, until): (String, i64) = tx
        .prepare_cached("SELECT lease_holder, lease_until FROM mtproto_sessions WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(SessionLease::HeldBy {
        holder,
        until: UnixTime(until),
    })
}

pub(super) fn release(conn: &Connection, name: &str, holder: &str) -> StoreResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE mtproto_sessions SET lease_holder = NULL, lease_until = NULL \
             WHERE name = ?1 AND lease_holder = ?2",
        )?
        .execute(params![name, holder])?;
    Ok(n > 0)
}

pub(super) fn peer(
    conn: &Connection,
    name: &str,
    peer_id: i64,
) -> StoreResult<Option<MtprotoPeer>> {
    let sql = format!("SELECT {PEER_COLS} FROM mtproto_peers WHERE session = ?1 AND peer_id = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![name, peer_id], |r| ar::peer(r))
        .optional()?)
}

pub(super) fn self_peer(conn: &Connection, name: &str) -> StoreResult<Option<MtprotoPeer>> {
    let sql =
        format!("SELECT {PEER_COLS} FROM mtproto_peers WHERE session = ?1 AND is_self = 1 LIMIT 1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([name], |r| ar::peer(r))
        .optional()?)
}

pub(super) fn save_peers(tx: &Connection, name: &str, peers: &[MtprotoPeer]) -> StoreResult<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO mtproto_peers (session, peer_id, access_hash, is_bot, is_self, channel_kind) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM mtproto_sessions WHERE name = ?1) \
         ON CONFLICT (session, peer_id) DO UPDATE SET \
           access_hash = COALESCE(excluded.access_hash, mtproto_peers.access_hash), \
           is_bot = COALESCE(excluded.is_bot, mtproto_peers.is_bot), \
           is_self = COALESCE(excluded.is_self, mtproto_peers.is_self), \
           channel_kind = COALESCE(excluded.channel_kind, mtproto_peers.channel_kind)",
    )?;
    for p in peers {
        stmt.execute(params![
            name,
            p.peer_id,
            p.access_hash,
            p.is_bot,
            p.is_self,
            p.channel_kind
        ])?;
    }
    Ok(())
}
