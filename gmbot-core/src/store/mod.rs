//! The tenancy store: the `Store` port and its SQLite and PostgreSQL adapters.
//!
//! Every method that touches a group's data takes that group's id, and the
//! adapters filter by it in SQL, so one group can never read or change
//! another's rows. Both adapters run their blocking driver calls on
//! `tokio::task::spawn_blocking`.

mod audit_rows;
mod error;
mod migrations;
mod mtproto;
mod postgres;
#[cfg(test)]
mod query_plans;
mod rows;
mod sqlite;
mod url;

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{
    AuditCounts, AuditPage, AuditRun, AuditRunId, AuditState, MemberOutcome, NewAuditRun,
};
use crate::domain::{
    ChannelId, ChannelRef, EnforcedChannel, GroupId, GroupSettings, JoinRequest, JoinRequestState,
    JournaledUpdate, LiftReason, MessageId, NewJoinRequest, NewRestriction, Owner, ProtectRequest,
    ProtectedGroup, Restriction, RestrictionId, SeenMember, SettingChange, UnixTime, UserId,
};

pub use self::error::{BoxError, StoreError, StoreResult};
pub use self::migrations::{MigrationReport, SchemaFit, SchemaStatus};
pub use self::mtproto::{
    MtprotoDcOption, MtprotoPeer, MtprotoSession, MtprotoUpdates, SessionLease,
};
pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;
pub use self::url::DatabaseUrl;

