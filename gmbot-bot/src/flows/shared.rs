//! Work done once across instances: the claims behind warning cool-downs, join de-duplication and notices, the group's one shown warning, and the leases periodic jobs run under, when several webhook instances share Redis.
//!
//! Without it (one instance, polling, no `REDIS_URL`) the flows use their in-process state
//! only, as a single instance always did. With it, Redis decides first:
//!
//! - a **claim** is `SET NX PX` on `claim:{kind}:{group}:{…}`; whoever sets it warns, posts
//!   the notice or handles the join. The claim is also noted in process, so that during a
//!   later outage this instance still remembers it.
//! - a group's **warning board** says which message is the group's shown warning and whom it
//!   names: the first instance to warn posts it, the others edit their members into it
//!   (see `outbox::warnings`).
//! - When Redis does not answer within its short timeout (150 ms; during an outage calls
//!   fail at once), the **in-process claim decides**, as on one instance: each instance may
//!   then post its own warning or notice. An extra warning is better than a missing one, and
//!   a verification never waits on Redis longer than that timeout.
//! - A **pending restriction row** another instance placed is left to it for the pending
//!   grace (its call may be on its way), unless that instance **released** it
//!   (`claim:r:{row}`: it stopped or shed the call); then the first instance to claim
//!   `claim:t:{row}` makes the call at once.
//! - `gmbot_shared_claims_total{kind,result}` counts `won`, `lost` and `unavailable` answers;
//!   `gmbot_lease_held{task}` is 1 on the instance running a periodic job and
//!   `gmbot_periodic_runs_total{task}` counts its runs there.

use std::sync::Arc;
use std::time::Duration;

use gmbot_core::coordination::{ClaimStore, LeaseStore, WarningBoard};
use gmbot_core::domain::RestrictionId;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// How long a pending row's release and takeover marks last: the pending grace, past which
/// the row counts as lost anyway.
const PENDING_MARK_TTL: Duration = Duration::from_secs(super::reconcile::PENDING_GRACE_SECS as u64);

/// What a shared claim answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// This instance claimed it.
    Won,
    /// Another instance claimed it first.
    Lost,
    /// Redis did not answer: the in-process claim decides.
    Unavailable,
}

/// The leases and claims this bot shares with its other instances.
#[derive(Clone)]
pub struct Shared {
    leases: Arc<dyn LeaseStore>,
    claims: Arc<dyn ClaimStore>,
    board: Arc<dyn WarningBoard>,
    lease_ttl: Duration,
    counts: IntCounterVec,
    held: IntGaugeVec,
    runs: IntCounterVec,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Leases in `leases` lasting `lease_ttl` (at least one second), claims in `claims`,
    /// groups' shown warnings on `board`; registers `gmbot_shared_claims_total` into
    /// `registry`.
    pub fn new(
        leases: Arc<dyn LeaseStore>,
        claims: Arc<dyn ClaimStore>,
        board: Arc<dyn WarningBoard>,
        lease_ttl: Duration,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let counts = IntCounterVec::new(
            Opts::new(
                "gmbot_shared_claims_total",
                "Once-only claims asked of Redis (warnings, joins, notices), by kind and answer \
                 (won, lost to another instance, unavailable: decided in process)",
            ),
            &["kind", "result"],
        )?;
        let held = IntGaugeVec::new(
            Opts::new(
                "gmbot_lease_held",
                "1 while this instance holds the lease of a periodic job (and runs it)",
            ),
            &["task"],
        )?;
        let runs = IntCounterVec::new(
            Opts::new(
                "gmbot_periodic_runs_total",
                "Runs of a periodic job on this instance, under its lease",
            ),
            &["task"],
        )?;
        registry.register(Box::new(counts.clone()))?;
        registry.register(Box::new(held.clone()))?;
        registry.register(Box::new(runs.clone()))?;
        Ok(Self {
            leases,
            claims,
            board,
            lease_ttl: lease_ttl.max(Duration::from_secs(1)),
            counts,
            held,
            runs,
        })
    }

    /// Where periodic jobs take their leases.
    pub fn leases(&self) -> &Arc<dyn LeaseStore> {
        &self.leases
    }

    /// Once-only claims.
    pub fn claims(&self) -> &Arc<dyn ClaimStore> {
        &self.claims
    }

    /// Where groups' shown warnings are kept.
    pub fn board(&self) -> &Arc<dyn WarningBoard> {
        &self.board
    }

    /// Counts one warning-board answer in `gmbot_shared_claims_total{kind="warning_board"}`.
    pub(crate) fn count_board(&self, result: &str) {
        self.counts
            .with_label_values(&["warning_board", result])
            .inc();
    }

    /// How long a lease lasts unless renewed (`GMBOT_LEASE_SECONDS`).
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Whether this instance holds `task`'s lease now (and may run it).
    pub fn holds(&self, task: &str) -> bool {
        self.held.with_label_values(&[task]).get() == 1
    }

    /// Runs of `task` on this instance so far.
    pub fn runs(&self, task: &str) -> u64 {
        self.runs.with_label_values(&[task]).get()
    }

    pub(crate) fn set_held(&self, task: &str, held: bool) {
        self.held.with_label_values(&[task]).set(i64::from(held));
    }

    pub(crate) fn count_run(&self, task: &str) {
        self.runs.with_label_values(&[task]).inc();
    }

    /// Claims `key` (of `kind`, for the metric) for `ttl`.
    pub(crate) async fn claim(&self, kind: &str, key: &str, ttl: Duration) -> Claimed {
        let claimed = match self.claims.claim(key, ttl).await {
            Ok(true) => Claimed::Won,
            Ok(false) => Claimed::Lost,
            Err(err) => {
                log::debug!(kind = kind, error:display = err; "shared claim unanswered; deciding in process");
                Claimed::Unavailable
            }
        };
        let result = match claimed {
            Claimed::Won => "won",
            Claimed::Lost => "lost",
            Claimed::Unavailable => "unavailable",
        };
        self.counts.with_label_values(&[kind, result]).inc();
        claimed
    }

    /// Tells the other instances that this one will not make the Telegram calls of these
    /// pending restriction rows (it is stopping, or its outbox shed them): whoever meets
    /// one next — a replayed update, another message of the member, reconciliation — takes
    /// it over at once instead of waiting out the pending grace. Best effort: if Redis does
    /// not answer, the rows are taken over when their grace ends, as after a crash.
    pub(crate) async fn release_pending(&self, rows: &[RestrictionId]) {
        for row in rows {
            let key = format!("r:{}", row.0);
            if self.claim("pending_release", &key, PENDING_MARK_TTL).await == Claimed::Unavailable {
                return;
            }
        }
    }

    /// Whether this instance may make `row`'s call now because the instance that placed it
    /// released it ([`Self::release_pending`]); of several instances asking, one is told
    /// yes.
    pub(crate) async fn take_released(&self, row: RestrictionId) -> bool {
        let released = format!("r:{}", row.0);
        match self.claims.is_claimed(&released).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(err) => {
                log::debug!(error:display = err; "released pending rows unreadable; waiting out the grace");
                return false;
            }
        }
        self.claim(
            "pending_takeover",
            &format!("t:{}", row.0),
            PENDING_MARK_TTL,
        )
        .await
            == Claimed::Won
    }

    /// Forgets `key` (best effort, bounded like every call).
    pub(crate) async fn forget(&self, key: &str) {
        if let Err(err) = self.claims.forget(key).await {
            log::debug!(error:display = err; "shared claim not forgotten; it runs out by itself");
        }
    }
}
