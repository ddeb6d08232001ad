//! The `Store` contract: one suite of cases, run against every backend
//! (SQLite file, `sqlite::memory:`, PostgreSQL in a private schema), so the
//! adapters cannot drift apart.
//!
//! Run one backend with a name filter, e.g.
//! `cargo test -p gmbot-core --test store_contract sqlite_`.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use gmbot_core::audit::{
    AuditCursor, AuditOutcome, AuditPage, AuditSource, AuditState, DirectoryCursor, DirectoryQuery,
    MemberOutcome, NewAuditRun,
};
use gmbot_core::domain::{
    ChannelId, ChannelRef, ChannelUsername, ChatId, EnforcedChannel, GroupId, GroupSettings,
    GroupState, JoinRequest, JoinRequestState, JournaledUpdate, LiftReason, MessageId,
    NewJoinRequest, NewRestriction, NonMemberAction, Owner, ProtectRequest, Restriction,
    RestrictionKind, RestrictionState, SettingChange, SettingsError, UnixTime, UserId,
};
use gmbot_core::store::{
    self, DatabaseUrl, MigrationMode, MtprotoDcOption, MtprotoPeer, MtprotoSession, MtprotoUpdates,
    SchemaFit, SessionLease, Store, StoreError,
};

use support::{sqlite_file_url, with_pg_client, PgSchema, SqliteFile};

// --- backends ------------------------------------------------------------------

/// What keeps a test database alive (and cleans it up on drop).
enum Keep {
    File(SqliteFile),
    Memory,
    Pg(PgSchema),
}

/// One test's private database.
struct Db {
    url: DatabaseUrl,
    keep: Keep,
}

impl Db {
    fn sqlite_file() -> Self {
        let (file, url) = sqlite_file_url();
        Self {
            url,
            keep: Keep::File(file),
        }
    }

    fn sqlite_memory() -> Self {
        Self {
            url: "sqlite::memory:".parse().expect("memory URL parses"),
            keep: Keep::Memory,
        }
    }

    fn postgres() -> Self {
        let schema = PgSchema::new();
        Self {
            url: schema.database_url(),
            keep: Keep::Pg(schema),
        }
    }

    /// Another empty database of the same kind.
    fn fresh(&self) -> Self {
        match self.keep {
            Keep::File(_) => Self::sqlite_file(),
            Keep::Memory => Self::sqlite_memory(),
            Keep::Pg(_) => Self::postgres(),
        }
    }

    /// Opens the store, migrating the schema.
    async fn store(&self) -> Arc<dyn Store> {
        match store::open(&self.url, MigrationMode::Apply).await {
            Ok(s) => s,
            Err(e) => panic!("cannot open the store at {}: {e}", self.url),
        }
    }

    /// Runs a query of two integer columns directly against the database.
    fn query_pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        match &self.keep {
            Keep::File(f) => {
                let c = rusqlite::Connection::open(f.path()).expect("open");
                let mut stmt = c.prepare(sql).expect("prepare");
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .expect("query");
                rows.collect::<Result<_, _>>().expect("rows")
            }
            Keep::Pg(s) => {
                let sql = format!("SELECT a::bigint, b::bigint FROM ({sql}) AS q(a, b)");
                with_pg_client(s.url(), move |c| {
                    c.query(&sql, &[])
                        .expect("query")
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect()
                })
            }
            Keep::Memory => panic!("a private in-memory database cannot be reached from outside"),
        }
    }

    /// Runs SQL directly against the database, beside the store.
    fn execute(&self, sql: &str) {
        match &self.keep {
            Keep::File(f) => rusqlite::Connection::open(f.path())
                .and_then(|c| c.execute_batch(sql))
                .unwrap_or_else(|e| panic!("raw SQL failed: {e}")),
            Keep::Pg(s) => {
                let sql = sql.to_owned();
                with_pg_client(s.url(), move |c| {
                    c.batch_execute(&sql)
                        .unwrap_or_else(|e| panic!("raw SQL failed: {e}"))
                })
            }
            Keep::Memory => panic!("a private in-memory database cannot be reached from outside"),
        }
    }
}

/// Instantiates every case for one backend, as `<backend>::<case>`.
/// `db_cases` need the database itself (schema checks), not just a store.
macro_rules! contract_suite {
    ($backend:ident, db_cases: [$($db_case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;

            contract_suite!(@store $backend:
                protect_and_read_back,
                owners_upsert,
                extending_a_protection,
                unprotect_keeps_history,
                pause_and_resume,
                link_unlink_update_channel,
                channel_id_and_username_of_two_rows_conflict,
                settings_persist_and_invalid_change_changes_nothing,
                groups_for_channel_lists_only_active_linking_groups,
                restriction_lifecycle,
                tenancy_isolation,
                migrate_group_moves_everything,
                migrate_group_conflicts_change_nothing,
                seen_members_upsert_and_paging,
                seen_members_batch_upsert,
                seen_members_most_recent_first,
                concurrent_writers,
                audit_runs_checkpoint_and_count_each_member_once,
                mtproto_sessions_peers_and_leases,
                one_open_restriction_per_member,
                join_requests_lifecycle,
                join_requests_due_and_purged_across_groups,
                join_requests_are_per_group_and_move_with_it,
                update_journal_keeps_takes_and_forgets,
                update_journal_take_is_exclusive,
                update_journal_held_rows_wait_for_their_holder,
            );

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $db_case() {
                    let db = Db::$backend();
                    super::$db_case(&db).await;
                }
            )*
        }
    };
    (@store $backend:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let db = Db::$backend();
                let store = db.store().await;
                super::$case(store).await;
            }
        )*
    };
}

contract_suite!(sqlite_file, db_cases: [schema_checks, schema_ahead_runs_only_when_declared_compatible, schema_behind_is_refused_or_migrated, open_apply_migrates_a_fresh_database, migration_v2_closes_duplicate_open_rows]);
contract_suite!(sqlite_memory, db_cases: [memory_database_is_private_and_migrated]);
contract_suite!(postgres, db_cases: [schema_checks, schema_ahead_runs_only_when_declared_compatible, schema_behind_is_refused_or_migrated, open_apply_migrates_a_fresh_database, migration_v2_closes_duplicate_open_rows]);

#[tokio::test]
async fn sqlite_file_that_cannot_be_opened_is_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing-dir").join("gmbot.db");
    let url: DatabaseUrl = format!("sqlite://{}", path.display())
        .parse()
        .expect("URL parses");
    match store::open(&url, MigrationMode::Apply).await {
        Err(e @ StoreError::Unavailable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("missing-dir"), "{msg}");
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("opened a database in a directory that does not exist"),
    }
}

// --- fixtures ------------------------------------------------------------------

const T0: i64 = 1_700_000_000;

fn t(offset: i64) -> UnixTime {
    UnixTime(T0 + offset)
}

fn gid(n: i64) -> GroupId {
    GroupId(-1_001_000_000_000 - n)
}

fn cid(n: i64) -> ChannelId {
    ChannelId(-1_002_000_000_000 - n)
}

fn uid(n: i64) -> UserId {
    UserId(n)
}

fn username(s: &str) -> ChannelUsername {
    ChannelUsername::parse(s).expect("valid username")
}

fn by_id(n: i64) -> EnforcedChannel {
    EnforcedChannel::from_ref(ChannelRef::Id(cid(n)))
}

fn by_name(s: &str) -> EnforcedChannel {
    EnforcedChannel::from_ref(ChannelRef::Username(username(s)))
}

fn request(group: GroupId, channels: Vec<EnforcedChannel>) -> ProtectRequest {
    ProtectRequest {
        group,
        title: None,
        owner: None,
        channels,
    }
}

fn mute(group: GroupId, user: UserId) -> NewRestriction {
    NewRestriction {
        group,
        user,
        kind: RestrictionKind::Mute,
        until: None,
        reason: "not subscribed".to_owned(),
    }
}

async fn protect(s: &Arc<dyn Store>, group: GroupId, channels: Vec<EnforcedChannel>) {
    s.protect(&request(group, channels), t(0))
        .await
        .expect("protect");
}

async fn group_of(s: &Arc<dyn Store>, group: GroupId) -> gmbot_core::domain::ProtectedGroup {
    s.group(group)
        .await
        .expect("read group")
        .expect("group exists")
}

fn join(group: GroupId, user: UserId, at: i64, wait: i64) -> NewJoinRequest {
    NewJoinRequest {
        group,
        user,
        user_chat: ChatId(user.0),
        requested_at: t(at),
        expires_at: t(at + wait),
    }
}

fn requesters(rs: &[JoinRequest]) -> Vec<(GroupId, UserId)> {
    rs.iter().map(|r| (r.group, r.user)).collect()
}

fn ids(rs: &[Restriction]) -> Vec<i64> {
    rs.iter().map(|r| r.id.0).collect()
}

// --- cases ---------------------------------------------------------------------

async fn protect_and_read_back(s: Arc<dyn Store>) {
    let g = gid(1);
    let req = ProtectRequest {
        group: g,
        title: Some("Group <one> 'quoted'".to_owned()),
        owner: Some(uid(42)),
        channels: vec![by_name("Alpha_Chan"), by_id(2), by_name("gamma_chan")],
    };
    let stored = s.protect(&req, t(0)).await.expect("protect");
    assert_eq!(stored.id, g);
    assert_eq!(stored.title.as_deref(), Some("Group <one> 'quoted'"));
    assert_eq!(stored.owner, Some(uid(42)));
    assert_eq!(stored.state, GroupState::Active);
    assert_eq!(stored.paused_reason, None);
    assert_eq!(stored.settings, GroupSettings::default());
    assert_eq!((stored.created_at, stored.updated_at), (t(0), t(0)));
    assert_eq!(
        stored.channels,
        vec![by_name("Alpha_Chan"), by_id(2), by_name("gamma_chan")],
        "channels in the order given"
    );
    // The typed case of a username is kept for display.
    assert_eq!(
        stored.channels[0].username.as_ref().map(|u| u.as_str()),
        Some("Alpha_Chan")
    );
    assert!(stored.is_enforced());
    assert_eq!(
        group_of(&s, g).await,
        stored,
        "read back equals what protect returned"
    );

    // The owner named in the request now exists as a minimal row.
    let owner = s.owner(uid(42)).await.expect("owner").expect("owner row");
    assert_eq!(owner.user_id, uid(42));
    assert!(!owner.can_be_messaged);
    assert_eq!(owner.username, None);

    assert_eq!(s.group(gid(99)).await.expect("read"), None);

    // list_groups: every group, ordered by id, with channels.
    protect(&s, gid(0), vec![by_id(7)]).await;
    protect(&s, gid(5), vec![]).await;
    let all = s.list_groups().await.expect("list");
    let listed: Vec<GroupId> = all.iter().map(|g| g.id).collect();
    let mut expected = vec![gid(0), gid(1), gid(5)];
    expected.sort();
    assert_eq!(listed, expected);
    let one = all.iter().find(|x| x.id == g).expect("listed");
    assert_eq!(one, &stored);
    let zero = all.iter().find(|x| x.id == gid(0)).expect("listed");
    assert_eq!(zero.channels, vec![by_id(7)]);
    let five = all.iter().find(|x| x.id == gid(5)).expect("listed");
    assert!(five.channels.is_empty() && !five.is_enforced());
}

