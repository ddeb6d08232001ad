//! Raid: the real bot (long polling, SQLite, in-process cache, Telegram's default budgets)
//! against the simulated Telegram, while one group is raided and 20 others carry on.
//!
//! ```text
//! cargo bench -p gmbot-bot --bench raid
//! GMBOT_RAID_SIZES=200 cargo bench -p gmbot-bot --bench raid   # one size only
//! ```
//!
//! For each raid size (default 200 and 2,000 raiders): a steady 50 messages/s across 20
//! other protected groups (10 % from non-subscribers, each a new one) runs for the whole
//! measurement; two seconds in, every raider writes one message in group A within about a
//! second. The run ends when every raider is muted (or after 180 s) plus two seconds, and
//! reports, from the simulated Telegram's own state:
//!
//! - other groups: post → deletion of each non-subscriber's message (p50/p99/max), and the
//!   runtime's receipt → handled latency of every update (the decision path, p50/p99);
//! - group A: time from the first raid message until every raid message is deleted and
//!   until every raider is muted, against the bound raiders ÷ action budget + 1 s;
//!   `sendMessage` calls into group A (warnings);
//! - integrity: every raider muted with an open restriction row, nobody else in group A
//!   touched, every non-subscriber of the other groups muted, no subscriber muted.
//! - the subscribed members' messages of the other groups alone, receipt → handled
//!   (p50/p99), the updates long polling kept in the update journal, and the process's peak
//!   RSS (VmHWM) after the run.
//!
//! `GMBOT_RAID_READ_AHEAD=0` turns the runtime's read-ahead off (for comparison).
//! The budgets come from the same environment variables as the bot's
//! (`GMBOT_ACTIONS_PER_SECOND`, …). `GMBOT_RAID_TELEGRAM_LATENCY_MS=N` adds N ms to every call the simulated Telegram answers
//! (Telegram itself answers in tens of milliseconds; the simulator, left alone, in well under
//! one).

#[path = "../../gmbot-core/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gmbot_bot::run::{Bot, RunOptions};
use gmbot_bot::runtime::{LatencyRecorder, LatencySubset, RuntimeConfig, Shutdown};
use gmbot_bot::sim::{AdminRights, Fault, FaultKind, Simulator, SimulatorOptions};
use gmbot_bot::update::UpdateKind;
use gmbot_bot::Config;
use gmbot_core::domain::{
    ChannelId, ChannelRef, EnforcedChannel, GroupId, MessageId, ProtectRequest, UnixTime, UserId,
};

const OTHER_GROUPS: usize = 20;
const MEMBERS_PER_GROUP: usize = 50;
const STEADY_RATE: u64 = 50;

struct World {
    sim: Simulator,
    raided: GroupId,
    /// (group, channel, members).
    others: Vec<(GroupId, ChannelId, Vec<UserId>)>,
    raid_channel: ChannelId,
    raid_members: Vec<UserId>,
    owner: UserId,
}

