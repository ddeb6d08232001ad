//! A short-lived cache of each group's default permissions, read from `getChat` to lift a
//! mute: restoring "everything allowed" would grant more than the group allows (TELEGRAM.md,
//! "Acting"), and one `getChat` per unmute would double the calls of a join wave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frankenstein::types::ChatPermissions;
use gmbot_core::domain::GroupId;

/// Shared by clones of the client.
#[derive(Debug, Clone)]
pub(super) struct PermissionsCache {
    ttl: Duration,
    entries: Arc<Mutex<HashMap<GroupId, (Instant, ChatPermissions)>>>,
}

impl PermissionsCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Arc::default(),
        }
    }

    pub(super) fn get(&self, group: GroupId) -> Option<ChatPermissions> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&group)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, p)| *p)
    }

    pub(super) fn put(&self, group: GroupId, permissions: ChatPermissions) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the number of protected groups; drop stale entries as we go.
        let ttl = self.ttl;
        entries.retain(|_, (at, _)| at.elapsed() < ttl);
        entries.insert(group, (Instant::now(), permissions));
    }

    pub(super) fn forget(&self, group: GroupId) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&group);
    }
}