async fn owners_upsert(s: Arc<dyn Store>) {
    assert_eq!(s.owner(uid(7)).await.expect("read"), None);
    let first = Owner {
        user_id: uid(7),
        username: Some("admin".to_owned()),
        display_name: Some("Ann O'Admin".to_owned()),
        can_be_messaged: false,
        created_at: t(0),
    };
    s.upsert_owner(&first).await.expect("insert");
    assert_eq!(s.owner(uid(7)).await.expect("read"), Some(first.clone()));
    let second = Owner {
        username: None,
        display_name: Some("Ann".to_owned()),
        can_be_messaged: true,
        created_at: t(500),
        ..first.clone()
    };
    s.upsert_owner(&second).await.expect("update");
    let got = s.owner(uid(7)).await.expect("read").expect("row");
    assert_eq!(
        got.created_at,
        t(0),
        "created_at of an existing owner is kept"
    );
    assert_eq!(got.display_name.as_deref(), Some("Ann"));
    assert_eq!(got.username, None);
    assert!(got.can_be_messaged);

    // protect with a known owner leaves the owner's row alone.
    let req = ProtectRequest {
        owner: Some(uid(7)),
        ..request(gid(1), vec![by_id(1)])
    };
    s.protect(&req, t(900)).await.expect("protect");
    assert_eq!(s.owner(uid(7)).await.expect("read"), Some(got));
}

async fn extending_a_protection(s: Arc<dyn Store>) {
    let g = gid(1);
    let first = ProtectRequest {
        title: Some("Old title".to_owned()),
        ..request(g, vec![by_name("alpha_chan")])
    };
    s.protect(&first, t(0)).await.expect("protect");
    assert!(s
        .pause(g, "bot lost its rights", t(5))
        .await
        .expect("pause"));

    // Same channel under another case, plus a new one; no title this time.
    let again = request(g, vec![by_name("ALPHA_chan"), by_id(2)]);
    let stored = s.protect(&again, t(10)).await.expect("extend");
    assert_eq!(stored.state, GroupState::Active, "protect re-activates");
    assert_eq!(stored.paused_reason, None);
    assert_eq!(
        stored.title.as_deref(),
        Some("Old title"),
        "title kept when not given"
    );
    assert_eq!((stored.created_at, stored.updated_at), (t(0), t(10)));
    assert_eq!(stored.channels.len(), 2, "{:?}", stored.channels);
    assert_eq!(stored.channels[0].username, Some(username("alpha_chan")));
    assert_eq!(stored.channels[1], by_id(2));

    // Given both id and username, the username-only row gets its id and the
    // missing fields; fields already stored are not replaced by protect.
    let resolved = EnforcedChannel {
        id: Some(cid(1)),
        username: Some(username("alpha_chan")),
        title: Some("Alpha".to_owned()),
        invite_link: None,
    };
    let stored = s
        .protect(&request(g, vec![resolved.clone()]), t(20))
        .await
        .expect("extend");
    assert_eq!(stored.channels.len(), 2);
    assert_eq!(stored.channels[0].id, Some(cid(1)));
    assert_eq!(stored.channels[0].title.as_deref(), Some("Alpha"));
    let renamed = EnforcedChannel {
        title: Some("Other".to_owned()),
        ..by_name("alpha_chan")
    };
    let stored = s
        .protect(&request(g, vec![renamed]), t(30))
        .await
        .expect("extend");
    assert_eq!(stored.channels[0].title.as_deref(), Some("Alpha"));
    assert_eq!(s.groups_for_channel(cid(1)).await.expect("groups"), vec![g]);

    // A new title replaces the old one.
    let titled = ProtectRequest {
        title: Some("New title".to_owned()),
        ..request(g, vec![])
    };
    let stored = s.protect(&titled, t(40)).await.expect("extend");
    assert_eq!(stored.title.as_deref(), Some("New title"));
    assert_eq!(stored.channels.len(), 2, "protect never unlinks");

    // Another group naming the same channel shares it.
    protect(&s, gid(2), vec![by_id(1)]).await;
    let mut both = vec![g, gid(2)];
    both.sort();
    assert_eq!(s.groups_for_channel(cid(1)).await.expect("groups"), both);
    assert_eq!(group_of(&s, gid(2)).await.channels[0], resolved);
}

async fn unprotect_keeps_history(s: Arc<dyn Store>) {
    let g = gid(1);
    protect(&s, g, vec![by_id(1), by_name("beta_chan")]).await;
    let settings = s
        .update_settings(g, &[SettingChange::MuteSeconds(3600)], t(1))
        .await
        .expect("settings");
    let r = s
        .record_restriction(&mute(g, uid(5)), t(2))
        .await
        .expect("record");
    assert!(s.confirm_restriction(g, r.id).await.expect("confirm"));
    s.record_seen(g, uid(5), t(2)).await.expect("seen");

    assert!(s.unprotect(g, t(3)).await.expect("unprotect"));
    let after = group_of(&s, g).await;
    assert_eq!(after.state, GroupState::Unprotected);
    assert!(after.channels.is_empty(), "links removed");
    assert!(!after.is_enforced());
    assert_eq!(after.settings, settings, "settings kept");
    assert_eq!(after.updated_at, t(3));
    let history = s.restriction_history(g, 10).await.expect("history");
    assert_eq!(ids(&history), vec![r.id.0], "restriction history kept");
    assert_eq!(
        s.count_seen(g).await.expect("count"),
        1,
        "seen members kept"
    );
    assert!(s
        .groups_for_channel(cid(1))
        .await
        .expect("groups")
        .is_empty());

    assert!(!s.unprotect(gid(99), t(4)).await.expect("unknown"));

    // Protecting again starts from the new channels and the kept settings.
    let again = s
        .protect(&request(g, vec![by_id(3)]), t(5))
        .await
        .expect("protect again");
    assert_eq!(again.channels, vec![by_id(3)]);
    assert_eq!(again.settings, settings);
    assert_eq!(again.state, GroupState::Active);
}

async fn pause_and_resume(s: Arc<dyn Store>) {
    let g = gid(1);
    protect(&s, g, vec![by_id(1)]).await;
    assert!(s
        .pause(g, "bot is no longer an admin", t(1))
        .await
        .expect("pause"));
    let paused = group_of(&s, g).await;
    assert_eq!(paused.state, GroupState::Paused);
    assert_eq!(
        paused.paused_reason.as_deref(),
        Some("bot is no longer an admin")
    );
    assert!(!paused.is_enforced());
    assert_eq!(paused.channels, vec![by_id(1)], "pausing keeps the links");
    assert!(s
        .groups_for_channel(cid(1))
        .await
        .expect("groups")
        .is_empty());

    assert!(s.resume(g, t(2)).await.expect("resume"));
    let resumed = group_of(&s, g).await;
    assert_eq!(resumed.state, GroupState::Active);
    assert_eq!(resumed.paused_reason, None);
    assert_eq!(resumed.updated_at, t(2));
    assert!(resumed.is_enforced());
    assert_eq!(s.groups_for_channel(cid(1)).await.expect("groups"), vec![g]);
    assert!(
        !s.resume(g, t(3)).await.expect("resume active"),
        "not paused"
    );

    assert!(!s.pause(gid(99), "x", t(4)).await.expect("unknown"));
    assert!(!s.resume(gid(99), t(4)).await.expect("unknown"));
    assert!(
        s.group(gid(99)).await.expect("read").is_none(),
        "nothing created"
    );

    // An unprotected group stays unprotected: pause is no way to revive it.
    assert!(s.unprotect(g, t(5)).await.expect("unprotect"));
    s.pause(g, "x", t(6)).await.expect("pause unprotected");
    assert_eq!(group_of(&s, g).await.state, GroupState::Unprotected);
    assert!(!s.resume(g, t(7)).await.expect("resume unprotected"));
    assert_eq!(group_of(&s, g).await.state, GroupState::Unprotected);
}

async fn link_unlink_update_channel(s: Arc<dyn Store>) {
    let g = gid(1);
    protect(&s, g, vec![by_id(1)]).await;
    assert!(s
        .link_channel(g, &by_name("beta_chan"), t(1))
        .await
        .expect("link"));
    assert!(
        !s.link_channel(g, &by_name("Beta_Chan"), t(2))
            .await
            .expect("link again"),
        "linking twice is a no-op"
    );
    let linked = group_of(&s, g).await;
    assert_eq!(linked.channels, vec![by_id(1), by_name("beta_chan")]);
    assert_eq!(linked.updated_at, t(1));
    match s.link_channel(gid(99), &by_id(1), t(3)).await {
        Err(StoreError::UnknownGroup(x)) => assert_eq!(x, gid(99)),
        other => panic!("expected UnknownGroup, got {other:?}"),
    }

    // The bot resolved @beta_chan: found by username, it gets its id.
    let beta = EnforcedChannel {
        id: Some(cid(2)),
        username: Some(username("beta_chan")),
        title: Some("Beta".to_owned()),
        invite_link: None,
    };
    assert!(s.update_channel(&beta).await.expect("update"));
    assert_eq!(group_of(&s, g).await.channels[1], beta);
    assert_eq!(s.groups_for_channel(cid(2)).await.expect("groups"), vec![g]);

    // A private channel: the invite link the bot created, and title changes.
    let with_link = EnforcedChannel {
        invite_link: Some("https://t.me/+AbCdEf".to_owned()),
        title: Some("One".to_owned()),
        ..by_id(1)
    };
    assert!(s.update_channel(&with_link).await.expect("update"));
    let retitled = EnforcedChannel {
        title: Some("One, renamed".to_owned()),
        ..by_id(1)
    };
    assert!(s.update_channel(&retitled).await.expect("update"));
    let first = &group_of(&s, g).await.channels[0];
    assert_eq!(
        first.title.as_deref(),
        Some("One, renamed"),
        "update overwrites"
    );
    assert_eq!(
        first.invite_link.as_deref(),
        Some("https://t.me/+AbCdEf"),
        "and keeps what it was not given"
    );
    assert_eq!(first.join_url().as_deref(), Some("https://t.me/+AbCdEf"));

    // Unknown channels are not created by update_channel.
    assert!(!s.update_channel(&by_id(9)).await.expect("update unknown"));
    assert!(!s
        .update_channel(&by_name("nobody_here"))
        .await
        .expect("update unknown"));
    assert!(!s
        .link_channel(g, &by_id(1), t(4))
        .await
        .expect("still linked once"));

    assert!(s
        .unlink_channel(g, &ChannelRef::Username(username("BETA_CHAN")), t(5))
        .await
        .expect("unlink"));
    assert!(!s
        .unlink_channel(g, &ChannelRef::Username(username("beta_chan")), t(6))
        .await
        .expect("unlink again"));
    let after = group_of(&s, g).await;
    assert_eq!(after.channels.len(), 1);
    assert_eq!(after.channels[0].id, Some(cid(1)));
    assert_eq!(after.updated_at, t(5));
    assert!(s
        .groups_for_channel(cid(2))
        .await
        .expect("groups")
        .is_empty());
    assert!(s
        .unlink_channel(g, &ChannelRef::Id(cid(1)), t(7))
        .await
        .expect("unlink"));
    assert!(!group_of(&s, g).await.is_enforced(), "no channel left");
    assert!(!s
        .unlink_channel(gid(99), &ChannelRef::Id(cid(1)), t(8))
        .await
        .expect("unknown group"));

    // Relinking appends at the end.
    assert!(s
        .link_channel(g, &by_name("beta_chan"), t(9))
        .await
        .expect("relink"));
    assert!(s.link_channel(g, &by_id(1), t(9)).await.expect("relink"));
    let order: Vec<Option<ChannelId>> = group_of(&s, g)
        .await
        .channels
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(order, vec![Some(cid(2)), Some(cid(1))]);
}

