//! The simulator's whole state behind one lock: users, chats, the update queue, the webhook,
//! callback queries, invite links, injected faults and the call log.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use gmbot_core::domain::UserId;

use super::api_error::ApiError;
use super::calls::RecordedCall;
use super::chat::{SimChat, SimUser};
use super::faults::Fault;
use super::params::ChatRef;
use super::updates::UpdateQueue;

/// The webhook as `setWebhook` configured it.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) secret_token: Option<String>,
    pub(crate) max_connections: u32,
    pub(crate) last_error: Option<(i64, String)>,
}

/// A callback query waiting for `answerCallbackQuery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    /// `text`, if any.
    pub text: Option<String>,
    /// `show_alert`.
    pub show_alert: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct CallbackState {
    pub(crate) answer: Option<CallbackAnswer>,
}

/// A join request waiting for the chat's admins (or the bot) to answer it.
#[derive(Debug, Clone)]
pub(crate) struct SimJoinRequest {
    /// When it was sent (Unix seconds): the bot may write to the requester until 5 minutes later.
    pub(crate) date: i64,
    /// The guard bot's query id (Bot API 10.1), answerable until 10 seconds after `date`.
    pub(crate) query_id: Option<String>,
}

/// What the simulator does with `ephemeral_message_parameters` (Bot API 10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EphemeralSupport {
    /// Ephemeral messages work: shown to their receiver only.
    #[default]
    Supported,
    /// Refused with `400 Bad Request` (a chat or account where they are not available).
    Refused,
    /// Ignored, as a server older than Bot API 10.2 ignores an unknown parameter: the
    /// message is posted for everyone.
    Ignored,
}

/// An invite link the bot created or exported.
#[derive(Debug, Clone)]
pub(crate) struct InviteLink {
    pub(crate) chat: i64,
    pub(crate) is_primary: bool,
    pub(crate) revoked: bool,
    pub(crate) name: Option<String>,
    pub(crate) creates_join_request: bool,
}

pub(crate) struct World {
    pub(crate) bot: SimUser,
    pub(crate) users: HashMap<i64, SimUser>,
    pub(crate) chats: HashMap<i64, SimChat>,
    pub(crate) usernames: HashMap<String, i64>,
    /// Users who opened a private chat with the bot (a bot cannot write first).
    pub(crate) started: HashSet<i64>,
    pub(crate) updates: UpdateQueue,
    /// The last `allowed_updates` sent (getUpdates or setWebhook); `None` = Telegram's default.
    pub(crate) allowed_updates: Option<Vec<String>>,
    pub(crate) webhook: Option<Webhook>,
    /// Bumped on every setWebhook/deleteWebhook so old delivery workers retire.
    pub(crate) webhook_generation: u64,
    /// Webhook updates go through a load balancer ([`super::balancer`]), not to the URL.
    pub(crate) balanced: bool,
    /// Bumped by every getUpdates so an older long poll ends with 409.
    pub(crate) poll_generation: u64,
    /// Long polls waiting for an update right now.
    pub(crate) waiting_polls: usize,
    pub(crate) faults: Vec<Fault>,
    pub(crate) calls: Vec<RecordedCall>,
    pub(crate) record_calls: bool,
    /// Answer and deliver updates in Bot API 7.x's shape (see `legacy`).
    pub(crate) legacy_shape: bool,
    pub(crate) callbacks: HashMap<String, CallbackState>,
    pub(crate) invite_links: HashMap<String, InviteLink>,
    /// Join requests by (chat, user).
    pub(crate) join_requests: HashMap<(i64, i64), SimJoinRequest>,
    /// Answers given to join request queries, by query id.
    pub(crate) query_answers: HashMap<String, String>,
    pub(crate) ephemeral_support: EphemeralSupport,
    pub(crate) next_query: u64,
    pub(crate) next_user_id: i64,
    pub(crate) next_chat_seq: i64,
    pub(crate) next_callback: u64,
    pub(crate) next_link: u64,
    pub(crate) stopped: bool,
    /// Member listings of `channels.getParticipants`, cached per chat and query.
    pub(crate) listings: super::directory::Listings,
}

impl World {
    pub(crate) fn new(bot: SimUser) -> Self {
        Self {
            bot,
            users: HashMap::new(),
            chats: HashMap::new(),
            usernames: HashMap::new(),
            started: HashSet::new(),
            updates: UpdateQueue::default(),
            allowed_updates: None,
            webhook: None,
            webhook_generation: 0,
            balanced: false,
            poll_generation: 0,
            waiting_polls: 0,
            faults: Vec::new(),
            calls: Vec::new(),
            record_calls: true,
            legacy_shape: false,
            callbacks: HashMap::new(),
            invite_links: HashMap::new(),
            join_requests: HashMap::new(),
            query_answers: HashMap::new(),
            ephemeral_support: EphemeralSupport::default(),
            next_query: 1,
            next_user_id: 100_000_001,
            next_chat_seq: 1,
            next_callback: 1,
            next_link: 1,
            stopped: false,
            listings: Default::default(),
        }
    }

