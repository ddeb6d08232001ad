//! `gmbot cache warm`: the real binary against the simulated Telegram (`TELEGRAM_API_URL`),
//! a SQLite file and the real Redis at 127.0.0.1:6379 (own key prefix per test, deleted
//! afterwards): most recently seen members first, within the bounds, written where the bot's
//! layered cache finds them; the refusals without Redis or a token.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gmbot_bot::sim::{AdminRights, Simulator};
use gmbot_core::cache::{
    CacheSource, LayeredCache, LayeredCacheConfig, MembershipCache, MembershipKey, RedisCacheConfig,
};
use gmbot_core::clock::SystemClock;
use gmbot_core::domain::{
    ChannelId, ChannelRef, ChatMemberStatus, EnforcedChannel, GroupId, ProtectRequest, UnixTime,
    UserId,
};
use gmbot_core::store::{self, MigrationMode, Store};
use prometheus::Registry;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

struct Setup {
    sim: Simulator,
    group: GroupId,
    channel: ChannelId,
    /// Subscribed members, most recently seen first.
    members: Vec<UserId>,
    /// In the group, not subscribed; seen between the members.
    outsider: UserId,
    dir: tempfile::TempDir,
    prefix: String,
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut c);
        }
    }
}

fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("gmbot:test:cli-warm:{}:{nanos}:", std::process::id())
}