async fn channel_id_and_username_of_two_rows_conflict(s: Arc<dyn Store>) {
    let g = gid(1);
    protect(&s, g, vec![by_id(1), by_name("other_chan")]).await;
    let both = EnforcedChannel {
        id: Some(cid(1)),
        username: Some(username("other_chan")),
        title: None,
        invite_link: None,
    };
    match s.update_channel(&both).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    match s.protect(&request(gid(2), vec![both]), t(1)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(
        s.group(gid(2)).await.expect("read").is_none(),
        "the failed protect left nothing"
    );
    assert_eq!(
        group_of(&s, g).await.channels,
        vec![by_id(1), by_name("other_chan")]
    );

    let nameless = EnforcedChannel {
        id: None,
        username: None,
        title: Some("?".to_owned()),
        invite_link: None,
    };
    assert!(s
        .protect(&request(gid(3), vec![nameless]), t(2))
        .await
        .is_err());
    assert!(s.group(gid(3)).await.expect("read").is_none());
}

async fn settings_persist_and_invalid_change_changes_nothing(s: Arc<dyn Store>) {
    let g = gid(1);
    protect(&s, g, vec![by_id(1)]).await;
    let changed = s
        .update_settings(
            g,
            &[
                SettingChange::Action(NonMemberAction::Kick),
                SettingChange::MuteSeconds(600),
                SettingChange::Allow(uid(7)),
                SettingChange::Allow(uid(8)),
                SettingChange::CheckOnJoin(false),
            ],
            t(1),
        )
        .await
        .expect("valid changes");
    assert_eq!(changed.action, NonMemberAction::Kick);
    assert_eq!(changed.mute_seconds, 600);
    assert!(!changed.check_on_join);
    assert_eq!(changed.allowlist, BTreeSet::from([uid(7), uid(8)]));
    assert_eq!(
        changed.warning_ttl_seconds,
        GroupSettings::default().warning_ttl_seconds
    );
    let stored = group_of(&s, g).await;
    assert_eq!(stored.settings, changed, "persisted");
    assert_eq!(stored.updated_at, t(1));

    // One invalid change among valid ones: an error, and nothing changes.
    match s
        .update_settings(
            g,
            &[
                SettingChange::ExemptBots(false),
                SettingChange::Disallow(uid(7)),
                SettingChange::MuteSeconds(10),
            ],
            t(2),
        )
        .await
    {
        Err(StoreError::Settings(SettingsError::MuteLength(10))) => {}
        other => panic!("expected MuteLength error, got {other:?}"),
    }
    let unchanged = group_of(&s, g).await;
    assert_eq!(unchanged.settings, changed);
    assert_eq!(unchanged.updated_at, t(1));

    let later = s
        .update_settings(g, &[SettingChange::Disallow(uid(7))], t(3))
        .await
        .expect("disallow");
    assert_eq!(later.allowlist, BTreeSet::from([uid(8)]));
    assert_eq!(group_of(&s, g).await.settings, later);

    match s
        .update_settings(gid(99), &[SettingChange::ExemptBots(false)], t(4))
        .await
    {
        Err(StoreError::UnknownGroup(x)) => assert_eq!(x, gid(99)),
        other => panic!("expected UnknownGroup, got {other:?}"),
    }
}

async fn groups_for_channel_lists_only_active_linking_groups(s: Arc<dyn Store>) {
    // X = channel 1, Y = channel 2.
    protect(&s, gid(1), vec![by_id(1)]).await; // active, X
    protect(&s, gid(2), vec![by_id(1)]).await; // paused, X
    s.pause(gid(2), "rights", t(1)).await.expect("pause");
    protect(&s, gid(3), vec![by_id(1)]).await; // unprotected, X
    s.unprotect(gid(3), t(1)).await.expect("unprotect");
    protect(&s, gid(4), vec![by_id(2)]).await; // active, Y only
    protect(&s, gid(5), vec![by_id(2), by_id(1)]).await; // active, X and Y
    protect(&s, gid(6), vec![by_id(1)]).await; // active, X unlinked later
    s.unlink_channel(gid(6), &ChannelRef::Id(cid(1)), t(1))
        .await
        .expect("unlink");

    let mut expected = vec![gid(1), gid(5)];
    expected.sort();
    assert_eq!(s.groups_for_channel(cid(1)).await.expect("X"), expected);
    let mut expected = vec![gid(4), gid(5)];
    expected.sort();
    assert_eq!(s.groups_for_channel(cid(2)).await.expect("Y"), expected);
    assert!(s
        .groups_for_channel(cid(3))
        .await
        .expect("unknown")
        .is_empty());
}

async fn restriction_lifecycle(s: Arc<dyn Store>) {
    let (g1, g2) = (gid(1), gid(2));
    protect(&s, g1, vec![by_id(1)]).await;
    protect(&s, g2, vec![by_id(1)]).await;
    let (u1, u2) = (uid(11), uid(12));

    let new1 = NewRestriction {
        until: Some(t(3600)),
        reason: "missing @alpha_chan".to_owned(),
        ..mute(g1, u1)
    };
    let r1 = s.record_restriction(&new1, t(1)).await.expect("record");
    assert_eq!(
        (r1.group, r1.user, r1.kind),
        (g1, u1, RestrictionKind::Mute)
    );
    assert_eq!(r1.state, RestrictionState::Pending);
    assert_eq!(r1.reason, "missing @alpha_chan");
    assert_eq!((r1.placed_at, r1.until), (t(1), Some(t(3600))));
    assert_eq!((r1.lifted_at, r1.lift_reason), (None, None));
    assert!(r1.is_active());
    assert_eq!(
        s.active_restriction(g1, u1).await.expect("active"),
        Some(r1.clone())
    );

    assert!(s.confirm_restriction(g1, r1.id).await.expect("confirm"));
    assert!(!s
        .confirm_restriction(g1, r1.id)
        .await
        .expect("confirm twice"));
    let r1 = Restriction {
        state: RestrictionState::Active,
        ..r1
    };
    assert_eq!(
        s.active_restriction(g1, u1).await.expect("active"),
        Some(r1.clone())
    );

    let kick = NewRestriction {
        kind: RestrictionKind::Kick,
        ..mute(g1, u2)
    };
    let r2 = s.record_restriction(&kick, t(2)).await.expect("record");
    assert_eq!((r2.kind, r2.until), (RestrictionKind::Kick, None));
    let r3 = s
        .record_restriction(&mute(g2, u1), t(3))
        .await
        .expect("record");
    assert!(r1.id < r2.id && r2.id < r3.id, "ids increase");

    assert_eq!(
        ids(&s.active_restrictions(g1).await.expect("list")),
        vec![r1.id.0, r2.id.0]
    );
    assert_eq!(s.count_active_restrictions(g1).await.expect("count"), 2);
    assert_eq!(s.count_active_restrictions(g2).await.expect("count"), 1);
    assert_eq!(
        s.active_restrictions_for_user(u1).await.expect("user"),
        vec![r1.clone(), r3.clone()]
    );
    let page1 = s.active_restrictions_page(None, 2).await.expect("page");
    assert_eq!(ids(&page1), vec![r1.id.0, r2.id.0]);
    let page2 = s
        .active_restrictions_page(Some(r2.id), 2)
        .await
        .expect("page");
    assert_eq!(ids(&page2), vec![r3.id.0]);
    assert!(s
        .active_restrictions_page(Some(r3.id), 2)
        .await
        .expect("page")
        .is_empty());

    assert!(s
        .lift_restriction(g1, r1.id, LiftReason::Joined, t(10))
        .await
        .expect("lift"));
    assert!(!s
        .lift_restriction(g1, r1.id, LiftReason::Admin, t(11))
        .await
        .expect("lift twice"));
    assert!(!s
        .confirm_restriction(g1, r1.id)
        .await
        .expect("confirm lifted"));
    assert_eq!(s.active_restriction(g1, u1).await.expect("active"), None);
    assert_eq!(s.count_active_restrictions(g1).await.expect("count"), 1);
    assert_eq!(
        s.active_restrictions_for_user(u1).await.expect("user"),
        vec![r3.clone()]
    );

    // One open restriction per member: recording again returns the open row (r2, the kick).
    let r4 = s
        .record_restriction(&mute(g1, u2), t(4))
        .await
        .expect("record");
    let r5 = s
        .record_restriction(&mute(g1, u2), t(5))
        .await
        .expect("record");
    assert_eq!((r4.id, r5.id), (r2.id, r2.id), "no second open row");
    assert_eq!((r4.kind, r4.placed_at), (RestrictionKind::Kick, t(2)));
    assert_eq!(
        s.active_restriction(g1, u2)
            .await
            .expect("active")
            .map(|r| r.id),
        Some(r2.id)
    );
    let lifted = s
        .lift_member(g1, u2, LiftReason::Admin, t(20))
        .await
        .expect("lift member");
    assert_eq!(ids(&lifted), vec![r2.id.0]);
    for r in &lifted {
        assert_eq!(r.state, RestrictionState::Lifted);
        assert_eq!(
            (r.lifted_at, r.lift_reason),
            (Some(t(20)), Some(LiftReason::Admin))
        );
    }
    assert!(s
        .lift_member(g1, u2, LiftReason::Admin, t(21))
        .await
        .expect("again")
        .is_empty());
    assert_eq!(s.count_active_restrictions(g1).await.expect("count"), 0);
    assert!(s.active_restrictions(g1).await.expect("list").is_empty());

    let history = s.restriction_history(g1, 10).await.expect("history");
    assert_eq!(ids(&history), vec![r2.id.0, r1.id.0], "newest first");
    let h1 = history.last().expect("r1");
    assert_eq!(h1.state, RestrictionState::Lifted);
    assert_eq!(
        (h1.lifted_at, h1.lift_reason),
        (Some(t(10)), Some(LiftReason::Joined))
    );
    assert_eq!(h1.reason, "missing @alpha_chan");
    assert_eq!(
        ids(&s.restriction_history(g1, 1).await.expect("history")),
        vec![r2.id.0]
    );

    match s.record_restriction(&mute(gid(99), u1), t(30)).await {
        Err(StoreError::UnknownGroup(x)) => assert_eq!(x, gid(99)),
        other => panic!("expected UnknownGroup, got {other:?}"),
    }
    assert_eq!(
        ids(&s.active_restrictions_page(None, 100).await.expect("page")),
        vec![r3.id.0]
    );
    assert!(s
        .restriction_history(gid(99), 10)
        .await
        .expect("history")
        .is_empty());
}

async fn tenancy_isolation(s: Arc<dyn Store>) {
    let (a, b) = (gid(1), gid(2));
    protect(&s, a, vec![by_id(1), by_name("alpha_chan")]).await;
    protect(&s, b, vec![by_id(2)]).await;
    s.update_settings(
        a,
        &[
            SettingChange::MuteSeconds(600),
            SettingChange::Allow(uid(3)),
        ],
        t(1),
    )
    .await
    .expect("settings");
    let user = uid(50);
    let ra = s
        .record_restriction(&mute(a, user), t(2))
        .await
        .expect("record");
    let ra_kept = s
        .record_restriction(&mute(a, uid(51)), t(2))
        .await
        .expect("record");
    s.record_seen(a, user, t(2)).await.expect("seen");
    let group_a = group_of(&s, a).await;
    let history_a = s.restriction_history(a, 100).await.expect("history");
    let seen_a = s.seen_members(a, None, 100).await.expect("seen");

    // Group B tries to read A's data.
    assert_eq!(s.active_restriction(b, user).await.expect("read"), None);
    assert!(s.active_restrictions(b).await.expect("read").is_empty());
    assert_eq!(s.count_active_restrictions(b).await.expect("read"), 0);
    assert!(s
        .restriction_history(b, 100)
        .await
        .expect("read")
        .is_empty());
    assert!(s.seen_members(b, None, 100).await.expect("read").is_empty());
    assert_eq!(s.count_seen(b).await.expect("read"), 0);
    assert_eq!(group_of(&s, b).await.settings, GroupSettings::default());

    // Group B tries to change A's data.
    assert!(!s.confirm_restriction(b, ra.id).await.expect("confirm"));
    assert!(!s
        .lift_restriction(b, ra.id, LiftReason::Admin, t(3))
        .await
        .expect("lift"));
    assert!(s
        .lift_member(b, user, LiftReason::Admin, t(3))
        .await
        .expect("lift")
        .is_empty());
    s.record_seen(b, user, t(9)).await.expect("seen in b");
    s.update_settings(
        b,
        &[
            SettingChange::MuteSeconds(0),
            SettingChange::Disallow(uid(3)),
        ],
        t(3),
    )
    .await
    .expect("settings of b");
    assert!(!s
        .unlink_channel(b, &ChannelRef::Id(cid(1)), t(3))
        .await
        .expect("unlink"));
    assert!(!s
        .unlink_channel(b, &ChannelRef::Username(username("alpha_chan")), t(3))
        .await
        .expect("unlink"));
    // B links A's channel, then drops it: A keeps it.
    assert!(s.link_channel(b, &by_id(1), t(3)).await.expect("link"));
    assert!(s
        .unlink_channel(b, &ChannelRef::Id(cid(1)), t(3))
        .await
        .expect("unlink"));
    s.pause(b, "x", t(3)).await.expect("pause b");
    assert!(s.unprotect(b, t(3)).await.expect("unprotect b"));
    s.migrate_group(b, gid(3), t(3)).await.expect("migrate b");

    // A is exactly as it was (only B's own restriction-less rows changed).
    assert_eq!(group_of(&s, a).await, group_a);
    assert_eq!(
        s.restriction_history(a, 100).await.expect("history"),
        history_a
    );
    assert_eq!(
        s.active_restriction(a, user).await.expect("read"),
        Some(ra.clone()),
        "still pending, not confirmed or lifted by B"
    );
    assert_eq!(s.seen_members(a, None, 100).await.expect("seen"), seen_a);
    assert_eq!(s.count_active_restrictions(a).await.expect("count"), 2);
    assert_eq!(s.groups_for_channel(cid(1)).await.expect("groups"), vec![a]);
    assert!(s
        .active_restrictions(gid(3))
        .await
        .expect("moved b")
        .is_empty());
    assert_eq!(
        s.count_seen(gid(3)).await.expect("moved b"),
        1,
        "B's own seen row moved with B"
    );
    assert_eq!(
        s.seen_members(gid(3), None, 10).await.expect("seen")[0].first_seen,
        t(9)
    );
    // A can still do everything with its own rows.
    assert!(s.confirm_restriction(a, ra.id).await.expect("confirm"));
    assert!(s
        .lift_restriction(a, ra.id, LiftReason::Joined, t(4))
        .await
        .expect("lift"));
    assert!(s
        .active_restriction(a, uid(51))
        .await
        .expect("read")
        .is_some());
    assert_eq!(s.active_restrictions(a).await.expect("list"), vec![ra_kept]);
}

async fn migrate_group_moves_everything(s: Arc<dyn Store>) {
    let (old, new) = (GroupId(-4_000_123), gid(1));
    let req = ProtectRequest {
        title: Some("Became a supergroup".to_owned()),
        owner: Some(uid(42)),
        ..request(old, vec![by_id(1), by_name("beta_chan")])
    };
    s.protect(&req, t(0)).await.expect("protect");
    s.update_settings(
        old,
        &[SettingChange::Action(NonMemberAction::DeleteOnly)],
        t(1),
    )
    .await
    .expect("settings");
    let r = s
        .record_restriction(&mute(old, uid(5)), t(2))
        .await
        .expect("record");
    s.confirm_restriction(old, r.id).await.expect("confirm");
    let lifted = s
        .record_restriction(&mute(old, uid(6)), t(2))
        .await
        .expect("record");
    s.lift_restriction(old, lifted.id, LiftReason::Joined, t(3))
        .await
        .expect("lift");
    s.record_seen(old, uid(5), t(2)).await.expect("seen");
    s.record_seen(old, uid(6), t(3)).await.expect("seen");
    let before = group_of(&s, old).await;
    let history_before = s.restriction_history(old, 10).await.expect("history");

    s.migrate_group(old, new, t(10)).await.expect("migrate");

    assert!(s.group(old).await.expect("read").is_none(), "old id gone");
    let moved = group_of(&s, new).await;
    assert_eq!(moved.id, new);
    assert_eq!(moved.channels, before.channels, "links moved");
    assert_eq!(moved.settings, before.settings, "settings moved");
    assert_eq!(
        (
            moved.title.as_deref(),
            moved.owner,
            moved.state,
            moved.created_at
        ),
        (
            before.title.as_deref(),
            before.owner,
            before.state,
            before.created_at
        )
    );
    assert_eq!(moved.updated_at, t(10));
    let history_after = s.restriction_history(new, 10).await.expect("history");
    let expected: Vec<Restriction> = history_before
        .into_iter()
        .map(|r| Restriction { group: new, ..r })
        .collect();
    assert_eq!(history_after, expected, "restrictions moved, ids kept");
    assert!(s
        .restriction_history(old, 10)
        .await
        .expect("history")
        .is_empty());
    assert_eq!(
        s.active_restriction(new, uid(5))
            .await
            .expect("active")
            .map(|r| r.id),
        Some(r.id)
    );
    let seen: Vec<UserId> = s
        .seen_members(new, None, 10)
        .await
        .expect("seen")
        .iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(seen, vec![uid(5), uid(6)], "seen members moved");
    assert_eq!(s.count_seen(old).await.expect("count"), 0);
    assert_eq!(
        s.groups_for_channel(cid(1)).await.expect("groups"),
        vec![new]
    );
    assert_eq!(
        s.list_groups()
            .await
            .expect("list")
            .iter()
            .map(|g| g.id)
            .collect::<Vec<_>>(),
        vec![new]
    );
}

async fn migrate_group_conflicts_change_nothing(s: Arc<dyn Store>) {
    let (a, b) = (gid(1), gid(2));
    protect(&s, a, vec![by_id(1)]).await;
    protect(&s, b, vec![by_id(2)]).await;
    let r = s
        .record_restriction(&mute(a, uid(5)), t(1))
        .await
        .expect("record");
    s.record_seen(a, uid(5), t(1)).await.expect("seen");
    let (group_a, group_b) = (group_of(&s, a).await, group_of(&s, b).await);

    match s.migrate_group(a, b, t(2)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    match s.migrate_group(gid(99), gid(98), t(2)).await {
        Err(StoreError::UnknownGroup(x)) => assert_eq!(x, gid(99)),
        other => panic!("expected UnknownGroup, got {other:?}"),
    }
    assert!(
        s.group(gid(98)).await.expect("read").is_none(),
        "nothing created"
    );
    assert_eq!(group_of(&s, a).await, group_a);
    assert_eq!(group_of(&s, b).await, group_b);
    assert_eq!(s.active_restrictions(a).await.expect("list"), vec![r]);
    assert!(s.active_restrictions(b).await.expect("list").is_empty());
    assert_eq!(
        (
            s.count_seen(a).await.expect("a"),
            s.count_seen(b).await.expect("b")
        ),
        (1, 0)
    );
    assert_eq!(s.list_groups().await.expect("list").len(), 2);
}

/// The warm-up's order: most recently seen first, ties by user id (highest
/// first), paged by the last row's (last_seen, user), one group only.
async fn seen_members_most_recent_first(s: Arc<dyn Store>) {
    let (a, b) = (gid(1), gid(2));
    protect(&s, a, vec![by_id(1)]).await;
    protect(&s, b, vec![by_id(2)]).await;
    assert!(s
        .recently_seen(a, None, 10)
        .await
        .expect("empty group")
        .is_empty());
    s.record_seen_many(&[
        (a, uid(1), t(5)),
        (a, uid(2), t(9)),
        (a, uid(3), t(7)),
        (a, uid(4), t(9)),
        (a, uid(5), t(1)),
        (a, uid(6), t(7)),
        (b, uid(7), t(100)),
        (b, uid(1), t(50)),
    ])
    .await
    .expect("batch");
    // A later sighting moves a member to the front.
    s.record_seen(a, uid(5), t(20)).await.expect("seen again");
    let mut order = Vec::new();
    let mut before = None;
    loop {
        let page = s.recently_seen(a, before, 2).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some((last.last_seen, last.user));
        for m in &page {
            assert_eq!(m.group, a, "tenancy: only a's rows");
            order.push((m.user, m.last_seen));
        }
    }
    assert_eq!(
        order,
        vec![
            (uid(5), t(20)),
            (uid(4), t(9)),
            (uid(2), t(9)),
            (uid(6), t(7)),
            (uid(3), t(7)),
            (uid(1), t(5)),
        ]
    );
    let one = s.recently_seen(b, None, 1).await.expect("b");
    assert_eq!(one.iter().map(|m| m.user).collect::<Vec<_>>(), vec![uid(7)]);
    assert!(s
        .recently_seen(gid(99), None, 10)
        .await
        .expect("unknown group")
        .is_empty());
}

async fn seen_members_batch_upsert(s: Arc<dyn Store>) {
    let (a, b) = (gid(1), gid(2));
    protect(&s, a, vec![by_id(1)]).await;
    protect(&s, b, vec![by_id(2)]).await;
    s.record_seen(a, uid(5), t(10)).await.expect("seen");

    s.record_seen_many(&[])
        .await
        .expect("an empty batch is a no-op");
    // Out of order, a pair twice, an older time for a known row, an unknown group.
    s.record_seen_many(&[
        (b, uid(7), t(3)),
        (a, uid(5), t(4)),
        (a, uid(6), t(8)),
        (a, uid(6), t(6)),
        (gid(99), uid(1), t(1)),
        (b, uid(5), t(2)),
    ])
    .await
    .expect("batch");
    let row = |g, u| {
        let s = s.clone();
        async move { s.seen_member(g, u).await.expect("read") }
    };
    let a5 = row(a, uid(5)).await.expect("a/5 kept");
    assert_eq!(
        (a5.first_seen, a5.last_seen),
        (t(10), t(10)),
        "last_seen never moves backwards"
    );
    let a6 = row(a, uid(6)).await.expect("a/6 inserted");
    assert_eq!(
        (a6.first_seen, a6.last_seen),
        (t(8), t(8)),
        "a pair given twice keeps its latest time"
    );
    assert_eq!(row(b, uid(7)).await.map(|m| m.last_seen), Some(t(3)));
    assert_eq!(row(b, uid(5)).await.map(|m| m.last_seen), Some(t(2)));
    assert_eq!(row(a, uid(7)).await, None, "tenancy: b's member is not a's");
    assert_eq!(
        s.count_seen(gid(99)).await.expect("count"),
        0,
        "unknown group skipped"
    );
    assert_eq!(s.count_seen(a).await.expect("count"), 2);
    assert_eq!(s.count_seen(b).await.expect("count"), 2);

    // A batch larger than one statement's chunk.
    let many: Vec<_> = (1..=1_200).map(|u| (b, uid(1_000 + u), t(u))).collect();
    s.record_seen_many(&many).await.expect("large batch");
    assert_eq!(s.count_seen(b).await.expect("count"), 1_202);
    assert_eq!(
        row(b, uid(2_200)).await.map(|m| m.last_seen),
        Some(t(1_200))
    );
}

async fn seen_members_upsert_and_paging(s: Arc<dyn Store>) {
    let g = gid(1);
    protect(&s, g, vec![by_id(1)]).await;
    s.record_seen(g, uid(500), t(1)).await.expect("seen");
    s.record_seen(g, uid(500), t(3)).await.expect("seen again");
    s.record_seen(g, uid(500), t(2))
        .await
        .expect("seen out of order");
    let first = s.seen_members(g, None, 10).await.expect("seen");
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].group, first[0].user), (g, uid(500)));
    assert_eq!(first[0].first_seen, t(1), "first_seen kept");
    assert_eq!(first[0].last_seen, t(3), "last_seen is the latest");

    // 25 more members, recorded out of id order.
    let mut users: Vec<i64> = (1..=25).map(|i| (i * 37) % 1000 + 1).collect();
    for (i, u) in users.iter().enumerate() {
        s.record_seen(g, uid(*u), t(10 + i as i64))
            .await
            .expect("seen");
    }
    users.push(500);
    users.sort_unstable();
    users.dedup();
    assert_eq!(s.count_seen(g).await.expect("count"), users.len() as u64);

    let mut paged = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = s.seen_members(g, after, 10).await.expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().map(|m| m.user);
        paged.extend(page.iter().map(|m| m.user.0));
        pages += 1;
    }
    assert_eq!(paged, users, "pages in user-id order cover everyone once");
    assert_eq!(pages, users.len().div_ceil(10));

    // Unknown group: a silent no-op.
    s.record_seen(gid(99), uid(1), t(1))
        .await
        .expect("unknown group is a no-op");
    assert_eq!(s.count_seen(gid(99)).await.expect("count"), 0);
    assert!(s.group(gid(99)).await.expect("read").is_none());
}