/// Persistent state of every protected group. Implemented by [`SqliteStore`]
/// and [`PostgresStore`]; open one with [`open`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- owners -----------------------------------------------------------

    /// Creates or updates an owner (keeps `created_at` of an existing row).
    async fn upsert_owner(&self, owner: &Owner) -> StoreResult<()>;

    /// The owner with this user id.
    async fn owner(&self, user: UserId) -> StoreResult<Option<Owner>>;

    // --- groups -----------------------------------------------------------

    /// Creates a protection or extends an existing one: the group becomes
    /// active, the given channels are linked (in addition to those already
    /// linked; linking a channel twice is a no-op). Returns the group as stored.
    async fn protect(&self, req: &ProtectRequest, at: UnixTime) -> StoreResult<ProtectedGroup>;

    /// Switches protection off: the group becomes `unprotected` and its channel
    /// links are removed; its settings, restriction history and seen members
    /// are kept. Returns `false` if the group was unknown.
    async fn unprotect(&self, group: GroupId, at: UnixTime) -> StoreResult<bool>;

    /// Pauses an active group (the bot lost its rights). Returns `false` if the group is unknown.
    async fn pause(&self, group: GroupId, reason: &str, at: UnixTime) -> StoreResult<bool>;

    /// Resumes a paused group. Returns `false` if the group is unknown or not paused.
    async fn resume(&self, group: GroupId, at: UnixTime) -> StoreResult<bool>;

    /// The group with its channels and settings (hot path: config lookup).
    async fn group(&self, group: GroupId) -> StoreResult<Option<ProtectedGroup>>;

    /// Every known group, ordered by id, with channels and settings.
    async fn list_groups(&self) -> StoreResult<Vec<ProtectedGroup>>;

    /// Links one more channel to an existing group. Returns `false` if it was already linked.
    async fn link_channel(
        &self,
        group: GroupId,
        channel: &EnforcedChannel,
        at: UnixTime,
    ) -> StoreResult<bool>;

    /// Unlinks a channel from a group. Returns `false` if it was not linked.
    async fn unlink_channel(
        &self,
        group: GroupId,
        channel: &ChannelRef,
        at: UnixTime,
    ) -> StoreResult<bool>;

    /// Records what the bot learned about a channel (resolved id, title,
    /// created invite link). The channel is found by id, else by username.
    /// Returns `false` if no such channel is stored.
    async fn update_channel(&self, channel: &EnforcedChannel) -> StoreResult<bool>;

    /// Applies setting changes atomically and returns the new settings.
    async fn update_settings(
        &self,
        group: GroupId,
        changes: &[SettingChange],
        at: UnixTime,
    ) -> StoreResult<GroupSettings>;

    /// Active groups that require this channel (hot path: auto-unmute on join).
    async fn groups_for_channel(&self, channel: ChannelId) -> StoreResult<Vec<GroupId>>;

    /// Moves a group and everything attached to it to a new id, in one
    /// transaction (a group that becomes a supergroup changes id). Fails with
    /// [`StoreError::Conflict`] if the new id is already known.
    async fn migrate_group(&self, from: GroupId, to: GroupId, at: UnixTime) -> StoreResult<()>;

    // --- restrictions -----------------------------------------------------

    /// Records a restriction as `pending`, before the Telegram call. A member has at most one
    /// open (pending or active) restriction per group, enforced by the schema: if one is
    /// open already, nothing is written and that row is returned
    /// ([`Self::place_restriction`] tells which happened).
    async fn record_restriction(
        &self,
        new: &NewRestriction,
        at: UnixTime,
    ) -> StoreResult<Restriction> {
        Ok(self.place_restriction(new, at).await?.0)
    }

    /// [`Self::record_restriction`], also telling whether this call wrote the row (`true`)
    /// or found the member's open one (`false`) — written by a concurrent caller, perhaps on
    /// another instance, whose Telegram call is on its way.
    async fn place_restriction(
        &self,
        new: &NewRestriction,
        at: UnixTime,
    ) -> StoreResult<(Restriction, bool)>;

    /// Marks a pending restriction `active` once Telegram confirmed it.
    async fn confirm_restriction(&self, group: GroupId, id: RestrictionId) -> StoreResult<bool>;

    /// Lifts one restriction. Returns `false` if it was not active.
    async fn lift_restriction(
        &self,
        group: GroupId,
        id: RestrictionId,
        reason: LiftReason,
        at: UnixTime,
    ) -> StoreResult<bool>;

    /// Lifts every active restriction of a member in a group; returns those lifted.
    async fn lift_member(
        &self,
        group: GroupId,
        user: UserId,
        reason: LiftReason,
        at: UnixTime,
    ) -> StoreResult<Vec<Restriction>>;

    /// The member's active (pending or confirmed) restriction in a group (hot path).
    async fn active_restriction(
        &self,
        group: GroupId,
        user: UserId,
    ) -> StoreResult<Option<Restriction>>;

    /// Active restrictions in a group, oldest first.
    async fn active_restrictions(&self, group: GroupId) -> StoreResult<Vec<Restriction>>;

    /// Number of active restrictions in a group.
    async fn count_active_restrictions(&self, group: GroupId) -> StoreResult<u64>;

    /// Active restrictions of a member across all groups.
    async fn active_restrictions_for_user(&self, user: UserId) -> StoreResult<Vec<Restriction>>;

    /// A page of active restrictions across all groups, by id after `after`,
    /// for the reconciliation pass.
    async fn active_restrictions_page(
        &self,
        after: Option<RestrictionId>,
        limit: u32,
    ) -> StoreResult<Vec<Restriction>>;

    /// Every restriction ever placed in a group (history included), newest first, at most `limit`.
    async fn restriction_history(
        &self,
        group: GroupId,
        limit: u32,
    ) -> StoreResult<Vec<Restriction>>;

    // --- seen members -----------------------------------------------------

    /// Records that a member was seen in a known group now.
    async fn record_seen(&self, group: GroupId, user: UserId, at: UnixTime) -> StoreResult<()>;

    /// A page of members seen in a group, by user id after `after`.
    async fn seen_members(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<SeenMember>>;

    /// A page of members seen in a group, most recently seen first (ties by
    /// user id, highest first), strictly after `before` — the `(last_seen,
    /// user)` of the previous page's last row: the cache warm-up's order.
    async fn recently_seen(
        &self,
        group: GroupId,
        before: Option<(UnixTime, UserId)>,
        limit: u32,
    ) -> StoreResult<Vec<SeenMember>>;

    /// Number of members seen in a group.
    async fn count_seen(&self, group: GroupId) -> StoreResult<u64>;

    /// Records many sightings in one transaction (one multi-row upsert per
    /// chunk): the seen-member batcher's flush. Rows of unknown groups are
    /// skipped; a pair given twice keeps its latest time; `last_seen` never
    /// moves backwards.
    async fn record_seen_many(&self, rows: &[(GroupId, UserId, UnixTime)]) -> StoreResult<()>;

    /// The member as seen in a group, if they ever were.
    async fn seen_member(&self, group: GroupId, user: UserId) -> StoreResult<Option<SeenMember>>;

    // --- update journal -----------------------------------------------------

    /// Keeps updates accepted and not yet handled, available to the next
    /// [`take_journaled_updates`](Store::take_journaled_updates). An `update_id` already kept
    /// keeps its payload and becomes available again (a stop gives back what it took and
    /// could not finish).
    async fn journal_updates(&self, updates: &[JournaledUpdate]) -> StoreResult<()>;

    /// Takes up to `limit` kept updates that nobody holds (`taken_until` ≤ `now`), oldest
    /// `update_id` first, and holds them until `until`: another caller does not get them
    /// before then, and gets them again after it if they were not forgotten meanwhile (the
    /// taker stopped before handling them).
    async fn take_journaled_updates(
        &self,
        limit: usize,
        now: UnixTime,
        until: UnixTime,
    ) -> StoreResult<Vec<JournaledUpdate>>;

    /// Keeps updates accepted and about to be handled by the caller, held by it until
    /// `until` (a write-ahead: nobody takes them while the caller is alive and renews the
    /// hold with [`hold_journaled_updates`](Store::hold_journaled_updates); if it dies, the
    /// next [`take_journaled_updates`](Store::take_journaled_updates) after `until` gets
    /// them). An `update_id` already kept is left as it is (another instance's, say). Returns
    /// the ids written.
    async fn journal_held_updates(
        &self,
        updates: &[JournaledUpdate],
        until: UnixTime,
    ) -> StoreResult<Vec<i64>>;

    /// Extends the hold of kept updates to `until`; ids not kept are ignored (never
    /// written back).
    async fn hold_journaled_updates(&self, update_ids: &[i64], until: UnixTime) -> StoreResult<()>;

    /// Forgets kept updates once handled; ids not kept are ignored.
    async fn forget_journaled_updates(&self, update_ids: &[i64]) -> StoreResult<()>;

    /// How many updates are kept (held or not).
    async fn count_journaled_updates(&self) -> StoreResult<u64>;

    // --- join requests ------------------------------------------------------

    /// Records a join request as pending (the join gate). If the requester already has a
    /// pending request in the group (the same request delivered again), nothing is written
    /// and that row is returned; a decided one is replaced by the new pending request.
    /// Fails with [`StoreError::UnknownGroup`] for a group the store does not know.
    async fn record_join_request(&self, new: &NewJoinRequest) -> StoreResult<JoinRequest>;

    /// The requester's join request in a group, pending or decided.
    async fn join_request(&self, group: GroupId, user: UserId) -> StoreResult<Option<JoinRequest>>;

    /// Records the private message the bot sent to a pending requester. Returns `false` if
    /// the request is not pending (decided meanwhile, or unknown).
    async fn set_join_request_notice(
        &self,
        group: GroupId,
        user: UserId,
        notice: MessageId,
    ) -> StoreResult<bool>;

    /// Closes a pending request as `state` (approved, declined or released) at `at`.
    /// Returns `false` if it was not pending: somebody decided it first. Deciding it as
    /// [`JoinRequestState::Pending`] is refused with [`StoreError::Conflict`].
    async fn decide_join_request(
        &self,
        group: GroupId,
        user: UserId,
        state: JoinRequestState,
        at: UnixTime,
    ) -> StoreResult<bool>;

    /// A group's pending requests, soonest deadline first, at most `limit` (`/status`).
    async fn pending_join_requests(
        &self,
        group: GroupId,
        limit: u32,
    ) -> StoreResult<Vec<JoinRequest>>;

    /// Number of pending requests in a group.
    async fn count_pending_join_requests(&self, group: GroupId) -> StoreResult<u64>;

    /// Pending requests of every group whose deadline is at or before `now`, soonest first,
    /// at most `limit`: the gate's sweep, which declines them (or approves those who joined).
    async fn due_join_requests(&self, now: UnixTime, limit: u32) -> StoreResult<Vec<JoinRequest>>;

    /// Deletes the decided requests decided before `before`; returns how many went.
    async fn purge_join_requests(&self, before: UnixTime) -> StoreResult<u64>;

    // --- audits -------------------------------------------------------------

    /// Starts an audit run of a known group at the first page of its source. Fails with
    /// [`StoreError::Conflict`] if the group has an unfinished run (resume or end it first),
    /// [`StoreError::UnknownGroup`] if the group is unknown.
    async fn start_audit(&self, new: &NewAuditRun, at: UnixTime) -> StoreResult<AuditRun>;

    /// The group's unfinished run, if any (there is at most one).
    async fn unfinished_audit(&self, group: GroupId) -> StoreResult<Option<AuditRun>>;

    /// A run of the group by id.
    async fn audit_run(&self, group: GroupId, run: AuditRunId) -> StoreResult<Option<AuditRun>>;

    /// Which of `users` the run has recorded already (a member listed twice, by two
    /// search prefixes or after a resume, is checked once).
    async fn audited_members(
        &self,
        group: GroupId,
        run: AuditRunId,
        users: &[crate::domain::UserId],
    ) -> StoreResult<Vec<crate::domain::UserId>>;

    /// Records one finished page in one transaction: its members' outcomes (a member the
    /// run recorded already keeps its first outcome), the cursor to go on from, one more
    /// page. Returns `false` if the run is not the group's unfinished run.
    async fn record_audit_page(
        &self,
        group: GroupId,
        run: AuditRunId,
        page: &AuditPage,
        at: UnixTime,
    ) -> StoreResult<bool>;

    /// Records outcomes of a page still being checked, without moving the run's cursor (a
    /// resumed run lists that page again and skips these members), so a run killed mid-page
    /// repeats only the checks it had not stored yet. Members the run recorded already keep
    /// their first outcome. Returns `false` if the run is not the group's unfinished run.
    async fn record_audit_outcomes(
        &self,
        group: GroupId,
        run: AuditRunId,
        outcomes: &[MemberOutcome],
        at: UnixTime,
    ) -> StoreResult<bool>;

    /// Ends an unfinished run as [`AuditState::Finished`] or [`AuditState::Abandoned`]
    /// (its results are kept). Returns `false` if it was not unfinished.
    async fn end_audit(
        &self,
        group: GroupId,
        run: AuditRunId,
        state: AuditState,
        at: UnixTime,
    ) -> StoreResult<bool>;

    /// What the run recorded, each member once.
    async fn audit_counts(&self, group: GroupId, run: AuditRunId) -> StoreResult<AuditCounts>;

    /// Members the run recorded as not subscribed, by user id after `after` (the report's list).
    async fn audit_not_subscribed(
        &self,
        group: GroupId,
        run: AuditRunId,
        after: Option<crate::domain::UserId>,
        limit: u32,
    ) -> StoreResult<Vec<crate::domain::UserId>>;

    // --- MTProto sessions -----------------------------------------------------

    /// The session's stored data, if it was ever saved or leased.
    async fn mtproto_session(&self, name: &str) -> StoreResult<Option<MtprotoSession>>;

    /// Saves the session's home DC, DC options and update state (its peers and lease are kept).
    async fn save_mtproto_session(&self, session: &MtprotoSession, at: UnixTime)
        -> StoreResult<()>;

    /// Takes or renews the session's lease for `holder` until `until`: granted when the
    /// session is free, its lease ran out (before `now`), or `holder` has it already. A
    /// session that does not exist yet is created empty. One lease = one connection pool.
    async fn lease_mtproto_session(
        &self,
        name: &str,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> StoreResult<SessionLease>;

    /// Gives the lease back if `holder` has it. Returns whether it did.
    async fn release_mtproto_session(&self, name: &str, holder: &str) -> StoreResult<bool>;

    /// A cached peer by Bot API dialog id.
    async fn mtproto_peer(&self, name: &str, peer_id: i64) -> StoreResult<Option<MtprotoPeer>>;

    /// The signed-in account, if cached (`is_self`).
    async fn mtproto_self(&self, name: &str) -> StoreResult<Option<MtprotoPeer>>;

    /// Caches peers: a known value replaces the stored one, an unknown one (`None`) keeps it.
    /// Peers of an unknown session are ignored.
    async fn save_mtproto_peers(&self, name: &str, peers: &[MtprotoPeer]) -> StoreResult<()>;

    // --- health -------------------------------------------------------------

    /// Checks that the database answers (`SELECT 1` on a pooled connection),
    /// for readiness probes. Callers bound it with their own timeout.
    async fn ping(&self) -> StoreResult<()>;
}

/// Rows for a multi-row seen-member upsert: one per (group, user), with the
/// latest time, sorted by key. PostgreSQL refuses an upsert that touches the
/// same row twice, and sorted keys take row locks in one order.
pub(crate) fn coalesce_seen(rows: &[(GroupId, UserId, UnixTime)]) -> Vec<(i64, i64, i64)> {
    let mut latest = std::collections::BTreeMap::new();
    for &(g, u, at) in rows {
        let t = latest.entry((g.0, u.0)).or_insert(at.0);
        *t = (*t).max(at.0);
    }
    latest.into_iter().map(|((g, u), t)| (g, u, t)).collect()
}

/// Rows per statement of a seen-member batch (three parameters each; SQLite
/// allows 32,766 parameters per statement, PostgreSQL 65,535).
pub(crate) const SEEN_CHUNK: usize = 500;

/// Rows per statement of a journal write (three parameters each).
pub(crate) const JOURNAL_CHUNK: usize = 500;

/// What [`open`] does about a schema that is behind this binary.
///
/// In both modes a schema ahead of this binary by migrations that declare it
/// compatible is used as it is, and one this binary cannot run against is
/// refused (see [`SchemaStatus::fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationMode {
    /// Refuse to open a schema that is behind ([`StoreError::NotMigrated`]):
    /// the CLI's, and the bot's on PostgreSQL, where `gmbot migrate` runs
    /// before a deploy.
    #[default]
    Require,
    /// Apply pending migrations first (the bot's on SQLite).
    Apply,
}

