//! The soak's world, workload and schedule: protected groups with linked channels and
//! subscribed members, then for the run's length a paced mix of events — members writing and
//! editing, non-subscribers writing, joins and leaves, non-subscribers subscribing and pressing
//! "I've joined", `/status` and `/settings`, `/unprotect` then `/protect` — while the faults
//! happen at their scheduled times. Every event is recorded with what it should lead to; the
//! [`verdict`](super::verdict) checks it at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmbot_bot::sim::SimulatorOptions;
use gmbot_bot::sim::{AdminRights, BalancerOptions, Fault, FaultKind, MemberState, Simulator};
use gmbot_core::domain::{
    ChannelId, ChannelRef, EnforcedChannel, GroupId, MessageId, ProtectRequest, UnixTime, UserId,
};
use gmbot_core::store::{self, DatabaseUrl, MigrationMode};

use super::services::{established_to, http_get, Instance, PrivatePostgres, PrivateRedis};
use super::SoakConfig;

/// The webhook secret every instance shares.
pub(crate) const SECRET: &str = "soak_secret_0123456789";

/// A small deterministic generator (xorshift64*), so every run replays the same workload.
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n` ≥ 1).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One protected group of the world.
pub(crate) struct Group {
    /// The group.
    pub(crate) id: GroupId,
    /// Its linked channel.
    pub(crate) channel: ChannelId,
    /// The channel's @username.
    pub(crate) channel_name: String,
    /// Subscribed members in the group now.
    pub(crate) members: Vec<UserId>,
    /// Members who left (subscribed, never to be muted).
    pub(crate) left: Vec<UserId>,
    /// Non-subscribers who were in the group before it was protected, not yet used.
    pub(crate) outsiders: Vec<UserId>,
    /// Recent messages of members (for edits).
    pub(crate) recent: Vec<(UserId, MessageId)>,
    /// Gets a larger share of the non-subscribers (the per-group budget binds there).
    pub(crate) hot: bool,
    /// `/unprotect` then `/protect` is run here.
    pub(crate) cycled: bool,
}

/// When a non-subscriber's message or join was made, and whether the group was enforcing.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    /// Index of the group.
    pub(crate) group: usize,
    /// Who.
    pub(crate) user: UserId,
    /// Their message (`None` for a join).
    pub(crate) message: Option<MessageId>,
    /// Simulator time of the event.
    pub(crate) at: Duration,
    /// The group was protected (and the bot told so) at the time.
    pub(crate) enforced: bool,
}

/// A non-subscriber who subscribed to the channel after being muted.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// Index of the group.
    pub(crate) group: usize,
    /// Who.
    pub(crate) user: UserId,
    /// Simulator time.
    pub(crate) at: Duration,
}

/// An "I've joined" press.
#[derive(Debug, Clone)]
pub(crate) struct Press {
    /// Index of the group.
    pub(crate) group: usize,
    /// Who pressed.
    pub(crate) user: UserId,
    /// The callback query's id.
    pub(crate) id: String,
    /// Simulator time.
    pub(crate) at: Duration,
}

/// An admin command.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// Index of the group.
    pub(crate) group: usize,
    /// The command's message.
    pub(crate) message: MessageId,
    /// Its text.
    pub(crate) text: String,
    /// Simulator time.
    pub(crate) at: Duration,
}

/// An `/unprotect` … `/protect` cycle of one group, in simulator time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cycle {
    /// Index of the group.
    pub(crate) group: usize,
    /// `/unprotect` sent.
    pub(crate) off_sent: Option<Duration>,
    /// Its confirmation seen in the group.
    pub(crate) off_confirmed: Option<Duration>,
    /// `/protect` sent.
    pub(crate) on_sent: Option<Duration>,
    /// Its confirmation seen.
    pub(crate) on_confirmed: Option<Duration>,
}

/// A fault and when it was in effect, in simulator time.
#[derive(Debug, Clone)]
pub(crate) struct FaultWindow {
    /// What.
    pub(crate) name: &'static str,
    /// Started.
    pub(crate) from: Duration,
    /// Ended (the dependency back, the faults cleared, the instance restarted).
    pub(crate) until: Duration,
}

/// Everything the run did, for the verdict.
#[derive(Default)]
pub(crate) struct Record {
    /// Non-subscribers' messages and joins.
    pub(crate) violations: Vec<Violation>,
    /// Subscribed members' messages (group index, message).
    pub(crate) member_posts: Vec<(usize, UserId, MessageId, Duration)>,
    /// Members' edits.
    pub(crate) edits: usize,
    /// Subscribed users who joined a group.
    pub(crate) subscribed_joins: Vec<(usize, UserId)>,
    /// Members who left their group.
    pub(crate) leaves: usize,
    /// Non-subscribers who subscribed.
    pub(crate) subscriptions: Vec<Subscription>,
    /// "I've joined" presses.
    pub(crate) presses: Vec<Press>,
    /// `/status` and `/settings`.
    pub(crate) commands: Vec<Command>,
    /// `/unprotect` … `/protect`.
    pub(crate) cycles: Vec<Cycle>,
    /// Faults.
    pub(crate) faults: Vec<FaultWindow>,
    /// Events that could not be made (the simulator refused, e.g. nobody left to pick).
    pub(crate) skipped: usize,
    /// Peak ESTABLISHED connections to the instances (kernel count), and when.
    pub(crate) peak_established: usize,
    /// Balancer's own counters at the end.
    pub(crate) balancer: Option<gmbot_bot::sim::BalancerStats>,
    /// `/metrics` of every instance just before Redis was killed and just before it came back.
    pub(crate) metrics_before_redis: Vec<String>,
    /// See [`Self::metrics_before_redis`].
    pub(crate) metrics_redis_down: Vec<String>,
    /// How long the instances took to start (first one ready).
    pub(crate) startup: Duration,
    /// When the workload started and ended (simulator time).
    pub(crate) workload: (Duration, Duration),
    /// When the settle period ended.
    pub(crate) settled_at: Duration,
    /// `/metrics` of every instance at the end, before SIGTERM (counters of the last start of
    /// each).
    pub(crate) metrics_end: Vec<String>,
    /// Per instance: exited by itself at the end (SIGTERM).
    pub(crate) clean_exits: Vec<bool>,
    /// Log tails of instances that died unexpectedly.
    pub(crate) crashes: Vec<String>,
}

/// The world, the services and the instances of one run.
pub(crate) struct Soak {
    /// The configuration.
    pub(crate) cfg: SoakConfig,
    /// The simulated Telegram.
    pub(crate) sim: Arc<Simulator>,
    /// The groups.
    pub(crate) groups: Vec<Group>,
    /// Owner of every group and channel.
    pub(crate) owner: UserId,
    /// The instances.
    pub(crate) instances: Vec<Instance>,
    /// Private servers (dropped last).
    pub(crate) redis: PrivateRedis,
    /// See [`Self::redis`].
    pub(crate) postgres: PrivatePostgres,
    /// Logs directory.
    pub(crate) logs: tempfile::TempDir,
    /// What happened.
    pub(crate) record: Record,
    rng: Rng,
    /// Per (group index, user): the warning message's button data was pressed already.
    pressed: HashMap<(usize, i64), ()>,
}

fn budgets(cfg: &SoakConfig) -> Vec<(String, String)> {
    vec![
        (
            "GMBOT_MESSAGES_PER_SECOND".into(),
            cfg.messages_per_second.to_string(),
        ),
        (
            "GMBOT_GROUP_MESSAGES_PER_MINUTE".into(),
            cfg.group_messages_per_minute.to_string(),
        ),
        (
            "GMBOT_ACTIONS_PER_SECOND".into(),
            cfg.actions_per_second.to_string(),
        ),
        (
            "GMBOT_DELETES_PER_SECOND".into(),
            cfg.actions_per_second.to_string(),
        ),
    ]
}

impl Soak {
    /// Starts the services and the simulator, builds the world, migrates and protects, and
    /// starts the instances behind the balancer; returns once every instance is ready.
    pub(crate) async fn start(cfg: SoakConfig) -> Self {
        let redis = PrivateRedis::start();
        let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
            .await
            .expect("postgres thread");
        let sim = Arc::new(
            Simulator::start_with(SimulatorOptions {
                // Delayed answers (the timeout fault) hold a worker each.
                workers: 96,
                ..SimulatorOptions::default()
            })
            .expect("simulator starts"),
        );
        let owner = sim.add_user("Owner");
        let mut rng = Rng::new(0x5eed_50a4);
        let mut groups = Vec::new();
        let outsiders_per_group =
            ((cfg.rate as u64 * cfg.duration.as_secs()) / cfg.groups as u64 / 4).max(10) as usize;
        for g in 0..cfg.groups {
            let id = sim
                .create_supergroup(&format!("Soak group {g}"), owner)
                .expect("group");
            let channel_name = format!("soak_news_{g}");
            let channel = sim
                .create_channel(&format!("Soak news {g}"), Some(&channel_name), owner)
                .expect("channel");
            sim.add_bot(id, owner, Some(AdminRights::moderator()))
                .expect("bot in group");
            sim.add_bot(channel, owner, Some(AdminRights::full()))
                .expect("bot in channel");
            let members = (0..cfg.members_per_group)
                .map(|i| {
                    let u = sim.add_user(&format!("Member {g}/{i}"));
                    sim.join(channel, u).expect("subscribes");
                    sim.join(id, u).expect("joins");
                    u
                })
                .collect();
            let outsiders = (0..outsiders_per_group)
                .map(|i| {
                    let u = sim.add_user(&format!("Outsider {g}/{i}"));
                    sim.join(id, u).expect("joins");
                    u
                })
                .collect();
            groups.push(Group {
                id,
                channel,
                channel_name,
                members,
                left: Vec::new(),
                outsiders,
                recent: Vec::new(),
                hot: g % 10 == 1,
                cycled: g % 10 == 2,
            });
        }
        // Everyone above was in place before the bot ran: their updates are not the run's.
        sim.discard_pending_updates();
        let _ = rng.next();

        // The schema, as an operator deploys it: migrated once, before the instances start
        // (the library's migrate, which `gmbot migrate` runs), then the protections.
        let url: DatabaseUrl = postgres.url().parse().expect("database URL");
        let store = store::open(&url, MigrationMode::Apply)
            .await
            .expect("the private PostgreSQL migrates");
        for g in &groups {
            let channel: ChannelRef = format!("{}", g.channel.0).parse().expect("channel id");
            store
                .protect(
                    &ProtectRequest {
                        group: g.id,
                        title: None,
                        owner: Some(owner),
                        channels: vec![EnforcedChannel::from_ref(channel)],
                    },
                    UnixTime::now(),
                )
                .await
                .expect("protect");
        }
        drop(store);

        // GMBOT_SOAK_KEEP_LOGS=1 keeps the instances' logs (the path is printed);
        // GMBOT_SOAK_LOG sets their RUST_LOG (default `warn`).
        let keep_logs = std::env::var_os("GMBOT_SOAK_KEEP_LOGS").is_some();
        let logs = tempfile::Builder::new()
            .prefix("gmbot-soak-logs")
            .disable_cleanup(keep_logs)
            .tempdir()
            .expect("logs directory");
        if keep_logs {
            println!("soak: instance logs kept in {}", logs.path().display());
        }
        let hook_port = super::services::free_port();
        let mut env: Vec<(String, String)> = vec![
            ("TELEGRAM_BOT_TOKEN".into(), sim.token().to_owned()),
            ("TELEGRAM_API_URL".into(), sim.base_url()),
            ("DATABASE_URL".into(), postgres.url()),
            ("REDIS_URL".into(), redis.url()),
            // The balancer's address as Telegram knows it; the simulator delivers to the
            // instances themselves.
            (
                "WEBHOOK_URL".into(),
                format!("http://127.0.0.1:{hook_port}/tg/hook"),
            ),
            ("WEBHOOK_SECRET".into(), SECRET.into()),
            (
                "RUST_LOG".into(),
                std::env::var("GMBOT_SOAK_LOG").unwrap_or_else(|_| "warn".into()),
            ),
            // Raid mode (consolidated handling past N denials a minute) is not what this
            // run is about: the hot groups would trip it.
            ("GMBOT_RAID_DENIALS".into(), "1000000".into()),
        ];
        env.extend(budgets(&cfg));
        let mut instances: Vec<Instance> = (0..cfg.instances)
            .map(|i| {
                Instance::new(
                    &cfg.bin,
                    env.clone(),
                    logs.path().join(format!("instance-{i}.log")),
                )
            })
            .collect();
        let addrs: Vec<_> = instances.iter().map(Instance::addr).collect();
        // The balancer first: its connections open as each instance starts answering.
        sim.deliver_through_balancer(BalancerOptions {
            targets: addrs.clone(),
            connections_per_target: cfg.connections.div_ceil(cfg.instances),
            ..BalancerOptions::default()
        })
        .expect("balancer");
        let started = Instant::now();
        for inst in &mut instances {
            inst.start();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = addrs
                .iter()
                .filter(|a| http_get(**a, "/ready").is_some_and(|(s, _)| s == 200))
                .count();
            if ready == addrs.len() && sim.webhook_url().is_some() {
                break;
            }
            for inst in &mut instances {
                assert!(
                    inst.running(),
                    "a bot instance exited at start:\n{}",
                    inst.log_tail(30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the instances did not become ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let startup = started.elapsed();
        sim.set_recording(true);
        Soak {
            cfg,
            sim,
            groups,
            owner,
            instances,
            redis,
            postgres,
            logs,
            record: Record {
                startup,
                ..Record::default()
            },
            rng,
            pressed: HashMap::new(),
        }
    }

    fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Whether group `g` enforces now, from what the bot confirmed; `None` while a command
    /// to change it is on its way (nothing is posted by non-subscribers then).
    fn enforcing(&self, g: usize) -> Option<bool> {
        let now = self.now();
        let margin = Duration::from_secs(1);
        for c in self.record.cycles.iter().filter(|c| c.group == g) {
            let Some(_) = c.off_sent else { continue };
            match (c.off_confirmed, c.on_sent, c.on_confirmed) {
                (None, _, _) => return None,
                (Some(off), None, _) => return (now >= off + margin).then_some(false),
                (Some(_), Some(_), None) => return None,
                (Some(_), Some(_), Some(on)) => {
                    if now < on + margin {
                        return None;
                    }
                }
            }
        }
        Some(true)
    }

    fn pick_group(&mut self, hot_share: bool) -> usize {
        if hot_share && self.rng.below(3) == 0 {
            let hot: Vec<usize> = (0..self.groups.len())
                .filter(|&g| self.groups[g].hot)
                .collect();
            if !hot.is_empty() {
                return hot[self.rng.below(hot.len())];
            }
        }
        self.rng.below(self.groups.len())
    }

    /// One workload event, chosen by weight.
    fn event(&mut self) {
        let roll = self.rng.below(100);
        let ok = match roll {
            0..=47 => self.member_post(),
            48..=55 => self.member_edit(),
            56..=71 => self.outsider_post(),
            72..=78 => self.join(),
            79..=81 => self.leave(),
            _ => self.subscribe(),
        };
        if !ok {
            self.record.skipped += 1;
        }
    }

    fn member_post(&mut self) -> bool {
        let g = self.pick_group(false);
        let grp = &self.groups[g];
        if grp.members.is_empty() {
            return false;
        }
        let u = grp.members[self.rng.below(grp.members.len())];
        let Ok(m) = self.sim.post(grp.id, u, "hello from a member") else {
            return false;
        };
        let at = self.now();
        self.record.member_posts.push((g, u, m, at));
        let recent = &mut self.groups[g].recent;
        recent.push((u, m));
        if recent.len() > 32 {
            recent.remove(0);
        }
        true
    }

    fn member_edit(&mut self) -> bool {
        let g = self.pick_group(false);
        let grp = &self.groups[g];
        if grp.recent.is_empty() {
            return false;
        }
        let (u, m) = grp.recent[self.rng.below(grp.recent.len())];
        if !grp.members.contains(&u) {
            return false;
        }
        let ok = self
            .sim
            .edit_message(grp.id, m, u, "hello from a member (edited)")
            .is_ok();
        self.record.edits += usize::from(ok);
        ok
    }

    fn outsider_post(&mut self) -> bool {
        let g = self.pick_group(true);
        let Some(enforced) = self.enforcing(g) else {
            return false;
        };
        let Some(u) = self.groups[g].outsiders.pop() else {
            return false;
        };
        let Ok(m) = self.sim.post(self.groups[g].id, u, "hello from outside") else {
            return false;
        };
        let at = self.now();
        self.record.violations.push(Violation {
            group: g,
            user: u,
            message: Some(m),
            at,
            enforced,
        });
        true
    }

    fn join(&mut self) -> bool {
        let g = self.pick_group(false);
        let Some(enforced) = self.enforcing(g) else {
            return false;
        };
        let subscribed = self.rng.below(2) == 0;
        let (id, channel) = (self.groups[g].id, self.groups[g].channel);
        let u = self
            .sim
            .add_user(&format!("Joiner {}", self.rng.next() % 1_000_000));
        if subscribed {
            if self.sim.join(channel, u).is_err() || self.sim.join(id, u).is_err() {
                return false;
            }
            self.groups[g].members.push(u);
            self.record.subscribed_joins.push((g, u));
        } else {
            if self.sim.join(id, u).is_err() {
                return false;
            }
            let at = self.now();
            self.record.violations.push(Violation {
                group: g,
                user: u,
                message: None,
                at,
                enforced,
            });
        }
        true
    }

    fn leave(&mut self) -> bool {
        let g = self.pick_group(false);
        let grp = &mut self.groups[g];
        if grp.members.len() <= 5 {
            return false;
        }
        let i = self.rng.below(grp.members.len());
        let u = grp.members.swap_remove(i);
        grp.left.push(u);
        let ok = self.sim.leave(grp.id, u).is_ok();
        self.record.leaves += usize::from(ok);
        ok
    }

    /// A muted non-subscriber subscribes; every other one also presses "I've joined".
    fn subscribe(&mut self) -> bool {
        // Someone the bot has muted (seen in Telegram's state), not yet subscribed.
        let subscribed: std::collections::HashSet<(usize, i64)> = self
            .record
            .subscriptions
            .iter()
            .map(|s| (s.group, s.user.0))
            .collect();
        let n = self.record.violations.len();
        if n == 0 {
            return false;
        }
        for _ in 0..8 {
            let v = self.record.violations[n - 1 - self.rng.below(n.min(400))].clone();
            if !v.enforced || subscribed.contains(&(v.group, v.user.0)) {
                continue;
            }
            let grp = &self.groups[v.group];
            let muted = matches!(
                self.sim.member(grp.id, v.user),
                MemberState::Restricted { is_member: true, permissions, .. } if !permissions.can_send_messages
            );
            if !muted {
                continue;
            }
            if self.sim.join(grp.channel, v.user).is_err() {
                return false;
            }
            let at = self.now();
            self.record.subscriptions.push(Subscription {
                group: v.group,
                user: v.user,
                at,
            });
            if self.rng.below(2) == 0 {
                self.press(v.group, v.user);
            }
            return true;
        }
        false
    }

    fn press(&mut self, g: usize, user: UserId) {
        let id = self.groups[g].id;
        let mine = format!("j:{}", user.0);
        let warning = self
            .sim
            .visible_messages(id)
            .into_iter()
            .rev()
            .find_map(|m| {
                m.buttons
                    .iter()
                    .flatten()
                    .filter_map(|b| b.callback_data.clone())
                    .find(|d| *d == mine || d == "j:any")
                    .map(|d| (m.id, d))
            });
        let Some((message, data)) = warning else {
            return;
        };
        if self.pressed.insert((g, user.0), ()).is_some() {
            return;
        }
        if let Ok(cb) = self.sim.press_button(id, message, user, &data) {
            let at = self.now();
            self.record.presses.push(Press {
                group: g,
                user,
                id: cb,
                at,
            });
        }
    }

    fn command(&mut self, text: &str) {
        let g = self.rng.below(self.groups.len());
        let id = self.groups[g].id;
        if let Ok(m) = self.sim.post(id, self.owner, text) {
            let at = self.now();
            self.record.commands.push(Command {
                group: g,
                message: m,
                text: text.to_owned(),
                at,
            });
        }
    }

    /// The bot's reply to `message` in `group`, if it came.
    fn replied(&self, g: usize, message: MessageId, containing: &str) -> bool {
        let bot = self.sim.bot().id;
        self.sim.messages(self.groups[g].id).iter().any(|m| {
            m.from == Some(bot) && m.reply_to == Some(message) && m.text.contains(containing)
        })
    }

    /// Advances the `/unprotect` … `/protect` cycles: `off_at`/`on_at` are run-relative times.
    fn cycles(&mut self, elapsed: Duration, off_at: Duration, on_at: Duration) {
        let cycled: Vec<usize> = (0..self.groups.len())
            .filter(|&g| self.groups[g].cycled)
            .collect();
        for g in cycled {
            let id = self.groups[g].id;
            let idx = match self.record.cycles.iter().position(|c| c.group == g) {
                Some(i) => i,
                None if elapsed >= off_at => {
                    let Ok(m) = self.sim.post(id, self.owner, "/unprotect") else {
                        continue;
                    };
                    let at = self.now();
                    self.record.cycles.push(Cycle {
                        group: g,
                        off_sent: Some(at),
                        ..Cycle::default()
                    });
                    self.record.commands.push(Command {
                        group: g,
                        message: m,
                        text: "/unprotect".into(),
                        at,
                    });
                    continue;
                }
                None => continue,
            };
            let c = self.record.cycles[idx].clone();
            if c.off_confirmed.is_none() {
                let cmd = self
                    .record
                    .commands
                    .iter()
                    .rev()
                    .find(|x| x.group == g && x.text == "/unprotect")
                    .map(|x| x.message);
                if cmd.is_some_and(|m| self.replied(g, m, "Protection is off")) {
                    self.record.cycles[idx].off_confirmed = Some(self.now());
                }
            } else if c.on_sent.is_none() && elapsed >= on_at {
                let text = format!("/protect @{}", self.groups[g].channel_name);
                if let Ok(m) = self.sim.post(id, self.owner, &text) {
                    let at = self.now();
                    self.record.cycles[idx].on_sent = Some(at);
                    self.record.commands.push(Command {
                        group: g,
                        message: m,
                        text,
                        at,
                    });
                }
            } else if c.on_sent.is_some() && c.on_confirmed.is_none() {
                let cmd = self
                    .record
                    .commands
                    .iter()
                    .rev()
                    .find(|x| x.group == g && x.text.starts_with("/protect"))
                    .map(|x| x.message);
                if cmd.is_some_and(|m| self.replied(g, m, "This group is protected")) {
                    self.record.cycles[idx].on_confirmed = Some(self.now());
                }
            }
        }
    }

    async fn metrics(&self) -> Vec<String> {
        let addrs: Vec<_> = self.instances.iter().map(Instance::addr).collect();
        tokio::task::spawn_blocking(move || {
            addrs
                .iter()
                .map(|a| http_get(*a, "/metrics").map(|(_, b)| b).unwrap_or_default())
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Runs the workload for the configured length with the faults at their times, then waits
    /// (at most `settle`) for the bot to finish, and stops the instances.
    pub(crate) async fn run(&mut self) {
        let d = self.cfg.duration.as_secs_f64();
        let at = |f: f64| Duration::from_secs_f64(d * f);
        // (start, end) of each fault, as fractions of the run.
        let plan = FaultPlan {
            redis: (at(0.10), at(0.22)),
            storm: (at(0.28), at(0.32)),
            postgres: (at(0.38), at(0.41)),
            server_errors: (at(0.46), at(0.49)),
            timeouts: (at(0.54), at(0.58)),
            kill: (at(0.64), at(0.68)),
        };
        let (off_at, on_at) = (at(0.72), at(0.80));
        let start = Instant::now();
        self.record.workload.0 = self.now();
        let spacing = Duration::from_secs_f64(1.0 / f64::from(self.cfg.rate));
        let mut n: u64 = 0;
        let mut next_command = Duration::from_secs(3);
        let mut next_sample = Duration::ZERO;
        let mut step = 0usize;
        let ports: Vec<u16> = self.instances.iter().map(|i| i.port).collect();
        let mut pending_fault: Option<tokio::task::JoinHandle<()>> = None;
        let mut restarted: Option<(usize, Duration)> = None;
        loop {
            let elapsed = start.elapsed();
            if elapsed >= self.cfg.duration {
                break;
            }
            // Faults, in order.
            if self.cfg.faults {
                self.faults(
                    &plan,
                    elapsed,
                    &mut step,
                    &mut pending_fault,
                    &mut restarted,
                )
                .await;
            }
            self.cycles(elapsed, off_at, on_at);
            if elapsed >= next_command {
                next_command += Duration::from_secs(4);
                let text = if self.rng.below(2) == 0 {
                    "/status"
                } else {
                    "/settings"
                };
                self.command(text);
            }
            if elapsed >= next_sample {
                next_sample += Duration::from_millis(500);
                let e = established_to(&ports);
                self.record.peak_established = self.record.peak_established.max(e);
            }
            let due = (elapsed.as_secs_f64() * f64::from(self.cfg.rate)) as u64;
            let mut burst = 0;
            while n < due && burst < 50 {
                self.event();
                n += 1;
                burst += 1;
            }
            tokio::time::sleep(spacing.min(Duration::from_millis(20))).await;
        }
        if let Some(h) = pending_fault.take() {
            let _ = h.await;
        }
        self.sim.clear_faults();
        self.record.workload.1 = self.now();
        // Settle: until every update is delivered and the effects the verdict checks are
        // present, or the settle time is over.
        let deadline = Instant::now() + self.cfg.settle;
        let mut quiet_since = Instant::now();
        let mut last_calls = self.sim.calls().len();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let calls = self.sim.calls().len();
            if calls != last_calls || self.sim.pending_updates() > 0 {
                last_calls = calls;
                quiet_since = Instant::now();
            }
            // Quiet for 5 s: nothing left in flight anywhere.
            if quiet_since.elapsed() >= Duration::from_secs(5) && super::verdict::effects_done(self)
            {
                break;
            }
        }
        self.record.settled_at = self.now();
        self.record.balancer = self.sim.balancer_stats();
        self.record.metrics_end = self.metrics().await;
        for inst in &mut self.instances {
            if !inst.running() {
                self.record.crashes.push(inst.log_tail(20));
            }
        }
        let mut exits = Vec::new();
        for inst in &mut self.instances {
            exits.push(tokio::task::block_in_place(|| {
                inst.terminate(Duration::from_secs(10))
            }));
        }
        self.record.clean_exits = exits;
    }

    async fn faults(
        &mut self,
        plan: &FaultPlan,
        elapsed: Duration,
        step: &mut usize,
        pending: &mut Option<tokio::task::JoinHandle<()>>,
        restarted: &mut Option<(usize, Duration)>,
    ) {
        let steps: [Duration; 12] = [
            plan.redis.0,
            plan.redis.1,
            plan.storm.0,
            plan.storm.1,
            plan.postgres.0,
            plan.postgres.1,
            plan.server_errors.0,
            plan.server_errors.1,
            plan.timeouts.0,
            plan.timeouts.1,
            plan.kill.0,
            plan.kill.1,
        ];
        if *step >= steps.len() || elapsed < steps[*step] {
            return;
        }
        let now = self.now();
        match *step {
            0 => {
                self.record.metrics_before_redis = self.metrics().await;
                tokio::task::block_in_place(|| self.redis.kill());
                self.open_fault("redis killed", now);
            }
            1 => {
                self.record.metrics_redis_down = self.metrics().await;
                tokio::task::block_in_place(|| self.redis.restart());
                self.close_fault(self.now());
            }
            2 => {
                self.sim
                    .inject(Fault::on_any(FaultKind::RetryAfter(1)).always());
                self.open_fault("telegram 429 storm", now);
            }
            4 => {
                self.sim.clear_faults();
                tokio::task::block_in_place(|| self.postgres.stop());
                self.open_fault("postgres restarted", self.now());
            }
            5 => {
                tokio::task::block_in_place(|| self.postgres.start_again());
                self.close_fault(self.now());
            }
            6 => {
                self.sim
                    .inject(Fault::on_any(FaultKind::ServerError(502)).always());
                self.open_fault("telegram 5xx", now);
            }
            8 => {
                self.sim.clear_faults();
                // Longer than the bot's request timeout (15 s): each such call times out.
                self.sim
                    .inject(Fault::on_any(FaultKind::Delay(Duration::from_secs(16))).times(40));
                self.open_fault("telegram timeouts", now);
            }
            10 => {
                self.sim.clear_faults();
                let victim = self.instances.len() - 1;
                tokio::task::block_in_place(|| self.instances[victim].kill());
                self.open_fault("instance SIGKILL", now);
                *restarted = Some((victim, now));
            }
            11 => {
                if let Some((victim, _)) = restarted.take() {
                    self.instances[victim].start();
                }
                self.close_fault(self.now());
            }
            // 3, 7, 9: the Telegram fault windows end.
            _ => {
                self.sim.clear_faults();
                self.close_fault(now);
            }
        }
        let _ = pending;
        *step += 1;
    }

    fn open_fault(&mut self, name: &'static str, from: Duration) {
        self.record.faults.push(FaultWindow {
            name,
            from,
            until: from,
        });
    }

    fn close_fault(&mut self, until: Duration) {
        if let Some(f) = self.record.faults.last_mut() {
            f.until = until;
        }
    }
}

/// What [`Soak::flood`] measured.
#[derive(Debug, Clone)]
pub(crate) struct Throughput {
    /// Instances.
    pub(crate) instances: usize,
    /// Workload events offered.
    pub(crate) events: usize,
    /// Updates the instances handled (sum of `gmbot_update_duration_seconds_count`).
    pub(crate) handled: f64,
    /// From the first event to the last handled update.
    pub(crate) elapsed: Duration,
    /// Handled updates per second.
    pub(crate) per_second: f64,
    /// CPU seconds used meanwhile by the instances together.
    pub(crate) instances_cpu: f64,
    /// CPU seconds used meanwhile by this process (simulated Telegram, balancer, load).
    pub(crate) harness_cpu: f64,
    /// The machine's busy share meanwhile (1.0 = every core busy).
    pub(crate) machine_busy: f64,
    /// The machine's cores.
    pub(crate) cores: f64,
}

fn handled(texts: &[String]) -> f64 {
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| l.starts_with("gmbot_update_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Soak {
    /// Offers `events` workload events at once (no pacing, no faults) and measures how fast
    /// the instances handle the updates they make: until every update is delivered and the
    /// handled count has not moved for 3 s.
    pub(crate) async fn flood(&mut self, events: usize) -> Throughput {
        let base = handled(&self.metrics().await);
        let cpu0: f64 = self.instances.iter().map(Instance::cpu_seconds).sum();
        let own0 = super::services::process_cpu_seconds("/proc/self/stat");
        let (busy0, total0) = super::services::machine_cpu_seconds();
        let start = Instant::now();
        for _ in 0..events {
            self.event();
        }
        let mut last = base;
        let mut last_change = Instant::now();
        // CPU counters when the handled count last moved (the quiet tail is not counted).
        let mut at_change = (cpu0, own0, (busy0, total0));
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = handled(&self.metrics().await);
            if now > last {
                last = now;
                last_change = Instant::now();
                at_change = (
                    self.instances
                        .iter()
                        .map(Instance::cpu_seconds)
                        .sum::<f64>(),
                    super::services::process_cpu_seconds("/proc/self/stat"),
                    super::services::machine_cpu_seconds(),
                );
            } else if self.sim.pending_updates() == 0
                && last_change.elapsed() >= Duration::from_secs(3)
            {
                break;
            }
        }
        let elapsed = last_change.duration_since(start);
        let n = last - base;
        let instances_cpu = at_change.0 - cpu0;
        let harness_cpu = at_change.1 - own0;
        let (busy1, total1) = at_change.2;
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        for inst in &mut self.instances {
            tokio::task::block_in_place(|| inst.terminate(Duration::from_secs(10)));
        }
        Throughput {
            instances: self.instances.len(),
            events,
            handled: n,
            elapsed,
            per_second: n / elapsed.as_secs_f64().max(1e-9),
            instances_cpu,
            harness_cpu,
            machine_busy: (busy1 - busy0) / (total1 - total0).max(1e-9),
            cores,
        }
    }
}

/// Start and end of each fault, relative to the workload's start.
struct FaultPlan {
    redis: (Duration, Duration),
    storm: (Duration, Duration),
    postgres: (Duration, Duration),
    server_errors: (Duration, Duration),
    timeouts: (Duration, Duration),
    kill: (Duration, Duration),
}
