//! End-to-end tests of the `gmbot` binary: the real executable, run against a
//! temporary SQLite file and against the real PostgreSQL (a fresh schema per
//! test). Every run also checks that nothing panicked and no backtrace was
//! printed, with `RUST_BACKTRACE=1` set so one would show.

#[path = "../../gmbot-core/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use gmbot_core::domain::{GroupId, NewRestriction, RestrictionKind, UnixTime, UserId};
use gmbot_core::store::{self, MigrationMode};
use serde_json::{json, Value};

/// A database for one test, and a working directory for the binary.
struct Db {
    url: String,
    workdir: tempfile::TempDir,
    _keep: Keep,
}

/// What keeps the database alive until the test ends.
enum Keep {
    Sqlite(support::SqliteFile),
    Postgres(support::PgSchema),
}

fn sqlite_db() -> Db {
    let (file, url) = support::sqlite_file_url();
    Db {
        url: url_text(&url),
        workdir: tempfile::tempdir().expect("create a working dir"),
        _keep: Keep::Sqlite(file),
    }
}

fn postgres_db() -> Db {
    let schema = support::PgSchema::new();
    Db {
        url: schema.url().to_owned(),
        workdir: tempfile::tempdir().expect("create a working dir"),
        _keep: Keep::Postgres(schema),
    }
}

fn url_text(url: &store::DatabaseUrl) -> String {
    match url {
        store::DatabaseUrl::SqliteFile(p) => format!("sqlite://{}", p.display()),
        other => other.to_string(),
    }
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Db {
    /// Runs `gmbot ARGS` with `DATABASE_URL` pointing at this database.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gmbot"));
        cmd.args(args)
            .current_dir(self.workdir.path())
            .env("DATABASE_URL", &self.url)
            .env("RUST_BACKTRACE", "1")
            // These tests exercise the offline path; a token in the caller's
            // environment would make `protect` ask Telegram.
            .env_remove("TELEGRAM_BOT_TOKEN")
            .env_remove("TELEGRAM_API_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run the gmbot binary");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for text in [&run.stdout, &run.stderr] {
            for bad in [
                "panicked",
                "stack backtrace",
                "RUST_BACKTRACE",
                "internal error",
            ] {
                assert!(
                    !text.contains(bad),
                    "`gmbot {args:?}` printed {bad:?}: {run:?}"
                );
            }
        }
        run
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "`gmbot {args:?}` failed: {run:?}");
        run.stdout
    }

    /// Runs and expects failure with `code` and one `error: …` line; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let run = self.run(args);
        assert_failed(&run, args, code)
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("`gmbot {args:?}` JSON: {e}\n{out}"))
    }

    fn groups(&self) -> Value {
        self.json(&["groups", "list", "--format", "json"])
    }

    fn migrate(&self) {
        self.ok(&["migrate"]);
    }

    /// Runs SQL directly against the database, beside the binary.
    fn execute(&self, sql: &str) {
        match &self._keep {
            Keep::Sqlite(f) => rusqlite::Connection::open(f.path())
                .and_then(|c| c.execute_batch(sql))
                .unwrap_or_else(|e| panic!("raw SQL failed: {e}")),
            Keep::Postgres(s) => {
                let sql = sql.to_owned();
                support::with_pg_client(s.url(), move |c| {
                    c.batch_execute(&sql)
                        .unwrap_or_else(|e| panic!("raw SQL failed: {e}"))
                })
            }
        }
    }

    /// Writes a file in the working directory and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.workdir.path().join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }
}

fn assert_failed(run: &Run, args: &[&str], code: i32) -> String {
    assert_eq!(run.code, Some(code), "`gmbot {args:?}`: {run:?}");
    assert!(
        run.stderr.starts_with("error: "),
        "`gmbot {args:?}` stderr should start with `error: `: {run:?}"
    );
    assert!(
        run.stdout.is_empty(),
        "`gmbot {args:?}` failed but printed: {run:?}"
    );
    run.stderr.clone()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// The value printed after `key` in `key   value` output.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.trim_start()
            .strip_prefix(key)
            .filter(|rest| rest.starts_with("  "))
            .map(str::trim)
    })
}

// --- the tests, each run on both backends -----------------------------------

