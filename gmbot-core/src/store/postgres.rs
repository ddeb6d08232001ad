//! The PostgreSQL adapter of [`Store`](super::Store): `postgres` + `r2d2_postgres`, for production.
//!
//! The driver is blocking, so every call checks a connection out of an r2d2
//! pool inside `tokio::task::spawn_blocking`. The hot reads (group config,
//! groups of a channel, a member's active restriction) use per-connection
//! prepared statements, so after the first call on a connection they cost one
//! round trip and reuse the server's plan; `group()` is a single statement.
//! A pooled connection is checked (an empty query) only after it sat idle,
//! not on every checkout, which would cost one more round trip per call.
//! Settings are a JSONB column written from a text parameter and read back
//! as text, so no driver feature for JSON is needed.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};
use r2d2::{Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;

use async_trait::async_trait;

#[path = "postgres_audit.rs"]
mod audit;

use super::error::{StoreError, StoreResult};
use super::migrations::{
    migration_error, postgres_set, report, versions, MigrationReport, SchemaFit, SchemaStatus,
};
use super::mtproto::{MtprotoPeer, MtprotoSession, SessionLease};
use super::rows;
use super::{DatabaseUrl, MigrationMode, Store};
use crate::audit::{
    AuditCounts, AuditPage, AuditRun, AuditRunId, AuditState, MemberOutcome, NewAuditRun,
};
use crate::domain::{
    ChannelId, ChannelRef, ChannelUsername, EnforcedChannel, GroupId, GroupSettings, JoinRequest,
    JoinRequestState, JournaledUpdate, LiftReason, MessageId, NewJoinRequest, NewRestriction,
    Owner, ProtectRequest, ProtectedGroup, Restriction, RestrictionId, SeenMember, SettingChange,
    UnixTime, UserId,
};

/// Upper bound on pooled connections per process (PostgreSQL's default
/// `max_connections` is 100, shared by every instance and tool).
const POOL_MAX: u32 = 16;
/// How long to wait for a connection (TCP connect, or a free pooled one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled connection idle for longer is checked with an empty query before use.
const VALIDATE_AFTER_IDLE: Duration = Duration::from_secs(5);

type Manager = PostgresConnectionManager<NoTls>;
type Conn = PooledConnection<Manager>;

/// The SQL of the hot queries, shared with the query-plan tests so that what
/// is tested is exactly what runs.
pub(crate) mod sql {
    /// Columns of a group row, in the order `rows::group` reads them.
    macro_rules! group_cols {
        () => {
            "group_id, title, owner_id, state, paused_reason, settings::text, created_at, updated_at"
        };
    }
    /// Columns of a channel, in the order `rows::channel` reads them (from `c`).
    macro_rules! channel_cols {
        () => {
            "c.chat_id, c.username, c.title, c.invite_link"
        };
    }
    /// Columns of a restriction row, in the order `rows::restriction` reads them.
    macro_rules! restriction_cols {
        () => {
            "id, group_id, user_id, kind, state, reason, placed_at, until, lifted_at, lift_reason"
        };
    }
    /// Columns of a join request row, in the order `rows::join_request` reads them.
    macro_rules! join_request_cols {
        () => {
            "group_id, user_id, user_chat_id, requested_at, expires_at, notice_id, state, decided_at"
        };
    }
    pub(super) use {channel_cols, group_cols, join_request_cols, restriction_cols};

    /// A group's row by id. `$1` = group id.
    pub(crate) const GROUP_BY_ID: &str = concat!(
        "SELECT ",
        group_cols!(),
        " FROM protected_groups WHERE group_id = $1"
    );

    /// The group config in one round trip and one snapshot: the group's row
    /// repeated on each of its channels (`c.id` is NULL when it has none), in
    /// link order. `$1` = group id. The hot path of `group()`.
    pub(crate) const GROUP_WITH_CHANNELS: &str = concat!(
        "SELECT g.group_id, g.title, g.owner_id, g.state, g.paused_reason, g.settings::text,",
        " g.created_at, g.updated_at, c.id, ",
        channel_cols!(),
        " FROM protected_groups g",
        " LEFT JOIN group_channel_links l ON l.group_id = g.group_id",
        " LEFT JOIN enforced_channels c ON c.id = l.channel_id",
        " WHERE g.group_id = $1 ORDER BY l.position"
    );

    /// A group's channels in link order. `$1` = group id.
    pub(crate) const CHANNELS_OF_GROUP: &str = concat!(
        "SELECT ",
        channel_cols!(),
        " FROM group_channel_links l JOIN enforced_channels c ON c.id = l.channel_id",
        " WHERE l.group_id = $1 ORDER BY l.position"
    );

    /// Active groups linked to a channel. `$1` = channel chat id.
    pub(crate) const GROUPS_FOR_CHANNEL: &str = "SELECT l.group_id \
         FROM enforced_channels c \
         JOIN group_channel_links l ON l.channel_id = c.id \
         JOIN protected_groups g ON g.group_id = l.group_id \
         WHERE c.chat_id = $1 AND g.state = 'active' \
         ORDER BY l.group_id";

    /// A member's newest active restriction in a group. `$1` = group id, `$2` = user id.
    /// `state <> 'lifted'` is written exactly as in the partial indexes' predicate.
    pub(crate) const ACTIVE_RESTRICTION: &str = concat!(
        "SELECT ",
        restriction_cols!(),
        " FROM restrictions WHERE group_id = $1 AND user_id = $2 AND state <> 'lifted'",
        " ORDER BY id DESC LIMIT 1"
    );

    /// A member's active restrictions in every group. `$1` = user id.
    pub(crate) const ACTIVE_RESTRICTIONS_FOR_USER: &str = concat!(
        "SELECT ",
        restriction_cols!(),
        " FROM restrictions WHERE user_id = $1 AND state <> 'lifted' ORDER BY id"
    );
}

use sql::{channel_cols, group_cols, join_request_cols, restriction_cols};

/// [`Store`](super::Store) on PostgreSQL.
///
/// Cheap to clone (the pool is shared). It may be dropped anywhere, including
/// on an async worker: see [`PoolDropGuard`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool<Manager>,
    url: String,
    // Declared after `pool`, so it drops last and holds the last reference.
    _drop_guard: std::sync::Arc<PoolDropGuard>,
}

/// Holds a reference to the pool and, when the last store handle goes,
/// closes the connections on a plain thread: `postgres::Client` closes
/// itself by blocking on its own runtime, which panics on a tokio worker.
struct PoolDropGuard(Option<Pool<Manager>>);

impl Drop for PoolDropGuard {
    fn drop(&mut self) {
        let Some(pool) = self.0.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return drop(pool);
        }
        // If the thread cannot start, the closure is dropped here with the
        // pool inside `ManuallyDrop`: leaking it beats panicking, and the
        // server closes the sessions when the process exits.
        let pool = std::mem::ManuallyDrop::new(pool);
        let spawned = std::thread::Builder::new()
            .name("gmbot-pg-close".to_owned())
            .spawn(move || drop(std::mem::ManuallyDrop::into_inner(pool)));
        if let Err(e) = spawned {
            log::warn!("cannot start a thread to close PostgreSQL connections: {e}");
        }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .field("pool", &self.pool.state())
            .finish()
    }
}

impl PostgresStore {
    /// Connects, checks the schema (applying pending migrations under
    /// [`MigrationMode::Apply`]) and builds the connection pool.
    ///
    /// An unreachable server fails with [`StoreError::Unavailable`] within
    /// about five seconds; a schema this binary cannot run against is always
    /// refused, one ahead by compatible migrations is used as it is.
    pub async fn open(url: &DatabaseUrl, mode: MigrationMode) -> StoreResult<Self> {
        let config = config_of(url)?;
        let redacted = url.redacted();
        tokio::task::spawn_blocking(move || {
            // One direct connection first: it fails fast with the driver's
            // own error (r2d2 would retry until its timeout), and it runs
            // the schema check or migration.
            let mut client = connect(&config, &redacted)?;
            let status = schema_status(&mut client)?;
            status.check(mode)?;
            if !status.pending.is_empty() {
                // Only reachable under `Apply`: `check` refused it otherwise.
                migrate_locked(&mut client)?;
            }
            drop(client);
            let pool = Pool::builder()
                .max_size(POOL_MAX)
                .min_idle(Some(1))
                .connection_timeout(CONNECT_TIMEOUT)
                // Checked in `checkout` instead, only after idling.
                .test_on_check_out(false)
                .build(Manager::new(config, NoTls))
                .map_err(|e| StoreError::Unavailable {
                    url: redacted.clone(),
                    source: Box::new(e),
                })?;
            Ok(Self {
                _drop_guard: std::sync::Arc::new(PoolDropGuard(Some(pool.clone()))),
                pool,
                url: redacted,
            })
        })
        .await?
    }

