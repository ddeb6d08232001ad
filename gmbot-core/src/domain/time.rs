//! Points in time as stored and compared by GMBot: whole seconds since the Unix epoch.
//!
//! Telegram itself speaks Unix seconds (`date`, `until_date`), so the store keeps
//! the same unit in both dialects and no time-zone conversion can go wrong.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The current wall-clock time (use a `Clock` where tests must control time).
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Whole seconds since the epoch.
    pub const fn secs(self) -> i64 {
        self.0
    }

    /// This time plus `d` (saturating; sub-second parts are dropped).
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        )
    }
}

impl From<SystemTime> for UnixTime {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
