//! The postgres adapter of [`Store`](super::Store). (Being written.)

use super::error::StoreResult;
use super::migrations::MigrationReport;
use super::{DatabaseUrl, MigrationMode};

/// [`Store`](super::Store) on postgres.
#[derive(Debug, Clone)]
pub struct PostgresStore {}

impl PostgresStore {
    /// Opens the database, checking or applying migrations per `mode`.
    pub async fn open(_url: &DatabaseUrl, _mode: MigrationMode) -> StoreResult<Self> {
        unimplemented!()
    }

    /// Applies pending migrations.
    pub async fn migrate(_url: &DatabaseUrl) -> StoreResult<MigrationReport> {
        unimplemented!()
    }
}
