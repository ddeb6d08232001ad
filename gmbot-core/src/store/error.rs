//! The store's error type: what went wrong with the database, and what the operator should do.

use crate::domain::{GroupId, SettingsError};

/// Boxed cause from a database driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a [`Store`](super::Store) call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is malformed or names an unsupported backend.
    #[error("invalid database URL `{url}`: {reason}; accepted forms: sqlite://PATH (e.g. sqlite://gmbot.db), sqlite::memory:, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")]
    InvalidUrl {
        /// The URL with any password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to the database at {url}: {source}")]
    Unavailable {
        /// The URL with any password masked.
        url: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The schema is older than this binary needs.
    #[error("schema not migrated (database at version {current}, this binary needs {expected}): run `gmbot migrate`")]
    NotMigrated {
        /// Highest applied migration (0 = none).
        current: i64,
        /// Highest migration this binary ships.
        expected: i64,
    },
    /// The schema is newer than this binary can run against; running would risk corrupting data.
    #[error("database schema is at version {found}, which needs a gmbot that ships schema version {needs} or later, but this binary only knows up to {known}: upgrade gmbot before using this database")]
    SchemaTooNew {
        /// Highest applied migration.
        found: i64,
        /// Highest migration this binary ships.
        known: i64,
        /// The oldest binary (by the newest migration it ships) the schema declares it works with.
        needs: i64,
    },
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[source] BoxError),
    /// The group is not known to the store.
    #[error("group {0} is not protected (see `gmbot groups list`)")]
    UnknownGroup(GroupId),
    /// A write conflicts with existing data.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A settings change was refused.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A stored value could not be decoded.
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Backend(#[source] BoxError),
    /// The blocking task running the query panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;
