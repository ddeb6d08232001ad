//! `gmbot migrate`: applies pending schema migrations and says what it did; `--check` only
//! says whether this version of GMBot can run against the schema.

use gmbot_core::store::{MigrationReport, SchemaFit, SchemaStatus, StoreError};

use crate::database::Database;
use crate::error::CliError;

#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    /// Change nothing: print the schema's version and whether this version of GMBot can run
    /// against it; exit 1 when it is behind (migrations pending) or too new.
    #[arg(long)]
    check: bool,
}

pub(super) async fn run(db: &Database, args: Args) -> Result<String, CliError> {
    if args.check {
        return check(&db.schema_status().await?);
    }
    let report = db.migrate().await?;
    Ok(render(&report))
}

fn render(report: &MigrationReport) -> String {
    let status = &report.status;
    let mut out: String = report
        .applied
        .iter()
        .map(|(version, name)| format!("applied migration V{version} {name}\n"))
        .collect();
    out.push_str(&match (report.applied.is_empty(), status.fit()) {
        (_, SchemaFit::AheadCompatible) => ahead(status),
        (true, _) => format!("schema is up to date at version {}\n", status.current),
        (false, _) => format!("schema is now at version {}\n", status.current),
    });
    out.push_str(&readers(status));
    out
}

fn check(status: &SchemaStatus) -> Result<String, CliError> {
    let out = match status.fit() {
        SchemaFit::Current => format!(
            "schema is at version {}, the version this binary ships\n",
            status.current
        ),
        SchemaFit::AheadCompatible => ahead(status),
        SchemaFit::Behind => {
            let pending: Vec<String> = status.pending.iter().map(|v| format!("V{v}")).collect();
            return Err(CliError::from(StoreError::NotMigrated {
                current: status.current,
                expected: status.known,
            })
            .context(format!(
                "{} migration(s) pending ({})",
                pending.len(),
                pending.join(", ")
            )));
        }
        SchemaFit::TooNew => {
            return Err(StoreError::SchemaTooNew {
                found: status.current,
                known: status.known,
                needs: status.min_reader,
            }
            .into())
        }
    };
    Ok(out + &readers(status))
}

fn ahead(status: &SchemaStatus) -> String {
    format!(
        "schema is at version {}, ahead of this binary ({}) and compatible with it: nothing to apply\n",
        status.current, status.known
    )
}

fn readers(status: &SchemaStatus) -> String {
    format!(
        "gmbot binaries that ship schema version {} or later can run against it (this one ships {})\n",
        status.min_reader, status.known
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(current: i64, pending: Vec<i64>, min_reader: i64) -> SchemaStatus {
        SchemaStatus {
            current,
            known: 6,
            pending,
            min_reader,
        }
    }

    #[test]
    fn says_what_was_applied_or_that_nothing_was() {
        let none = MigrationReport {
            applied: vec![],
            status: status(6, vec![], 6),
        };
        assert_eq!(
            render(&none),
            "schema is up to date at version 6\n\
             gmbot binaries that ship schema version 6 or later can run against it (this one ships 6)\n"
        );
        let some = MigrationReport {
            applied: vec![(5, "five".into()), (6, "six".into())],
            status: status(6, vec![], 6),
        };
        assert!(
            render(&some).starts_with(
                "applied migration V5 five\napplied migration V6 six\nschema is now at version 6\n"
            ),
            "{}",
            render(&some)
        );
        let ahead = MigrationReport {
            applied: vec![],
            status: status(7, vec![], 6),
        };
        assert!(
            render(&ahead).starts_with(
                "schema is at version 7, ahead of this binary (6) and compatible with it: nothing to apply\n"
            ),
            "{}",
            render(&ahead)
        );
    }

    #[test]
    fn check_passes_only_when_this_version_can_run() {
        assert!(check(&status(6, vec![], 6))
            .expect("current")
            .starts_with("schema is at version 6, the version this binary ships\n"));
        assert!(check(&status(7, vec![], 6))
            .expect("ahead")
            .contains("ahead of this binary (6) and compatible"));
        let behind = check(&status(5, vec![6], 5)).expect_err("behind");
        assert_eq!(behind.code(), 1);
        assert_eq!(
            behind.message(),
            "1 migration(s) pending (V6): schema not migrated (database at version 5, this binary needs 6): run `gmbot migrate`"
        );
        let too_new = check(&status(8, vec![], 7)).expect_err("too new");
        assert_eq!(too_new.code(), 1);
        assert!(
            too_new.message().contains("upgrade gmbot"),
            "{}",
            too_new.message()
        );
    }
}
