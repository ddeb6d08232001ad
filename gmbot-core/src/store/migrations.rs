//! Embedded schema migrations for both dialects, and the schema-version checks shared by the adapters.
//!
//! The SQL lives in `migrations/sqlite/` and `migrations/postgres/` at the
//! workspace root and is compiled into the binary by refinery, so no file is
//! needed at run time.
//!
//! Whether a binary may run against a schema is decided here, from two tables:
//! refinery's `refinery_schema_history` (which migrations are applied) and
//! `schema_compat` (migration V6 on: the oldest binary each migration still
//! lets run). A binary is named by the newest migration it ships. It runs
//! when it ships every applied migration, or when those it does not ship
//! (a newer binary's migrations, in a rolling deploy) all declare that a
//! binary like it may still read the schema.

use super::error::{StoreError, StoreResult};
use super::MigrationMode;

pub(crate) mod sqlite_set {
    refinery::embed_migrations!("../migrations/sqlite");
}

pub(crate) mod postgres_set {
    refinery::embed_migrations!("../migrations/postgres");
}

/// How a database's schema fits this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFit {
    /// Exactly the migrations this binary ships.
    Current,
    /// Some migrations this binary ships are not applied: `gmbot migrate` (or
    /// [`MigrationMode::Apply`]) brings it up to date.
    Behind,
    /// Newer migrations are applied, and each declares that this binary may
    /// still run against the schema (a rolling deploy's older instances).
    AheadCompatible,
    /// Newer migrations are applied that this binary cannot run against:
    /// only a newer binary may use this database.
    TooNew,
}

impl SchemaFit {
    /// A short name for logs and the CLI (`current`, `behind`, `ahead-compatible`, `too-new`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Behind => "behind",
            Self::AheadCompatible => "ahead-compatible",
            Self::TooNew => "too-new",
        }
    }
}

/// The schema version of a database compared with what this binary ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Highest applied migration (0 when none).
    pub current: i64,
    /// Highest migration this binary ships.
    pub known: i64,
    /// Migrations this binary ships that the database has not applied, oldest first.
    pub pending: Vec<i64>,
    /// The oldest binary (named by the newest migration it ships) that can
    /// run against the schema as it is: the largest `min_reader_version`
    /// the applied migrations declare, a migration without a declaration
    /// counting as its own version (0 for an empty database).
    pub min_reader: i64,
}

impl SchemaStatus {
    /// Works out the status from what the database holds: the applied
    /// versions, the `schema_compat` rows as (version, min reader), and the
    /// versions this binary ships.
    pub(crate) fn from_parts(applied: &[i64], compat: &[(i64, i64)], shipped: &[i64]) -> Self {
        let current = applied.iter().copied().max().unwrap_or(0);
        let known = shipped.iter().copied().max().unwrap_or(0);
        let mut pending: Vec<i64> = shipped
            .iter()
            .copied()
            .filter(|v| !applied.contains(v))
            .collect();
        pending.sort_unstable();
        let min_reader = applied
            .iter()
            .map(|&v| {
                compat
                    .iter()
                    .find(|(c, _)| *c == v)
                    .map_or(v, |&(_, reader)| reader)
            })
            .max()
            .unwrap_or(0);
        Self {
            current,
            known,
            pending,
            min_reader,
        }
    }

    /// How the schema fits this binary.
    pub fn fit(&self) -> SchemaFit {
        if self.min_reader > self.known {
            SchemaFit::TooNew
        } else if !self.pending.is_empty() {
            SchemaFit::Behind
        } else if self.current > self.known {
            SchemaFit::AheadCompatible
        } else {
            SchemaFit::Current
        }
    }

