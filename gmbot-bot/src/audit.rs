//! Batch audits: every member of a protected group checked against its channels, in the
//! dispatcher's bulk lane, with a checkpoint after every page so a killed run resumes.
//!
//! [`run_audit`] walks the run's [`AuditCursor`]: the member directory's sweep (recent
//! members, then search prefixes past Telegram's 10,000-per-filter cap), then the members
//! the bot saw writing (`seen_members`), then done. For each page it drops the members the
//! run recorded already, checks the rest concurrently with
//! [`Engine::audit_member`](gmbot_core::engine::Engine::audit_member) (fresh `getChatMember`
//! calls for every linked channel, bulk lane), mutes the non-subscribers with `--apply`
//! exactly as reconciliation does ([`enforce::restrict`]: a `pending` row, the call, the row
//! `active`), and records the outcomes and the next cursor in one transaction. The next
//! directory page is fetched while the current one is checked.
//!
//! Without a directory (no MTProto credentials) a run audits the seen members only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use gmbot_core::audit::{
    AuditCounts, AuditCursor, AuditOutcome, AuditPage, AuditRun, AuditSource, AuditState,
    MemberDirectory, MemberOutcome, NewAuditRun, PAGE_LIMIT,
};
use gmbot_core::dispatch::Lane;
use gmbot_core::domain::{GroupId, NonMemberAction, UnixTime, UserId};
use gmbot_core::engine::{Decision, Engine, EngineConfig, EngineError, EnginePorts, Verdict};
use gmbot_core::store::StoreError;
use gmbot_core::telegram::{Method, TelegramApi, TelegramError};

use crate::app::App;
use crate::flows::enforce::{self, Muted};

/// Members checked at once within a page (enough to keep the bulk budget busy).
pub const DEFAULT_CONCURRENCY: usize = 32;

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
    total: Option<u64>,
    phase: String,
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
                // A search's count is its matches; only the recent listing counts the group.
                total: (at.query == gmbot_core::audit::DirectoryQuery::Recent)
                    .then_some(u64::from(page.total)),
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
                total: None,
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
    let (mut run, resumed) = open_run(app, &opts, source).await?;
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

    let flood_waits = AtomicU64::new(0);
    let concurrency = opts.concurrency.max(1);
    let mut pages_here = 0u64;
    let mut checked_here = 0u64;
    // Counted once here, then kept page by page: a count query per page would scan every row
    // recorded so far (quadratic over a 150,000-member run).
    let mut counts = app.store().audit_counts(opts.group, run.id).await?;
    let mut current = list(
        app,
        directory.as_ref(),
        opts.group,
        &run.cursor,
        &flood_waits,
    )
    .await?;
    while let Some(page) = current.take() {
        let mut fresh: Vec<(UserId, bool)> = page.members.clone();
        fresh.sort_unstable();
        fresh.dedup_by_key(|m| m.0);
        let users: Vec<UserId> = fresh.iter().map(|m| m.0).collect();
        let done = app
            .store()
            .audited_members(opts.group, run.id, &users)
            .await?;
        fresh.retain(|m| !done.contains(&m.0));
        let checks = stream::iter(fresh.into_iter().map(|(user, is_bot)| {
            let (engine, bulk) = (&engine, &bulk);
            async move { check(app, engine, bulk, opts.group, user, is_bot, mute).await }
        }))
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
        let prefetch = list(
            app,
            directory.as_ref(),
            opts.group,
            &page.next,
            &flood_waits,
        );
        let (results, next) = tokio::join!(checks, prefetch);
        let outcomes = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        checked_here += outcomes
            .iter()
            .filter(|o| o.outcome != AuditOutcome::Exempt)
            .count() as u64;
        let page_record = AuditPage {
            next: page.next.clone(),
            outcomes,
            directory_total: page.total,
        };
        let recorded = app
            .store()
            .record_audit_page(opts.group, run.id, &page_record, app.clock().unix_now())
            .await?;
        if !recorded {
            return Err(AuditError::Mismatch(format!(
                "audit run {} of group {} was ended by another process",
                run.id, opts.group
            )));
        }
        pages_here += 1;
        run.cursor = page.next.clone();
        run.pages += 1;
        if page.total.is_some() {
            run.directory_total = page.total;
        }
        // The page's members were not recorded before (`audited_members` filtered them out),
        // so each outcome adds once.
        for m in &page_record.outcomes {
            counts.add(m);
        }
        sink.page(&AuditProgress {
            run: run.clone(),
            counts,
            pages_here,
            checked_here,
            elapsed: started.elapsed(),
            flood_waits: flood_waits.load(Ordering::Relaxed),
            phase: page.phase,
        });
        current = next?;
    }
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
