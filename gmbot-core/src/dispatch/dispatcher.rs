//! `Dispatcher`: the one way out to Telegram — budgets, priority lanes, 429 pauses and retries.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use prometheus::Registry;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::budget::SharedBudgetOptions;
use super::metrics::{BudgetMetrics, DispatchMetrics};
use super::scheduler::{Budget, Scheduler};
use super::{DispatchConfig, DispatchError, Lane};
use crate::domain::{ChatId, ChatMemberStatus, GroupId, MessageId, UnixTime, UserId};
use crate::telegram::{
    ChatAdmin, ChatInfo, ChatTarget, EphemeralId, JoinQueryAnswer, Method, OutgoingMessage, Posted,
    TelegramApi, TelegramError, TelegramResult,
};

pub(super) struct Shared {
    api: Arc<dyn TelegramApi>,
    config: DispatchConfig,
    sched: Mutex<Scheduler>,
    /// Wakes the scheduler task: a waiter arrived or a pause changed.
    pub(super) wake: Notify,
    metrics: DispatchMetrics,
    /// The shared budget and its task's state, if the budget is shared.
    pub(super) budget: Option<BudgetLink>,
}

/// What the shared budget's task needs besides the scheduler.
pub(super) struct BudgetLink {
    pub(super) options: SharedBudgetOptions,
    pub(super) metrics: BudgetMetrics,
    /// This dispatcher's id in the heartbeats.
    pub(super) instance: String,
    /// Wakes the budget task: a grant pass found slots to reserve.
    pub(super) wake: Notify,
    /// On the local fallback share now.
    pub(super) fallback: AtomicBool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Scheduler> {
        // The scheduler's state stays consistent between statements; a panic
        // elsewhere while holding the lock must not stop every Telegram call.
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Grants what may go now and publishes the queue depths.
    fn grant(&self, now: Instant) -> Option<Instant> {
        let mut sched = self.lock();
        self.grant_locked(&mut sched, now)
    }

    /// [`grant`](Self::grant) under a lock already held; tells the budget task
    /// when there are slots to reserve.
    fn grant_locked(&self, sched: &mut Scheduler, now: Instant) -> Option<Instant> {
        let next = sched.grant(now);
        self.metrics.set_depths(sched.depths());
        if let Some(link) = &self.budget {
            let (used, expired) = sched.take_slot_counts();
            link.metrics.slots(used, expired);
            if sched.take_refill_flag() {
                link.wake.notify_one();
            }
        }
        next
    }
}

/// Owns the scheduler task (and the budget task): they stop when the last dispatcher handle is dropped.
#[derive(Default)]
struct TaskGuard(Mutex<Vec<AbortHandle>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let tasks = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        for handle in tasks.drain(..) {
            handle.abort();
        }
    }
}

