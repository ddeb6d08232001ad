//! The PostgreSQL side of the audit and MTProto-session methods: the statements, run by the
//! `Store` implementation in `postgres.rs` on a pooled connection or inside its transaction.

use postgres::GenericClient;

use crate::audit::{
    AuditCounts, AuditPage, AuditRun, AuditRunId, AuditState, MemberOutcome, NewAuditRun,
};
use crate::domain::{GroupId, UnixTime, UserId};
use crate::store::audit_rows::{self as ar, AUDIT_RUN_COLS, PEER_COLS, SESSION_COLS};
use crate::store::error::{StoreError, StoreResult};
use crate::store::mtproto::{MtprotoPeer, MtprotoSession, SessionLease};

use super::{db, is_unique_violation};

fn one_run(
    c: &mut impl GenericClient,
    filter: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> StoreResult<Option<AuditRun>> {
    let sql = format!("SELECT {AUDIT_RUN_COLS} FROM audit_runs WHERE {filter}");
    c.query_opt(&sql, params)
        .map_err(db)?
        .map(|r| ar::audit_run(&r))
        .transpose()
}

pub(super) fn start(
    tx: &mut postgres::Transaction<'_>,
    new: &NewAuditRun,
    at: UnixTime,
) -> StoreResult<AuditRun> {
    super::lock_group(tx, new.group)?;
    let cursor = ar::cursor_json(&crate::audit::AuditCursor::start(new.source))?;
    let sql = format!(
        "INSERT INTO audit_runs (group_id, state, apply, source, cursor, pages, started_at, updated_at) \
         VALUES ($1, 'running', $2, $3, $4, 0, $5, $5) RETURNING {AUDIT_RUN_COLS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &new.group.0,
                &new.apply,
                &new.source.as_str(),
                &cursor,
                &at.0,
            ],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "group {} has an unfinished audit: resume it or end it first",
                    new.group
                ))
            } else {
                db(e)
            }
        })?;
    ar::audit_run(&row)
}

pub(super) fn unfinished(
    c: &mut impl GenericClient,
    group: GroupId,
) -> StoreResult<Option<AuditRun>> {
    one_run(c, "group_id = $1 AND state = 'running'", &[&group.0])
}

pub(super) fn run_by_id(
    c: &mut impl GenericClient,
    group: GroupId,
    run: AuditRunId,
) -> StoreResult<Option<AuditRun>> {
    one_run(c, "group_id = $1 AND id = $2", &[&group.0, &run.0])
}

pub(super) fn audited(
    c: &mut impl GenericClient,
    group: GroupId,
    run: AuditRunId,
    users: &[UserId],
) -> StoreResult<Vec<UserId>> {
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    c.query(
        "SELECT m.user_id FROM audit_members m JOIN audit_runs r ON r.id = m.run_id \
         WHERE r.group_id = $1 AND m.run_id = $2 AND m.user_id = ANY($3::bigint[])",
        &[&group.0, &run.0, &ids],
    )
    .map_err(db)?
    .iter()
    .map(|r| r.try_get(0).map(UserId).map_err(db))
    .collect()
}

pub(super) fn record_page(
    tx: &mut postgres::Transaction<'_>,
    group: GroupId,
    run: AuditRunId,
    page: &AuditPage,
    at: UnixTime,
) -> StoreResult<bool> {
    let cursor = ar::cursor_json(&page.next)?;
    let total = page.directory_total.and_then(|t| i64::try_from(t).ok());
    let n = tx
        .execute(
            "UPDATE audit_runs SET cursor = $3, pages = pages + 1, updated_at = $4, \
               directory_total = COALESCE($5, directory_total) \
             WHERE id = $1 AND group_id = $2 AND state = 'running'",
            &[&run.0, &group.0, &cursor, &at.0, &total],
        )
        .map_err(db)?;
    if n == 0 {
        return Ok(false);
    }
    insert_outcomes(tx, run, &page.outcomes)?;
    Ok(true)
}