async fn concurrent_writers(s: Arc<dyn Store>) {
    const TASKS: i64 = 8;
    const EACH: i64 = 50;
    let g = gid(1);
    protect(&s, g, vec![by_id(1)]).await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            for j in 0..EACH {
                let user = uid(task * 1000 + j + 1);
                let at = t(j);
                let r = s.record_restriction(&mute(g, user), at).await?;
                assert!(s.confirm_restriction(g, r.id).await?, "confirm {r:?}");
                if j % 2 == 0 {
                    assert!(s.lift_restriction(g, r.id, LiftReason::Joined, at).await?);
                }
                s.record_seen(g, user, at).await?;
                s.update_settings(
                    g,
                    &[
                        SettingChange::Allow(user),
                        SettingChange::ExemptBots(j % 2 == 0),
                    ],
                    at,
                )
                .await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for h in handles {
        h.await
            .expect("task did not panic")
            .expect("no store error");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "concurrent_writers: {} tasks x {} rounds (5 writes each) in {:?}",
        TASKS, EACH, elapsed
    );

    let total = (TASKS * EACH) as u64;
    assert_eq!(
        s.count_active_restrictions(g).await.expect("count"),
        total / 2
    );
    let history = s.restriction_history(g, 10_000).await.expect("history");
    assert_eq!(history.len() as u64, total);
    let distinct: BTreeSet<i64> = history.iter().map(|r| r.id.0).collect();
    assert_eq!(distinct.len() as u64, total, "every id distinct");
    assert!(
        history.iter().all(|r| r.state != RestrictionState::Pending),
        "all confirmed"
    );
    assert_eq!(s.count_seen(g).await.expect("count"), total);
    let settings = group_of(&s, g).await.settings;
    let expected: BTreeSet<UserId> = (0..TASKS)
        .flat_map(|task| (0..EACH).map(move |j| uid(task * 1000 + j + 1)))
        .collect();
    assert_eq!(settings.allowlist, expected, "no lost settings update");
}

async fn one_open_restriction_per_member(s: Arc<dyn Store>) {
    let (g, other) = (gid(1), gid(2));
    protect(&s, g, vec![by_id(1)]).await;
    protect(&s, other, vec![by_id(1)]).await;
    let user = uid(7);
    // Two updates of one member racing to mute them, many times over.
    let mut handles = Vec::new();
    for task in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.place_restriction(&mute(g, user), t(task)).await
        }));
    }
    let mut rows = Vec::new();
    let mut fresh = 0;
    for h in handles {
        let (row, wrote) = h.await.expect("no panic").expect("recorded");
        fresh += usize::from(wrote);
        rows.push(row);
    }
    assert_eq!(
        fresh, 1,
        "exactly one caller wrote the row; the others found it"
    );
    let first = rows[0].id;
    assert!(rows.iter().all(|r| r.id == first), "{rows:?}");
    assert!(s.confirm_restriction(g, first).await.expect("confirm"));
    assert_eq!(s.count_active_restrictions(g).await.expect("count"), 1);
    assert_eq!(
        s.restriction_history(g, 100).await.expect("history").len(),
        1
    );
    // Another group's row for the same user is its own.
    let elsewhere = s
        .record_restriction(&mute(other, user), t(9))
        .await
        .expect("recorded");
    assert_ne!(elsewhere.id, first);
    assert_eq!(s.count_active_restrictions(other).await.expect("count"), 1);
    // Once lifted, the next restriction is a new row.
    assert!(s
        .lift_restriction(g, first, LiftReason::Joined, t(10))
        .await
        .expect("lift"));
    let again = s
        .record_restriction(&mute(g, user), t(11))
        .await
        .expect("recorded");
    assert!(again.id > first && again.state == RestrictionState::Pending);
    assert_eq!(s.count_active_restrictions(g).await.expect("count"), 1);
    assert_eq!(
        s.restriction_history(g, 100).await.expect("history").len(),
        2
    );
}

