//! `gmbot protect` with `TELEGRAM_BOT_TOKEN` set: the real binary runs the `/protect` checks
//! against the simulated Telegram (`TELEGRAM_API_URL`) before storing anything.

use std::process::Command;

use gmbot_bot::sim::{AdminRights, Simulator};
use gmbot_core::domain::{ChannelId, GroupId, UserId};
use gmbot_core::store::{self, MigrationMode, Store};

struct Setup {
    sim: Simulator,
    owner: UserId,
    group: GroupId,
    channel: ChannelId,
    dir: tempfile::TempDir,
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn setup() -> Setup {
    let sim = Simulator::start().expect("simulator starts");
    let owner = sim.add_user("Owner");
    let group = sim.create_supergroup("Ops group", owner).expect("group");
    let channel = sim
        .create_channel("Ops news", Some("ops_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot in group");
    sim.add_bot(channel, owner, Some(AdminRights::bare()))
        .expect("bot in channel");
    let s = Setup {
        sim,
        owner,
        group,
        channel,
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let run = s.gmbot(&["migrate"], true);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    s
}

impl Setup {
    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("gmbot.db").display())
    }

    fn gmbot(&self, args: &[&str], with_token: bool) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gmbot"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", self.url())
            .env("TELEGRAM_API_URL", self.sim.base_url())
            .env("RUST_BACKTRACE", "1");
        if with_token {
            cmd.env("TELEGRAM_BOT_TOKEN", self.sim.token());
        } else {
            cmd.env_remove("TELEGRAM_BOT_TOKEN");
        }
        let out = cmd.output().expect("run gmbot");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let secret = self
            .sim
            .token()
            .split_once(':')
            .map(|(_, s)| s)
            .unwrap_or("");
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains("panicked"), "{text}");
            assert!(!text.contains(secret), "the token leaked: {text}");
        }
        run
    }

    fn protect(&self, channels: &[String]) -> Run {
        let group = self.group.get().to_string();
        let mut args = vec!["protect", "--group", group.as_str()];
        for c in channels {
            args.push("--channel");
            args.push(c);
        }
        self.gmbot(&args, true)
    }

    async fn store(&self) -> std::sync::Arc<dyn Store> {
        let url = self.url().parse().expect("url");
        store::open(&url, MigrationMode::Require)
            .await
            .expect("store opens")
    }
}

#[tokio::test]
async fn checks_pass_and_resolved_channels_are_stored() {
    let s = setup();
    let secret = s
        .sim
        .create_channel("Private ops", None, s.owner)
        .expect("private channel");
    s.sim
        .add_bot(secret, s.owner, Some(AdminRights::moderator()))
        .expect("bot admin with invite right");
    let run = s.protect(&["@OPS_NEWS".into(), secret.get().to_string()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("checked against Telegram"),
        "{}",
        run.stdout
    );
    let g = s
        .store()
        .await
        .group(s.group)
        .await
        .expect("store")
        .expect("group stored");
    assert_eq!(g.title.as_deref(), Some("Ops group"));
    assert_eq!(g.channels.len(), 2);
    assert_eq!(g.channels[0].id, Some(s.channel));
    assert_eq!(g.channels[0].title.as_deref(), Some("Ops news"));
    assert_eq!(g.channels[1].id, Some(secret));
    let link = g.channels[1].invite_link.clone().expect("invite link");
    assert!(s.sim.invite_link_valid(&link));
    assert_eq!(s.sim.calls_to("createChatInviteLink").len(), 1);
    assert!(s.sim.calls_to("exportChatInviteLink").is_empty());
}

#[tokio::test]
async fn every_problem_is_printed_and_nothing_is_stored() {
    let s = setup();
    s.sim
        .set_bot_rights(s.group, s.owner, None)
        .expect("bot demoted in the group");
    s.sim
        .set_bot_rights(s.channel, s.owner, None)
        .expect("bot out of the channel");
    let run = s.protect(&["@ops_news".into(), "@missing_channel".into()]);
    assert_eq!(run.code, Some(1), "{} {}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    for expected in [
        "Make me an administrator of this group",
        "Make me an administrator of @ops_news with no extra rights needed",
        "I can't find the channel @missing_channel",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
    assert!(s
        .store()
        .await
        .group(s.group)
        .await
        .expect("store")
        .is_none());
    // Without the token the CLI stores as given (the bot checks when it starts).
    let group = s.group.get().to_string();
    let run = s.gmbot(
        &["protect", "--group", &group, "--channel", "@ops_news"],
        false,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run
        .stdout
        .contains("looks up every channel stored by @username"));
}

#[tokio::test]
async fn a_malformed_token_is_bad_usage() {
    let s = setup();
    let group = s.group.get().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gmbot"));
    let out = cmd
        .args(["protect", "--group", &group, "--channel", "@ops_news"])
        .env("DATABASE_URL", s.url())
        .env("TELEGRAM_BOT_TOKEN", "not-a-token")
        .output()
        .expect("run gmbot");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TELEGRAM_BOT_TOKEN"), "{stderr}");
}
