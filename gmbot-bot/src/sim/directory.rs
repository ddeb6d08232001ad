//! The simulated member directory: MTProto's `channels.getParticipants`, for audits.
//!
//! Served over HTTP at `POST /mtproto/channels.getParticipants` (a JSON request naming the
//! group, the filter, the offset and the limit, with the bot token and the API id and hash).
//! The answer is what Telegram sends, in Telegram's own TL binary form: a serialized
//! `channels.channelParticipants` on success, a serialized `rpc_error` (`FLOOD_WAIT_X` with
//! HTTP status 420, `CHAT_ADMIN_REQUIRED` with 400, …) on failure. [`SimDirectory`] is the
//! client side: it decodes the bytes and hands them to the same conversion layer
//! ([`crate::mtproto::convert`]) as the grammers adapter, so the audit runs the real code
//! path from TL objects on.
//!
//! Telegram's limits are kept: at most 200 members per call, at most
//! [`FILTER_CAP`] (10,000) per filter; `channelParticipantsSearch` matches the start of any
//! word of a member's first name, last name or username (case-insensitive); the bot must be
//! an admin of the group. Differences: "recent" lists members by user id, highest first
//! (the simulator keeps no join times); a search's `count` is the exact number of matches.
//! Faults injected for `channels.getParticipants` apply (`RetryAfter` → `FLOOD_WAIT_X`).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use gmbot_core::audit::{
    DirectoryCursor, DirectoryQuery, MemberDirectory, MemberPage, FILTER_CAP, PAGE_LIMIT,
};
use gmbot_core::domain::{ChatId, GroupId, UserId};
use gmbot_core::telegram::{TelegramError, TelegramResult};
use grammers_client::tl::{self, Deserializable, Serializable};
use serde::{Deserialize, Serialize};
use tiny_http::{Header, Request, Response};

use super::calls::RecordedCall;
use super::chat::ChatKind;
use super::faults::{self, FaultOutcome};
use super::member::MemberState;
use super::world::{now, Shared, World};
use super::{SimUser, Simulator};
use crate::mtproto::convert;

/// The method name faults and the call log use.
pub const GET_PARTICIPANTS: &str = "channels.getParticipants";

/// The request body of `POST /mtproto/channels.getParticipants`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipantsRequest {
    /// `api_id`.
    pub api_id: i32,
    /// `api_hash`.
    pub api_hash: String,
    /// The bot token the session signed in with.
    pub bot_token: String,
    /// The group (Bot API id, `-100…`).
    pub chat_id: i64,
    /// `None` = recent; `Some(q)` = search for `q`.
    pub search: Option<String>,
    /// Offset in the listing.
    pub offset: u32,
    /// Members asked for (Telegram caps it at 200).
    pub limit: u32,
}

/// A cached listing of (chat, query): the chat's `members_version` it was made for, and the
/// ids in listing order. Whether a member is listed does not change with time (a
/// restriction that runs out keeps a member present, a left one absent), so the version is
/// all a listing depends on besides the names.
type Listing = (u64, Arc<Vec<i64>>);

#[derive(Default)]
pub(crate) struct Listings {
    cache: HashMap<(i64, Option<String>), Listing>,
    /// Members per filter at most; `None` = Telegram's [`FILTER_CAP`].
    cap: Option<usize>,
    /// Every `.0`-th answer holds at most `.1` participants though more match (Telegram
    /// returns such short pages before the end of a listing at times).
    short: Option<(u64, usize)>,
    /// `getParticipants` answers given, for `short`.
    answered: u64,
}

fn rpc(code: i32, message: &str) -> (u16, Vec<u8>) {
    let err = tl::enums::RpcError::Error(tl::types::RpcError {
        error_code: code,
        error_message: message.to_owned(),
    });
    (u16::try_from(code).unwrap_or(400), err.to_bytes())
}

fn words_start_with(user: &SimUser, q: &str) -> bool {
    let fields = [
        Some(user.first_name.as_str()),
        user.last_name.as_deref(),
        user.username.as_deref(),
    ];
    fields.into_iter().flatten().any(|f| {
        f.split(|c: char| !c.is_alphanumeric())
            .any(|w| w.to_lowercase().starts_with(q))
    })
}

/// The first letters (lowercased) of the words of a user's names.
fn first_letters(user: &SimUser) -> Vec<char> {
    let fields = [
        Some(user.first_name.as_str()),
        user.last_name.as_deref(),
        user.username.as_deref(),
    ];
    let mut letters: Vec<char> = fields
        .into_iter()
        .flatten()
        .flat_map(|f| f.split(|c: char| !c.is_alphanumeric()))
        .filter_map(|w| w.to_lowercase().chars().next())
        .collect();
    letters.sort_unstable();
    letters.dedup();
    letters
}

