//! `my_chat_member`: the bot's own status changed in a group or channel.

use crate::app::App;
use crate::flows::bot_status;
use crate::update::ChatMemberUpdate;

use super::HandleError;

pub(super) async fn handle(
    app: &App,
    update_id: i64,
    change: ChatMemberUpdate,
) -> Result<(), HandleError> {
    log::info!(
        update_id = update_id,
        chat_id = change.chat.id.get(),
        old = change.old.as_str(),
        new = change.new.as_str();
        "the bot's status changed"
    );
    bot_status::changed(app, &change).await
}
