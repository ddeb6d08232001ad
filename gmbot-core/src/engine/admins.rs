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
//! A failed call keeps the last good list, stale, for a short back-off
//! (stale admins are better than admins treated as members). With no list
//! ever fetched, the failure is cached as "unknown" for the back-off: the
//! engine then checks the sender's channels but acts against nobody, since it
//! cannot tell an admin from a member (see `Engine::verify`).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::{ChatId, GroupId, UserId};
use crate::telegram::TelegramApi;

use super::config_cache::millis;
use super::decision::ExemptReason;
use super::group_map::GroupMap;

/// One group's admins as last fetched (empty and unknown if no fetch ever worked).
#[derive(Debug)]
pub(crate) struct AdminList {
    creator: Option<UserId>,
    /// Sorted, for a binary search without hashing or allocating.
    admins: Box<[UserId]>,
    /// `false` when Telegram never answered for this group: nobody's role is known.
    known: bool,
}

impl AdminList {
    /// Whether the list came from Telegram (possibly stale); `false` = nobody's role is known.
    #[inline]
    pub(crate) fn is_known(&self) -> bool {
        self.known
    }

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
            Some((stale, false)) => self.load(group, Some(stale), telegram, clock).await,
            None => self.load(group, None, telegram, clock).await,
        }
    }

    async fn load(
        &self,
        group: GroupId,
        stale: Option<Arc<AdminList>>,
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
                            known: true,
                        };
                        (Arc::new(list), self.ttl_ms)
                    }
                    Err(err) => match stale.filter(|s| s.known) {
                        Some(stale) => {
                            log::warn!(
                                group_id = group.get(),
                                error:display = err;
                                "cannot read the group's administrators; keeping the last list"
                            );
                            (stale, self.failure_ttl_ms)
                        }
                        None => {
                            log::warn!(
                                group_id = group.get(),
                                error:display = err;
                                "cannot read the group's administrators and none is known; acting against nobody until it works"
                            );
                            let list = AdminList {
                                creator: None,
                                admins: Box::new([]),
                                known: false,
                            };
                            (Arc::new(list), self.failure_ttl_ms)
                        }
                    },
                };
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

    /// Forgets every group's admin list.
    pub(crate) fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }
}