fn listing(world: &mut World, chat: i64, search: Option<&str>) -> Arc<Vec<i64>> {
    let at = now();
    let version = world.chats.get(&chat).map_or(0, |c| c.members_version);
    let key = (chat, search.map(str::to_lowercase));
    if let Some((v, ids)) = world.listings.cache.get(&key) {
        if *v == version {
            return Arc::clone(ids);
        }
    }
    // A word starting with "abc" starts with "ab": a refined query (the sweep goes from a
    // prefix to its extensions) filters its parent's cached listing, not the whole group.
    let parent = key.1.as_deref().and_then(|q| {
        let cut = q.char_indices().last()?.0;
        (cut > 0)
            .then(|| world.listings.cache.get(&(chat, Some(q[..cut].to_owned()))))
            .flatten()
            .filter(|(v, _)| *v == version)
            .map(|(_, ids)| Arc::clone(ids))
    });
    let present: Vec<i64> = match (&parent, world.chats.get(&chat)) {
        (Some(ids), _) => ids.to_vec(),
        (None, Some(c)) => c
            .members
            .iter()
            .filter(|(_, s)| s.settle(at).is_present())
            .map(|(u, _)| *u)
            .collect(),
        (None, None) => Vec::new(),
    };
    if let Some(q) = key.1.as_deref().filter(|q| q.chars().count() == 1) {
        // The sweep asks for every first letter in turn: all of them in one pass over the
        // group, not one pass each.
        let mut by_letter: HashMap<char, Vec<i64>> = HashMap::new();
        for u in present {
            if let Some(user) = world.user(u) {
                for c in first_letters(user) {
                    by_letter.entry(c).or_default().push(u);
                }
            }
        }
        for (c, mut ids) in by_letter {
            ids.sort_unstable_by(|a, b| b.cmp(a));
            world
                .listings
                .cache
                .insert((chat, Some(c.to_string())), (version, Arc::new(ids)));
        }
        let q = q.to_owned();
        return Arc::clone(
            &world
                .listings
                .cache
                .entry((chat, Some(q)))
                .or_insert_with(|| (version, Arc::new(Vec::new())))
                .1,
        );
    }
    let mut ids: Vec<i64> = match &key.1 {
        None => present,
        Some(q) => present
            .into_iter()
            .filter(|u| world.user(*u).is_some_and(|user| words_start_with(user, q)))
            .collect(),
    };
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let ids = Arc::new(ids);
    world
        .listings
        .cache
        .insert(key, (version, Arc::clone(&ids)));
    ids
}

fn participant(world: &World, chat: i64, user: i64, at: i64) -> tl::enums::ChannelParticipant {
    use tl::enums::ChannelParticipant as P;
    let state = world
        .chats
        .get(&chat)
        .map_or(MemberState::Left, |c| c.member(user, at));
    let date = i32::try_from(at).unwrap_or(0);
    match state {
        MemberState::Creator { .. } => P::Creator(tl::types::ChannelParticipantCreator {
            user_id: user,
            admin_rights: convert::tl_full_admin_rights(),
            rank: None,
        }),
        MemberState::Administrator(_) => P::Admin(tl::types::ChannelParticipantAdmin {
            can_edit: false,
            is_self: user == world.bot_id(),
            user_id: user,
            // `self` and `inviter_id` share flag bit 1 in the schema: both or neither.
            inviter_id: (user == world.bot_id()).then_some(user),
            promoted_by: user,
            date,
            admin_rights: convert::tl_full_admin_rights(),
            rank: None,
        }),
        MemberState::Restricted {
            is_member, until, ..
        } => P::Banned(tl::types::ChannelParticipantBanned {
            left: !is_member,
            peer: tl::enums::Peer::User(tl::types::PeerUser { user_id: user }),
            kicked_by: world.bot_id(),
            date,
            banned_rights: convert::tl_banned_rights(false, i32::try_from(until).unwrap_or(0)),
            rank: None,
        }),
        _ => P::Participant(tl::types::ChannelParticipant {
            user_id: user,
            date,
            subscription_until_date: None,
            rank: None,
        }),
    }
}

