//! `gmbot-bot demo`: the real bot, long polling a simulated Telegram on 127.0.0.1, with a
//! temporary SQLite database, through a scripted scenario — an admin protects a group, a
//! subscribed member writes, a non-subscriber writes and then joins the channel, another
//! joins and presses "I've joined". It prints what every actor did and what the bot did
//! (read from the simulator's call log), checks each outcome, and ends with a summary.
//!
//! Nothing is mocked but Telegram itself: the same [`Bot`](crate::run::Bot) the binary runs
//! (store, cache, dispatcher, engine, handlers, runtime, polling) talks HTTP to the simulator.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use gmbot_core::dispatch::DispatchConfig;
use gmbot_core::domain::{ChatId, GroupId, MessageId, UserId};

use crate::config::Config;
use crate::run::{Bot, RunOptions};
use crate::runtime::{RuntimeMonitor, Shutdown};
use crate::sim::{AdminRights, MemberState, RecordedCall, SimMessage, Simulator, SimulatorOptions};

/// How long the whole demo may take before it gives up.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// What a finished demo reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Each check and whether it held.
    pub checks: Vec<(String, bool)>,
    /// Bot API calls the bot made during the scenario (transport calls excluded).
    pub telegram_calls: usize,
    /// Updates the bot handled.
    pub updates: u64,
}

impl DemoSummary {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|(_, ok)| *ok)
    }
}

/// Entry point of `gmbot-bot demo`: 0 when every check held, 1 otherwise.
pub fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        // Quiet by default: the transcript is the output. RUST_LOG shows the bot's own log.
        let _ = crate::logging::init(crate::config::LogFormat::Text, Some(&filter));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gmbot-bot demo: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(run(&mut out, DEFAULT_DEADLINE)) {
        Ok(summary) if summary.passed() => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("gmbot-bot demo: some checks failed (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("gmbot-bot demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs the demo, writing the transcript to `out`; fails if it takes longer than `deadline`.
pub async fn run(out: &mut (dyn Write + Send), deadline: Duration) -> anyhow::Result<DemoSummary> {
    let step = Arc::new(Mutex::new(String::from("starting")));
    let started = Instant::now();
    let result = tokio::time::timeout(deadline, scenario(out, Arc::clone(&step), started)).await;
    match result {
        Ok(r) => r,
        Err(_) => {
            let at = step.lock().map(|s| s.clone()).unwrap_or_default();
            bail!(
                "the demo did not finish within {} s (stuck at: {at}); run it with RUST_LOG=debug to see what the bot was doing",
                deadline.as_secs()
            )
        }
    }
}

/// Names for ids, so the transcript reads like a chat.
#[derive(Default)]
struct Names {
    users: HashMap<i64, String>,
    chats: HashMap<i64, String>,
}

impl Names {
    fn user(&self, id: i64) -> String {
        self.users
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("user {id}"))
    }

    fn chat(&self, id: i64) -> String {
        self.chats
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("chat {id}"))
    }
}

struct Demo<'a> {
    sim: Simulator,
    monitor: RuntimeMonitor,
    names: Names,
    out: &'a mut (dyn Write + Send),
    step: Arc<Mutex<String>>,
    summary: DemoSummary,
    group: GroupId,
}

fn quote(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 140 {
        let cut: String = one_line.chars().take(137).collect();
        format!("“{cut}…”")
    } else {
        format!("“{one_line}”")
    }
}

