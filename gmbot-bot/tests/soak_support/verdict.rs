//! The soak's invariants, checked from the simulated Telegram's state and call log, the fault
//! recovery times, the latencies, and the report.
//!
//! - **0 updates lost**: every non-subscriber's message posted while the group enforced is
//!   deleted, every such non-subscriber (message or join) who did not subscribe is muted, every
//!   one who subscribed afterwards can write again, every "I've joined" press is answered,
//!   every command is replied to, and no update is left undelivered.
//! - **0 applied twice**: no message deleted twice, no member muted twice, no callback answered
//!   twice, no command replied to twice, and no second warning in a group within the warning
//!   cool-down (300 s: one warning per group at a time, the next members gathered into it).
//! - **0 muted who should not be**: no mute of a subscribed member (or of a non-subscriber who
//!   wrote while the group was unprotected), no deletion of their messages, no subscribed member
//!   unable to write at the end.
//! - **0 non-subscribers left unmuted** at the end (after the settle period).
//! - **Budgets**: message calls (send, edit, invite links) in any 1-second window ≤ the global
//!   budget; sends and edits into one group in any 60-second window ≤ the per-group budget,
//!   counted from the call log's arrival times (as Telegram counts).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use gmbot_bot::sim::{MemberState, RecordedCall};
use gmbot_core::domain::UserId;

use super::workload::Soak;

/// One invariant's outcome.
#[derive(Debug, Clone)]
pub(crate) struct Invariant {
    /// Its name, as the failure message gives it.
    pub(crate) name: &'static str,
    /// How many times it was broken (0 = holds).
    pub(crate) count: usize,
    /// The breakdown.
    pub(crate) detail: String,
}

/// Everything the run found.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    /// The invariants.
    pub(crate) invariants: Vec<Invariant>,
    /// The report (figures and breakdowns), printed by the bench and the test.
    pub(crate) report: String,
}

impl Verdict {
    /// The invariants that do not hold, one line each.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.invariants
            .iter()
            .filter(|i| i.count > 0)
            .map(|i| format!("{}: {} ({})", i.name, i.count, i.detail))
            .collect()
    }
}

fn permissions_allow_sending(c: &RecordedCall) -> Option<bool> {
    let p = c.params.get("permissions")?;
    let parsed;
    let obj = match p {
        serde_json::Value::String(s) => {
            parsed = serde_json::from_str::<serde_json::Value>(s).ok()?;
            &parsed
        }
        v => v,
    };
    Some(
        obj.get("can_send_messages")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    )
}