    /// Applies pending migrations, safely against concurrent runs: the work is
    /// serialised by a PostgreSQL advisory lock keyed by the current schema.
    pub async fn migrate(url: &DatabaseUrl) -> StoreResult<MigrationReport> {
        let config = config_of(url)?;
        let redacted = url.redacted();
        tokio::task::spawn_blocking(move || {
            let mut client = connect(&config, &redacted)?;
            migrate_locked(&mut client)
        })
        .await?
    }

    /// The schema of the database a URL names, without checking or changing it.
    pub async fn status_of(url: &DatabaseUrl) -> StoreResult<SchemaStatus> {
        let config = config_of(url)?;
        let redacted = url.redacted();
        tokio::task::spawn_blocking(move || schema_status(&mut connect(&config, &redacted)?))
            .await?
    }

    /// The schema version of the database compared with this binary's.
    pub async fn schema_status(&self) -> StoreResult<SchemaStatus> {
        self.run(|c| schema_status(c)).await
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = checkout(&pool, &url, VALIDATE_AFTER_IDLE)?;
            let out = f(&mut conn);
            PooledConnection::extensions_mut(&mut conn).insert(LastUsed(Instant::now()));
            out
        })
        .await?
    }

    /// Runs `f` inside one transaction (committed if `f` succeeds, rolled back otherwise).
    async fn run_tx<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |conn| {
            let mut tx = conn.transaction().map_err(db)?;
            let out = f(&mut tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }
}

/// When a pooled connection was last used successfully or validated.
struct LastUsed(Instant);

/// A pooled connection that is known to work.
///
/// r2d2's own check-on-checkout costs a round trip on every call, which
/// is a third of a hot read; instead a connection is checked only after it
/// sat idle for [`VALIDATE_AFTER_IDLE`] (a server restart or an idle-killing
/// proxy is then caught before the query). A broken connection reports
/// itself closed, so dropping it makes r2d2 discard it; the loop then tries
/// the next one, at most once per pooled connection.
fn checkout(pool: &Pool<Manager>, url: &str, validate_after: Duration) -> StoreResult<Conn> {
    let unavailable = |source: crate::store::BoxError| StoreError::Unavailable {
        url: url.to_owned(),
        source,
    };
    let mut last = None;
    for _ in 0..=POOL_MAX {
        let mut conn = pool.get().map_err(|e| unavailable(Box::new(e)))?;
        let recent = PooledConnection::extensions(&conn)
            .get::<LastUsed>()
            .is_some_and(|t| t.0.elapsed() < validate_after);
        if recent {
            return Ok(conn);
        }
        match conn.simple_query("") {
            Ok(_) => {
                PooledConnection::extensions_mut(&mut conn).insert(LastUsed(Instant::now()));
                return Ok(conn);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => unavailable(Box::new(e)),
        None => unavailable("no working connection in the pool".into()),
    })
}

// --- connecting and migrating ---------------------------------------------

fn config_of(url: &DatabaseUrl) -> StoreResult<postgres::Config> {
    let DatabaseUrl::Postgres(raw) = url else {
        return Err(StoreError::InvalidUrl {
            url: url.redacted(),
            reason: "the PostgreSQL adapter needs a postgres:// URL".to_owned(),
        });
    };
    let mut config: postgres::Config =
        raw.parse()
            .map_err(|e: postgres::Error| StoreError::InvalidUrl {
                url: url.redacted(),
                reason: e.to_string(),
            })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

fn connect(config: &postgres::Config, redacted: &str) -> StoreResult<Client> {
    config.connect(NoTls).map_err(|e| StoreError::Unavailable {
        url: redacted.to_owned(),
        source: Box::new(e),
    })
}

/// The applied migrations per refinery's history table and `schema_compat`
/// (either may be missing: an empty schema, or one before V6), against what
/// this binary ships.
fn schema_status(client: &mut Client) -> StoreResult<SchemaStatus> {
    let shipped = versions(postgres_set::migrations::runner().get_migrations());
    let row = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL, \
                    to_regclass('schema_compat') IS NOT NULL",
            &[],
        )
        .map_err(db)?;
    let (history, compat_table): (bool, bool) = (get(&row, 0)?, get(&row, 1)?);
    let mut applied = Vec::new();
    if history {
        for row in client
            .query("SELECT version::bigint FROM refinery_schema_history", &[])
            .map_err(db)?
        {
            applied.push(get::<i64>(&row, 0)?);
        }
    }
    let mut compat = Vec::new();
    if compat_table {
        for row in client
            .query(
                "SELECT version::bigint, min_reader_version::bigint FROM schema_compat",
                &[],
            )
            .map_err(db)?
        {
            compat.push((get::<i64>(&row, 0)?, get::<i64>(&row, 1)?));
        }
    }
    Ok(SchemaStatus::from_parts(&applied, &compat, &shipped))
}

const LOCK_KEY: &str = "hashtext('gmbot-migrate:' || COALESCE(current_schema(), ''))";

/// Takes the migration lock on this connection, migrates, and always unlocks.
fn migrate_locked(client: &mut Client) -> StoreResult<MigrationReport> {
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))
        .map_err(|e| StoreError::Migration(Box::new(e)))?;
    let result = migrate_unlocked(client);
    let unlocked = client.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"));
    let out = result?;
    // A failed unlock means the session is broken; the server drops
    // session-level locks with the session, so reporting it is enough.
    unlocked.map_err(|e| StoreError::Migration(Box::new(e)))?;
    Ok(out)
}

fn migrate_unlocked(client: &mut Client) -> StoreResult<MigrationReport> {
    let before = schema_status(client)?;
    before.check(MigrationMode::Apply)?;
    if before.fit() == SchemaFit::AheadCompatible {
        // Refinery would refuse the history's unknown versions; nothing is pending.
        return Ok(report(None, before));
    }
    let applied = postgres_set::migrations::runner()
        .set_abort_divergent(true)
        .run(client)
        .map_err(migration_error)?;
    Ok(report(Some(&applied), schema_status(client)?))
}

// --- errors and decoding -------------------------------------------------

