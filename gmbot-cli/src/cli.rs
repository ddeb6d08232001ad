//! The command line: the global `--database-url` option and the closed set of commands.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands::{audit, cache, groups_list, import_env, migrate, protect, status, unprotect};
use crate::database::UrlOrigin;

/// Where the CLI stores its state when neither `--database-url` nor `DATABASE_URL` is given.
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://gmbot.db";

/// Operate GMBot's database: migrate it, protect and list groups, import a v1 `.env`, warm the shared cache.
#[derive(Debug, Parser)]
#[command(name = "gmbot", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Database: sqlite://PATH, sqlite::memory: or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL,
        value_name = "URL"
    )]
    pub(crate) database_url: String,

    /// Where `database_url` came from, so errors can name it (not an argument).
    #[arg(skip)]
    pub(crate) database_url_origin: UrlOrigin,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Every command `gmbot` knows.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Apply pending schema migrations and print what was applied (--check: only report).
    Migrate(migrate::Args),
    /// Protect a group, or add channels to an existing protection.
    Protect(protect::Args),
    /// Stop protecting a group (its settings and restriction history are kept).
    Unprotect(unprotect::Args),
    /// Commands about all groups.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Show one group: channels, settings, active restrictions, members seen.
    Status(status::Args),
    /// Create the protection a v1 `.env` (GROUP_ID, CHANNEL_ID, CHANNEL_URL) described.
    ImportEnv(import_env::Args),
    /// Check every member of a group against its channels (resumable; --apply mutes).
    Audit(audit::Args),
    /// Commands about the shared membership cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
}

/// `gmbot groups …`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List every known group with its state and channels.
    List(groups_list::Args),
}

impl Cli {
    /// Parses the process arguments; on bad usage clap prints the error and exits with 2.
    pub(crate) fn parse_args() -> Self {
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.database_url_origin = match matches.value_source("database_url") {
            Some(ValueSource::CommandLine) => UrlOrigin::Flag,
            Some(ValueSource::EnvVariable) => UrlOrigin::Env,
            _ => UrlOrigin::Default,
        };
        cli
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
