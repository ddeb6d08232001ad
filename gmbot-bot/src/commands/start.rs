//! `/start`: in private, remembers that the user opened a chat with the bot (so
//! it may write to them later) and shows the help; in a group, the help.

use gmbot_core::domain::Owner;

use super::caller::is_private;
use crate::app::App;
use crate::handlers::HandleError;
use crate::update::Message;

/// Answers `/start`.
pub(crate) async fn run(app: &App, msg: &Message) -> Result<(), HandleError> {
    if is_private(msg) {
        if let Some(from) = &msg.from {
            // A bot may message a user only after they started it (Telegram
            // answers 403 otherwise). Recorded for every user who starts the
            // bot, since the chat may come before their first /protect.
            let existing = app.store().owner(from.id).await?;
            let owner = Owner {
                user_id: from.id,
                username: from.username.clone(),
                display_name: Some(from.display_name()),
                can_be_messaged: true,
                created_at: existing.map_or_else(|| app.clock().unix_now(), |o| o.created_at),
            };
            app.store().upsert_owner(&owner).await?;
        }
    }
    super::help::run(app, msg).await
}