fn migrate_then_list_empty(db: Db) {
    let e = db.fails(&["groups", "list"], 1);
    assert!(e.contains("gmbot migrate"), "{e}");
    assert!(e.contains("not migrated"), "{e}");

    let first = db.ok(&["migrate"]);
    assert!(first.contains("applied migration V1 "), "{first}");
    let version = first
        .lines()
        .find_map(|l| l.strip_prefix("schema is now at version "))
        .unwrap_or_else(|| panic!("no resulting version in {first:?}"));
    assert!(version.parse::<u32>().is_ok_and(|v| v >= 1), "{first}");
    let readers = format!(
        "gmbot binaries that ship schema version {version} or later can run against it (this one ships {version})\n"
    );
    assert!(first.ends_with(&readers), "{first}");
    assert_eq!(
        db.ok(&["migrate"]),
        format!("schema is up to date at version {version}\n{readers}")
    );

    assert_eq!(db.groups(), json!([]));
    let table = db.ok(&["groups", "list"]);
    assert!(table.contains("no groups yet"), "{table}");
}

fn protect_then_list_has_the_documented_shape(db: Db) {
    db.migrate();
    let title = "Chat <b>&'\"; DROP TABLE owners;--";
    let out = db.ok(&[
        "protect",
        "--group",
        "-1001234567890",
        "--channel",
        "@My_Channel",
        "--channel",
        "-1009876543210",
        "--title",
        title,
    ]);
    assert!(out.contains("-1001234567890"), "{out}");
    assert!(out.contains("is now protected"), "{out}");
    assert!(out.contains("https://t.me/My_Channel"), "{out}");

    assert_eq!(
        db.groups(),
        json!([{
            "group_id": -1001234567890_i64,
            "enabled": true,
            "state": "active",
            "title": title,
            "channels": [
                {"channel_id": null, "username": "My_Channel", "title": null, "invite_link": null},
                {"channel_id": -1009876543210_i64, "username": null, "title": null, "invite_link": null},
            ],
        }])
    );

    let table = db.ok(&["groups", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("GROUP ID"), "{table}");
    assert!(lines[1].starts_with("-1001234567890  active"), "{table}");
    assert!(lines[1].ends_with("@My_Channel, -1009876543210"), "{table}");
    // Columns line up: the header's columns start where the row's do.
    let col = lines[0].find("STATE").expect("STATE column");
    assert_eq!(lines[1].find("active"), Some(col), "{table}");
}

fn protect_extends_an_existing_protection(db: Db) {
    db.migrate();
    db.ok(&[
        "protect",
        "--group=-1001",
        "--channel",
        "first_channel",
        "--title",
        "Kept title",
    ]);
    let out = db.ok(&[
        "protect",
        "--group",
        "-1001",
        "--channel",
        "@second_channel",
        "--channel",
        "@FIRST_CHANNEL",
    ]);
    assert!(
        out.contains("was already protected: 1 channel(s) added"),
        "{out}"
    );
    // Linking a channel again is a no-op.
    let again = db.ok(&["protect", "--group", "-1001", "--channel", "@first_channel"]);
    assert!(again.contains("0 channel(s) added"), "{again}");

    // A second group may require the same channel without touching the first.
    db.ok(&["protect", "--group", "-1002", "--channel", "@first_channel"]);

    let groups = db.groups();
    let names = |i: usize| -> Vec<Value> {
        groups[i]["channels"]
            .as_array()
            .expect("channels array")
            .iter()
            .map(|c| c["username"].clone())
            .collect()
    };
    assert_eq!(groups[0]["group_id"], json!(-1002));
    assert_eq!(names(0), vec![json!("first_channel")]);
    assert_eq!(groups[1]["group_id"], json!(-1001));
    assert_eq!(groups[1]["title"], json!("Kept title"));
    assert_eq!(
        names(1),
        vec![json!("first_channel"), json!("second_channel")]
    );
}

fn unprotect_switches_protection_off(db: Db) {
    db.migrate();
    db.ok(&["protect", "--group", "-1001", "--channel", "@some_channel"]);
    db.ok(&["protect", "--group", "-1002", "--channel", "@some_channel"]);
    let out = db.ok(&["unprotect", "--group", "-1001"]);
    assert_eq!(out, "group -1001 is no longer protected\n");

    let groups = db.groups();
    assert_eq!(groups[0]["group_id"], json!(-1002));
    assert_eq!(groups[0]["enabled"], json!(true));
    assert_eq!(groups[1]["group_id"], json!(-1001));
    assert_eq!(groups[1]["enabled"], json!(false));
    assert_eq!(groups[1]["state"], json!("unprotected"));
    assert_eq!(groups[1]["channels"], json!([]));

    let status = db.json(&["status", "--group", "-1001", "--format", "json"]);
    assert_eq!(status["state"], json!("unprotected"));

    let out = db.ok(&["protect", "--group", "-1001", "--channel", "@some_channel"]);
    assert!(out.contains("is protected again"), "{out}");
    assert_eq!(db.groups()[1]["enabled"], json!(true));

    let e = db.fails(&["unprotect", "--group", "-1009"], 1);
    assert!(e.contains("-1009 is not protected"), "{e}");
}

fn status_shows_group_settings_and_counts(db: Db) {
    db.migrate();
    db.ok(&[
        "protect",
        "--group",
        "-1005",
        "--channel",
        "@status_channel",
        "--channel",
        "-1006",
        "--title",
        "Status group",
    ]);

    let s = db.json(&["status", "--group", "-1005", "--format", "json"]);
    assert_eq!(s["group_id"], json!(-1005));
    assert_eq!(s["enabled"], json!(true));
    assert_eq!(s["state"], json!("active"));
    assert_eq!(s["title"], json!("Status group"));
    assert_eq!(s["paused_reason"], json!(null));
    assert_eq!(s["owner_id"], json!(null));
    assert_eq!(s["channels"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        s["settings"],
        json!({
            "action": "mute",
            "mute_seconds": 0,
            "warning_ttl_seconds": 60,
            "warning_cooldown_seconds": 300,
            "failure_policy": "open",
            "exempt_bots": true,
            "check_on_join": true,
            "strict_leave": true,
            "ban_channel_senders": true,
            "allowlist": [],
            "join_gate": false,
            "join_wait_seconds": 600,
            "private_warnings": false,
        })
    );
    assert_eq!(s["active_restrictions"], json!(0));
    assert_eq!(s["seen_members"], json!(0));
    assert_eq!(s["pending_join_requests"], json!(0));
    let created = s["created_at"].as_i64().expect("created_at");
    let updated = s["updated_at"].as_i64().expect("updated_at");
    assert!(created > 1_600_000_000 && created <= updated, "{s}");

    // What the bot records shows up in the counts.
    seed_restriction_and_member(&db.url, GroupId(-1005), UserId(42));
    let s = db.json(&["status", "--group", "-1005", "--format", "json"]);
    assert_eq!(s["active_restrictions"], json!(1));
    assert_eq!(s["seen_members"], json!(1));

    let text = db.ok(&["status", "--group", "-1005"]);
    assert_eq!(field(&text, "group"), Some("-1005"), "{text}");
    assert_eq!(field(&text, "title"), Some("Status group"), "{text}");
    assert_eq!(field(&text, "active restrictions"), Some("1"), "{text}");
    assert_eq!(field(&text, "members seen"), Some("1"), "{text}");
    assert_eq!(
        field(&text, "action on non-members"),
        Some("mute"),
        "{text}"
    );
    assert!(text.contains("@status_channel"), "{text}");

    let e = db.fails(&["status", "--group", "-1007"], 1);
    assert!(e.contains("-1007 is not protected"), "{e}");
    assert!(e.contains("gmbot groups list"), "{e}");

    let out = db.ok(&["unprotect", "--group", "-1005"]);
    assert!(out.contains("1 member(s) are still muted"), "{out}");
}

fn seed_restriction_and_member(url: &str, group: GroupId, user: UserId) {
    let url: store::DatabaseUrl = url.parse().expect("test URL parses");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let s = store::open(&url, MigrationMode::Require)
            .await
            .expect("open the test store");
        let now = UnixTime::now();
        s.record_restriction(
            &NewRestriction {
                group,
                user,
                kind: RestrictionKind::Mute,
                until: None,
                reason: "not subscribed".into(),
            },
            now,
        )
        .await
        .expect("record a restriction");
        s.record_seen(group, user, now).await.expect("record seen");
    });
}

