//! The update handlers: the one `match` over [`UpdateKind`] that every transport calls.
//!
//! Transports convert, de-duplicate and count updates, then call [`handle`];
//! each update kind has its own file here, and the work itself is done by the
//! [`flows`](crate::flows). Handlers record `gmbot_update_duration_seconds{kind}`
//! and count failures in `gmbot_errors_total{kind}`.

mod callback_query;
mod chat_join_request;
mod chat_member;
mod error;
mod message;
mod my_chat_member;

use std::time::Instant;

use crate::app::App;
use crate::update::{Update, UpdateKind};

pub(crate) use self::callback_query::{button, Button};
pub use self::error::HandleError;

/// Handles one update. An error means the update could not be handled (e.g.
/// the database is down); it has been logged and counted, and the transport
/// may retry it.
pub async fn handle(app: &App, update: Update) -> Result<(), HandleError> {
    let started = Instant::now();
    let kind = update.kind.name();
    let id = update.id;
    let result = match update.kind {
        UpdateKind::Message(msg) => message::handle(app, id, msg).await,
        UpdateKind::EditedMessage(msg) => message::handle_edit(app, id, msg).await,
        UpdateKind::CallbackQuery(cq) => callback_query::handle(app, id, cq).await,
        UpdateKind::ChatMember(change) => chat_member::handle(app, id, change).await,
        UpdateKind::MyChatMember(change) => my_chat_member::handle(app, id, change).await,
        UpdateKind::ChatJoinRequest(req) => chat_join_request::handle(app, id, req).await,
        UpdateKind::Other(_) => Ok(()),
    };
    let elapsed = started.elapsed();
    app.metrics()
        .update_duration
        .with_label_values(&[kind])
        .observe(elapsed.as_secs_f64());
    if let Err(err) = &result {
        app.metrics().errors.with_label_values(&[err.kind()]).inc();
        log::warn!(
            update_id = id,
            kind = kind,
            latency_ms = elapsed.as_millis() as u64,
            error:display = err;
            "update not handled"
        );
    }
    result
}