pub(super) fn record_outcomes(
    tx: &mut postgres::Transaction<'_>,
    group: GroupId,
    run: AuditRunId,
    outcomes: &[MemberOutcome],
    at: UnixTime,
) -> StoreResult<bool> {
    let n = tx
        .execute(
            "UPDATE audit_runs SET updated_at = $3 \
             WHERE id = $1 AND group_id = $2 AND state = 'running'",
            &[&run.0, &group.0, &at.0],
        )
        .map_err(db)?;
    if n == 0 {
        return Ok(false);
    }
    insert_outcomes(tx, run, outcomes)?;
    Ok(true)
}

/// Inserts outcomes; a member the run recorded already keeps its first one.
fn insert_outcomes(
    tx: &mut postgres::Transaction<'_>,
    run: AuditRunId,
    outcomes: &[MemberOutcome],
) -> StoreResult<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let users: Vec<i64> = outcomes.iter().map(|m| m.user.0).collect();
    let kinds: Vec<&str> = outcomes.iter().map(|m| m.outcome.as_str()).collect();
    let restricted: Vec<bool> = outcomes.iter().map(|m| m.restricted).collect();
    tx.execute(
        "INSERT INTO audit_members (run_id, user_id, outcome, restricted) \
         SELECT $1, v.u, v.o, v.r FROM unnest($2::bigint[], $3::text[], $4::boolean[]) AS v (u, o, r) \
         ON CONFLICT (run_id, user_id) DO NOTHING",
        &[&run.0, &users, &kinds, &restricted],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn end(
    c: &mut impl GenericClient,
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
    let n = c
        .execute(
            "UPDATE audit_runs SET state = $3, ended_at = $4, updated_at = $4 \
             WHERE id = $1 AND group_id = $2 AND state = 'running'",
            &[&run.0, &group.0, &state.as_str(), &at.0],
        )
        .map_err(db)?;
    Ok(n > 0)
}

pub(super) fn counts(
    c: &mut impl GenericClient,
    group: GroupId,
    run: AuditRunId,
) -> StoreResult<AuditCounts> {
    let rows = c
        .query(
            "SELECT m.outcome, m.restricted, COUNT(*) FROM audit_members m \
             JOIN audit_runs r ON r.id = m.run_id \
             WHERE r.group_id = $1 AND m.run_id = $2 GROUP BY m.outcome, m.restricted",
            &[&group.0, &run.0],
        )
        .map_err(db)?;
    let mut counts = AuditCounts::default();
    for row in &rows {
        ar::add_count(row, group, &mut counts)?;
    }
    Ok(counts)
}

pub(super) fn not_subscribed(
    c: &mut impl GenericClient,
    group: GroupId,
    run: AuditRunId,
    after: Option<UserId>,
    limit: u32,
) -> StoreResult<Vec<UserId>> {
    c.query(
        "SELECT m.user_id FROM audit_members m JOIN audit_runs r ON r.id = m.run_id \
         WHERE r.group_id = $1 AND m.run_id = $2 AND m.outcome = 'not_subscribed' AND m.user_id > $3 \
         ORDER BY m.user_id LIMIT $4",
        &[
            &group.0,
            &run.0,
            &after.map_or(i64::MIN, |u| u.0),
            &i64::from(limit),
        ],
    )
    .map_err(db)?
    .iter()
    .map(|r| r.try_get(0).map(UserId).map_err(db))
    .collect()
}

// --- MTProto sessions ---------------------------------------------------------

pub(super) fn session(
    c: &mut impl GenericClient,
    name: &str,
) -> StoreResult<Option<MtprotoSession>> {
    let sql = format!("SELECT {SESSION_COLS} FROM mtproto_sessions WHERE name = $1");
    c.query_opt(&sql, &[&name])
        .map_err(db)?
        .map(|r| ar::session(&r))
        .transpose()
}

pub(super) fn save_session(
    c: &mut impl GenericClient,
    s: &MtprotoSession,
    at: UnixTime,
) -> StoreResult<()> {
    let (dcs, updates) = ar::session_json(s)?;
    c.execute(
        "INSERT INTO mtproto_sessions (name, home_dc, dc_options, updates, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET home_dc = EXCLUDED.home_dc, \
           dc_options = EXCLUDED.dc_options, updates = EXCLUDED.updates, \
           updated_at = EXCLUDED.updated_at",
        &[&s.name, &i64::from(s.home_dc), &dcs, &updates, &at.0],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn lease(
    tx: &mut postgres::Transaction<'_>,
    name: &str,
    holder: &str,
    until: UnixTime,
    now: UnixTime,
) -> StoreResult<SessionLease> {
    tx.execute(
        "INSERT INTO mtproto_sessions (name, updated_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO NOTHING",
        &[&name, &now.0],
    )
    .map_err(db)?;
    // The row lock taken here serialises two instances asking at once.
    let row = tx
        .query_one(
            "SELECT lease_holder, lease_until FROM mtproto_sessions WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .map_err(db)?;
    let current: Option<String> = row.try_get(0).map_err(db)?;
    let current_until: Option<i64> = row.try_get(1).map_err(db)?;
    let free = match (&current, current_until) {
        (None, _) | (_, None) => true,
        (Some(h), Some(u)) => h == holder || u < now.0,
    };
    if !free {
        return Ok(SessionLease::HeldBy {
            holder: current.unwrap_or_default(),
            until: UnixTime(current_until.unwrap_or(0)),
        });
    }
    tx.execute(
        "UPDATE mtproto_sessions SET lease_holder = $2, lease_until = $3 WHERE name = $1",
        &[&name, &holder, &until.0],
    )
    .map_err(db)?;
    Ok(SessionLease::Granted)
}

pub(super) fn release(c: &mut impl GenericClient, name: &str, holder: &str) -> StoreResult<bool> {
    let n = c
        .execute(
            "UPDATE mtproto_sessions SET lease_holder = NULL, lease_until = NULL \
             WHERE name = $1 AND lease_holder = $2",
            &[&name, &holder],
        )
        .map_err(db)?;
    Ok(n > 0)
}

pub(super) fn peer(
    c: &mut impl GenericClient,
    name: &str,
    peer_id: i64,
) -> StoreResult<Option<MtprotoPeer>> {
    let sql = format!("SELECT {PEER_COLS} FROM mtproto_peers WHERE session = $1 AND peer_id = $2");
    c.query_opt(&sql, &[&name, &peer_id])
        .map_err(db)?
        .map(|r| ar::peer(&r))
        .transpose()
}

pub(super) fn self_peer(
    c: &mut impl GenericClient,
    name: &str,
) -> StoreResult<Option<MtprotoPeer>> {
    let sql =
        format!("SELECT {PEER_COLS} FROM mtproto_peers WHERE session = $1 AND is_self LIMIT 1");
    c.query_opt(&sql, &[&name])
        .map_err(db)?
        .map(|r| ar::peer(&r))
        .transpose()
}

pub(super) fn save_peers(
    tx: &mut postgres::Transaction<'_>,
    name: &str,
    peers: &[MtprotoPeer],
) -> StoreResult<()> {
    let stmt = tx
        .prepare(
            "INSERT INTO mtproto_peers (session, peer_id, access_hash, is_bot, is_self, channel_kind) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM mtproto_sessions WHERE name = $1) \
             ON CONFLICT (session, peer_id) DO UPDATE SET \
               access_hash = COALESCE(EXCLUDED.access_hash, mtproto_peers.access_hash), \
               is_bot = COALESCE(EXCLUDED.is_bot, mtproto_peers.is_bot), \
               is_self = COALESCE(EXCLUDED.is_self, mtproto_peers.is_self), \
               channel_kind = COALESCE(EXCLUDED.channel_kind, mtproto_peers.channel_kind)",
        )
        .map_err(db)?;
    for p in peers {
        tx.execute(
            &stmt,
            &[
                &name,
                &p.peer_id,
                &p.access_hash,
                &p.is_bot,
                &p.is_self,
                &p.channel_kind,
            ],
        )
        .map_err(db)?;
    }
    Ok(())
}