// --- schema cases (need the database itself) -------------------------------------

async fn migration_v2_closes_duplicate_open_rows(db: &Db) {
    let g = gid(1);
    let s = db.store().await;
    protect(&s, g, vec![by_id(1)]).await;
    drop(s);
    // Back to a schema at version 1 (no unique index, none of the later tables: V3
    // update_journal, V4 join_requests, V5 audits and MTProto sessions, V6 schema_compat), with the duplicates it allowed; the history is rewound
    // too, or V2 would count as missing below the later versions.
    db.execute(
        "DROP INDEX restrictions_active_member;
         CREATE INDEX restrictions_active_member ON restrictions (group_id, user_id) WHERE state <> 'lifted';
         DROP TABLE update_journal;
         DROP TABLE join_requests;
         DROP TABLE audit_members;
         DROP TABLE audit_runs;
         DROP TABLE mtproto_peers;
         DROP TABLE mtproto_sessions;
         DROP TABLE schema_compat;
         DELETE FROM refinery_schema_history WHERE version >= 2;
         INSERT INTO restrictions (group_id, user_id, kind, state, reason, placed_at)
         VALUES (-1001000000001, 5, 'mute', 'active', 'old', 1),
                (-1001000000001, 5, 'mute', 'pending', 'newest', 2),
                (-1001000000001, 6, 'mute', 'active', 'single', 3),
                (-1001000000001, 5, 'mute', 'lifted', 'history', 0);",
    );
    let s = db.store().await;
    assert_eq!(s.count_active_restrictions(g).await.expect("count"), 2);
    let open = s
        .active_restriction(g, uid(5))
        .await
        .expect("store")
        .expect("one open row left");
    assert_eq!(open.reason, "newest", "the newest row is kept");
    let history = s.restriction_history(g, 10).await.expect("history");
    let old = history
        .iter()
        .find(|r| r.reason == "old")
        .expect("old row kept as history");
    assert_eq!(
        (old.state, old.lift_reason),
        (RestrictionState::Lifted, Some(LiftReason::NotApplied))
    );
    assert_eq!(history.len(), 4, "nothing deleted");
    // And from now on the schema holds the rule.
    let again = s
        .record_restriction(&mute(g, uid(5)), t(9))
        .await
        .expect("record");
    assert_eq!(again.id, open.id);
}

