//! The SQLite adapter of [`Store`](super::Store): `rusqlite` (bundled) + `r2d2`, for development and single-instance use.
//!
//! The driver is blocking, so every call checks a connection out of an r2d2
//! pool inside `tokio::task::spawn_blocking`, all through one private `run` helper.
//!
//! Every connection runs in WAL mode (readers never block the writer), waits
//! up to 5 s for a lock instead of failing, and enforces foreign keys (the
//! schema relies on `ON UPDATE CASCADE` to move a group). A transaction that
//! writes is opened `IMMEDIATE`: a deferred transaction that reads first and
//! upgrades to a writer later gets `SQLITE_BUSY` at once, without the busy
//! handler, when another connection wrote in between. Single-statement writes
//! run in autocommit mode, where SQLite takes the write lock before reading.
//!
//! `sqlite::memory:` is a private database that lives as long as the store:
//! its pool holds exactly one connection, and it is always migrated on open,
//! since nothing else could ever reach it to migrate it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

#[path = "sqlite_audit.rs"]
mod audit;

use super::error::{StoreError, StoreResult};
use super::migrations::{self, MigrationReport, SchemaFit, SchemaStatus};
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

/// Pooled connections for a database file. WAL lets readers run beside the
/// one writer; more connections than this only queue on the write lock.
const FILE_POOL_SIZE: u32 = 8;
/// How long a connection waits for another one's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQL of the hot queries, shared with the query-plan tests so that what
/// is tested is exactly what runs.
pub(crate) mod sql {
    /// Columns of a group row, in the order `rows::group` reads them.
    macro_rules! group_cols {
        () => {
            "group_id, title, owner_id, state, paused_reason, settings, created_at, updated_at"
        };
    }
    /// Columns of a channel (table alias `c`), in the order `rows::channel` reads them.
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

    /// A group's row by id. `?1` = group id.
    pub(crate) const GROUP_BY_ID: &str = concat!(
        "SELECT ",
        group_cols!(),
        " FROM protected_groups WHERE group_id = ?1"
    );

    /// A group's channels in link order. `?1` = group id.
    pub(crate) const CHANNELS_OF_GROUP: &str = concat!(
        "SELECT ",
        channel_cols!(),
        " FROM group_channel_links l JOIN enforced_channels c ON c.id = l.channel_id",
        " WHERE l.group_id = ?1 ORDER BY l.position"
    );

    /// Active groups linked to a channel. `?1` = channel chat id.
    pub(crate) const GROUPS_FOR_CHANNEL: &str = "SELECT l.group_id \
         FROM enforced_channels c \
         JOIN group_channel_links l ON l.channel_id = c.id \
         JOIN protected_groups g ON g.group_id = l.group_id \
         WHERE c.chat_id = ?1 AND g.state = 'active' \
         ORDER BY l.group_id";

    /// A member's newest active restriction in a group. `?1` = group id, `?2` = user id.
    /// `state <> 'lifted'` is written exactly as in the partial indexes' predicate,
    /// which SQLite needs to match before it uses them.
    pub(crate) const ACTIVE_RESTRICTION: &str = concat!(
        "SELECT ",
        restriction_cols!(),
        " FROM restrictions WHERE group_id = ?1 AND user_id = ?2 AND state <> 'lifted'",
        " ORDER BY id DESC LIMIT 1"
    );

    /// A member's active restrictions in every group. `?1` = user id.
    pub(crate) const ACTIVE_RESTRICTIONS_FOR_USER: &str = concat!(
        "SELECT ",
        restriction_cols!(),
        " FROM restrictions WHERE user_id = ?1 AND state <> 'lifted' ORDER BY id"
    );
}

use sql::{channel_cols, group_cols, join_request_cols, restriction_cols};

/// [`Store`](super::Store) on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool<SqliteConnectionManager>,
    url: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("url", &self.url)
            .field("pool", &self.pool.state())
            .finish()
    }
}

impl SqliteStore {
    /// Opens the database (creating the file if missing), checking the schema
    /// or, under [`MigrationMode::Apply`], applying pending migrations first.
    ///
    /// A schema this binary cannot run against is always refused
    /// ([`StoreError::SchemaTooNew`]); one that is behind is refused under
    /// [`MigrationMode::Require`] ([`StoreError::NotMigrated`]); one that is
    /// ahead by compatible migrations is used as it is.
    /// `sqlite::memory:` is always migrated.
    pub async fn open(url: &DatabaseUrl, mode: MigrationMode) -> StoreResult<Self> {
        let mode = match url {
            DatabaseUrl::SqliteMemory => MigrationMode::Apply,
            _ => mode,
        };
        let store = Self::connect(url).await?;
        store
            .run(move |conn| {
                let status = schema_status(conn)?;
                status.check(mode)?;
                if !status.pending.is_empty() {
                    // Only reachable under `Apply`: `check` refused it otherwise.
                    run_migrations(conn)?;
                }
                Ok(())
            })
            .await?;
        Ok(store)
    }

    /// Applies pending migrations and reports what was applied. A schema this
    /// binary cannot run against is refused before anything runs; one ahead by
    /// compatible migrations is left as it is.
    pub async fn migrate(url: &DatabaseUrl) -> StoreResult<MigrationReport> {
        let store = Self::connect(url).await?;
        store
            .run(|conn| {
                let before = schema_status(conn)?;
                before.check(MigrationMode::Apply)?;
                if before.fit() == SchemaFit::AheadCompatible {
                    // Refinery would refuse the history's unknown versions; nothing is pending.
                    return Ok(migrations::report(None, before));
                }
                let applied = run_migrations(conn)?;
                Ok(migrations::report(Some(&applied), schema_status(conn)?))
            })
            .await
    }

