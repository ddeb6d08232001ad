//! The bot's own Prometheus metrics (updates, webhook rejections, enforcement, reconciliation,
//! dependencies, build info); the engine, cache and dispatcher register theirs in the same registry.
//!
//! Label values come from closed sets only — never a user id, group id or
//! free text — so the number of series stays bounded.

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Handles to every bot-level metric. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BotMetrics {
    /// `gmbot_updates_total{kind,transport}`.
    pub updates: IntCounterVec,
    /// `gmbot_update_duration_seconds{kind}`: from receipt to handled.
    pub update_duration: HistogramVec,
    /// `gmbot_webhook_rejections_total{reason}`.
    pub webhook_rejections: IntCounterVec,
    /// `gmbot_errors_total{kind}`.
    pub errors: IntCounterVec,
    /// `gmbot_enforcement_actions_total{action,outcome}`.
    pub actions: IntCounterVec,
    /// `gmbot_active_restrictions`: restrictions the bot placed and has not lifted.
    pub active_restrictions: IntGauge,
    /// `gmbot_reconciliation_lifts_total{reason}`.
    pub reconciliation_lifts: IntCounterVec,
    /// `gmbot_reconciliation_backlog`: restrictions still to re-check in the current pass.
    pub reconciliation_backlog: IntGauge,
    /// `gmbot_last_update_timestamp_seconds`: Unix time of the last update received.
    pub last_update: Gauge,
    /// `gmbot_dependency_up{dependency}`: 1 when the database / Redis answered the last readiness probe.
    pub dependency_up: IntGaugeVec,
    /// `gmbot_ready_degraded`: 1 while `/ready` answers `degraded` (ready, but Redis is down).
    pub ready_degraded: IntGauge,
    /// `gmbot_build_info{version}`: always 1.
    pub build_info: GaugeVec,
    /// `gmbot_outbox_shed_total{kind}`: deletions and mutes dropped because the outbox was full.
    pub outbox_shed: IntCounterVec,
    /// `gmbot_second_looks_total{outcome}`: messages let through unverified, looked at again.
    pub second_looks: IntCounterVec,
    /// `gmbot_outbox_retries_total{kind}`: calls queued again after a transient failure.
    pub outbox_retries: IntCounterVec,
    /// `gmbot_outbox_given_up_total{kind}`: calls given up after their last retry.
    pub outbox_given_up: IntCounterVec,
    /// `gmbot_outbox_queued`: deletions, mutes and lifts waiting in the outbox.
    pub outbox_queued: IntGauge,
    /// `gmbot_raids_total`: raids detected (a group crossing the raid threshold).
    pub raids: prometheus::IntCounter,
    /// `gmbot_groups_under_raid`: groups whose raid is going on.
    pub groups_under_raid: IntGauge,
    /// `gmbot_update_journal_total{event}`: updates kept in the store unhandled, taken back.
    pub update_journal: IntCounterVec,
}

