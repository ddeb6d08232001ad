//! `HandleError`: why an update could not be handled.

use gmbot_core::engine::EngineError;
use gmbot_core::store::StoreError;
use gmbot_core::telegram::TelegramError;

/// Why an update could not be handled. Expected outcomes (a non-member, a
/// spoofed button) are not errors; these are failures worth a log line and a
/// `gmbot_errors_total{kind}` count.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The engine had no verdict (its configuration could not be read).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A Telegram call failed in a way the handler could not absorb.
    #[error("Telegram error: {0}")]
    Telegram(#[from] TelegramError),
}

impl HandleError {
    /// A bounded name for `gmbot_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(_) => "store",
            Self::Engine(_) => "engine",
            Self::Telegram(_) => "telegram",
        }
    }
}