    /// The schema of the database a URL names, without checking or changing it.
    pub async fn status_of(url: &DatabaseUrl) -> StoreResult<SchemaStatus> {
        Self::connect(url).await?.schema_status().await
    }

    /// The schema version of the database compared with this binary's.
    pub async fn schema_status(&self) -> StoreResult<SchemaStatus> {
        self.run(|conn| schema_status(conn)).await
    }

    /// Builds the pool. A file is opened once first, so that a bad path fails
    /// now with SQLite's own reason instead of after the pool's retry timeout.
    async fn connect(url: &DatabaseUrl) -> StoreResult<Self> {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let redacted = url.redacted();
            let unavailable =
                |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Unavailable {
                    url: redacted.clone(),
                    source: e,
                };
            let pool = match &url {
                DatabaseUrl::SqliteFile(path) => {
                    let mut probe = Connection::open(path).map_err(|e| unavailable(e.into()))?;
                    init_connection(&mut probe, true).map_err(|e| unavailable(e.into()))?;
                    drop(probe);
                    let manager =
                        SqliteConnectionManager::file(path).with_init(|c| init_connection(c, true));
                    Pool::builder()
                        .max_size(FILE_POOL_SIZE)
                        .min_idle(Some(1))
                        .connection_timeout(POOL_TIMEOUT)
                        .build(manager)
                }
                DatabaseUrl::SqliteMemory => {
                    // One connection = one private database. Never recycle it:
                    // the data lives only as long as the connection manager.
                    let manager =
                        SqliteConnectionManager::memory().with_init(|c| init_connection(c, false));
                    Pool::builder()
                        .max_size(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                        .connection_timeout(POOL_TIMEOUT)
                        .build(manager)
                }
                DatabaseUrl::Postgres(_) => {
                    return Err(StoreError::InvalidUrl {
                        url: redacted.clone(),
                        reason: "the SQLite adapter needs a sqlite:// URL".to_owned(),
                    })
                }
            }
            .map_err(|e| unavailable(e.into()))?;
            Ok(Self {
                pool,
                url: redacted,
            })
        })
        .await?
    }

    /// Runs `f` with a pooled connection on the blocking thread pool: the one
    /// place where this adapter leaves the async world.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }

    /// Runs `f` inside one `IMMEDIATE` transaction: committed if `f`
    /// succeeds, rolled back (on drop) if it fails.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

// --- connections and migrations --------------------------------------------

/// Per-connection settings (r2d2_sqlite calls this for every new connection).
fn init_connection(conn: &mut Connection, file: bool) -> rusqlite::Result<()> {
    // First, so that switching to WAL below also waits for other connections.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if file {
        // journal_mode answers with the mode now in effect.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!(journal_mode = mode.as_str(); "SQLite did not switch to WAL mode");
        }
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // With WAL, NORMAL is durable against application crashes and only
    // risks the last commits on power loss, without an fsync per commit.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// The applied migrations per refinery's history table and `schema_compat`
/// (either may be missing: an empty database, or one before V6), against
/// what this binary ships.
fn schema_status(conn: &Connection) -> StoreResult<SchemaStatus> {
    let shipped =
        migrations::versions(migrations::sqlite_set::migrations::runner().get_migrations());
    let exists = |table: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )
    };
    let applied = if exists("refinery_schema_history")? {
        let mut stmt = conn.prepare("SELECT version FROM refinery_schema_history")?;
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        rows.collect::<rusqlite::Result<Vec<i64>>>()?
    } else {
        Vec::new()
    };
    let compat = if exists("schema_compat")? {
        let mut stmt = conn.prepare(migrations::COMPAT_ROWS)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<(i64, i64)>>>()?
    } else {
        Vec::new()
    };
    Ok(SchemaStatus::from_parts(&applied, &compat, &shipped))
}

fn run_migrations(conn: &mut Connection) -> StoreResult<refinery::Report> {
    migrations::sqlite_set::migrations::runner()
        .set_abort_divergent(true)
        .run(conn)
        .map_err(migrations::migration_error)
}

// --- errors and decoding -----------------------------------------------------

/// A value the driver could not convert is a corrupt row; everything else is
/// the database's own failure.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
            e => StoreError::Backend(Box::new(e)),
        }
    }
}

/// Reports a stored value that does not decode, so it surfaces as [`StoreError::Corrupt`].
fn bad_value(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, what.into())
}

impl rows::Columns for Row<'_> {
    type Error = rusqlite::Error;

    fn int(&self, column: usize) -> rusqlite::Result<i64> {
        self.get(column)
    }

    fn opt_int(&self, column: usize) -> rusqlite::Result<Option<i64>> {
        self.get(column)
    }

    fn text(&self, column: usize) -> rusqlite::Result<String> {
        self.get(column)
    }

    fn opt_text(&self, column: usize) -> rusqlite::Result<Option<String>> {
        self.get(column)
    }

    fn flag(&self, column: usize) -> rusqlite::Result<bool> {
        self.get(column)
    }

    fn opt_flag(&self, column: usize) -> rusqlite::Result<Option<bool>> {
        self.get(column)
    }

    fn bad(&self, column: usize, bad: rows::Bad<'_>) -> rusqlite::Error {
        bad_value(
            column,
            match bad {
                rows::Bad::Unknown { value, .. } => format!("unknown value `{value}`"),
                rows::Bad::Settings(_, e) => format!("settings: {e}"),
                rows::Bad::Username(e) => e.to_string(),
                rows::Bad::Json(what, e) => format!("{what}: {e}"),
            },
        )
    }
}

