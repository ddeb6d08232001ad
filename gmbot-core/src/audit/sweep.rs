//! The sweep over a group's member list: recent members, then search prefixes past the cap.
//!
//! Telegram answers `channels.getParticipants` with at most 200 members a call
//! and stops at about 10,000 per filter (TELEGRAM.md; grammers'
//! `iter_participants` pages the same way). A larger group is swept with
//! `ChannelParticipantsSearch` queries, which match the start of any word of a
//! member's first name, last name or username: every one-character prefix of
//! [`SEARCH_ALPHABET`], and a prefix whose first page says it matches
//! [`FILTER_CAP`] or more members is refined into its one-character extensions
//! instead of being listed, down to [`MAX_QUERY_LEN`] characters. The order is
//! depth first and lexicographic, so the whole position is one
//! [`DirectoryCursor`] (query and offset): a checkpoint needs nothing else.
//!
//! A member matched by several prefixes is listed several times; the audit
//! counts each member once (its store remembers who was checked). Members
//! whose names start with none of the alphabet's characters (other scripts,
//! emoji) are found only through the members the bot saw writing.

use serde::{Deserialize, Serialize};

/// Members per `channels.getParticipants` call (Telegram's maximum).
pub const PAGE_LIMIT: u32 = 200;
/// Members Telegram returns at most for one filter in a supergroup.
pub const FILTER_CAP: u32 = 10_000;
/// Longest search prefix: 36⁴ ≈ 1.7 million prefixes is past any real group's need.
pub const MAX_QUERY_LEN: usize = 4;
/// The characters search prefixes are made of, in sweep order.
pub const SEARCH_ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

/// Which listing a page comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryQuery {
    /// `ChannelParticipantsRecent`: the most recently joined members first.
    Recent,
    /// `ChannelParticipantsSearch` with this prefix.
    Search(String),
}

impl DirectoryQuery {
    /// A short label for progress lines: `recent` or `search "ab"`.
    pub fn label(&self) -> String {
        match self {
            Self::Recent => "recent".to_owned(),
            Self::Search(q) => format!("search {q:?}"),
        }
    }
}

/// A position in the sweep: the page of `query` that starts at `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirectoryCursor {
    /// The listing.
    pub query: DirectoryQuery,
    /// Members of that listing before this page.
    pub offset: u32,
}

impl DirectoryCursor {
    /// The first page of a sweep: the recent members from the start.
    pub fn start() -> Self {
        Self {
            query: DirectoryQuery::Recent,
            offset: 0,
        }
    }

    fn search(q: String) -> Self {
        Self {
            query: DirectoryQuery::Search(q),
            offset: 0,
        }
    }

    /// Where the sweep goes after the page at `self` listed `got` members of
    /// `total` that match its query; `None` when the sweep is complete.
    ///
    /// - A listing goes on while its page was not empty and it has not reached
    ///   `min(total, FILTER_CAP)` (Telegram may return a short page before the end).
    /// - After the recent members, the search sweep starts only if they were
    ///   not all of the group.
    /// - A search prefix that matches `FILTER_CAP` or more on its first page is
    ///   refined (its members are listed through its extensions instead).
    pub fn next(&self, got: u32, total: u32) -> Option<Self> {
        let reached = self.offset.saturating_add(got);
        let more = got > 0 && reached < total.min(FILTER_CAP);
        match &self.query {
            DirectoryQuery::Recent if more => Some(Self {
                query: DirectoryQuery::Recent,
                offset: reached,
            }),
            DirectoryQuery::Recent if total > reached => {
                first_prefix().map(|c| Self::search(c.to_string()))
            }
            DirectoryQuery::Recent => None,
            DirectoryQuery::Search(q)
                if self.offset == 0 && total >= FILTER_CAP && q.chars().count() < MAX_QUERY_LEN =>
            {
                first_prefix().map(|c| Self::search(format!("{q}{c}")))
            }
            DirectoryQuery::Search(_) if more => Some(Self {
                query: self.query.clone(),
                offset: reached,
            }),
            DirectoryQuery::Search(q) => successor(q).map(Self::search),
        }
    }
}

