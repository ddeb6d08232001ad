//! Query-plan tests: the hot queries of both adapters must use an index on
//! every large table, at realistic sizes.
//!
//! Each test seeds 10,000 groups, 20,000 channels and 250,000 restrictions
//! (96 % lifted) with set-based SQL (`generate_series` in PostgreSQL, a
//! recursive CTE in SQLite), runs `ANALYZE` so the planner sees real
//! statistics, and asks the planner about the adapters' own SQL constants
//! with sample parameters. A plan that scans a large table fails the test
//! and prints the plan.

use super::migrations::{postgres_set, sqlite_set};
use super::postgres::sql as pg_sql;
use super::postgres::test_schema::{with_client, TestSchema};
use super::sqlite::sql as lite_sql;

const GROUPS: i64 = 10_000;
const CHANNELS: i64 = 20_000;
const RESTRICTIONS: i64 = 250_000;
/// Channels linked by many groups (a network of groups around one channel).
const POPULAR: i64 = 500;
const USERS: i64 = 200_000;

/// Tables that grow with the number of tenants; none may be scanned.
const LARGE_TABLES: [&str; 4] = [
    "protected_groups",
    "enforced_channels",
    "group_channel_links",
    "restrictions",
];

/// Sample parameters (present in the seeded data).
const SAMPLE_GROUP: i64 = -1_001_000_000_050; // holds restriction row 7
const SAMPLE_CHANNEL: i64 = -1_002_000_000_007; // a popular channel
const SAMPLE_USER: i64 = 1 + (7 * 104_729) % USERS; // restricted by row 7

/// One hot query: its SQL in each dialect (where that dialect runs it),
/// its parameters, and the large tables it reads, as (table, alias used in the SQL).
struct Hot {
    name: &'static str,
    pg: Option<&'static str>,
    sqlite: Option<&'static str>,
    params: &'static [i64],
    tables: &'static [(&'static str, &'static str)],
}

const HOT: [Hot; 6] = [
    Hot {
        name: "group config with channels, one statement",
        pg: Some(pg_sql::GROUP_WITH_CHANNELS),
        sqlite: None,
        params: &[SAMPLE_GROUP],
        tables: &[
            ("protected_groups", "g"),
            ("group_channel_links", "l"),
            ("enforced_channels", "c"),
        ],
    },
    Hot {
        name: "group by id",
        pg: Some(pg_sql::GROUP_BY_ID),
        sqlite: Some(lite_sql::GROUP_BY_ID),
        params: &[SAMPLE_GROUP],
        tables: &[("protected_groups", "protected_groups")],
    },
    Hot {
        name: "channels of a group",
        pg: Some(pg_sql::CHANNELS_OF_GROUP),
        sqlite: Some(lite_sql::CHANNELS_OF_GROUP),
        params: &[SAMPLE_GROUP],
        tables: &[("group_channel_links", "l"), ("enforced_channels", "c")],
    },
    Hot {
        name: "groups linked to a channel",
        pg: Some(pg_sql::GROUPS_FOR_CHANNEL),
        sqlite: Some(lite_sql::GROUPS_FOR_CHANNEL),
        params: &[SAMPLE_CHANNEL],
        tables: &[
            ("enforced_channels", "c"),
            ("group_channel_links", "l"),
            ("protected_groups", "g"),
        ],
    },
    Hot {
        name: "active restriction of a member in a group",
        pg: Some(pg_sql::ACTIVE_RESTRICTION),
        sqlite: Some(lite_sql::ACTIVE_RESTRICTION),
        params: &[SAMPLE_GROUP, SAMPLE_USER],
        tables: &[("restrictions", "restrictions")],
    },
    Hot {
        name: "active restrictions of a user",
        pg: Some(pg_sql::ACTIVE_RESTRICTIONS_FOR_USER),
        sqlite: Some(lite_sql::ACTIVE_RESTRICTIONS_FOR_USER),
        params: &[SAMPLE_USER],
        tables: &[("restrictions", "restrictions")],
    },
];

// --- PostgreSQL ----------------------------------------------------------

