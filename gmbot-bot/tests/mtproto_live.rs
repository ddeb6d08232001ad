//! The MTProto frontend against real Telegram: sign in with the bot token, list one page of
//! a group's members. Runs only when the credentials are in the environment, and says so
//! when they are not (no machine here reaches Telegram):
//!
//! ```sh
//! TELEGRAM_LIVE_BOT_TOKEN=123:abc TELEGRAM_LIVE_API_ID=12345 \
//! TELEGRAM_LIVE_API_HASH=0123456789abcdef0123456789abcdef \
//! TELEGRAM_LIVE_GROUP=-1001234567890 \
//! cargo test -p gmbot-bot --test mtproto_live -- --nocapture
//! ```
//!
//! The bot must be an administrator of the group. The session lives in a temporary SQLite
//! database and is signed in afresh (Telegram limits bot sign-ins: do not loop this).

use std::sync::Arc;

use gmbot_bot::config::MtprotoCredentials;
use gmbot_bot::mtproto::MtprotoConnection;
use gmbot_bot::{BotToken, SecretString};
use gmbot_core::audit::{DirectoryCursor, MemberDirectory};
use gmbot_core::domain::GroupId;
use gmbot_core::store::{self, MigrationMode};

#[tokio::test]
async fn signs_in_and_lists_a_page_of_members() {
    let vars = [
        "TELEGRAM_LIVE_BOT_TOKEN",
        "TELEGRAM_LIVE_API_ID",
        "TELEGRAM_LIVE_API_HASH",
        "TELEGRAM_LIVE_GROUP",
    ];
    let values: Vec<Option<String>> = vars.iter().map(|v| std::env::var(v).ok()).collect();
    let [Some(token), Some(api_id), Some(api_hash), Some(group)] = &values[..] else {
        eprintln!(
            "skipped: the live MTProto test needs {} (see this file's header)",
            vars.join(", ")
        );
        return;
    };
    let token = BotToken::parse(token).expect("TELEGRAM_LIVE_BOT_TOKEN is a bot token");
    let creds = MtprotoCredentials {
        api_id: api_id.parse().expect("TELEGRAM_LIVE_API_ID is a number"),
        api_hash: SecretString::new(api_hash.clone()),
    };
    let group = GroupId(group.parse().expect("TELEGRAM_LIVE_GROUP is a chat id"));
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("live.db").display());
    let store = store::open(&url.parse().expect("url"), MigrationMode::Apply)
        .await
        .expect("store");
    let conn = MtprotoConnection::open(Arc::clone(&store), "live", &creds, &token)
        .await
        .expect("signed in");
    let page = conn
        .directory()
        .page(group, &DirectoryCursor::start())
        .await
        .expect("a page of members");
    eprintln!(
        "group {group}: {} members, first page {} listed, {} to audit",
        page.total,
        page.listed,
        page.members.len()
    );
    assert!(page.total as usize >= page.members.len());
    let session = store
        .mtproto_session("live")
        .await
        .expect("read")
        .expect("the session was saved");
    assert!(session.dc_options.iter().any(|d| d.auth_key_hex.is_some()));
    conn.close().await;
}
