//! The CLI's error: what went wrong, with its whole cause chain, and the exit code it maps to.
//!
//! Commands return [`CliError`]; `main` prints it as one `error: …` line and
//! exits with its code. The code is decided where the error is created,
//! because only there is it known whether the operator typed something wrong
//! (2) or the world failed (1).

use std::any::Any;

use gmbot_core::store::StoreError;

/// Exit code of a runtime failure: database unreachable, unknown group, schema not migrated…
pub(crate) const EXIT_RUNTIME: u8 = 1;
/// Exit code of bad usage or invalid input; clap exits with 2 for its own errors too.
pub(crate) const EXIT_USAGE: u8 = 2;

/// An error on its way to the operator.
#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    error: anyhow::Error,
}

impl CliError {
    /// The operator gave invalid input (exit code 2).
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }

    /// Something failed at run time (exit code 1).
    pub(crate) fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_RUNTIME,
            error: error.into(),
        }
    }

    /// A panic caught in `main`: reported as a bug, without a backtrace.
    pub(crate) fn internal(payload: &(dyn Any + Send)) -> Self {
        Self::runtime(anyhow::anyhow!(
            "internal error: {}; this is a bug in gmbot, please report it",
            panic_message(payload)
        ))
    }

    /// Puts `what` in front of the error, keeping its exit code.
    pub(crate) fn context(self, what: impl std::fmt::Display + Send + Sync + 'static) -> Self {
        Self {
            code: self.code,
            error: self.error.context(what),
        }
    }

    /// The exit code.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    /// The error and all its causes on one line, outermost first.
    ///
    /// Several store errors repeat their cause in their own message (and
    /// also expose it as `source()`), so a cause already spelled out is not
    /// repeated.
    pub(crate) fn message(&self) -> String {
        let mut out = String::new();
        for cause in self.error.chain() {
            let text = cause.to_string();
            if text.is_empty() || out.contains(&text) {
                continue;
            }
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        out
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidUrl { .. } | StoreError::Settings(_) => Self::usage(e),
            StoreError::Task(join) => {
                let what = match join.try_into_panic() {
                    Ok(payload) => panic_message(payload.as_ref()),
                    Err(join) => join.to_string(),
                };
                Self::runtime(anyhow::anyhow!(
                    "internal error in a database task: {what}; this is a bug in gmbot, please report it"
                ))
            }
            other => Self::runtime(other),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unexpected failure".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_causes_are_printed_once() {
        let inner = std::io::Error::other("connection refused");
        let outer = StoreError::Unavailable {
            url: "postgres://u:***@h/db".into(),
            source: Box::new(inner),
        };
        let e = CliError::from(outer).context("cannot open the database");
        assert_eq!(
            e.message(),
            "cannot open the database: cannot connect to the database at postgres://u:***@h/db: connection refused"
        );
        assert_eq!(e.code(), EXIT_RUNTIME);
    }

    #[test]
    fn url_errors_are_usage_errors() {
        let e = CliError::from(StoreError::InvalidUrl {
            url: "mysql://x".into(),
            reason: "unsupported scheme `mysql`".into(),
        });
        assert_eq!(e.code(), EXIT_USAGE);
    }

    #[test]
    fn panics_become_internal_errors() {
        let e = CliError::internal(&"boom");
        assert!(
            e.message().contains("internal error: boom"),
            "{}",
            e.message()
        );
        assert_eq!(e.code(), EXIT_RUNTIME);
    }
}
