//! The warm-up's order: every group's seen members merged into one sequence, most recently seen first.
//!
//! Each group is read page by page from [`Store::recently_seen`] and the pages
//! are merged with a heap on `last_seen`, so memory is one page per group
//! whatever their sizes, and a bound on the count stops the reading too.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::domain::{ChannelId, GroupId, SeenMember, UnixTime, UserId};
use crate::store::{Store, StoreResult};

/// Rows read per store call.
const PAGE: u32 = 500;

/// One group's share of the merge.
struct Source {
    group: GroupId,
    channels: Arc<[ChannelId]>,
    buffer: VecDeque<SeenMember>,
    /// The last row read: where the next page starts.
    cursor: Option<(UnixTime, UserId)>,
    exhausted: bool,
}

/// The head of one source, ordered by recency (then group and user, for a
/// deterministic order between equal times).
#[derive(Debug, PartialEq, Eq)]
struct Head {
    last_seen: UnixTime,
    user: UserId,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.last_seen
            .cmp(&other.last_seen)
            .then(self.user.cmp(&other.user))
            .then(other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A member to warm: who, when last seen, the channels to check.
#[derive(Debug, Clone)]
pub(super) struct Next {
    pub(super) user: UserId,
    pub(super) last_seen: UnixTime,
    pub(super) channels: Arc<[ChannelId]>,
}

/// The merged sequence.
pub(super) struct RecencyOrder {
    store: Arc<dyn Store>,
    sources: Vec<Source>,
    heap: BinaryHeap<Head>,
    started: bool,
    /// Members seen before this are not worth warming.
    cutoff: UnixTime,
}

impl RecencyOrder {
    /// The members of `groups` (each with the channels to check) seen at or after `cutoff`.
    pub(super) fn new(
        store: Arc<dyn Store>,
        groups: Vec<(GroupId, Vec<ChannelId>)>,
        cutoff: UnixTime,
    ) -> Self {
        let sources = groups
            .into_iter()
            .map(|(group, channels)| Source {
                group,
                channels: channels.into(),
                buffer: VecDeque::new(),
                cursor: None,
                exhausted: false,
            })
            .collect();
        Self {
            store,
            sources,
            heap: BinaryHeap::new(),
            started: false,
            cutoff,
        }
    }

    /// Reads the next page of source `i` if its buffer is empty, and pushes its head.
    async fn refill(&mut self, i: usize) -> StoreResult<()> {
        let source = &mut self.sources[i];
        if source.buffer.is_empty() && !source.exhausted {
            let page = self
                .store
                .recently_seen(source.group, source.cursor, PAGE)
                .await?;
            source.exhausted = page.len() < PAGE as usize;
            if let Some(last) = page.last() {
                source.cursor = Some((last.last_seen, last.user));
            }
            source.buffer.extend(page);
        }
        if let Some(head) = source.buffer.front() {
            if head.last_seen >= self.cutoff {
                self.heap.push(Head {
                    last_seen: head.last_seen,
                    user: head.user,
                    source: i,
                });
            } else {
                // Pages are in recency order: nothing later in this group qualifies.
                source.buffer.clear();
                source.exhausted = true;
            }
        }
        Ok(())
    }

    /// The most recently seen member not yet returned, or `None` when every group is done.
    pub(super) async fn next(&mut self) -> StoreResult<Option<Next>> {
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                self.refill(i).await?;
            }
        }
        let Some(head) = self.heap.pop() else {
            return Ok(None);
        };
        let source = &mut self.sources[head.source];
        let Some(member) = source.buffer.pop_front() else {
            return Ok(None);
        };
        let next = Next {
            user: member.user,
            last_seen: member.last_seen,
            channels: Arc::clone(&source.channels),
        };
        self.refill(head.source).await?;
        Ok(Some(next))
    }
}
