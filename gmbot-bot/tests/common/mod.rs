//! Shared fixture: a simulated Telegram with an owner, a protected-looking supergroup, a public
//! channel, two members, and a Bot API client pointed at it.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use gmbot_bot::sim::{AdminRights, Simulator};
use gmbot_bot::{BotApi, BotApiOptions, BotToken};
use gmbot_core::domain::{ChannelId, GroupId, UserId};

pub struct World {
    pub sim: Simulator,
    pub api: BotApi,
    pub owner: UserId,
    /// Member of the group and subscribed to the channel.
    pub alice: UserId,
    /// Member of the group only.
    pub bob: UserId,
    pub group: GroupId,
    pub channel: ChannelId,
}

pub fn client(sim: &Simulator, request_timeout: Duration) -> BotApi {
    let token = BotToken::parse(sim.token()).expect("simulator token has a real token's shape");
    let options = BotApiOptions {
        base_url: sim.base_url().parse().expect("simulator URL"),
        request_timeout,
        long_poll: Duration::from_secs(2),
        ..BotApiOptions::default()
    };
    BotApi::new(token, options).expect("client builds")
}

pub fn world() -> World {
    let sim = Simulator::start().expect("simulator starts");
    let owner = sim.add_user("Owner");
    let alice = sim.add_user_with("Alice", Some("A."), Some("alice"));
    let bob = sim.add_user("Bob");
    let group = sim.create_supergroup("Test group", owner).expect("group");
    let channel = sim
        .create_channel("News", Some("test_news"), owner)
        .expect("channel");
    sim.add_bot(group, owner, Some(AdminRights::moderator()))
        .expect("bot joins group");
    sim.add_bot(channel, owner, Some(AdminRights::full()))
        .expect("bot joins channel");
    for (chat, user) in [
        (group.into(), alice),
        (group.into(), bob),
        (channel.into(), alice),
    ] {
        let chat: gmbot_core::domain::ChatId = chat;
        sim.join(chat, user).expect("join");
    }
    let api = client(&sim, Duration::from_secs(5));
    World {
        sim,
        api,
        owner,
        alice,
        bob,
        group,
        channel,
    }
}

/// The secret half of the simulator's token, which must never appear in output.
pub fn token_secret(sim: &Simulator) -> String {
    sim.token()
        .split_once(':')
        .map(|(_, s)| s.to_owned())
        .expect("token has a colon")
}
