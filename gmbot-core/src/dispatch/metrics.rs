//! The dispatcher's Prometheus metrics, registered into the caller's registry.
//!
//! Label values come from closed sets only ([`Method`], [`Lane`],
//! [`TelegramError::kind`] and `ok`), so series stay bounded whatever the traffic.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::Lane;
use crate::telegram::{Method, TelegramError};

/// Counters, histogram and gauge of one dispatcher.
#[derive(Debug, Clone)]
pub(crate) struct DispatchMetrics {
    calls: IntCounterVec,
    duration: HistogramVec,
    waits: IntCounterVec,
    rate_limited: IntCounterVec,
    queue_depth: IntGaugeVec,
}

impl DispatchMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "gmbot_telegram_calls_total",
                "Telegram API calls made (each attempt), by method and outcome (ok or error kind).",
            ),
            &["method", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gmbot_telegram_call_duration_seconds",
                "Duration of one Telegram API call attempt.",
            )
            .buckets(exponential_buckets(0.005, 2.0, 12)?),
            &["method"],
        )?;
        let waits = IntCounterVec::new(
            Opts::new(
                "gmbot_ratelimit_waits_total",
                "Calls that had to wait for the rate-limit budget or a 429 pause, by lane.",
            ),
            &["lane"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "gmbot_telegram_429_total",
                "429 Too Many Requests answers from Telegram, by lane.",
            ),
            &["lane"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "gmbot_dispatch_queue_depth",
                "Calls waiting in the dispatcher, by lane.",
            ),
            &["lane"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(waits.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        // Pre-create the per-lane series so dashboards see zeros, not gaps.
        for lane in Lane::ALL {
            waits.with_label_values(&[lane.as_str()]);
            rate_limited.with_label_values(&[lane.as_str()]);
            queue_depth.with_label_values(&[lane.as_str()]);
        }
        Ok(Self {
            calls,
            duration,
            waits,
            rate_limited,
            queue_depth,
        })
    }

    pub(crate) fn observe_call(
        &self,
        method: Method,
        outcome: Result<(), &TelegramError>,
        seconds: f64,
    ) {
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(e) => e.kind(),
        };
        self.calls
            .with_label_values(&[method.as_str(), outcome])
            .inc();
        self.duration
            .with_label_values(&[method.as_str()])
            .observe(seconds);
    }

    pub(crate) fn waited(&self, lane: Lane) {
        self.waits.with_label_values(&[lane.as_str()]).inc();
    }

    pub(crate) fn rate_limited(&self, lane: Lane) {
        self.rate_limited.with_label_values(&[lane.as_str()]).inc();
    }

    pub(crate) fn set_depths(&self, depths: [usize; 4]) {
        for lane in Lane::ALL {
            let depth = i64::try_from(depths[lane.index()]).unwrap_or(i64::MAX);
            self.queue_depth
                .with_label_values(&[lane.as_str()])
                .set(depth);
        }
    }
}
