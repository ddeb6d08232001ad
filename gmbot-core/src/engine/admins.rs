//! The admin-list cache: each group's creator and administrators, from `getChatAdministrators`, kept for a short TTL.
//!
//! Admins and the owner are exempt from the channel check, and asking
//! Telegram for the list on every message is exactly the flood of calls that
//! gets a bot rate-limited (TELEGRAM.md, "What users … complain about"). The
//! list is kept 5 minutes by default and can be dropped at once
//! ([`Engine::invalidate_admins`](super::Engine::invalidate_admins)) when the
//! frontend sees an admin promoted or demoted. Concurrent misses of one group
//! make one call (single flight).
//!
//! A failed call is cached too, as "unknown", for a short back-off: the
//! engine then checks the sender's channels like anyone else's rather than
//! asking Telegram again for every message while it is failing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::clock::Clock;
use crate::domain::{ChatId, GroupId, UserId};
use crate::telegram::TelegramApi;

use super::config_cache::millis;
use super::decision::ExemptReason;

/// One group's admins as last fetched.
#[derive(Debug)]
pub(crate) struct AdminList {
    creator: Option<UserId>,
    /// Sorted, for a binary search without hashing or allocating.
    admins: Box<[UserId]>,
    expires_at_ms: u64,
}

impl AdminList {
    /// Why `user` is exempt as an admin, if they are one.
    pub(crate) fn role(&self, user: UserId) -> Option<ExemptReason> {
        if self.creator == Some(user) {
            Some(ExemptReason::Creator)
        } else if self.admins.binary_search(&user).is_ok() {
            Some(ExemptReason::Admin)
        } else {
            None
        }
    }
}

/// Group id → admin list, with a TTL on the [`Clock`].
pub(crate) struct AdminCache {
    entries: Cache<GroupId, Arc<AdminList>>,
    ttl_ms: u64,
    failure_ttl_ms: u64,
    epoch: AtomicU64,
}

impl AdminCache {
    pub(crate) fn new(ttl: Duration, failure_ttl: Duration, capacity: u64) -> Self {
        Self {
            entries: Cache::new(capacity),
            ttl_ms: millis(ttl),
            failure_ttl_ms: millis(failure_ttl),
            epoch: AtomicU64::new(0),
        }
    }

    /// The group's admins: cached while fresh, else fetched from Telegram.
    pub(crate) async fn get(
        &self,
        group: GroupId,
        telegram: &dyn TelegramApi,
        clock: &dyn Clock,
    ) -> Arc<AdminList> {
        match self.entries.get(&group).await {
            Some(e) if clock.now_millis() < e.expires_at_ms => return e,
            Some(_) => self.entries.invalidate(&group).await,
            None => {}
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let list = self
            .entries
            .get_with(group, async {
                let answer = telegram.get_chat_administrators(ChatId::from(group)).await;
                let now = clock.now_millis();
                Arc::new(match answer {
                    Ok(admins) => {
                        let creator = admins.iter().find(|a| a.is_creator).map(|a| a.user);
                        let mut ids: Vec<UserId> = admins.iter().map(|a| a.user).collect();
                        ids.sort_unstable();
                        ids.dedup();
                        AdminList {
                            creator,
                            admins: ids.into_boxed_slice(),
                            expires_at_ms: now.saturating_add(self.ttl_ms),
                        }
                    }
                    Err(err) => {
                        log::warn!(
                            group_id = group.get(),
                            error:display = err;
                            "cannot read the group's administrators; checking everyone's channels until it works"
                        );
                        AdminList {
                            creator: None,
                            admins: Box::new([]),
                            expires_at_ms: now.saturating_add(self.failure_ttl_ms),
                        }
                    }
                })
            })
            .await;
        if self.epoch.load(Ordering::Acquire) != epoch {
            // Invalidated while the call was in flight: use the answer once, do not keep it.
            self.entries.invalidate(&group).await;
        }
        list
    }

    /// Forgets the group's admin list; the next lookup asks Telegram.
    pub(crate) async fn invalidate(&self, group: GroupId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(&group).await;
    }
}