async fn join_requests_lifecycle(s: Arc<dyn Store>) {
    let g = gid(1);
    protect(&s, g, vec![by_id(1)]).await;
    // An unknown group is refused, not recorded.
    match s.record_join_request(&join(gid(99), uid(5), 0, 600)).await {
        Err(StoreError::UnknownGroup(x)) => assert_eq!(x, gid(99)),
        other => panic!("expected UnknownGroup, got {other:?}"),
    }
    let r = s
        .record_join_request(&join(g, uid(5), 10, 600))
        .await
        .expect("record");
    assert_eq!(
        r,
        JoinRequest {
            group: g,
            user: uid(5),
            user_chat: ChatId(5),
            requested_at: t(10),
            expires_at: t(610),
            notice: None,
            state: JoinRequestState::Pending,
            decided_at: None,
        }
    );
    // The same request delivered again keeps the pending row (and its deadline).
    let again = s
        .record_join_request(&join(g, uid(5), 20, 600))
        .await
        .expect("record again");
    assert_eq!(again, r);
    assert!(s
        .set_join_request_notice(g, uid(5), MessageId(77))
        .await
        .expect("notice"));
    assert!(!s
        .set_join_request_notice(g, uid(6), MessageId(78))
        .await
        .expect("notice of nobody"));
    let read = s
        .join_request(g, uid(5))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.notice, Some(MessageId(77)));
    assert!(s.join_request(g, uid(6)).await.expect("read").is_none());
    assert_eq!(s.count_pending_join_requests(g).await.expect("count"), 1);

    // Pending cannot be a decision; the first decision wins, a second finds nothing pending.
    assert!(matches!(
        s.decide_join_request(g, uid(5), JoinRequestState::Pending, t(30))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s
        .decide_join_request(g, uid(5), JoinRequestState::Approved, t(30))
        .await
        .expect("decide"));
    assert!(!s
        .decide_join_request(g, uid(5), JoinRequestState::Declined, t(31))
        .await
        .expect("decide again"));
    let decided = s
        .join_request(g, uid(5))
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(decided.state, JoinRequestState::Approved);
    assert_eq!(decided.decided_at, Some(t(30)));
    assert!(!s
        .set_join_request_notice(g, uid(5), MessageId(79))
        .await
        .expect("notice after the decision"));
    assert_eq!(s.count_pending_join_requests(g).await.expect("count"), 0);

    // A new request after a decided one starts over.
    let renewed = s
        .record_join_request(&join(g, uid(5), 100, 300))
        .await
        .expect("new request");
    assert_eq!(renewed.state, JoinRequestState::Pending);
    assert_eq!((renewed.requested_at, renewed.expires_at), (t(100), t(400)));
    assert_eq!((renewed.notice, renewed.decided_at), (None, None));
    for state in [JoinRequestState::Declined, JoinRequestState::Released] {
        s.record_join_request(&join(g, uid(6), 0, 60))
            .await
            .expect("record");
        assert!(s
            .decide_join_request(g, uid(6), state, t(70))
            .await
            .expect("decide"));
        assert_eq!(
            s.join_request(g, uid(6))
                .await
                .expect("read")
                .map(|r| r.state),
            Some(state)
        );
    }
}

async fn join_requests_due_and_purged_across_groups(s: Arc<dyn Store>) {
    let (a, b) = (gid(1), gid(2));
    protect(&s, a, vec![by_id(1)]).await;
    protect(&s, b, vec![by_id(2)]).await;
    for (g, u, at, wait) in [
        (a, 1, 0, 600),
        (b, 2, 0, 300),
        (a, 3, 0, 900),
        (b, 4, 50, 600),
    ] {
        s.record_join_request(&join(g, uid(u), at, wait))
            .await
            .expect("record");
    }
    assert!(s
        .due_join_requests(t(299), 10)
        .await
        .expect("due")
        .is_empty());
    assert_eq!(
        requesters(&s.due_join_requests(t(650), 10).await.expect("due")),
        vec![(b, uid(2)), (a, uid(1)), (b, uid(4))],
        "soonest deadline first, across groups"
    );
    assert_eq!(
        requesters(&s.due_join_requests(t(650), 2).await.expect("due")),
        vec![(b, uid(2)), (a, uid(1))]
    );
    assert_eq!(
        requesters(&s.pending_join_requests(a, 10).await.expect("pending")),
        vec![(a, uid(1)), (a, uid(3))]
    );
    assert_eq!(
        requesters(&s.pending_join_requests(a, 1).await.expect("pending")),
        vec![(a, uid(1))]
    );
    // Decided requests are no longer due, and are purged once old enough.
    s.decide_join_request(b, uid(2), JoinRequestState::Declined, t(300))
        .await
        .expect("decide");
    s.decide_join_request(a, uid(1), JoinRequestState::Approved, t(600))
        .await
        .expect("decide");
    assert_eq!(
        requesters(&s.due_join_requests(t(650), 10).await.expect("due")),
        vec![(b, uid(4))]
    );
    assert_eq!(s.purge_join_requests(t(301)).await.expect("purge"), 1);
    assert!(s.join_request(b, uid(2)).await.expect("read").is_none());
    assert!(s.join_request(a, uid(1)).await.expect("read").is_some());
    assert_eq!(s.purge_join_requests(t(10_000)).await.expect("purge"), 1);
    assert_eq!(s.count_pending_join_requests(a).await.expect("count"), 1);
    assert_eq!(s.count_pending_join_requests(b).await.expect("count"), 1);
}

async fn join_requests_are_per_group_and_move_with_it(s: Arc<dyn Store>) {
    let (a, b) = (gid(1), GroupId(-4_000_321));
    protect(&s, a, vec![by_id(1)]).await;
    protect(&s, b, vec![by_id(2)]).await;
    s.record_join_request(&join(a, uid(5), 0, 600))
        .await
        .expect("record");
    // Group b sees and changes nothing of group a's request.
    assert!(s.join_request(b, uid(5)).await.expect("read").is_none());
    assert!(!s
        .decide_join_request(b, uid(5), JoinRequestState::Declined, t(1))
        .await
        .expect("decide in b"));
    assert!(!s
        .set_join_request_notice(b, uid(5), MessageId(1))
        .await
        .expect("notice in b"));
    assert_eq!(s.count_pending_join_requests(b).await.expect("count"), 0);
    assert!(s
        .pending_join_requests(b, 10)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        s.join_request(a, uid(5))
            .await
            .expect("read")
            .map(|r| r.state),
        Some(JoinRequestState::Pending)
    );
    // A basic group becoming a supergroup takes its pending requests along.
    s.record_join_request(&join(b, uid(6), 0, 600))
        .await
        .expect("record");
    let to = gid(3);
    s.migrate_group(b, to, t(5)).await.expect("migrate");
    assert!(s.join_request(b, uid(6)).await.expect("read").is_none());
    let moved = s
        .join_request(to, uid(6))
        .await
        .expect("read")
        .expect("moved");
    assert_eq!(moved.group, to);
    assert_eq!(moved.state, JoinRequestState::Pending);
}

async fn schema_checks(db: &Db) {
    // An empty database is refused under Require, with the fix in the message.
    match store::open(&db.url, MigrationMode::Require).await {
        Err(e @ StoreError::NotMigrated { current: 0, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("gmbot migrate"), "{msg}");
        }
        Err(e) => panic!("expected NotMigrated, got {e}"),
        Ok(_) => panic!("an empty database was accepted under Require"),
    }

    let first = store::migrate(&db.url).await.expect("migrate");
    assert_eq!(
        first.applied.first(),
        Some(&(1, "initial".to_owned())),
        "{first:?}"
    );
    let latest = first
        .applied
        .last()
        .map(|m| m.0)
        .expect("applied something");
    assert_eq!(first.status.current, latest);
    assert_eq!(first.status.fit(), SchemaFit::Current);
    let second = store::migrate(&db.url).await.expect("migrate again");
    assert!(
        second.applied.is_empty(),
        "second run applies nothing: {second:?}"
    );
    assert_eq!(second.status.current, latest);

    // Every migration from V6 on declares the oldest binary it still lets run, and none
    // declares a binary newer than itself.
    let rows = db.query_pairs("SELECT version, min_reader_version FROM schema_compat");
    for v in (6..=latest).filter(|v| first.applied.iter().any(|m| m.0 == *v)) {
        let declared = rows.iter().find(|(version, _)| *version == v);
        assert!(
            declared.is_some_and(|&(_, reader)| (1..=v).contains(&reader)),
            "migration V{v} must write its schema_compat row: {rows:?}"
        );
    }
    assert_eq!(
        store::schema_status(&db.url)
            .await
            .expect("status")
            .min_reader,
        rows.iter().map(|r| r.1).max().expect("rows"),
    );

    let s = store::open(&db.url, MigrationMode::Require)
        .await
        .unwrap_or_else(|e| panic!("migrated database refused: {e}"));
    protect(&s, gid(1), vec![by_id(1)]).await;
    drop(s);

    // A schema from a newer binary that declares nothing is refused everywhere.
    let future = latest + 1000;
    db.execute(&format!(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ({future}, 'from_the_future', '2030-01-01T00:00:00Z', '0')"
    ));
    for mode in [MigrationMode::Require, MigrationMode::Apply] {
        match store::open(&db.url, mode).await {
            Err(StoreError::SchemaTooNew {
                found,
                known,
                needs,
            }) => {
                assert_eq!((found, known, needs), (future, latest, future));
            }
            Err(e) => panic!("expected SchemaTooNew under {mode:?}, got {e}"),
            Ok(_) => panic!("a newer schema was accepted under {mode:?}"),
        }
    }
    match store::migrate(&db.url).await {
        Err(e @ StoreError::SchemaTooNew { .. }) => {
            assert!(e.to_string().contains("upgrade gmbot"), "{e}");
        }
        other => panic!("expected SchemaTooNew from migrate, got {other:?}"),
    }
}

/// Appends a migration from a newer binary to the history, declaring `min_reader`
/// (`None`: no `schema_compat` row, as a migration before V6 or a careless one).
fn apply_future_migration(db: &Db, version: i64, min_reader: Option<i64>) {
    db.execute(&format!(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ({version}, 'future_{version}', '2030-01-01T00:00:00Z', '0')"
    ));
    if let Some(reader) = min_reader {
        db.execute(&format!(
            "INSERT INTO schema_compat (version, min_reader_version) VALUES ({version}, {reader})"
        ));
    }
}