/// Runs only to wake waiters on time (a bucket refilled, a pause ended);
/// waiters that can go at once are let through by the caller itself.
async fn run_scheduler(shared: Arc<Shared>) {
    loop {
        let now = Instant::now();
        // At least 1 ms ahead: tokio's timer has millisecond resolution.
        match shared
            .grant(now)
            .map(|at| at.max(now + Duration::from_millis(1)))
        {
            Some(at) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

fn stopped() -> TelegramError {
    TelegramError::Network("the dispatcher stopped before the call could be made".into())
}

/// The outbound dispatcher: every Telegram call goes through it.
///
/// - **Budgets** ([`DispatchConfig`]): `sendMessage` (ephemeral ones included) and
///   `editMessageText` draw on the global write budget (30/s) and their chat's budget
///   (20/min in a group, 1/s in a private chat); restrictions, kicks, their lifting and the
///   answers to join requests on the restrict budget (30/s); deletions on the delete budget
///   (30/s); invite links on the global write budget; reads (`getChatMember`,
///   `getChatAdministrators`, `getChat`) on an optional read budget, never on
///   the message budget; reads in the bulk lane on the optional bulk read budget instead
///   (`bulk_reads_per_second`); callback answers on nothing. Buckets are `ratelimit` token buckets on tokio's clock,
///   or, built with [`Dispatcher::with_shared_budget`], slots of the bot's budget shared by every instance.
/// - **Lanes** ([`Lane`]): when calls wait for the same budget, the highest
///   lane goes first, in arrival order within a lane. A call that has waited
///   [`starvation_limit`](DispatchConfig::starvation_limit) goes before every
///   call that arrived after it, so its wait is bounded by that limit plus the
///   time the budget needs to serve the calls queued before it.
/// - **429**: `retry_after` pauses the call's chat (every chat, for a call
///   without one) for exactly that long; the call then retries, keeping its
///   place in the queue, up to `max_rate_limit_retries` times.
/// - **5xx / network errors**: retried after an exponential, jittered backoff
///   ([`DispatchConfig::backoff`]) up to `max_retries` times; any other error
///   returns to the caller at once.
/// - **Metrics** into the registry given to [`Dispatcher::new`]:
///   `gmbot_telegram_calls_total{method,outcome}`,
///   `gmbot_telegram_call_duration_seconds{method}`,
///   `gmbot_ratelimit_waits_total{lane}`, `gmbot_telegram_429_total{lane}`,
///   `gmbot_dispatch_queue_depth{lane}`.
///
/// Time is tokio's (`tokio::time`), so tests run under `start_paused = true`.
/// The handle is cheap to clone. It implements [`TelegramApi`] itself, each
/// method in its [default lane](Lane::default_for); [`Dispatcher::lane`] gives
/// a view in a chosen lane.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    task: Arc<TaskGuard>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.shared.config)
            .field("queue_depths", &self.shared.lock().depths())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher in front of `api`, recording into `registry`. Fails on an
    /// invalid config or if the metrics are already registered there.
    pub fn new(
        api: Arc<dyn TelegramApi>,
        config: DispatchConfig,
        registry: &Registry,
    ) -> Result<Self, DispatchError> {
        config.validate()?;
        let metrics = DispatchMetrics::register(registry)?;
        Ok(Self {
            shared: Arc::new(Shared {
                api,
                sched: Mutex::new(Scheduler::new(config.clone())),
                config,
                wake: Notify::new(),
                metrics,
                budget: None,
            }),
            task: Arc::new(TaskGuard::default()),
        })
    }

    /// A dispatcher whose budgets are the bot's, shared with every other
    /// instance through `budget` (see [`SharedBudget`](super::SharedBudget)):
    /// calls go on slots reserved there; while it is unreachable, on `1/N` of
    /// each budget, said once in the log (and once when it recovers) and in
    /// `gmbot_budget_fallback`. Besides the metrics of [`Dispatcher::new`] it
    /// records `gmbot_budget_fallback`, `gmbot_budget_fallbacks_total`,
    /// `gmbot_budget_instances`, `gmbot_budget_reservations_total{outcome}` and
    /// `gmbot_budget_slots_total{outcome}`. Started inside a tokio runtime it
    /// begins its heartbeats at once, otherwise at its first call.
    pub fn with_shared_budget(
        api: Arc<dyn TelegramApi>,
        config: DispatchConfig,
        budget: SharedBudgetOptions,
        registry: &Registry,
    ) -> Result<Self, DispatchError> {
        config.validate()?;
        budget.validate()?;
        let metrics = DispatchMetrics::register(registry)?;
        let budget_metrics = BudgetMetrics::register(registry)?;
        budget_metrics
            .instances
            .set(i64::from(budget.instances.unwrap_or(1)));
        let sched = Scheduler::shared(config.clone(), budget.horizon, budget.grace, budget.spread);
        let dispatcher = Self {
            shared: Arc::new(Shared {
                api,
                sched: Mutex::new(sched),
                config,
                wake: Notify::new(),
                metrics,
                budget: Some(BudgetLink {
                    options: budget,
                    metrics: budget_metrics,
                    instance: format!("{:016x}", rand::random::<u64>()),
                    wake: Notify::new(),
                    fallback: AtomicBool::new(false),
                }),
            }),
            task: Arc::new(TaskGuard::default()),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Heartbeats from the start, so other instances count this one.
            let _ = dispatcher.ensure_scheduler();
        }
        Ok(dispatcher)
    }

    /// Whether this dispatcher spends a shared budget and is on its local
    /// fallback share now (`None`: no shared budget).
    pub fn budget_fallback(&self) -> Option<bool> {
        self.shared
            .budget
            .as_ref()
            .map(|link| link.fallback.load(Ordering::Acquire))
    }

    /// The settings in force.
    pub fn config(&self) -> &DispatchConfig {
        &self.shared.config
    }

    /// A [`TelegramApi`] view whose every call goes through `lane`.
    pub fn lane(&self, lane: Lane) -> LaneApi {
        LaneApi {
            dispatcher: self.clone(),
            lane,
        }
    }

    /// Calls waiting in `lane` now.
    pub fn queue_depth(&self, lane: Lane) -> usize {
        self.shared.lock().depths()[lane.index()]
    }

    /// Holds every call about `chat` for `duration` (as a 429 for it would).
    pub fn pause_chat(&self, chat: ChatId, duration: Duration) {
        self.shared
            .lock()
            .pause_chat(chat, Instant::now() + duration);
        self.shared.wake.notify_one();
    }

    /// Holds every call for `duration` (a bot-wide flood limit).
    pub fn pause_all(&self, duration: Duration) {
        self.shared.lock().pause_all(Instant::now() + duration);
        self.shared.wake.notify_one();
    }

    /// Makes one Telegram call through the budgets, lanes and retries.
    ///
    /// `method` decides the budget, `chat` the per-chat budget and which chat
    /// a 429 pauses (`None`: a 429 pauses everything). `attempt` is called
    /// once per attempt with the underlying API:
    ///
    /// ```
    /// # async fn demo(d: gmbot_core::dispatch::Dispatcher) -> gmbot_core::telegram::TelegramResult<()> {
    /// use gmbot_core::dispatch::Lane;
    /// use gmbot_core::domain::{ChatId, UserId};
    /// use gmbot_core::telegram::Method;
    ///
    /// let chat = ChatId(-1_001);
    /// let status = d
    ///     .call(Lane::Interactive, Method::GetChatMember, Some(chat), |api| async move {
    ///         api.get_chat_member(chat, UserId(42)).await
    ///     })
    ///     .await?;
    /// # let _ = status; Ok(()) }
    /// ```
    pub async fn call<T, F, Fut>(
        &self,
        lane: Lane,
        method: Method,
        chat: Option<ChatId>,
        mut attempt: F,
    ) -> TelegramResult<T>
    where
        F: FnMut(Arc<dyn TelegramApi>) -> Fut + Send,
        Fut: Future<Output = TelegramResult<T>> + Send,
        T: Send,
    {
        let shared = &self.shared;
        let enqueued = Instant::now();
        let mut seq = None;
        let mut transient_retries = 0u32;
        let mut rate_limit_retries = 0u32;
        loop {
            self.admit(lane, method, chat, enqueued, &mut seq).await?;
            let started = Instant::now();
            let result = attempt(Arc::clone(&shared.api)).await;
            shared.metrics.observe_call(
                method,
                result.as_ref().map(|_| ()),
                started.elapsed().as_secs_f64(),
            );
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            match &error {
                TelegramError::RetryAfter { retry_after } => {
                    shared.metrics.rate_limited(lane);
                    // Pause even when giving up, so other calls respect it too.
                    let until = Instant::now() + *retry_after;
                    {
                        let mut sched = shared.lock();
                        match chat {
                            Some(c) => sched.pause_chat(c, until),
                            None => sched.pause_all(until),
                        }
                    }
                    shared.wake.notify_one();
                    if let Some(link) = &shared.budget {
                        // Every other instance pauses too (they read it with their next
                        // reservation or heartbeat); the call does not wait for Redis.
                        let budget = Arc::clone(&link.options.budget);
                        let pause = *retry_after;
                        tokio::spawn(async move {
                            if let Err(e) = budget.pause(chat, pause).await {
                                log::debug!(error:display = e; "cannot share a 429 pause");
                            }
                        });
                    }
                    log::warn!(
                        method = method.as_str(),
                        lane = lane.as_str(),
                        chat_id = chat.map_or(0, ChatId::get),
                        retry_after_s = retry_after.as_secs();
                        "Telegram rate limit; pausing"
                    );
                    if rate_limit_retries >= shared.config.max_rate_limit_retries {
                        return Err(error);
                    }
                    rate_limit_retries += 1;
                }
                e if e.is_transient() => {
                    if transient_retries >= shared.config.max_retries {
                        return Err(error);
                    }
                    let wait = shared.config.backoff(transient_retries);
                    transient_retries += 1;
                    log::warn!(
                        method = method.as_str(),
                        error = e.kind(),
                        retry = transient_retries,
                        backoff_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                        "Telegram call failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// Waits until the call may go.
    async fn admit(
        &self,
        lane: Lane,
        method: Method,
        chat: Option<ChatId>,
        enqueued: Instant,
        seq: &mut Option<u64>,
    ) -> TelegramResult<()> {
        let shared = &self.shared;
        let mut rx = {
            let mut sched = shared.lock();
            let now = Instant::now();
            let budget = sched.budget_of(lane, method, chat);
            if budget == Budget::Free && !sched.is_paused(chat, now) {
                return Ok(());
            }
            let (id, rx) = sched.enqueue(lane, chat, budget, enqueued, *seq);
            *seq = Some(id);
            shared.grant_locked(&mut sched, now);
            rx
        };
        match rx.try_recv() {
            Ok(()) => return Ok(()),
            Err(TryRecvError::Closed) => return Err(stopped()),
            Err(TryRecvError::Empty) => {}
        }
        shared.metrics.waited(lane);
        self.ensure_scheduler()?;
        shared.wake.notify_one();
        rx.await.map_err(|_| stopped())
    }

    /// Starts the scheduler task on first need (so a dispatcher can be built
    /// outside a runtime).
    fn ensure_scheduler(&self) -> TelegramResult<()> {
        let mut tasks = self.task.0.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.is_empty() {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                TelegramError::Network("the dispatcher needs a tokio runtime".into())
            })?;
            let shared = Arc::clone(&self.shared);
            tasks.push(runtime.spawn(run_scheduler(shared)).abort_handle());
            if self.shared.budget.is_some() {
                let shared = Arc::clone(&self.shared);
                tasks.push(
                    runtime
                        .spawn(super::budget_task::run(shared))
                        .abort_handle(),
                );
            }
        }
        Ok(())
    }

    async fn get_chat_member_in(
        &self,
        lane: Lane,
        chat: ChatId,
        user: UserId,
    ) -> TelegramResult<ChatMemberStatus> {
        self.call(lane, Method::GetChatMember, Some(chat), |api| async move {
            api.get_chat_member(chat, user).await
        })
        .await
    }

    async fn get_chat_administrators_in(
        &self,
        lane: Lane,
        chat: ChatId,
    ) -> TelegramResult<Vec<ChatAdmin>> {
        self.call(
            lane,
            Method::GetChatAdministrators,
            Some(chat),
            |api| async move { api.get_chat_administrators(chat).await },
        )
        .await
    }

    async fn delete_message_in(
        &self,
        lane: Lane,
        chat: ChatId,
        message: MessageId,
    ) -> TelegramResult<()> {
        self.call(lane, Method::DeleteMessage, Some(chat), |api| async move {
            api.delete_message(chat, message).await
        })
        .await
    }

    async fn delete_messages_in(
        &self,
        lane: Lane,
        chat: ChatId,
        messages: &[MessageId],
    ) -> TelegramResult<()> {
        self.call(lane, Method::DeleteMessages, Some(chat), |api| async move {
            api.delete_messages(chat, messages).await
        })
        .await
    }

    async fn restrict_member_in(
        &self,
        lane: Lane,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        self.call(
            lane,
            Method::RestrictMember,
            Some(group.into()),
            |api| async move { api.restrict_member(group, user, until).await },
        )
        .await
    }

    async fn unrestrict_member_in(
        &self,
        lane: Lane,
        group: GroupId,
        user: UserId,
    ) -> TelegramResult<()> {
        self.call(
            lane,
            Method::UnrestrictMember,
            Some(group.into()),
            |api| async move { api.unrestrict_member(group, user).await },
        )
        .await
    }

    async fn ban_sender_chat_in(
        &self,
        lane: Lane,
        group: GroupId,
        sender_chat: ChatId,
    ) -> TelegramResult<()> {
        self.call(
            lane,
            Method::BanSenderChat,
            Some(group.into()),
            |api| async move { api.ban_sender_chat(group, sender_chat).await },
        )
        .await
    }

    async fn kick_member_in(&self, lane: Lane, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.call(
            lane,
            Method::KickMember,
            Some(group.into()),
            |api| async move { api.kick_member(group, user).await },
        )
        .await
    }

    async fn send_message_in(
        &self,
        lane: Lane,
        chat: ChatId,
        message: &OutgoingMessage,
    ) -> TelegramResult<MessageId> {
        self.call(lane, Method::SendMessage, Some(chat), |api| async move {
            api.send_message(chat, message).await
        })
        .await
    }

    async fn answer_callback_in(
        &self,
        lane: Lane,
        callback_id: &str,
        text: Option<&str>,
        show_alert: bool,
    ) -> TelegramResult<()> {
        self.call(lane, Method::AnswerCallback, None, |api| async move {
            api.answer_callback(callback_id, text, show_alert).await
        })
        .await
    }

    async fn get_chat_in(&self, lane: Lane, target: &ChatTarget) -> TelegramResult<ChatInfo> {
        // By username the chat id is not known yet: a 429 then pauses everything.
        let chat = match target {
            ChatTarget::Id(id) => Some(*id),
            ChatTarget::Username(_) => None,
        };
        self.call(lane, Method::GetChat, chat, |api| async move {
            api.get_chat(target).await
        })
        .await
    }

    async fn create_invite_link_in(&self, lane: Lane, chat: ChatId) -> TelegramResult<String> {
        self.call(
            lane,
            Method::CreateInviteLink,
            Some(chat),
            |api| async move { api.create_invite_link(chat).await },
        )
        .await
    }

    async fn edit_message_in(
        &self,
        lane: Lane,
        chat: ChatId,
        message: MessageId,
        new: &OutgoingMessage,
    ) -> TelegramResult<()> {
        self.call(lane, Method::EditMessage, Some(chat), |api| async move {
            api.edit_message(chat, message, new).await
        })
        .await
    }

    async fn approve_join_request_in(
        &self,
        lane: Lane,
        group: GroupId,
        user: UserId,
    ) -> TelegramResult<()> {
        self.call(
            lane,
            Method::ApproveJoinRequest,
            Some(group.into()),
            |api| async move { api.approve_join_request(group, user).await },
        )
        .await
    }

    async fn decline_join_request_in(
        &self,
        lane: Lane,
        group: GroupId,
        user: UserId,
    ) -> TelegramResult<()> {
        self.call(
            lane,
            Method::DeclineJoinRequest,
            Some(group.into()),
            |api| async move { api.decline_join_request(group, user).await },
        )
        .await
    }

    async fn answer_join_request_query_in(
        &self,
        lane: Lane,
        group: GroupId,
        query_id: &str,
        answer: JoinQueryAnswer,
    ) -> TelegramResult<()> {
        self.call(
            lane,
            Method::AnswerJoinRequestQuery,
            Some(group.into()),
            |api| async move { api.answer_join_request_query(group, query_id, answer).await },
        )
        .await
    }

    async fn send_ephemeral_in(
        &self,
        lane: Lane,
        chat: ChatId,
        receiver: UserId,
        message: &OutgoingMessage,
    ) -> TelegramResult<Posted> {
        self.call(lane, Method::SendEphemeral, Some(chat), |api| async move {
            api.send_ephemeral(chat, receiver, message).await
        })
        .await
    }

    async fn delete_ephemeral_in(
        &self,
        lane: Lane,
        chat: ChatId,
        receiver: UserId,
        message: EphemeralId,
    ) -> TelegramResult<()> {
        self.call(
            lane,
            Method::DeleteEphemeral,
            Some(chat),
            |api| async move { api.delete_ephemeral(chat, receiver, message).await },
        )
        .await
    }
}

/// Each method in its [default lane](Lane::default_for).
#[async_trait]
impl TelegramApi for Dispatcher {
    async fn get_chat_member(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> TelegramResult<ChatMemberStatus> {
        let lane = Lane::default_for(Method::GetChatMember);
        self.get_chat_member_in(lane, chat, user).await
    }

    async fn get_chat_administrators(&self, chat: ChatId) -> TelegramResult<Vec<ChatAdmin>> {
        let lane = Lane::default_for(Method::GetChatAdministrators);
        self.get_chat_administrators_in(lane, chat).await
    }

    async fn delete_message(&self, chat: ChatId, message: MessageId) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::DeleteMessage);
        self.delete_message_in(lane, chat, message).await
    }

    async fn delete_messages(&self, chat: ChatId, messages: &[MessageId]) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::DeleteMessages);
        self.delete_messages_in(lane, chat, messages).await
    }

    async fn restrict_member(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::RestrictMember);
        self.restrict_member_in(lane, group, user, until).await
    }

    async fn unrestrict_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::UnrestrictMember);
        self.unrestrict_member_in(lane, group, user).await
    }

    async fn kick_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::KickMember);
        self.kick_member_in(lane, group, user).await
    }

    async fn ban_sender_chat(&self, group: GroupId, sender_chat: ChatId) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::BanSenderChat);
        self.ban_sender_chat_in(lane, group, sender_chat).await
    }

    async fn send_message(
        &self,
        chat: ChatId,
        message: &OutgoingMessage,
    ) -> TelegramResult<MessageId> {
        let lane = Lane::default_for(Method::SendMessage);
        self.send_message_in(lane, chat, message).await
    }

    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        show_alert: bool,
    ) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::AnswerCallback);
        self.answer_callback_in(lane, callback_id, text, show_alert)
            .await
    }

    async fn get_chat(&self, chat: &ChatTarget) -> TelegramResult<ChatInfo> {
        let lane = Lane::default_for(Method::GetChat);
        self.get_chat_in(lane, chat).await
    }

    async fn create_invite_link(&self, chat: ChatId) -> TelegramResult<String> {
        let lane = Lane::default_for(Method::CreateInviteLink);
        self.create_invite_link_in(lane, chat).await
    }

    async fn edit_message(
        &self,
        chat: ChatId,
        message: MessageId,
        msg: &OutgoingMessage,
    ) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::EditMessage);
        self.edit_message_in(lane, chat, message, msg).await
    }

    async fn approve_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::ApproveJoinRequest);
        self.approve_join_request_in(lane, group, user).await
    }

    async fn decline_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::DeclineJoinRequest);
        self.decline_join_request_in(lane, group, user).await
    }

    async fn answer_join_request_query(
        &self,
        group: GroupId,
        query_id: &str,
        answer: JoinQueryAnswer,
    ) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::AnswerJoinRequestQuery);
        self.answer_join_request_query_in(lane, group, query_id, answer)
            .await
    }

    async fn send_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: &OutgoingMessage,
    ) -> TelegramResult<Posted> {
        let lane = Lane::default_for(Method::SendEphemeral);
        self.send_ephemeral_in(lane, chat, receiver, message).await
    }

    async fn delete_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: EphemeralId,
    ) -> TelegramResult<()> {
        let lane = Lane::default_for(Method::DeleteEphemeral);
        self.delete_ephemeral_in(lane, chat, receiver, message)
            .await
    }
}

