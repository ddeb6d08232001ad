//! A rolling deploy on PostgreSQL as docs/operations.md ("Rolling deploys") describes it, with
//! the real `gmbot` binary and the real bot (`run::Bot`) against the simulated Telegram: the
//! bot refuses a schema behind it until `gmbot migrate` ran, then works; after a newer version
//! migrated compatibly an instance of this version still (re)starts and works; after an
//! incompatible migration it refuses, and `gmbot migrate --check` says why.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (database `test`) and Redis at 127.0.0.1:6379.

#[path = "../../gmbot-bot/tests/e2e_support/mod.rs"]
mod e2e_support;

use std::process::Command;

use e2e_support::{
    options, settle, start_configured, whole_flow, world, Backend, Transport, World,
};
use gmbot_bot::run::{self, Bot};
use gmbot_bot::runtime::Shutdown;
use gmbot_bot::Config;
use gmbot_core::domain::UserId;
use gmbot_core::store::StoreError;

/// `gmbot ARGS` on `url`: exit code, stdout, stderr.
fn gmbot(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gmbot"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("TELEGRAM_BOT_TOKEN")
        .output()
        .expect("run the gmbot binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The bot's configuration for PostgreSQL as in production: no `GMBOT_MIGRATE`.
fn production_config(w: &World, backend: &Backend) -> Config {
    let mut vars = backend.vars();
    vars.retain(|(k, _)| *k != "GMBOT_MIGRATE");
    vars.push(("TELEGRAM_BOT_TOKEN", w.sim.token().to_owned()));
    vars.push(("TELEGRAM_API_URL", w.sim.base_url()));
    vars.push(("HTTP_LISTEN", "127.0.0.1:0".to_owned()));
    Config::from_vars(vars).expect("config")
}

/// A member who is not subscribed writes; asserts that the running bot muted them.
async fn non_member_is_muted(w: &World, bot: &e2e_support::Running, name: &str) -> UserId {
    let user = w.sim.add_user(name);
    w.sim.join(w.group, user).expect("joins the group");
    let m = w.sim.post(w.group, user, "hello").expect("posts");
    settle(&w.sim, &bot.monitor).await;
    assert!(
        w.sim.message(w.group, m).is_some_and(|m| m.deleted),
        "{name}'s message deleted"
    );
    assert!(!w.sim.can_post(w.group, user), "{name} muted");
    user
}

/// Inserts a newer version's migration `version` into the history, declaring `min_reader`.
fn newer_migration(url: &str, version: i64, min_reader: i64) {
    let sql = format!(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ({version}, 'newer_{version}', '2030-01-01T00:00:00Z', '0');
         INSERT INTO schema_compat (version, min_reader_version) VALUES ({version}, {min_reader});"
    );
    e2e_support::with_pg_client(url, move |c| {
        c.batch_execute(&sql).expect("newer migration")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_then_start_then_newer_schemas_on_postgres() {
    let w = world();
    let backend = Backend::postgres_redis();
    let Backend::PostgresRedis(pg, _) = &backend else {
        unreachable!("postgres backend")
    };
    let url = pg.url().to_owned();
    let config = production_config(&w, &backend);

    // 1. A new database: the bot refuses and names the command; --check agrees.
    let err = Bot::start(&config, options(&backend), &Shutdown::new())
        .await
        .expect_err("the schema is behind");
    assert!(run::is_schema_mismatch(&err), "{err:#}");
    let text = format!("{err:#}");
    assert!(
        text.contains("database at version 0") && text.contains("run `gmbot migrate`"),
        "{text}"
    );
    let (code, _, stderr) = gmbot(&url, &["migrate", "--check"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("pending"), "{stderr}");

    // 2. `gmbot migrate`, then the bot starts and works.
    let (code, stdout, stderr) = gmbot(&url, &["migrate"]);
    assert_eq!(code, Some(0), "{stderr}");
    let known: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("schema is now at version "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {stdout:?}"));
    assert_eq!(gmbot(&url, &["migrate", "--check"]).0, Some(0));
    let bot = start_configured(&w.sim, &config, Transport::Polling, options(&backend)).await;
    whole_flow(&w, &bot).await;

    // 3. A newer version migrates compatibly while this one runs: it goes on, and a restart
    //    of it (an instance not replaced yet) starts and works.
    newer_migration(&url, known + 1, known);
    non_member_is_muted(&w, &bot, "Dave").await;
    bot.stop().await;
    let (code, stdout, _) = gmbot(&url, &["migrate", "--check"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("compatible with it"), "{stdout}");
    let bot = start_configured(&w.sim, &config, Transport::Polling, options(&backend)).await;
    non_member_is_muted(&w, &bot, "Eve").await;
    bot.stop().await;

    // 4. A migration this version cannot run against: a restart refuses, naming who may run.
    newer_migration(&url, known + 2, known + 2);
    let err = Bot::start(&config, options(&backend), &Shutdown::new())
        .await
        .expect_err("the schema is too new");
    assert!(run::is_schema_mismatch(&err), "{err:#}");
    match err.downcast_ref::<StoreError>() {
        Some(StoreError::SchemaTooNew {
            found,
            known: k,
            needs,
        }) => assert_eq!((*found, *k, *needs), (known + 2, known, known + 2)),
        _ => panic!("expected SchemaTooNew: {err:#}"),
    }
    let (code, _, stderr) = gmbot(&url, &["migrate", "--check"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("upgrade gmbot"), "{stderr}");
}
