//! Latency of the store's hot queries at production-like sizes, on SQLite and PostgreSQL.
//!
//! ```text
//! cargo bench -p gmbot-core --bench store_hot_queries -- [sqlite|postgres|all]
//! ```
//!
//! Each backend is seeded with 10,000 protected groups, 20,000 channels and
//! 1,000,000 restriction rows (96 % lifted) by set-based SQL: a temp file for
//! SQLite, a private schema (dropped afterwards) for PostgreSQL at
//! `GMBOT_BENCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Then, through the `Store` trait — so `spawn_blocking` and the connection
//! pool are included — it times `group(id)`, `groups_for_channel(ch)` and
//! `active_restriction(g, u)` one call at a time over random keys, after a
//! warm-up, and prints p50/p90/p99/max. Two baselines put the numbers in
//! proportion: an empty `spawn_blocking` round trip, and `SELECT 1` through
//! an r2d2 pool configured like the adapter's.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmbot_core::domain::{ChannelId, GroupId, UserId};
use gmbot_core::store::{self, DatabaseUrl, MigrationMode, Store};

const GROUPS: i64 = 10_000;
const CHANNELS: i64 = 20_000;
const RESTRICTIONS: i64 = 1_000_000;
/// Channels linked by about twenty groups each (the rest by one group).
const POPULAR: i64 = 500;
const USERS: i64 = 200_000;

const SAMPLES: usize = 20_000;
const WARMUP: usize = 2_000;

const GROUP_BASE: i64 = -1_001_000_000_000;
const CHANNEL_BASE: i64 = -1_002_000_000_000;

/// Restriction row `i` is in group `GROUP_BASE - group_of(i)`, for user `user_of(i)`.
fn group_of(i: i64) -> i64 {
    1 + (i * 7) % GROUPS
}
fn user_of(i: i64) -> i64 {
    1 + (i * 104_729) % USERS
}

/// The seed, with `{series:N}` standing for "the integers 1..=N as column `i`".
fn seed_sql(series: impl Fn(i64) -> String) -> String {
    format!(
        "INSERT INTO protected_groups (group_id, title, state, settings, created_at, updated_at)
           SELECT {GROUP_BASE} - i, 'group ' || i,
                  CASE i % 20 WHEN 0 THEN 'paused' WHEN 1 THEN 'unprotected' ELSE 'active' END,
                  '{{}}', 1700000000, 1700000000
           FROM {groups};
         INSERT INTO enforced_channels (chat_id, username, username_key, title)
           SELECT {CHANNEL_BASE} - i, 'chan_' || i, 'chan_' || i, 'channel ' || i FROM {channels};
         INSERT INTO group_channel_links (group_id, channel_id, position, linked_at)
           SELECT {GROUP_BASE} - i, e.id, 1, 1700000000 FROM {groups}
           JOIN enforced_channels e
             ON e.chat_id = {CHANNEL_BASE} - ({POPULAR} + 1 + ((i - 1) * 2) % ({CHANNELS} - {POPULAR}));
         INSERT INTO group_channel_links (group_id, channel_id, position, linked_at)
           SELECT {GROUP_BASE} - i, e.id, 2, 1700000000 FROM {groups}
           JOIN enforced_channels e ON e.chat_id = {CHANNEL_BASE} - (1 + (i * 7919) % {POPULAR});
         INSERT INTO restrictions (group_id, user_id, kind, state, reason, placed_at, lifted_at, lift_reason)
           SELECT {GROUP_BASE} - (1 + (i * 7) % {GROUPS}), 1 + (i * 104729) % {USERS}, 'mute',
                  CASE i % 50 WHEN 0 THEN 'active' WHEN 7 THEN 'pending' ELSE 'lifted' END,
                  'seed', 1700000000 + i,
                  CASE WHEN i % 50 IN (0, 7) THEN NULL ELSE 1700000000 + i + 60 END,
                  CASE WHEN i % 50 IN (0, 7) THEN NULL ELSE 'joined' END
           FROM {restrictions};",
        groups = series(GROUPS),
        channels = series(CHANNELS),
        restrictions = series(RESTRICTIONS),
    )
}

/// xorshift64*: reproducible keys without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        // n is small and positive; the modulo bias is negligible at 2^53.
        i64::try_from(x).map_or(0, |x| x % n)
    }
}

/// Latency percentiles of one measured operation.
struct Stats {
    name: String,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    note: String,
}