/// Seeds the realistic data set in the current schema (already migrated).
fn seed_postgres(c: &mut postgres::Client) {
    let seed = format!(
        "INSERT INTO protected_groups (group_id, title, state, settings, created_at, updated_at)
           SELECT -1001000000000 - g, 'group ' || g,
                  CASE g % 20 WHEN 0 THEN 'paused' WHEN 1 THEN 'unprotected' ELSE 'active' END,
                  '{{}}'::jsonb, 1700000000, 1700000000
           FROM generate_series(1::bigint, {GROUPS}) AS g;
         INSERT INTO enforced_channels (chat_id, username, username_key, title)
           SELECT -1002000000000 - ch, 'chan_' || ch, 'chan_' || ch, 'channel ' || ch
           FROM generate_series(1::bigint, {CHANNELS}) AS ch;
         INSERT INTO group_channel_links (group_id, channel_id, position, linked_at)
           SELECT -1001000000000 - g, e.id, 1, 1700000000
           FROM generate_series(1::bigint, {GROUPS}) AS g
           JOIN enforced_channels e ON e.chat_id = -1002000000000 - ({POPULAR} + 1 + ((g - 1) * 2) % ({CHANNELS} - {POPULAR}));
         INSERT INTO group_channel_links (group_id, channel_id, position, linked_at)
           SELECT -1001000000000 - g, e.id, 2, 1700000000
           FROM generate_series(1::bigint, {GROUPS}) AS g
           JOIN enforced_channels e ON e.chat_id = -1002000000000 - (1 + (g * 7919) % {POPULAR});
         INSERT INTO restrictions (group_id, user_id, kind, state, reason, placed_at, lifted_at, lift_reason)
           SELECT -1001000000000 - (1 + (i * 7) % {GROUPS}),
                  -- Open rows get users of their own: one open row per member (V2).
                  CASE WHEN i % 50 IN (0, 7) THEN {USERS} + i ELSE 1 + (i * 104729) % {USERS} END,
                  'mute',
                  CASE i % 50 WHEN 0 THEN 'active' WHEN 7 THEN 'pending' ELSE 'lifted' END,
                  'seed', 1700000000 + i,
                  CASE WHEN i % 50 IN (0, 7) THEN NULL ELSE 1700000000 + i + 60 END,
                  CASE WHEN i % 50 IN (0, 7) THEN NULL ELSE 'joined' END
           FROM generate_series(1::bigint, {RESTRICTIONS}) AS i;
         ANALYZE;"
    );
    c.batch_execute(&seed).expect("seed PostgreSQL");
}

/// `EXPLAIN` of a statement prepared with `sql`, run with `params`, under a
/// plan-cache mode (`force_custom_plan` or `force_generic_plan`: the
/// adapter's prepared statements switch to a generic plan after five runs).
fn pg_plan(c: &mut postgres::Client, sql: &str, params: &[i64], mode: &str) -> String {
    let args = params
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    c.batch_execute(&format!(
        "SET plan_cache_mode = {mode}; PREPARE hot_query AS {sql}"
    ))
    .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
    let plan = c
        .query(&format!("EXPLAIN EXECUTE hot_query({args})"), &[])
        .unwrap_or_else(|e| panic!("explain {sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    c.batch_execute("DEALLOCATE hot_query; RESET plan_cache_mode")
        .expect("deallocate");
    plan
}

/// Every large table the query reads is reached through an index, none by a sequential scan.
fn check_pg_plan(hot: &Hot, mode: &str, plan: &str) {
    for table in LARGE_TABLES {
        assert!(
            !plan.contains(&format!("Seq Scan on {table}")),
            "{} ({mode}): sequential scan of {table}:\n{plan}",
            hot.name
        );
    }
    for (table, _) in hot.tables {
        let indexed = plan.lines().any(|l| {
            let on_table = l.contains(&format!(" on {table}"));
            on_table
                && (l.contains("Index Scan") // also matches "Index Only Scan"
                    || l.contains("Index Only Scan")
                    || l.contains("Bitmap Heap Scan"))
        });
        assert!(
            indexed,
            "{} ({mode}): {table} is not read through an index:\n{plan}",
            hot.name
        );
    }
}

#[test]
fn postgres_hot_queries_use_indexes_at_realistic_sizes() {
    let schema = TestSchema::new("plans");
    with_client(&schema.url, |c| {
        postgres_set::migrations::runner()
            .run(c)
            .expect("migrate the test schema");
        seed_postgres(c);
        let counts: (i64, i64, i64) = {
            let r = c
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM protected_groups), \
                            (SELECT COUNT(*) FROM group_channel_links), \
                            (SELECT COUNT(*) FROM restrictions WHERE state <> 'lifted')",
                    &[],
                )
                .expect("count");
            (r.get(0), r.get(1), r.get(2))
        };
        assert_eq!(counts.0, GROUPS);
        assert_eq!(counts.1, 2 * GROUPS);
        assert_eq!(counts.2, RESTRICTIONS / 25);
        for hot in &HOT {
            let Some(sql) = hot.pg else { continue };
            for mode in ["force_custom_plan", "force_generic_plan"] {
                let plan = pg_plan(c, sql, hot.params, mode);
                eprintln!("PostgreSQL, {} ({mode}):\n{plan}\n", hot.name);
                check_pg_plan(hot, mode, &plan);
            }
        }
    });
}

// --- SQLite ----------------------------------------------------------------

