//! A group becoming a supergroup (`migrate_to_chat_id` / `migrate_from_chat_id`): the protection moves with it.
//!
//! Telegram sends a service message in both chats; whichever arrives first
//! moves the group (settings, channels, restrictions, seen members) in one
//! store transaction, and the second finds nothing left to move.

use gmbot_core::domain::GroupId;
use gmbot_core::store::StoreError;

use crate::app::App;

/// Moves the protection of `from` to `to`. A no-op if it already moved (or
/// `from` was never protected).
pub async fn migrate(app: &App, from: GroupId, to: GroupId) -> Result<(), StoreError> {
    if from == to {
        return Ok(());
    }
    let result = app
        .store()
        .migrate_group(from, to, app.clock().unix_now())
        .await;
    // Both ids: the old one is gone, the new one may have been cached as unknown.
    app.engine().invalidate_group(from).await;
    app.engine().invalidate_group(to).await;
    app.engine().invalidate_admins(to).await;
    match result {
        Ok(()) => {
            log::info!(group_id = to.get(), from_group_id = from.get(); "protection moved to the new supergroup");
            Ok(())
        }
        // Already moved by the other service message, or never protected.
        Err(StoreError::UnknownGroup(_)) => Ok(()),
        Err(StoreError::Conflict(reason)) => {
            log::warn!(
                group_id = to.get(),
                from_group_id = from.get(),
                reason = reason.as_str();
                "the new supergroup is already known; the old group's protection was not moved"
            );
            Ok(())
        }
        Err(err) => Err(err),
    }
}
