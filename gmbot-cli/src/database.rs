//! The database the operator named, and opening it with errors that say which setting to fix.

use std::sync::Arc;

use gmbot_core::store::{
    self, DatabaseUrl, MigrationMode, MigrationReport, SchemaStatus, Store, StoreError,
};

use crate::cli::DEFAULT_DATABASE_URL;
use crate::error::CliError;

/// Which setting supplied the database URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum UrlOrigin {
    /// `--database-url`.
    Flag,
    /// The `DATABASE_URL` environment variable.
    Env,
    /// Neither: the built-in default.
    #[default]
    Default,
}

impl UrlOrigin {
    fn label(self) -> String {
        match self {
            Self::Flag => "--database-url".to_owned(),
            Self::Env => "DATABASE_URL".to_owned(),
            Self::Default => format!(
                "the default database URL {DEFAULT_DATABASE_URL} (set DATABASE_URL or --database-url to use another)"
            ),
        }
    }
}

/// The database URL as given, not yet parsed.
#[derive(Debug)]
pub(crate) struct Database {
    url: String,
    origin: UrlOrigin,
}

impl Database {
    pub(crate) fn new(url: String, origin: UrlOrigin) -> Self {
        Self { url, origin }
    }

    /// Opens the store; the schema must be current (`gmbot migrate` makes it so).
    pub(crate) async fn open(&self) -> Result<Arc<dyn Store>, CliError> {
        let url = self.parse()?;
        store::open(&url, MigrationMode::Require)
            .await
            .map_err(|e| self.explain(&url, e))
    }

    /// Applies pending migrations.
    pub(crate) async fn migrate(&self) -> Result<MigrationReport, CliError> {
        let url = self.parse()?;
        store::migrate(&url)
            .await
            .map_err(|e| self.explain(&url, e))
    }

    /// The schema compared with this binary's, changing nothing.
    pub(crate) async fn schema_status(&self) -> Result<SchemaStatus, CliError> {
        let url = self.parse()?;
        store::schema_status(&url)
            .await
            .map_err(|e| self.explain(&url, e))
    }

    fn parse(&self) -> Result<DatabaseUrl, CliError> {
        self.url
            .parse::<DatabaseUrl>()
            .map_err(|e| CliError::from(e).context(format!("invalid {}", self.origin.label())))
    }

    /// Adds what to check to the errors that come from the setting or the server.
    fn explain(&self, url: &DatabaseUrl, e: StoreError) -> CliError {
        let hint = match (&e, url) {
            (StoreError::Unavailable { .. }, DatabaseUrl::Postgres(_)) => Some(format!(
                "cannot open the database: check that PostgreSQL is running and accepts connections, and that {} is right",
                self.origin.label()
            )),
            (StoreError::Unavailable { .. }, _) => Some(format!(
                "cannot open the database: check that the file's directory exists and is writable, and that {} is right",
                self.origin.label()
            )),
            _ => None,
        };
        let err = CliError::from(e);
        match hint {
            Some(hint) => err.context(hint),
            None => err,
        }
    }
}