    pub(crate) fn bot_id(&self) -> i64 {
        self.bot.id.0
    }

    /// Any user, the bot included.
    pub(crate) fn user(&self, id: i64) -> Option<&SimUser> {
        if id == self.bot.id.0 {
            Some(&self.bot)
        } else {
            self.users.get(&id)
        }
    }

    /// A user for rendering; unknown ids render as a placeholder rather than failing.
    pub(crate) fn user_or_placeholder(&self, id: i64) -> SimUser {
        self.user(id).cloned().unwrap_or_else(|| SimUser {
            id: UserId(id),
            first_name: format!("User {id}"),
            last_name: None,
            username: None,
            is_bot: false,
        })
    }

    /// Resolves `chat_id` the way Telegram does, including a migrated basic group's error.
    pub(crate) fn resolve(&self, chat: &ChatRef) -> Result<i64, ApiError> {
        let id = match chat {
            ChatRef::Id(id) => *id,
            ChatRef::Username(name) => *self
                .usernames
                .get(name)
                .ok_or_else(ApiError::chat_not_found)?,
        };
        let c = self.chats.get(&id).ok_or_else(ApiError::chat_not_found)?;
        if let Some(to) = c.migrated_to {
            return Err(ApiError::migrated(to));
        }
        Ok(id)
    }

    /// Resolves a chat the bot must be in (private chats need the user to have started the bot).
    pub(crate) fn resolve_joined(&self, chat: &ChatRef) -> Result<i64, ApiError> {
        let id = self.resolve(chat)?;
        let c = self.chats.get(&id).ok_or_else(ApiError::chat_not_found)?;
        match c.kind {
            super::chat::ChatKind::Private => Ok(id),
            super::chat::ChatKind::Channel => {
                if c.member(self.bot_id(), now()).is_admin() {
                    Ok(id)
                } else {
                    Err(ApiError::chat_not_found())
                }
            }
            _ => {
                if c.member(self.bot_id(), now()).is_present() {
                    Ok(id)
                } else {
                    Err(ApiError::forbidden(format!(
                        "bot is not a member of the {} chat",
                        if c.kind == super::chat::ChatKind::Group {
                            "group"
                        } else {
                            "supergroup"
                        }
                    )))
                }
            }
        }
    }

    /// Whether the bot may write to `user` privately: they started it, or they have a join
    /// request not yet answered and sent less than 5 minutes ago (`user_chat_id`).
    pub(crate) fn may_message_privately(&self, user: i64) -> bool {
        self.started.contains(&user)
            || self
                .join_requests
                .iter()
                .any(|((_, u), r)| *u == user && now() - r.date < JOIN_REQUEST_DM_SECS)
    }

    pub(crate) fn chat(&self, id: i64) -> Result<&SimChat, ApiError> {
        self.chats.get(&id).ok_or_else(ApiError::chat_not_found)
    }

    pub(crate) fn chat_mut(&mut self, id: i64) -> Result<&mut SimChat, ApiError> {
        self.chats.get_mut(&id).ok_or_else(ApiError::chat_not_found)
    }

    pub(crate) fn fresh_user_id(&mut self) -> i64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        id
    }

    /// A new chat id in Telegram's ranges: `-100…` for supergroups and channels, small negatives for
    /// basic groups.
    pub(crate) fn fresh_chat_id(&mut self, supergroup_or_channel: bool) -> i64 {
        let seq = self.next_chat_seq;
        self.next_chat_seq += 1;
        if supergroup_or_channel {
            -(1_000_000_000_000 + 2_000_000_000 + seq)
        } else {
            -(400_000_000 + seq)
        }
    }
}

/// How long after a join request the bot may write to the requester (Bot API `user_chat_id`).
pub(crate) const JOIN_REQUEST_DM_SECS: i64 = 300;
/// How long a guard bot has to answer a join request query (Bot API 10.1).
pub(crate) const JOIN_QUERY_SECS: i64 = 10;

/// The state and the condition variable that wakes long polls and webhook workers.
pub(crate) struct Shared {
    pub(crate) token: String,
    /// When the simulator started: the origin of [`RecordedCall::at`].
    pub(crate) started: std::time::Instant,
    world: Mutex<World>,
    pub(crate) changed: Condvar,
    /// Wakes tests waiting for a call to arrive.
    pub(crate) called: Condvar,
    stopped: AtomicBool,
}

impl Shared {
    pub(crate) fn new(token: String, world: World) -> Self {
        Self {
            token,
            started: std::time::Instant::now(),
            world: Mutex::new(world),
            changed: Condvar::new(),
            called: Condvar::new(),
            stopped: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Stops everything that waits: workers, long polls, webhook delivery.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.lock().stopped = true;
        self.changed.notify_all();
        self.called.notify_all();
    }

    /// Locks the world. A panic elsewhere while holding the lock must not take the simulator
    /// down with it, so a poisoned lock is recovered.
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Wall-clock Unix seconds (Telegram's `date` and `until_date` unit).
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