fn first_prefix() -> Option<char> {
    SEARCH_ALPHABET.chars().next()
}

/// The next prefix in depth-first order after `q`'s whole subtree: its next
/// sibling, else its parent's next sibling, and so on; `None` after the last.
fn successor(q: &str) -> Option<String> {
    let mut chars: Vec<char> = q.chars().collect();
    while let Some(last) = chars.pop() {
        let next = SEARCH_ALPHABET.chars().skip_while(|c| *c != last).nth(1);
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(query: DirectoryQuery, offset: u32) -> DirectoryCursor {
        DirectoryCursor { query, offset }
    }

    fn search(q: &str, offset: u32) -> DirectoryCursor {
        at(DirectoryQuery::Search(q.to_owned()), offset)
    }

    #[test]
    fn a_small_group_is_listed_by_recent_members_only() {
        let c = DirectoryCursor::start();
        let c = c.next(200, 450).expect("second page");
        assert_eq!(c, at(DirectoryQuery::Recent, 200));
        let c = c.next(200, 450).expect("third page");
        assert_eq!(c.next(50, 450), None);
        // A short page before the end goes on; an empty one stops.
        assert_eq!(
            DirectoryCursor::start().next(199, 450),
            Some(at(DirectoryQuery::Recent, 199))
        );
        assert_eq!(DirectoryCursor::start().next(0, 0), None);
    }

    #[test]
    fn past_the_cap_the_search_sweep_starts() {
        let last = at(DirectoryQuery::Recent, 9_800);
        assert_eq!(last.next(200, 150_000), Some(search("a", 0)));
        // Recent stopped early (an empty page) with members unlisted: search too.
        assert_eq!(
            at(DirectoryQuery::Recent, 400).next(0, 500),
            Some(search("a", 0))
        );
    }

    #[test]
    fn crowded_prefixes_are_refined_and_the_order_is_depth_first() {
        assert_eq!(search("a", 0).next(200, 12_000), Some(search("aa", 0)));
        assert_eq!(search("a", 0).next(200, 9_000), Some(search("a", 200)));
        assert_eq!(search("a", 8_800).next(200, 9_000), Some(search("b", 0)));
        assert_eq!(search("az", 0).next(10, 10), Some(search("a0", 0)));
        assert_eq!(search("a9", 0).next(10, 10), Some(search("b", 0)));
        assert_eq!(search("z9", 0).next(0, 0), Some(search("0", 0)));
        assert_eq!(search("99", 0).next(0, 0), None);
        assert_eq!(search("9", 0).next(3, 3), None);
        // The deepest prefix is listed up to the cap, not refined further.
        assert_eq!(
            search("abcd", 0).next(200, 20_000),
            Some(search("abcd", 200))
        );
        // Only a first page refines: a count that grows while paging does not restart.
        assert_eq!(search("a", 200).next(200, 10_500), Some(search("a", 400)));
    }

    #[test]
    fn every_prefix_is_visited_once_in_a_full_sweep() {
        // Every one- and two-character prefix under a refine-everything answer.
        let mut c = search("a", 0);
        let mut seen = std::collections::HashSet::new();
        let mut steps = 0;
        loop {
            let DirectoryQuery::Search(q) = &c.query else {
                panic!("left the search sweep");
            };
            assert!(seen.insert(q.clone()), "{q} visited twice");
            let total = if q.chars().count() < 2 { FILTER_CAP } else { 1 };
            match c.next(1, total) {
                Some(n) => c = n,
                None => break,
            }
            steps += 1;
            assert!(steps < 10_000);
        }
        assert_eq!(seen.len(), 36 + 36 * 36);
    }

    #[test]
    fn cursors_round_trip_through_json() {
        let c = search("ab", 400);
        let text = serde_json::to_string(&c).expect("json");
        assert_eq!(
            serde_json::from_str::<DirectoryCursor>(&text).expect("back"),
            c
        );
        assert_eq!(DirectoryQuery::Recent.label(), "recent");
        assert_eq!(DirectoryQuery::Search("ab".into()).label(), "search \"ab\"");
    }
}
