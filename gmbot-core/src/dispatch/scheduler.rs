//! The admission queue: token buckets, 429 pauses, and the order in which waiting calls go.
//!
//! Pure bookkeeping under one lock, with no I/O and no sleeping: the
//! dispatcher enqueues a waiter, asks [`Scheduler::grant`] which waiters may
//! go now (each is told through its oneshot channel) and when it is worth
//! asking again. Without a shared budget the buckets are the `ratelimit`
//! crate's token buckets driven by tokio's clock ([`TokioClock`]), so
//! paused-time tests are deterministic. With one, waiters go on *slots*
//! reserved from the shared budget ([`SlotBook`]) that the dispatcher's budget
//! task fetches when [`Scheduler::grant`] records demand, and on a local share
//! of each bucket while the shared budget is unreachable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use ratelimit::{Ratelimiter, TryWaitError};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::budget::{BucketRate, BudgetBucket, SlotRequest};
use super::{DispatchConfig, Lane};
use crate::domain::ChatId;
use crate::telegram::Method;

/// `ratelimit`'s clock reading tokio's time: it follows `tokio::time::pause`
/// and `advance`, where the crate's default `std::time::Instant` clock would
/// keep running in real time under a paused test.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock(Instant);

impl ratelimit::Clock for TokioClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

type Bucket = Ratelimiter<TokioClock>;

/// A full bucket of `burst` tokens refilling `rate` tokens per `period`.
fn bucket(rate: u32, period: Duration, burst: u32) -> Bucket {
    let clock = TokioClock(Instant::now());
    ratelimit::Builder::with_clock(u64::from(rate), clock)
        .period(period)
        .max_tokens(u64::from(burst))
        .initial_available(u64::from(burst))
        .build()
        .unwrap_or_else(|_| {
            // Unreachable with a validated config (rate, burst ≥ 1, period > 0);
            // fall back to a bucket at the same rate that starts empty.
            let b = Ratelimiter::with_clock(u64::from(rate), clock);
            b.set_rate_per(u64::from(rate), period);
            b.set_max_tokens(u64::from(burst.max(1)));
            b
        })
}

/// The time a read bucket holds at least: [`READ_SLACK`] of its rate.
///
/// A waiter sleeps until its token is due, and tokio's timer wakes it up to a millisecond
/// late; a bucket of one token cannot bank what those late wake-ups miss. At 1,000 reads/s
/// that lost two thirds of the rate (measured: 367 grants/s from a bucket of 1, 1,007 from a
/// bucket of 20). Reads have no hard per-second window at Telegram (TELEGRAM.md), so a read
/// bucket holds at least 20 ms of its rate; the message, restrict and delete buckets keep
/// their configured capacity, whose every-window guarantee matters more than a few per cent
/// of rate.
const READ_SLACK: Duration = Duration::from_millis(20);

fn read_capacity(rate: u32, burst: u32) -> u32 {
    let slack = (u128::from(rate) * READ_SLACK.as_millis()).div_ceil(1_000);
    burst.max(u32::try_from(slack).unwrap_or(u32::MAX))
}

/// Takes one token, or says how long until one is there.
fn take(bucket: &Bucket) -> Result<(), Duration> {
    match bucket.try_wait() {
        Ok(()) => Ok(()),
        Err(TryWaitError::Insufficient(wait)) => Err(wait),
        // Only a request above the capacity lands here, impossible for one
        // token with capacity ≥ 1; back off briefly rather than spin.
        Err(_) => Err(Duration::from_millis(100)),
    }
}

/// What a call draws on before it may go.
///
/// - `sendMessage` posts into a chat: the global write budget **and** that
///   chat's budget (20/min in a group, 1/s in a private chat).
/// - `restrictChatMember`, lifting it, kicking and banning a sender chat change a chat
///   without posting: the restrict budget only; `deleteMessage(s)`: the delete budget only
///   (counting them per group, or against the message budget, would make clearing a spam
///   wave take minutes; apart, a raid's bulk deletions and its mutes do not wait for each
///   other).
/// - `getChatMember`, `getChatAdministrators`: the optional read budget, never
///   the message budget (TELEGRAM.md: reads have their own, looser limits).
/// - `answerCallbackQuery` is not a message and a user's spinner waits on it: free.
/// - Ephemeral messages (Bot API 10.2) are messages sent into the group. The reference
///   names no separate limit for them and does not exempt them from the group's
///   20 messages/min, so they draw on the global write budget and the group's budget like
///   any `sendMessage`; deleting one draws on the delete budget, like `deleteMessage`.
/// - Approving, declining and answering join requests change a chat without posting: the
///   restrict budget.
///
/// Every call, free or not, waits out a 429 pause of its chat or of the whole bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Budget {
    /// Only pauses apply.
    Free,
    /// The read bucket.
    Read,
    /// The bulk read bucket (reads in the bulk lane, when it is configured).
    Bulk,
    /// The global bucket.
    Write,
    /// The restrict bucket (restrict, unrestrict, kick, ban a sender chat).
    Restrict,
    /// The delete bucket (`deleteMessage`, `deleteMessages`).
    Delete,
    /// The global bucket and the chat's bucket.
    Message(ChatId),
}

/// What a waiter found blocked in this grant pass: later waiters on the same
/// thing do not try it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Block {
    Global,
    Restrict,
    Delete,
    Read,
    Bulk,
    Chat(ChatId),
    /// No slot of the shared budget is due for this budget.
    Book(Budget),
}

