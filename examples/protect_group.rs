//! Uses gmbot-core as a library: opens a store, protects a group with a
//! channel, reads the group back and prints it.
//!
//! ```text
//! cargo run -p gmbot-examples --example protect_group
//! DATABASE_URL=sqlite://example.db cargo run -p gmbot-examples --example protect_group
//! ```
//!
//! Without `DATABASE_URL` it uses a private in-memory SQLite database, so it
//! leaves nothing behind. With one, pending migrations are applied first.

use std::process::ExitCode;

use anyhow::Context;
use gmbot_core::domain::{ChannelRef, EnforcedChannel, GroupId, ProtectRequest, UnixTime};
use gmbot_core::store::{self, DatabaseUrl, MigrationMode};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let url: DatabaseUrl = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite::memory:".to_owned())
        .parse()
        .context("invalid DATABASE_URL")?;
    println!("store: {url}");
    let store = store::open(&url, MigrationMode::Apply)
        .await
        .context("cannot open the store")?;

    let group = GroupId::new(-1_001_234_567_890)?;
    let channel: ChannelRef = "@gmbot_example".parse()?;
    let request = ProtectRequest {
        group,
        title: Some("Example group".to_owned()),
        owner: None,
        channels: vec![EnforcedChannel::from_ref(channel)],
    };
    store.protect(&request, UnixTime::now()).await?;

    let stored = store
        .group(group)
        .await?
        .context("the group just protected is missing")?;
    println!(
        "group {} ({}): {}, enforced: {}",
        stored.id,
        stored.title.as_deref().unwrap_or("untitled"),
        stored.state.as_str(),
        stored.is_enforced()
    );
    for c in &stored.channels {
        println!(
            "  requires {c}, join link: {}",
            c.join_url().as_deref().unwrap_or("(created by the bot)")
        );
    }
    let s = &stored.settings;
    println!(
        "  settings: action {}, mute {} s (0 = until joined), warning deleted after {} s, fail {}",
        s.action.as_str(),
        s.mute_seconds,
        s.warning_ttl_seconds,
        s.failure_policy.as_str()
    );
    Ok(())
}