async fn schema_ahead_runs_only_when_declared_compatible(db: &Db) {
    let latest = store::migrate(&db.url).await.expect("migrate").status.known;
    let s = db.store().await;
    protect(&s, gid(1), vec![by_id(1)]).await;
    drop(s);

    // A newer binary's additive migrations: this binary keeps running, in both modes.
    apply_future_migration(db, latest + 1, Some(latest));
    apply_future_migration(db, latest + 2, Some(latest - 1));
    let status = store::schema_status(&db.url).await.expect("status");
    assert_eq!(
        (
            status.current,
            status.known,
            status.min_reader,
            status.fit()
        ),
        (latest + 2, latest, latest, SchemaFit::AheadCompatible),
        "{status:?}"
    );
    assert!(status.pending.is_empty(), "{status:?}");
    for mode in [MigrationMode::Require, MigrationMode::Apply] {
        let s = store::open(&db.url, mode).await.unwrap_or_else(|e| {
            panic!("a compatible newer schema was refused under {mode:?}: {e}")
        });
        assert!(group_of(&s, gid(1)).await.is_enforced(), "data readable");
        protect(&s, gid(2), vec![by_id(2)]).await;
    }
    // `migrate` of the older binary has nothing to do and changes nothing.
    let report = store::migrate(&db.url).await.expect("migrate ahead");
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.status, status);

    // Then one that older readers would misread: refused everywhere, naming who may run.
    apply_future_migration(db, latest + 3, Some(latest + 1));
    for mode in [MigrationMode::Require, MigrationMode::Apply] {
        match store::open(&db.url, mode).await {
            Err(e @ StoreError::SchemaTooNew { .. }) => {
                let StoreError::SchemaTooNew {
                    found,
                    known,
                    needs,
                } = e
                else {
                    unreachable!()
                };
                assert_eq!((found, known, needs), (latest + 3, latest, latest + 1));
                let text = e.to_string();
                assert!(
                    text.contains(&format!("version {}", latest + 3))
                        && text.contains(&format!("version {} or later", latest + 1))
                        && text.contains(&format!("up to {latest}")),
                    "{text}"
                );
            }
            Err(e) => panic!("expected SchemaTooNew under {mode:?}, got {e}"),
            Ok(_) => panic!("an incompatible schema was accepted under {mode:?}"),
        }
    }
    assert!(matches!(
        store::migrate(&db.url).await,
        Err(StoreError::SchemaTooNew { .. })
    ));
    assert_eq!(
        store::schema_status(&db.url).await.expect("status").fit(),
        SchemaFit::TooNew
    );
}

async fn schema_behind_is_refused_or_migrated(db: &Db) {
    let s = db.store().await;
    protect(&s, gid(1), vec![by_id(1)]).await;
    let latest = store::schema_status(&db.url).await.expect("status").known;
    drop(s);
    // Back to the schema the previous release (V5) left: what a deploy of this binary meets.
    // A later migration adds its own undo here.
    db.execute(
        "DROP TABLE schema_compat;
         DELETE FROM refinery_schema_history WHERE version >= 6;",
    );
    let status = store::schema_status(&db.url).await.expect("status");
    assert_eq!(
        (status.current, status.fit()),
        (5, SchemaFit::Behind),
        "{status:?}"
    );
    assert_eq!(status.pending, (6..=latest).collect::<Vec<_>>());
    match store::open(&db.url, MigrationMode::Require).await {
        Err(e @ StoreError::NotMigrated { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("version 5")
                    && text.contains(&format!("needs {latest}"))
                    && text.contains("gmbot migrate"),
                "{text}"
            );
        }
        Err(e) => panic!("expected NotMigrated, got {e}"),
        Ok(_) => panic!("a schema behind this binary was accepted under Require"),
    }
    // Refusing changed nothing; Apply migrates, and the data is still there.
    assert_eq!(store::schema_status(&db.url).await.expect("status"), status);
    let s = store::open(&db.url, MigrationMode::Apply)
        .await
        .unwrap_or_else(|e| panic!("Apply on a schema behind: {e}"));
    assert!(group_of(&s, gid(1)).await.is_enforced());
    let after = store::schema_status(&db.url).await.expect("status");
    assert_eq!((after.current, after.fit()), (latest, SchemaFit::Current));
}

async fn open_apply_migrates_a_fresh_database(db: &Db) {
    let s = store::open(&db.url, MigrationMode::Apply)
        .await
        .unwrap_or_else(|e| panic!("Apply on a fresh database: {e}"));
    protect(&s, gid(1), vec![by_id(1)]).await;
    drop(s);
    // Data survives reopening; the schema is current.
    let again = store::open(&db.url, MigrationMode::Require)
        .await
        .unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(group_of(&again, gid(1)).await.channels, vec![by_id(1)]);
    let report = store::migrate(&db.url).await.expect("migrate");
    assert!(report.applied.is_empty());
    // Another fresh database of the same kind knows nothing of this one.
    let other = db.fresh();
    let s2 = other.store().await;
    assert!(s2.group(gid(1)).await.expect("read").is_none());
}

async fn memory_database_is_private_and_migrated(db: &Db) {
    // Always migrated, even under Require.
    let s = store::open(&db.url, MigrationMode::Require)
        .await
        .unwrap_or_else(|e| panic!("memory store under Require: {e}"));
    protect(&s, gid(1), vec![by_id(1)]).await;
    assert!(group_of(&s, gid(1)).await.is_enforced());
    // A second memory store is a different database.
    let other = db.fresh().store().await;
    assert!(other.group(gid(1)).await.expect("read").is_none());
    // migrate() on a memory URL migrates a throwaway database.
    let report = store::migrate(&db.url).await.expect("migrate");
    assert_eq!(report.applied.first(), Some(&(1, "initial".to_owned())));
    // The first store still holds its data.
    assert!(s.group(gid(1)).await.expect("read").is_some());
}

fn journaled(id: i64) -> JournaledUpdate {
    JournaledUpdate {
        update_id: id,
        payload: format!("{{\"v\":1,\"id\":{id},\"text\":\"ünïcode ' \\\" ;--\"}}"),
        received_at: t(id),
    }
}

async fn update_journal_keeps_takes_and_forgets(s: Arc<dyn Store>) {
    assert_eq!(s.count_journaled_updates().await.expect("count"), 0);
    s.journal_updates(&[]).await.expect("nothing to keep");
    let first: Vec<_> = [5, 3, 9].into_iter().map(journaled).collect();
    s.journal_updates(&first).await.expect("kept");
    // An id kept already keeps its payload.
    let mut again = journaled(3);
    again.payload = "other".into();
    s.journal_updates(&[again, journaled(7)])
        .await
        .expect("kept");
    assert_eq!(s.count_journaled_updates().await.expect("count"), 4);

    // Oldest first, at most `limit`, and held until `until`.
    let taken = s
        .take_journaled_updates(3, t(100), t(200))
        .await
        .expect("taken");
    let ids: Vec<i64> = taken.iter().map(|u| u.update_id).collect();
    assert_eq!(ids, vec![3, 5, 7]);
    assert_eq!(
        taken[0],
        journaled(3),
        "payload and time read back unchanged"
    );
    let rest = s
        .take_journaled_updates(10, t(150), t(250))
        .await
        .expect("taken");
    assert_eq!(
        rest.iter().map(|u| u.update_id).collect::<Vec<_>>(),
        vec![9]
    );
    assert!(s
        .take_journaled_updates(10, t(199), t(300))
        .await
        .expect("taken")
        .is_empty());

    // Keeping a held update again makes it available at once (a stop gives it back).
    s.journal_updates(&[journaled(9)]).await.expect("kept");
    let given_back = s
        .take_journaled_updates(10, t(199), t(250))
        .await
        .expect("taken");
    assert_eq!(given_back, vec![journaled(9)]);

    // Forgotten ones are gone; unknown ids are ignored; the rest come back after the hold.
    s.forget_journaled_updates(&[3, 7, 12345])
        .await
        .expect("forgotten");
    s.forget_journaled_updates(&[]).await.expect("nothing");
    assert_eq!(s.count_journaled_updates().await.expect("count"), 2);
    let back = s
        .take_journaled_updates(10, t(260), t(400))
        .await
        .expect("taken");
    assert_eq!(
        back.iter().map(|u| u.update_id).collect::<Vec<_>>(),
        vec![5, 9]
    );

    // A large batch goes in more than one statement.
    let many: Vec<_> = (1000..2200).map(journaled).collect();
    s.journal_updates(&many).await.expect("kept");
    assert_eq!(s.count_journaled_updates().await.expect("count"), 1202);
    let ids: Vec<i64> = (1000..2200).collect();
    s.forget_journaled_updates(&ids).await.expect("forgotten");
    assert_eq!(s.count_journaled_updates().await.expect("count"), 2);
}

async fn update_journal_held_rows_wait_for_their_holder(s: Arc<dyn Store>) {
    assert!(s
        .journal_held_updates(&[], t(100))
        .await
        .expect("nothing")
        .is_empty());
    // A write-ahead: held by the writer until t(100).
    let mut written = s
        .journal_held_updates(&[journaled(2), journaled(1)], t(100))
        .await
        .expect("kept");
    written.sort_unstable();
    assert_eq!(written, vec![1, 2]);
    // A second write of a kept id changes nothing (payload, hold) and says so.
    let mut again = journaled(1);
    again.payload = "other".into();
    assert_eq!(
        s.journal_held_updates(&[again, journaled(3)], t(10))
            .await
            .expect("kept"),
        vec![3]
    );
    s.forget_journaled_updates(&[3]).await.expect("forgotten");
    assert_eq!(s.count_journaled_updates().await.expect("count"), 2);
    assert!(
        s.take_journaled_updates(10, t(50), t(500))
            .await
            .expect("taken")
            .is_empty(),
        "held: nobody takes them while the writer renews"
    );
    // The writer renews 2 and handled 1 (forgotten); then it dies.
    s.hold_journaled_updates(&[2, 999], t(200))
        .await
        .expect("held");
    s.forget_journaled_updates(&[1]).await.expect("forgotten");
    s.hold_journaled_updates(&[1], t(300)).await.expect("held");
    assert_eq!(
        s.count_journaled_updates().await.expect("count"),
        1,
        "a renewal never writes a forgotten row back"
    );
    assert!(s
        .take_journaled_updates(10, t(150), t(500))
        .await
        .expect("taken")
        .is_empty());
    let taken = s
        .take_journaled_updates(10, t(200), t(500))
        .await
        .expect("taken");
    assert_eq!(
        taken,
        vec![journaled(2)],
        "after the hold, another instance takes it"
    );
}