fn import_env_public_channel(db: Db) {
    db.migrate();
    let env = db.write(
        "v1.env",
        "# GMBot v1 configuration\n\
         BOT_TOKEN=123456:ABC-def # not needed any more\n\
         export GROUP_ID=\"-1001111111111\"\n\
         CHANNEL_ID = @public_chan   # the channel\n\
         CHANNEL_URL='https://t.me/public_chan'\n",
    );
    let out = db.ok(&["import-env", "--env-file", path_str(&env)]);
    assert!(out.starts_with("imported "), "{out}");
    assert!(out.contains("-1001111111111 is now protected"), "{out}");
    assert!(out.contains("@public_chan"), "{out}");
    assert!(!out.contains("ABC-def"), "{out}");
    assert_eq!(
        db.groups(),
        json!([{
            "group_id": -1001111111111_i64,
            "enabled": true,
            "state": "active",
            "title": null,
            "channels": [
                {"channel_id": null, "username": "public_chan", "title": null, "invite_link": null},
            ],
        }])
    );
}

fn import_env_private_channel(db: Db) {
    db.migrate();
    // The default file is ./.env.
    db.write(
        ".env",
        "GROUP_ID=-1002222222222\r\n\
         CHANNEL_ID=-1003333333333\r\n\
         CHANNEL_URL=https://t.me/+AbCdEf123\r\n",
    );
    db.ok(&["import-env"]);
    let groups = db.groups();
    assert_eq!(groups[0]["group_id"], json!(-1002222222222_i64));
    assert_eq!(
        groups[0]["channels"],
        json!([{
            "channel_id": -1003333333333_i64,
            "username": null,
            "title": null,
            "invite_link": "https://t.me/+AbCdEf123",
        }])
    );
    let text = db.ok(&["status", "--group", "-1002222222222"]);
    assert!(text.contains("https://t.me/+AbCdEf123"), "{text}");
}

