//! Embedded schema migrations for both dialects, and the schema-version checks shared by the adapters.
//!
//! The SQL lives in `migrations/sqlite/` and `migrations/postgres/` at the
//! workspace root and is compiled into the binary by refinery, so no file is
//! needed at run time.

use super::error::{StoreError, StoreResult};
use super::MigrationMode;

pub(crate) mod sqlite_set {
    refinery::embed_migrations!("../migrations/sqlite");
}

pub(crate) mod postgres_set {
    refinery::embed_migrations!("../migrations/postgres");
}

/// The schema version of a database compared with what this binary ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Highest applied migration (0 when none).
    pub current: i64,
    /// Highest migration this binary ships.
    pub known: i64,
}

impl SchemaStatus {
    /// Checks that the schema can be used in `mode` (newer is always refused;
    /// older is refused under [`MigrationMode::Require`]).
    pub(crate) fn check(self, mode: MigrationMode) -> StoreResult<()> {
        if self.current > self.known {
            return Err(StoreError::SchemaTooNew {
                found: self.current,
                known: self.known,
            });
        }
        if self.current < self.known && mode == MigrationMode::Require {
            return Err(StoreError::NotMigrated {
                current: self.current,
                expected: self.known,
            });
        }
        Ok(())
    }
}

/// What a `migrate` run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run, as (version, name), in order.
    pub applied: Vec<(i64, String)>,
    /// Schema version after the run.
    pub current: i64,
}

/// Highest version in a refinery migration set.
pub(crate) fn latest(set: &[refinery::Migration]) -> i64 {
    set.iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Converts refinery's report into ours.
pub(crate) fn report(r: &refinery::Report, current: i64) -> MigrationReport {
    MigrationReport {
        applied: r
            .applied_migrations()
            .iter()
            .map(|m| (i64::from(m.version()), m.name().to_owned()))
            .collect(),
        current,
    }
}

pub(crate) fn migration_error(e: refinery::Error) -> StoreError {
    StoreError::Migration(Box::new(e))
}
