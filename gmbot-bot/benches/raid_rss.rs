//! Memory under a raid: the real `gmbot-bot` binary, as its own process (long polling,
//! SQLite, in-process cache), against the simulated Telegram running in this process; one
//! protected group is raided by N members within about a second. The bot's resident set is
//! sampled every 100 ms until every raider is muted; the run then stops the bot with SIGTERM
//! and checks that it exited cleanly and kept nothing in the update journal.
//!
//! ```text
//! cargo test -p gmbot-bot --bench raid_rss                          # 2,000 and 20,000
//! GMBOT_RAID_RSS_SIZES=20000 cargo test -p gmbot-bot --bench raid_rss
//! ```
//!
//! The restrict and delete budgets are raised (1,000/s each, through the bot's own
//! environment variables) so that a 20,000-member raid is worked through in minutes: the
//! figure is the memory the bot needs while it holds a raid, not how fast Telegram lets it
//! mute. Peak RSS is the kernel's VmHWM of the bot's process.

#[path = "../../gmbot-core/tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gmbot_bot::sim::{AdminRights, Simulator, SimulatorOptions};
use gmbot_core::domain::{
    ChannelRef, EnforcedChannel, ProtectRequest, SettingChange, UnixTime, UserId,
};
use gmbot_core::store::{self, MigrationMode};

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn main() {
    let sizes: Vec<usize> = std::env::var("GMBOT_RAID_RSS_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2_000, 20_000]);
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
    let sim = Simulator::start_with(SimulatorOptions {
        workers: 8,
        ..SimulatorOptions::default()
    })
    .expect("simulator starts");
    let owner = sim.add_user("Owner");
    let group = sim.create_supergroup("Raided", owner).expect("group");
    let channel = sim
        .create_channel("Raided news", Some("raided_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot in group");
    sim.add_bot(channel, owner, Some(AdminRights::full()))
        .expect("bot in channel");
    let raider_ids: Vec<UserId> = (0..raiders)
        .map(|i| {
            let u = sim.add_user(&format!("Raider {i}"));
            sim.join(group, u).expect("raider joins");
            u
        })
        .collect();
    // The joins happened before the group was protected: the bot has nothing to do for them.
    let (_file, url) = support::sqlite_file_url();
    {
        let store = store::open(&url, MigrationMode::Apply)
            .await
            .expect("store opens");
        let channel: ChannelRef = format!("{}", channel.0).parse().expect("channel id");
        store
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
        store
            .update_settings(group, &[SettingChange::CheckOnJoin(false)], UnixTime::now())
            .await
            .expect("settings");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_gmbot-bot"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TELEGRAM_BOT_TOKEN", sim.token())
        .env("TELEGRAM_API_URL", sim.base_url())
        .env("DATABASE_URL", url.to_string())
        .env("HTTP_LISTEN", "127.0.0.1:0")
        .env("GMBOT_ACTIONS_PER_SECOND", "1000")
        .env("GMBOT_DELETES_PER_SECOND", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the bot starts");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.waiting_polls() == 0 || sim.pending_updates() > 0 {
        assert!(Instant::now() < deadline, "the bot did not start polling");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = rss_mib(pid).expect("bot's /proc status");

    let start = Instant::now();
    let spacing = Duration::from_secs(1) / raiders.max(1) as u32;
    for (i, &r) in raider_ids.iter().enumerate() {
        tokio::time::sleep_until((start + spacing * i as u32).into()).await;
        sim.post(group, r, "raid!").expect("raider posts");
    }
    let mut peak_rss: f64 = 0.0;
    let mut muted_after = None;
    let give_up = start + Duration::from_secs(600);
    let mut next_check = Instant::now();
    while Instant::now() < give_up {
        if let Some((rss, _)) = rss_mib(pid) {
            peak_rss = peak_rss.max(rss);
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_secs(1);
            if raider_ids.iter().all(|&r| !sim.can_post(group, r)) {
                muted_after = Some(start.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, hwm) = rss_mib(pid).expect("bot's /proc status");
    // SIGTERM: the bot drains and exits 0.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    let store = store::open(&url, MigrationMode::Require)
        .await
        .expect("store opens");
    let kept = store.count_journaled_updates().await.expect("journal");
    let rows = store.count_active_restrictions(group).await.expect("rows");
    println!(
        "\nraid of {raiders} in one group, the bot as its own process (long polling, SQLite), budgets 1000 restrictions/s, 1000 deletions/s"
    );
    println!(
        "  RSS before the raid {before:.1} MiB; peak RSS sampled {peak_rss:.1} MiB; VmHWM {hwm:.1} MiB"
    );
    println!(
        "  every raider muted after {}; open rows {rows}/{raiders}; exit {status}; journal rows left {kept}",
        muted_after.map_or("NEVER (600 s)".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
    );
}