/// Answers one request from the world, or the RPC error Telegram would send.
fn get_participants(world: &mut World, token: &str, r: &ParticipantsRequest) -> (u16, Vec<u8>) {
    if r.bot_token != token {
        return rpc(401, "AUTH_KEY_UNREGISTERED");
    }
    if r.api_id <= 0 {
        return rpc(400, "API_ID_INVALID");
    }
    if r.api_hash.len() != 32 || !r.api_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return rpc(400, "API_ID_INVALID");
    }
    let at = now();
    let chat = match world.chats.get(&r.chat_id) {
        Some(c) if matches!(c.kind, ChatKind::Supergroup | ChatKind::Channel) => c,
        _ => return rpc(400, "CHANNEL_INVALID"),
    };
    let bot = chat.member(world.bot_id(), at);
    if !bot.is_present() {
        return rpc(400, "CHANNEL_PRIVATE");
    }
    if !bot.is_admin() {
        return rpc(400, "CHAT_ADMIN_REQUIRED");
    }
    let ids = listing(world, r.chat_id, r.search.as_deref());
    let mut limit = r.limit.min(PAGE_LIMIT) as usize;
    world.listings.answered += 1;
    if let Some((every, size)) = world.listings.short {
        if world.listings.answered.is_multiple_of(every.max(1)) {
            limit = limit.min(size);
        }
    }
    let cap = world
        .listings
        .cap
        .unwrap_or(FILTER_CAP as usize)
        .min(ids.len());
    let start = (r.offset as usize).min(cap);
    let end = start.saturating_add(limit).min(cap);
    let mut participants = Vec::with_capacity(end - start);
    let mut users = Vec::with_capacity(end - start);
    for &u in &ids[start..end] {
        participants.push(participant(world, r.chat_id, u, at));
        let user = world.user_or_placeholder(u);
        users.push(tl::enums::User::User(convert::tl_user(
            u,
            &user.first_name,
            user.last_name.as_deref(),
            user.username.as_deref(),
            user.is_bot,
        )));
    }
    let answer = tl::enums::channels::ChannelParticipants::Participants(
        tl::types::channels::ChannelParticipants {
            count: i32::try_from(ids.len()).unwrap_or(i32::MAX),
            participants,
            chats: Vec::new(),
            users,
        },
    );
    (200, answer.to_bytes())
}

fn respond(req: Request, status: u16, body: Vec<u8>) {
    let mut response = Response::from_data(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/octet-stream"[..]) {
        response.add_header(h);
    }
    let _ = req.respond(response);
}

/// Serves `POST /mtproto/<method>`.
pub(crate) fn handle_http(shared: &Arc<Shared>, mut req: Request, method: &str) {
    if !method.eq_ignore_ascii_case(GET_PARTICIPANTS) {
        let (status, body) = rpc(400, "METHOD_INVALID");
        return respond(req, status, body);
    }
    let mut body = Vec::new();
    if req
        .as_reader()
        .take(64 * 1024)
        .read_to_end(&mut body)
        .is_err()
    {
        let (status, body) = rpc(400, "INPUT_REQUEST_INVALID");
        return respond(req, status, body);
    }
    let request: ParticipantsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            let (status, body) = rpc(400, "INPUT_REQUEST_INVALID");
            return respond(req, status, body);
        }
    };
    let outcome = faults::take(&mut shared.lock().faults, GET_PARTICIPANTS);
    let (status, body) = match outcome {
        FaultOutcome::Proceed | FaultOutcome::Answer(_) => {
            let mut w = shared.lock();
            get_participants(&mut w, &shared.token, &request)
        }
        FaultOutcome::Delay(d) => {
            std::thread::sleep(d);
            let mut w = shared.lock();
            get_participants(&mut w, &shared.token, &request)
        }
        FaultOutcome::Fail(e) => match e.retry_after {
            Some(s) => rpc(420, &format!("FLOOD_WAIT_{s}")),
            None if e.code >= 500 => rpc(i32::from(e.code), "INTERNAL"),
            None => rpc(i32::from(e.code), &e.description),
        },
        FaultOutcome::Malformed => (200, b"\x00\x01not TL".to_vec()),
    };
    {
        let mut w = shared.lock();
        if w.record_calls {
            w.calls.push(RecordedCall {
                method: GET_PARTICIPANTS.to_owned(),
                params: serde_json::json!({
                    "chat_id": request.chat_id,
                    "search": request.search,
                    "offset": request.offset,
                    "limit": request.limit,
                }),
                status,
                at: shared.started.elapsed(),
                answered: shared.started.elapsed(),
            });
            shared.called.notify_all();
        }
    }
    respond(req, status, body);
}

// --- control -----------------------------------------------------------------------------

const CONSONANTS: &[u8] = b"bdfghklmnprstvz";
const VOWELS: &[u8] = b"aeiou";

fn syllable(n: usize) -> [char; 2] {
    [
        char::from(CONSONANTS[n % CONSONANTS.len()]),
        char::from(VOWELS[(n / CONSONANTS.len()) % VOWELS.len()]),
    ]
}