fn invalid_input_exits_with_2(db: Db) {
    db.migrate();
    for (args, needle) in [
        (
            vec!["protect", "--group", "42", "--channel", "@good_name"],
            "not a valid group id",
        ),
        (
            vec!["protect", "--group", "abc", "--channel", "@good_name"],
            "not a valid group id",
        ),
        (
            vec!["protect", "--group", "-1001", "--channel", "@ab"],
            "not a valid channel username",
        ),
        (
            vec!["protect", "--group", "-1001", "--channel", "bad name!"],
            "not a valid channel username",
        ),
        (
            vec!["protect", "--group", "-1001", "--channel", "5"],
            "not a valid channel id",
        ),
        (vec!["protect", "--group", "-1001"], "--channel"),
        (
            vec![
                "protect",
                "--group",
                "-1001",
                "--channel",
                "@good_name",
                "--title",
                " ",
            ],
            "--title is empty",
        ),
        (vec!["status", "--group", "7"], "not a valid group id"),
        (vec!["status", "--group", "-1001", "--format", "xml"], "xml"),
        (vec!["unprotect"], "--group"),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let e = db.fails(&args, 2);
        assert!(e.contains(needle), "{args:?}: {e}");
    }

    for (name, text, needles) in [
        (
            "scheme.env",
            "GROUP_ID=-1001\nCHANNEL_ID=@good_name\nCHANNEL_URL=ftp://t.me/good_name\n",
            &["invalid CHANNEL_URL", "unsupported scheme `ftp`"][..],
        ),
        (
            "host.env",
            "GROUP_ID=-1001\nCHANNEL_ID=@good_name\nCHANNEL_URL=https://example.com/good_name\n",
            &["invalid CHANNEL_URL", "not a t.me link"][..],
        ),
        (
            "malformed.env",
            "# ok\nGROUP_ID -1001\n",
            &["not a valid .env file", "line 2", "expected NAME=value"][..],
        ),
        (
            "quote.env",
            "GROUP_ID=\"-1001\nCHANNEL_ID=@good_name\n",
            &["line 1", "unterminated double quote"][..],
        ),
        (
            "missing.env",
            "CHANNEL_ID=@good_name\n",
            &["GROUP_ID is missing"][..],
        ),
        (
            "badgroup.env",
            "GROUP_ID=1001\nCHANNEL_ID=@good_name\n",
            &["invalid GROUP_ID", "not a valid group id"][..],
        ),
        (
            "badchannel.env",
            "GROUP_ID=-1001\nCHANNEL_ID=@x\n",
            &["invalid CHANNEL_ID"][..],
        ),
    ] {
        let path = db.write(name, text);
        let e = db.fails(&["import-env", "--env-file", path_str(&path)], 2);
        for needle in needles {
            assert!(e.contains(needle), "{name}: {e}");
        }
    }
    let e = db.fails(&["import-env", "--env-file", "no-such.env"], 2);
    assert!(e.contains("--env-file"), "{e}");

    let e = db.fails(
        &[
            "--database-url",
            "mysql://gm:hunter2@127.0.0.1/db",
            "groups",
            "list",
        ],
        2,
    );
    assert!(e.contains("invalid --database-url"), "{e}");
    assert!(e.contains("accepted forms"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let run = db.run_with(&["groups", "list"], &[("DATABASE_URL", "gmbot.db")]);
    let e = assert_failed(&run, &["groups", "list"], 2);
    assert!(e.contains("invalid DATABASE_URL"), "{e}");
    assert!(e.contains("sqlite://PATH"), "{e}");

    // Nothing was written by any of the refused commands.
    assert_eq!(db.groups(), json!([]));
}

/// What `gmbot migrate --check` and `gmbot migrate` say about a schema behind, current, ahead
/// by a compatible migration and ahead by an incompatible one.
fn migrate_check_reports_how_the_schema_fits(db: Db) {
    let e = db.fails(&["migrate", "--check"], 1);
    assert!(
        e.contains("migration(s) pending (V1, V2,") && e.contains("database at version 0"),
        "{e}"
    );
    assert!(e.contains("run `gmbot migrate`"), "{e}");
    // --check changed nothing.
    assert!(db.fails(&["groups", "list"], 1).contains("not migrated"));

    let migrated = db.ok(&["migrate"]);
    let known: i64 = migrated
        .lines()
        .find_map(|l| l.strip_prefix("schema is now at version "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {migrated:?}"));
    let check = db.ok(&["migrate", "--check"]);
    assert!(
        check.starts_with(&format!(
            "schema is at version {known}, the version this binary ships\n"
        )),
        "{check}"
    );

    // A newer version migrated, declaring that this one may still run.
    let next = known + 1;
    db.execute(&format!(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ({next}, 'newer', '2030-01-01T00:00:00Z', '0');
         INSERT INTO schema_compat (version, min_reader_version) VALUES ({next}, {known});"
    ));
    let ahead = format!(
        "schema is at version {next}, ahead of this binary ({known}) and compatible with it: nothing to apply\n"
    );
    assert!(db.ok(&["migrate", "--check"]).starts_with(&ahead));
    assert!(db.ok(&["migrate"]).starts_with(&ahead));
    assert_eq!(db.groups(), json!([]), "the other commands run too");

    // Then one this version cannot run against.
    let last = known + 2;
    db.execute(&format!(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ({last}, 'breaking', '2030-01-02T00:00:00Z', '0');
         INSERT INTO schema_compat (version, min_reader_version) VALUES ({last}, {last});"
    ));
    for args in [
        &["migrate", "--check"][..],
        &["migrate"],
        &["groups", "list"],
    ] {
        let e = db.fails(args, 1);
        assert!(
            e.contains(&format!(
                "schema is at version {last}, which needs a gmbot that ships schema version {last} or later"
            )) && e.contains("upgrade gmbot"),
            "{args:?}: {e}"
        );
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::sqlite_db()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::postgres_db()) } )*
        }
    };
}

