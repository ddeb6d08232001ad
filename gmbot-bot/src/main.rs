//! `gmbot-bot`: GMBot's Telegram bot. Parses the configuration, installs logging (and Sentry),
//! runs the bot until SIGTERM or Ctrl-C, and exits with a meaningful code: 0 after a clean
//! stop, 1 on a runtime error, 2 on bad configuration, 3 when the database schema does not fit
//! this version (behind: run `gmbot migrate`; too new: deploy the newer version). `gmbot-bot demo` runs it against the
//! simulated Telegram instead.

use std::process::ExitCode;

use gmbot_bot::run::{self, RunOptions};
use gmbot_bot::runtime::Shutdown;
use gmbot_bot::sentry::SentrySettings;
use gmbot_bot::{demo, logging, Config};

const NO_TOKEN: &str = "\
gmbot-bot needs a bot token to talk to Telegram.

  1. In Telegram, open @BotFather and send /newbot; it answers with a token
     that looks like 123456789:AAH...
  2. export TELEGRAM_BOT_TOKEN='<that token>'
  3. Run gmbot-bot again, add the bot to your group and channel as an admin,
     and send /protect @yourchannel in the group.

No token yet? Watch GMBot work against a simulated Telegram:

  cargo run --release -p gmbot-bot -- demo";

const USAGE: &str = "\
usage: gmbot-bot          run the bot (configured by environment variables; see README.md)
       gmbot-bot demo     run the bot against a simulated Telegram with a scripted scenario";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("demo") => return demo::main(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("gmbot-bot: unknown argument `{other}`\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gmbot-bot: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if config.token.is_none() {
        for warning in &config.warnings {
            eprintln!("gmbot-bot: warning: {warning}");
        }
        eprintln!("{NO_TOKEN}");
        return ExitCode::from(2);
    }
    let sentry = match SentrySettings::from_config(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gmbot-bot: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = std::env::var("RUST_LOG").ok();
    let logged = if sentry.is_some() {
        logging::init_with_sentry(config.log_format, filter.as_deref())
    } else {
        logging::init(config.log_format, filter.as_deref())
    };
    if let Err(e) = logged {
        eprintln!("gmbot-bot: {e}");
    }
    let _sentry = sentry.map(gmbot_bot::sentry::init);
    for warning in &config.warnings {
        log::warn!("{warning}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!(error:display = e; "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals();
        let mut options = RunOptions::default();
        config.budgets.apply(&mut options.dispatch);
        options.raid = config.raid;
        run::run(&config, options, shutdown).await
    });
    match result {
        Ok(report) => {
            log::info!(
                handled = report.drain.stats.handled,
                abandoned = report.drain.abandoned;
                "gmbot-bot stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("gmbot-bot stopped: {e:#}");
            eprintln!("gmbot-bot: {e:#}");
            ExitCode::from(if run::is_schema_mismatch(&e) { 3 } else { 1 })
        }
    }
}
