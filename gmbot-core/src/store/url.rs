//! Parsing of `DATABASE_URL` into the backend it selects.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::StoreError;

/// Which database to open, parsed from a URL.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` — a file (created if missing).
    SqliteFile(PathBuf),
    /// `sqlite::memory:` — a private in-memory database, migrated on open.
    SqliteMemory,
    /// `postgres://…` or `postgresql://…` — passed to the driver as is.
    Postgres(String),
}

impl DatabaseUrl {
    /// The URL with any password replaced by `***`, safe for logs and errors.
    pub fn redacted(&self) -> String {
        match self {
            Self::SqliteFile(p) => format!("sqlite://{}", p.display()),
            Self::SqliteMemory => "sqlite::memory:".to_owned(),
            Self::Postgres(u) => redact(u),
        }
    }
}

/// Masks the password part of `scheme://user:password@host`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redact(t),
            reason: reason.to_owned(),
        };
        if t.is_empty() {
            return Err(invalid("it is empty"));
        }
        if t == "sqlite::memory:" || t == "sqlite://:memory:" {
            return Ok(Self::SqliteMemory);
        }
        if let Some(path) = t
            .strip_prefix("sqlite://")
            .or_else(|| t.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(invalid("the SQLite path is missing"));
            }
            if path.contains('\0') {
                return Err(invalid("the SQLite path contains a NUL byte"));
            }
            return Ok(Self::SqliteFile(PathBuf::from(path)));
        }
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            // Let the driver validate the rest now, so a typo fails at start-up.
            t.parse::<postgres::Config>()
                .map_err(|e| invalid(&e.to_string()))?;
            return Ok(Self::Postgres(t.to_owned()));
        }
        match t.split_once(':') {
            Some((scheme, _)) => Err(invalid(&format!("unsupported scheme `{scheme}`"))),
            None => Err(invalid("no scheme")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_forms() {
        assert_eq!(
            "sqlite://a/b.db".parse::<DatabaseUrl>().ok(),
            Some(DatabaseUrl::SqliteFile("a/b.db".into()))
        );
        assert_eq!(
            "sqlite::memory:".parse::<DatabaseUrl>().ok(),
            Some(DatabaseUrl::SqliteMemory)
        );
        assert!(matches!(
            "postgres://u@127.0.0.1:5432/test".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Postgres(_))
        ));
    }

    #[test]
    fn rejects_others_with_accepted_forms_and_no_password() {
        for bad in [
            "mysql://x",
            "",
            "gmbot.db",
            "sqlite://",
            "postgres://u:secret@h:notaport/db",
        ] {
            let e = bad.parse::<DatabaseUrl>().expect_err(bad).to_string();
            assert!(e.contains("accepted forms"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