/// Update handling buckets: 100 µs to 10 s, resolving 1 ms and 500 ms.
const UPDATE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl BotMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            updates: IntCounterVec::new(
                Opts::new("gmbot_updates_total", "Telegram updates received, by kind and transport."),
                &["kind", "transport"],
            )?,
            update_duration: HistogramVec::new(
                HistogramOpts::new(
                    "gmbot_update_duration_seconds",
                    "Time from receiving an update to having handled it, by kind.",
                )
                .buckets(UPDATE_BUCKETS.to_vec()),
                &["kind"],
            )?,
            webhook_rejections: IntCounterVec::new(
                Opts::new(
                    "gmbot_webhook_rejections_total",
                    "Webhook requests refused or not queued, by reason (unauthorized, too_large, malformed, unsupported, duplicate, overloaded, shutting_down).",
                ),
                &["reason"],
            )?,
            errors: IntCounterVec::new(
                Opts::new("gmbot_errors_total", "Errors while handling updates or running jobs, by kind."),
                &["kind"],
            )?,
            actions: IntCounterVec::new(
                Opts::new(
                    "gmbot_enforcement_actions_total",
                    "Enforcement actions taken (delete, restrict, kick, warn, unrestrict), by outcome.",
                ),
                &["action", "outcome"],
            )?,
            active_restrictions: IntGauge::new(
                "gmbot_active_restrictions",
                "Restrictions the bot placed that are not lifted yet (as of the last reconciliation).",
            )?,
            reconciliation_lifts: IntCounterVec::new(
                Opts::new(
                    "gmbot_reconciliation_lifts_total",
                    "Restrictions lifted by the reconciliation pass, by reason.",
                ),
                &["reason"],
            )?,
            reconciliation_backlog: IntGauge::new(
                "gmbot_reconciliation_backlog",
                "Active restrictions not yet re-checked by the running reconciliation pass.",
            )?,
            last_update: Gauge::new(
                "gmbot_last_update_timestamp_seconds",
                "Unix time at which the last Telegram update was received.",
            )?,
            dependency_up: IntGaugeVec::new(
                Opts::new(
                    "gmbot_dependency_up",
                    "Whether a dependency answered the last readiness probe (1) or not (0).",
                ),
                &["dependency"],
            )?,
            ready_degraded: IntGauge::new(
                "gmbot_ready_degraded",
                "Whether the last readiness probe found the instance ready but degraded: Redis down, verifying from the in-process cache (1) or not (0).",
            )?,
            build_info: GaugeVec::new(
                Opts::new("gmbot_build_info", "Build information; the value is always 1."),
                &["version"],
            )?,
            outbox_shed: IntCounterVec::new(
                Opts::new(
                    "gmbot_outbox_shed_total",
                    "Actions dropped because the outbox was full (delete, restrict); shed mutes are applied by reconciliation.",
                ),
                &["kind"],
            )?,
            second_looks: IntCounterVec::new(
                Opts::new(
                    "gmbot_second_looks_total",
                    "Messages let through because Telegram could not answer for a channel, verified again later (outcome scheduled, denied, allowed, given_up).",
                ),
                &["outcome"],
            )?,
            outbox_retries: IntCounterVec::new(
                Opts::new(
                    "gmbot_outbox_retries_total",
                    "Deletions, mutes and kicks whose Telegram call still failed with a 429, a 5xx or a network error after the dispatcher's retries, queued again for later (kind delete, restrict, kick).",
                ),
                &["kind"],
            )?,
            outbox_given_up: IntCounterVec::new(
                Opts::new(
                    "gmbot_outbox_given_up_total",
                    "Deletions, mutes and kicks given up after their last retry (a given-up mute stays pending for reconciliation; a given-up deletion leaves the message).",
                ),
                &["kind"],
            )?,
            outbox_queued: IntGauge::new(
                "gmbot_outbox_queued",
                "Deletions, mutes and lifts waiting in the outbox for their Telegram budget.",
            )?,
            raids: prometheus::IntCounter::new(
                "gmbot_raids_total",
                "Raids detected: a group reaching the raid threshold of denials within the raid window.",
            )?,
            groups_under_raid: IntGauge::new(
                "gmbot_groups_under_raid",
                "Groups whose raid is going on (denials within the raid window at or above the threshold).",
            )?,
            update_journal: IntCounterVec::new(
                Opts::new(
                    "gmbot_update_journal_total",
                    "Updates kept in the store before they were handled (kept: at a stop or for a long-polling backlog; replayed: taken back and queued; unreadable: a kept update this version could not read, logged and dropped).",
                ),
                &["event"],
            )?,
        };
        registry.register(Box::new(m.update_journal.clone()))?;
        registry.register(Box::new(m.outbox_shed.clone()))?;
        registry.register(Box::new(m.outbox_queued.clone()))?;
        registry.register(Box::new(m.outbox_retries.clone()))?;
        registry.register(Box::new(m.second_looks.clone()))?;
        registry.register(Box::new(m.outbox_given_up.clone()))?;
        registry.register(Box::new(m.raids.clone()))?;
        registry.register(Box::new(m.groups_under_raid.clone()))?;
        registry.register(Box::new(m.updates.clone()))?;
        registry.register(Box::new(m.update_duration.clone()))?;
        registry.register(Box::new(m.webhook_rejections.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.actions.clone()))?;
        registry.register(Box::new(m.active_restrictions.clone()))?;
        registry.register(Box::new(m.reconciliation_lifts.clone()))?;
        registry.register(Box::new(m.reconciliation_backlog.clone()))?;
        registry.register(Box::new(m.last_update.clone()))?;
        registry.register(Box::new(m.dependency_up.clone()))?;
        registry.register(Box::new(m.ready_degraded.clone()))?;
        registry.register(Box::new(m.build_info.clone()))?;
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        Ok(m)
    }
}