async fn setup() -> Setup {
    let sim = Simulator::start().expect("simulator starts");
    let owner = sim.add_user("Owner");
    let group = sim.create_supergroup("Warm group", owner).expect("group");
    let channel = sim
        .create_channel("Warm news", Some("warm_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot in group");
    sim.add_bot(channel, owner, Some(AdminRights::full()))
        .expect("bot in channel");
    let members: Vec<UserId> = (0..5).map(|i| sim.add_user(&format!("M{i}"))).collect();
    let outsider = sim.add_user("Outsider");
    for &m in &members {
        sim.join(group, m).expect("join group");
        sim.join(channel, m).expect("subscribe");
    }
    sim.join(group, outsider).expect("join group");
    let s = Setup {
        sim,
        group,
        channel,
        members,
        outsider,
        dir: tempfile::tempdir().expect("temp dir"),
        prefix: unique_prefix(),
    };
    let run = s.gmbot(&["migrate"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let store = s.store().await;
    let now = UnixTime::now();
    store
        .protect(
            &ProtectRequest {
                group,
                title: Some("Warm group".into()),
                owner: None,
                channels: vec![EnforcedChannel::from_ref(ChannelRef::Id(channel))],
            },
            now,
        )
        .await
        .expect("protect");
    // Seen: members[0] most recently, then [1], the outsider, [2], [3], [4].
    let mut rows = Vec::new();
    for (i, &m) in s.members.iter().enumerate() {
        let ago = if i < 2 {
            i as i64 * 10
        } else {
            i as i64 * 10 + 10
        };
        rows.push((group, m, UnixTime(now.0 - ago)));
    }
    rows.push((group, s.outsider, UnixTime(now.0 - 25)));
    store.record_seen_many(&rows).await.expect("seen");
    s
}

impl Setup {
    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("gmbot.db").display())
    }

    /// Runs gmbot with the simulator, the token, Redis and the test's prefix, plus `env`
    /// (a value of "" removes the variable).
    fn gmbot(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gmbot"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", self.url())
            .env("TELEGRAM_API_URL", self.sim.base_url())
            .env("TELEGRAM_BOT_TOKEN", self.sim.token())
            .env("REDIS_URL", REDIS_URL)
            .env_remove("GMBOT_CACHE_MODE")
            .env_remove("GMBOT_WARM_MAX_MEMBERS");
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
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

    fn warm(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut args = vec!["cache", "warm", "--redis-prefix", self.prefix.as_str()];
        args.extend_from_slice(extra);
        self.gmbot(&args, env)
    }

    async fn store(&self) -> Arc<dyn Store> {
        let url = self.url().parse().expect("url");
        store::open(&url, MigrationMode::Require)
            .await
            .expect("store opens")
    }

    /// The users getChatMember was asked about in the channel, in call order.
    fn asked(&self) -> Vec<i64> {
        self.sim
            .calls_to("getChatMember")
            .iter()
            .filter(|c| c.int("chat_id") == Some(self.channel.get()))
            .filter_map(|c| c.int("user_id"))
            .collect()
    }

    /// A bot instance's cache: layered, on the bot's keys (`{prefix}m:`).
    async fn bot_cache(&self) -> LayeredCache {
        let config = LayeredCacheConfig {
            redis: RedisCacheConfig {
                key_prefix: format!("{}m:", self.prefix),
                invalidation_channel: format!("{}m:invalidate", self.prefix),
                ..RedisCacheConfig::new(REDIS_URL)
            },
            l1_capacity: 1_000,
        };
        LayeredCache::connect(config, Arc::new(SystemClock::new()), &Registry::new())
            .await
            .expect("layered cache")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warms_redis_most_recent_first_for_the_bot_to_find() {
    let s = setup().await;
    let run = s.warm(&["--max-members", "4"], &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("cache warmed"), "{}", run.stdout);
    assert!(run.stdout.contains("max_members"), "{}", run.stdout);
    let m = &s.members;
    // The four most recently seen (several calls go at once, so their order at Telegram is
    // not fixed; the order itself is tested in gmbot-core's tests/warm.rs).
    let mut asked = s.asked();
    asked.sort_unstable();
    let mut expected = vec![m[0].get(), m[1].get(), s.outsider.get(), m[2].get()];
    expected.sort_unstable();
    assert_eq!(asked, expected, "the four most recently seen members");

    // A bot instance finds them in Redis, with the truth Telegram gave.
    let cache = s.bot_cache().await;
    let never = || -> gmbot_core::cache::MembershipLoader<'static> {
        Box::pin(async { panic!("a warmed key must not be loaded") })
    };
    for (user, status) in [
        (m[0], ChatMemberStatus::Member),
        (m[2], ChatMemberStatus::Member),
        (s.outsider, ChatMemberStatus::Left),
    ] {
        let got = cache
            .get_or_load(MembershipKey::new(s.channel, user), never())
            .await
            .expect("lookup");
        assert_eq!((got.status, got.source), (status, CacheSource::Redis));
    }
    let cold = cache
        .get_or_load(
            MembershipKey::new(s.channel, m[3]),
            Box::pin(async { Ok(ChatMemberStatus::Member) }),
        )
        .await
        .expect("lookup");
    assert_eq!(cold.source, CacheSource::Loaded, "beyond --max-members");

    // Again, for the group, as JSON: what is cached costs nothing; m[3] is cached now too
    // (by the bot instance above), m[4] is new.
    let run = s.warm(
        &["--group", &s.group.get().to_string(), "--format", "json"],
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json report");
    assert_eq!(report["members"], 6);
    assert_eq!(report["already_cached"], 5);
    assert_eq!(report["loaded"], 1);
    assert_eq!(
        report["stopped_by"],
        "done: every member seen in the window"
    );
    assert_eq!(report["cache_mode"], "ttl");
    assert_eq!(s.asked().len(), 5, "one more call, for m[4]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_mode_writes_long_lived_entries() {
    let s = setup().await;
    let run = s.warm(&["--format", "json"], &[("GMBOT_CACHE_MODE", "events")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json report");
    assert_eq!(report["cache_mode"], "events");
    assert_eq!(report["member_ttl_seconds"], 6 * 3600);
    let mut c = redis::Client::open(REDIS_URL)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("redis");
    let key = format!("{}m:{}:{}", s.prefix, s.channel.get(), s.members[0].get());
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut c).expect("PTTL");
    assert!(
        pttl > 5 * 3600 * 1000 && pttl <= 7 * 3600 * 1000,
        "a member entry lives 6 h ± 15 % in events mode, PTTL {pttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_without_redis_or_token_and_reports_bad_input() {
    let s = setup().await;
    let run = s.warm(&[], &[("REDIS_URL", "")]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("REDIS_URL"), "{}", run.stderr);
    assert!(run.stderr.contains("in-process cache"), "{}", run.stderr);
    assert!(s.asked().is_empty());

    let run = s.warm(&[], &[("TELEGRAM_BOT_TOKEN", "")]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("TELEGRAM_BOT_TOKEN"), "{}", run.stderr);

    let run = s.warm(&[], &[("GMBOT_CACHE_MODE", "sometimes")]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("GMBOT_CACHE_MODE"), "{}", run.stderr);

    let run = s.warm(&["--max-members", "0"], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);

    let run = s.warm(&[], &[("REDIS_URL", "redis://127.0.0.1:1")]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("cannot reach Redis"), "{}", run.stderr);

    let run = s.warm(&["--group", "-4242"], &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("-4242"), "{}", run.stderr);
    assert!(s.asked().is_empty(), "nothing was asked");
}
