//! The `Clock` port: where TTLs, cool-downs and timestamps get "now" from, so tests control time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::UnixTime;

/// A source of time. Monotonic milliseconds drive expiry; Unix seconds are what gets stored.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds on a monotonic clock with an arbitrary origin.
    fn now_millis(&self) -> u64;
    /// Wall-clock time.
    fn unix_now(&self) -> UnixTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn unix_now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// A clock that moves only when told to; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
    unix_origin: i64,
}

impl ManualClock {
    /// A manual clock at monotonic 0 and the given wall-clock time.
    pub fn new(unix_origin: UnixTime) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(0)),
            unix_origin: unix_origin.secs(),
        }
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        u64::try_from(self.millis.load(Ordering::SeqCst)).unwrap_or(0)
    }

    fn unix_now(&self) -> UnixTime {
        UnixTime(self.unix_origin + self.millis.load(Ordering::SeqCst) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new(UnixTime(1_000));
        let c2 = c.clone();
        assert_eq!(c.now_millis(), 0);
        c2.advance(Duration::from_millis(1_500));
        assert_eq!(c.now_millis(), 1_500);
        assert_eq!(c.unix_now(), UnixTime(1_001));
    }
}
