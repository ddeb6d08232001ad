//! `gmbot audit` at scale: the real binary against the simulated Telegram (Bot API and MTProto
//! member directory with Telegram's 200-per-page and 10,000-per-filter caps).
//!
//! 1. A full audit of `AUDIT_BENCH_MEMBERS` (default 150,000) members at a bulk budget of
//!    `AUDIT_BENCH_RATE` (default 1,000) reads/s: wall time against members ÷ budget, peak RSS
//!    of the `gmbot` process (VmHWM from /proc, polled every 20 ms).
//! 2. The same group again (`--restart`), killed (SIGKILL) at a random page and resumed:
//!    members checked twice (at most one page, 200) and never checked (none).
//!
//! Run: `cargo test -p gmbot-cli --bench audit` (debug build, SQLite temp file);
//! `AUDIT_BENCH_PROGRESS=1` passes `gmbot`'s progress lines (every 5 s) through.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gmbot_bot::sim::{AdminRights, Simulator, SimulatorOptions};
use gmbot_core::domain::{ChannelRef, EnforcedChannel, ProtectRequest, UnixTime};
use gmbot_core::store::{self, MigrationMode};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Waits for the child, polling its peak RSS; returns (wall, peak KiB, success).
fn watch(mut child: Child, started: Instant) -> (Duration, u64, bool) {
    let mut peak = 0;
    loop {
        if let Some(k) = vm_hwm_kib(child.id()) {
            peak = peak.max(k);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return (started.elapsed(), peak, status.success());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let members = usize::try_from(env_or("AUDIT_BENCH_MEMBERS", 150_000)).unwrap_or(150_000);
    let rate = env_or("AUDIT_BENCH_RATE", 1_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = Simulator::start_with(SimulatorOptions {
        workers: 4,
        ..SimulatorOptions::default()
    })
    .expect("simulator");
    sim.set_recording(false);
    let owner = sim.add_user("Owner");
    let group = sim.create_supergroup("Huge group", owner).expect("group");
    let channel = sim
        .create_channel("News", Some("huge_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot");
    sim.add_bot(channel, owner, Some(AdminRights::bare()))
        .expect("bot");
    let t = Instant::now();
    let ids = sim.add_members_bulk(group, members);
    let half: Vec<_> = ids.iter().step_by(2).copied().collect();
    sim.join_bulk(channel, &half);
    eprintln!(
        "set up {members} members in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("gmbot.db").display());
    let gmbot = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gmbot"));
        cmd.args(args)
            .current_dir(dir.path())
            .env("DATABASE_URL", &url)
            .env("TELEGRAM_API_URL", sim.base_url())
            .env("TELEGRAM_BOT_TOKEN", sim.token())
            .env("TELEGRAM_API_ID", "12345")
            .env("TELEGRAM_API_HASH", "0123456789abcdef0123456789abcdef")
            .env("GMBOT_MTPROTO_SIM_URL", sim.mtproto_url())
            .env("GMBOT_BULK_READS_PER_SECOND", rate.to_string())
            .stdout(Stdio::piped());
        // AUDIT_BENCH_PROGRESS=1 shows gmbot's progress lines (every 5 s: rate, phase).
        if std::env::var_os("AUDIT_BENCH_PROGRESS").is_none() {
            cmd.stderr(Stdio::null());
        }
        cmd
    };
    assert!(gmbot(&["migrate"]).status().expect("migrate").success());
    runtime.block_on(async {
        let s = store::open(&url.parse().expect("url"), MigrationMode::Require)
            .await
            .expect("store");
        s.protect(
            &ProtectRequest {
                group,
                title: None,
                owner: None,
                channels: vec![EnforcedChannel::from_ref(ChannelRef::Id(channel))],
            },
            UnixTime::now(),
        )
        .await
        .expect("protect");
    });
    let g = group.get().to_string();

    // 1. The full audit.
    let started = Instant::now();
    let child = gmbot(&["audit", "--group", &g, "--format", "json"])
        .spawn()
        .expect("audit");
    let (wall, peak, ok) = watch(child, started);
    assert!(ok, "the audit failed");
    let ideal = members as f64 / rate as f64;
    println!(
        "full audit: {members} members at {rate} reads/s: {:.1} s (members ÷ budget = {ideal:.1} s, ratio {:.3}), peak RSS {:.1} MB",
        wall.as_secs_f64(),
        wall.as_secs_f64() / ideal,
        peak as f64 / 1024.0
    );

    // 2. Killed at a random page, resumed.
    sim.set_recording(true);
    sim.take_calls();
    let pages_total = members.div_ceil(200) as u64;
    let kill_at = 5
        + (u64::from(std::process::id()) * 7919 + started.elapsed().subsec_nanos() as u64)
            % (pages_total - 10).max(1);
    let mut child = gmbot(&["audit", "--group", &g, "--restart", "--format", "json"])
        .spawn()
        .expect("audit");
    runtime.block_on(async {
        let s = store::open(&url.parse().expect("url"), MigrationMode::Require)
            .await
            .expect("store");
        loop {
            if let Some(run) = s.unfinished_audit(group).await.expect("read") {
                if run.pages >= kill_at {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    child.kill().expect("kill");
    let _ = child.wait();
    let resumed = gmbot(&["audit", "--group", &g, "--resume", "--format", "json"])
        .output()
        .expect("resume");
    assert!(resumed.status.success(), "the resumed audit failed");
    let mut per: HashMap<i64, u32> = HashMap::new();
    for c in sim.take_calls() {
        if c.method == "getChatMember" && c.params["chat_id"].as_i64() == Some(channel.get()) {
            if let Some(u) = c.params["user_id"].as_i64() {
                *per.entry(u).or_default() += 1;
            }
        }
    }
    let twice = per.values().filter(|&&n| n == 2).count();
    let more = per.values().filter(|&&n| n > 2).count();
    let missed = members - per.len().min(members);
    println!(
        "killed at page {kill_at} of ~{pages_total}, resumed: checked twice {twice} (≤ 200 = one page), more than twice {more}, never checked {missed}"
    );
    assert!(twice <= 200 && more == 0 && missed == 0);
}