/// The dispatcher seen through one [`Lane`]: every call of this
/// [`TelegramApi`] waits in that lane. Made by [`Dispatcher::lane`].
#[derive(Debug, Clone)]
pub struct LaneApi {
    dispatcher: Dispatcher,
    lane: Lane,
}

impl LaneApi {
    /// The lane these calls take.
    pub fn lane(&self) -> Lane {
        self.lane
    }
}

#[async_trait]
impl TelegramApi for LaneApi {
    async fn get_chat_member(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> TelegramResult<ChatMemberStatus> {
        self.dispatcher
            .get_chat_member_in(self.lane, chat, user)
            .await
    }

    async fn get_chat_administrators(&self, chat: ChatId) -> TelegramResult<Vec<ChatAdmin>> {
        self.dispatcher
            .get_chat_administrators_in(self.lane, chat)
            .await
    }

    async fn delete_message(&self, chat: ChatId, message: MessageId) -> TelegramResult<()> {
        self.dispatcher
            .delete_message_in(self.lane, chat, message)
            .await
    }

    async fn delete_messages(&self, chat: ChatId, messages: &[MessageId]) -> TelegramResult<()> {
        self.dispatcher
            .delete_messages_in(self.lane, chat, messages)
            .await
    }

    async fn restrict_member(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<UnixTime>,
    ) -> TelegramResult<()> {
        self.dispatcher
            .restrict_member_in(self.lane, group, user, until)
            .await
    }

    async fn unrestrict_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.dispatcher
            .unrestrict_member_in(self.lane, group, user)
            .await
    }