/// Rate, period and burst of each bucket a budget draws on, from the config.
fn rates_of(config: &DispatchConfig, budget: Budget) -> Vec<(BudgetBucket, u32, Duration, u32)> {
    let second = Duration::from_secs(1);
    let global = (
        BudgetBucket::Write,
        config.global_per_second,
        second,
        config.global_burst,
    );
    match budget {
        Budget::Free => Vec::new(),
        Budget::Write => vec![global],
        Budget::Restrict => vec![(
            BudgetBucket::Restrict,
            config.actions_per_second,
            second,
            config.action_burst,
        )],
        Budget::Delete => vec![(
            BudgetBucket::Delete,
            config.deletes_per_second,
            second,
            config.delete_burst,
        )],
        Budget::Read => vec![(
            BudgetBucket::Read,
            config.reads_per_second.unwrap_or(1),
            second,
            config.read_burst,
        )],
        Budget::Bulk => vec![(
            BudgetBucket::BulkRead,
            config.bulk_reads_per_second.unwrap_or(1),
            second,
            config.bulk_burst,
        )],
        Budget::Message(chat) => {
            let (rate, period, burst) = chat_rate(config, chat);
            vec![global, (BudgetBucket::Chat(chat), rate, period, burst)]
        }
    }
}

/// Private chats (positive ids): about 1 message/s; groups and channels:
/// 20 messages/min (TELEGRAM.md, "Limits").
fn chat_rate(config: &DispatchConfig, chat: ChatId) -> (u32, Duration, u32) {
    if chat.get() > 0 {
        (
            config.private_per_second,
            Duration::from_secs(1),
            config.private_burst,
        )
    } else {
        (
            config.group_per_minute,
            Duration::from_secs(60),
            config.group_burst,
        )
    }
}

/// The shared budget's spacing of a bucket: `(period + slack) / rate`,
/// rounded up to the microsecond, with `slack` = grace + spread (see the
/// `budget` module: a call reaching Telegram up to `slack` after its slot then
/// still leaves at most `rate` calls in every period).
pub(crate) fn shared_interval(rate: u32, period: Duration, slack: Duration) -> Duration {
    let us = u64::try_from((period + slack).as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(us.div_ceil(u64::from(rate.max(1))))
}

/// One instance's share of `rate` per `period` when `n` instances share it
/// without coordination: `⌊rate / n⌋` per `period + slack`, evenly spaced, so
/// that `n` instances together never exceed `rate` in any window of one
/// period, even with calls reaching Telegram up to `slack` late; one call per
/// `⌈n / rate⌉` periods when `rate < n` (then only the average holds).
pub(crate) fn fallback_share(
    rate: u32,
    period: Duration,
    n: u32,
    slack: Duration,
) -> (u32, Duration) {
    let n = n.max(1);
    let period = period + slack;
    match rate / n {
        0 => (1, period.saturating_mul(n.div_ceil(rate.max(1)))),
        k => (k, period),
    }
}

/// A bucket created when first needed, not before `start`.
#[derive(Debug)]
struct LazyBucket {
    rate: u32,
    period: Duration,
    burst: u32,
    start: Instant,
    bucket: Option<Bucket>,
}

impl LazyBucket {
    fn ready(rate: u32, period: Duration, burst: u32) -> Self {
        Self {
            rate,
            period,
            burst,
            start: Instant::now(),
            bucket: Some(bucket(rate, period, burst)),
        }
    }

    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.bucket.is_none() {
            if now < self.start {
                return Err(self.start - now);
            }
            self.bucket = Some(bucket(self.rate, self.period, self.burst));
        }
        match &self.bucket {
            Some(b) => take(b),
            None => Err(Duration::from_millis(100)),
        }
    }
}

#[derive(Debug)]
struct ChatBucket {
    bucket: LazyBucket,
    last_used: Instant,
    /// Time an empty bucket needs to fill up again (after that it can be forgotten).
    refill_full: Duration,
}

/// Per-chat buckets beyond this count are pruned of the ones that have refilled.
const CHAT_BUCKETS_SOFT_MAX: usize = 4_096;

/// How buckets made in this process relate to the bot's budget.
#[derive(Debug, Clone, Copy)]
enum LocalShare {
    /// The whole budget (no shared budget): full buckets from the start.
    Whole,
    /// `1/n` of each bucket while the shared budget is unreachable: no
    /// bucket starts before `base + (n + 1) × shared interval` (`base` is
    /// the failure plus the reservation horizon and grace: every slot reserved
    /// before the failure is used or void by then), burst 1.
    Fallback {
        n: u32,
        base: Instant,
        slack: Duration,
    },
}

/// Token buckets kept in this process.
#[derive(Debug)]
struct LocalBuckets {
    config: DispatchConfig,
    share: LocalShare,
    global: LazyBucket,
    actions: LazyBucket,
    deletes: LazyBucket,
    reads: Option<LazyBucket>,
    bulk: Option<LazyBucket>,
    chats: HashMap<ChatId, ChatBucket>,
    /// A global token taken for a message whose chat budget then said no;
    /// kept for the next call instead of being lost.
    spare_global: bool,
    /// Whether any token was taken (what a return from a fallback must announce).
    used: bool,
}

impl LocalBuckets {
    fn new(config: &DispatchConfig, share: LocalShare) -> Self {
        let second = Duration::from_secs(1);
        let make = |rate: u32, period: Duration, burst: u32| -> LazyBucket {
            match share {
                LocalShare::Whole => LazyBucket::ready(rate, period, burst),
                LocalShare::Fallback { n, base, slack } => {
                    let (r, p) = fallback_share(rate, period, n, slack);
                    let gap = shared_interval(rate, period, slack).saturating_mul(n + 1);
                    LazyBucket {
                        rate: r,
                        period: p,
                        burst: 1,
                        start: base + gap,
                        bucket: None,
                    }
                }
            }
        };
        Self {
            global: make(config.global_per_second, second, config.global_burst),
            actions: make(config.actions_per_second, second, config.action_burst),
            deletes: make(config.deletes_per_second, second, config.delete_burst),
            reads: config
                .reads_per_second
                .map(|r| make(r, second, read_capacity(r, config.read_burst))),
            bulk: config
                .bulk_reads_per_second
                .map(|r| make(r, second, read_capacity(r, config.bulk_burst))),
            config: config.clone(),
            share,
            chats: HashMap::new(),
            spare_global: false,
            used: false,
        }
    }

