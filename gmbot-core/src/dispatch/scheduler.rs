//! The admission queue: token buckets, 429 pauses, and the order in which waiting calls go.
//!
//! Pure bookkeeping under one lock, with no I/O and no sleeping: the
//! dispatcher enqueues a waiter, asks [`Scheduler::grant`] which waiters may
//! go now (each is told through its oneshot channel) and when it is worth
//! asking again. Buckets are the `ratelimit` crate's token buckets driven by
//! tokio's clock ([`TokioClock`]), so paused-time tests are deterministic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use ratelimit::{Ratelimiter, TryWaitError};
use tokio::sync::oneshot;
use tokio::time::Instant;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug)]
struct ChatBucket {
    bucket: Bucket,
    last_used: Instant,
    /// Time an empty bucket needs to fill up again (after that it can be forgotten).
    refill_full: Duration,
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

/// Per-chat buckets beyond this count are pruned of the ones that have refilled.
const CHAT_BUCKETS_SOFT_MAX: usize = 4_096;

/// The admission state of one dispatcher.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: DispatchConfig,
    queues: [VecDeque<Waiter>; 4],
    free_queued: usize,
    global: Bucket,
    actions: Bucket,
    deletes: Bucket,
    reads: Option<Bucket>,
    bulk: Option<Bucket>,
    chats: HashMap<ChatId, ChatBucket>,
    chat_pauses: HashMap<ChatId, Instant>,
    global_pause: Option<Instant>,
    /// A global token taken for a message whose chat budget then said no;
    /// kept for the next call instead of being lost.
    spare_global: bool,
    next_seq: u64,
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Scheduler {
    pub(crate) fn new(config: DispatchConfig) -> Self {
        let global = bucket(
            config.global_per_second,
            Duration::from_secs(1),
            config.global_burst,
        );
        let actions = bucket(
            config.actions_per_second,
            Duration::from_secs(1),
            config.action_burst,
        );
        let deletes = bucket(
            config.deletes_per_second,
            Duration::from_secs(1),
            config.delete_burst,
        );
        let reads = config.reads_per_second.map(|r| {
            bucket(
                r,
                Duration::from_secs(1),
                read_capacity(r, config.read_burst),
            )
        });
        let bulk = config.bulk_reads_per_second.map(|r| {
            bucket(
                r,
                Duration::from_secs(1),
                read_capacity(r, config.bulk_burst),
            )
        });
        Self {
            config,
            queues: Default::default(),
            free_queued: 0,
            global,
            actions,
            deletes,
            reads,
            bulk,
            chats: HashMap::new(),
            chat_pauses: HashMap::new(),
            global_pause: None,
            spare_global: false,
            next_seq: 0,
        }
    }

    /// The budget `method` draws on in `lane` (see [`Budget`]).
    pub(crate) fn budget_of(&self, lane: Lane, method: Method, chat: Option<ChatId>) -> Budget {
        if lane == Lane::Bulk && method.is_read() && self.bulk.is_some() {
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
                if self.reads.is_some() {
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

    fn take_global(&mut self) -> Result<(), Duration> {
        if self.spare_global {
            self.spare_global = false;
            return Ok(());
        }
        take(&self.global)
    }

    fn take_chat(&mut self, chat: ChatId, now: Instant) -> Result<(), Duration> {
        if !self.chats.contains_key(&chat) {
            if self.chats.len() >= CHAT_BUCKETS_SOFT_MAX {
                // A bucket idle long enough to be full again equals a new one.
                self.chats
                    .retain(|_, b| now.duration_since(b.last_used) < b.refill_full);
            }
            // Private chats (positive ids): about 1 message/s; groups and
            // channels: 20 messages/min (TELEGRAM.md, "Limits").
            let (rate, period, burst) = if chat.get() > 0 {
                (
                    self.config.private_per_second,
                    Duration::from_secs(1),
                    self.config.private_burst,
                )
            } else {
                (
                    self.config.group_per_minute,
                    Duration::from_secs(60),
                    self.config.group_burst,
                )
            };
            let refill_full = period.saturating_mul(burst) / rate.max(1);
            self.chats.insert(
                chat,
                ChatBucket {
                    bucket: bucket(rate, period, burst),
                    last_used: now,
                    refill_full,
                },
            );
        }
        match self.chats.get_mut(&chat) {
            Some(b) => {
                b.last_used = now;
                take(&b.bucket)
            }
            None => Ok(()),
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
        let mut global_blocked = false;
        let mut reads_blocked = false;
        let mut bulk_blocked = false;
        let mut actions_blocked = false;
        let mut deletes_blocked = false;
        let mut blocked_chats: HashSet<ChatId> = HashSet::new();
        for (l, i) in self.order(now) {
            if global_blocked
                && actions_blocked
                && deletes_blocked
                && (self.reads.is_none() || reads_blocked)
                && (self.bulk.is_none() || bulk_blocked)
                && self.free_queued == 0
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
                let go = match budget {
                    Budget::Free => true,
                    Budget::Read => match (&self.reads, reads_blocked) {
                        (None, _) => true,
                        (Some(_), true) => false,
                        (Some(reads), false) => match take(reads) {
                            Ok(()) => true,
                            Err(wait) => {
                                reads_blocked = true;
                                next = earliest(next, now + wait);
                                false
                            }
                        },
                    },
                    Budget::Bulk => match (&self.bulk, bulk_blocked) {
                        (None, _) => true,
                        (Some(_), true) => false,
                        (Some(bulk), false) => match take(bulk) {
                            Ok(()) => true,
                            Err(wait) => {
                                bulk_blocked = true;
                                next = earliest(next, now + wait);
                                false
                            }
                        },
                    },
                    Budget::Restrict if actions_blocked => false,
                    Budget::Restrict => match take(&self.actions) {
                        Ok(()) => true,
                        Err(wait) => {
                            actions_blocked = true;
                            next = earliest(next, now + wait);
                            false
                        }
                    },
                    Budget::Delete if deletes_blocked => false,
                    Budget::Delete => match take(&self.deletes) {
                        Ok(()) => true,
                        Err(wait) => {
                            deletes_blocked = true;
                            next = earliest(next, now + wait);
                            false
                        }
                    },
                    Budget::Write if global_blocked => false,
                    Budget::Write => match self.take_global() {
                        Ok(()) => true,
                        Err(wait) => {
                            global_blocked = true;
                            next = earliest(next, now + wait);
                            false
                        }
                    },
                    Budget::Message(c) if global_blocked || blocked_chats.contains(&c) => false,
                    Budget::Message(c) => match self.take_global() {
                        Err(wait) => {
                            global_blocked = true;
                            next = earliest(next, now + wait);
                            false
                        }
                        Ok(()) => match self.take_chat(c, now) {
                            Ok(()) => true,
                            Err(wait) => {
                                self.spare_global = true;
                                blocked_chats.insert(c);
                                next = earliest(next, now + wait);
                                false
                            }
                        },
                    },
                };
                if !go {
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
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
