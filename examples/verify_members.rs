//! Wires the verification engine with the SQLite store (in memory), the
//! memory membership cache and the in-memory Telegram, verifies a few
//! members of a protected group and prints each decision.
//!
//! Run: `cargo run -p gmbot-examples --example verify_members`.

use std::sync::Arc;

use gmbot_core::cache::{MemoryCache, MemoryCacheConfig};
use gmbot_core::clock::SystemClock;
use gmbot_core::domain::{
    ChannelId, ChannelRef, ChannelUsername, ChatId, ChatMemberStatus, EnforcedChannel, GroupId,
    ProtectRequest, SettingChange, UnixTime, UserId,
};
use gmbot_core::engine::{Engine, EngineConfig, EnginePorts, MessageContext, Verdict};
use gmbot_core::store::{self, MigrationMode};
use gmbot_core::telegram::{ChatAdmin, MemoryTelegram, Method};
use prometheus::{Registry, TextEncoder};

const GROUP: GroupId = GroupId(-1_001_234_567_890);
const CHANNEL: ChannelId = ChannelId(-1_009_876_543_210);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The tenancy store: one protected group requiring one channel.
    let store = store::open(&"sqlite::memory:".parse()?, MigrationMode::Apply).await?;
    let mut channel = EnforcedChannel::from_ref(ChannelRef::Id(CHANNEL));
    channel.username = Some(ChannelUsername::parse("gmbot_news")?);
    store
        .protect(
            &ProtectRequest {
                group: GROUP,
                title: Some("GMBot demo".into()),
                owner: None,
                channels: vec![channel],
            },
            UnixTime::now(),
        )
        .await?;
    store
        .update_settings(GROUP, &[SettingChange::MuteSeconds(3_600)], UnixTime::now())
        .await?;

    // A scripted Telegram: the bot administers both chats; a few people.
    let (owner, admin, member, muted_member, stranger, bot) = (
        UserId(100),
        UserId(101),
        UserId(200),
        UserId(201),
        UserId(300),
        UserId(400),
    );
    let telegram = MemoryTelegram::new()
        .add_group(GROUP)
        .add_channel(CHANNEL)
        .set_member(GROUP, owner, ChatMemberStatus::Creator)
        .set_admin(
            GROUP,
            ChatAdmin {
                user: admin,
                is_bot: false,
                is_creator: false,
                can_delete_messages: true,
                can_restrict_members: false,
                can_invite_users: false,
            },
        )
        .set_member(CHANNEL, member, ChatMemberStatus::Member)
        .set_member(
            CHANNEL,
            muted_member,
            ChatMemberStatus::Restricted { is_member: true },
        );

    let clock = Arc::new(SystemClock::new());
    let registry = Registry::new();
    let cache = MemoryCache::new(MemoryCacheConfig::default(), clock.clone(), &registry)?;
    let engine = Engine::new(
        EnginePorts {
            store,
            telegram: Arc::new(telegram.clone()),
            cache: Arc::new(cache),
            clock,
        },
        EngineConfig::default(),
        &registry,
    )?;

    let people = [
        ("owner", owner, MessageContext::no_message()),
        ("admin", admin, MessageContext::no_message()),
        ("subscriber", member, MessageContext::no_message()),
        (
            "restricted subscriber",
            muted_member,
            MessageContext::no_message(),
        ),
        ("non-subscriber", stranger, MessageContext::no_message()),
        ("a bot", bot, MessageContext::no_message().from_bot()),
        (
            "anonymous admin",
            UserId::GROUP_ANONYMOUS_BOT,
            MessageContext::no_message().with_sender_chat(ChatId::from(GROUP)),
        ),
    ];
    for (who, user, ctx) in people {
        let mut ctx = ctx;
        ctx.message = telegram.post_message(GROUP, user);
        let verdict = engine.verify(GROUP, user, ctx).await?;
        print_verdict(who, user, &verdict);
    }

    // The same non-subscriber again: answered from the cache, no Telegram call.
    let before = telegram.count(Method::GetChatMember);
    let verdict = engine
        .verify(GROUP, stranger, MessageContext::no_message())
        .await?;
    print_verdict("non-subscriber (cached)", stranger, &verdict);
    println!(
        "getChatMember calls for the repeat: {}",
        telegram.count(Method::GetChatMember) - before
    );

    // They join and press "I've joined": the recheck asks Telegram directly.
    let _ = telegram
        .clone()
        .set_member(CHANNEL, stranger, ChatMemberStatus::Member);
    let verdict = engine.recheck(GROUP, stranger).await?;
    print_verdict("non-subscriber after joining (recheck)", stranger, &verdict);

    println!("\nmetrics:");
    let text = TextEncoder::new().encode_to_string(&registry.gather())?;
    for line in text
        .lines()
        .filter(|l| l.starts_with("gmbot_verifications_total"))
    {
        println!("  {line}");
    }
    Ok(())
}

fn print_verdict(who: &str, user: UserId, verdict: &Verdict) {
    println!("{who:<40} (user {user}): {}", verdict.decision);
    for action in &verdict.actions {
        println!("{:<44}-> {action:?}", "");
    }
    for channel in verdict.missing() {
        if let Some(url) = channel.join_url() {
            println!("{:<44}   join: {url}", "");
        }
    }
    for u in &verdict.unverifiable {
        println!("{:<44}   cannot check {}: {:?}", "", u.channel, u.reason);
    }
}
