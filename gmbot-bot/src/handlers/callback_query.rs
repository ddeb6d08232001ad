//! `callback_query`: a press on an inline button — "I've joined" (`j:`), the join gate's
//! "I've joined — let me in" (`g:`) or the settings keyboard (`s:`).

use gmbot_core::dispatch::Lane;
use gmbot_core::telegram::TelegramApi;

use crate::app::App;
use crate::commands;
use crate::flows::gate::{self, GATE_PREFIX};
use crate::flows::joined_button;
use crate::flows::warn::JOINED_PREFIX;
use crate::update::CallbackQuery;

use super::HandleError;

/// Prefix of the settings keyboard's callback data.
const SETTINGS_PREFIX: &str = "s:";

pub(super) async fn handle(
    app: &App,
    update_id: i64,
    cq: CallbackQuery,
) -> Result<(), HandleError> {
    match cq.data.as_deref() {
        Some(data) if data.starts_with(SETTINGS_PREFIX) => {
            commands::settings::handle_callback(app, &cq).await
        }
        Some(data) if data.starts_with(JOINED_PREFIX) => {
            joined_button::pressed(app, &cq, data).await
        }
        Some(data) if data.starts_with(GATE_PREFIX) => gate::pressed(app, &cq, data).await,
        _ => {
            // Not a button of ours (or no data at all): answer so the spinner stops.
            log::warn!(
                update_id = update_id,
                user_id = cq.from.id.get(),
                data_len = cq.data.as_deref().map_or(0, str::len);
                "callback query with unknown data"
            );
            if let Err(err) = app
                .telegram_in(Lane::Interactive)
                .answer_callback(&cq.id, Some(joined_button::INVALID), false)
                .await
            {
                log::info!(error:display = err; "cannot answer a callback query");
            }
            Ok(())
        }
    }
}
