//! Warnings: the message a denied member sees, its cool-down, and the timer that deletes it.
//!
//! One warning per member per `warning_cooldown_seconds`, kept in an
//! in-process moka cache keyed (group, user). With several instances sharing
//! Redis, the cool-down is a claim there first (one `SET NX PX` per warning
//! about to be queued, see [`shared`](super::shared)), so the member is warned
//! once across instances; the in-process cache decides when Redis does not answer.
//!
//! Every warning is deleted after `warning_ttl_seconds` by [`WarningTimers`],
//! one task owned by the app and stopped on shutdown. If the process dies
//! before the delay, the warning stays in the group (nothing persists the timers).
//! A private warning (an ephemeral message, Bot API 10.2) is deleted the same way, with
//! `deleteEphemeralMessage`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gmbot_core::domain::{EnforcedChannel, GroupId, MessageId, UserId};
use gmbot_core::telegram::{
    EphemeralId, InlineButton, OutgoingMessage, TelegramApi, TelegramError,
};
use moka::future::Cache;
use moka::ops::compute::Op;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::update::User;

/// Prefix of the "I've joined" button's callback data: `j:<user id>`.
pub const JOINED_PREFIX: &str = "j:";

/// The "I've joined" button's callback data for `user` (at most 22 bytes, well under Telegram's 64).
pub fn joined_data(user: UserId) -> String {
    format!("{JOINED_PREFIX}{}", user.get())
}

/// The member an "I've joined" button is bound to, if `data` is well formed.
pub fn parse_joined_data(data: &str) -> Option<UserId> {
    let raw = data.strip_prefix(JOINED_PREFIX)?;
    // Only plain digits: no sign, no spaces, no leading `+`.
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    UserId::new(raw.parse().ok()?).ok()
}

/// Escapes text for Telegram's HTML parse mode (`&`, `<`, `>` and `"`).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// How a channel is named to people: its title, else `@username`, else its id.
pub fn channel_label(c: &EnforcedChannel) -> String {
    if let Some(t) = c.title.as_deref().filter(|t| !t.trim().is_empty()) {
        t.to_owned()
    } else if let Some(u) = &c.username {
        format!("@{}", u.as_str())
    } else {
        c.to_string()
    }
}

/// One "Join …" URL button per channel that has a join link (public username or stored
/// invite link), one row each.
pub fn join_buttons(channels: &[Arc<EnforcedChannel>]) -> Vec<Vec<InlineButton>> {
    channels
        .iter()
        .filter_map(|c| {
            c.join_url().map(|url| {
                vec![InlineButton::Url {
                    text: format!("Join {}", channel_label(c)),
                    url,
                }]
            })
        })
        .collect()
}

/// Builds the warning for `member` who must join `missing`. Returns the
/// message and the channels that have no join link (private, no stored invite
/// link), which the admins must be told about.
pub fn warning_message<'a>(
    member: &User,
    missing: &'a [Arc<EnforcedChannel>],
) -> (OutgoingMessage, Vec<&'a EnforcedChannel>) {
    let name = escape_html(&member.display_name());
    let mut html = format!(
        "⚠️ <a href=\"tg://user?id={}\">{name}</a>, to write in this group please join ",
        member.id.get()
    );
    let mut buttons = Vec::with_capacity(missing.len() + 1);
    let mut unlinked = Vec::new();
    for (i, channel) in missing.iter().enumerate() {
        if i > 0 {
            html.push_str(if i + 1 == missing.len() {
                " and "
            } else {
                ", "
            });
        }
        let label = channel_label(channel);
        html.push_str("<b>");
        html.push_str(&escape_html(&label));
        html.push_str("</b>");
        match channel.join_url() {
            Some(url) => buttons.push(vec![InlineButton::Url {
                text: format!("Join {label}"),
                url,
            }]),
            None => unlinked.push(&**channel),
        }
    }
    html.push_str(", then press “I've joined”.");
    for channel in &unlinked {
        html.push_str(&format!(
            "\n(<b>{}</b> is private and has no invite link yet; the admins have been told.)",
            escape_html(&channel_label(channel))
        ));
    }
    buttons.push(vec![InlineButton::Callback {
        text: "✅ I've joined".to_owned(),
        data: joined_data(member.id),
    }]);
    let msg = OutgoingMessage {
        html,
        buttons,
        reply_to: None,
        silent: true,
    };
    (msg, unlinked)
}

/// At most one warning per (group, member) per cool-down.
#[derive(Clone)]
pub(crate) struct Cooldowns {
    last_sent_ms: Cache<(GroupId, UserId), u64>,
}

impl Cooldowns {
    pub(crate) fn new(capacity: u64) -> Self {
        // The longest cool-down settings allow is one day.
        Self::with_ttl(capacity, Duration::from_secs(24 * 3600 + 60))
    }