/// A deterministic name for generated member `i`: two or three syllables each, first and
/// (for two members in three) last name, capitalised — varied enough that search prefixes
/// of two letters split a large group well below the 10,000 cap.
pub fn generated_name(i: usize) -> (String, Option<String>) {
    let word = |seed: usize, syllables: usize| {
        let mut s = String::new();
        let mut x = seed;
        for _ in 0..syllables {
            s.extend(syllable(x % 75));
            x /= 75;
        }
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_uppercase().chain(c).collect(),
            None => s,
        }
    };
    let h = i.wrapping_mul(2_654_435_761) % 1_000_003;
    let first = word(h, 2 + h % 2);
    let last = (!i.is_multiple_of(3)).then(|| word(h / 7 + i, 3));
    (first, last)
}

impl Simulator {
    /// Adds `count` users with [`generated_name`]s and makes them members of `chat`, without
    /// the updates single joins would emit (a large group set up at once). Returns their ids
    /// in order.
    pub fn add_members_bulk(&self, chat: impl Into<ChatId>, count: usize) -> Vec<UserId> {
        let chat = chat.into().0;
        let mut w = self.shared.lock();
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let id = w.fresh_user_id();
            let (first, last) = generated_name(i);
            w.users.insert(
                id,
                SimUser {
                    id: UserId(id),
                    first_name: first,
                    last_name: last,
                    username: None,
                    is_bot: false,
                },
            );
            ids.push(UserId(id));
        }
        if let Some(c) = w.chats.get_mut(&chat) {
            for u in &ids {
                c.members.insert(u.0, MemberState::Member);
            }
            c.members_version += 1;
        }
        ids
    }

    /// Makes `users` members of `chat` at once (subscribes them to a channel), without updates.
    pub fn join_bulk(&self, chat: impl Into<ChatId>, users: &[UserId]) {
        let chat = chat.into().0;
        let mut w = self.shared.lock();
        if let Some(c) = w.chats.get_mut(&chat) {
            for u in users {
                c.members.insert(u.0, MemberState::Member);
            }
            c.members_version += 1;
        }
    }

    /// Lowers the members one filter returns at most (Telegram: 10,000), so a test group of
    /// a few thousand members needs the search sweep a 100,000-member group needs.
    pub fn set_directory_cap(&self, cap: usize) {
        self.shared.lock().listings.cap = Some(cap);
    }

    /// Makes every `every`-th member listing answer hold at most `size` participants, though
    /// more match: the short pages Telegram returns before the end of a listing at times.
    pub fn set_directory_short_pages(&self, every: u64, size: usize) {
        self.shared.lock().listings.short = Some((every.max(1), size));
    }

    /// The `POST /mtproto/...` base for [`SimDirectory`]: `http://127.0.0.1:<port>/mtproto`.
    pub fn mtproto_url(&self) -> String {
        format!("{}/mtproto", self.base_url())
    }
}

// --- client -------------------------------------------------------------------------------

/// [`MemberDirectory`] against a simulator's `/mtproto` endpoint.
#[derive(Clone)]
pub struct SimDirectory {
    http: reqwest::Client,
    url: String,
    api_id: i32,
    api_hash: String,
    token: String,
}

impl std::fmt::Debug for SimDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDirectory")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SimDirectory {
    /// A client of the directory at `url` (`…/mtproto`), signed in with these credentials.
    pub fn new(url: &str, api_id: i32, api_hash: &str, token: &str) -> Result<Self, TelegramError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| TelegramError::Network(e.to_string()))?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_owned(),
            api_id,
            api_hash: api_hash.to_owned(),
            token: token.to_owned(),
        })
    }
}

#[async_trait]
impl MemberDirectory for SimDirectory {
    async fn page(&self, group: GroupId, cursor: &DirectoryCursor) -> TelegramResult<MemberPage> {
        let request = ParticipantsRequest {
            api_id: self.api_id,
            api_hash: self.api_hash.clone(),
            bot_token: self.token.clone(),
            chat_id: group.get(),
            search: match &cursor.query {
                DirectoryQuery::Recent => None,
                DirectoryQuery::Search(q) => Some(q.clone()),
            },
            offset: cursor.offset,
            limit: PAGE_LIMIT,
        };
        let network = |e: reqwest::Error| TelegramError::Network(format!("simulated MTProto: {e}"));
        let answer = self
            .http
            .post(format!("{}/{GET_PARTICIPANTS}", self.url))
            .json(&request)
            .send()
            .await
            .map_err(network)?;
        let ok = answer.status().is_success();
        let body = answer.bytes().await.map_err(network)?;
        let decode = |e: tl::deserialize::Error| TelegramError::Decode {
            method: GET_PARTICIPANTS.to_owned(),
            detail: e.to_string(),
        };
        if ok {
            let page =
                tl::enums::channels::ChannelParticipants::from_bytes(&body).map_err(decode)?;
            return convert::member_page(page);
        }
        let tl::enums::RpcError::Error(e) =
            tl::enums::RpcError::from_bytes(&body).map_err(decode)?;
        Err(convert::rpc_error(
            &grammers_client::sender::RpcError::from(e),
        ))
    }
}