fn group_from_row(row: &Row<'_>) -> rusqlite::Result<ProtectedGroup> {
    rows::group(row, Vec::new())
}

/// Runs a restriction query and decodes every row.
fn query_restrictions(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<Restriction>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| rows::restriction(r))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Runs a join request query and decodes every row.
fn query_join_requests(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<JoinRequest>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| rows::join_request(r))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StoreResult<u64> {
    let n: i64 = conn.prepare_cached(sql)?.query_row(params, |r| r.get(0))?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

fn settings_json(settings: &GroupSettings) -> StoreResult<String> {
    serde_json::to_string(settings).map_err(|e| StoreError::Backend(Box::new(e)))
}

// --- reads and writes shared by several methods --------------------------------

/// The group with its channels; callers wrap it in a transaction so both
/// reads see the same snapshot.
fn load_group(conn: &Connection, group: GroupId) -> StoreResult<Option<ProtectedGroup>> {
    let Some(mut g) = conn
        .prepare_cached(sql::GROUP_BY_ID)?
        .query_row([group.0], group_from_row)
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(sql::CHANNELS_OF_GROUP)?;
    let channels = stmt.query_map([group.0], |r| rows::channel(r, 0))?;
    g.channels = channels.collect::<rusqlite::Result<_>>()?;
    Ok(Some(g))
}

fn group_exists(conn: &Connection, group: GroupId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM protected_groups WHERE group_id = ?1)")?
        .query_row([group.0], |r| r.get(0))?)
}

/// The `VALUES` placeholders and parameters of update journal rows, each held until
/// `taken_until` (0: free for anyone to take).
fn journal_rows(
    updates: &[JournaledUpdate],
    taken_until: i64,
) -> (String, Vec<rusqlite::types::Value>) {
    let values = vec!["(?, ?, ?, ?)"; updates.len()].join(", ");
    let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(updates.len() * 4);
    for u in updates {
        params.push(u.update_id.into());
        params.push(u.payload.clone().into());
        params.push(u.received_at.0.into());
        params.push(taken_until.into());
    }
    (values, params)
}

fn require_group(conn: &Connection, group: GroupId) -> StoreResult<()> {
    if group_exists(conn, group)? {
        Ok(())
    } else {
        Err(StoreError::UnknownGroup(group))
    }
}

fn touch_group(conn: &Connection, group: GroupId, at: UnixTime) -> StoreResult<()> {
    conn.prepare_cached("UPDATE protected_groups SET updated_at = ?2 WHERE group_id = ?1")?
        .execute(params![group.0, at.0])?;
    Ok(())
}

/// Row id of the stored channel with this chat id, else with this username key.
fn find_channel(
    conn: &Connection,
    chat_id: Option<i64>,
    username_key: Option<&str>,
) -> StoreResult<Option<i64>> {
    if let Some(chat_id) = chat_id {
        let found = conn
            .prepare_cached("SELECT id FROM enforced_channels WHERE chat_id = ?1")?
            .query_row([chat_id], |r| r.get(0))
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let Some(key) = username_key {
        return Ok(conn
            .prepare_cached("SELECT id FROM enforced_channels WHERE username_key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?);
    }
    Ok(None)
}

/// How a write treats the fields of a channel that is already stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ChannelWrite {
    /// `protect`/`link_channel`: fill in what is missing, create if unknown.
    FillMissing,
    /// `update_channel`: what the bot just learned replaces what was stored;
    /// an unknown channel is not created.
    Overwrite,
}

/// Stores a channel (found by chat id, else by username) and returns its row
/// id, or `None` when it is unknown and `mode` does not create it.
///
/// If the id and the username given belong to two different stored rows, the
/// write is refused with [`StoreError::Conflict`] rather than guessing which
/// row is right.
fn save_channel(
    conn: &Connection,
    ch: &EnforcedChannel,
    mode: ChannelWrite,
) -> StoreResult<Option<i64>> {
    let chat_id = ch.id.map(|c| c.0);
    let username = ch.username.as_ref().map(|u| u.as_str().to_owned());
    let key = ch.username.as_ref().map(ChannelUsername::canonical);
    if chat_id.is_none() && key.is_none() {
        return Err(StoreError::Conflict(
            "a channel needs an id or a username".to_owned(),
        ));
    }
    let update = match mode {
        ChannelWrite::FillMissing => {
            "UPDATE enforced_channels SET \
               chat_id = COALESCE(chat_id, ?2), \
               username = COALESCE(username, ?3), \
               username_key = COALESCE(username_key, ?4), \
               title = COALESCE(title, ?5), \
               invite_link = COALESCE(invite_link, ?6) \
             WHERE id = ?1"
        }
        ChannelWrite::Overwrite => {
            "UPDATE enforced_channels SET \
               chat_id = COALESCE(?2, chat_id), \
               username = COALESCE(?3, username), \
               username_key = COALESCE(?4, username_key), \
               title = COALESCE(?5, title), \
               invite_link = COALESCE(?6, invite_link) \
             WHERE id = ?1"
        }
    };
    if let Some(id) = find_channel(conn, chat_id, key.as_deref())? {
        conn.prepare_cached(update)?
            .execute(params![
                id,
                chat_id,
                username,
                key,
                ch.title,
                ch.invite_link
            ])
            .map_err(|e| unique_conflict(e, ch))?;
        return Ok(Some(id));
    }
    if mode == ChannelWrite::Overwrite {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT INTO enforced_channels (chat_id, username, username_key, title, invite_link) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![chat_id, username, key, ch.title, ch.invite_link])?;
    Ok(Some(conn.last_insert_rowid()))
}

fn unique_conflict(e: rusqlite::Error, ch: &EnforcedChannel) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
        StoreError::Conflict(format!(
            "channel {ch}: its id and username belong to two different stored channels"
        ))
    } else {
        e.into()
    }
}

