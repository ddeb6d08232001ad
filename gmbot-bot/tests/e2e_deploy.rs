//! What the bot does at start with a schema that does not fit it (docs/operations.md,
//! "Rolling deploys"): the real `gmbot-bot` binary on a PostgreSQL schema behind it refuses
//! with exit code 3 and says what to run, changing nothing; SQLite migrates itself unless
//! `GMBOT_MIGRATE=never`; PostgreSQL with `GMBOT_MIGRATE=auto` migrates at start.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (database `test`) and Redis at 127.0.0.1:6379.

mod e2e_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_support::{
    options, start_configured, whole_flow, world, Backend, PgSchema, SqliteFile, Transport,
};
use gmbot_bot::run::{self, Bot};
use gmbot_bot::runtime::Shutdown;
use gmbot_bot::Config;
use gmbot_core::store::{self, SchemaFit, StoreError};

/// Runs the real binary with `vars` (and nothing else of this process' environment) and
/// returns its exit code and stderr; bounded: 60 s, then killed and failed.
fn run_binary(vars: &[(&str, String)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gmbot-bot"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("gmbot-bot runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gmbot-bot did not stop within 60 s on a schema it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.code(),
        std::fs::read_to_string(&err).expect("stderr"),
    )
}

/// Back to the schema the previous release (V5) left. A later migration adds its undo here.
fn rewind_to_v5(pg: &PgSchema) {
    e2e_support::with_pg_client(pg.url(), |c| {
        c.batch_execute(
            "DROP TABLE schema_compat; DELETE FROM refinery_schema_history WHERE version >= 6;",
        )
        .expect("rewind");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_behind_stops_the_binary_with_exit_code_3() {
    let w = world();
    let pg = PgSchema::new();
    let known = store::migrate(&pg.database_url())
        .await
        .expect("migrate")
        .status
        .known;
    rewind_to_v5(&pg);
    let vars = vec![
        ("TELEGRAM_BOT_TOKEN", w.sim.token().to_owned()),
        ("TELEGRAM_API_URL", w.sim.base_url()),
        ("DATABASE_URL", pg.url().to_owned()),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
    ];
    let (code, stderr) = tokio::task::spawn_blocking(move || run_binary(&vars))
        .await
        .expect("task");
    assert_eq!(code, Some(3), "{stderr}");
    for what in [
        "database at version 5".to_owned(),
        format!("this binary needs {known}"),
        "run `gmbot migrate`".to_owned(),
        "GMBOT_MIGRATE=auto".to_owned(),
    ] {
        assert!(stderr.contains(&what), "{what:?} missing from: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing was migrated, and Telegram was never asked anything.
    let status = store::schema_status(&pg.database_url())
        .await
        .expect("status");
    assert_eq!((status.current, status.fit()), (5, SchemaFit::Behind));
    assert!(w.sim.calls_to("getMe").is_empty(), "refused before getMe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_with_gmbot_migrate_auto_migrates_at_start() {
    let w = world();
    let backend = Backend::postgres_redis();
    let Backend::PostgresRedis(pg, _) = &backend else {
        unreachable!("postgres backend")
    };
    // The test backend sets GMBOT_MIGRATE=auto; without it the same start is refused.
    let mut vars = backend.vars();
    vars.retain(|(k, _)| *k != "GMBOT_MIGRATE");
    vars.push(("TELEGRAM_BOT_TOKEN", w.sim.token().to_owned()));
    vars.push(("TELEGRAM_API_URL", w.sim.base_url()));
    vars.push(("HTTP_LISTEN", "127.0.0.1:0".to_owned()));
    let config = Config::from_vars(vars.clone()).expect("config");
    let err = Bot::start(&config, options(&backend), &Shutdown::new())
        .await
        .expect_err("a fresh PostgreSQL schema is not migrated by default");
    assert!(run::is_schema_mismatch(&err), "{err:#}");
    assert!(
        matches!(
            err.downcast_ref::<StoreError>(),
            Some(StoreError::NotMigrated { current: 0, .. })
        ),
        "{err:#}"
    );

    vars.push(("GMBOT_MIGRATE", "auto".to_owned()));
    let config = Config::from_vars(vars).expect("config");
    let bot = start_configured(&w.sim, &config, Transport::Polling, options(&backend)).await;
    let status = store::schema_status(&pg.database_url())
        .await
        .expect("status");
    assert_eq!(status.fit(), SchemaFit::Current, "{status:?}");
    whole_flow(&w, &bot).await;
    bot.stop().await;
}

/// A SQLite file in its own temp dir, with the bot's variables for it.
fn sqlite_vars(w: &e2e_support::World, file: &SqliteFile) -> Vec<(&'static str, String)> {
    vec![
        ("TELEGRAM_BOT_TOKEN", w.sim.token().to_owned()),
        ("TELEGRAM_API_URL", w.sim.base_url()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", file.path().display()),
        ),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_migrates_itself_unless_told_never() {
    let w = world();
    let backend = Backend::sqlite();
    let Backend::Sqlite(file) = &backend else {
        unreachable!("sqlite backend")
    };

    let mut never = sqlite_vars(&w, file);
    never.push(("GMBOT_MIGRATE", "never".to_owned()));
    let config = Config::from_vars(never).expect("config");
    let err = Bot::start(&config, options(&backend), &Shutdown::new())
        .await
        .expect_err("GMBOT_MIGRATE=never on a fresh file");
    assert!(run::is_schema_mismatch(&err), "{err:#}");
    assert!(format!("{err:#}").contains("gmbot migrate"), "{err:#}");

    // The default: SQLite (one instance, development) migrates at start.
    let config = Config::from_vars(sqlite_vars(&w, file)).expect("config");
    let bot = start_configured(&w.sim, &config, Transport::Polling, options(&backend)).await;
    let status = store::schema_status(&file.database_url())
        .await
        .expect("status");
    assert_eq!(status.fit(), SchemaFit::Current, "{status:?}");
    whole_flow(&w, &bot).await;
    bot.stop().await;
}
