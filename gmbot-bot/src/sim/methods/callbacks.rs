//! `answerCallbackQuery`: every callback query must be answered once, or the user's button
//! keeps spinning; a second answer or an unknown id is rejected as Telegram does.

use serde_json::Value;

use super::super::api_error::ApiError;
use super::super::params::Params;
use super::super::world::{CallbackAnswer, World};

pub(super) fn answer_callback_query(world: &mut World, p: &Params) -> Result<Value, ApiError> {
    let id = p
        .string("callback_query_id")
        .ok_or_else(|| ApiError::bad_request("callback_query_id is empty"))?;
    let text = p.string("text");
    if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::bad_request("MESSAGE_TOO_LONG"));
    }
    let show_alert = p.flag("show_alert")?.unwrap_or(false);
    let state = world
        .callbacks
        .get_mut(&id)
        .filter(|s| s.answer.is_none())
        .ok_or_else(|| {
            ApiError::bad_request(
                "query is too old and response timeout expired or query ID is invalid",
            )
        })?;
    state.answer = Some(CallbackAnswer { text, show_alert });
    Ok(Value::Bool(true))
}
