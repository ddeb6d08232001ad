//! `chat_member`: someone's membership changed in a linked channel or a protected group.

use gmbot_core::domain::{ChannelId, GroupId};

use crate::app::App;
use crate::flows::join;
use crate::update::{ChatKind, ChatMemberUpdate};

use super::HandleError;

pub(super) async fn handle(
    app: &App,
    update_id: i64,
    change: ChatMemberUpdate,
) -> Result<(), HandleError> {
    log::debug!(
        update_id = update_id,
        chat_id = change.chat.id.get(),
        user_id = change.user.id.get(),
        old = change.old.as_str(),
        new = change.new.as_str();
        "membership changed"
    );
    match change.chat.kind {
        ChatKind::Channel => match ChannelId::new(change.chat.id.get()) {
            Ok(channel) => join::channel_member_changed(app, channel, &change).await,
            Err(_) => Ok(()),
        },
        ChatKind::Group | ChatKind::Supergroup => {
            let Ok(group) = GroupId::new(change.chat.id.get()) else {
                return Ok(());
            };
            if change.old.is_admin() || change.new.is_admin() {
                app.engine().invalidate_admins(group).await;
            }
            if change.joined() {
                join::member_joined_group(app, group, &change.user).await?;
            }
            Ok(())
        }
        // A chat type newer than this version: neither a group nor a channel to act on.
        ChatKind::Private | ChatKind::Other => Ok(()),
    }
}
