//! Target (a): the first 10 minutes after a restart, cold and warmed.
//!
//! The reference trace's first 20 minutes are the bot's life before the
//! restart: they leave the store's seen members behind (every writer's
//! (group, user, last message)). At the restart instant the cache is empty
//! and the next 10 minutes of the trace are replayed, per minute:
//!
//! - **cold**: the bot's layered cache (L1 + Redis) on an empty Redis (a new
//!   or flushed Redis), and the memory cache after a restart without Redis;
//! - **after `gmbot cache warm`**: the real [`WarmUp`] (what the CLI runs:
//!   store, dispatcher's bulk lane, `MemoryTelegram` answering the truth at
//!   the restart instant) fills an empty Redis, then the bot's layered cache
//!   (empty L1) replays the window. The warm-up runs before the bot takes
//!   traffic (the operator warms, then starts or switches over);
//! - **warm-up at bot start** (memory cache): the same order of keys (the
//!   real warm-up's, one at a time), emulated at its configured rate during
//!   the replay — key *i* is looked up (`get_or_load`, a call only if the
//!   live traffic has not loaded it yet) at `i / rate` seconds after the
//!   start, so live lookups and the warm-up race as they would.

use super::*;

use gmbot_core::dispatch::{DispatchConfig, Dispatcher};
use gmbot_core::domain::{ChannelRef, EnforcedChannel, GroupId, ProtectRequest};
use gmbot_core::domain::{ChatId, MessageId};
use gmbot_core::store::{self, MigrationMode, Store};
use gmbot_core::telegram::{
    Call, ChatAdmin, ChatInfo, ChatTarget, MemoryTelegram, OutgoingMessage, TelegramApi,
    TelegramResult,
};
use gmbot_core::warm::{WarmConfig, WarmPorts, WarmScope, WarmUp};

/// The trace's instant 0 in Unix seconds (what [`start`] reads).
const START_UNIX: i64 = 1_700_000_000;

/// Telegram for a CLI warm-up at `rate` calls/s: each `getChatMember`
/// advances the simulated clock by `1 / rate`, so the entries it writes age
/// as they would (the first ones are the oldest when the bot starts).
struct Paced {
    inner: MemoryTelegram,
    clock: ManualClock,
    step: Duration,
}

#[async_trait::async_trait]
impl TelegramApi for Paced {
    async fn get_chat_member(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> TelegramResult<ChatMemberStatus> {
        self.clock.advance(self.step);
        self.inner.get_chat_member(chat, user).await
    }
    async fn get_chat_administrators(&self, chat: ChatId) -> TelegramResult<Vec<ChatAdmin>> {
        self.inner.get_chat_administrators(chat).await
    }
    async fn delete_message(&self, chat: ChatId, message: MessageId) -> TelegramResult<()> {
        self.inner.delete_message(chat, message).await
    }
    async fn restrict_member(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        self.inner.restrict_member(group, user, until).await
    }
    async fn unrestrict_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.inner.unrestrict_member(group, user).await
    }
    async fn ban_sender_chat(&self, group: GroupId, sender_chat: ChatId) -> TelegramResult<()> {
        self.inner.ban_sender_chat(group, sender_chat).await
    }
    async fn kick_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.inner.kick_member(group, user).await
    }
    async fn send_message(
        &self,
        chat: ChatId,
        message: &OutgoingMessage,
    ) -> TelegramResult<MessageId> {
        self.inner.send_message(chat, message).await
    }
    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        show_alert: bool,
    ) -> TelegramResult<()> {
        self.inner
            .answer_callback(callback_id, text, show_alert)
            .await
    }
    async fn get_chat(&self, chat: &ChatTarget) -> TelegramResult<ChatInfo> {
        self.inner.get_chat(chat).await
    }
    async fn create_invite_link(&self, chat: ChatId) -> TelegramResult<String> {
        self.inner.create_invite_link(chat).await
    }
    async fn edit_message(
        &self,
        chat: ChatId,
        message: MessageId,
        new: &OutgoingMessage,
    ) -> TelegramResult<()> {
        self.inner.edit_message(chat, message, new).await
    }
    async fn approve_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.inner.approve_join_request(group, user).await
    }
    async fn decline_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.inner.decline_join_request(group, user).await
    }
    async fn answer_join_request_query(
        &self,
        group: GroupId,
        query_id: &str,
        answer: gmbot_core::telegram::JoinQueryAnswer,
    ) -> TelegramResult<()> {
        self.inner
            .answer_join_request_query(group, query_id, answer)
            .await
    }
}

