//! `gmbot-bot`: GMBot's Telegram bot. Parses the configuration, reports what it would run and
//! exits with a meaningful code (0 ok, 2 bad configuration).

use std::process::ExitCode;

use gmbot_bot::Config;

const NO_TOKEN: &str = "\
gmbot-bot needs a bot token to talk to Telegram.

  1. In Telegram, open @BotFather and send /newbot; it answers with a token
     that looks like 123456789:AAH...
  2. export TELEGRAM_BOT_TOKEN='<that token>'
  3. Run gmbot-bot again, add the bot to your group and channel as an admin,
     and send /protect @yourchannel in the group.

No token yet? Watch GMBot work against a simulated Telegram:

  cargo run --release -p gmbot-bot -- demo";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("demo") {
        println!("The demo runs the bot against the simulated Telegram; it arrives with the bot's update handling.");
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gmbot-bot: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        eprintln!("gmbot-bot: warning: {warning}");
    }
    let Some(token) = &config.token else {
        eprintln!("{NO_TOKEN}");
        return ExitCode::from(2);
    };
    let transport = match &config.webhook {
        Some(w) => format!("webhook at {} (listening on {})", w.url, config.http_listen),
        None => "long polling".to_owned(),
    };
    println!(
        "gmbot-bot: configuration is valid: bot {}, Bot API {}, database {}, cache {}, transport {}.",
        token.bot_id(),
        config.api_url,
        config.database_url,
        if config.redis_url.is_some() { "Redis" } else { "in-process" },
        transport,
    );
    println!("gmbot-bot: update handling is not wired into this binary yet; nothing to run.");
    ExitCode::SUCCESS
}
