//! The dispatcher's Prometheus metrics, registered into the caller's registry.
//!
//! Label values come from closed sets only ([`Method`], [`Lane`],
//! [`TelegramError::kind`] and `ok`), so series stay bounded whatever the traffic.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
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

/// The shared budget's metrics (only a dispatcher with a shared budget registers them).
#[derive(Debug, Clone)]
pub(crate) struct BudgetMetrics {
    /// 1 while this instance spends its local fallback share, 0 on the shared budget.
    pub(crate) fallback: IntGauge,
    pub(crate) fallbacks: IntCounter,
    /// The `N` a fallback divides each budget by.
    pub(crate) instances: IntGauge,
    reservations: IntCounterVec,
    round_trip: Histogram,
    slots: IntCounterVec,
}

impl BudgetMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let fallback = IntGauge::new(
            "gmbot_budget_fallback",
            "1 while the shared Telegram budget is unreachable and this instance spends its \
             local 1/N share, 0 on the shared budget.",
        )?;
        let fallbacks = IntCounter::new(
            "gmbot_budget_fallbacks_total",
            "Times this instance fell back from the shared Telegram budget to its local share.",
        )?;
        let instances = IntGauge::new(
            "gmbot_budget_instances",
            "N, the instance count a fallback divides each budget by: the larger of \
             GMBOT_INSTANCES and the live instances of the last heartbeat.",
        )?;
        let reservations = IntCounterVec::new(
            Opts::new(
                "gmbot_budget_reservations_total",
                "Round trips to the shared budget (reservations, heartbeats, returns), by \
                 outcome (ok, unavailable, garbage).",
            ),
            &["outcome"],
        )?;
        let round_trip = Histogram::with_opts(
            HistogramOpts::new(
                "gmbot_budget_reservation_seconds",
                "Duration of one reservation round trip to the shared budget.",
            )
            .buckets(exponential_buckets(0.000_1, 2.0, 12)?),
        )?;
        let slots = IntCounterVec::new(
            Opts::new(
                "gmbot_budget_slots_total",
                "Slots of the shared budget, by outcome: reserved, used by a call, expired \
                 (not used within the grace).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(fallback.clone()))?;
        registry.register(Box::new(fallbacks.clone()))?;
        registry.register(Box::new(instances.clone()))?;
        registry.register(Box::new(reservations.clone()))?;
        registry.register(Box::new(round_trip.clone()))?;
        registry.register(Box::new(slots.clone()))?;
        for outcome in ["ok", "unavailable", "garbage"] {
            reservations.with_label_values(&[outcome]);
        }
        for outcome in ["reserved", "used", "expired"] {
            slots.with_label_values(&[outcome]);
        }
        Ok(Self {
            fallback,
            fallbacks,
            instances,
            reservations,
            round_trip,
            slots,
        })
    }

    pub(crate) fn round_trip(&self, outcome: &'static str, seconds: Option<f64>) {
        self.reservations.with_label_values(&[outcome]).inc();
        if let Some(s) = seconds {
            self.round_trip.observe(s);
        }
    }

    pub(crate) fn reserved(&self, n: usize) {
        self.slots
            .with_label_values(&["reserved"])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub(crate) fn slots(&self, used: u64, expired: u64) {
        if used > 0 {
            self.slots.with_label_values(&["used"]).inc_by(used);
        }
        if expired > 0 {
            self.slots.with_label_values(&["expired"]).inc_by(expired);
        }
    }
}
