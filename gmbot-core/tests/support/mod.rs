//! Test isolation for the store backends: a private PostgreSQL schema per test, a temp SQLite file.
//!
//! Every test gets its own PostgreSQL schema (named `gmbot_t_<hex>`, made the
//! connection's `search_path` through the URL), so tests run in parallel
//! against one database and refinery keeps one history table per schema.
//! The schema is dropped when the guard is.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use gmbot_core::store::DatabaseUrl;

/// The PostgreSQL server the tests use: `GMBOT_TEST_PG_URL`, else the local test database.
pub(crate) fn pg_base_url() -> String {
    std::env::var("GMBOT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs `f` with a fresh connection on a thread outside any tokio runtime
/// (`postgres::Client` drives its own runtime and panics inside another one).
/// Panics, naming the URL and how to start the server, if it is unreachable.
pub(crate) fn with_pg_client<T, F>(url: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(&mut postgres::Client) -> T + Send + 'static,
{
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = match postgres::Client::connect(&url, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => panic!(
                "PostgreSQL is unreachable at {url} ({e}). These tests need it: start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 or point GMBOT_TEST_PG_URL at a server"
            ),
        };
        f(&mut client)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A unique lower-case hex token (per process, per call, and random across processes).
fn unique_hex() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{:016x}", h.finish())
}

/// A private PostgreSQL schema, dropped (with everything in it) on drop.
pub(crate) struct PgSchema {
    name: String,
    url: String,
}

impl PgSchema {
    /// Creates a fresh, empty schema. Panics if PostgreSQL is unreachable.
    pub(crate) fn new() -> Self {
        let name = format!("gmbot_t_{}", unique_hex());
        let base = pg_base_url();
        let create = format!("CREATE SCHEMA {name}");
        with_pg_client(&base, move |c| {
            c.batch_execute(&create)
                .unwrap_or_else(|e| panic!("cannot create a test schema: {e}"));
        });
        let sep = if base.contains('?') { '&' } else { '?' };
        // `-c search_path=<schema>` as a startup option, percent-encoded.
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Self { name, url }
    }

    /// The schema's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections work inside this schema only.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The same URL, parsed.
    pub(crate) fn database_url(&self) -> DatabaseUrl {
        self.url
            .parse()
            .unwrap_or_else(|e| panic!("test schema URL does not parse: {e}"))
    }
}

impl Default for PgSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let base = pg_base_url();
        let result = std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&base, postgres::NoTls)?;
            client.batch_execute(&drop)
        })
        .join();
        // Never panic in drop (it may run while a failed test unwinds).
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test schema {}: thread panicked", self.name),
        }
    }
}

/// A SQLite file in its own temp directory (removed when the guard drops).
pub(crate) struct SqliteFile {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteFile {
    /// The database file's path (not created yet).
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// `sqlite://<path>`, parsed.
    pub(crate) fn database_url(&self) -> DatabaseUrl {
        format!("sqlite://{}", self.path.display())
            .parse()
            .unwrap_or_else(|e| panic!("temp SQLite URL does not parse: {e}"))
    }
}

/// A fresh SQLite database path in a temp directory, and its URL.
pub(crate) fn sqlite_file_url() -> (SqliteFile, DatabaseUrl) {
    let dir = tempfile::tempdir().expect("create a temp dir for SQLite");
    let path = dir.path().join("gmbot-test.db");
    let file = SqliteFile { dir, path };
    let url = file.database_url();
    (file, url)
}