/// Links a stored channel at the end of a group's list; `false` if already linked.
fn link(conn: &Connection, group: GroupId, channel_row: i64, at: UnixTime) -> StoreResult<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO group_channel_links (group_id, channel_id, position, linked_at) \
             SELECT ?1, ?2, COALESCE(MAX(position), 0) + 1, ?3 \
             FROM group_channel_links WHERE group_id = ?1 \
             ON CONFLICT (group_id, channel_id) DO NOTHING",
        )?
        .execute(params![group.0, channel_row, at.0])?;
    Ok(n > 0)
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_owner(&self, owner: &Owner) -> StoreResult<()> {
        let o = owner.clone();
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO owners (user_id, username, display_name, can_be_messaged, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                 ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, \
                   display_name = excluded.display_name, \
                   can_be_messaged = excluded.can_be_messaged, \
                   updated_at = MAX(owners.updated_at, excluded.updated_at)",
            )?
            .execute(params![
                o.user_id.0,
                o.username,
                o.display_name,
                o.can_be_messaged,
                o.created_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn owner(&self, user: UserId) -> StoreResult<Option<Owner>> {
        self.run(move |c| {
            Ok(c.prepare_cached(
                "SELECT user_id, username, display_name, can_be_messaged, created_at \
                 FROM owners WHERE user_id = ?1",
            )?
            .query_row([user.0], |r| rows::owner(r))
            .optional()?)
        })
        .await
    }

    async fn protect(&self, req: &ProtectRequest, at: UnixTime) -> StoreResult<ProtectedGroup> {
        let req = req.clone();
        let defaults = settings_json(&GroupSettings::default())?;
        self.write(move |tx| {
            let g = req.group;
            if let Some(owner) = req.owner {
                tx.prepare_cached(
                    "INSERT INTO owners (user_id, can_be_messaged, created_at, updated_at) \
                     VALUES (?1, 0, ?2, ?2) ON CONFLICT (user_id) DO NOTHING",
                )?
                .execute(params![owner.0, at.0])?;
            }
            tx.prepare_cached(
                "INSERT INTO protected_groups \
                   (group_id, title, owner_id, state, paused_reason, settings, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'active', NULL, ?4, ?5, ?5) \
                 ON CONFLICT (group_id) DO UPDATE SET \
                   title = COALESCE(excluded.title, protected_groups.title), \
                   owner_id = COALESCE(excluded.owner_id, protected_groups.owner_id), \
                   state = 'active', paused_reason = NULL, updated_at = excluded.updated_at",
            )?
            .execute(params![g.0, req.title, req.owner.map(|u| u.0), defaults, at.0])?;
            for ch in &req.channels {
                if let Some(row) = save_channel(tx, ch, ChannelWrite::FillMissing)? {
                    link(tx, g, row, at)?;
                }
            }
            load_group(tx, g)?.ok_or(StoreError::UnknownGroup(g))
        })
        .await
    }

    async fn unprotect(&self, group: GroupId, at: UnixTime) -> StoreResult<bool> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE protected_groups SET state = 'unprotected', paused_reason = NULL, \
                     updated_at = ?2 WHERE group_id = ?1",
                )?
                .execute(params![group.0, at.0])?;
            if n == 0 {
                return Ok(false);
            }
            tx.prepare_cached("DELETE FROM group_channel_links WHERE group_id = ?1")?
                .execute([group.0])?;
            Ok(true)
        })
        .await
    }

    async fn pause(&self, group: GroupId, reason: &str, at: UnixTime) -> StoreResult<bool> {
        let reason = reason.to_owned();
        self.write(move |tx| {
            // Only an active group pauses: pausing an unprotected group must
            // not let a later `resume` switch it back on.
            tx.prepare_cached(
                "UPDATE protected_groups SET state = 'paused', paused_reason = ?2, updated_at = ?3 \
                 WHERE group_id = ?1 AND state = 'active'",
            )?
            .execute(params![group.0, reason, at.0])?;
            group_exists(tx, group)
        })
        .await
    }

    async fn resume(&self, group: GroupId, at: UnixTime) -> StoreResult<bool> {
        self.run(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE protected_groups SET state = 'active', paused_reason = NULL, updated_at = ?2 \
                     WHERE group_id = ?1 AND state = 'paused'",
                )?
                .execute(params![group.0, at.0])?;
            Ok(n > 0)
        })
        .await
    }

    async fn group(&self, group: GroupId) -> StoreResult<Option<ProtectedGroup>> {
        self.run(move |c| {
            let tx = c.transaction()?;
            load_group(&tx, group)
        })
        .await
    }

    async fn list_groups(&self) -> StoreResult<Vec<ProtectedGroup>> {
        self.run(|c| {
            // One read transaction = one snapshot for both queries.
            let tx = c.transaction()?;
            let mut channels: HashMap<i64, Vec<EnforcedChannel>> = HashMap::new();
            {
                let mut stmt = tx.prepare_cached(concat!(
                    "SELECT l.group_id, ",
                    channel_cols!(),
                    " FROM group_channel_links l JOIN enforced_channels c ON c.id = l.channel_id",
                    " ORDER BY l.group_id, l.position"
                ))?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    channels
                        .entry(row.get(0)?)
                        .or_default()
                        .push(rows::channel(row, 1)?);
                }
            }
            let mut stmt = tx.prepare_cached(concat!(
                "SELECT ",
                group_cols!(),
                " FROM protected_groups ORDER BY group_id"
            ))?;
            let groups = stmt.query_map([], group_from_row)?;
            groups
                .map(|g| {
                    let mut g = g?;
                    g.channels = channels.remove(&g.id.0).unwrap_or_default();
                    Ok(g)
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
        self.write(move |tx| {
            require_group(tx, group)?;
            let Some(row) = save_channel(tx, &channel, ChannelWrite::FillMissing)? else {
                return Ok(false);
            };
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
        self.write(move |tx| {
            let n = match &channel {
                ChannelRef::Id(id) => tx
                    .prepare_cached(
                        "DELETE FROM group_channel_links WHERE group_id = ?1 AND channel_id = \
                         (SELECT id FROM enforced_channels WHERE chat_id = ?2)",
                    )?
                    .execute(params![group.0, id.0])?,
                ChannelRef::Username(u) => tx
                    .prepare_cached(
                        "DELETE FROM group_channel_links WHERE group_id = ?1 AND channel_id = \
                         (SELECT id FROM enforced_channels WHERE username_key = ?2)",
                    )?
                    .execute(params![group.0, u.canonical()])?,
            };
            if n > 0 {
                touch_group(tx, group, at)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn update_channel(&self, channel: &EnforcedChannel) -> StoreResult<bool> {
        let channel = channel.clone();
        self.write(move |tx| Ok(save_channel(tx, &channel, ChannelWrite::Overwrite)?.is_some()))
            .await
    }

    async fn update_settings(
        &self,
        group: GroupId,
        changes: &[SettingChange],
        at: UnixTime,
    ) -> StoreResult<GroupSettings> {
        let changes = changes.to_vec();
        // Read, apply and write in one IMMEDIATE transaction, so two admins
        // changing different settings at once both keep their change.
        self.write(move |tx| {
            let text: String = tx
                .prepare_cached("SELECT settings FROM protected_groups WHERE group_id = ?1")?
                .query_row([group.0], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::UnknownGroup(group))?;
            let settings = rows::apply_settings(group, &text, &changes)?;
            tx.prepare_cached(
                "UPDATE protected_groups SET settings = ?2, updated_at = ?3 WHERE group_id = ?1",
            )?
            .execute(params![group.0, settings_json(&settings)?, at.0])?;
            Ok(settings)
        })
        .await
    }

    async fn groups_for_channel(&self, channel: ChannelId) -> StoreResult<Vec<GroupId>> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(sql::GROUPS_FOR_CHANNEL)?;
            let rows = stmt.query_map([channel.0], |r| r.get(0).map(GroupId))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn migrate_group(&self, from: GroupId, to: GroupId, at: UnixTime) -> StoreResult<()> {
        self.write(move |tx| {
            require_group(tx, from)?;
            if from == to {
                return Ok(());
            }
            if group_exists(tx, to)? {
                return Err(StoreError::Conflict(format!(
                    "group {from} cannot move to {to}: {to} is already known"
                )));
            }
            // ON UPDATE CASCADE carries links, restrictions and seen members along.
            tx.prepare_cached(
                "UPDATE protected_groups SET group_id = ?2, updated_at = ?3 WHERE group_id = ?1",
            )?
            .execute(params![from.0, to.0, at.0])?;
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
        self.write(move |tx| {
            require_group(tx, new.group)?;
            // The partial unique index (migration V2) allows one open row per member: a
            // second record returns the open one instead of adding a duplicate.
            let inserted = tx
                .prepare_cached(concat!(
                    "INSERT INTO restrictions (group_id, user_id, kind, state, reason, placed_at, until) ",
                    "VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6) ",
                    "ON CONFLICT (group_id, user_id) WHERE state <> 'lifted' DO NOTHING RETURNING ",
                    restriction_cols!()
                ))?
                .query_row(
                    params![
                        new.group.0,
                        new.user.0,
                        new.kind.as_str(),
                        new.reason,
                        at.0,
                        new.until.map(|u| u.0)
                    ],
                    |r| rows::restriction(r),
                )
                .optional()?;
            match inserted {
                Some(r) => Ok((r, true)),
                None => Ok((
                    tx.prepare_cached(concat!(
                        "SELECT ",
                        restriction_cols!(),
                        " FROM restrictions WHERE group_id = ?1 AND user_id = ?2 AND state <> 'lifted'"
                    ))?
                    .query_row(params![new.group.0, new.user.0], |r| rows::restriction(r))?,
                    false,
                )),
            }
        })
        .await
    }

    async fn confirm_restriction(&self, group: GroupId, id: RestrictionId) -> StoreResult<bool> {
        self.run(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE restrictions SET state = 'active' \
                     WHERE group_id = ?1 AND id = ?2 AND state = 'pending'",
                )?
                .execute(params![group.0, id.0])?;
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
                .prepare_cached(
                    "UPDATE restrictions SET state = 'lifted', lifted_at = ?3, lift_reason = ?4 \
                     WHERE group_id = ?1 AND id = ?2 AND state <> 'lifted'",
                )?
                .execute(params![group.0, id.0, at.0, reason.as_str()])?;
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
                    "UPDATE restrictions SET state = 'lifted', lifted_at = ?3, lift_reason = ?4 ",
                    "WHERE group_id = ?1 AND user_id = ?2 AND state <> 'lifted' RETURNING ",
                    restriction_cols!()
                ),
                params![group.0, user.0, at.0, reason.as_str()],
            )?;
            // RETURNING gives no order.
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
            Ok(c.prepare_cached(sql::ACTIVE_RESTRICTION)?
                .query_row(params![group.0, user.0], |r| rows::restriction(r))
                .optional()?)
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
                    " FROM restrictions WHERE group_id = ?1 AND state <> 'lifted' ORDER BY id"
                ),
                [group.0],
            )
        })
        .await
    }

    async fn count_active_restrictions(&self, group: GroupId) -> StoreResult<u64> {
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM restrictions WHERE group_id = ?1 AND state <> 'lifted'",
                [group.0],
            )
        })
        .await
    }

    async fn active_restrictions_for_user(&self, user: UserId) -> StoreResult<Vec<Restriction>> {
        self.run(move |c| query_restrictions(c, sql::ACTIVE_RESTRICTIONS_FOR_USER, [user.0]))
            .await
    }

    async fn active_restrictions_page(
        &self,
        after: Option<RestrictionId>,
        limit: u32,
    ) -> StoreResult<Vec<Restriction>> {
        self.run(move |c| {
            query_restrictions(
                c,
                concat!(
                    "SELECT ",
                    restriction_cols!(),
                    " FROM restrictions WHERE state <> 'lifted' AND id > ?1 ORDER BY id LIMIT ?2"
                ),
                params![after.map_or(i64::MIN, |a| a.0), i64::from(limit)],
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
                    " FROM restrictions WHERE group_id = ?1 ORDER BY id DESC LIMIT ?2"
                ),
                params![group.0, i64::from(limit)],
            )
        })
        .await
    }

    async fn record_seen(&self, group: GroupId, user: UserId, at: UnixTime) -> StoreResult<()> {
        self.run(move |c| {
            // An unknown group is a silent no-op: the SELECT yields no row.
            c.prepare_cached(
                "INSERT INTO seen_members (group_id, user_id, first_seen, last_seen) \
                 SELECT ?1, ?2, ?3, ?3 \
                 WHERE EXISTS (SELECT 1 FROM protected_groups WHERE group_id = ?1) \
                 ON CONFLICT (group_id, user_id) DO UPDATE \
                   SET last_seen = MAX(seen_members.last_seen, excluded.last_seen)",
            )?
            .execute(params![group.0, user.0, at.0])?;
            Ok(())
        })
        .await
    }

    async fn record_seen_many(&self, rows: &[(GroupId, UserId, UnixTime)]) -> StoreResult<()> {
        let rows = super::coalesce_seen(rows);
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |tx| {
            for chunk in rows.chunks(super::SEEN_CHUNK) {
                let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
                // SQLite needs the WHERE clause to parse `INSERT … SELECT … ON CONFLICT`;
                // it also skips rows of unknown groups, as `record_seen` does.
                let sql = format!(
                    "INSERT INTO seen_members (group_id, user_id, first_seen, last_seen) \
                     SELECT v.column1, v.column2, v.column3, v.column3 FROM (VALUES {values}) AS v \
                     WHERE EXISTS (SELECT 1 FROM protected_groups p WHERE p.group_id = v.column1) \
                     ON CONFLICT (group_id, user_id) DO UPDATE \
                       SET last_seen = MAX(seen_members.last_seen, excluded.last_seen)"
                );
                let params: Vec<i64> = chunk.iter().flat_map(|&(g, u, t)| [g, u, t]).collect();
                tx.prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(params))?;
            }
            Ok(())
        })
        .await
    }

    async fn seen_member(&self, group: GroupId, user: UserId) -> StoreResult<Option<SeenMember>> {
        self.run(move |c| {
            Ok(c.prepare_cached(
                "SELECT group_id, user_id, first_seen, last_seen FROM seen_members \
                 WHERE group_id = ?1 AND user_id = ?2",
            )?
            .query_row(params![group.0, user.0], |r| rows::seen(r))
            .optional()?)
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
            let mut stmt = c.prepare_cached(
                "SELECT group_id, user_id, first_seen, last_seen FROM seen_members \
                 WHERE group_id = ?1 AND user_id > ?2 ORDER BY user_id LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![group.0, after.map_or(i64::MIN, |a| a.0), i64::from(limit)],
                |r| rows::seen(r),
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
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
            let mut stmt = c.prepare_cached(
                "SELECT group_id, user_id, first_seen, last_seen FROM seen_members \
                 WHERE group_id = ?1 AND (last_seen < ?2 OR (last_seen = ?2 AND user_id < ?3)) \
                 ORDER BY last_seen DESC, user_id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![group.0, at, user, i64::from(limit)], |r| {
                rows::seen(r)
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn count_seen(&self, group: GroupId) -> StoreResult<u64> {
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM seen_members WHERE group_id = ?1",
                [group.0],
            )
        })
        .await
    }

    async fn journal_updates(&self, updates: &[JournaledUpdate]) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let updates = updates.to_vec();
        self.write(move |tx| {
            for chunk in updates.chunks(super::JOURNAL_CHUNK) {
                let (values, params) = journal_rows(chunk, 0);
                let sql = format!(
                    "INSERT INTO update_journal (update_id, payload, received_at, taken_until) \
                     VALUES {values} ON CONFLICT (update_id) DO UPDATE SET taken_until = 0"
                );
                tx.prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(params))?;
            }
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
        self.write(move |tx| {
            let mut taken = tx
                .prepare_cached(
                    "UPDATE update_journal SET taken_until = ?3 WHERE update_id IN ( \
                       SELECT update_id FROM update_journal WHERE taken_until <= ?2 \
                       ORDER BY update_id LIMIT ?1) \
                     RETURNING update_id, payload, received_at",
                )?
                .query_map(params![limit, now.0, until.0], |r| {
                    Ok(JournaledUpdate {
                        update_id: r.get(0)?,
                        payload: r.get(1)?,
                        received_at: UnixTime(r.get(2)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            taken.sort_by_key(|u| u.update_id);
            Ok(taken)
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
        self.write(move |tx| {
            let mut written = Vec::with_capacity(updates.len());
            for chunk in updates.chunks(super::JOURNAL_CHUNK) {
                let (values, params) = journal_rows(chunk, until.0);
                let sql = format!(
                    "INSERT INTO update_journal (update_id, payload, received_at, taken_until) \
                     VALUES {values} ON CONFLICT (update_id) DO NOTHING RETURNING update_id"
                );
                let ids = tx
                    .prepare_cached(&sql)?
                    .query_map(rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                written.extend(ids);
            }
            Ok(written)
        })
        .await
    }

    async fn hold_journaled_updates(&self, update_ids: &[i64], until: UnixTime) -> StoreResult<()> {
        if update_ids.is_empty() {
            return Ok(());
        }
        let ids = update_ids.to_vec();
        self.write(move |tx| {
            for chunk in ids.chunks(super::SEEN_CHUNK) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let sql = format!(
                    "UPDATE update_journal SET taken_until = ? WHERE update_id IN ({marks})"
                );
                let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() + 1);
                params.push(until.0.into());
                params.extend(chunk.iter().map(|&i| rusqlite::types::Value::from(i)));
                tx.prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(params))?;
            }
            Ok(())
        })
        .await
    }

    async fn forget_journaled_updates(&self, update_ids: &[i64]) -> StoreResult<()> {
        if update_ids.is_empty() {
            return Ok(());
        }
        let ids = update_ids.to_vec();
        self.write(move |tx| {
            for chunk in ids.chunks(super::SEEN_CHUNK) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let sql = format!("DELETE FROM update_journal WHERE update_id IN ({marks})");
                tx.prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(chunk))?;
            }
            Ok(())
        })
        .await
    }

    async fn count_journaled_updates(&self) -> StoreResult<u64> {
        self.run(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM update_journal")?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn record_join_request(&self, new: &NewJoinRequest) -> StoreResult<JoinRequest> {
        let new = new.clone();
        self.write(move |tx| {
            require_group(tx, new.group)?;
            // A pending row stays as it is (the same request delivered again); a decided one
            // is replaced by the new request.
            let written = tx
                .prepare_cached(concat!(
                    "INSERT INTO join_requests (group_id, user_id, user_chat_id, requested_at, ",
                    "expires_at, notice_id, state, decided_at) ",
                    "VALUES (?1, ?2, ?3, ?4, ?5, NULL, 'pending', NULL) ",
                    "ON CONFLICT (group_id, user_id) DO UPDATE SET ",
                    "user_chat_id = excluded.user_chat_id, requested_at = excluded.requested_at, ",
                    "expires_at = excluded.expires_at, notice_id = NULL, state = 'pending', ",
                    "decided_at = NULL WHERE join_requests.state <> 'pending' RETURNING ",
                    join_request_cols!()
                ))?
                .query_row(
                    params![
                        new.group.0,
                        new.user.0,
                        new.user_chat.0,
                        new.requested_at.0,
                        new.expires_at.0
                    ],
                    |r| rows::join_request(r),
                )
                .optional()?;
            match written {
                Some(r) => Ok(r),
                None => Ok(tx
                    .prepare_cached(concat!(
                        "SELECT ",
                        join_request_cols!(),
                        " FROM join_requests WHERE group_id = ?1 AND user_id = ?2"
                    ))?
                    .query_row(params![new.group.0, new.user.0], |r| rows::join_request(r))?),
            }
        })
        .await
    }

    async fn join_request(&self, group: GroupId, user: UserId) -> StoreResult<Option<JoinRequest>> {
        self.run(move |c| {
            Ok(c.prepare_cached(concat!(
                "SELECT ",
                join_request_cols!(),
                " FROM join_requests WHERE group_id = ?1 AND user_id = ?2"
            ))?
            .query_row(params![group.0, user.0], |r| rows::join_request(r))
            .optional()?)
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
                .prepare_cached(
                    "UPDATE join_requests SET notice_id = ?3 \
                     WHERE group_id = ?1 AND user_id = ?2 AND state = 'pending'",
                )?
                .execute(params![group.0, user.0, notice.0])?;
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
                .prepare_cached(
                    "UPDATE join_requests SET state = ?3, decided_at = ?4 \
                     WHERE group_id = ?1 AND user_id = ?2 AND state = 'pending'",
                )?
                .execute(params![group.0, user.0, state.as_str(), at.0])?;
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
            query_join_requests(
                c,
                concat!(
                    "SELECT ",
                    join_request_cols!(),
                    " FROM join_requests WHERE group_id = ?1 AND state = 'pending'",
                    " ORDER BY expires_at, user_id LIMIT ?2"
                ),
                params![group.0, i64::from(limit)],
            )
        })
        .await
    }

    async fn count_pending_join_requests(&self, group: GroupId) -> StoreResult<u64> {
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM join_requests WHERE group_id = ?1 AND state = 'pending'",
                [group.0],
            )
        })
        .await
    }

    async fn due_join_requests(&self, now: UnixTime, limit: u32) -> StoreResult<Vec<JoinRequest>> {
        self.run(move |c| {
            query_join_requests(
                c,
                concat!(
                    "SELECT ",
                    join_request_cols!(),
                    " FROM join_requests WHERE state = 'pending' AND expires_at <= ?1",
                    " ORDER BY expires_at, group_id, user_id LIMIT ?2"
                ),
                params![now.0, i64::from(limit)],
            )
        })
        .await
    }

    async fn purge_join_requests(&self, before: UnixTime) -> StoreResult<u64> {
        self.run(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM join_requests WHERE state <> 'pending' AND decided_at < ?1",
                )?
                .execute([before.0])?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn start_audit(&self, new: &NewAuditRun, at: UnixTime) -> StoreResult<AuditRun> {
        let new = *new;
        self.write(move |tx| audit::start(tx, &new, at)).await
    }

    async fn unfinished_audit(&self, group: GroupId) -> StoreResult<Option<AuditRun>> {
        self.run(move |c| audit::unfinished(c, group)).await
    }

    async fn audit_run(&self, group: GroupId, run: AuditRunId) -> StoreResult<Option<AuditRun>> {
        self.run(move |c| audit::run_by_id(c, group, run)).await
    }

    async fn audited_members(
        &self,
        group: GroupId,
        run: AuditRunId,
        users: &[UserId],
    ) -> StoreResult<Vec<UserId>> {
        let users = users.to_vec();
        self.run(move |c| audit::audited(c, group, run, &users))
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
        self.write(move |tx| audit::record_page(tx, group, run, &page, at))
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
        self.write(move |tx| audit::record_outcomes(tx, group, run, &outcomes, at))
            .await
    }

    async fn end_audit(
        &self,
        group: GroupId,
        run: AuditRunId,
        state: AuditState,
        at: UnixTime,
    ) -> StoreResult<bool> {
        self.run(move |c| audit::end(c, group, run, state, at))
            .await
    }

    async fn audit_counts(&self, group: GroupId, run: AuditRunId) -> StoreResult<AuditCounts> {
        self.run(move |c| audit::counts(c, group, run)).await
    }

    async fn audit_not_subscribed(
        &self,
        group: GroupId,
        run: AuditRunId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<UserId>> {
        self.run(move |c| audit::not_subscribed(c, group, run, after, limit))
            .await
    }

    async fn mtproto_session(&self, name: &str) -> StoreResult<Option<MtprotoSession>> {
        let name = name.to_owned();
        self.run(move |c| audit::session(c, &name)).await
    }

    async fn save_mtproto_session(
        &self,
        session: &MtprotoSession,
        at: UnixTime,
    ) -> StoreResult<()> {
        let session = session.clone();
        self.run(move |c| audit::save_session(c, &session, at))
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
        self.write(move |tx| audit::lease(tx, &name, &holder, until, now))
            .await
    }

    async fn release_mtproto_session(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |c| audit::release(c, &name, &holder)).await
    }

    async fn mtproto_peer(&self, name: &str, peer_id: i64) -> StoreResult<Option<MtprotoPeer>> {
        let name = name.to_owned();
        self.run(move |c| audit::peer(c, &name, peer_id)).await
    }

    async fn mtproto_self(&self, name: &str) -> StoreResult<Option<MtprotoPeer>> {
        let name = name.to_owned();
        self.run(move |c| audit::self_peer(c, &name)).await
    }

    async fn save_mtproto_peers(&self, name: &str, peers: &[MtprotoPeer]) -> StoreResult<()> {
        if peers.is_empty() {
            return Ok(());
        }
        let (name, peers) = (name.to_owned(), peers.to_vec());
        self.write(move |tx| audit::save_peers(tx, &name, &peers))
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        // `SELECT 1` alone never touches the file; reading the schema does, so
        // a locked or unreadable database fails the probe as it would fail a query.
        self.run(|c| {
            c.query_row("SELECT 1 FROM sqlite_master LIMIT 1", [], |_| Ok(()))
                .optional()?;
            Ok(())
        })
        .await
    }
}