/// Opens the store a URL names, checking (or migrating) its schema.
///
/// `sqlite::memory:` is always migrated, since nothing else can reach it.
pub async fn open(url: &DatabaseUrl, mode: MigrationMode) -> StoreResult<Arc<dyn Store>> {
    Ok(match url {
        DatabaseUrl::SqliteFile(_) | DatabaseUrl::SqliteMemory => {
            Arc::new(SqliteStore::open(url, mode).await?)
        }
        DatabaseUrl::Postgres(_) => Arc::new(PostgresStore::open(url, mode).await?),
    })
}

/// Applies pending migrations to the database a URL names and reports what was applied.
pub async fn migrate(url: &DatabaseUrl) -> StoreResult<MigrationReport> {
    match url {
        DatabaseUrl::SqliteFile(_) | DatabaseUrl::SqliteMemory => SqliteStore::migrate(url).await,
        DatabaseUrl::Postgres(_) => PostgresStore::migrate(url).await,
    }
}

/// The schema of the database a URL names compared with this binary's,
/// without checking or changing it (what `gmbot migrate --check` shows).
pub async fn schema_status(url: &DatabaseUrl) -> StoreResult<SchemaStatus> {
    match url {
        DatabaseUrl::SqliteFile(_) | DatabaseUrl::SqliteMemory => SqliteStore::status_of(url).await,
        DatabaseUrl::Postgres(_) => PostgresStore::status_of(url).await,
    }
}
