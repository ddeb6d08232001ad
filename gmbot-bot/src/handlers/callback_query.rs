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
const SETTINGS_PREFIX: &str = commands::settings::PREFIX;

/// Which of the bot's buttons a callback's data names (untrusted: anyone can send any data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Button {
    /// The settings keyboard (`s:`).
    Settings,
    /// "I've joined" under a warning (`j:`).
    Joined,
    /// The join gate's "let me in" (`g:`).
    Gate,
    /// None of ours, or no data at all.
    Unknown,
}

/// The button `data` belongs to, by its prefix.
pub(crate) fn button(data: Option<&str>) -> Button {
    match data {
        Some(d) if d.starts_with(SETTINGS_PREFIX) => Button::Settings,
        Some(d) if d.starts_with(JOINED_PREFIX) => Button::Joined,
        Some(d) if d.starts_with(GATE_PREFIX) => Button::Gate,
        _ => Button::Unknown,
    }
}

pub(super) async fn handle(
    app: &App,
    update_id: i64,
    cq: CallbackQuery,
) -> Result<(), HandleError> {
    match (button(cq.data.as_deref()), cq.data.as_deref()) {
        (Button::Settings, _) => commands::settings::handle_callback(app, &cq).await,
        (Button::Joined, Some(data)) => joined_button::pressed(app, &cq, data).await,
        (Button::Gate, Some(data)) => gate::pressed(app, &cq, data).await,
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