    /// Cool-downs never longer than `ttl` (entries are forgotten after it).
    pub(crate) fn with_ttl(capacity: u64, ttl: Duration) -> Self {
        Self {
            last_sent_ms: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// Claims the right to warn `user` in `group` now (`now_ms` on the app's
    /// clock). `false` if a warning went out less than `cooldown` ago.
    pub(crate) async fn try_claim(
        &self,
        group: GroupId,
        user: UserId,
        cooldown: Duration,
        now_ms: u64,
    ) -> bool {
        let cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        let result = self
            .last_sent_ms
            .entry((group, user))
            .and_compute_with(|prev| async move {
                match prev {
                    Some(e) if now_ms.saturating_sub(*e.value()) < cooldown_ms => Op::Nop,
                    _ => Op::Put(now_ms),
                }
            })
            .await;
        !matches!(
            result,
            moka::ops::compute::CompResult::Unchanged(_)
                | moka::ops::compute::CompResult::StillNone(_)
        )
    }

    /// Notes that a warning went out to `user` in `group` at `now_ms` (another authority,
    /// the shared claim, decided it).
    pub(crate) async fn record(&self, group: GroupId, user: UserId, now_ms: u64) {
        self.last_sent_ms.insert((group, user), now_ms).await;
    }

    /// Forgets a member's cool-down (they joined: a later leave warns at once).
    pub(crate) async fn forget(&self, group: GroupId, user: UserId) {
        self.last_sent_ms.invalidate(&(group, user)).await;
    }
}

/// A warning on screen: a message of the group, or an ephemeral message only its member sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningMessage {
    /// An ordinary message of the group (`deleteMessage`).
    Public(MessageId),
    /// An ephemeral message shown to `receiver` only (`deleteEphemeralMessage`).
    Ephemeral {
        /// The member who sees it.
        receiver: UserId,
        /// Its ephemeral id.
        id: EphemeralId,
    },
}

impl WarningMessage {
    /// Deletes it through `telegram`.
    pub(crate) async fn delete(
        self,
        telegram: &dyn TelegramApi,
        group: GroupId,
    ) -> Result<(), TelegramError> {
        match self {
            Self::Public(message) => telegram.delete_message(group.into(), message).await,
            Self::Ephemeral { receiver, id } => {
                telegram.delete_ephemeral(group.into(), receiver, id).await
            }
        }
    }
}

/// A warning waiting for its deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    group: GroupId,
    /// The member a personal warning is for; `None` for a group-wide (consolidated) one.
    user: Option<UserId>,
    message: WarningMessage,
}

#[derive(Default)]
struct TimerState {
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: HashMap<u64, Pending>,
    next: u64,
}

/// Deletes warnings after their delay: one task, a deadline heap, and
/// cancellation when a warning is deleted earlier (the member joined).
#[derive(Clone)]
pub struct WarningTimers {
    inner: Arc<TimersInner>,
}

struct TimersInner {
    state: Mutex<TimerState>,
    wake: Notify,
}

impl std::fmt::Debug for WarningTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarningTimers")
            .field("scheduled", &self.scheduled())
            .finish()
    }
}

impl WarningTimers {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(TimersInner {
                state: Mutex::new(TimerState::default()),
                wake: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Warnings waiting for deletion.
    pub fn scheduled(&self) -> usize {
        self.lock().entries.len()
    }

    /// Schedules the deletion of `user`'s warning `message` in `group` after `delay`.
    #[cfg(test)]
    pub(crate) fn schedule(
        &self,
        group: GroupId,
        user: UserId,
        message: MessageId,
        delay: Duration,
    ) {
        self.reschedule(group, Some(user), message, delay);
    }

    /// Schedules the deletion of `message` in `group` after `delay`, replacing any deletion
    /// already scheduled for it; `user` is the member it is for (`None`: group-wide, not
    /// deleted when one member joins).
    pub(crate) fn reschedule(
        &self,
        group: GroupId,
        user: Option<UserId>,
        message: MessageId,
        delay: Duration,
    ) {
        self.reschedule_warning(group, user, WarningMessage::Public(message), delay);
    }

    /// Schedules the deletion of `receiver`'s ephemeral warning `id` in `group` after `delay`.
    pub(crate) fn schedule_ephemeral(
        &self,
        group: GroupId,
        receiver: UserId,
        id: EphemeralId,
        delay: Duration,
    ) {
        self.reschedule_warning(
            group,
            Some(receiver),
            WarningMessage::Ephemeral { receiver, id },
            delay,
        );
    }

    fn reschedule_warning(
        &self,
        group: GroupId,
        user: Option<UserId>,
        message: WarningMessage,
        delay: Duration,
    ) {
        {
            let mut s = self.lock();
            s.entries
                .retain(|_, p| !(p.group == group && p.message == message));
            let id = s.next;
            s.next += 1;
            s.queue.push(Reverse((Instant::now() + delay, id)));
            s.entries.insert(
                id,
                Pending {
                    group,
                    user,
                    message,
                },
            );
        }
        self.inner.wake.notify_one();
    }

    /// Stops tracking `user`'s warnings in `group` and returns them, for the caller to delete now.
    pub(crate) fn take_member(&self, group: GroupId, user: UserId) -> Vec<WarningMessage> {
        let mut s = self.lock();
        let mut out = Vec::new();
        s.entries.retain(|_, p| {
            let hit = p.group == group && p.user == Some(user);
            if hit {
                out.push(p.message);
            }
            !hit
        });
        out
    }

    /// Runs the deletion task until `shutdown` turns true. Warnings not yet
    /// due then stay in their groups.
    pub(crate) fn spawn(
        &self,
        telegram: Arc<dyn TelegramApi>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut deletions = JoinSet::new();
            loop {
                let next = this.lock().queue.peek().map(|Reverse((at, _))| *at);
                let sleep = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = sleep => {}
                    () = this.inner.wake.notified() => continue,
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                        continue;
                    }
                    Some(_) = deletions.join_next(), if !deletions.is_empty() => continue,
                }
                for due in this.take_due(Instant::now()) {
                    let telegram = telegram.clone();
                    deletions.spawn(async move { delete_warning(&*telegram, due).await });
                }
            }
            // Let deletions already started finish (each is one bounded call).
            while deletions.join_next().await.is_some() {}
        })
    }

    fn take_due(&self, now: Instant) -> Vec<Pending> {
        let mut s = self.lock();
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = s.queue.peek().copied() {
            if at > now {
                break;
            }
            s.queue.pop();
            // Absent: deleted earlier (the member joined).
            if let Some(p) = s.entries.remove(&id) {
                due.push(p);
            }
        }
        due
    }
}