fn stats(name: &str, mut samples: Vec<Duration>, note: String) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| {
        // Nearest-rank percentile.
        let rank = (q * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    };
    Stats {
        name: name.to_owned(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: samples[samples.len() - 1],
        note,
    }
}

/// Times `op` on a tokio worker, `WARMUP` untimed calls then `SAMPLES` timed ones.
async fn measure<F, Fut>(mut op: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..WARMUP {
        op(i).await;
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let t = Instant::now();
        op(WARMUP + i).await;
        samples.push(t.elapsed());
    }
    samples
}

/// Measures the baselines and the three hot queries on an open store.
async fn run_queries(store: Arc<dyn Store>, select_one: Arc<dyn Fn() + Send + Sync>) -> Vec<Stats> {
    let mut out = Vec::new();

    let empty = measure(|_| async {
        tokio::task::spawn_blocking(|| ())
            .await
            .expect("blocking task");
    })
    .await;
    out.push(stats(
        "spawn_blocking round trip (empty)",
        empty,
        String::new(),
    ));

    let select = measure(|_| {
        let f = select_one.clone();
        async move {
            tokio::task::spawn_blocking(move || f())
                .await
                .expect("blocking task");
        }
    })
    .await;
    out.push(stats(
        "SELECT 1 via spawn_blocking + pool",
        select,
        String::new(),
    ));

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let keys: Vec<i64> = (0..WARMUP + SAMPLES)
        .map(|_| 1 + rng.below(GROUPS))
        .collect();
    let found = AtomicUsize::new(0);
    let groups = measure(|i| {
        let store = store.clone();
        let id = GroupId(GROUP_BASE - keys[i]);
        let found = &found;
        async move {
            let g = store.group(id).await.expect("group()");
            if g.is_some_and(|g| g.channels.len() == 2) {
                found.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    out.push(stats(
        "group(id) (row + 2 channels)",
        groups,
        format!(
            "{} of {} found with 2 channels",
            found.load(Ordering::Relaxed),
            WARMUP + SAMPLES
        ),
    ));

    let keys: Vec<i64> = (0..WARMUP + SAMPLES)
        .map(|n| {
            // Half popular channels (about 20 groups), half single-group ones.
            if n % 2 == 0 {
                1 + rng.below(POPULAR)
            } else {
                POPULAR + 1 + rng.below(CHANNELS - POPULAR)
            }
        })
        .collect();
    let linked = AtomicUsize::new(0);
    let by_channel = measure(|i| {
        let store = store.clone();
        let ch = ChannelId(CHANNEL_BASE - keys[i]);
        let linked = &linked;
        async move {
            let n = store
                .groups_for_channel(ch)
                .await
                .expect("groups_for_channel()")
                .len();
            linked.fetch_add(n, Ordering::Relaxed);
        }
    })
    .await;
    out.push(stats(
        "groups_for_channel(ch)",
        by_channel,
        format!(
            "{:.1} active groups per call",
            linked.load(Ordering::Relaxed) as f64 / (WARMUP + SAMPLES) as f64
        ),
    ));

    // Members that were restricted in that group at some point (4 % still are).
    let keys: Vec<i64> = (0..WARMUP + SAMPLES)
        .map(|_| 1 + rng.below(RESTRICTIONS))
        .collect();
    let active = AtomicUsize::new(0);
    let restrictions = measure(|i| {
        let store = store.clone();
        let (g, u) = (
            GroupId(GROUP_BASE - group_of(keys[i])),
            UserId(user_of(keys[i])),
        );
        let active = &active;
        async move {
            let r = store
                .active_restriction(g, u)
                .await
                .expect("active_restriction()");
            if r.is_some() {
                active.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    out.push(stats(
        "active_restriction(g, u)",
        restrictions,
        format!(
            "{} of {} active",
            active.load(Ordering::Relaxed),
            WARMUP + SAMPLES
        ),
    ));
    out
}

/// The 1-minute load average (Linux), so a reader can tell a busy machine's tail from the store's.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn print_report(backend: &str, seeded: Duration, rows: &[Stats]) {
    println!(
        "\n### {backend} (seeded in {:.1} s; load average after the run: {})\n",
        seeded.as_secs_f64(),
        load_average()
    );
    println!("| operation | p50 µs | p90 µs | p99 µs | max µs | p50 / spawn_blocking | p50 / SELECT 1 | note |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let base = rows[0].p50.as_secs_f64();
    let one = rows[1].p50.as_secs_f64();
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.1}× | {:.2}× | {} |",
            r.name,
            micros(r.p50),
            micros(r.p90),
            micros(r.p99),
            micros(r.max),
            r.p50.as_secs_f64() / base,
            r.p50.as_secs_f64() / one,
            r.note
        );
    }
    let worst = rows[2..].iter().map(|r| r.p99).max().unwrap_or_default();
    println!(
        "\nworst hot-query p99: {} µs — target < 1000 µs: {}",
        micros(worst),
        if worst < Duration::from_millis(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}

fn bench_sqlite(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let url: DatabaseUrl = format!("sqlite://{}", path.display())
        .parse()
        .expect("sqlite URL");
    let started = Instant::now();
    rt.block_on(store::migrate(&url)).expect("migrate SQLite");
    {
        let c = rusqlite::Connection::open(&path).expect("open SQLite");
        let series = |n: i64| {
            format!(
                "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s)"
            )
        };
        c.execute_batch(&format!("BEGIN; {} COMMIT; ANALYZE;", seed_sql(series)))
            .expect("seed SQLite");
    }
    let seeded = started.elapsed();
    let store = rt
        .block_on(store::open(&url, MigrationMode::Require))
        .expect("open SQLite store");
    let pool = r2d2::Pool::builder()
        .max_size(8)
        .build(r2d2_sqlite::SqliteConnectionManager::file(&path))
        .expect("SQLite pool");
    let select_one: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let c = pool.get().expect("connection");
        // Cached, like the adapter's statements.
        let one: i64 = c
            .prepare_cached("SELECT 1")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .expect("SELECT 1");
        assert_eq!(one, 1);
    });
    let rows = rt
        .block_on(rt.spawn(run_queries(store, select_one)))
        .expect("measuring task");
    print_report("SQLite (file, WAL)", seeded, &rows);
}

fn bench_postgres(rt: &tokio::runtime::Runtime) {
    let base = std::env::var("GMBOT_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("gmbot_bench_{}", std::process::id());
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap_or_else(|e| {
        panic!("PostgreSQL is unreachable at {base} ({e}): start it, or set GMBOT_BENCH_PG_URL")
    });
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("create the bench schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bench_postgres_in(rt, &url);
    }));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .expect("drop the bench schema");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn bench_postgres_in(rt: &tokio::runtime::Runtime, url: &str) {
    let db_url: DatabaseUrl = url.parse().expect("postgres URL");
    let started = Instant::now();
    rt.block_on(store::migrate(&db_url))
        .expect("migrate PostgreSQL");
    {
        let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
        let series = |n: i64| format!("generate_series(1::bigint, {n}) AS s(i)");
        let seed = seed_sql(series).replace("'{}'", "'{}'::jsonb");
        c.batch_execute(&format!("BEGIN; {seed} COMMIT;"))
            .expect("seed PostgreSQL");
        // Separately: VACUUM cannot run inside the implicit transaction of a
        // multi-statement batch. It sets the visibility map (index-only scans).
        c.batch_execute("VACUUM ANALYZE")
            .expect("vacuum PostgreSQL");
    }
    let seeded = started.elapsed();
    let store = rt
        .block_on(store::open(&db_url, MigrationMode::Require))
        .expect("open PostgreSQL store");
    let config: postgres::Config = url.parse().expect("postgres config");
    // Configured like the adapter's pool: no check on checkout (the adapter
    // checks only connections that sat idle, which never happens here).
    let pool = r2d2::Pool::builder()
        .max_size(16)
        .min_idle(Some(1))
        .test_on_check_out(false)
        .build(r2d2_postgres::PostgresConnectionManager::new(
            config,
            postgres::NoTls,
        ))
        .expect("PostgreSQL pool");
    let pool_for_drop = pool.clone();
    let select_one: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let mut c = pool.get().expect("connection");
        // Simple protocol: one round trip, the floor for any query.
        let rows = c.simple_query("SELECT 1").expect("SELECT 1");
        assert!(rows
            .iter()
            .any(|m| matches!(m, postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1"))));
    });
    let rows = rt
        .block_on(rt.spawn(run_queries(store, select_one)))
        .expect("measuring task");
    // postgres::Client must not be dropped on a runtime thread; this one is plain.
    drop(pool_for_drop);
    print_report("PostgreSQL (loopback TCP)", seeded, &rows);
}

fn main() {
    // `cargo bench` passes `--bench`; the first other argument picks the backends.
    let which = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "all".to_owned());
    let (sqlite, postgres) = match which.as_str() {
        "sqlite" => (true, false),
        "postgres" => (false, true),
        "all" => (true, true),
        other => {
            eprintln!("unknown backend `{other}`: use sqlite, postgres or all");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "store hot queries: {GROUPS} groups, {CHANNELS} channels, {RESTRICTIONS} restrictions; \
         {SAMPLES} timed calls per operation after {WARMUP} warm-up calls, one at a time, \
         on {} tokio workers",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("load average before the run: {}", load_average());
    let started = Instant::now();
    if sqlite {
        bench_sqlite(&rt);
    }
    if postgres {
        bench_postgres(&rt);
    }
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}
