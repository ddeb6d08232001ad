//! `gmbot migrate`: applies pending schema migrations and says what it did.

use gmbot_core::store::MigrationReport;

use crate::database::Database;
use crate::error::CliError;

pub(super) async fn run(db: &Database) -> Result<String, CliError> {
    let report = db.migrate().await?;
    Ok(render(&report))
}

fn render(report: &MigrationReport) -> String {
    if report.applied.is_empty() {
        return format!("schema is up to date at version {}\n", report.current);
    }
    let mut out: String = report
        .applied
        .iter()
        .map(|(version, name)| format!("applied migration V{version} {name}\n"))
        .collect();
    out.push_str(&format!("schema is now at version {}\n", report.current));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_was_applied_or_that_nothing_was() {
        let none = MigrationReport {
            applied: vec![],
            current: 3,
        };
        assert_eq!(render(&none), "schema is up to date at version 3\n");
        let some = MigrationReport {
            applied: vec![(1, "initial".into()), (2, "more".into())],
            current: 2,
        };
        assert_eq!(
            render(&some),
            "applied migration V1 initial\napplied migration V2 more\nschema is now at version 2\n"
        );
    }
}
