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

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::{ChatId, GroupId, UserId};
use crate::telegram::TelegramApi;

use super::config_cache::millis;
use super::decision::ExemptReason;
use super::group_map::GroupMap;

/// One group's admins as last fetched (empty if the fetch failed).
#[derive(Debug)]
pub(crate) struct AdminList {
    creator: Option<UserId>,
    /// Sorted, for a binary search without hashing or allocating.
    admins: Box<[UserId]>,
}

impl AdminList {
    /// Why `user` is exempt as an admin, if they are one.
    #[inline]
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
    entries: GroupMap<Arc<AdminList>>,
    ttl_ms: u64,
    failure_ttl_ms: u64,
}

impl AdminCache {
    pub(crate) fn new(ttl: Duration, failure_ttl: Duration, capacity: u64) -> Self {
        Self {
            entries: GroupMap::new(capacity),
            ttl_ms: millis(ttl),
            failure_ttl_ms: millis(failure_ttl),
        }
    }

    /// The group's admins: cached while fresh at `now_ms`, else fetched from Telegram.
    #[inline]
    pub(crate) async fn get(
        &self,
        group: GroupId,
        now_ms: u64,
        telegram: &dyn TelegramApi,
        clock: &dyn Clock,
    ) -> Arc<AdminList> {
        match self.entries.get(group, now_ms) {
            Some((list, true)) => list,
            _ => self.load(group, telegram, clock).await,
        }
    }

    async fn load(
        &self,
        group: GroupId,
        telegram: &dyn TelegramApi,
        clock: &dyn Clock,
    ) -> Arc<AdminList> {
        let epoch = self.entries.epoch();
        self.entries
            .load_once(group, async {
                let answer = telegram.get_chat_administrators(ChatId::from(group)).await;
                let (list, ttl_ms) = match answer {
                    Ok(admins) => {
                        let creator = admins.iter().find(|a| a.is_creator).map(|a| a.user);
                        let mut ids: Vec<UserId> = admins.iter().map(|a| a.user).collect();
                        ids.sort_unstable();
                        ids.dedup();
                        let list = AdminList {
                            creator,
                            admins: ids.into_boxed_slice(),
                        };
                        (list, self.ttl_ms)
                    }
                    Err(err) => {
                        log::warn!(
                            group_id = group.get(),
                            error:display = err;
                            "cannot read the group's administrators; checking everyone's channels until it works"
                        );
                        let list = AdminList {
                            creator: None,
                            admins: Box::new([]),
                        };
                        (list, self.failure_ttl_ms)
                    }
                };
                let list = Arc::new(list);
                let now = clock.now_millis();
                self.entries.insert_unless_invalidated(
                    group,
                    list.clone(),
                    now,
                    now.saturating_add(ttl_ms),
                    epoch,
                );
                list
            })
            .await
    }

    /// Forgets the group's admin list; the next lookup asks Telegram.
    pub(crate) fn invalidate(&self, group: GroupId) {
        self.entries.invalidate(group);
    }
}