/// The truth of a key at an instant: subscribed initially, or joined by then.
struct Truth {
    joined_at: HashMap<MembershipKey, u64>,
}

impl Truth {
    fn new(trace: &[Op]) -> Self {
        let mut joined_at = HashMap::new();
        for op in trace {
            if let Kind::Recheck { .. } = op.kind {
                joined_at.entry(op.key).or_insert(op.at);
            }
        }
        Self { joined_at }
    }

    fn at(&self, key: MembershipKey, ms: u64) -> bool {
        initially_subscribed(key) || self.joined_at.get(&key).is_some_and(|&j| j <= ms)
    }
}

/// The seen members a bot that ran until `restart_ms` left in its store.
fn seen_before(trace: &[Op], restart_ms: u64) -> HashMap<(u64, i64), u64> {
    let mut seen = HashMap::new();
    for op in trace.iter().take_while(|op| op.at < restart_ms) {
        if let Kind::Lookup { first: true } = op.kind {
            seen.insert((group_of_channel(op.key.channel), op.key.user.0), op.at);
        }
    }
    seen
}

fn group_id(group: u64) -> GroupId {
    GroupId(-1_001_000_000_000 - group as i64)
}

/// A store with the 100 protected groups and the seen members, and a Telegram
/// that answers the truth at the restart instant for every key of a seen member.
async fn world(
    seen: &HashMap<(u64, i64), u64>,
    truth: &Truth,
    restart_ms: u64,
) -> (Arc<dyn Store>, MemoryTelegram) {
    let store = store::open(
        &"sqlite::memory:".parse().expect("url"),
        MigrationMode::Apply,
    )
    .await
    .expect("store");
    let mut tg = MemoryTelegram::new();
    for group in 0..GROUPS {
        let channels: Vec<ChannelId> = channels_of(group).collect();
        store
            .protect(
                &ProtectRequest {
                    group: group_id(group),
                    title: None,
                    owner: None,
                    channels: channels
                        .iter()
                        .map(|&c| EnforcedChannel::from_ref(ChannelRef::Id(c)))
                        .collect(),
                },
                UnixTime(START_UNIX),
            )
            .await
            .expect("protect");
        for c in channels {
            tg = tg.add_channel(c);
        }
    }
    let mut rows = Vec::with_capacity(seen.len());
    for (&(group, user), &at) in seen {
        rows.push((
            group_id(group),
            UserId(user),
            UnixTime(START_UNIX + (at / 1_000) as i64),
        ));
        for channel in channels_of(group) {
            let key = MembershipKey::new(channel, UserId(user));
            if truth.at(key, restart_ms) {
                tg = tg.set_member(channel, UserId(user), ChatMemberStatus::Member);
            }
        }
    }
    for chunk in rows.chunks(20_000) {
        store.record_seen_many(chunk).await.expect("seen");
    }
    (store, tg)
}

fn clock_at(ms: u64) -> ManualClock {
    let clock = start();
    clock.advance(Duration::from_millis(ms));
    clock
}

fn warm_config(max_members: u32, concurrency: usize) -> WarmConfig {
    WarmConfig {
        max_members,
        // Simulated time stands still during a CLI warm-up: its wall-clock pace is not what is
        // measured here (how long it takes at the default rate is reported beside it).
        calls_per_second: 1_000_000,
        concurrency,
        max_duration: Duration::from_secs(3_600),
        seen_within: Duration::from_secs(24 * 3_600),
    }
}

/// Runs the real warm-up. `rate`: the simulated calls per second (the clock
/// moves with each call), or `None` to keep the clock still.
async fn run_warm_up(
    store: &Arc<dyn Store>,
    tg: &MemoryTelegram,
    cache: Arc<dyn MembershipCache>,
    clock: &ManualClock,
    config: WarmConfig,
    rate: Option<u32>,
) -> gmbot_core::warm::WarmReport {
    let api: Arc<dyn TelegramApi> = match rate {
        Some(r) => Arc::new(Paced {
            inner: tg.clone(),
            clock: clock.clone(),
            step: Duration::from_secs(1) / r,
        }),
        None => Arc::new(tg.clone()),
    };
    let dispatcher =
        Dispatcher::new(api, DispatchConfig::default(), &Registry::new()).expect("dispatcher");
    let ports = WarmPorts {
        store: Arc::clone(store),
        cache,
        dispatcher,
        clock: Arc::new(clock.clone()),
    };
    WarmUp::new(ports, config)
        .expect("warm-up config")
        .run(WarmScope::All, std::future::pending())
        .await
        .expect("warm-up")
}