impl Demo<'_> {
    fn say(&mut self, line: impl AsRef<str>) {
        // The transcript is best effort: a closed stdout must not fail the scenario.
        let _ = writeln!(self.out, "{}", line.as_ref());
    }

    fn begin(&mut self, title: &str) {
        if let Ok(mut s) = self.step.lock() {
            title.clone_into(&mut s);
        }
        self.say("");
        self.say(title);
    }

    fn check(&mut self, what: &str, ok: bool) {
        self.say(format!("   {} {what}", if ok { "✔" } else { "✘ FAILED:" }));
        self.summary.checks.push((what.to_owned(), ok));
    }

    /// Waits until the bot has fetched every update and handled it, and stays so briefly.
    async fn settle(&self) {
        let mut quiet_since: Option<Instant> = None;
        loop {
            let idle = self.sim.pending_updates() == 0 && self.monitor.is_idle();
            match (idle, quiet_since) {
                (true, Some(t)) if t.elapsed() >= Duration::from_millis(150) => return,
                (true, None) => quiet_since = Some(Instant::now()),
                (false, _) => quiet_since = None,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    /// Prints what the bot did since the last call, from the simulator's log.
    fn bot_did(&mut self) -> Vec<RecordedCall> {
        let calls: Vec<RecordedCall> = self
            .sim
            .take_calls()
            .into_iter()
            .filter(|c| {
                !matches!(
                    c.method.as_str(),
                    "getUpdates" | "deleteWebhook" | "getMe" | "setWebhook" | "getWebhookInfo"
                )
            })
            .collect();
        self.summary.telegram_calls += calls.len();
        for c in &calls {
            let line = self.describe(c);
            self.say(format!("   GMBot   › {line}"));
        }
        if calls.is_empty() {
            self.say("   GMBot   › (nothing to do)");
        }
        calls
    }

    fn describe(&self, c: &RecordedCall) -> String {
        let chat = match (c.int("chat_id"), c.str("chat_id")) {
            (Some(id), _) => self.names.chat(id),
            // `getChat` with a public @username.
            (None, Some(name)) => name.to_owned(),
            (None, None) => "a chat".to_owned(),
        };
        let bot = self.sim.bot().id.0;
        let user = c
            .int("user_id")
            .map(|id| self.names.user(id))
            .unwrap_or_default();
        let text = match c.method.as_str() {
            "getChatMember" if c.int("user_id") == Some(bot) => {
                format!("checks its own rights in {chat}")
            }
            "getChatMember" => format!("checks whether {user} is in {chat}"),
            "getChatAdministrators" => format!("looks up the admins of {chat}"),
            "getChat" => format!("reads the settings of {chat}"),
            "deleteMessage" => {
                let id = c.int("message_id").unwrap_or(0);
                let what = c
                    .int("chat_id")
                    .and_then(|chat| self.sim.message(ChatId(chat), MessageId(id)))
                    .map(|m| {
                        let who = m.from.map(|u| self.names.user(u.0)).unwrap_or_default();
                        if who == "GMBot" {
                            "its own warning".to_owned()
                        } else {
                            format!("{who}'s message {}", quote(&m.text))
                        }
                    })
                    .unwrap_or_else(|| format!("message {id}"));
                format!("deletes {what} in {chat}")
            }
            "restrictChatMember" => {
                let can_send = c
                    .params
                    .get("permissions")
                    .and_then(|p| p.get("can_send_messages"))
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                if can_send {
                    format!("unmutes {user} in {chat}")
                } else {
                    let until = c.int("until_date").unwrap_or(0);
                    let now = gmbot_core::domain::UnixTime::now().secs();
                    if until > now + 30 {
                        let mins = (until - now + 30) / 60;
                        format!("mutes {user} in {chat} (for {mins} min)")
                    } else {
                        format!("mutes {user} in {chat}")
                    }
                }
            }
            "sendMessage" => {
                let text = c.str("text").unwrap_or_default();
                let plain = strip_html(text);
                let buttons = buttons_of(&c.params);
                if buttons.is_empty() {
                    format!("posts in {chat}: {}", quote(&plain))
                } else {
                    format!("posts in {chat}: {} {}", quote(&plain), buttons.join(" "))
                }
            }
            "editMessageText" => format!("edits its message in {chat}"),
            "answerCallbackQuery" => {
                let text = c.str("text").unwrap_or("(no text)");
                format!("answers the button press: {}", quote(text))
            }
            "banChatMember" => format!("removes {user} from {chat}"),
            "unbanChatMember" => format!("lets {user} back into {chat}"),
            "createChatInviteLink" | "exportChatInviteLink" => {
                format!("creates an invite link for {chat}")
            }
            other => format!("calls {other}"),
        };
        if c.ok() {
            text
        } else {
            format!("{text} — Telegram answered {}", c.status)
        }
    }

    fn member_state(&self, user: UserId) -> String {
        match self.sim.member(self.group, user) {
            MemberState::Restricted { .. } => "muted".to_owned(),
            s => s.status_name().to_owned(),
        }
    }

    /// The bot's latest visible message in the group with a callback button, and that button's data.
    fn warning_for(&self, name: &str) -> Option<(SimMessage, String)> {
        let bot = self.sim.bot().id;
        self.sim
            .visible_messages(self.group)
            .into_iter()
            .rev()
            .filter(|m| m.from == Some(bot) && m.text.contains(name))
            .find_map(|m| {
                let data = m
                    .buttons
                    .iter()
                    .flatten()
                    .find_map(|b| b.callback_data.clone())?;
                Some((m, data))
            })
    }
}

/// Text as a reader sees an HTML message: tags removed, entities decoded.
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn buttons_of(params: &serde_json::Value) -> Vec<String> {
    let markup = match params.get("reply_markup") {
        Some(serde_json::Value::String(s)) => serde_json::from_str(s).unwrap_or_default(),
        Some(v) => v.clone(),
        None => serde_json::Value::Null,
    };
    markup
        .get("inline_keyboard")
        .and_then(serde_json::Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(serde_json::Value::as_array)
                .flatten()
                .filter_map(|b| b.get("text").and_then(serde_json::Value::as_str))
                .map(|t| format!("[{t}]"))
                .collect()
        })
        .unwrap_or_default()
}

async fn scenario(
    out: &mut (dyn Write + Send),
    step: Arc<Mutex<String>>,
    started: Instant,
) -> anyhow::Result<DemoSummary> {
    let sim = Simulator::start_with(SimulatorOptions {
        bot_username: "GMBotDemoBot".to_owned(),
        ..SimulatorOptions::default()
    })
    .context("cannot start the simulated Telegram")?;
    let db = tempfile::tempdir().context("cannot create a temporary directory for the database")?;
    let db_url = format!("sqlite://{}", db.path().join("demo.db").display());

    // The world: an owner, a group, a channel, three members.
    let olivia = sim.add_user("Olivia");
    let alice = sim.add_user("Alice");
    let bob = sim.add_user("Bob");
    let carol = sim.add_user("Carol");
    let group = sim.create_supergroup("Rust Learners", olivia)?;
    let channel = sim.create_channel("Rust News", Some("rust_news"), olivia)?;
    sim.add_bot(group, olivia, Some(AdminRights::moderator()))?;
    sim.add_bot(channel, olivia, Some(AdminRights::full()))?;
    for user in [alice, bob, carol] {
        sim.join(group, user)?;
    }
    sim.join(channel, alice)?;

    let mut names = Names::default();
    for (id, name) in [
        (olivia, "Olivia"),
        (alice, "Alice"),
        (bob, "Bob"),
        (carol, "Carol"),
        (sim.bot().id, "GMBot"),
    ] {
        names.users.insert(id.0, name.to_owned());
    }
    names.chats.insert(group.0, "“Rust Learners”".to_owned());
    names.chats.insert(channel.0, "@rust_news".to_owned());

    let config = Config::from_vars([
        ("TELEGRAM_BOT_TOKEN", sim.token().to_owned()),
        ("TELEGRAM_API_URL", sim.base_url()),
        ("DATABASE_URL", db_url),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
    ])
    .context("demo configuration")?;
    let options = RunOptions {
        long_poll: Duration::from_secs(2),
        // Telegram's budgets, with bursts wide enough that a demo's handful of messages is
        // not spread over a minute.
        dispatch: DispatchConfig {
            global_burst: 30,
            group_burst: 20,
            ..DispatchConfig::default()
        },
        startup_attempts: 2,
        ..RunOptions::default()
    };
    let shutdown = Shutdown::new();
    let bot = Bot::start(&config, options, &shutdown).await?;
    let monitor = bot.monitor();
    let running = tokio::spawn(bot.run(shutdown.clone()));

    let mut demo = Demo {
        sim,
        monitor,
        names,
        out,
        step,
        summary: DemoSummary::default(),
        group,
    };
    demo.say("GMBot demo: the real bot (long polling) against a simulated Telegram, with a temporary SQLite database.");
    demo.say("");
    demo.say("The scene");
    demo.say("   Olivia owns the group “Rust Learners” and the channel @rust_news.");
    demo.say(
        "   GMBot is an admin of both (it may delete messages and mute members in the group).",
    );
    demo.say("   Alice is in the group and subscribed to @rust_news; Bob and Carol are in the group only.");
    demo.settle().await;
    demo.sim.take_calls();

    // 1. Protect.
    demo.begin("1. Olivia protects the group");
    demo.say("   Olivia  › /protect @rust_news");
    demo.sim.post(group, olivia, "/protect @rust_news")?;
    demo.settle().await;
    demo.bot_did();
    let protected = demo.sim.visible_messages(group).iter().any(|m| {
        m.from == Some(demo.sim.bot().id) && m.text.to_ascii_lowercase().contains("rust_news")
    });
    demo.check("the bot confirmed the protection in the group", protected);

    // 2. A subscriber writes.
    demo.begin("2. Alice (subscribed) writes");
    demo.say("   Alice   › Hi everyone!");
    let alice_msg = demo.sim.post(group, alice, "Hi everyone!")?;
    demo.settle().await;
    demo.bot_did();
    let kept = demo
        .sim
        .message(group, alice_msg)
        .is_some_and(|m| !m.deleted);
    demo.check("Alice's message stays", kept);
    demo.check("Alice can still write", demo.sim.can_post(group, alice));

    // 3. A non-subscriber writes.
    demo.begin("3. Bob (not subscribed) writes");
    demo.say("   Bob     › Anyone here?");
    let bob_msg = demo.sim.post(group, bob, "Anyone here?")?;
    demo.settle().await;
    demo.bot_did();
    let deleted = demo.sim.message(group, bob_msg).is_some_and(|m| m.deleted);
    demo.check("Bob's message was deleted", deleted);
    demo.check("Bob is muted", !demo.sim.can_post(group, bob));
    let warned = demo.warning_for("Bob").is_some();
    demo.check(
        "Bob got a warning with a Join button and an “I've joined” button",
        warned,
    );

    // 4. He subscribes: the bot sees the join and lifts the mute.
    demo.begin("4. Bob subscribes to @rust_news");
    demo.say("   Bob     › (joins @rust_news)");
    demo.sim.join(channel, bob)?;
    demo.settle().await;
    demo.bot_did();
    demo.check(
        "Bob was unmuted without doing anything else",
        demo.sim.can_post(group, bob),
    );
    demo.say("   Bob     › Thanks, I'm in!");
    let thanks = demo.sim.post(group, bob, "Thanks, I'm in!");
    demo.settle().await;
    demo.bot_did();
    let stays = thanks
        .ok()
        .and_then(|id| demo.sim.message(group, id))
        .is_some_and(|m| !m.deleted);
    demo.check("Bob's next message stays", stays);

    // 5. Another non-subscriber writes, joins, and presses the button.
    demo.begin("5. Carol (not subscribed) writes, then joins and presses “I've joined”");
    demo.say("   Carol   › hello");
    demo.sim.post(group, carol, "hello")?;
    demo.settle().await;
    demo.bot_did();
    demo.check("Carol is muted", !demo.sim.can_post(group, carol));
    let Some((warning, data)) = demo.warning_for("Carol") else {
        demo.check("Carol got a warning with an “I've joined” button", false);
        return finish(demo, shutdown, running, started).await;
    };
    demo.say("   Carol   › (joins @rust_news, then presses “I've joined”)");
    demo.sim.join(channel, carol)?;
    // Sent as her client sends it: the bot may remove the warning as soon as it sees the join,
    // while the button is still on her screen.
    let press = demo.sim.send_callback(group, warning.id, carol, &data)?;
    demo.settle().await;
    demo.say("   (the join and the press reach the bot together; either one lifts the mute)");
    demo.bot_did();
    let answered = demo.sim.callback_answer(&press).is_some();
    demo.check("the bot answered Carol's button press", answered);
    demo.check("Carol can write again", demo.sim.can_post(group, carol));
    let state = demo.member_state(carol);
    demo.say(format!("   (Carol's status in the group is now: {state})"));

    finish(demo, shutdown, running, started).await
}

async fn finish(
    mut demo: Demo<'_>,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<anyhow::Result<crate::run::RunReport>>,
    started: Instant,
) -> anyhow::Result<DemoSummary> {
    demo.begin("Stopping the bot (as on SIGTERM)");
    shutdown.trigger();
    let report = running
        .await
        .context("the bot task failed")?
        .context("the bot stopped with an error")?;
    demo.summary.updates = report.drain.stats.handled;
    demo.check(
        "the bot stopped cleanly with nothing left in flight",
        report.drain.abandoned == 0,
    );

    let passed = demo.summary.checks.iter().filter(|(_, ok)| *ok).count();
    let total = demo.summary.checks.len();
    demo.say("");
    demo.say("Summary");
    demo.say(format!(
        "   {passed}/{total} checks passed; the bot handled {} updates and made {} Telegram calls in {:.1} s.",
        demo.summary.updates,
        demo.summary.telegram_calls,
        started.elapsed().as_secs_f64()
    ));
    if demo.summary.passed() {
        demo.say("   Run it for real: set TELEGRAM_BOT_TOKEN (from @BotFather) and start `gmbot-bot` — see README.md.");
    }
    Ok(demo.summary)
}
