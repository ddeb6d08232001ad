//! Batch audits: every member of a protected group checked against its channels, in the
//! dispatcher's bulk lane, with checkpoints as it goes so a killed run resumes.
//!
//! [`run_audit`] walks the run's [`AuditCursor`]: the member directory's sweep (recent
//! members, then search prefixes past Telegram's 10,000-per-filter cap), then the members
//! the bot saw writing (`seen_members`), then done. It runs as a pipeline with no barrier
//! between pages, because the bulk bucket's burst is small and every pause in the calls is
//! budget lost for good:
//!
//! - the lister asks for up to 8 directory pages at once (the page after one is predicted
//!   from the count Telegram gave for its query, and asked for again should a short page
//!   prove the prediction wrong), keeps up to 64 listed pages unrecorded, drops the members
//!   the run stored already or handed out from an earlier page, and queues the rest;
//! - the checks take queued members as slots free up, across page boundaries,
//!   [`concurrency_for`] the bulk budget at a time, with
//!   [`Engine::audit_member`](gmbot_core::engine::Engine::audit_member) (fresh
//!   `getChatMember` calls for every linked channel, bulk lane), and mute the
//!   non-subscribers with `--apply` exactly as reconciliation does ([`enforce::restrict`]:
//!   a `pending` row, the call, the row `active`);
//! - the recorder stores each page once all its checks are in, in listing order, with the
//!   next cursor in the same transaction; outcomes of pages still being checked are stored
//!   every 50 outcomes or 250 ms ([`Store::record_audit_outcomes`]), so a kill repeats at
//!   most those and the checks in flight, not a page.
//!
//! [`Store::record_audit_outcomes`]: gmbot_core::store::Store::record_audit_outcomes
//!
//! Without a directory (no MTProto credentials) a run audits the seen members only.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use gmbot_core::audit::{
    AuditCounts, AuditCursor, AuditOutcome, AuditPage, AuditRun, AuditRunId, AuditSource,
    AuditState, MemberDirectory, MemberOutcome, NewAuditRun, PAGE_LIMIT,
};
use gmbot_core::dispatch::Lane;
use gmbot_core::domain::{GroupId, NonMemberAction, UnixTime, UserId};
use gmbot_core::engine::{Decision, Engine, EngineConfig, EngineError, EnginePorts, Verdict};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::{Method, TelegramApi, TelegramError};
use tokio::sync::Notify;

use crate::app::App;
use crate::flows::enforce::{self, Muted};

/// Members checked at once, at least (see [`concurrency_for`]).
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Members checked at once at a bulk budget of `reads_per_second`: enough calls in flight to
/// spend the budget with round trips of up to 100 ms (a check waits its turn for the budget,
/// then for Telegram's answer; at 1,000 reads/s and 32 checks at once, every millisecond a
/// round trip takes above 32 ms is budget lost), at least [`DEFAULT_CONCURRENCY`], at most
/// 256.
pub fn concurrency_for(reads_per_second: u32) -> usize {
    usize::try_from(reads_per_second / 10)
        .unwrap_or(usize::MAX)
        .clamp(DEFAULT_CONCURRENCY, 256)
}

/// How a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// A new run; refused while the group has an unfinished one.
    New,
    /// Continue the group's unfinished run.
    Resume,
    /// Abandon the unfinished run (its results are kept) and start a new one.
    Restart,
}

/// What to audit and how.
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    /// The group.
    pub group: GroupId,
    /// Mute non-subscribers.
    pub apply: bool,
    /// New, resume or restart.
    pub start: StartMode,
    /// Members checked at once.
    pub concurrency: usize,
}

/// Where a run is, after each page.
#[derive(Debug, Clone)]
pub struct AuditProgress {
    /// The run.
    pub run: AuditRun,
    /// What it recorded so far (every resumption included).
    pub counts: AuditCounts,
    /// Pages this process finished.
    pub pages_here: u64,
    /// Members this process checked.
    pub checked_here: u64,
    /// Since this process started the run.
    pub elapsed: Duration,
    /// `FLOOD_WAIT`s Telegram answered the directory with (each waited out).
    pub flood_waits: u64,
    /// What the page just finished listed.
    pub phase: String,
}