fn minute_rates(o: &Outcome) -> Vec<f64> {
    o.minutes
        .iter()
        .map(|&(lookups, hits, _)| hits as f64 / lookups.max(1) as f64)
        .collect()
}

fn print_row(name: &str, o: &Outcome, extra_calls: u64) {
    assert_eq!(o.stale, 0, "{name}: a stale answer was served");
    let rates: Vec<String> = minute_rates(o)
        .iter()
        .map(|r| format!("{:.1}", r * 100.0))
        .collect();
    println!(
        "| {name} | {} | {:.2} % | {} | {:.1} |",
        rates.join(" | "),
        o.hit_rate() * 100.0,
        o.calls() + extra_calls,
        (o.calls() + extra_calls) as f64 * 1_000.0 / o.verifications.max(1) as f64,
    );
}

/// Target (a), on the reference trace. `warm_members`: the warm-up's member bound.
/// Target (a), on the reference trace. `cli_rows`: (label, `--max-members`,
/// `--calls-per-second`, cache mode) of each `gmbot cache warm` run; `rates`:
/// the calls per second of the emulated warm-up at bot start.
pub(super) async fn restart(
    trace: &[Op],
    sc: Scenario,
    cli_rows: &[(&str, u32, u32, &str)],
    rates: &[u32],
) {
    let begun = Instant::now();
    let restart_ms = sc.measure_from_ms();
    let truth = Truth::new(trace);
    let seen = seen_before(trace, restart_ms);
    let (store, tg) = world(&seen, &truth, restart_ms).await;
    let mode = ReplayMode {
        start_ms: restart_ms,
        from_ms: restart_ms,
        events_write: false,
    };
    println!(
        "\nrestart (target a): the reference trace until {} min is the life before the restart \
         ({} members seen, {} (group, member) pairs in the store); the next {} min are replayed \
         from an empty cache. Hit rate per minute after the restart, %:\n",
        restart_ms / 60_000,
        seen.keys().map(|&(_, u)| u).collect::<HashSet<_>>().len(),
        seen.len(),
        sc.measured.as_secs() / 60,
    );
    let minutes = (sc.measured.as_secs() / 60) as usize;
    let header: Vec<String> = (1..=minutes).map(|m| format!("min {m}")).collect();
    println!(
        "| cache | {} | 10 min | Telegram calls (incl. warm-up) | per 1,000 verifications |",
        header.join(" | ")
    );
    println!("|---|{}---:|---:|---:|", "---:|".repeat(minutes));

    // Cold, layered on an empty Redis.
    let prefix = unique_prefix("restart-cold");
    let clock = clock_at(restart_ms);
    let cache = layered_cache(&clock, &prefix).await;
    let cold = replay_with(trace, &cache, &clock, mode, None).await;
    print_row("cold: layered, empty Redis", &cold, 0);
    drop(cache);
    delete_prefix(&prefix).await;

    // Cold, memory.
    let clock = clock_at(restart_ms);
    let cold_memory = replay_with(trace, &memory_cache(&clock), &clock, mode, None).await;
    print_row("cold: memory", &cold_memory, 0);

    let mut notes = Vec::new();
    let mut first_minute = Vec::new();
    for &(label, n, rate, mode_name) in cli_rows {
        // `gmbot cache warm` into an empty Redis, at `rate` calls/s of simulated time, then
        // the bot's layered cache from the moment the warm-up ends.
        let ttl = match mode_name {
            "events" => gmbot_core::cache::CacheMode::Events.default_ttl(),
            _ => TtlPolicy::default(),
        };
        let prefix = unique_prefix("restart-warm");
        let clock = clock_at(restart_ms);
        let redis_config = RedisCacheConfig {
            ttl,
            ..redis_config(&prefix)
        };
        let redis = Arc::new(
            RedisCache::connect(
                redis_config.clone(),
                Arc::new(clock.clone()),
                &Registry::new(),
            )
            .await
            .expect("redis cache"),
        );
        tg.clear_calls();
        let warmed_at = Instant::now();
        let report = run_warm_up(
            &store,
            &tg,
            redis.clone(),
            &clock,
            warm_config(n, 32),
            Some(rate),
        )
        .await;
        let warm_wall = warmed_at.elapsed();
        drop(redis);
        let cache = LayeredCache::connect(
            LayeredCacheConfig {
                redis: redis_config,
                ..LayeredCacheConfig::new(REDIS_URL)
            },
            Arc::new(clock.clone()),
            &Registry::new(),
        )
        .await
        .expect("layered cache");
        let o = replay_with(trace, &cache, &clock, mode, None).await;
        let name = format!("after `gmbot cache warm` ({label}): layered, {mode_name} mode");
        print_row(&name, &o, report.calls());
        let rates = minute_rates(&o);
        first_minute.push((name, rates.clone()));
        notes.push(format!(
            "{label}: {} members, {} keys, {} calls = {:.0} s of warm-up at {rate} calls/s \
             before the bot starts ({:.1} s of wall time here); members seen from {} s to {} s \
             before the restart",
            report.members,
            report.keys,
            report.calls(),
            report.calls() as f64 / f64::from(rate),
            warm_wall.as_secs_f64(),
            report
                .seen_range
                .map_or(0, |(newest, _)| START_UNIX + (restart_ms / 1_000) as i64
                    - newest.0),
            report
                .seen_range
                .map_or(0, |(_, oldest)| START_UNIX + (restart_ms / 1_000) as i64
                    - oldest.0),
        ));
        drop(cache);
        delete_prefix(&prefix).await;
    }

    // The warm-up at bot start (memory cache), paced, racing the live traffic.
    let n = WarmConfig::default().max_members;
    let clock = clock_at(restart_ms);
    tg.clear_calls();
    let throwaway: Arc<dyn MembershipCache> = Arc::new(memory_cache(&clock));
    run_warm_up(&store, &tg, throwaway, &clock, warm_config(n, 1), None).await;
    let order: Vec<MembershipKey> = tg
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::GetChatMember { chat, user } => {
                Some(MembershipKey::new(ChannelId(chat.get()), user))
            }
            _ => None,
        })
        .collect();
    let time_bound = WarmConfig::default().max_duration;
    for &rate in rates {
        let clock = clock_at(restart_ms);
        let cache = memory_cache(&clock);
        let mut next = 0usize;
        let limit = order
            .len()
            .min((time_bound.as_secs() * u64::from(rate)) as usize);
        let mut feed = |at: u64| {
            let due = (((at - restart_ms) * u64::from(rate)) / 1_000 + 1) as usize;
            let due = due.min(limit);
            let keys: Vec<(MembershipKey, bool)> = order[next.min(due)..due]
                .iter()
                .map(|&k| (k, truth.at(k, at)))
                .collect();
            next = next.max(due);
            keys
        };
        let o = replay_with(trace, &cache, &clock, mode, Some(&mut feed)).await;
        let name = format!("warm-up at bot start, {rate} calls/s: memory");
        print_row(&name, &o, 0);
        first_minute.push((name, minute_rates(&o)));
    }
    println!();
    for note in &notes {
        println!("- {note}");
    }
    println!(
        "- warm-up at bot start: the first {} keys of the same order (default {} members, \
         {} s), emulated at the rate shown; its calls in the window are in the calls column",
        order.len(),
        n,
        time_bound.as_secs()
    );
    let cold_first = minute_rates(&cold).first().copied().unwrap_or(0.0);
    for (name, rates) in &first_minute {
        let worst = rates.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{name}: first minute {:.1} % (target >= 90 %: {}), worst minute {:.1} % ({}), \
             cold layered first minute {:.1} %",
            rates.first().copied().unwrap_or(0.0) * 100.0,
            if rates.first().copied().unwrap_or(0.0) >= 0.90 {
                "met"
            } else {
                "NOT met"
            },
            worst * 100.0,
            if worst >= 0.90 {
                "every minute >= 90 %"
            } else {
                "some minute below 90 %"
            },
            cold_first * 100.0,
        );
    }
    println!("({:.1} s)", begun.elapsed().as_secs_f64());
}