    /// When the first of these buckets may give a token.
    fn earliest_start(&self) -> Instant {
        [&self.global, &self.actions, &self.deletes]
            .into_iter()
            .chain(self.reads.as_ref())
            .chain(self.bulk.as_ref())
            .map(|b| b.start)
            .min()
            .unwrap_or(self.global.start)
    }

    fn take_global(&mut self, now: Instant) -> Result<(), Duration> {
        if self.spare_global {
            self.spare_global = false;
            return Ok(());
        }
        self.global.take(now)
    }

    fn take_chat(&mut self, chat: ChatId, now: Instant) -> Result<(), Duration> {
        if !self.chats.contains_key(&chat) {
            if self.chats.len() >= CHAT_BUCKETS_SOFT_MAX {
                // A bucket idle long enough to be full again equals a new one.
                self.chats
                    .retain(|_, b| now.duration_since(b.last_used) < b.refill_full);
            }
            let (rate, period, burst) = chat_rate(&self.config, chat);
            let bucket = match self.share {
                LocalShare::Whole => LazyBucket::ready(rate, period, burst),
                LocalShare::Fallback { n, base, slack } => {
                    let (r, p) = fallback_share(rate, period, n, slack);
                    LazyBucket {
                        rate: r,
                        period: p,
                        burst: 1,
                        start: base + shared_interval(rate, period, slack).saturating_mul(n + 1),
                        bucket: None,
                    }
                }
            };
            let refill_full = bucket.period.saturating_mul(bucket.burst) / bucket.rate.max(1);
            self.chats.insert(
                chat,
                ChatBucket {
                    bucket,
                    last_used: now,
                    refill_full,
                },
            );
        }
        match self.chats.get_mut(&chat) {
            Some(b) => {
                b.last_used = now;
                b.bucket.take(now)
            }
            None => Ok(()),
        }
    }

    /// Takes what `budget` needs, unless something it needs is in `blocked`;
    /// records what blocks it and when to look again.
    fn try_take(
        &mut self,
        budget: Budget,
        now: Instant,
        blocked: &mut HashSet<Block>,
        next: &mut Option<Instant>,
    ) -> bool {
        let single = |b: Option<&mut LazyBucket>,
                      key: Block,
                      blocked: &mut HashSet<Block>,
                      next: &mut Option<Instant>| {
            let Some(b) = b else { return true };
            if blocked.contains(&key) {
                return false;
            }
            match b.take(now) {
                Ok(()) => true,
                Err(wait) => {
                    blocked.insert(key);
                    *next = earliest(*next, now + wait);
                    false
                }
            }
        };
        let went = match budget {
            Budget::Free => return true,
            Budget::Read => single(self.reads.as_mut(), Block::Read, blocked, next),
            Budget::Bulk => single(self.bulk.as_mut(), Block::Bulk, blocked, next),
            Budget::Restrict => single(Some(&mut self.actions), Block::Restrict, blocked, next),
            Budget::Delete => single(Some(&mut self.deletes), Block::Delete, blocked, next),
            Budget::Write => {
                if blocked.contains(&Block::Global) {
                    false
                } else {
                    match self.take_global(now) {
                        Ok(()) => true,
                        Err(wait) => {
                            blocked.insert(Block::Global);
                            *next = earliest(*next, now + wait);
                            false
                        }
                    }
                }
            }
            Budget::Message(c) => {
                if blocked.contains(&Block::Global) || blocked.contains(&Block::Chat(c)) {
                    false
                } else {
                    match self.take_global(now) {
                        Err(wait) => {
                            blocked.insert(Block::Global);
                            *next = earliest(*next, now + wait);
                            false
                        }
                        Ok(()) => match self.take_chat(c, now) {
                            Ok(()) => true,
                            Err(wait) => {
                                self.spare_global = true;
                                blocked.insert(Block::Chat(c));
                                *next = earliest(*next, now + wait);
                                false
                            }
                        },
                    }
                }
            }
        };
        self.used |= went;
        went
    }

    /// Whether every bucket is blocked in this pass (nothing budgeted can go).
    fn all_blocked(&self, blocked: &HashSet<Block>) -> bool {
        blocked.contains(&Block::Global)
            && blocked.contains(&Block::Restrict)
            && blocked.contains(&Block::Delete)
            && (self.reads.is_none() || blocked.contains(&Block::Read))
            && (self.bulk.is_none() || blocked.contains(&Block::Bulk))
    }
}

/// Slots of the shared budget reserved for one [`Budget`], each usable from
/// its first instant to its second (see the `budget` module).
#[derive(Debug, Default)]
struct SlotBook {
    slots: VecDeque<(Instant, Instant)>,
    /// Slots wanted beyond those held (waiters seen by the last grant pass).
    want: u32,
    /// Not worth asking before this (the next slot is beyond the horizon).
    retry_at: Option<Instant>,
}

enum SlotTake {
    Taken,
    Later(Instant),
    None,
}

/// Most slots asked for one budget in one round trip.
const MAX_BATCH: u32 = 64;
/// Most budgets (buckets or chats) in one round trip: the script runs inside
/// Redis, which serves nobody else meanwhile. The rest go in the next one.
const MAX_REQUESTS: usize = 256;

/// The shared budget's side of the scheduler.
#[derive(Debug)]
struct SharedBooks {
    grace: Duration,
    /// Grace plus spread: what bucket intervals allow for.
    slack: Duration,
    horizon: Duration,
    books: HashMap<Budget, SlotBook>,
    /// `Some` while the shared budget is unreachable: this instance's share.
    fallback: Option<LocalBuckets>,
    /// The budget task has something to reserve.
    refill: bool,
    used: u64,
    expired: u64,
}