fn message_ids(c: &RecordedCall) -> Vec<i64> {
    match c.method.as_str() {
        "deleteMessage" => c.int("message_id").into_iter().collect(),
        "deleteMessages" => {
            let v = match c.params.get("message_ids") {
                Some(serde_json::Value::String(s)) => serde_json::from_str(s).unwrap_or_default(),
                Some(v) => v.clone(),
                None => serde_json::Value::Null,
            };
            v.as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// (chat, message) → arrival times of successful deletions.
fn deletions(calls: &[RecordedCall]) -> HashMap<(i64, i64), Vec<Duration>> {
    let mut out: HashMap<(i64, i64), Vec<Duration>> = HashMap::new();
    for c in calls.iter().filter(|c| c.ok()) {
        let Some(chat) = c.int("chat_id") else {
            continue;
        };
        for m in message_ids(c) {
            out.entry((chat, m)).or_default().push(c.at);
        }
    }
    out
}

/// (chat, user) → arrival times of successful mutes.
fn mutes(calls: &[RecordedCall]) -> HashMap<(i64, i64), Vec<Duration>> {
    let mut out: HashMap<(i64, i64), Vec<Duration>> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.ok() && c.method == "restrictChatMember")
    {
        if permissions_allow_sending(c) == Some(false) {
            if let (Some(chat), Some(user)) = (c.int("chat_id"), c.int("user_id")) {
                out.entry((chat, user)).or_default().push(c.at);
            }
        }
    }
    out
}

fn muted_now(soak: &Soak, g: usize, user: UserId) -> bool {
    matches!(
        soak.sim.member(soak.groups[g].id, user),
        MemberState::Restricted { permissions, .. } if !permissions.can_send_messages
    )
}

/// Violations made before an `/unprotect` of their group was sent: `/unprotect` lifts them.
fn lifted(soak: &Soak, g: usize, at: Duration) -> bool {
    soak.record.cycles.iter().any(|c| {
        c.group == g
            && c.off_sent
                .is_some_and(|off| at <= off + Duration::from_secs(2))
    })
}

/// The most events in any window `[t, t + width)`.
fn max_in_window(times: &mut [Duration], width: Duration) -> (usize, Duration) {
    times.sort();
    let (mut best, mut at, mut j) = (0, Duration::ZERO, 0);
    for i in 0..times.len() {
        while times[i] - times[j] >= width {
            j += 1;
        }
        if i + 1 - j > best {
            best = i + 1 - j;
            at = times[j];
        }
    }
    (best, at)
}

/// Runs of `limit + 1` consecutive events (sorted) spanning less than `width − tolerance`:
/// windows that held more than `limit` events, arrival jitter aside. Also the tightest span
/// of `limit + 1` events.
fn windows_over(
    times: &[Duration],
    width: Duration,
    tolerance: Duration,
    limit: usize,
) -> (usize, Option<Duration>) {
    let mut over = 0;
    let mut tightest: Option<Duration> = None;
    for i in limit..times.len() {
        let span = times[i] - times[i - limit];
        tightest = Some(tightest.map_or(span, |t| t.min(span)));
        if span + tolerance < width {
            over += 1;
        }
    }
    (over, tightest)
}

/// Arrival-time jitter allowed when counting calls in a budget window: the bot's buckets
/// space grants exactly, but a call's arrival at the simulated Telegram (over loopback HTTP,
/// through a worker pool, on a loaded 2-core machine) moves by a few milliseconds, so a run at
/// the budget's rate sees `budget + 1` arrivals a hair under one second apart. 5 % of the
/// window; a second instance with its own bucket puts `budget + 1` calls within about half
/// the window.
const JITTER: Duration = Duration::from_millis(50);

/// Whether every effect the verdict checks for "lost" is present (the settle loop's test).
pub(crate) fn effects_done(soak: &Soak) -> bool {
    let calls = soak.sim.calls();
    let deleted = deletions(&calls);
    let subscribed: HashSet<(usize, i64)> = soak
        .record
        .subscriptions
        .iter()
        .map(|s| (s.group, s.user.0))
        .collect();
    for v in soak.record.violations.iter().filter(|v| v.enforced) {
        let chat = soak.groups[v.group].id.0;
        if let Some(m) = v.message {
            if !deleted.contains_key(&(chat, m.0)) {
                return false;
            }
        }
        let s = subscribed.contains(&(v.group, v.user.0));
        if !s && !lifted(soak, v.group, v.at) && soak.sim.can_post(soak.groups[v.group].id, v.user)
        {
            return false;
        }
        if s && muted_now(soak, v.group, v.user) {
            return false;
        }
    }
    let answered: HashSet<String> = calls
        .iter()
        .filter(|c| c.ok() && c.method == "answerCallbackQuery")
        .filter_map(|c| c.str("callback_query_id").map(str::to_owned))
        .collect();
    soak.record.presses.iter().all(|p| answered.contains(&p.id))
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

/// Cumulative bucket counts of `gmbot_update_duration_seconds{kind}` in one `/metrics` text.
fn buckets(text: &str, kind: &str) -> Vec<(f64, f64)> {
    let needle = format!("gmbot_update_duration_seconds_bucket{{kind=\"{kind}\",le=\"");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&needle) else {
            continue;
        };
        let Some((le, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        out.push((le, value.trim().parse().unwrap_or(0.0)));
    }
    out
}

/// Sums bucket lists of several instances (same bounds).
fn sum_buckets(texts: &[String], kind: &str) -> Vec<(f64, f64)> {
    let mut total: Vec<(f64, f64)> = Vec::new();
    for t in texts {
        for (i, (le, v)) in buckets(t, kind).into_iter().enumerate() {
            if total.len() <= i {
                total.push((le, 0.0));
            }
            total[i].1 += v;
        }
    }
    total
}

/// The bucket bound the `p`-quantile falls under, and the count.
fn quantile(b: &[(f64, f64)], p: f64) -> (String, f64) {
    let total = b.last().map_or(0.0, |x| x.1);
    if total <= 0.0 {
        return ("n/a".into(), 0.0);
    }
    for (le, c) in b {
        if *c >= total * p {
            return (
                if le.is_infinite() {
                    "> 10 s".into()
                } else {
                    format!("≤ {} ms", le * 1000.0)
                },
                total,
            );
        }
    }
    ("n/a".into(), total)
}

/// Checks everything and writes the report.
pub(crate) fn evaluate(soak: &Soak) -> Verdict {
    let calls = soak.sim.calls();
    let deleted = deletions(&calls);
    let muted = mutes(&calls);
    let rec = &soak.record;
    let bot = soak.sim.bot().id;
    let mut r = String::new();
    let cfg = &soak.cfg;

    let subscribed: HashMap<(usize, i64), Duration> = rec
        .subscriptions
        .iter()
        .map(|s| ((s.group, s.user.0), s.at))
        .collect();

    // ---- lost ----
    let rel = |t: Duration| t.saturating_sub(rec.workload.0).as_secs_f64();
    let mut lost_at: Vec<(Duration, &'static str)> = Vec::new();
    // The same, with who and where, for the report.
    let mut lost_who: Vec<(Duration, String)> = Vec::new();
    let mut lost_deletes = 0;
    let mut lost_mutes = 0;
    let mut lost_unmutes = 0;
    let mut left_unmuted = 0;
    let mut acted_unprotected = 0;
    for v in &rec.violations {
        let g = &soak.groups[v.group];
        let removed = v
            .message
            .is_some_and(|m| deleted.contains_key(&(g.id.0, m.0)));
        if !v.enforced {
            if removed || muted.contains_key(&(g.id.0, v.user.0)) {
                acted_unprotected += 1;
            }
            continue;
        }
        if v.message.is_some() && !removed {
            lost_deletes += 1;
            lost_at.push((v.at, "message not deleted"));
            lost_who.push((
                v.at,
                format!(
                    "message {} of {} in {} not deleted",
                    v.message.map_or(0, |m| m.0),
                    v.user.0,
                    g.id.0
                ),
            ));
        }
        let sub = subscribed.contains_key(&(v.group, v.user.0));
        if sub {
            if muted_now(soak, v.group, v.user) {
                lost_unmutes += 1;
                if let Some(at) = subscribed.get(&(v.group, v.user.0)) {
                    lost_at.push((*at, "still muted after subscribing"));
                    lost_who.push((
                        *at,
                        format!("{} in {} still muted after subscribing", v.user.0, g.id.0),
                    ));
                }
            }
        } else if !lifted(soak, v.group, v.at) && soak.sim.can_post(g.id, v.user) {
            left_unmuted += 1;
            if !muted.contains_key(&(g.id.0, v.user.0)) {
                lost_mutes += 1;
                lost_who.push((v.at, format!("{} in {} never muted", v.user.0, g.id.0)));
                lost_at.push((
                    v.at,
                    if v.message.is_some() {
                        "writer never muted"
                    } else {
                        "joiner never muted"
                    },
                ));
            }
        }
    }
    let answers: HashMap<String, usize> = calls
        .iter()
        .filter(|c| c.ok() && c.method == "answerCallbackQuery")
        .filter_map(|c| c.str("callback_query_id").map(str::to_owned))
        .fold(HashMap::new(), |mut m, id| {
            *m.entry(id).or_default() += 1;
            m
        });
    let lost_answers = rec
        .presses
        .iter()
        .filter(|p| !answers.contains_key(&p.id))
        .inspect(|p| {
            lost_at.push((p.at, "press unanswered"));
            lost_who.push((p.at, format!("press {} unanswered", p.id)));
        })
        .count();
    let twice_answers: usize = rec
        .presses
        .iter()
        .map(|p| answers.get(&p.id).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    let mut replies: HashMap<(i64, i64), usize> = HashMap::new();
    let mut warnings: HashMap<i64, Vec<i64>> = HashMap::new();
    for g in &soak.groups {
        for m in soak.sim.messages(g.id) {
            if m.from != Some(bot) {
                continue;
            }
            if let Some(to) = m.reply_to {
                *replies.entry((g.id.0, to.0)).or_default() += 1;
            }
            let warning = m.buttons.iter().flatten().any(|b| {
                b.callback_data
                    .as_deref()
                    .is_some_and(|d| d.starts_with("j:"))
            });
            if warning {
                warnings.entry(g.id.0).or_default().push(m.id.0);
            }
        }
    }
    let lost_replies = rec
        .commands
        .iter()
        .filter(|c| !replies.contains_key(&(soak.groups[c.group].id.0, c.message.0)))
        .inspect(|c| {
            lost_at.push((c.at, "command unanswered"));
            lost_who.push((c.at, "a command unanswered".to_owned()));
        })
        .count();
    let twice_replies: usize = rec
        .commands
        .iter()
        .map(|c| {
            replies
                .get(&(soak.groups[c.group].id.0, c.message.0))
                .copied()
                .unwrap_or(0)
                .saturating_sub(1)
        })
        .sum();
    let undelivered = soak.sim.pending_updates();
    let lost = lost_deletes + lost_mutes + lost_unmutes + lost_answers + lost_replies + undelivered;

    // ---- twice ----
    let mut twice_deletes = 0;
    for v in rec.violations.iter().filter(|v| v.enforced) {
        if let Some(m) = v.message {
            let n = deleted
                .get(&(soak.groups[v.group].id.0, m.0))
                .map_or(0, Vec::len);
            twice_deletes += n.saturating_sub(1);
        }
    }
    let violators: HashSet<(i64, i64)> = rec
        .violations
        .iter()
        .map(|v| (soak.groups[v.group].id.0, v.user.0))
        .collect();
    let joiners: HashSet<(i64, i64)> = rec
        .violations
        .iter()
        .filter(|v| v.message.is_none())
        .map(|v| (soak.groups[v.group].id.0, v.user.0))
        .collect();
    let mut twice_at: Vec<String> = Vec::new();
    let twice_mutes: usize = muted
        .iter()
        .filter(|(k, _)| violators.contains(k))
        .map(|(k, t)| {
            if t.len() > 1 {
                let mut t = t.clone();
                t.sort();
                twice_at.push(format!(
                    "{} muted {}× at {}",
                    if joiners.contains(k) {
                        "joiner"
                    } else {
                        "writer"
                    },
                    t.len(),
                    t.iter()
                        .map(|x| format!("{:.1}", rel(*x)))
                        .collect::<Vec<_>>()
                        .join("/")
                ));
            }
            t.len().saturating_sub(1)
        })
        .sum();
    // A second warning while a group's shown warning is still up and within the warning
    // cool-down (GroupSettings default, 300 s): one instance edits its shown warning instead.
    // Post times come from the `sendMessage` calls carrying an "I've joined" button, matched in
    // order to the warning messages (ids and calls are made under the same lock).
    let cooldown = Duration::from_secs(300);
    let mut twice_warnings = 0;
    let mut twice_warnings_at: Vec<(f64, i64)> = Vec::new();
    for g in &soak.groups {
        let posts: Vec<Duration> = calls
            .iter()
            .filter(|c| c.ok() && c.method == "sendMessage" && c.int("chat_id") == Some(g.id.0))
            .filter(|c| {
                c.params
                    .get("reply_markup")
                    .is_some_and(|m| m.to_string().contains("j:"))
            })
            // When each went up: a delayed post appears when it is answered. The calls are
            // in the order they were answered, which is the order of their message ids.
            .map(|c| c.answered)
            .collect();
        let mut ids = warnings.get(&g.id.0).cloned().unwrap_or_default();
        ids.sort_unstable();
        let shown: Vec<(Duration, Option<Duration>)> = posts
            .iter()
            .zip(ids.iter())
            .map(|(&at, &id)| {
                let gone = deleted
                    .get(&(g.id.0, id))
                    .and_then(|t| t.iter().min().copied());
                (at, gone)
            })
            .collect();
        for (i, &(at, _)) in shown.iter().enumerate() {
            let overlaps = shown[..i]
                .iter()
                .any(|&(earlier, gone)| at < earlier + cooldown && gone.is_none_or(|d| d > at));
            twice_warnings += usize::from(overlaps);
            if overlaps {
                twice_warnings_at.push((rel(at), g.id.0));
            }
        }
    }
    let twice = twice_deletes + twice_mutes + twice_answers + twice_replies + twice_warnings;

    // ---- muted who should not be ----
    let mut innocent: HashSet<(i64, i64)> = HashSet::new();
    for g in &soak.groups {
        for u in g.members.iter().chain(g.left.iter()) {
            innocent.insert((g.id.0, u.0));
        }
    }
    let innocent_mutes: usize = muted
        .iter()
        .filter(|(k, _)| innocent.contains(k))
        .map(|(_, t)| t.len())
        .sum();
    let member_deletes = rec
        .member_posts
        .iter()
        .filter(|(g, _, m, _)| deleted.contains_key(&(soak.groups[*g].id.0, m.0)))
        .count();
    let mut muted_at_end = 0;
    for (g, grp) in soak.groups.iter().enumerate() {
        for &u in &grp.members {
            if !soak.sim.can_post(grp.id, u) {
                muted_at_end += 1;
                let _ = g;
            }
        }
    }
    let wrongly = innocent_mutes + member_deletes + muted_at_end + acted_unprotected;

    // ---- budgets ----
    let message_methods = [
        "sendMessage",
        "editMessageText",
        "createChatInviteLink",
        "exportChatInviteLink",
    ];
    let mut global: Vec<Duration> = calls
        .iter()
        .filter(|c| message_methods.contains(&c.method.as_str()))
        .map(|c| c.at)
        .collect();
    let (global_max, global_at) = max_in_window(&mut global, Duration::from_secs(1));
    let tight_calls = {
        let mut msg_calls: Vec<&RecordedCall> = calls
            .iter()
            .filter(|c| message_methods.contains(&c.method.as_str()))
            .collect();
        msg_calls.sort_by_key(|c| c.at);
        let k = cfg.messages_per_second as usize;
        (k..msg_calls.len())
            .min_by_key(|&i| msg_calls[i].at - msg_calls[i - k].at)
            .map(|i| {
                msg_calls[i - k..=i]
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {} {:.3}s {}",
                            c.method,
                            c.int("chat_id").unwrap_or(0),
                            c.at.as_secs_f64(),
                            c.status
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let (global_over, global_span) = windows_over(
        &global,
        Duration::from_secs(1),
        JITTER,
        cfg.messages_per_second as usize,
    );
    let mut per_group: HashMap<i64, Vec<Duration>> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.method == "sendMessage" || c.method == "editMessageText")
    {
        if let Some(chat) = c.int("chat_id").filter(|&c| c < 0) {
            per_group.entry(chat).or_default().push(c.at);
        }
    }
    let mut group_max = 0;
    let mut group_over = 0;
    let mut groups_over = 0;
    for times in per_group.values_mut() {
        let (m, _) = max_in_window(times, Duration::from_secs(60));
        group_max = group_max.max(m);
        let (o, _) = windows_over(
            times,
            Duration::from_secs(60),
            JITTER,
            cfg.group_messages_per_minute as usize,
        );
        group_over += o;
        groups_over += usize::from(o > 0);
    }

    // ---- report ----
    let wl = rec.workload.1.saturating_sub(rec.workload.0);
    let enforced_msgs = rec
        .violations
        .iter()
        .filter(|v| v.enforced && v.message.is_some())
        .count();
    let joins_unsub = rec
        .violations
        .iter()
        .filter(|v| v.message.is_none())
        .count();
    let _ = writeln!(
        r,
        "soak: {} instance(s), {:.0} s of workload at {} events/s over {} groups ({} hot, {} cycled), faults {}",
        cfg.instances,
        wl.as_secs_f64(),
        cfg.rate,
        soak.groups.len(),
        soak.groups.iter().filter(|g| g.hot).count(),
        soak.groups.iter().filter(|g| g.cycled).count(),
        if cfg.faults { "on" } else { "off" },
    );
    let _ = writeln!(
        r,
        "  budgets given to every instance: {} messages/s, {} messages/min/group, {} restrictions/s, {} deletions/s",
        cfg.messages_per_second, cfg.group_messages_per_minute, cfg.actions_per_second, cfg.actions_per_second
    );
    let _ = writeln!(
        r,
        "  startup until every instance was ready: {:.1} s; settle after the workload: {:.1} s",
        rec.startup.as_secs_f64(),
        rec.settled_at.saturating_sub(rec.workload.1).as_secs_f64()
    );
    let _ = writeln!(
        r,
        "  events: {} member messages, {} edits, {} non-subscriber messages ({} while enforcing), {} non-subscriber joins, {} subscribed joins, {} leaves, {} subscriptions after a mute, {} \"I've joined\" presses, {} commands, {} skipped",
        rec.member_posts.len(),
        rec.edits,
        rec.violations.iter().filter(|v| v.message.is_some()).count(),
        enforced_msgs,
        joins_unsub,
        rec.subscribed_joins.len(),
        rec.leaves,
        rec.subscriptions.len(),
        rec.presses.len(),
        rec.commands.len(),
        rec.skipped,
    );
    let deliveries = soak.sim.deliveries();
    if let Some(b) = &rec.balancer {
        let _ = writeln!(
            r,
            "  connections: peak {} open at once (balancer), peak {} ESTABLISHED (kernel, sampled every 0.5 s); peak {} requests in flight; {} delivery attempts",
            b.peak_open_connections,
            rec.peak_established,
            b.peak_in_flight,
            deliveries.len(),
        );
        for (i, t) in b.targets.iter().enumerate() {
            let _ = writeln!(
                r,
                "    instance {i} ({}): {} delivered (2xx), {} failed attempts",
                t.addr, t.delivered, t.failed
            );
        }
    }
    let _ = writeln!(
        r,
        "  Telegram calls: {} in all; {} message calls (max {} in one second at {:.1} s); sends+edits into one group: max {} in 60 s",
        calls.len(),
        global.len(),
        global_max,
        global_at.as_secs_f64(),
        group_max
    );

    // Decision latency of non-subscribers' messages: post → first deletion.
    let delete_latency = |from: Duration, until: Duration| {
        let mut l: Vec<Duration> = rec
            .violations
            .iter()
            .filter(|v| v.enforced && v.at >= from && v.at < until)
            .filter_map(|v| {
                let m = v.message?;
                let t = deleted.get(&(soak.groups[v.group].id.0, m.0))?;
                t.iter().min().map(|d| d.saturating_sub(v.at))
            })
            .collect();
        let n = rec
            .violations
            .iter()
            .filter(|v| v.enforced && v.message.is_some() && v.at >= from && v.at < until)
            .count();
        l.sort();
        (l, n)
    };
    let first_fault = rec.faults.first().map_or(rec.workload.1, |f| f.from);
    let (before, n_before) = delete_latency(rec.workload.0, first_fault);
    let _ = writeln!(
        r,
        "  non-subscriber message → deleted, before the first fault: n={}/{} p50 {:.0} ms, p99 {:.0} ms",
        before.len(),
        n_before,
        ms(pct(&before, 0.5)),
        ms(pct(&before, 0.99))
    );
    for f in &rec.faults {
        let (during, n_during) = delete_latency(f.from, f.until);
        // First correct decision after the fault ended: the first deletion of a message
        // posted after the end.
        let first_after = rec
            .violations
            .iter()
            .filter(|v| v.enforced && v.at >= f.until)
            .filter_map(|v| {
                let t = deleted.get(&(soak.groups[v.group].id.0, v.message?.0))?;
                t.iter().min().copied()
            })
            .min();
        let mut line = format!(
            "  fault {:<20} {:>6.1} s → {:>6.1} s: messages posted during it deleted {}/{} (p50 {:.0} ms, p99 {:.0} ms); first correct decision {}",
            f.name,
            f.from.saturating_sub(rec.workload.0).as_secs_f64(),
            f.until.saturating_sub(rec.workload.0).as_secs_f64(),
            during.len(),
            n_during,
            ms(pct(&during, 0.5)),
            ms(pct(&during, 0.99)),
            first_after.map_or("never".to_owned(), |t| format!(
                "{:.2} s after it ended",
                t.saturating_sub(f.until).as_secs_f64()
            )),
        );
        let taken = deliveries
            .iter()
            .filter(|d| d.ok() && d.at >= f.from && d.at < f.until)
            .count();
        let _ = write!(line, "; {taken} updates taken by the instances during it");
        if f.name == "instance SIGKILL" {
            let victim = cfg.instances - 1;
            let back = deliveries
                .iter()
                .filter(|d| d.target == victim && d.ok() && d.at >= f.until)
                .map(|d| d.at)
                .min();
            let refused = deliveries
                .iter()
                .filter(|d| d.target == victim && !d.ok() && d.at >= f.from)
                .count();
            let _ = write!(
                line,
                "; restarted instance took its first update {} after the restart; {} attempts on it failed and went elsewhere",
                back.map_or("never".to_owned(), |t| format!(
                    "{:.2} s",
                    t.saturating_sub(f.until).as_secs_f64()
                )),
                refused
            );
        }
        let _ = writeln!(r, "{line}");
    }
    if !rec.metrics_before_redis.is_empty() && !rec.metrics_redis_down.is_empty() {
        for kind in ["message", "edited_message"] {
            let before = sum_buckets(&rec.metrics_before_redis, kind);
            let down = sum_buckets(&rec.metrics_redis_down, kind);
            let delta: Vec<(f64, f64)> = down
                .iter()
                .zip(before.iter().chain(std::iter::repeat(&(0.0, 0.0))))
                .map(|(d, b)| (d.0, d.1 - b.1))
                .collect();
            let (p99_before, n_b) = quantile(&before, 0.99);
            let (p99_down, n_d) = quantile(&delta, 0.99);
            let _ = writeln!(
                r,
                "  handling latency of `{kind}` updates (bot's histogram, all instances): p99 {p99_before} before Redis was killed (n={n_b}), p99 {p99_down} while it was down (n={n_d})"
            );
        }
    }
    // What the instances counted (since their last start): shed outbox work, handler errors,
    // refused webhook requests, journal events, Telegram calls given up.
    let mut counters: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for text in &rec.metrics_end {
        for line in text.lines() {
            let interesting = [
                "gmbot_outbox_shed_total",
                "gmbot_errors_total",
                "gmbot_webhook_rejections_total",
                "gmbot_update_journal_total",
                "gmbot_enforcement_actions_total",
            ]
            .iter()
            .any(|n| line.starts_with(n));
            if !interesting || line.contains("outcome=\"ok\"") {
                continue;
            }
            if let Some((name, value)) = line.rsplit_once(' ') {
                let v: f64 = value.parse().unwrap_or(0.0);
                if v > 0.0 {
                    *counters.entry(name.to_owned()).or_default() += v;
                }
            }
        }
    }
    if !counters.is_empty() {
        let _ = writeln!(
            r,
            "  instances' counters at the end (since each one's last start): {}",
            counters
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        r,
        "  instances exited cleanly on SIGTERM at the end: {:?}; died during the run: {}",
        rec.clean_exits,
        rec.crashes.len()
    );
    for c in &rec.crashes {
        let _ = writeln!(r, "    log tail of a dead instance:\n{c}");
    }

    let invariants = vec![
        Invariant {
            name: "updates lost",
            count: lost,
            detail: format!(
                "{lost_deletes} non-subscriber messages not deleted, {lost_mutes} non-subscribers never muted, {lost_unmutes} subscribed after a mute but still muted, {lost_answers} presses unanswered, {lost_replies} commands unanswered, {undelivered} updates never delivered"
            ),
        },
        Invariant {
            name: "updates applied twice",
            count: twice,
            detail: format!(
                "{twice_deletes} repeated deletions, {twice_mutes} repeated mutes, {twice_answers} repeated callback answers, {twice_replies} repeated command replies, {twice_warnings} warnings posted while another was shown in the group"
            ),
        },
        Invariant {
            name: "members muted who should not be",
            count: wrongly,
            detail: format!(
                "{innocent_mutes} mutes of subscribed members, {member_deletes} members' messages deleted, {muted_at_end} subscribed members unable to write at the end, {acted_unprotected} non-subscribers acted on while their group was unprotected"
            ),
        },
        Invariant {
            name: "non-subscribers left unmuted",
            count: left_unmuted,
            detail: format!(
                "{left_unmuted} non-subscribers who wrote or joined while the group enforced can still write at the end"
            ),
        },
        Invariant {
            name: "global message budget exceeded (any 1 s window)",
            count: global_over,
            detail: format!(
                "{global_over} runs of {} message calls within {} ms; the most in one second was {global_max}, the tightest {} calls spanned {}",
                cfg.messages_per_second + 1,
                (Duration::from_secs(1) - JITTER).as_millis(),
                cfg.messages_per_second + 1,
                global_span.map_or("n/a".to_owned(), |s| format!("{} ms", s.as_millis()))
            ),
        },
        Invariant {
            name: "per-group message budget exceeded (any 60 s window)",
            count: group_over,
            detail: format!(
                "{group_over} runs of {} sends and edits into one group within 60 s, in {groups_over} groups; the most in 60 s was {group_max}",
                cfg.group_messages_per_minute + 1
            ),
        },
    ];
    let _ = writeln!(r, "  tightest run of message calls: {tight_calls}");
    if !lost_at.is_empty() {
        // Each lost effect by the period its event fell in: a fault's window (from 5 s before
        // it to 30 s after it ended, when the backlog it left is worked off) or none.
        let mut by: std::collections::BTreeMap<(String, &'static str), usize> =
            std::collections::BTreeMap::new();
        let protected_again: Vec<Duration> =
            rec.cycles.iter().filter_map(|c| c.on_confirmed).collect();
        for (at, what) in &lost_at {
            let period = rec
                .faults
                .iter()
                .find(|f| {
                    *at + Duration::from_secs(5) >= f.from
                        && *at <= f.until + Duration::from_secs(30)
                })
                .map(|f| f.name.to_owned())
                .or_else(|| {
                    protected_again
                        .iter()
                        .any(|&on| *at >= on && *at < on + Duration::from_secs(60))
                        .then(|| "within 60 s of a /protect".to_owned())
                })
                .unwrap_or_else(|| "no fault".to_owned());
            *by.entry((period, what)).or_default() += 1;
        }
        let _ = writeln!(
            r,
            "  lost effects by period: {}",
            by.iter()
                .map(|((p, w), n)| format!("{p}: {n} {w}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if !lost_who.is_empty() {
        lost_who.sort();
        lost_who.truncate(30);
        let _ = writeln!(
            r,
            "  lost effects (first 30, time of the event): {}",
            lost_who
                .iter()
                .map(|(at, what)| format!("{:.1} s {what}", rel(*at)))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if !twice_warnings_at.is_empty() {
        twice_warnings_at.sort_by(|a, b| a.0.total_cmp(&b.0));
        twice_warnings_at.truncate(30);
        let _ = writeln!(
            r,
            "  warnings posted while another was shown (first 30): {}",
            twice_warnings_at
                .iter()
                .map(|(at, g)| format!("{at:.1} s in {g}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if !twice_at.is_empty() {
        twice_at.sort();
        twice_at.truncate(20);
        let _ = writeln!(r, "  repeated mutes (first 20): {}", twice_at.join("; "));
    }
    for i in &invariants {
        let _ = writeln!(
            r,
            "  invariant {:<50} {}",
            i.name,
            if i.count == 0 {
                "holds".to_owned()
            } else {
                format!("BROKEN {} times: {}", i.count, i.detail)
            }
        );
    }
    Verdict {
        invariants,
        report: r,
    }
}