fn db(e: postgres::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn corrupt(e: postgres::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(corrupt)
}

impl rows::Columns for Row {
    type Error = StoreError;

    fn int(&self, column: usize) -> StoreResult<i64> {
        get(self, column)
    }

    fn opt_int(&self, column: usize) -> StoreResult<Option<i64>> {
        get(self, column)
    }

    fn text(&self, column: usize) -> StoreResult<String> {
        get(self, column)
    }

    fn opt_text(&self, column: usize) -> StoreResult<Option<String>> {
        get(self, column)
    }

    fn flag(&self, column: usize) -> StoreResult<bool> {
        get(self, column)
    }

    fn opt_flag(&self, column: usize) -> StoreResult<Option<bool>> {
        get(self, column)
    }

    fn bad(&self, _column: usize, bad: rows::Bad<'_>) -> StoreError {
        StoreError::Corrupt(match bad {
            rows::Bad::Unknown {
                of: rows::Subject::Group(id),
                what,
                value,
            } => format!("group {id}: unknown {what} `{value}`"),
            rows::Bad::Unknown {
                of: rows::Subject::Restriction(id),
                what,
                value,
            } => format!("restriction {}: unknown {what} `{value}`", id.0),
            rows::Bad::Unknown {
                of: rows::Subject::JoinRequest(group, user),
                what,
                value,
            } => format!("join request of {user} in {group}: unknown {what} `{value}`"),
            rows::Bad::Settings(id, e) => format!("group {id}: settings: {e}"),
            rows::Bad::Username(e) => format!("channel username: {e}"),
            rows::Bad::Json(what, e) => format!("{what}: {e}"),
        })
    }
}

fn restrictions_from_rows(found: &[Row]) -> StoreResult<Vec<Restriction>> {
    found.iter().map(rows::restriction).collect()
}

/// Runs a restriction query and decodes every row.
fn query_restrictions(
    conn: &mut Conn,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Restriction>> {
    let found = conn.query(sql, params).map_err(db)?;
    restrictions_from_rows(&found)
}

/// Runs a `SELECT COUNT(*)` query.
fn count(conn: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
    let row = conn.query_one(sql, params).map_err(db)?;
    let n: i64 = get(&row, 0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn limit_of(limit: u32) -> i64 {
    i64::from(limit)
}

// --- prepared statements for the hot reads -------------------------------

/// Statements prepared on one pooled connection, kept in the connection's r2d2 extensions.
#[derive(Default)]
struct Prepared(HashMap<&'static str, Statement>);

/// Runs one of the hot queries with a statement prepared once per connection.
fn query_prepared(
    conn: &mut Conn,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    let cached = PooledConnection::extensions(conn)
        .get::<Prepared>()
        .and_then(|p| p.0.get(sql).cloned());
    let stmt = match cached {
        Some(s) => s,
        None => {
            let s = conn.prepare(sql).map_err(db)?;
            let ext = PooledConnection::extensions_mut(conn);
            if ext.get::<Prepared>().is_none() {
                ext.insert(Prepared::default());
            }
            if let Some(p) = ext.get_mut::<Prepared>() {
                p.0.insert(sql, s.clone());
            }
            s
        }
    };
    conn.query(&stmt, params).map_err(db)
}

fn load_group(conn: &mut Conn, group: GroupId) -> StoreResult<Option<ProtectedGroup>> {
    let rows = query_prepared(conn, sql::GROUP_WITH_CHANNELS, &[&group.0])?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut channels = Vec::with_capacity(rows.len());
    for row in &rows {
        if get::<Option<i64>>(row, 8)?.is_some() {
            channels.push(rows::channel(row, 9)?);
        }
    }
    rows::group(first, channels).map(Some)
}

/// The same read inside a transaction (writes return the group as stored).
fn load_group_tx(tx: &mut Transaction<'_>, group: GroupId) -> StoreResult<ProtectedGroup> {
    let row = tx
        .query_opt(sql::GROUP_BY_ID, &[&group.0])
        .map_err(db)?
        .ok_or(StoreError::UnknownGroup(group))?;
    let channels = tx
        .query(sql::CHANNELS_OF_GROUP, &[&group.0])
        .map_err(db)?
        .iter()
        .map(|r| rows::channel(r, 0))
        .collect::<StoreResult<Vec<_>>>()?;
    rows::group(&row, channels)
}

// --- write helpers (inside a transaction) --------------------------------

/// Locks a group's row; `UnknownGroup` if there is none.
fn lock_group(tx: &mut Transaction<'_>, group: GroupId) -> StoreResult<()> {
    tx.query_opt(
        "SELECT 1 FROM protected_groups WHERE group_id = $1 FOR UPDATE",
        &[&group.0],
    )
    .map_err(db)?
    .map(|_| ())
    .ok_or(StoreError::UnknownGroup(group))
}

/// Row id of the stored channel with this chat id, else with this username.
fn find_channel(
    tx: &mut Transaction<'_>,
    chat_id: Option<i64>,
    username_key: Option<&str>,
) -> StoreResult<Option<i64>> {
    if let Some(chat_id) = chat_id {
        if let Some(row) = tx
            .query_opt(
                "SELECT id FROM enforced_channels WHERE chat_id = $1",
                &[&chat_id],
            )
            .map_err(db)?
        {
            return get(&row, 0).map(Some);
        }
    }
    if let Some(key) = username_key {
        if let Some(row) = tx
            .query_opt(
                "SELECT id FROM enforced_channels WHERE username_key = $1",
                &[&key],
            )
            .map_err(db)?
        {
            return get(&row, 0).map(Some);
        }
    }
    Ok(None)
}

/// Stores a channel (found by chat id, else by username) filling only the
/// fields still missing, and returns its row id.
fn upsert_channel(tx: &mut Transaction<'_>, ch: &EnforcedChannel) -> StoreResult<i64> {
    let chat_id = ch.id.map(|c| c.0);
    let username = ch.username.as_ref().map(|u| u.as_str().to_owned());
    let key = ch.username.as_ref().map(ChannelUsername::canonical);
    if chat_id.is_none() && key.is_none() {
        return Err(StoreError::Conflict(
            "a channel needs an id or a username".to_owned(),
        ));
    }
    for _ in 0..2 {
        if let Some(id) = find_channel(tx, chat_id, key.as_deref())? {
            tx.execute(
                "UPDATE enforced_channels SET \
                   chat_id = COALESCE(chat_id, $2), \
                   username = COALESCE(username, $3), \
                   username_key = COALESCE(username_key, $4), \
                   title = COALESCE(title, $5), \
                   invite_link = COALESCE(invite_link, $6) \
                 WHERE id = $1",
                &[&id, &chat_id, &username, &key, &ch.title, &ch.invite_link],
            )
            .map_err(|e| unique_conflict(e, ch))?;
            return Ok(id);
        }
        // ON CONFLICT DO NOTHING: a concurrent insert of the same channel
        // wins, and the second pass finds its row.
        if let Some(row) = tx
            .query_opt(
                "INSERT INTO enforced_channels (chat_id, username, username_key, title, invite_link) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
                &[&chat_id, &username, &key, &ch.title, &ch.invite_link],
            )
            .map_err(db)?
        {
            return get(&row, 0);
        }
    }
    Err(StoreError::Conflict(format!(
        "channel {ch} could not be stored"
    )))
}

fn unique_conflict(e: postgres::Error, ch: &EnforcedChannel) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(format!(
            "channel {ch}: its id and username belong to two different stored channels"
        ))
    } else {
        db(e)
    }
}

/// Links a stored channel at the end of a group's list; `false` if already linked.
fn link(
    tx: &mut Transaction<'_>,
    group: GroupId,
    channel_row: i64,
    at: UnixTime,
) -> StoreResult<bool> {
    let n = tx
        .execute(
            "INSERT INTO group_channel_links (group_id, channel_id, position, linked_at) \
             SELECT $1, $2, COALESCE(MAX(position), 0) + 1, $3 \
             FROM group_channel_links WHERE group_id = $1 \
             ON CONFLICT (group_id, channel_id) DO NOTHING",
            &[&group.0, &channel_row, &at.0],
        )
        .map_err(db)?;
    Ok(n > 0)
}

fn touch_group(tx: &mut Transaction<'_>, group: GroupId, at: UnixTime) -> StoreResult<()> {
    tx.execute(
        "UPDATE protected_groups SET updated_at = $2 WHERE group_id = $1",
        &[&group.0, &at.0],
    )
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn upsert_owner(&self, owner: &Owner) -> StoreResult<()> {
        let o = owner.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO owners (user_id, username, display_name, can_be_messaged, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) \
                 ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username, \
                   display_name = EXCLUDED.display_name, \
                   can_be_messaged = EXCLUDED.can_be_messaged, \
                   updated_at = GREATEST(owners.updated_at, EXCLUDED.updated_at)",
                &[&o.user_id.0, &o.username, &o.display_name, &o.can_be_messaged, &o.created_at.0],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn owner(&self, user: UserId) -> StoreResult<Option<Owner>> {
        self.run(move |c| {
            c.query_opt(
                "SELECT user_id, username, display_name, can_be_messaged, created_at \
                 FROM owners WHERE user_id = $1",
                &[&user.0],
            )
            .map_err(db)?
            .as_ref()
            .map(rows::owner)
            .transpose()
        })
        .await
    }

    async fn protect(&self, req: &ProtectRequest, at: UnixTime) -> StoreResult<ProtectedGroup> {
        let req = req.clone();
        let defaults = serde_json::to_string(&GroupSettings::default())
            .map_err(|e| StoreError::Corrupt(format!("default settings: {e}")))?;
        self.run_tx(move |tx| {
            let g = req.group;
            if let Some(owner) = req.owner {
                tx.execute(
                    "INSERT INTO owners (user_id, can_be_messaged, created_at, updated_at) \
                     VALUES ($1, FALSE, $2, $2) ON CONFLICT (user_id) DO NOTHING",
                    &[&owner.0, &at.0],
                )
                .map_err(db)?;
            }
            tx.execute(
                "INSERT INTO protected_groups \
                   (group_id, title, owner_id, state, paused_reason, settings, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'active', NULL, $4::text::jsonb, $5, $5) \
                 ON CONFLICT (group_id) DO UPDATE SET \
                   title = COALESCE(EXCLUDED.title, protected_groups.title), \
                   owner_id = COALESCE(EXCLUDED.owner_id, protected_groups.owner_id), \
                   state = 'active', paused_reason = NULL, updated_at = EXCLUDED.updated_at",
                &[&g.0, &req.title, &req.owner.map(|u| u.0), &defaults, &at.0],
            )
            .map_err(db)?;
            for ch in &req.channels {
                let row = upsert_channel(tx, ch)?;
                link(tx, g, row, at)?;
            }
            load_group_tx(tx, g)
        })
        .await
    }

    async fn unprotect(&self, group: GroupId, at: UnixTime) -> StoreResult<bool> {
        self.run_tx(move |tx| {
            let n = tx
                .execute(
                    "UPDATE protected_groups SET state = 'unprotected', paused_reason = NULL, \
                     updated_at = $2 WHERE group_id = $1",
                    &[&group.0, &at.0],
                )
                .map_err(db)?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM group_channel_links WHERE group_id = $1",
                &[&group.0],
            )
            .map_err(db)?;
            Ok(true)
        })
        .await
    }

    async fn pause(&self, group: GroupId, reason: &str, at: UnixTime) -> StoreResult<bool> {
        let reason = reason.to_owned();
        self.run(move |c| {
            let n = c
                .execute(
                    "UPDATE protected_groups SET state = 'paused', paused_reason = $2, updated_at = $3 \
                     WHERE group_id = $1 AND state = 'active'",
                    &[&group.0, &reason, &at.0],
                )
                .map_err(db)?;
            if n > 0 {
                return Ok(true);
            }
            // Already paused or unprotected: the group is known, nothing to do.
            let known = c
                .query_opt(
                    "SELECT 1 FROM protected_groups WHERE group_id = $1",
                    &[&group.0],
                )
                .map_err(db)?;
            Ok(known.is_some())
        })
        .await
    }

    async fn resume(&self, group: GroupId, at: UnixTime) -> StoreResult<bool> {
        self.run(move |c| {
            let n = c
                .execute(
                    "UPDATE protected_groups SET state = 'active', paused_reason = NULL, updated_at = $2 \
                     WHERE group_id = $1 AND state = 'paused'",
                    &[&group.0, &at.0],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn group(&self, group: GroupId) -> StoreResult<Option<ProtectedGroup>> {
        self.run(move |c| load_group(c, group)).await
    }

    async fn list_groups(&self) -> StoreResult<Vec<ProtectedGroup>> {
        self.run(|c| {
            // One snapshot for both reads, so a concurrent change cannot
            // attach channels to the wrong list.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(db)?;
            let groups = tx
                .query(
                    concat!("SELECT ", group_cols!(), " FROM protected_groups ORDER BY group_id"),
                    &[],
                )
                .map_err(db)?;
            let links = tx
                .query(
                    concat!(
                        "SELECT l.group_id, ",
                        channel_cols!(),
                        " FROM group_channel_links l JOIN enforced_channels c ON c.id = l.channel_id",
                        " ORDER BY l.group_id, l.position"
                    ),
                    &[],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            let mut channels: HashMap<i64, Vec<EnforcedChannel>> = HashMap::new();
            for row in &links {
                channels
                    .entry(get(row, 0)?)
                    .or_default()
                    .push(rows::channel(row, 1)?);
            }
            groups
                .iter()
                .map(|row| {
                    let id: i64 = get(row, 0)?;
                    rows::group(row, channels.remove(&id).unwrap_or_default())
                })
                .collect()
        })
        .await
    }

    async fn link_channel(
        &self,
        group: GroupId,
        channel: &EnforcedChannel,
        at: UnixTime,
    ) -> StoreResult<bool> {
        let channel = channel.clone();
        self.run_tx(move |tx| {
            lock_group(tx, group)?;
            let row = upsert_channel(tx, &channel)?;
            let linked = link(tx, group, row, at)?;
            if linked {
                touch_group(tx, group, at)?;
            }
            Ok(linked)
        })
        .await
    }

    async fn unlink_channel(
        &self,
        group: GroupId,
        channel: &ChannelRef,
        at: UnixTime,
    ) -> StoreResult<bool> {
        let channel = channel.clone();
        self.run_tx(move |tx| {
            let n = match &channel {
                ChannelRef::Id(id) => tx.execute(
                    "DELETE FROM group_channel_links l USING enforced_channels c \
                     WHERE l.channel_id = c.id AND l.group_id = $1 AND c.chat_id = $2",
                    &[&group.0, &id.0],
                ),
                ChannelRef::Username(u) => tx.execute(
                    "DELETE FROM group_channel_links l USING enforced_channels c \
                     WHERE l.channel_id = c.id AND l.group_id = $1 AND c.username_key = $2",
                    &[&group.0, &u.canonical()],
                ),
            }
            .map_err(db)?;
            if n > 0 {
                touch_group(tx, group, at)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn update_channel(&self, channel: &EnforcedChannel) -> StoreResult<bool> {
        let ch = channel.clone();
        self.run_tx(move |tx| {
            let chat_id = ch.id.map(|c| c.0);
            let username = ch.username.as_ref().map(|u| u.as_str().to_owned());
            let key = ch.username.as_ref().map(ChannelUsername::canonical);
            let Some(id) = find_channel(tx, chat_id, key.as_deref())? else {
                return Ok(false);
            };
            tx.execute(
                "UPDATE enforced_channels SET \
                   chat_id = COALESCE($2, chat_id), \
                   username = COALESCE($3, username), \
                   username_key = COALESCE($4, username_key), \
                   title = COALESCE($5, title), \
                   invite_link = COALESCE($6, invite_link) \
                 WHERE id = $1",
                &[&id, &chat_id, &username, &key, &ch.title, &ch.invite_link],
            )
            .map_err(|e| unique_conflict(e, &ch))?;
            Ok(true)
        })
        .await
    }

    async fn update_settings(
        &self,
        group: GroupId,
        changes: &[SettingChange],
        at: UnixTime,
    ) -> StoreResult<GroupSettings> {
        let changes = changes.to_vec();
        self.run_tx(move |tx| {
            let row = tx
                .query_opt(
                    "SELECT settings::text FROM protected_groups WHERE group_id = $1 FOR UPDATE",
                    &[&group.0],
                )
                .map_err(db)?
                .ok_or(StoreError::UnknownGroup(group))?;
            let text: String = get(&row, 0)?;
            let settings = rows::apply_settings(group, &text, &changes)?;
            let text = serde_json::to_string(&settings)
                .map_err(|e| StoreError::Corrupt(format!("group {group}: settings: {e}")))?;
            tx.execute(
                "UPDATE protected_groups SET settings = $2::text::jsonb, updated_at = $3 \
                 WHERE group_id = $1",
                &[&group.0, &text, &at.0],
            )
            .map_err(db)?;
            Ok(settings)
        })
        .await
    }

    async fn groups_for_channel(&self, channel: ChannelId) -> StoreResult<Vec<GroupId>> {
        self.run(move |c| {
            query_prepared(c, sql::GROUPS_FOR_CHANNEL, &[&channel.0])?
                .iter()
                .map(|r| get(r, 0).map(GroupId))
                .collect()
        })
        .await
    }

    async fn migrate_group(&self, from: GroupId, to: GroupId, at: UnixTime) -> StoreResult<()> {
        self.run_tx(move |tx| {
            lock_group(tx, from)?;
            if from == to {
                return Ok(());
            }
            let taken = tx
                .query_opt(
                    "SELECT 1 FROM protected_groups WHERE group_id = $1",
                    &[&to.0],
                )
                .map_err(db)?;
            if taken.is_some() {
                return Err(StoreError::Conflict(format!(
                    "group {from} cannot move to {to}: {to} is already known"
                )));
            }
            // ON UPDATE CASCADE carries links, restrictions and seen members along.
            tx.execute(
                "UPDATE protected_groups SET group_id = $2, updated_at = $3 WHERE group_id = $1",
                &[&from.0, &to.0, &at.0],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!(
                        "group {from} cannot move to {to}: {to} is already known"
                    ))
                } else {
                    db(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn place_restriction(
        &self,
        new: &NewRestriction,
        at: UnixTime,
    ) -> StoreResult<(Restriction, bool)> {
        let new = new.clone();
        self.run(move |c| {
            let row = c
                .query_opt(
                    concat!(
                        "INSERT INTO restrictions (group_id, user_id, kind, state, reason, placed_at, until) ",
                        "SELECT $1, $2, $3, 'pending', $4, $5, $6 ",
                        "WHERE EXISTS (SELECT 1 FROM protected_groups WHERE group_id = $1) ",
                        // One open row per member (migration V2): a concurrent or repeated
                        // record waits for the other insert, then returns its row below.
                        "ON CONFLICT (group_id, user_id) WHERE state <> 'lifted' DO NOTHING ",
                        "RETURNING ",
                        restriction_cols!()
                    ),
                    &[
                        &new.group.0,
                        &new.user.0,
                        &new.kind.as_str(),
                        &new.reason,
                        &at.0,
                        &new.until.map(|u| u.0),
                    ],
                )
                .map_err(|e| {
                    // The group vanished between the check and the insert.
                    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                        StoreError::UnknownGroup(new.group)
                    } else {
                        db(e)
                    }
                })?;
            let fresh = row.is_some();
            let row = match row {
                Some(row) => row,
                // Nothing inserted: the member already has an open row, or the group is unknown.
                None => c
                    .query_opt(
                        concat!(
                            "SELECT ",
                            restriction_cols!(),
                            " FROM restrictions WHERE group_id = $1 AND user_id = $2 AND state <> 'lifted'"
                        ),
                        &[&new.group.0, &new.user.0],
                    )
                    .map_err(db)?
                    .ok_or(StoreError::UnknownGroup(new.group))?,
            };
            Ok((rows::restriction(&row)?, fresh))
        })
        .await
    }

    async fn confirm_restriction(&self, group: GroupId, id: RestrictionId) -> StoreResult<bool> {
        self.run(move |c| {
            let n = c
                .execute(
                    "UPDATE restrictions SET state = 'active' \
                     WHERE group_id = $1 AND id = $2 AND state = 'pending'",
                    &[&group.0, &id.0],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn lift_restriction(
        &self,
        group: GroupId,
        id: RestrictionId,
        reason: LiftReason,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.run(move |c| {
            let n = c
                .execute(
                    "UPDATE restrictions SET state = 'lifted', lifted_at = $3, lift_reason = $4 \
                     WHERE group_id = $1 AND id = $2 AND state <> 'lifted'",
                    &[&group.0, &id.0, &at.0, &reason.as_str()],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn lift_member(
        &self,
        group: GroupId,
        user: UserId,
        reason: LiftReason,
        at: UnixTime,
    ) -> StoreResult<Vec<Restriction>> {
        self.run(move |c| {
            let mut lifted = query_restrictions(
                c,
                concat!(
                    "UPDATE restrictions SET state = 'lifted', lifted_at = $3, lift_reason = $4 ",
                    "WHERE group_id = $1 AND user_id = $2 AND state <> 'lifted' RETURNING ",
                    restriction_cols!()
                ),
                &[&group.0, &user.0, &at.0, &reason.as_str()],
            )?;
            lifted.sort_by_key(|r| r.id);
            Ok(lifted)
        })
        .await
    }

    async fn active_restriction(
        &self,
        group: GroupId,
        user: UserId,
    ) -> StoreResult<Option<Restriction>> {
        self.run(move |c| {
            query_prepared(c, sql::ACTIVE_RESTRICTION, &[&group.0, &user.0])?
                .first()
                .map(rows::restriction)
                .transpose()
        })
        .await
    }

    async fn active_restrictions(&self, group: GroupId) -> StoreResult<Vec<Restriction>> {
        self.run(move |c| {
            query_restrictions(
                c,
                concat!(
                    "SELECT ",
                    restriction_cols!(),
                    " FROM restrictions WHERE group_id = $1 AND state <> 'lifted' ORDER BY id"
                ),
                &[&group.0],
            )
        })
        .await
    }

    async fn count_active_restrictions(&self, group: GroupId) -> StoreResult<u64> {
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM restrictions WHERE group_id = $1 AND state <> 'lifted'",
                &[&group.0],
            )
        })
        .await
    }

    async fn active_restrictions_for_user(&self, user: UserId) -> StoreResult<Vec<Restriction>> {
        self.run(move |c| {
            let rows = query_prepared(c, sql::ACTIVE_RESTRICTIONS_FOR_USER, &[&user.0])?;
            restrictions_from_rows(&rows)
        })
        .await
    }

    async fn active_restrictions_page(
        &self,
        after: Option<RestrictionId>,
        limit: u32,
    ) -> StoreResult<Vec<Restriction>> {
        self.run(move |c| {
            let after = after.map_or(i64::MIN, |a| a.0);
            query_restrictions(
                c,
                concat!(
                    "SELECT ",
                    restriction_cols!(),
                    " FROM restrictions WHERE state <> 'lifted' AND id > $1 ORDER BY id LIMIT $2"
                ),
                &[&after, &limit_of(limit)],
            )
        })
        .await
    }

    async fn restriction_history(
        &self,
        group: GroupId,
        limit: u32,
    ) -> StoreResult<Vec<Restriction>> {
        self.run(move |c| {
            query_restrictions(
                c,
                concat!(
                    "SELECT ",
                    restriction_cols!(),
                    " FROM restrictions WHERE group_id = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&group.0, &limit_of(limit)],
            )
        })
        .await
    }

    async fn record_seen(&self, group: GroupId, user: UserId, at: UnixTime) -> StoreResult<()> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO seen_members (group_id, user_id, first_seen, last_seen) \
                 SELECT $1, $2, $3, $3 \
                 WHERE EXISTS (SELECT 1 FROM protected_groups WHERE group_id = $1) \
                 ON CONFLICT (group_id, user_id) DO UPDATE \
                   SET last_seen = GREATEST(seen_members.last_seen, EXCLUDED.last_seen)",
                &[&group.0, &user.0, &at.0],
            )
            .map(|_| ())
            .or_else(|e| {
                // The group vanished between the check and the insert: still a no-op.
                if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                    Ok(())
                } else {
                    Err(db(e))
                }
            })
        })
        .await
    }

    async fn record_seen_many(&self, rows: &[(GroupId, UserId, UnixTime)]) -> StoreResult<()> {
        let rows = super::coalesce_seen(rows);
        if rows.is_empty() {
            return Ok(());
        }
        let upsert = move |tx: &mut Transaction<'_>| -> Result<(), postgres::Error> {
            for chunk in rows.chunks(super::SEEN_CHUNK) {
                let groups: Vec<i64> = chunk.iter().map(|r| r.0).collect();
                let users: Vec<i64> = chunk.iter().map(|r| r.1).collect();
                let times: Vec<i64> = chunk.iter().map(|r| r.2).collect();
                tx.execute(
                    "INSERT INTO seen_members (group_id, user_id, first_seen, last_seen) \
                     SELECT v.g, v.u, v.t, v.t \
                     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v (g, u, t) \
                     WHERE EXISTS (SELECT 1 FROM protected_groups p WHERE p.group_id = v.g) \
                     ON CONFLICT (group_id, user_id) DO UPDATE \
                       SET last_seen = GREATEST(seen_members.last_seen, EXCLUDED.last_seen)",
                    &[&groups, &users, &times],
                )?;
            }
            Ok(())
        };
        self.run(move |c| {
            // A group removed between the EXISTS check and the insert fails the
            // whole statement; the second attempt no longer sees that group.
            let mut attempt = 0;
            loop {
                let mut tx = c.transaction().map_err(db)?;
                match upsert(&mut tx) {
                    Ok(()) => return tx.commit().map_err(db),
                    Err(e)
                        if attempt == 0 && e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) =>
                    {
                        drop(tx);
                        attempt += 1;
                    }
                    Err(e) => return Err(db(e)),
                }
            }
        })
        .await
    }

    async fn seen_member(&self, group: GroupId, user: UserId) -> StoreResult<Option<SeenMember>> {
        self.run(move |c| {
            c.query_opt(
                "SELECT group_id, user_id, first_seen, last_seen FROM seen_members \
                 WHERE group_id = $1 AND user_id = $2",
                &[&group.0, &user.0],
            )
            .map_err(db)?
            .as_ref()
            .map(rows::seen)
            .transpose()
        })
        .await
    }

    async fn seen_members(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<SeenMember>> {
        self.run(move |c| {
            let after = after.map_or(i64::MIN, |a| a.0);
            c.query(
                "SELECT group_id, user_id, first_seen, last_seen FROM seen_members \
                 WHERE group_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
                &[&group.0, &after, &limit_of(limit)],
            )
            .map_err(db)?
            .iter()
            .map(rows::seen)
            .collect()
        })
        .await
    }

    async fn recently_seen(
        &self,
        group: GroupId,
        before: Option<(UnixTime, UserId)>,
        limit: u32,
    ) -> StoreResult<Vec<SeenMember>> {
        // No index on last_seen: the group's rows are found by the primary key
        // and sorted (a warm-up reads a few pages at start, not on the hot path).
        let (at, user) = before.map_or((i64::MAX, i64::MAX), |(t, u)| (t.0, u.0));
        self.run(move |c| {
            c.query(
                "SELECT group_id, user_id, first_seen, last_seen FROM seen_members \
                 WHERE group_id = $1 AND (last_seen, user_id) < ($2, $3) \
                 ORDER BY last_seen DESC, user_id DESC LIMIT $4",
                &[&group.0, &at, &user, &limit_of(limit)],
            )
            .map_err(db)?
            .iter()
            .map(rows::seen)
            .collect()
        })
        .await
    }

    async fn count_seen(&self, group: GroupId) -> StoreResult<u64> {
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM seen_members WHERE group_id = $1",
                &[&group.0],
            )
        })
        .await
    }

    async fn journal_updates(&self, updates: &[JournaledUpdate]) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let updates = updates.to_vec();
        self.run(move |c| {
            let mut tx = c.transaction().map_err(db)?;
            for chunk in updates.chunks(super::JOURNAL_CHUNK) {
                let ids: Vec<i64> = chunk.iter().map(|u| u.update_id).collect();
                let payloads: Vec<&str> = chunk.iter().map(|u| u.payload.as_str()).collect();
                let times: Vec<i64> = chunk.iter().map(|u| u.received_at.0).collect();
                tx.execute(
                    "INSERT INTO update_journal (update_id, payload, received_at) \
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) \
                     ON CONFLICT (update_id) DO UPDATE SET taken_until = 0",
                    &[&ids, &payloads, &times],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn journal_held_updates(
        &self,
        updates: &[JournaledUpdate],
        until: UnixTime,
    ) -> StoreResult<Vec<i64>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = updates.to_vec();
        self.run(move |c| {
            let mut tx = c.transaction().map_err(db)?;
            let mut written = Vec::with_capacity(updates.len());
            for chunk in updates.chunks(super::JOURNAL_CHUNK) {
                let ids: Vec<i64> = chunk.iter().map(|u| u.update_id).collect();
                let payloads: Vec<&str> = chunk.iter().map(|u| u.payload.as_str()).collect();
                let times: Vec<i64> = chunk.iter().map(|u| u.received_at.0).collect();
                let rows = tx.query(
                    "INSERT INTO update_journal (update_id, payload, received_at, taken_until) \
                     SELECT u.id, u.payload, u.received, $4::bigint \
                     FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS u (id, payload, received) \
                     ON CONFLICT (update_id) DO NOTHING RETURNING update_id",
                    &[&ids, &payloads, &times, &until.0],
                )
                .map_err(db)?;
                written.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
            }
            tx.commit().map_err(db)?;
            Ok(written)
        })
        .await
    }

    async fn hold_journaled_updates(&self, update_ids: &[i64], until: UnixTime) -> StoreResult<()> {
        if update_ids.is_empty() {
            return Ok(());
        }
        let ids = update_ids.to_vec();
        self.run(move |c| {
            c.execute(
                "UPDATE update_journal SET taken_until = $2 WHERE update_id = ANY($1)",
                &[&ids, &until.0],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn take_journaled_updates(
        &self,
        limit: usize,
        now: UnixTime,
        until: UnixTime,
    ) -> StoreResult<Vec<JournaledUpdate>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let rows = c
                .query(
                    "UPDATE update_journal SET taken_until = $3 WHERE update_id IN ( \
                       SELECT update_id FROM update_journal WHERE taken_until <= $2 \
                       ORDER BY update_id LIMIT $1 FOR UPDATE SKIP LOCKED) \
                     RETURNING update_id, payload, received_at",
                    &[&limit, &now.0, &until.0],
                )
                .map_err(db)?;
            let mut taken: Vec<JournaledUpdate> = rows
                .iter()
                .map(|r| JournaledUpdate {
                    update_id: r.get(0),
                    payload: r.get(1),
                    received_at: UnixTime(r.get(2)),
                })
                .collect();
            taken.sort_by_key(|u| u.update_id);
            Ok(taken)
        })
        .await
    }

    async fn forget_journaled_updates(&self, update_ids: &[i64]) -> StoreResult<()> {
        if update_ids.is_empty() {
            return Ok(());
        }
        let ids = update_ids.to_vec();
        self.run(move |c| {
            c.execute(
                "DELETE FROM update_journal WHERE update_id = ANY($1::bigint[])",
                &[&ids],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn count_journaled_updates(&self) -> StoreResult<u64> {
        self.run(|c| {
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM update_journal", &[])
                .map_err(db)?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn record_join_request(&self, new: &NewJoinRequest) -> StoreResult<JoinRequest> {
        let new = new.clone();
        self.run(move |c| {
            // A pending row stays as it is (the same request delivered again); a decided one
            // is replaced by the new request.
            let written = c
                .query_opt(
                    concat!(
                        "INSERT INTO join_requests (group_id, user_id, user_chat_id, requested_at, ",
                        "expires_at, notice_id, state, decided_at) ",
                        "VALUES ($1, $2, $3, $4, $5, NULL, 'pending', NULL) ",
                        "ON CONFLICT (group_id, user_id) DO UPDATE SET ",
                        "user_chat_id = EXCLUDED.user_chat_id, requested_at = EXCLUDED.requested_at, ",
                        "expires_at = EXCLUDED.expires_at, notice_id = NULL, state = 'pending', ",
                        "decided_at = NULL WHERE join_requests.state <> 'pending' RETURNING ",
                        join_request_cols!()
                    ),
                    &[
                        &new.group.0,
                        &new.user.0,
                        &new.user_chat.0,
                        &new.requested_at.0,
                        &new.expires_at.0,
                    ],
                )
                .map_err(|e| {
                    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                        StoreError::UnknownGroup(new.group)
                    } else {
                        db(e)
                    }
                })?;
            let row = match written {
                Some(row) => row,
                None => c
                    .query_opt(
                        concat!(
                            "SELECT ",
                            join_request_cols!(),
                            " FROM join_requests WHERE group_id = $1 AND user_id = $2"
                        ),
                        &[&new.group.0, &new.user.0],
                    )
                    .map_err(db)?
                    .ok_or(StoreError::UnknownGroup(new.group))?,
            };
            rows::join_request(&row)
        })
        .await
    }

    async fn join_request(&self, group: GroupId, user: UserId) -> StoreResult<Option<JoinRequest>> {
        self.run(move |c| {
            c.query_opt(
                concat!(
                    "SELECT ",
                    join_request_cols!(),
                    " FROM join_requests WHERE group_id = $1 AND user_id = $2"
                ),
                &[&group.0, &user.0],
            )
            .map_err(db)?
            .as_ref()
            .map(rows::join_request)
            .transpose()
        })
        .await
    }

    async fn set_join_request_notice(
        &self,
        group: GroupId,
        user: UserId,
        notice: MessageId,
    ) -> StoreResult<bool> {
        self.run(move |c| {
            let n = c
                .execute(
                    "UPDATE join_requests SET notice_id = $3 \
                     WHERE group_id = $1 AND user_id = $2 AND state = 'pending'",
                    &[&group.0, &user.0, &notice.0],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn decide_join_request(
        &self,
        group: GroupId,
        user: UserId,
        state: JoinRequestState,
        at: UnixTime,
    ) -> StoreResult<bool> {
        if state == JoinRequestState::Pending {
            return Err(StoreError::Conflict(
                "a join request is decided as approved, declined or released, not pending"
                    .to_owned(),
            ));
        }
        self.run(move |c| {
            let n = c
                .execute(
                    "UPDATE join_requests SET state = $3, decided_at = $4 \
                     WHERE group_id = $1 AND user_id = $2 AND state = 'pending'",
                    &[&group.0, &user.0, &state.as_str(), &at.0],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn pending_join_requests(
        &self,
        group: GroupId,
        limit: u32,
    ) -> StoreResult<Vec<JoinRequest>> {
        self.run(move |c| {
            c.query(
                concat!(
                    "SELECT ",
                    join_request_cols!(),
                    " FROM join_requests WHERE group_id = $1 AND state = 'pending'",
                    " ORDER BY expires_at, user_id LIMIT $2"
                ),
                &[&group.0, &limit_of(limit)],
            )
            .map_err(db)?
            .iter()
            .map(rows::join_request)
            .collect()
        })
        .await
    }

    async fn count_pending_join_requests(&self, group: GroupId) -> StoreResult<u64> {
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM join_requests WHERE group_id = $1 AND state = 'pending'",
                &[&group.0],
            )
        })
        .await
    }

    async fn due_join_requests(&self, now: UnixTime, limit: u32) -> StoreResult<Vec<JoinRequest>> {
        self.run(move |c| {
            c.query(
                concat!(
                    "SELECT ",
                    join_request_cols!(),
                    " FROM join_requests WHERE state = 'pending' AND expires_at <= $1",
                    " ORDER BY expires_at, group_id, user_id LIMIT $2"
                ),
                &[&now.0, &limit_of(limit)],
            )
            .map_err(db)?
            .iter()
            .map(rows::join_request)
            .collect()
        })
        .await
    }

    async fn purge_join_requests(&self, before: UnixTime) -> StoreResult<u64> {
        self.run(move |c| {
            let n = c
                .execute(
                    "DELETE FROM join_requests WHERE state <> 'pending' AND decided_at < $1",
                    &[&before.0],
                )
                .map_err(db)?;
            Ok(n)
        })
        .await
    }

    async fn start_audit(&self, new: &NewAuditRun, at: UnixTime) -> StoreResult<AuditRun> {
        let new = *new;
        self.run_tx(move |tx| audit::start(tx, &new, at)).await
    }

    async fn unfinished_audit(&self, group: GroupId) -> StoreResult<Option<AuditRun>> {
        self.run(move |c| audit::unfinished(&mut **c, group)).await
    }

    async fn audit_run(&self, group: GroupId, run: AuditRunId) -> StoreResult<Option<AuditRun>> {
        self.run(move |c| audit::run_by_id(&mut **c, group, run))
            .await
    }

    async fn audited_members(
        &self,
        group: GroupId,
        run: AuditRunId,
        users: &[UserId],
    ) -> StoreResult<Vec<UserId>> {
        let users = users.to_vec();
        self.run(move |c| audit::audited(&mut **c, group, run, &users))
            .await
    }

    async fn record_audit_page(
        &self,
        group: GroupId,
        run: AuditRunId,
        page: &AuditPage,
        at: UnixTime,
    ) -> StoreResult<bool> {
        let page = page.clone();
        self.run_tx(move |tx| audit::record_page(tx, group, run, &page, at))
            .await
    }

    async fn record_audit_outcomes(
        &self,
        group: GroupId,
        run: AuditRunId,
        outcomes: &[MemberOutcome],
        at: UnixTime,
    ) -> StoreResult<bool> {
        let outcomes = outcomes.to_vec();
        self.run_tx(move |tx| audit::record_outcomes(tx, group, run, &outcomes, at))
            .await
    }

    async fn end_audit(
        &self,
        group: GroupId,
        run: AuditRunId,
        state: AuditState,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.run(move |c| audit::end(&mut **c, group, run, state, at))
            .await
    }

    async fn audit_counts(&self, group: GroupId, run: AuditRunId) -> StoreResult<AuditCounts> {
        self.run(move |c| audit::counts(&mut **c, group, run)).await
    }

    async fn audit_not_subscribed(
        &self,
        group: GroupId,
        run: AuditRunId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<UserId>> {
        self.run(move |c| audit::not_subscribed(&mut **c, group, run, after, limit))
            .await
    }

    async fn mtproto_session(&self, name: &str) -> StoreResult<Option<MtprotoSession>> {
        let name = name.to_owned();
        self.run(move |c| audit::session(&mut **c, &name)).await
    }

    async fn save_mtproto_session(
        &self,
        session: &MtprotoSession,
        at: UnixTime,
    ) -> StoreResult<()> {
        let session = session.clone();
        self.run(move |c| audit::save_session(&mut **c, &session, at))
            .await
    }

    async fn lease_mtproto_session(
        &self,
        name: &str,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> StoreResult<SessionLease> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run_tx(move |tx| audit::lease(tx, &name, &holder, until, now))
            .await
    }

    async fn release_mtproto_session(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |c| audit::release(&mut **c, &name, &holder))
            .await
    }

    async fn mtproto_peer(&self, name: &str, peer_id: i64) -> StoreResult<Option<MtprotoPeer>> {
        let name = name.to_owned();
        self.run(move |c| audit::peer(&mut **c, &name, peer_id))
            .await
    }

    async fn mtproto_self(&self, name: &str) -> StoreResult<Option<MtprotoPeer>> {
        let name = name.to_owned();
        self.run(move |c| audit::self_peer(&mut **c, &name)).await
    }

    async fn save_mtproto_peers(&self, name: &str, peers: &[MtprotoPeer]) -> StoreResult<()> {
        if peers.is_empty() {
            return Ok(());
        }
        let (name, peers) = (name.to_owned(), peers.to_vec());
        self.run_tx(move |tx| audit::save_peers(tx, &name, &peers))
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|c| {
            c.simple_query("SELECT 1").map_err(db)?;
            Ok(())
        })
        .await
    }
}

/// A private PostgreSQL schema per test, so tests run in parallel against one
/// database; shared with the query-plan tests.
#[cfg(test)]
pub(super) mod test_schema {
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::store::DatabaseUrl;

    /// The server the tests use: `GMBOT_TEST_PG_URL`, else the local test database.
    pub(crate) fn base_url() -> String {
        std::env::var("GMBOT_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// Runs `f` on a fresh connection, on a thread outside any tokio runtime
    /// (`postgres::Client` drives its own). Panics, saying how to start the
    /// server, if it is unreachable.
    pub(crate) fn with_client<T, F>(url: &str, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&mut postgres::Client) -> T + Send + 'static,
    {
        let url = url.to_owned();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is unreachable at {url} ({e}). These tests need it: start it with \
                     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or point GMBOT_TEST_PG_URL at a server"
                )
            });
            f(&mut client)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// A fresh schema, dropped with everything in it when the guard drops.
    pub(crate) struct TestSchema {
        pub(crate) name: String,
        pub(crate) url: String,
    }

    impl TestSchema {
        pub(crate) fn new(prefix: &str) -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!(
                "gmbot_{prefix}_{}_{}_{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let base = base_url();
            let create = format!("CREATE SCHEMA {name}");
            with_client(&base, move |c| {
                c.batch_execute(&create)
                    .unwrap_or_else(|e| panic!("cannot create a test schema: {e}"));
            });
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-csearch_path%3D{name}");
            Self { name, url }
        }

        pub(crate) fn database_url(&self) -> DatabaseUrl {
            self.url
                .parse()
                .unwrap_or_else(|e| panic!("test schema URL does not parse: {e}"))
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
            let base = base_url();
            let done = std::thread::spawn(move || {
                postgres::Client::connect(&base, postgres::NoTls)?.batch_execute(&sql)
            })
            .join();
            if !matches!(done, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_schema::{with_client, TestSchema};
    use super::*;
    use crate::domain::{ChannelRef, RestrictionKind};

    #[tokio::test]
    async fn unreachable_server_is_unavailable_and_the_password_stays_hidden() {
        let url: DatabaseUrl = "postgres://gmbot:s3cret@127.0.0.1:1/nothing"
            .parse()
            .expect("valid URL");
        let started = std::time::Instant::now();
        let err = PostgresStore::open(&url, MigrationMode::Apply)
            .await
            .expect_err("nothing listens on port 1");
        assert!(
            matches!(err, StoreError::Unavailable { .. }),
            "unexpected error: {err:?}"
        );
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("gmbot:***@127.0.0.1:1"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_migrations_apply_each_migration_exactly_once() {
        let schema = TestSchema::new("mig");
        let url = schema.database_url();
        let runs = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::migrate(&url).await })
        });
        let known = versions(postgres_set::migrations::runner().get_migrations())
            .into_iter()
            .max()
            .unwrap_or(0);
        // Versions need not be contiguous (branches number their migrations apart).
        let shipped = postgres_set::migrations::runner().get_migrations().len();
        let mut applied = 0;
        for run in runs {
            let report = run.await.expect("task").expect("every run succeeds");
            assert_eq!(report.status.current, known);
            applied += report.applied.len();
        }
        assert_eq!(applied, shipped, "each migration applied once in total");
        let rows: i64 = with_client(&schema.url, |c| {
            c.query_one("SELECT COUNT(*) FROM refinery_schema_history", &[])
                .expect("history table")
                .get(0)
        });
        assert_eq!(rows, i64::try_from(shipped).expect("small"));
        // The store opens under `Require` now.
        PostgresStore::open(&url, MigrationMode::Require)
            .await
            .expect("schema is current");
    }

    #[tokio::test]
    async fn schema_versions_are_checked_on_open_and_migrate() {
        let schema = TestSchema::new("ver");
        let url = schema.database_url();
        let err = PostgresStore::open(&url, MigrationMode::Require)
            .await
            .expect_err("empty schema");
        assert!(
            matches!(err, StoreError::NotMigrated { current: 0, .. }),
            "{err:?}"
        );

        let store = PostgresStore::open(&url, MigrationMode::Apply)
            .await
            .expect("Apply migrates");
        let status = store.schema_status().await.expect("status");
        assert_eq!(status.current, status.known);

        // A newer binary migrated this database: refuse, in every mode.
        let future = status.known + 1;
        with_client(&schema.url, move |c| {
            c.execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
                 VALUES ($1, 'future', '2030-01-01T00:00:00Z', '0')",
                &[&i32::try_from(future).expect("small")],
            )
            .expect("insert a future version")
        });
        for mode in [MigrationMode::Require, MigrationMode::Apply] {
            let err = PostgresStore::open(&url, mode).await.expect_err("too new");
            assert!(
                matches!(err, StoreError::SchemaTooNew { found, .. } if found == future),
                "{err:?}"
            );
        }
        let err = PostgresStore::migrate(&url).await.expect_err("too new");
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn broken_pooled_connections_are_replaced_on_checkout() {
        let schema = TestSchema::new("stale");
        let app = schema.name.clone();
        let url: DatabaseUrl = format!("{}&application_name={app}", schema.url)
            .parse()
            .expect("valid URL");
        let store = PostgresStore::open(&url, MigrationMode::Apply)
            .await
            .expect("open");
        store.group(GroupId(-1)).await.expect("a first call works");
        // What a server restart does to idle connections.
        let killed: i64 = with_client(&schema.url, move |c| {
            c.query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .expect("terminate")
            .get(0)
        });
        assert!(killed >= 1, "the pool held a connection");
        let (pool, url) = (store.pool.clone(), store.url.clone());
        tokio::task::spawn_blocking(move || {
            // Every connection counts as idle: each is validated before use.
            let mut conn = checkout(&pool, &url, Duration::ZERO).expect("a working connection");
            conn.simple_query("SELECT 1").expect("it works");
        })
        .await
        .expect("task");
    }

    /// The adapter-specific paths (JSONB round trip, prepared-statement cache
    /// reuse, tenancy filter); the shared contract suite covers the rest.
    #[tokio::test]
    async fn hot_reads_round_trip_through_prepared_statements() {
        let schema = TestSchema::new("hot");
        let store = PostgresStore::open(&schema.database_url(), MigrationMode::Apply)
            .await
            .expect("open");
        let chan: ChannelRef = "@Hot_Channel".parse().expect("valid");
        let mut ch = EnforcedChannel::from_ref(chan);
        ch.id = Some(ChannelId(-100_777));
        let at = UnixTime(1_700_000_000);
        for g in [-1001, -1002] {
            store
                .protect(
                    &ProtectRequest {
                        group: GroupId(g),
                        title: Some(format!("group {g}")),
                        owner: Some(UserId(42)),
                        channels: vec![ch.clone()],
                    },
                    at,
                )
                .await
                .expect("protect");
        }
        let settings = store
            .update_settings(
                GroupId(-1001),
                &[
                    SettingChange::Allow(UserId(9)),
                    SettingChange::MuteSeconds(600),
                ],
                at,
            )
            .await
            .expect("settings");
        // Several calls, so the cached statements are reused on pooled connections.
        for _ in 0..8 {
            let g = store
                .group(GroupId(-1001))
                .await
                .expect("read")
                .expect("known");
            assert_eq!(g.settings, settings);
            assert_eq!(g.channels, vec![ch.clone()]);
            assert_eq!(g.owner, Some(UserId(42)));
            assert_eq!(
                store
                    .groups_for_channel(ChannelId(-100_777))
                    .await
                    .expect("read"),
                vec![GroupId(-1002), GroupId(-1001)]
            );
        }
        let other = store
            .group(GroupId(-1002))
            .await
            .expect("read")
            .expect("known");
        assert_eq!(other.settings, GroupSettings::default());

        let r = store
            .record_restriction(
                &NewRestriction {
                    group: GroupId(-1001),
                    user: UserId(5),
                    kind: RestrictionKind::Mute,
                    until: None,
                    reason: "missing @hot_channel".into(),
                },
                at,
            )
            .await
            .expect("record");
        assert_eq!(
            store
                .active_restriction(GroupId(-1001), UserId(5))
                .await
                .expect("read"),
            Some(r.clone())
        );
        assert_eq!(
            store
                .active_restriction(GroupId(-1002), UserId(5))
                .await
                .expect("read"),
            None
        );
        assert_eq!(
            store
                .active_restrictions_for_user(UserId(5))
                .await
                .expect("read"),
            vec![r.clone()]
        );
        assert!(
            !store
                .lift_restriction(GroupId(-1002), r.id, LiftReason::Admin, at)
                .await
                .expect("lift"),
            "another group cannot lift it"
        );
        assert!(store
            .lift_restriction(GroupId(-1001), r.id, LiftReason::Joined, at)
            .await
            .expect("lift"));
        assert_eq!(
            store
                .active_restriction(GroupId(-1001), UserId(5))
                .await
                .expect("read"),
            None
        );
    }
}