/// Seeds the same data set (already migrated) with recursive CTEs.
fn seed_sqlite(c: &rusqlite::Connection) {
    let seed = format!(
        "BEGIN;
         INSERT INTO protected_groups (group_id, title, state, settings, created_at, updated_at)
           WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {GROUPS})
           SELECT -1001000000000 - g, 'group ' || g,
                  CASE g % 20 WHEN 0 THEN 'paused' WHEN 1 THEN 'unprotected' ELSE 'active' END,
                  '{{}}', 1700000000, 1700000000
           FROM s;
         INSERT INTO enforced_channels (id, chat_id, username, username_key, title)
           WITH RECURSIVE s(ch) AS (SELECT 1 UNION ALL SELECT ch + 1 FROM s WHERE ch < {CHANNELS})
           SELECT ch, -1002000000000 - ch, 'chan_' || ch, 'chan_' || ch, 'channel ' || ch FROM s;
         INSERT INTO group_channel_links (group_id, channel_id, position, linked_at)
           WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {GROUPS})
           SELECT -1001000000000 - g, {POPULAR} + 1 + ((g - 1) * 2) % ({CHANNELS} - {POPULAR}), 1, 1700000000 FROM s;
         INSERT INTO group_channel_links (group_id, channel_id, position, linked_at)
           WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {GROUPS})
           SELECT -1001000000000 - g, 1 + (g * 7919) % {POPULAR}, 2, 1700000000 FROM s;
         INSERT INTO restrictions (group_id, user_id, kind, state, reason, placed_at, lifted_at, lift_reason)
           WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {RESTRICTIONS})
           SELECT -1001000000000 - (1 + (i * 7) % {GROUPS}),
                  -- Open rows get users of their own: one open row per member (V2).
                  CASE WHEN i % 50 IN (0, 7) THEN {USERS} + i ELSE 1 + (i * 104729) % {USERS} END,
                  'mute',
                  CASE i % 50 WHEN 0 THEN 'active' WHEN 7 THEN 'pending' ELSE 'lifted' END,
                  'seed', 1700000000 + i,
                  CASE WHEN i % 50 IN (0, 7) THEN NULL ELSE 1700000000 + i + 60 END,
                  CASE WHEN i % 50 IN (0, 7) THEN NULL ELSE 'joined' END
           FROM s;
         COMMIT;
         ANALYZE;"
    );
    c.execute_batch(&seed).expect("seed SQLite");
}

fn sqlite_plan(c: &rusqlite::Connection, sql: &str, params: &[i64]) -> String {
    let mut stmt = c
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>(3)
        })
        .expect("explain")
        .collect::<Result<Vec<_>, _>>()
        .expect("plan rows");
    rows.join("\n")
}

/// Every large table is searched (`SEARCH … USING [COVERING] INDEX` or the
/// integer primary key), never walked by a bare `SCAN`.
fn check_sqlite_plan(hot: &Hot, plan: &str) {
    for (table, alias) in hot.tables {
        let names = [*table, *alias];
        let refers = |l: &str, verb: &str| {
            names
                .iter()
                .any(|n| l.starts_with(&format!("{verb} {n} ")) || l == format!("{verb} {n}"))
        };
        assert!(
            !plan.lines().any(|l| refers(l, "SCAN")),
            "{}: full scan of {table}:\n{plan}",
            hot.name
        );
        let searched = plan.lines().any(|l| {
            refers(l, "SEARCH")
                && (l.contains("USING INDEX")
                    || l.contains("USING COVERING INDEX")
                    || l.contains("USING INTEGER PRIMARY KEY")
                    || l.contains("USING PRIMARY KEY"))
        });
        assert!(
            searched,
            "{}: {table} is not searched through an index:\n{plan}",
            hot.name
        );
    }
}

#[test]
fn sqlite_hot_queries_use_indexes_at_realistic_sizes() {
    let mut c = rusqlite::Connection::open_in_memory().expect("open SQLite");
    sqlite_set::migrations::runner()
        .run(&mut c)
        .expect("migrate");
    seed_sqlite(&c);
    let active: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM restrictions WHERE state <> 'lifted'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(active, RESTRICTIONS / 25);
    for hot in &HOT {
        let Some(sql) = hot.sqlite else { continue };
        let plan = sqlite_plan(&c, sql, hot.params);
        eprintln!("SQLite, {}:\n{plan}\n", hot.name);
        check_sqlite_plan(hot, &plan);
    }
}

/// The checks themselves must be able to fail: a plan that scans is refused.
#[test]
fn plan_checks_reject_scans() {
    let hot = &HOT[4];
    let scan = "Limit\n  ->  Sort\n        ->  Seq Scan on restrictions\n              Filter: (state <> 'lifted'::text)";
    let refused = std::panic::catch_unwind(|| check_pg_plan(hot, "custom", scan));
    assert!(refused.is_err(), "a sequential scan must be refused");
    let refused = std::panic::catch_unwind(|| check_sqlite_plan(hot, "SCAN restrictions"));
    assert!(refused.is_err(), "a full scan must be refused");
    check_sqlite_plan(
        hot,
        "SEARCH restrictions USING INDEX restrictions_active_member (group_id=? AND user_id=?)",
    );
}