async fn delete_warning(telegram: &dyn TelegramApi, w: Pending) {
    match w.message.delete(telegram, w.group).await {
        Ok(()) => {
            log::debug!(group_id = w.group.get(), message:? = w.message; "warning deleted")
        }
        // Already gone (an admin deleted it, or it was deleted on "I've joined").
        Err(TelegramError::BadRequest(_)) => {}
        Err(err) => log::info!(
            group_id = w.group.get(),
            message:? = w.message,
            error:display = err;
            "cannot delete an expired warning"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_data_round_trips_and_rejects_junk() {
        let u = UserId(1_234_567_890);
        let d = joined_data(u);
        assert!(d.len() <= 64);
        assert_eq!(parse_joined_data(&d), Some(u));
        for bad in [
            "",
            "j:",
            "j:-5",
            "j:0",
            "j:+5",
            "j: 5",
            "j:5x",
            "x:5",
            "j:99999999999999999999",
            "s:5",
            "j:١٢",
        ] {
            assert_eq!(parse_joined_data(bad), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_delete_when_due_skip_cancelled_and_stop_on_shutdown() {
        use gmbot_core::telegram::{Call, MemoryTelegram};

        let g = GroupId(-1001);
        let tg = Arc::new(MemoryTelegram::new().add_group(g));
        let deleted = || -> Vec<MessageId> {
            tg.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::DeleteMessage { message, .. } => Some(message),
                    _ => None,
                })
                .collect()
        };
        let timers = WarningTimers::new();
        let (stop, rx) = watch::channel(false);
        let task = timers.spawn(tg.clone(), rx);
        timers.schedule(g, UserId(1), MessageId(10), Duration::from_secs(60));
        timers.schedule(g, UserId(2), MessageId(11), Duration::from_secs(30));
        timers.schedule(g, UserId(3), MessageId(12), Duration::from_secs(90));
        timers.schedule(g, UserId(4), MessageId(13), Duration::from_secs(600));
        assert_eq!(
            timers.take_member(g, UserId(1)),
            vec![WarningMessage::Public(MessageId(10))]
        );
        assert_eq!(timers.scheduled(), 3);

        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(deleted().is_empty(), "nothing is due yet");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(deleted(), vec![MessageId(11)]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            deleted(),
            vec![MessageId(11), MessageId(12)],
            "the cancelled warning (10) is not deleted by its timer"
        );
        stop.send_replace(true);
        task.await.expect("timer task ends");
        assert_eq!(timers.scheduled(), 1, "the warning not yet due stays");
        assert_eq!(deleted().len(), 2);
    }

    #[tokio::test]
    async fn cooldown_allows_one_warning_per_window() {
        let c = Cooldowns::new(100);
        let (g, u) = (GroupId(-5), UserId(7));
        let cd = Duration::from_secs(300);
        assert!(c.try_claim(g, u, cd, 1_000).await);
        assert!(!c.try_claim(g, u, cd, 2_000).await);
        assert!(!c.try_claim(g, u, cd, 300_999).await);
        assert!(c.try_claim(g, UserId(8), cd, 2_000).await, "per member");
        assert!(c.try_claim(g, u, cd, 301_000).await, "after the window");
        c.forget(g, u).await;
        assert!(c.try_claim(g, u, cd, 301_001).await, "forgotten");
    }

    #[test]
    fn escapes_the_four_characters() {
        assert_eq!(
            escape_html(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; 'Jerry'&lt;/b&gt;"
        );
    }
}
