//! `chat_join_request`: someone asked to join a chat; the join gate decides in gated groups.

use crate::app::App;
use crate::flows::gate;
use crate::update::JoinRequest;

use super::HandleError;

pub(super) async fn handle(app: &App, update_id: i64, req: JoinRequest) -> Result<(), HandleError> {
    log::debug!(
        update_id = update_id,
        chat_id = req.chat.id.get(),
        user_id = req.from.id.get(),
        query = req.query_id.is_some();
        "join request"
    );
    gate::requested(app, &req).await
}