/// Milliseconds added to every simulated Telegram call (`GMBOT_RAID_TELEGRAM_LATENCY_MS`).
fn telegram_latency() -> Duration {
    Duration::from_millis(
        std::env::var("GMBOT_RAID_TELEGRAM_LATENCY_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// Read-ahead loads at once (`GMBOT_RAID_READ_AHEAD`, default the runtime's; 0 = off).
fn read_ahead() -> usize {
    std::env::var("GMBOT_RAID_READ_AHEAD")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(gmbot_bot::runtime::READ_AHEAD)
}

/// Peak resident set of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn world() -> World {
    let sim = Simulator::start_with(SimulatorOptions {
        // A delayed answer holds its worker thread: enough of them for the bot's concurrency.
        workers: if telegram_latency().is_zero() { 4 } else { 256 },
        ..SimulatorOptions::default()
    })
    .expect("simulator starts");
    let owner = sim.add_user("Owner");
    let make = |name: &str, slug: &str| {
        let group = sim.create_supergroup(name, owner).expect("group");
        let channel = sim
            .create_channel(&format!("{name} news"), Some(slug), owner)
            .expect("channel");
        sim.add_bot(group, owner, Some(AdminRights::moderator()))
            .expect("bot in group");
        sim.add_bot(channel, owner, Some(AdminRights::full()))
            .expect("bot in channel");
        let members: Vec<UserId> = (0..MEMBERS_PER_GROUP)
            .map(|i| {
                let u = sim.add_user(&format!("{name} member {i}"));
                sim.join(group, u).expect("joins");
                sim.join(channel, u).expect("subscribes");
                u
            })
            .collect();
        (group, channel, members)
    };
    let (raided, raid_channel, raid_members) = make("Raided", "raid_news");
    let others = (0..OTHER_GROUPS)
        .map(|g| make(&format!("Group {g}"), &format!("news_{g}")))
        .collect();
    World {
        sim,
        raided,
        others,
        raid_channel,
        raid_members,
        owner,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let sizes: Vec<usize> = std::env::var("GMBOT_RAID_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![200, 2_000]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for size in sizes {
        rt.block_on(run(size));
    }
}

async fn run(raiders: usize) {
    let w = world();
    w.sim.set_recording(true);
    let (_file, url) = support::sqlite_file_url();
    let mut vars = vec![
        ("TELEGRAM_BOT_TOKEN", w.sim.token().to_owned()),
        ("TELEGRAM_API_URL", w.sim.base_url()),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", url.to_string()),
    ];
    // Budgets may be changed from the environment, as for the bot itself.
    for var in [
        "GMBOT_MESSAGES_PER_SECOND",
        "GMBOT_GROUP_MESSAGES_PER_MINUTE",
        "GMBOT_ACTIONS_PER_SECOND",
        "GMBOT_DELETES_PER_SECOND",
        "GMBOT_READS_PER_SECOND",
    ] {
        if let Ok(value) = std::env::var(var) {
            vars.push((var, value));
        }
    }
    let config = Config::from_vars(vars).expect("configuration");
    let latency = LatencyRecorder::new(1_000_000);
    let members_latency = LatencyRecorder::new(1_000_000);
    let member_ids: std::collections::HashSet<i64> = w
        .others
        .iter()
        .flat_map(|(_, _, ms)| ms.iter().map(|m| m.0))
        .collect();
    let member_group_ids: std::collections::HashSet<i64> =
        w.others.iter().map(|(g, _, _)| g.0).collect();
    let mut options = RunOptions {
        runtime: RuntimeConfig {
            latency: Some(latency.clone()),
            read_ahead: read_ahead(),
            latency_subset: Some(LatencySubset {
                recorder: members_latency.clone(),
                select: Arc::new(move |u| match &u.kind {
                    UpdateKind::Message(m) => {
                        member_group_ids.contains(&m.chat.id.get())
                            && m.from
                                .as_ref()
                                .is_some_and(|f| member_ids.contains(&f.id.0))
                    }
                    _ => false,
                }),
            }),
            ..RuntimeConfig::default()
        },
        long_poll: Duration::from_secs(1),
        ..RunOptions::default()
    };
    config.budgets.apply(&mut options.dispatch);
    let actions_per_second = options.dispatch.actions_per_second;
    let deletes_per_second = options.dispatch.deletes_per_second;
    let shutdown = Shutdown::new();
    let bot = Bot::start(&config, options, &shutdown)
        .await
        .expect("the bot starts");
    let app = bot.app().clone();
    let protect = |group: GroupId, channel: ChannelId| {
        let app = app.clone();
        let owner = w.owner;
        async move {
            let channel: ChannelRef = format!("{}", channel.0).parse().expect("channel id");
            app.store()
                .protect(
                    &ProtectRequest {
                        group,
                        title: None,
                        owner: Some(owner),
                        channels: vec![EnforcedChannel::from_ref(channel)],
                    },
                    UnixTime::now(),
                )
                .await
                .expect("protect");
        }
    };
    protect(w.raided, w.raid_channel).await;
    for (g, c, _) in &w.others {
        protect(*g, *c).await;
    }
    // Raiders and the steady load's non-subscribers join their groups before the run.
    let raider_ids: Vec<UserId> = (0..raiders)
        .map(|i| {
            let u = w.sim.add_user(&format!("Raider {i}"));
            w.sim.join(w.raided, u).expect("raider joins");
            u
        })
        .collect();
    let steady_secs = 2 + (raiders as u64 / u64::from(actions_per_second)) + 4;
    let total_steady = (STEADY_RATE * steady_secs) as usize;
    let mut outsiders = Vec::new();
    for i in 0..total_steady / 10 + 1 {
        let (g, _, _) = &w.others[i % OTHER_GROUPS];
        let u = w.sim.add_user(&format!("Outsider {i}"));
        w.sim.join(*g, u).expect("outsider joins");
        outsiders.push((*g, u));
    }
    // check_on_join would mute them at once; the run is about their messages.
    for (g, _, _) in &w.others {
        app.store()
            .update_settings(
                *g,
                &[gmbot_core::domain::SettingChange::CheckOnJoin(false)],
                UnixTime::now(),
            )
            .await
            .expect("settings");
    }
    app.store()
        .update_settings(
            w.raided,
            &[gmbot_core::domain::SettingChange::CheckOnJoin(false)],
            UnixTime::now(),
        )
        .await
        .expect("settings");
    let monitor = bot.monitor();
    let running = tokio::spawn(bot.run(shutdown.clone()));
    // Let the bot take the join updates and go quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wait_idle = || async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !monitor.is_idle() || app.outbox().depth().queued > 0 {
            assert!(Instant::now() < deadline, "the bot did not settle");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_idle().await;
    app.outbox().idle().await;
    w.sim.take_calls();
    latency.reset();
    members_latency.reset();
    let added = telegram_latency();
    if !added.is_zero() {
        w.sim
            .inject(Fault::on_any(FaultKind::Delay(added)).always());
    }

    // The steady load, in its own task: (group, message, posted at, from a non-subscriber).
    let sim = Arc::new(w.sim);
    let others = Arc::new(w.others);
    let steady = {
        let (sim, others) = (Arc::clone(&sim), Arc::clone(&others));
        let outsiders = outsiders.clone();
        tokio::spawn(async move {
            let mut posted: Vec<(GroupId, MessageId, bool)> = Vec::new();
            // One watcher per non-subscriber's message: post → deleted, polled every 2 ms.
            let mut watchers = Vec::new();
            let start = Instant::now();
            let mut next_outsider = 0;
            for n in 0..total_steady {
                let at = start + Duration::from_millis(n as u64 * 1000 / STEADY_RATE);
                tokio::time::sleep_until(at.into()).await;
                if n % 10 == 9 && next_outsider < outsiders.len() {
                    let (g, u) = outsiders[next_outsider];
                    next_outsider += 1;
                    if let Ok(m) = sim.post(g, u, "outsider") {
                        let at = Instant::now();
                        posted.push((g, m, true));
                        let sim = Arc::clone(&sim);
                        watchers.push(tokio::spawn(async move {
                            let give_up = at + Duration::from_secs(60);
                            while Instant::now() < give_up {
                                if sim.message(g, m).is_some_and(|m| m.deleted) {
                                    return Some(at.elapsed());
                                }
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            None
                        }));
                    }
                } else {
                    let (g, _, members) = &others[n % OTHER_GROUPS];
                    let u = members[(n / OTHER_GROUPS) % members.len()];
                    if let Ok(m) = sim.post(*g, u, "member") {
                        posted.push((*g, m, false));
                    }
                }
            }
            let mut latencies = Vec::new();
            for w in watchers {
                latencies.push(w.await.ok().flatten());
            }
            (posted, latencies)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let raid_start = Instant::now();
    let mut raid_msgs = Vec::with_capacity(raiders);
    let spacing = Duration::from_secs(1) / raiders.max(1) as u32;
    for (i, &r) in raider_ids.iter().enumerate() {
        tokio::time::sleep_until((raid_start + spacing * i as u32).into()).await;
        raid_msgs.push(sim.post(w.raided, r, "raid!").expect("raider posts"));
    }
    let posted_in = raid_start.elapsed();

    // Watch group A until every message is deleted and every raider muted.
    let mut all_deleted = None;
    let mut all_muted = None;
    let deadline = raid_start + Duration::from_secs(180);
    while (all_deleted.is_none() || all_muted.is_none()) && Instant::now() < deadline {
        if all_deleted.is_none()
            && raid_msgs
                .iter()
                .all(|&m| sim.message(w.raided, m).is_some_and(|m| m.deleted))
        {
            all_deleted = Some(raid_start.elapsed());
        }
        if all_muted.is_none() && raider_ids.iter().all(|&r| !sim.can_post(w.raided, r)) {
            all_muted = Some(raid_start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (posted, watched) = steady.await.expect("steady load");
    wait_idle().await;
    app.outbox().idle().await;

    // Other groups: deletion latency of non-subscribers' messages.
    let mut outsider_latency: Vec<Duration> = watched.iter().flatten().copied().collect();
    let undeleted = watched.iter().filter(|l| l.is_none()).count();
    let deletes = sim.calls_to("deleteMessages");
    outsider_latency.sort();
    let handled = latency.summary();
    let members = members_latency.summary();
    let kept = app
        .metrics()
        .update_journal
        .with_label_values(&["kept"])
        .get();
    // Warnings are the bot's messages with an "I've joined" button (admin notices have none).
    let bot_id = sim.bot().id;
    let warnings_in_a = sim
        .messages(w.raided)
        .iter()
        .filter(|m| {
            m.from == Some(bot_id)
                && m.buttons.iter().flatten().any(|b| {
                    b.callback_data
                        .as_deref()
                        .is_some_and(|d| d.starts_with("j:"))
                })
        })
        .count();
    let edits_in_a = sim
        .calls_to("editMessageText")
        .iter()
        .filter(|c| c.int("chat_id") == Some(w.raided.0))
        .count();
    let bulk_calls_a = deletes
        .iter()
        .filter(|c| c.int("chat_id") == Some(w.raided.0))
        .count();

    // Integrity, from the simulator's state and the store.
    let mut muted_ok = 0;
    let mut rows_ok = 0;
    for &r in &raider_ids {
        muted_ok += usize::from(!sim.can_post(w.raided, r));
        rows_ok += usize::from(
            app.store()
                .active_restriction(w.raided, r)
                .await
                .expect("store")
                .is_some(),
        );
    }
    let members_touched = w
        .raid_members
        .iter()
        .filter(|&&m| !sim.can_post(w.raided, m))
        .count()
        + others
            .iter()
            .flat_map(|(g, _, ms)| ms.iter().map(move |m| (*g, *m)))
            .filter(|&(g, m)| !sim.can_post(g, m))
            .count();
    let outsiders_posted: Vec<(GroupId, UserId)> = outsiders
        .iter()
        .take(posted.iter().filter(|p| p.2).count())
        .copied()
        .collect();
    let outsiders_muted = outsiders_posted
        .iter()
        .filter(|&&(g, u)| !sim.can_post(g, u))
        .count();

    let bound = Duration::from_secs_f64(raiders as f64 / f64::from(actions_per_second) + 1.0);
    println!("\nraid of {raiders} (posted within {:.2} s), steady {STEADY_RATE} msg/s over {OTHER_GROUPS} groups, budgets: 30 msg/s, 20 msg/min/group, {actions_per_second} restrictions/s, {deletes_per_second} deletions/s; Telegram latency added: {} ms; read-ahead {}", posted_in.as_secs_f64(), added.as_millis(), read_ahead());
    println!(
        "  other groups, non-subscriber post → delete: n={} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, undeleted {undeleted}",
        outsider_latency.len(),
        ms(pct(&outsider_latency, 0.5)),
        ms(pct(&outsider_latency, 0.99)),
        ms(outsider_latency.last().copied().unwrap_or_default()),
    );
    println!(
        "  every update, receipt → handled (decision path): n={} p50 {:.2} ms, p99 {:.2} ms",
        handled.count,
        ms(handled.p50),
        ms(handled.p99),
    );
    println!(
        "  other groups' subscribed members only, receipt → handled: n={} p50 {:.2} ms, p99 {:.2} ms",
        members.count,
        ms(members.p50),
        ms(members.p99),
    );
    println!(
        "  group A: all raid messages deleted after {}, all raiders muted after {} (bound {:.1} s); {bulk_calls_a} deleteMessages calls; {warnings_in_a} warning message(s), {edits_in_a} edit(s) of it",
        all_deleted.map_or("NEVER".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
        all_muted.map_or("NEVER".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
        bound.as_secs_f64(),
    );
    println!(
        "  integrity: raiders muted {muted_ok}/{raiders}, with rows {rows_ok}/{raiders}; non-subscribers of other groups muted {outsiders_muted}/{}; subscribers muted {members_touched}",
        outsiders_posted.len()
    );
    println!(
        "  updates kept in the journal by long polling: {kept}; peak RSS of the process so far: {}",
        peak_rss_mib().map_or("unknown".to_owned(), |m| format!("{m:.1} MiB"))
    );
    if std::env::var_os("GMBOT_RAID_SHOW_WARNINGS").is_some() {
        for m in sim.messages(w.raided) {
            if m.from == Some(bot_id) {
                println!(
                    "  bot message {}: deleted={} edited={} {:?}",
                    m.id.0,
                    m.deleted,
                    m.edited,
                    m.text.chars().take(120).collect::<String>()
                );
            }
        }
    }
    shutdown.trigger();
    let _ = running.await;
    drop(sim);
}