impl SharedBooks {
    fn take_slot(&mut self, budget: Budget, now: Instant) -> SlotTake {
        let Some(book) = self.books.get_mut(&budget) else {
            return SlotTake::None;
        };
        while book.slots.front().is_some_and(|(_, last)| *last < now) {
            book.slots.pop_front();
            self.expired += 1;
        }
        match book.slots.front() {
            Some((first, _)) if *first <= now => {
                book.slots.pop_front();
                self.used += 1;
                SlotTake::Taken
            }
            Some((first, _)) => SlotTake::Later(*first),
            None => SlotTake::None,
        }
    }
}

#[derive(Debug)]
struct Waiter {
    seq: u64,
    chat: Option<ChatId>,
    budget: Budget,
    enqueued: Instant,
    /// `None` once granted or found cancelled (then removed).
    tx: Option<oneshot::Sender<()>>,
}

/// The admission state of one dispatcher.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: DispatchConfig,
    queues: [VecDeque<Waiter>; 4],
    free_queued: usize,
    /// The whole budget, when there is no shared budget.
    local: Option<LocalBuckets>,
    /// The shared budget's slots and fallback.
    shared: Option<SharedBooks>,
    chat_pauses: HashMap<ChatId, Instant>,
    global_pause: Option<Instant>,
    next_seq: u64,
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Scheduler {
    /// A scheduler spending the whole budget in this process.
    pub(crate) fn new(config: DispatchConfig) -> Self {
        Self {
            local: Some(LocalBuckets::new(&config, LocalShare::Whole)),
            shared: None,
            ..Self::empty(config)
        }
    }

    /// A scheduler spending slots of a shared budget, reserved up to
    /// `horizon` ahead, usable up to `grace` late, spaced to allow calls to
    /// reach Telegram up to `grace + spread` late.
    pub(crate) fn shared(
        config: DispatchConfig,
        horizon: Duration,
        grace: Duration,
        spread: Duration,
    ) -> Self {
        Self {
            local: None,
            shared: Some(SharedBooks {
                grace,
                slack: grace + spread,
                horizon,
                books: HashMap::new(),
                fallback: None,
                refill: false,
                used: 0,
                expired: 0,
            }),
            ..Self::empty(config)
        }
    }

    fn empty(config: DispatchConfig) -> Self {
        Self {
            config,
            queues: Default::default(),
            free_queued: 0,
            local: None,
            shared: None,
            chat_pauses: HashMap::new(),
            global_pause: None,
            next_seq: 0,
        }
    }

    /// The budget `method` draws on in `lane` (see [`Budget`]).
    pub(crate) fn budget_of(&self, lane: Lane, method: Method, chat: Option<ChatId>) -> Budget {
        if lane == Lane::Bulk && method.is_read() && self.config.bulk_reads_per_second.is_some() {
            return Budget::Bulk;
        }
        match method {
            // An edit is a message as far as Telegram's flood limits go.
            Method::SendMessage | Method::EditMessage | Method::SendEphemeral => {
                chat.map_or(Budget::Write, Budget::Message)
            }
            Method::DeleteMessage | Method::DeleteMessages | Method::DeleteEphemeral => {
                Budget::Delete
            }
            Method::RestrictMember
            | Method::UnrestrictMember
            | Method::KickMember
            | Method::BanSenderChat
            | Method::ApproveJoinRequest
            | Method::DeclineJoinRequest
            | Method::AnswerJoinRequestQuery => Budget::Restrict,
            Method::CreateInviteLink => Budget::Write,
            Method::GetChatMember
            | Method::GetChatAdministrators
            | Method::GetChat
            | Method::GetParticipants => {
                if self.config.reads_per_second.is_some() {
                    Budget::Read
                } else {
                    Budget::Free
                }
            }
            Method::AnswerCallback => Budget::Free,
        }
    }

    /// Whether a call about `chat` must wait for a 429 pause.
    pub(crate) fn is_paused(&self, chat: Option<ChatId>, now: Instant) -> bool {
        self.global_pause.is_some_and(|until| until > now)
            || chat
                .and_then(|c| self.chat_pauses.get(&c))
                .is_some_and(|until| *until > now)
    }

    /// Queues a waiter (a retried call passes its first `seq` and enqueue time
    /// to keep its place). Returns its `seq` and the channel that says "go".
    pub(crate) fn enqueue(
        &mut self,
        lane: Lane,
        chat: Option<ChatId>,
        budget: Budget,
        enqueued: Instant,
        seq: Option<u64>,
    ) -> (u64, oneshot::Receiver<()>) {
        let seq = seq.unwrap_or_else(|| {
            self.next_seq += 1;
            self.next_seq
        });
        let (tx, rx) = oneshot::channel();
        let queue = &mut self.queues[lane.index()];
        let pos = queue.partition_point(|w| (w.enqueued, w.seq) <= (enqueued, seq));
        queue.insert(
            pos,
            Waiter {
                seq,
                chat,
                budget,
                enqueued,
                tx: Some(tx),
            },
        );
        if budget == Budget::Free {
            self.free_queued += 1;
        }
        (seq, rx)
    }

    /// Pauses one chat until `until` (a longer pause already set wins).
    pub(crate) fn pause_chat(&mut self, chat: ChatId, until: Instant) {
        let entry = self.chat_pauses.entry(chat).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Pauses every call until `until` (a longer pause already set wins).
    pub(crate) fn pause_all(&mut self, until: Instant) {
        self.global_pause = Some(self.global_pause.map_or(until, |p| p.max(until)));
    }

    /// Waiters queued per lane.
    pub(crate) fn depths(&self) -> [usize; 4] {
        [0, 1, 2, 3].map(|i| self.queues[i].len())
    }

    /// The order in which waiters are considered: first every waiter queued
    /// for at least `starvation_limit`, oldest first whatever its lane; then
    /// the lanes from highest to lowest, each in arrival order.
    fn order(&self, now: Instant) -> Vec<(usize, usize)> {
        let cutoff = now.checked_sub(self.config.starvation_limit);
        let mut aged = Vec::new();
        let mut rest = Vec::with_capacity(self.queues.iter().map(VecDeque::len).sum());
        for (l, queue) in self.queues.iter().enumerate() {
            for (i, w) in queue.iter().enumerate() {
                if cutoff.is_some_and(|c| w.enqueued <= c) {
                    aged.push((w.enqueued, w.seq, l, i));
                } else {
                    rest.push((l, i));
                }
            }
        }
        aged.sort_unstable();
        aged.into_iter()
            .map(|(_, _, l, i)| (l, i))
            .chain(rest)
            .collect()
    }

    /// Takes what a waiter on `budget` needs, from the local buckets or the
    /// shared budget's slots (and, during a fallback, this instance's share).
    fn try_take(
        &mut self,
        budget: Budget,
        now: Instant,
        blocked: &mut HashSet<Block>,
        next: &mut Option<Instant>,
        wanting: &mut HashMap<Budget, u32>,
    ) -> bool {
        if budget == Budget::Free {
            return true;
        }
        let Some(shared) = self.shared.as_mut() else {
            return self
                .local
                .as_mut()
                .is_some_and(|l| l.try_take(budget, now, blocked, next));
        };
        let book = Block::Book(budget);
        if !blocked.contains(&book) {
            match shared.take_slot(budget, now) {
                SlotTake::Taken => return true,
                SlotTake::Later(at) => {
                    blocked.insert(book);
                    *next = earliest(*next, at);
                }
                SlotTake::None => {
                    blocked.insert(book);
                }
            }
        }
        match shared.fallback.as_mut() {
            Some(local) => local.try_take(budget, now, blocked, next),
            None => {
                *wanting.entry(budget).or_insert(0) += 1;
                false
            }
        }
    }

    /// Lets every waiter go that may go now, in [`order`](Self::order), and
    /// returns when something may change next (`None`: nothing is waiting on time).
    pub(crate) fn grant(&mut self, now: Instant) -> Option<Instant> {
        if let Some(until) = self.global_pause {
            if until > now {
                return Some(until);
            }
            self.global_pause = None;
        }
        self.chat_pauses.retain(|_, until| *until > now);

        let mut next = None;
        let mut blocked: HashSet<Block> = HashSet::new();
        let mut wanting: HashMap<Budget, u32> = HashMap::new();
        for (l, i) in self.order(now) {
            if self.free_queued == 0
                && self
                    .local
                    .as_ref()
                    .is_some_and(|local| local.all_blocked(&blocked))
            {
                break; // nothing left could go
            }
            let (chat, budget, cancelled) = {
                let w = &self.queues[l][i];
                match &w.tx {
                    None => continue,
                    Some(tx) => (w.chat, w.budget, tx.is_closed()),
                }
            };
            if !cancelled {
                if let Some(until) = chat.and_then(|c| self.chat_pauses.get(&c)) {
                    next = earliest(next, *until);
                    continue;
                }
                if !self.try_take(budget, now, &mut blocked, &mut next, &mut wanting) {
                    continue;
                }
            }
            if let Some(tx) = self.queues[l][i].tx.take() {
                if budget == Budget::Free {
                    self.free_queued = self.free_queued.saturating_sub(1);
                }
                if tx.send(()).is_err() && !cancelled {
                    // Cancelled between the check and now: the token is spent, nothing else.
                    log::debug!("dispatcher waiter went away after its grant");
                }
            }
        }
        for queue in &mut self.queues {
            queue.retain(|w| w.tx.is_some());
        }
        if let Some(shared) = self.shared.as_mut() {
            if shared.fallback.is_none() {
                next = Self::record_demand(shared, wanting, now, next);
            }
        }
        next
    }

    /// Turns the waiters left on shared budgets into slots wanted, and raises
    /// the refill flag for the budget task when there is something to ask.
    fn record_demand(
        shared: &mut SharedBooks,
        wanting: HashMap<Budget, u32>,
        now: Instant,
        mut next: Option<Instant>,
    ) -> Option<Instant> {
        for book in shared.books.values_mut() {
            book.want = 0;
        }
        let half = shared.horizon / 2;
        for (budget, waiting) in wanting {
            let book = shared.books.entry(budget).or_default();
            let held = u32::try_from(book.slots.len()).unwrap_or(u32::MAX);
            book.want = waiting.saturating_sub(held).min(MAX_BATCH);
            // Held slots reaching more than half the horizon ahead: ask only when they
            // run low, so that a round trip brings half a horizon of slots, not the one
            // slot that has just come within reach.
            if let Some((first, _)) = book.slots.back() {
                let low = first.checked_sub(half).unwrap_or(now);
                if low > now {
                    book.retry_at = Some(book.retry_at.map_or(low, |at| at.max(low)));
                }
            }
            if book.want > 0 {
                match book.retry_at {
                    Some(at) if at > now => next = earliest(next, at),
                    _ => shared.refill = true,
                }
            }
        }
        shared.books.retain(|_, b| {
            !b.slots.is_empty() || b.want > 0 || b.retry_at.is_some_and(|at| at > now)
        });
        next
    }

    /// Whether the budget task has slots to reserve (and clears the flag).
    pub(crate) fn take_refill_flag(&mut self) -> bool {
        self.shared
            .as_mut()
            .is_some_and(|s| std::mem::replace(&mut s.refill, false))
    }

    /// Slots of the shared budget used and dropped unused since the last call.
    pub(crate) fn take_slot_counts(&mut self) -> (u64, u64) {
        self.shared.as_mut().map_or((0, 0), |s| {
            (std::mem::take(&mut s.used), std::mem::take(&mut s.expired))
        })
    }

    /// The slots to ask the shared budget for now: one request per budget
    /// with waiters beyond its slots (and not told to wait). Clears the
    /// wants (the next grant pass records them again).
    pub(crate) fn slot_requests(&mut self, now: Instant) -> Vec<(Budget, SlotRequest)> {
        let config = &self.config;
        let Some(shared) = self.shared.as_mut() else {
            return Vec::new();
        };
        if shared.fallback.is_some() {
            return Vec::new();
        }
        let slack = shared.slack;
        let mut out = Vec::new();
        for (budget, book) in &mut shared.books {
            if out.len() >= MAX_REQUESTS {
                break;
            }
            if book.want == 0 || book.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            let buckets = rates_of(config, *budget)
                .into_iter()
                .map(|(bucket, rate, period, burst)| {
                    (
                        bucket,
                        BucketRate {
                            interval: shared_interval(rate, period, slack),
                            burst,
                        },
                    )
                })
                .collect();
            out.push((
                *budget,
                SlotRequest {
                    buckets,
                    count: std::mem::take(&mut book.want),
                },
            ));
        }
        out
    }

    /// Adds the slots the shared budget granted to `budget`: a slot `d` after
    /// the store's now, for a round trip sent at `sent` and answered at
    /// `received`, may be used from `received + d` (the store's now was no
    /// later than `received`) until `sent + d + grace` (it was no earlier than
    /// `sent`). A round trip longer than `grace` leaves no usable window: such
    /// slots are dropped.
    pub(crate) fn add_slots(
        &mut self,
        budget: Budget,
        sent: Instant,
        received: Instant,
        slots: &[Duration],
        retry_in: Option<Duration>,
    ) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let grace = shared.grace;
        let book = shared.books.entry(budget).or_default();
        for d in slots {
            let first = received + *d;
            let last = sent + *d + grace;
            if first <= last {
                book.slots.push_back((first, last));
            } else {
                shared.expired += 1;
            }
        }
        book.retry_at = retry_in.map(|r| received + r);
    }

    /// The shared budget is unreachable since `failed`: from now on waiters
    /// use the slots already held, then `1/n` of each budget (see [`LocalShare`]).
    pub(crate) fn enter_fallback(&mut self, failed: Instant, n: u32) {
        let config = self.config.clone();
        if let Some(shared) = self.shared.as_mut() {
            // Every slot reserved before the failure lies within the horizon of
            // the store's now, and its call reaches Telegram no later than
            // grace + spread after it.
            let share = LocalShare::Fallback {
                n,
                base: failed + shared.horizon + shared.slack,
                slack: shared.slack,
            };
            shared.fallback = Some(LocalBuckets::new(&config, share));
            shared.refill = false;
            for book in shared.books.values_mut() {
                book.want = 0;
                book.retry_at = None;
            }
        }
    }

    /// During a fallback: whether this instance has taken tokens of its
    /// share, or may before `until`.
    pub(crate) fn fallback_spends_before(&self, until: Instant) -> bool {
        self.shared
            .as_ref()
            .and_then(|s| s.fallback.as_ref())
            .is_some_and(|f| f.used || f.earliest_start() < until)
    }

    /// Back to the shared budget after a fallback.
    pub(crate) fn leave_fallback(&mut self) {
        if let Some(shared) = self.shared.as_mut() {
            shared.fallback = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn shared_scheduler() -> Scheduler {
        Scheduler::shared(DispatchConfig::default(), 200 * MS, 10 * MS, 20 * MS)
    }

    #[test]
    fn shares_and_intervals_never_add_up_to_more_than_the_budget() {
        let second = Duration::from_secs(1);
        // 30/s with 30 ms of slack: 34.334 ms apart, 29.1/s.
        assert_eq!(
            shared_interval(30, second, 30 * MS),
            Duration::from_micros(34_334)
        );
        for rate in [1u32, 7, 20, 30, 100] {
            for n in 1u32..=7 {
                let (k, period) = fallback_share(rate, second, n, 30 * MS);
                assert!(period >= second + 30 * MS);
                if rate >= n {
                    // n shares of k per period: at most the rate in any window.
                    assert!(n * k <= rate, "rate {rate}, n {n}: {k}");
                    assert_eq!(k, rate / n);
                } else {
                    // One call per ⌈n/rate⌉ periods: the average stays within the rate.
                    assert_eq!(k, 1);
                    assert!(
                        u128::from(n) * (second + 30 * MS).as_micros()
                            <= u128::from(rate) * period.as_micros()
                    );
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shared_waiters_go_on_reserved_slots_within_their_window() {
        let mut s = shared_scheduler();
        let t0 = Instant::now();
        let (_, mut a) = s.enqueue(Lane::Enforcement, None, Budget::Restrict, t0, None);
        let (_, mut b) = s.enqueue(Lane::Enforcement, None, Budget::Restrict, t0, None);
        assert_eq!(s.grant(t0), None, "nothing to wait on but the budget task");
        assert!(!drain(&mut a) && !drain(&mut b));
        assert!(s.take_refill_flag());
        let requests = s.slot_requests(t0);
        assert_eq!(requests.len(), 1);
        let (budget, request) = &requests[0];
        assert_eq!(*budget, Budget::Restrict);
        assert_eq!(request.count, 2);
        assert_eq!(
            request.buckets,
            vec![(
                BudgetBucket::Restrict,
                BucketRate {
                    interval: Duration::from_micros(34_334),
                    burst: 1
                }
            )]
        );
        // Asked at t0, answered 1 ms later: slots now and 34 ms on.
        tokio::time::advance(MS).await;
        let received = Instant::now();
        s.add_slots(
            Budget::Restrict,
            t0,
            received,
            &[Duration::ZERO, 34 * MS],
            None,
        );
        let next = s.grant(received).expect("the second slot");
        assert!(drain(&mut a) && !drain(&mut b));
        assert_eq!(next, received + 34 * MS);
        // Woken 5 ms late: within the grace (the window closes at t0 + 34 + 10 ms).
        tokio::time::advance(38 * MS).await;
        s.grant(Instant::now());
        assert!(drain(&mut b));
        assert_eq!(s.take_slot_counts(), (2, 0));

        // A slot not used within its grace is dropped, and the waiter asks again.
        let t1 = Instant::now();
        let (_, mut c) = s.enqueue(Lane::Enforcement, None, Budget::Restrict, t1, None);
        s.add_slots(Budget::Restrict, t1, t1, &[5 * MS], None);
        tokio::time::advance(20 * MS).await;
        s.grant(Instant::now());
        assert!(!drain(&mut c), "the slot's window [5 ms, 15 ms] is over");
        assert_eq!(s.take_slot_counts(), (0, 1));
        assert!(s.take_refill_flag());
        // A round trip longer than the grace leaves no usable window at all.
        let sent = Instant::now();
        tokio::time::advance(11 * MS).await;
        s.add_slots(
            Budget::Restrict,
            sent,
            Instant::now(),
            &[Duration::ZERO],
            None,
        );
        assert_eq!(s.take_slot_counts(), (0, 1));
        // Told to come back later: no request before then, and the scheduler wakes for it.
        let now = Instant::now();
        s.slot_requests(now);
        s.add_slots(Budget::Restrict, now, now, &[], Some(500 * MS));
        assert_eq!(s.grant(now), Some(now + 500 * MS));
        assert!(!s.take_refill_flag());
        assert!(s.slot_requests(now).is_empty());
        tokio::time::advance(500 * MS).await;
        s.grant(Instant::now());
        assert!(s.take_refill_flag());
        assert_eq!(s.slot_requests(Instant::now()).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_slot_is_one_request_on_the_global_and_the_chat_bucket() {
        let mut s = shared_scheduler();
        let now = Instant::now();
        let group = ChatId(-5);
        let (_, _rx) = s.enqueue(Lane::Notify, Some(group), Budget::Message(group), now, None);
        s.grant(now);
        let requests = s.slot_requests(now);
        assert_eq!(requests.len(), 1);
        let buckets: Vec<BudgetBucket> = requests[0].1.buckets.iter().map(|(b, _)| *b).collect();
        assert_eq!(
            buckets,
            vec![BudgetBucket::Write, BudgetBucket::Chat(group)]
        );
        // 20 per (60 s + 30 ms).
        assert_eq!(
            requests[0].1.buckets[1].1.interval,
            Duration::from_micros(3_001_500)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_share_starts_after_its_gap_at_one_nth_of_the_rate() {
        let mut s = shared_scheduler();
        let failed = Instant::now();
        // A slot reserved before the failure stays usable in its window.
        s.add_slots(Budget::Restrict, failed, failed, &[Duration::ZERO], None);
        s.enter_fallback(failed, 3);
        let mut rxs: Vec<_> = (0..40)
            .map(|_| {
                s.enqueue(Lane::Enforcement, None, Budget::Restrict, failed, None)
                    .1
            })
            .collect();
        let next = s.grant(failed).expect("the share's start");
        assert_eq!(
            rxs.iter_mut().map(drain).filter(|went| *went).count(),
            1,
            "the held slot"
        );
        // Horizon 200 ms + slack 30 ms + (3 + 1) × 34.334 ms.
        let start = failed + 230 * MS + Duration::from_micros(4 * 34_334);
        assert_eq!(next, start);
        assert!(
            !s.take_refill_flag(),
            "nothing is asked of the store in a fallback"
        );
        assert!(s.fallback_spends_before(start + MS));
        assert!(!s.fallback_spends_before(start));
        // Then 10 per 1.03 s (30 / 3), evenly spaced.
        let mut went = Vec::new();
        let end = start + Duration::from_millis(2_060);
        while Instant::now() < end {
            tokio::time::advance(MS).await;
            s.grant(Instant::now());
            for rx in &mut rxs {
                if drain(rx) {
                    went.push(Instant::now());
                }
            }
        }
        // Granted on the first 1 ms step at or after the start.
        let first = went.first().copied().expect("the share gives tokens");
        assert!(first >= start && first < start + MS, "{:?}", first - start);
        // 2.06 s at one token per 103 ms: 20, less one for the 1 ms steps.
        assert!((19..=20).contains(&went.len()), "{}", went.len());
        assert!(went.windows(2).all(|w| w[1] - w[0] >= 102 * MS));
        // Back on the shared budget: waiters ask the store again.
        s.leave_fallback();
        s.grant(Instant::now());
        assert!(s.take_refill_flag());
    }

    fn drain(rx: &mut oneshot::Receiver<()>) -> bool {
        rx.try_recv().is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn higher_lane_goes_first_and_aged_waiters_jump_ahead() {
        let config = DispatchConfig {
            global_per_second: 1,
            starvation_limit: Duration::from_secs(3),
            ..DispatchConfig::default()
        };
        let mut s = Scheduler::new(config);
        let t0 = Instant::now();
        // Use the one token, then queue a bulk and an interactive write.
        let (_, mut first) = s.enqueue(Lane::Notify, None, Budget::Write, t0, None);
        assert_eq!(s.grant(t0), None);
        assert!(drain(&mut first));
        let (_, mut bulk) = s.enqueue(Lane::Bulk, None, Budget::Write, t0, None);
        let (_, mut inter) = s.enqueue(Lane::Interactive, None, Budget::Write, t0, None);
        let next = s.grant(t0).expect("waiting on the bucket");
        assert!(next > t0 && next <= t0 + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        s.grant(Instant::now());
        assert!(drain(&mut inter), "interactive first");
        assert!(!drain(&mut bulk));
        // Keep adding interactive calls every second: once the bulk call has
        // waited 3 s it goes before the newer ones.
        let mut served_bulk_at = None;
        let mut keep = Vec::new();
        for _ in 0..6 {
            let now = Instant::now();
            keep.push(s.enqueue(Lane::Interactive, None, Budget::Write, now, None));
            tokio::time::advance(Duration::from_secs(1)).await;
            s.grant(Instant::now());
            if served_bulk_at.is_none() && drain(&mut bulk) {
                served_bulk_at = Some(Instant::now());
            }
        }
        let at = served_bulk_at.expect("bulk served");
        assert_eq!(at - t0, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn blocked_chat_does_not_block_others_and_keeps_the_global_token() {
        let mut s = Scheduler::new(DispatchConfig::default());
        let a = ChatId(-1);
        let b = ChatId(-2);
        let now = Instant::now();
        let (_, mut a1) = s.enqueue(Lane::Notify, Some(a), Budget::Message(a), now, None);
        s.grant(now);
        assert!(drain(&mut a1));
        tokio::time::advance(Duration::from_millis(100)).await;
        let now = Instant::now();
        let (_, mut a2) = s.enqueue(Lane::Interactive, Some(a), Budget::Message(a), now, None);
        let (_, mut b1) = s.enqueue(Lane::Bulk, Some(b), Budget::Message(b), now, None);
        let next = s.grant(now).expect("a waits");
        assert!(!drain(&mut a2));
        assert!(drain(&mut b1), "b used the global token a could not use");
        // 20/min: the 1/30 token left after 100 ms needs 2.9 s more (± rounding).
        let wait = next - now;
        assert!(
            wait >= Duration::from_millis(2_900) && wait < Duration::from_millis(2_901),
            "{wait:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_hold_calls_of_their_chat_only() {
        let mut s = Scheduler::new(DispatchConfig::default());
        let a = ChatId(-1);
        let now = Instant::now();
        s.pause_chat(a, now + Duration::from_secs(7));
        let (_, mut ra) = s.enqueue(Lane::Interactive, Some(a), Budget::Free, now, None);
        let (_, mut rb) = s.enqueue(Lane::Bulk, Some(ChatId(-2)), Budget::Free, now, None);
        assert_eq!(s.grant(now), Some(now + Duration::from_secs(7)));
        assert!(drain(&mut rb) && !drain(&mut ra));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(s.grant(Instant::now()), None);
        assert!(drain(&mut ra));
        assert_eq!(s.depths(), [0, 0, 0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiters_are_dropped() {
        let mut s = Scheduler::new(DispatchConfig::default());
        let now = Instant::now();
        s.pause_all(now + Duration::from_secs(1));
        let (_, rx) = s.enqueue(Lane::Bulk, None, Budget::Write, now, None);
        drop(rx);
        tokio::time::advance(Duration::from_secs(1)).await;
        s.grant(Instant::now());
        assert_eq!(s.depths(), [0, 0, 0, 0]);
        // The cancelled waiter did not spend the token.
        let (_, mut rx) = s.enqueue(Lane::Bulk, None, Budget::Write, Instant::now(), None);
        s.grant(Instant::now());
        assert!(drain(&mut rx));
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_reads_have_their_own_budget() {
        let config = DispatchConfig {
            bulk_reads_per_second: Some(2),
            ..DispatchConfig::default()
        };
        let mut s = Scheduler::new(config);
        let chat = Some(ChatId(-1_001));
        assert_eq!(
            s.budget_of(Lane::Bulk, Method::GetChatMember, chat),
            Budget::Bulk
        );
        assert_eq!(
            s.budget_of(Lane::Bulk, Method::GetParticipants, chat),
            Budget::Bulk
        );
        // Outside the bulk lane a read stays free (no read budget set); a bulk write keeps its own.
        assert_eq!(
            s.budget_of(Lane::Enforcement, Method::GetChatMember, chat),
            Budget::Free
        );
        assert_eq!(
            s.budget_of(Lane::Bulk, Method::RestrictMember, chat),
            Budget::Restrict
        );
        let now = Instant::now();
        let (_, mut first) = s.enqueue(Lane::Bulk, chat, Budget::Bulk, now, None);
        let (_, mut second) = s.enqueue(Lane::Bulk, chat, Budget::Bulk, now, None);
        let (_, mut free) = s.enqueue(Lane::Enforcement, chat, Budget::Free, now, None);
        let next = s
            .grant(now)
            .expect("the second bulk read waits for a token");
        assert!(drain(&mut first) && drain(&mut free));
        assert!(!drain(&mut second));
        assert!(next - now <= Duration::from_millis(500), "{:?}", next - now);
        tokio::time::advance(Duration::from_millis(500)).await;
        s.grant(Instant::now());
        assert!(drain(&mut second));
        let unset = Scheduler::new(DispatchConfig::default());
        assert_eq!(
            unset.budget_of(Lane::Bulk, Method::GetChatMember, chat),
            Budget::Free
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_read_bucket_holds_twenty_milliseconds_of_its_rate() {
        assert_eq!(read_capacity(1_000, 1), 20);
        assert_eq!(read_capacity(30, 1), 1);
        assert_eq!(read_capacity(1_000, 50), 50);
        assert_eq!(read_capacity(u32::MAX, 1), u32::MAX / 50 + 1);
        // A waiter woken late by the timer finds the tokens it missed in the bucket.
        let config = DispatchConfig {
            bulk_reads_per_second: Some(1_000),
            ..DispatchConfig::default()
        };
        let mut s = Scheduler::new(config);
        let now = Instant::now();
        let mut rxs: Vec<_> = (0..20)
            .map(|_| s.enqueue(Lane::Bulk, None, Budget::Bulk, now, None).1)
            .collect();
        s.grant(now);
        assert_eq!(rxs.iter_mut().map(drain).filter(|&ok| ok).count(), 20);
        let (_, mut late) = s.enqueue(Lane::Bulk, None, Budget::Bulk, now, None);
        assert!(s.grant(now).is_some(), "the 21st read waits for a token");
        assert!(!drain(&mut late));
        tokio::time::advance(Duration::from_millis(5)).await;
        let mut more: Vec<_> = (0..4)
            .map(|_| {
                s.enqueue(Lane::Bulk, None, Budget::Bulk, Instant::now(), None)
                    .1
            })
            .collect();
        s.grant(Instant::now());
        assert!(drain(&mut late));
        assert_eq!(more.iter_mut().map(drain).filter(|&ok| ok).count(), 4);
    }
}
