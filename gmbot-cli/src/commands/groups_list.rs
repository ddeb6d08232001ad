//! `gmbot groups list`: every known group with its state and channels.

use gmbot_core::domain::ProtectedGroup;

use crate::database::Database;
use crate::error::CliError;
use crate::output::{self, Format};
use crate::table::Table;
use crate::view::GroupView;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(super) async fn run(db: &Database, args: Args) -> Result<String, CliError> {
    let store = db.open().await?;
    let groups = store.list_groups().await?;
    match args.format {
        Format::Json => output::json(&groups.iter().map(GroupView::from).collect::<Vec<_>>()),
        Format::Table => Ok(table(&groups)),
    }
}

fn table(groups: &[ProtectedGroup]) -> String {
    if groups.is_empty() {
        return "no groups yet: protect one with `gmbot protect --group ID --channel @name`\n"
            .to_owned();
    }
    let mut t = Table::new(&["GROUP ID", "STATE", "ENABLED", "TITLE", "CHANNELS"]);
    for g in groups {
        let channels: Vec<String> = g.channels.iter().map(ToString::to_string).collect();
        t.row(vec![
            g.id.to_string(),
            g.state.as_str().to_owned(),
            if g.is_enforced() { "yes" } else { "no" }.to_owned(),
            g.title.clone().unwrap_or_default(),
            channels.join(", "),
        ]);
    }
    t.render(0)
}
