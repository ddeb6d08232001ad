//! `gmbot unprotect`: switches a group's protection off.
//!
//! The group's settings, restriction history and seen members are kept, so
//! protecting it again later starts from where it was. Lifting the mutes the
//! bot placed needs Telegram, so the bot's reconciliation pass does it.

use gmbot_core::domain::{GroupId, UnixTime};
use gmbot_core::store::StoreError;

use crate::database::Database;
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The group's chat id (negative; supergroups look like -1001234567890).
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    group: GroupId,
}

pub(super) async fn run(db: &Database, args: Args) -> Result<String, CliError> {
    let store = db.open().await?;
    if !store.unprotect(args.group, UnixTime::now()).await? {
        return Err(StoreError::UnknownGroup(args.group).into());
    }
    let active = store.count_active_restrictions(args.group).await?;
    let mut out = format!("group {} is no longer protected\n", args.group);
    if active > 0 {
        out.push_str(&format!(
            "{active} member(s) are still muted by the bot; the bot lifts these restrictions when it runs\n"
        ));
    }
    Ok(out)
}
