//! The engine's Prometheus metrics: verifications by result and their latency.
//!
//! Registered once into the caller's [`Registry`]; the per-result counters
//! are resolved at construction, so recording a verdict is a few atomic
//! increments — no label lookup, no lock, no allocation. Labels carry the
//! result only, never a group or user id (unbounded cardinality).

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use super::decision::{Verdict, VerificationResult};

/// Histogram buckets in seconds: from 10 µs (a cache hit is ~1 µs) to 2.5 s
/// (a slow Telegram round trip), with edges at 1 ms and 500 ms so that
/// "served from cache" and the p95 > 500 ms alert can be read directly.
pub const DURATION_BUCKETS: [f64; 17] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The `result` label of a verification that failed before reaching a verdict (store unreachable).
const ERROR: &str = "error";

/// Handles to the engine's metrics.
#[derive(Debug, Clone)]
pub(crate) struct EngineMetrics {
    /// Indexed by `VerificationResult as usize`.
    results: [IntCounter; 5],
    error: IntCounter,
    duration: Histogram,
}

impl EngineMetrics {
    /// Creates and registers `gmbot_verifications_total{result}` and
    /// `gmbot_verification_duration_seconds`.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let total = IntCounterVec::new(
            Opts::new(
                "gmbot_verifications_total",
                "Verifications by result (allowed, exempt, denied, unverifiable, not_enforced, error).",
            ),
            &["result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "gmbot_verification_duration_seconds",
                "Time to reach a verification verdict, cache hits and Telegram round trips included.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        let results = VerificationResult::ALL.map(|r| total.with_label_values(&[r.as_str()]));
        let error = total.with_label_values(&[ERROR]);
        Ok(Self {
            results,
            error,
            duration,
        })
    }

    /// Counts one verdict and its latency.
    pub(crate) fn record(&self, verdict: &Verdict, elapsed: Duration) {
        self.results[verdict.result() as usize].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a verification that failed (the store was unreachable).
    pub(crate) fn record_error(&self, elapsed: Duration) {
        self.error.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}
