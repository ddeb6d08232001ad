//! The commands, one file each, dispatched in one place.
//!
//! Every command returns the text to print on success; `main` writes it, so
//! nothing is printed half-way through a command that then fails.

pub(crate) mod audit;
pub(crate) mod cache;
pub(crate) mod groups_list;
pub(crate) mod import_env;
pub(crate) mod migrate;
pub(crate) mod protect;
pub(crate) mod status;
pub(crate) mod unprotect;

use crate::cli::{Cli, Command, GroupsCommand};
use crate::database::Database;
use crate::error::CliError;

/// Runs the command the operator chose and returns its output.
pub(crate) async fn run(cli: Cli) -> Result<String, CliError> {
    let db = Database::new(cli.database_url, cli.database_url_origin);
    match cli.command {
        Command::Migrate(args) => migrate::run(&db, args).await,
        Command::Protect(args) => protect::run(&db, args).await,
        Command::Unprotect(args) => unprotect::run(&db, args).await,
        Command::Groups(GroupsCommand::List(args)) => groups_list::run(&db, args).await,
        Command::Status(args) => status::run(&db, args).await,
        Command::ImportEnv(args) => import_env::run(&db, args).await,
        Command::Audit(args) => audit::run(&db, args).await,
        Command::Cache(command) => cache::run(&db, command).await,
    }
}