on_both_backends!(
    migrate_then_list_empty,
    migrate_check_reports_how_the_schema_fits,
    protect_then_list_has_the_documented_shape,
    protect_extends_an_existing_protection,
    unprotect_switches_protection_off,
    status_shows_group_settings_and_counts,
    import_env_public_channel,
    import_env_private_channel,
    invalid_input_exits_with_2,
);

// --- unreachable databases ------------------------------------------------------

#[test]
fn unreachable_postgres_exits_with_1_without_the_password() {
    let db = sqlite_db();
    // Nothing listens on port 1.
    let url = "postgres://gmbot:hunter2@127.0.0.1:1/test";
    for args in [
        vec!["--database-url", url, "groups", "list"],
        vec!["--database-url", url, "migrate"],
    ] {
        let e = db.fails(&args, 1);
        assert!(e.contains("PostgreSQL is running"), "{e}");
        assert!(e.contains("--database-url"), "{e}");
        assert!(e.contains("gmbot:***@127.0.0.1:1"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn unopenable_sqlite_file_exits_with_1() {
    let db = sqlite_db();
    // A path below a regular file can never be created, even by root.
    let file = db.write("not-a-dir", "");
    let url = format!("sqlite://{}/gmbot.db", path_str(&file));
    let run = db.run_with(&["groups", "list"], &[("DATABASE_URL", &url)]);
    let e = assert_failed(&run, &["groups", "list"], 1);
    assert!(e.contains("DATABASE_URL"), "{e}");
    assert!(e.contains("not-a-dir"), "{e}");
}
