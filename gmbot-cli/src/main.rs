//! `gmbot`, GMBot's operator CLI: migrate the database, protect and list
//! groups, show a group's status, import a v1 `.env`, warm the shared
//! membership cache.
//!
//! `main` parses the command line, runs the chosen command and turns its
//! outcome into an exit code: 0 success, 1 runtime failure, 2 bad usage or
//! invalid input. Errors are printed as one `error: …` line with their whole
//! cause chain; a panic is reported the same way, as a bug, without a
//! backtrace.
//!
//! Layout: [`cli`] (arguments), [`commands`] (one file per command),
//! [`database`] (opening the store the URL names), [`error`] (exit codes),
//! [`output`], [`table`] and [`view`] (what is printed), [`env_file`] and
//! [`tme_link`] (v1 configuration parsing).

mod cli;
mod commands;
mod database;
mod env_file;
mod error;
mod output;
mod table;
mod tme_link;
mod view;

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use crate::cli::Cli;
use crate::error::{CliError, EXIT_RUNTIME};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    // A panic on this thread is reported by the hook as an internal error,
    // without a backtrace; one in a database thread comes back as an error
    // value and is reported below like any other.
    panic::set_hook(Box::new(|info| {
        if std::thread::current().name() == Some("main") {
            let e = CliError::internal(info.payload());
            let _ = writeln!(std::io::stderr(), "error: {}", e.message());
        }
    }));
    let Ok(result) = panic::catch_unwind(AssertUnwindSafe(|| run(cli))) else {
        return ExitCode::from(EXIT_RUNTIME);
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", e.message());
            ExitCode::from(e.code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(e).context("cannot start the async runtime"))?;
    let output = runtime.block_on(commands::run(cli))?;
    output::write_stdout(&output)
}
