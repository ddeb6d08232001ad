//! The admin commands: parsing a message into a [`Command`] and running it, one file per command.
//!
//! Who may do what (DESIGN.md, "Admin commands"): `/start` and `/help` work
//! for everybody, in private and in groups; `/protect`, `/unprotect`,
//! `/status` and `/settings` only for the group's administrators. A non-admin
//! never gets a public error: their command is ignored in the group (and
//! logged), a button press is refused with a private callback answer. A group
//! command sent in private is answered with how to use it in a group.
//!
//! Telegram addresses a command to one bot with `/cmd@BotUsername`; in a
//! group with several bots GMBot answers only its own (TELEGRAM.md, "Updates").

mod caller;
mod help;
mod parse;
mod protect;
mod reply;
pub mod settings;
mod start;
mod status;
mod unprotect;

use crate::app::App;
use crate::handlers::HandleError;
use crate::update::Message;

pub use self::parse::{parse, MAX_ARGS};
pub(crate) use self::reply::quote;

/// A command addressed to this bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/start` (a private chat opening, or the bot added through a `startgroup` link).
    Start,
    /// `/help`.
    Help,
    /// `/protect @channel [@channel…]`: the arguments as typed.
    Protect(Vec<String>),
    /// `/unprotect`.
    Unprotect,
    /// `/status`.
    Status,
    /// `/settings [allow|disallow <user_id>]`: the arguments as typed.
    Settings(Vec<String>),
}

impl Command {
    /// The command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Help => "help",
            Self::Protect(_) => "protect",
            Self::Unprotect => "unprotect",
            Self::Status => "status",
            Self::Settings(_) => "settings",
        }
    }
}

/// Runs a command sent in `msg`. Errors are failures worth counting (the
/// store or Telegram failed); refusals are not errors.
pub async fn handle(app: &App, msg: &Message, cmd: Command) -> Result<(), HandleError> {
    log::debug!(
        group_id = msg.chat.id.get(),
        user_id = msg.from.as_ref().map_or(0, |u| u.id.get()),
        command = cmd.name();
        "command"
    );
    match cmd {
        Command::Start => start::run(app, msg).await,
        Command::Help => help::run(app, msg).await,
        Command::Protect(args) => protect::run(app, msg, &args).await,
        Command::Unprotect => unprotect::run(app, msg).await,
        Command::Status => status::run(app, msg).await,
        Command::Settings(args) => settings::run(app, msg, &args).await,
    }
}
