//! The engine's error: the one failure that leaves it without a verdict.
//!
//! Telegram failures never surface here — an unknown membership is decided by
//! the group's failure policy and reported in the verdict. Only a group whose
//! configuration cannot be read at all (database down, nothing cached) has no
//! answer; the frontend should retry the update later.

use std::sync::Arc;

use crate::domain::GroupId;
use crate::store::StoreError;

/// Why [`Engine::verify`](super::Engine::verify) gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The group's configuration could not be read and none was cached.
    #[error("cannot read the settings of group {group}: {source}")]
    Store {
        /// The group being verified.
        group: GroupId,
        /// The store's error (shared by every caller that waited on the same read).
        #[source]
        source: Arc<StoreError>,
    },
}