    async fn kick_member(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.dispatcher.kick_member_in(self.lane, group, user).await
    }

    async fn ban_sender_chat(&self, group: GroupId, sender_chat: ChatId) -> TelegramResult<()> {
        self.dispatcher
            .ban_sender_chat_in(self.lane, group, sender_chat)
            .await
    }

    async fn send_message(
        &self,
        chat: ChatId,
        message: &OutgoingMessage,
    ) -> TelegramResult<MessageId> {
        self.dispatcher
            .send_message_in(self.lane, chat, message)
            .await
    }

    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        show_alert: bool,
    ) -> TelegramResult<()> {
        self.dispatcher
            .answer_callback_in(self.lane, callback_id, text, show_alert)
            .await
    }

    async fn get_chat(&self, chat: &ChatTarget) -> TelegramResult<ChatInfo> {
        self.dispatcher.get_chat_in(self.lane, chat).await
    }

    async fn create_invite_link(&self, chat: ChatId) -> TelegramResult<String> {
        self.dispatcher.create_invite_link_in(self.lane, chat).await
    }

    async fn edit_message(
        &self,
        chat: ChatId,
        message: MessageId,
        msg: &OutgoingMessage,
    ) -> TelegramResult<()> {
        self.dispatcher
            .edit_message_in(self.lane, chat, message, msg)
            .await
    }

    async fn approve_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.dispatcher
            .approve_join_request_in(self.lane, group, user)
            .await
    }

    async fn decline_join_request(&self, group: GroupId, user: UserId) -> TelegramResult<()> {
        self.dispatcher
            .decline_join_request_in(self.lane, group, user)
            .await
    }

    async fn answer_join_request_query(
        &self,
        group: GroupId,
        query_id: &str,
        answer: JoinQueryAnswer,
    ) -> TelegramResult<()> {
        self.dispatcher
            .answer_join_request_query_in(self.lane, group, query_id, answer)
            .await
    }

    async fn send_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: &OutgoingMessage,
    ) -> TelegramResult<Posted> {
        self.dispatcher
            .send_ephemeral_in(self.lane, chat, receiver, message)
            .await
    }

    async fn delete_ephemeral(
        &self,
        chat: ChatId,
        receiver: UserId,
        message: EphemeralId,
    ) -> TelegramResult<()> {
        self.dispatcher
            .delete_ephemeral_in(self.lane, chat, receiver, message)
            .await
    }
}