async fn update_journal_take_is_exclusive(s: Arc<dyn Store>) {
    let all: Vec<_> = (1..=200).map(journaled).collect();
    s.journal_updates(&all).await.expect("kept");
    let mut handles = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .take_journaled_updates(7, t(0), t(1000))
                    .await
                    .expect("taken");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|u| u.update_id));
            }
        }));
    }
    let mut seen = Vec::new();
    for h in handles {
        seen.extend(h.await.expect("no panic"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<_>>(),
        "each taken exactly once"
    );
}

fn outcome(user: i64, outcome: AuditOutcome, restricted: bool) -> MemberOutcome {
    MemberOutcome {
        user: uid(user),
        outcome,
        restricted,
    }
}

async fn audit_runs_checkpoint_and_count_each_member_once(s: Arc<dyn Store>) {
    let (a, b) = (gid(1), gid(2));
    protect(&s, a, vec![by_id(1)]).await;
    protect(&s, b, vec![by_id(2)]).await;
    let new = NewAuditRun {
        group: a,
        apply: true,
        source: AuditSource::Directory,
    };
    assert!(matches!(
        s.start_audit(
            &NewAuditRun {
                group: gid(99),
                ..new
            },
            t(1)
        )
        .await,
        Err(StoreError::UnknownGroup(_))
    ));
    let run = s.start_audit(&new, t(1)).await.expect("start");
    assert_eq!(run.state, AuditState::Running);
    assert_eq!(run.cursor, AuditCursor::start(AuditSource::Directory));
    assert!((run.apply, run.pages, run.directory_total) == (true, 0, None));
    // One unfinished run per group; another group is independent.
    assert!(matches!(
        s.start_audit(&new, t(2)).await,
        Err(StoreError::Conflict(_))
    ));
    let other = s
        .start_audit(
            &NewAuditRun {
                group: b,
                apply: false,
                source: AuditSource::SeenOnly,
            },
            t(2),
        )
        .await
        .expect("b's run");
    assert_eq!(other.cursor, AuditCursor::Seen { after: None });

    // A page: results and cursor in one write; a member given twice keeps its first outcome.
    let next = AuditCursor::Directory {
        at: DirectoryCursor {
            query: DirectoryQuery::Search("ab".into()),
            offset: 200,
        },
    };
    let page = AuditPage {
        next: next.clone(),
        outcomes: vec![
            outcome(10, AuditOutcome::Subscribed, false),
            outcome(11, AuditOutcome::NotSubscribed, true),
            outcome(12, AuditOutcome::Exempt, false),
        ],
        directory_total: Some(150_000),
    };
    assert!(s
        .record_audit_page(a, run.id, &page, t(3))
        .await
        .expect("page"));
    // Outcomes of a page still being checked: stored (a member recorded already keeps its
    // first outcome), the cursor and the page count unmoved.
    assert!(s
        .record_audit_outcomes(
            a,
            run.id,
            &[
                outcome(12, AuditOutcome::Subscribed, false),
                outcome(20, AuditOutcome::Subscribed, false),
            ],
            t(3),
        )
        .await
        .expect("outcomes"));
    let mid = s
        .unfinished_audit(a)
        .await
        .expect("read")
        .expect("still running");
    assert_eq!((&mid.cursor, mid.pages), (&next, 1));
    let again = AuditPage {
        next: AuditCursor::Seen { after: None },
        outcomes: (11..=609)
            .map(|u| outcome(u, AuditOutcome::Unverifiable, false))
            .collect(),
        directory_total: None,
    };
    assert!(s
        .record_audit_page(a, run.id, &again, t(4))
        .await
        .expect("page 2"));
    let stored = s
        .unfinished_audit(a)
        .await
        .expect("read")
        .expect("still running");
    assert_eq!(stored.id, run.id);
    assert_eq!(stored.cursor, AuditCursor::Seen { after: None });
    assert_eq!((stored.pages, stored.directory_total), (2, Some(150_000)));
    assert_eq!(stored.updated_at, t(4));
    let counts = s.audit_counts(a, run.id).await.expect("counts");
    assert_eq!(counts.members, 600);
    assert_eq!(
        (counts.subscribed, counts.not_subscribed, counts.exempt),
        (2, 1, 1)
    );
    assert_eq!((counts.unverifiable, counts.restricted), (596, 1));
    assert_eq!(counts.checked(), 599);
    let mut found = s
        .audited_members(a, run.id, &[uid(9), uid(10), uid(609), uid(610)])
        .await
        .expect("audited");
    found.sort();
    assert_eq!(found, vec![uid(10), uid(609)]);
    assert_eq!(
        s.audit_not_subscribed(a, run.id, None, 10)
            .await
            .expect("list"),
        vec![uid(11)]
    );
    assert!(s
        .audit_not_subscribed(a, run.id, Some(uid(11)), 10)
        .await
        .expect("list")
        .is_empty());

    // Tenancy: b cannot read or write a's run.
    assert_eq!(s.audit_run(b, run.id).await.expect("read"), None);
    assert!(!s
        .record_audit_page(b, run.id, &page, t(5))
        .await
        .expect("refused"));
    assert!(!s
        .record_audit_outcomes(b, run.id, &page.outcomes, t(5))
        .await
        .expect("refused"));
    assert!(s
        .audited_members(b, run.id, &[uid(10)])
        .await
        .expect("audited")
        .is_empty());
    assert_eq!(s.audit_counts(b, run.id).await.expect("counts").members, 0);
    assert!(!s
        .end_audit(b, run.id, AuditState::Finished, t(5))
        .await
        .expect("end"));

    // Ended: no more pages, a new run may start, the results stay.
    assert!(s
        .end_audit(a, run.id, AuditState::Finished, t(6))
        .await
        .expect("end"));
    assert!(!s
        .end_audit(a, run.id, AuditState::Abandoned, t(7))
        .await
        .expect("already ended"));
    assert!(!s
        .record_audit_page(a, run.id, &page, t(7))
        .await
        .expect("page"));
    assert!(!s
        .record_audit_outcomes(a, run.id, &page.outcomes, t(7))
        .await
        .expect("outcomes"));
    let ended = s.audit_run(a, run.id).await.expect("read").expect("kept");
    assert_eq!(
        (ended.state, ended.ended_at),
        (AuditState::Finished, Some(t(6)))
    );
    assert_eq!(s.unfinished_audit(a).await.expect("read"), None);
    let second = s.start_audit(&new, t(8)).await.expect("a new run");
    assert_ne!(second.id, run.id);
    assert_eq!(
        s.audit_counts(a, run.id).await.expect("counts").members,
        600
    );
    assert_eq!(
        s.audit_counts(a, second.id).await.expect("counts").members,
        0
    );
    assert!(s
        .end_audit(a, second.id, AuditState::Abandoned, t(9))
        .await
        .expect("abandon"));
    assert!(matches!(
        s.end_audit(b, other.id, AuditState::Running, t(9)).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn mtproto_sessions_peers_and_leases(s: Arc<dyn Store>) {
    assert_eq!(s.mtproto_session("bot").await.expect("read"), None);
    // A lease creates an empty session.
    assert_eq!(
        s.lease_mtproto_session("bot", "host-a:1", t(100), t(0))
            .await
            .expect("lease"),
        SessionLease::Granted
    );
    let empty = s
        .mtproto_session("bot")
        .await
        .expect("read")
        .expect("created");
    assert_eq!((empty.home_dc, empty.dc_options.len()), (0, 0));
    // Held by a: b is refused until it runs out; a renews.
    assert_eq!(
        s.lease_mtproto_session("bot", "host-b:2", t(200), t(50))
            .await
            .expect("lease"),
        SessionLease::HeldBy {
            holder: "host-a:1".into(),
            until: t(100)
        }
    );
    assert_eq!(
        s.lease_mtproto_session("bot", "host-a:1", t(300), t(60))
            .await
            .expect("renew"),
        SessionLease::Granted
    );
    assert_eq!(
        s.lease_mtproto_session("bot", "host-b:2", t(400), t(301))
            .await
            .expect("expired lease"),
        SessionLease::Granted
    );
    assert!(!s
        .release_mtproto_session("bot", "host-a:1")
        .await
        .expect("release"));
    assert!(s
        .release_mtproto_session("bot", "host-b:2")
        .await
        .expect("release"));
    assert_eq!(
        s.lease_mtproto_session("bot", "host-a:1", t(500), t(302))
            .await
            .expect("free again"),
        SessionLease::Granted
    );

    let key = "ab".repeat(256);
    let session = MtprotoSession {
        name: "bot".into(),
        home_dc: 4,
        dc_options: vec![MtprotoDcOption {
            id: 4,
            ipv4: "149.154.167.92:443".into(),
            ipv6: "[2001:67c:4e8:f004::a]:443".into(),
            auth_key_hex: Some(key.clone()),
        }],
        updates: MtprotoUpdates {
            pts: 5,
            qts: 6,
            date: 7,
            seq: 8,
            channels: vec![(1234, 9)],
        },
    };
    s.save_mtproto_session(&session, t(10)).await.expect("save");
    assert_eq!(
        s.mtproto_session("bot").await.expect("read"),
        Some(session.clone())
    );
    assert!(
        !format!("{session:?}").contains(&key),
        "auth keys never print"
    );
    // Saving keeps the lease.
    assert!(matches!(
        s.lease_mtproto_session("bot", "host-b:2", t(600), t(303))
            .await
            .expect("lease"),
        SessionLease::HeldBy { .. }
    ));

    let me = MtprotoPeer {
        peer_id: 7_000_000_001,
        access_hash: Some(-5),
        is_bot: Some(true),
        is_self: Some(true),
        channel_kind: None,
    };
    let group = MtprotoPeer {
        peer_id: -1_002_000_000_001,
        access_hash: Some(77),
        is_bot: None,
        is_self: None,
        channel_kind: Some("megagroup".into()),
    };
    s.save_mtproto_peers("bot", &[me.clone(), group.clone()])
        .await
        .expect("peers");
    // An unknown value keeps the stored one; a known one replaces it.
    s.save_mtproto_peers(
        "bot",
        &[MtprotoPeer {
            access_hash: None,
            channel_kind: Some("gigagroup".into()),
            ..group.clone()
        }],
    )
    .await
    .expect("merge");
    let read = s
        .mtproto_peer("bot", group.peer_id)
        .await
        .expect("read")
        .expect("cached");
    assert_eq!(read.access_hash, Some(77));
    assert_eq!(read.channel_kind.as_deref(), Some("gigagroup"));
    assert_eq!(s.mtproto_self("bot").await.expect("read"), Some(me));
    assert_eq!(s.mtproto_peer("bot", 42).await.expect("read"), None);
    // Peers of an unknown session are ignored; sessions do not share peers.
    s.save_mtproto_peers("ghost", std::slice::from_ref(&group))
        .await
        .expect("ignored");
    assert_eq!(
        s.mtproto_peer("ghost", group.peer_id).await.expect("read"),
        None
    );
    s.lease_mtproto_session("other", "host-a:1", t(10), t(0))
        .await
        .expect("lease");
    assert_eq!(s.mtproto_self("other").await.expect("read"), None);
}
