//! Updates kept in the store between their receipt and their handling, so that a stop or a
//! long-polling backlog loses none of them.

use super::UnixTime;

/// One update accepted from Telegram and not yet handled, as the bot keeps it in the store.
///
/// The payload is opaque to the store: the frontend that wrote it decodes it (and names the
/// format version inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournaledUpdate {
    /// Telegram's `update_id` (one row per id).
    pub update_id: i64,
    /// The update, encoded by the frontend.
    pub payload: String,
    /// When the bot received it.
    pub received_at: UnixTime,
}
