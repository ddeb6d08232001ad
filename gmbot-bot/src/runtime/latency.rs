//! Exact latency percentiles for load runs: every sample is kept (bounded), so p99 is the
//! 99th percentile of what happened, not a bucket boundary. Off in production, where the
//! `gmbot_update_duration_seconds` histogram serves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects durations, up to a cap. Cheap to clone; clones share the samples.
#[derive(Clone, Debug)]
pub struct LatencyRecorder {
    inner: Arc<Mutex<Vec<u64>>>,
    cap: usize,
}

/// Percentiles of the recorded samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl LatencyRecorder {
    /// Keeps at most `cap` samples; later ones are dropped.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Vec::with_capacity(cap.min(1 << 20)))),
            cap,
        }
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut v = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < self.cap {
            v.push(nanos);
        }
    }

    /// Forgets every sample (e.g. after a warm-up).
    pub fn reset(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Percentiles (nearest-rank) of what was recorded so far.
    pub fn summary(&self) -> LatencySummary {
        let mut v = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if v.is_empty() {
            return LatencySummary::default();
        }
        v.sort_unstable();
        let at = |q: f64| {
            // Nearest rank: ceil(q * n) - 1, within bounds.
            let rank = (q * v.len() as f64).ceil() as usize;
            Duration::from_nanos(v[rank.clamp(1, v.len()) - 1])
        };
        LatencySummary {
            count: v.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: Duration::from_nanos(v[v.len() - 1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let r = LatencyRecorder::new(1000);
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms));
        }
        let s = r.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        let capped = LatencyRecorder::new(2);
        for _ in 0..5 {
            capped.record(Duration::from_millis(1));
        }
        assert_eq!(capped.summary().count, 2);
        capped.reset();
        assert_eq!(capped.summary(), LatencySummary::default());
    }
}