/// Told about a run's progress (the CLI's progress bar or JSON lines).
pub trait ProgressSink: Send + Sync {
    /// The run is about to start (or resume) at `run.cursor`.
    fn started(&self, run: &AuditRun, resumed: bool);
    /// A page was recorded.
    fn page(&self, progress: &AuditProgress);
}

/// What a finished run found.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// The run as stored at the end.
    pub run: AuditRun,
    /// Every member once.
    pub counts: AuditCounts,
    /// Whether this process resumed it.
    pub resumed: bool,
    /// Pages this process finished.
    pub pages_here: u64,
    /// Members this process checked.
    pub checked_here: u64,
    /// Wall time of this process's part.
    pub elapsed: Duration,
    /// `FLOOD_WAIT`s waited out.
    pub flood_waits: u64,
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The group is not known.
    #[error("group {0} is not protected (see `gmbot groups list`)")]
    UnknownGroup(GroupId),
    /// The group is not enforced (paused, unprotected, no channel).
    #[error("group {group} is not enforced ({reason}): there is nothing to audit against")]
    NotEnforced {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
    /// A new run was asked for while one is unfinished.
    #[error("group {group} has an unfinished audit (run {run}, {pages} page(s) done, started at Unix time {started}): continue it with --resume, or drop it and start over with --restart")]
    Unfinished {
        /// The group.
        group: GroupId,
        /// The unfinished run.
        run: i64,
        /// Pages it finished.
        pages: u64,
        /// When it started.
        started: i64,
    },
    /// `--resume` with nothing to resume.
    #[error("group {0} has no unfinished audit to resume: run without --resume to start one")]
    NothingToResume(GroupId),
    /// `--resume` with other options than the run was started with.
    #[error("{0}")]
    Mismatch(String),
    /// `--apply` in a group that restricts nobody.
    #[error("group {0} deletes non-members' messages without muting them (action delete_only): --apply would mute nobody there; change the action with /settings, or audit without --apply")]
    DeleteOnly(GroupId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Telegram failed (after the dispatcher's retries).
    #[error("Telegram: {0}")]
    Telegram(#[from] TelegramError),
    /// The engine could not read the group.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One listed page: its members and where the run goes on from.
struct Listed {
    members: Vec<(UserId, bool)>,
    next: AuditCursor,
    /// A directory page: its query and how many members match it (predicts the pages after).
    query_total: Option<(gmbot_core::audit::DirectoryQuery, u32)>,
    phase: String,
}

impl Listed {
    /// The group's member count, from a page of the recent listing (a search's count is its
    /// matches only).
    fn group_total(&self) -> Option<u64> {
        match &self.query_total {
            Some((gmbot_core::audit::DirectoryQuery::Recent, total)) => Some(u64::from(*total)),
            _ => None,
        }
    }
}

/// Lists the page at `cursor` (`None` when the run is done).
async fn list(
    app: &App,
    directory: Option<&Arc<dyn MemberDirectory>>,
    group: GroupId,
    cursor: &AuditCursor,
    flood_waits: &AtomicU64,
) -> Result<Option<Listed>, AuditError> {
    match cursor {
        AuditCursor::Done => Ok(None),
        AuditCursor::Directory { at } => {
            let Some(directory) = directory else {
                // Resumed without credentials: the directory part cannot go on.
                return Err(AuditError::Mismatch(
                    "this audit lists members through MTProto, and TELEGRAM_API_ID/TELEGRAM_API_HASH are not set: set them to resume it, or start over with --restart".to_owned(),
                ));
            };
            let page = app
                .dispatcher()
                .call(
                    Lane::Bulk,
                    Method::GetParticipants,
                    Some(group.into()),
                    |_| async {
                        let r = directory.page(group, at).await;
                        if matches!(r, Err(TelegramError::RetryAfter { .. })) {
                            flood_waits.fetch_add(1, Ordering::Relaxed);
                        }
                        r
                    },
                )
                .await?;
            let next = match at.next(page.listed, page.total) {
                Some(c) => AuditCursor::Directory { at: c },
                None => AuditCursor::Seen { after: None },
            };
            Ok(Some(Listed {
                members: page.members.iter().map(|m| (m.user, m.is_bot)).collect(),
                next,
                query_total: Some((at.query.clone(), page.total)),
                phase: format!("{} from {}", at.query.label(), at.offset),
            }))
        }
        AuditCursor::Seen { after } => {
            let rows = app.store().seen_members(group, *after, PAGE_LIMIT).await?;
            let next = match rows.last() {
                Some(last) if rows.len() as u32 == PAGE_LIMIT => AuditCursor::Seen {
                    after: Some(last.user),
                },
                _ => AuditCursor::Done,
            };
            Ok(Some(Listed {
                members: rows.iter().map(|r| (r.user, false)).collect(),
                next,
                query_total: None,
                phase: "members seen writing".to_owned(),
            }))
        }
    }
}

/// The audit outcome a verdict stands for.
fn outcome_of(verdict: &Verdict) -> AuditOutcome {
    match &verdict.decision {
        Decision::Exempt(_) | Decision::NotEnforced(_) => AuditOutcome::Exempt,
        Decision::Allow if verdict.unverifiable.is_empty() => AuditOutcome::Subscribed,
        Decision::Allow => AuditOutcome::Unverifiable,
        Decision::Deny { missing } => {
            // Fail-closed groups list unknown channels as missing: only a channel Telegram
            // said the member is not in makes them a non-subscriber.
            let known_missing = missing
                .iter()
                .any(|c| !verdict.unverifiable.iter().any(|u| u.channel == *c));
            if known_missing {
                AuditOutcome::NotSubscribed
            } else {
                AuditOutcome::Unverifiable
            }
        }
    }
}

/// Checks one member (and mutes them with `--apply`).
async fn check(
    app: &App,
    engine: &Engine,
    bulk: &dyn TelegramApi,
    group: GroupId,
    user: UserId,
    is_bot: bool,
    mute: Option<Option<UnixTime>>,
) -> Result<MemberOutcome, AuditError> {
    let verdict = engine.audit_member(group, user, is_bot).await?;
    if let Decision::NotEnforced(reason) = verdict.decision {
        return Err(AuditError::NotEnforced {
            group,
            reason: reason.as_str().to_owned(),
        });
    }
    let outcome = outcome_of(&verdict);
    let mut restricted = false;
    if let (AuditOutcome::NotSubscribed, Some(until)) = (outcome, mute) {
        let _guard = app.flows().member_lock(group, user).await;
        restricted = enforce::restrict(app, bulk, group, user, until, verdict.missing()).await?
            == Muted::Yes;
    }
    Ok(MemberOutcome {
        user,
        outcome,
        restricted,
    })
}

/// The run to work on, per the start mode.
async fn open_run(
    app: &App,
    opts: &AuditOptions,
    source: AuditSource,
) -> Result<(AuditRun, bool), AuditError> {
    let store = app.store();
    let now = app.clock().unix_now();
    let unfinished = store.unfinished_audit(opts.group).await?;
    let new = NewAuditRun {
        group: opts.group,
        apply: opts.apply,
        source,
    };
    match (opts.start, unfinished) {
        (StartMode::Resume, None) => Err(AuditError::NothingToResume(opts.group)),
        (StartMode::Resume, Some(run)) => {
            if run.apply != opts.apply {
                return Err(AuditError::Mismatch(format!(
                    "the unfinished audit of group {} was started {} --apply: resume it {} --apply too, or start over with --restart",
                    opts.group,
                    if run.apply { "with" } else { "without" },
                    if run.apply { "with" } else { "without" },
                )));
            }
            Ok((run, true))
        }
        (StartMode::New, Some(run)) => Err(AuditError::Unfinished {
            group: opts.group,
            run: run.id.0,
            pages: run.pages,
            started: run.started_at.secs(),
        }),
        (StartMode::Restart, Some(run)) => {
            store
                .end_audit(opts.group, run.id, AuditState::Abandoned, now)
                .await?;
            Ok((store.start_audit(&new, now).await?, false))
        }
        (_, None) => Ok((store.start_audit(&new, now).await?, false)),
    }
}

/// Members listed and waiting for a check at most (the lister stops there): two pages, so
/// a listing slower than usual does not leave the checks idle.
const CHECKS_QUEUED: usize = 2 * PAGE_LIMIT as usize;
/// Listed pages not recorded yet at most (pages whose members were all recorded cost a
/// listing and no check, so the lister could otherwise run far ahead of the checks).
const PAGES_AHEAD: usize = 64;
/// Outcomes of an unfinished page are stored once this many are waiting...
const FLUSH_BATCH: usize = 50;
/// ...or once the oldest has waited this long: a kill repeats at most these checks (and
/// the ones in flight), not a whole page.
const FLUSH_AFTER: Duration = Duration::from_millis(250);

/// A listed page on its way through the run.
struct PendingPage {
    next: AuditCursor,
    total: Option<u64>,
    phase: String,
    /// Checks handed out and not finished.
    waiting: usize,
    /// Finished checks not stored yet.
    done: Vec<MemberOutcome>,
}

#[derive(Default)]
struct Flow {
    /// Listed pages not recorded yet, in listing order.
    pages: VecDeque<PendingPage>,
    /// The sequence number of `pages.front()`.
    front: u64,
    /// Members handed to the checks and not stored yet: a later page that lists them
    /// again skips them (the store's `audited_members` knows only the stored ones).
    pending: HashSet<UserId>,
    /// Outcomes in `done` of every page.
    unstored: usize,
    /// Since when the oldest of them waits.
    unstored_since: Option<Instant>,
    /// The lister queued its last page.
    listed: bool,
}

/// What the recorder does next.
enum Work {
    /// Record these finished pages, in order.
    Pages(Vec<PendingPage>),
    /// Store these outcomes of unfinished pages.
    Outcomes(Vec<MemberOutcome>),
    /// Nothing yet; look again when woken (or at this instant).
    Wait(Option<Instant>),
    /// Every page is recorded.
    Finished,
}

/// The state the lister, the checks and the recorder share (one task: `try_join!`).
#[derive(Default)]
struct Pipeline {
    flow: std::sync::Mutex<Flow>,
    /// Wakes the recorder: a check finished, a page was listed.
    to_recorder: Notify,
    /// Wakes the lister: a page was recorded.
    to_lister: Notify,
}

impl Pipeline {
    fn flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A check of page `seq` finished.
    fn checked(&self, seq: u64, outcome: MemberOutcome) {
        let mut flow = self.flow();
        let at = usize::try_from(seq - flow.front).unwrap_or(usize::MAX);
        if let Some(page) = flow.pages.get_mut(at) {
            page.waiting = page.waiting.saturating_sub(1);
            page.done.push(outcome);
            flow.unstored += 1;
            flow.unstored_since.get_or_insert_with(Instant::now);
        }
        drop(flow);
        self.to_recorder.notify_one();
    }

    fn next_work(&self) -> Work {
        let mut flow = self.flow();
        let finished = flow.pages.iter().take_while(|p| p.waiting == 0).count();
        if finished > 0 {
            let pages: Vec<PendingPage> = flow.pages.drain(..finished).collect();
            flow.front += finished as u64;
            flow.unstored -= pages.iter().map(|p| p.done.len()).sum::<usize>();
            if flow.unstored == 0 {
                flow.unstored_since = None;
            }
            return Work::Pages(pages);
        }
        if flow.pages.is_empty() && flow.listed {
            return Work::Finished;
        }
        let Some(since) = flow.unstored_since else {
            return Work::Wait(None);
        };
        let due = since + FLUSH_AFTER;
        if flow.unstored >= FLUSH_BATCH || Instant::now() >= due {
            let outcomes: Vec<MemberOutcome> = flow
                .pages
                .iter_mut()
                .flat_map(|p| std::mem::take(&mut p.done))
                .collect();
            flow.unstored = 0;
            flow.unstored_since = None;
            return Work::Outcomes(outcomes);
        }
        Work::Wait(Some(due))
    }

    /// Stored: a later page listing these members finds them in the store.
    fn stored(&self, outcomes: &[MemberOutcome]) {
        let mut flow = self.flow();
        for m in outcomes {
            flow.pending.remove(&m.user);
        }
    }
}

/// Directory pages asked for at once: the page being queued and the ones predicted after it.
/// One listing at a time cannot keep up where most members of a page were listed before
/// (late in the search sweep a page brings 40 new members, 40 ms of checks at 1,000/s,
/// while one listing waits its turn in the bulk lane behind the checks).
const LISTINGS_AHEAD: usize = 8;

/// The directory page after the one at `at`, if Telegram returns a full page there — known
/// once a page of `at`'s query told how many members match it.
fn predicted_after(
    at: &AuditCursor,
    known: Option<&(gmbot_core::audit::DirectoryQuery, u32)>,
) -> Option<AuditCursor> {
    let AuditCursor::Directory { at } = at else {
        // The seen members come from the store, fast enough one page at a time.
        return None;
    };
    let (query, total) = known?;
    if *query != at.query {
        return None;
    }
    Some(match at.next(PAGE_LIMIT, *total) {
        Some(c) => AuditCursor::Directory { at: c },
        None => AuditCursor::Seen { after: None },
    })
}

/// One listing under way.
type Listing = tokio::task::JoinHandle<Result<Option<Listed>, AuditError>>;

/// Listings under way, in order, each with its cursor; dropped (a misprediction, an error)
/// they are cancelled.
struct Prefetch {
    listings: VecDeque<(AuditCursor, Listing)>,
}

impl Prefetch {
    fn clear(&mut self) {
        for (_, task) in self.listings.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Lists the run's pages from `cursor` on, drops the members stored or already handed out,
/// queues each page for the recorder and its members for the checks.
#[allow(clippy::too_many_arguments)]
async fn list_pages(
    app: &App,
    directory: Option<&Arc<dyn MemberDirectory>>,
    group: GroupId,
    run: AuditRunId,
    mut cursor: AuditCursor,
    pipeline: &Pipeline,
    to_check: tokio::sync::mpsc::Sender<(u64, UserId, bool)>,
    flood_waits: &Arc<AtomicU64>,
) -> Result<(), AuditError> {
    let mut prefetch = Prefetch {
        listings: VecDeque::new(),
    };
    // How many members match the query being listed, from its last page.
    let mut known: Option<(gmbot_core::audit::DirectoryQuery, u32)> = None;
    loop {
        // Keep LISTINGS_AHEAD pages asked for: `cursor`'s, then the predicted ones.
        while prefetch.listings.len() < LISTINGS_AHEAD {
            let next = match prefetch.listings.back() {
                None => Some(cursor.clone()),
                Some((last, _)) => predicted_after(last, known.as_ref()),
            };
            let Some(at) = next.filter(|c| *c != AuditCursor::Done) else {
                break;
            };
            let (app, directory, flood_waits) =
                (app.clone(), directory.cloned(), Arc::clone(flood_waits));
            let c = at.clone();
            let task = tokio::spawn(async move {
                list(&app, directory.as_ref(), group, &c, &flood_waits).await
            });
            prefetch.listings.push_back((at, task));
        }
        let Some((at, task)) = prefetch.listings.pop_front() else {
            break; // `cursor` is Done.
        };
        let listed = task.await.map_err(|e| {
            AuditError::Mismatch(format!("a member listing of group {group} stopped: {e}"))
        })?;
        debug_assert_eq!(at, cursor);
        let Some(page) = listed? else {
            break;
        };
        if let Some(q) = &page.query_total {
            known = Some(q.clone());
        }
        // A page shorter than predicted moves the sweep elsewhere: the listings asked for
        // after it are not the run's next pages.
        if prefetch
            .listings
            .front()
            .is_some_and(|(next, _)| *next != page.next)
        {
            prefetch.clear();
        }
        let total = page.group_total();
        let mut fresh = page.members;
        fresh.sort_unstable();
        fresh.dedup_by_key(|m| m.0);
        // Handed out first, stored second: a member is dropped from `pending` only once
        // stored, so one missing here and handed out before is found by the query below.
        {
            let flow = pipeline.flow();
            fresh.retain(|m| !flow.pending.contains(&m.0));
        }
        let users: Vec<UserId> = fresh.iter().map(|m| m.0).collect();
        let stored = app.store().audited_members(group, run, &users).await?;
        fresh.retain(|m| !stored.contains(&m.0));
        loop {
            let wait = pipeline.to_lister.notified();
            if pipeline.flow().pages.len() < PAGES_AHEAD {
                break;
            }
            wait.await;
        }
        let seq = {
            let mut flow = pipeline.flow();
            flow.pending.extend(fresh.iter().map(|m| m.0));
            flow.pages.push_back(PendingPage {
                next: page.next.clone(),
                total,
                phase: page.phase,
                waiting: fresh.len(),
                done: Vec::with_capacity(fresh.len()),
            });
            flow.front + flow.pages.len() as u64 - 1
        };
        pipeline.to_recorder.notify_one();
        for (user, is_bot) in fresh {
            if to_check.send((seq, user, is_bot)).await.is_err() {
                // The checks stopped on an error; `try_join!` reports it.
                return Ok(());
            }
        }
        cursor = page.next;
    }
    drop(prefetch);
    pipeline.flow().listed = true;
    pipeline.to_recorder.notify_one();
    Ok(())
}

/// Stores outcomes as checks finish and records each page, in listing order, once all its
/// checks are in (the cursor moves only then).
struct Recorder<'a> {
    app: &'a App,
    group: GroupId,
    pipeline: &'a Pipeline,
    sink: &'a dyn ProgressSink,
    flood_waits: &'a AtomicU64,
    started: Instant,
    run: AuditRun,
    counts: AuditCounts,
    pages_here: u64,
    checked_here: u64,
}

impl Recorder<'_> {
    async fn run(&mut self) -> Result<(), AuditError> {
        loop {
            let woken = self.pipeline.to_recorder.notified();
            match self.pipeline.next_work() {
                Work::Finished => return Ok(()),
                Work::Wait(None) => woken.await,
                Work::Wait(Some(due)) => {
                    let _ = tokio::time::timeout_at(due.into(), woken).await;
                }
                Work::Outcomes(outcomes) => {
                    let now = self.app.clock().unix_now();
                    let stored = self
                        .app
                        .store()
                        .record_audit_outcomes(self.group, self.run.id, &outcomes, now)
                        .await?;
                    self.stored(stored, &outcomes)?;
                }
                Work::Pages(pages) => {
                    for page in pages {
                        self.record(page).await?;
                    }
                    self.pipeline.to_lister.notify_one();
                }
            }
        }
    }

    fn stored(&mut self, stored: bool, outcomes: &[MemberOutcome]) -> Result<(), AuditError> {
        if !stored {
            return Err(AuditError::Mismatch(format!(
                "audit run {} of group {} was ended by another process",
                self.run.id, self.group
            )));
        }
        // These members were neither stored before (`audited_members`) nor handed out twice
        // (`pending`), so each outcome adds once.
        for m in outcomes {
            self.counts.add(m);
            if m.outcome != AuditOutcome::Exempt {
                self.checked_here += 1;
            }
        }
        self.pipeline.stored(outcomes);
        Ok(())
    }

    async fn record(&mut self, page: PendingPage) -> Result<(), AuditError> {
        let record = AuditPage {
            next: page.next,
            outcomes: page.done,
            directory_total: page.total,
        };
        let now = self.app.clock().unix_now();
        let stored = self
            .app
            .store()
            .record_audit_page(self.group, self.run.id, &record, now)
            .await?;
        self.stored(stored, &record.outcomes)?;
        self.pages_here += 1;
        self.run.cursor = record.next;
        self.run.pages += 1;
        if record.directory_total.is_some() {
            self.run.directory_total = record.directory_total;
        }
        self.sink.page(&AuditProgress {
            run: self.run.clone(),
            counts: self.counts,
            pages_here: self.pages_here,
            checked_here: self.checked_here,
            elapsed: self.started.elapsed(),
            flood_waits: self.flood_waits.load(Ordering::Relaxed),
            phase: page.phase,
        });
        Ok(())
    }
}

/// Runs (or resumes) an audit to its end. `directory` is `None` without MTProto: the run
/// then audits the members seen writing only.
pub async fn run_audit(
    app: &App,
    directory: Option<Arc<dyn MemberDirectory>>,
    opts: AuditOptions,
    sink: &dyn ProgressSink,
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    let group = app
        .store()
        .group(opts.group)
        .await?
        .ok_or(AuditError::UnknownGroup(opts.group))?;
    if !group.is_enforced() {
        return Err(AuditError::NotEnforced {
            group: opts.group,
            reason: format!(
                "state {}, {} channel(s)",
                group.state.as_str(),
                group.channels.len()
            ),
        });
    }
    let mute = if opts.apply {
        match group.settings.action {
            NonMemberAction::DeleteOnly => return Err(AuditError::DeleteOnly(opts.group)),
            // An audit never removes members in bulk: in a kick group too, --apply mutes.
            NonMemberAction::Mute | NonMemberAction::Kick => {
                Some((group.settings.mute_seconds != 0).then(|| {
                    app.clock()
                        .unix_now()
                        .plus(Duration::from_secs(group.settings.mute_seconds.into()))
                }))
            }
        }
    } else {
        None
    };
    let source = if directory.is_some() {
        AuditSource::Directory
    } else {
        AuditSource::SeenOnly
    };
    let (run, resumed) = open_run(app, &opts, source).await?;
    sink.started(&run, resumed);

    let bulk = app.telegram_in(Lane::Bulk);
    // The audit's own engine: every call it makes waits in the bulk lane.
    let engine = Engine::new(
        EnginePorts {
            store: Arc::clone(app.store()),
            telegram: Arc::new(bulk.clone()),
            cache: Arc::clone(app.cache()),
            clock: Arc::clone(app.clock()),
        },
        EngineConfig::default(),
        &prometheus::Registry::new(),
    )
    .map_err(|e| AuditError::Store(StoreError::Backend(Box::new(e))))?;

    let flood_waits = Arc::new(AtomicU64::new(0));
    let concurrency = opts.concurrency.max(1);
    // Counted once here, then kept as outcomes are stored: a count query per page would scan
    // every row recorded so far (quadratic over a 150,000-member run).
    let counts = app.store().audit_counts(opts.group, run.id).await?;
    let pipeline = Pipeline::default();
    let (to_check, checks_in) = tokio::sync::mpsc::channel(CHECKS_QUEUED);
    let lister = list_pages(
        app,
        directory.as_ref(),
        opts.group,
        run.id,
        run.cursor.clone(),
        &pipeline,
        to_check,
        &flood_waits,
    );
    let checker = async {
        let mut checks_in = checks_in;
        let checks = stream::poll_fn(|cx| checks_in.poll_recv(cx))
            .map(|(seq, user, is_bot)| {
                let (engine, bulk) = (&engine, &bulk);
                async move {
                    let outcome = check(app, engine, bulk, opts.group, user, is_bot, mute).await;
                    (seq, outcome)
                }
            })
            .buffer_unordered(concurrency);
        futures_util::pin_mut!(checks);
        while let Some((seq, outcome)) = checks.next().await {
            pipeline.checked(seq, outcome?);
        }
        Ok::<_, AuditError>(())
    };
    let mut recorder = Recorder {
        app,
        group: opts.group,
        pipeline: &pipeline,
        sink,
        flood_waits: &flood_waits,
        started,
        run,
        counts,
        pages_here: 0,
        checked_here: 0,
    };
    tokio::try_join!(lister, checker, recorder.run())?;
    let Recorder {
        run,
        pages_here,
        checked_here,
        ..
    } = recorder;
    let now = app.clock().unix_now();
    app.store()
        .end_audit(opts.group, run.id, AuditState::Finished, now)
        .await?;
    let run = app
        .store()
        .audit_run(opts.group, run.id)
        .await?
        .unwrap_or(run);
    let counts = app.store().audit_counts(opts.group, run.id).await?;
    Ok(AuditReport {
        run,
        counts,
        resumed,
        pages_here,
        checked_here,
        elapsed: started.elapsed(),
        flood_waits: flood_waits.load(Ordering::Relaxed),
    })
}