    /// Checks that the schema can be used in `mode`: a schema this binary
    /// cannot run against is always refused ([`StoreError::SchemaTooNew`]);
    /// one that is behind is refused under [`MigrationMode::Require`]
    /// ([`StoreError::NotMigrated`]).
    pub(crate) fn check(&self, mode: MigrationMode) -> StoreResult<()> {
        match self.fit() {
            SchemaFit::TooNew => Err(StoreError::SchemaTooNew {
                found: self.current,
                known: self.known,
                needs: self.min_reader,
            }),
            SchemaFit::Behind if mode == MigrationMode::Require => Err(StoreError::NotMigrated {
                current: self.current,
                expected: self.known,
            }),
            SchemaFit::AheadCompatible => {
                log::info!(
                    schema_version = self.current,
                    binary_version = self.known,
                    min_reader = self.min_reader;
                    "the database schema is ahead of this binary and declares it compatible: running"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What a `migrate` run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run, as (version, name), in order.
    pub applied: Vec<(i64, String)>,
    /// The schema after the run.
    pub status: SchemaStatus,
}

/// Every version in a refinery migration set.
pub(crate) fn versions(set: &[refinery::Migration]) -> Vec<i64> {
    set.iter().map(|m| i64::from(m.version())).collect()
}

/// The query for `schema_compat`'s rows (the table exists from V6 on).
pub(crate) const COMPAT_ROWS: &str = "SELECT version, min_reader_version FROM schema_compat";

/// Converts refinery's report into ours.
pub(crate) fn report(r: Option<&refinery::Report>, status: SchemaStatus) -> MigrationReport {
    MigrationReport {
        applied: r
            .map(|r| {
                r.applied_migrations()
                    .iter()
                    .map(|m| (i64::from(m.version()), m.name().to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        status,
    }
}

pub(crate) fn migration_error(e: refinery::Error) -> StoreError {
    StoreError::Migration(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: [i64; 6] = [1, 2, 3, 4, 5, 6];

    fn status(applied: &[i64], compat: &[(i64, i64)]) -> SchemaStatus {
        SchemaStatus::from_parts(applied, compat, &SHIPPED)
    }

    #[test]
    fn fit_of_each_kind_of_schema() {
        let empty = status(&[], &[]);
        assert_eq!((empty.current, empty.min_reader), (0, 0));
        assert_eq!(empty.pending, SHIPPED.to_vec());
        assert_eq!(empty.fit(), SchemaFit::Behind);

        let previous = status(&[1, 2, 3, 4, 5], &[]);
        assert_eq!(previous.pending, vec![6]);
        assert_eq!(previous.min_reader, 5);
        assert_eq!(previous.fit(), SchemaFit::Behind);

        let current = status(&SHIPPED, &[(6, 6)]);
        assert_eq!(current.fit(), SchemaFit::Current);
        assert_eq!(current.min_reader, 6);

        // A newer binary's additive V7 (and V8) keep readers of 6.
        let additive = status(&[1, 2, 3, 4, 5, 6, 7, 8], &[(6, 6), (7, 6), (8, 6)]);
        assert_eq!(additive.fit(), SchemaFit::AheadCompatible);
        assert_eq!(additive.current, 8);
        // One incompatible migration anywhere above this binary is enough to refuse.
        let breaking = status(&[1, 2, 3, 4, 5, 6, 7, 8], &[(6, 6), (7, 7), (8, 6)]);
        assert_eq!(breaking.fit(), SchemaFit::TooNew);
        assert_eq!(breaking.min_reader, 7);
        // A newer migration that declares nothing needs a binary that ships it.
        let undeclared = status(&[1, 2, 3, 4, 5, 6, 7], &[(6, 6)]);
        assert_eq!(undeclared.fit(), SchemaFit::TooNew);
        assert_eq!(undeclared.min_reader, 7);
        // A hole below newer migrations is "behind" (refinery refuses to fill it).
        let gap = status(&[1, 2, 3, 4, 5, 7], &[(7, 5)]);
        assert_eq!(gap.pending, vec![6]);
        assert_eq!(gap.fit(), SchemaFit::Behind);
    }

    #[test]
    fn check_per_mode() {
        let behind = status(&[1, 2, 3, 4, 5], &[]);
        assert!(matches!(
            behind.check(MigrationMode::Require),
            Err(StoreError::NotMigrated {
                current: 5,
                expected: 6
            })
        ));
        assert!(behind.check(MigrationMode::Apply).is_ok());
        let ahead = status(&[1, 2, 3, 4, 5, 6, 7], &[(6, 6), (7, 6)]);
        for mode in [MigrationMode::Require, MigrationMode::Apply] {
            assert!(ahead.check(mode).is_ok(), "{mode:?}");
        }
        let too_new = status(&[1, 2, 3, 4, 5, 6, 7], &[(6, 6), (7, 7)]);
        for mode in [MigrationMode::Require, MigrationMode::Apply] {
            let err = too_new.check(mode).expect_err("too new");
            assert!(
                matches!(
                    err,
                    StoreError::SchemaTooNew {
                        found: 7,
                        known: 6,
                        needs: 7
                    }
                ),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains("version 7") && text.contains("up to 6"),
                "{text}"
            );
        }
    }
}
