//! Consolidated warnings: one warning message per group at a time, edited as more members are
//! muted, instead of one message per member.
//!
//! The first non-subscriber of a quiet group gets the personal warning (their name, the Join
//! buttons, an "I've joined" button bound to them). While that warning is shown — until the
//! group's warning cool-down has passed since it was posted — further non-subscribers are
//! gathered and the shown message is edited into "N members may not write here yet: join …,
//! then press I've joined", whose button re-checks whoever presses it. Edits draw on the group's
//! message budget (20/min) like sends, so in a raid the warning is edited at most every few
//! seconds with everyone gathered meanwhile. Each edit moves the warning's deletion to
//! `warning_ttl_seconds` after it, so it stays up while the raid goes on.
//!
//! With the group's **private warnings** on, a personal warning is sent as an ephemeral message
//! (Bot API 10.2, `ephemeral_message_parameters { receiver_user_id }`) that only its member
//! sees, deleted after the same delay with `deleteEphemeralMessage`. It is not a shown warning
//! the next members are gathered into (nobody else sees it, and an ephemeral message is not
//! edited with `editMessageText`): the next member gets their own. Members who pile up while a
//! warning is being sent still collapse into one public consolidated warning — one message for
//! the group's budget instead of one each. When the ephemeral send fails, or a server that
//! does not know the parameters posts it publicly, the member gets the ordinary public warning.
//! The reference names no separate limit for ephemeral messages, so they are budgeted as
//! messages into the group (20/min), like the public warning.
//!
//! With **several instances** sharing Redis, the shown warning lives on the group's warning
//! board ([`WarningBoard`]) instead of in one instance's memory: the first instance to warn
//! takes the board's slot and posts; instances that warn meanwhile add their members to the
//! board, and the poster edits them in as soon as its message is up; once it is up, any
//! instance adds its members and edits the message into everyone gathered. So a group shows
//! one warning per cool-down whichever instance its updates reach. When Redis does not
//! answer, each instance keeps its own shown warning, as one instance does.

use std::sync::Arc;
use std::time::Duration;

use gmbot_core::coordination::{BoardMember, BoardSlot, BoardView, WarningBoard};
use gmbot_core::dispatch::Lane;
use gmbot_core::domain::{EnforcedChannel, GroupId, MessageId, UserId};
use gmbot_core::telegram::{InlineButton, OutgoingMessage, Posted, TelegramApi};
use tokio::time::Instant;

use crate::app::App;
use crate::flows::enforce::count;
use crate::flows::notice;
use crate::flows::warn::{channel_label, escape_html, join_buttons, warning_message};
use crate::update::User;

use super::Outbox;

/// Callback data of the consolidated warning's button: re-check whoever presses it.
pub const ANYONE_JOINED_DATA: &str = "j:any";

/// Members named in a consolidated warning; the rest are counted.
const MAX_NAMED: usize = 10;

/// One denied member to warn.
#[derive(Debug, Clone)]
pub struct WarnRequest {
    /// The member.
    pub member: User,
    /// The channels they must join.
    pub missing: Vec<Arc<EnforcedChannel>>,
    /// `warning_ttl_seconds`.
    pub delete_after: Duration,
    /// `warning_cooldown_seconds`: how long a shown warning gathers further members.
    pub cooldown: Duration,
    /// Whether a personal warning carries the "I've joined" button (not for a member an
    /// admin restricted: pressing it would lift the admin's restriction).
    pub joined_button: bool,
    /// `private_warnings`: show a personal warning to the member only.
    pub private: bool,
}

/// Members waiting for the group's next warning message.
#[derive(Debug, Clone)]
pub(super) struct WarnBatch {
    joined_button: bool,
    private: bool,
    named: Vec<User>,
    count: usize,
    missing: Vec<Arc<EnforcedChannel>>,
    delete_after: Duration,
    cooldown: Duration,
}

fn same_channel(a: &EnforcedChannel, b: &EnforcedChannel) -> bool {
    match (a.id, b.id) {
        (Some(x), Some(y)) => x == y,
        _ => a.username == b.username,
    }
}

fn merge_channels(into: &mut Vec<Arc<EnforcedChannel>>, from: &[Arc<EnforcedChannel>]) {
    for c in from {
        if !into.iter().any(|x| same_channel(x, c)) {
            into.push(Arc::clone(c));
        }
    }
}

impl WarnBatch {
    pub(super) fn new(r: WarnRequest) -> Self {
        Self {
            joined_button: r.joined_button,
            private: r.private,
            named: vec![r.member],
            count: 1,
            missing: r.missing,
            delete_after: r.delete_after,
            cooldown: r.cooldown,
        }
    }

    pub(super) fn add(&mut self, r: WarnRequest) {
        if self.named.iter().any(|u| u.id == r.member.id) {
            return;
        }
        self.count += 1;
        if self.named.len() < MAX_NAMED {
            self.named.push(r.member);
        }
        merge_channels(&mut self.missing, &r.missing);
        self.delete_after = r.delete_after;
        self.cooldown = r.cooldown;
    }

    pub(super) fn remove(&mut self, user: UserId) {
        if let Some(i) = self.named.iter().position(|u| u.id == user) {
            self.named.remove(i);
            self.count -= 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The group's warning on screen.
#[derive(Debug, Clone)]
pub(super) struct ShownWarning {
    message: MessageId,
    posted: Instant,
    cooldown: Duration,
    /// When the message is deleted by its timer, counted from its last edit.
    delete_after: Duration,
    named: Vec<User>,
    count: usize,
    missing: Vec<Arc<EnforcedChannel>>,
}

impl ShownWarning {
    pub(super) fn is_fresh(&self, now: Instant) -> bool {
        now < self.posted + self.cooldown
    }
}

/// "N members may not write here yet (…): join …, then press I've joined", naming up to ten
/// of them.
pub fn consolidated_message(
    named: &[User],
    count: usize,
    missing: &[Arc<EnforcedChannel>],
) -> OutgoingMessage {
    let mut names: Vec<String> = named
        .iter()
        .map(|u| {
            format!(
                "<a href=\"tg://user?id={}\">{}</a>",
                u.id.get(),
                escape_html(&u.display_name())
            )
        })
        .collect();
    if count > named.len() {
        names.push(format!("{} more", count - named.len()));
    }
    let channels: Vec<String> = missing
        .iter()
        .map(|c| format!("<b>{}</b>", escape_html(&channel_label(c))))
        .collect();
    let mut html = format!(
        "⚠️ {count} members may not write here yet ({}): to write in this group, join {}, then press “I've joined”.",
        names.join(", "),
        channels.join(" and ")
    );
    if missing.iter().any(|c| c.join_url().is_none()) {
        html.push_str("\n(A private channel has no invite link yet; the admins have been told.)");
    }
    let mut buttons = join_buttons(missing);
    buttons.push(vec![InlineButton::Callback {
        text: "✅ I've joined".to_owned(),
        data: ANYONE_JOINED_DATA.to_owned(),
    }]);
    OutgoingMessage {
        html,
        buttons,
        reply_to: None,
        silent: true,
    }
}

/// Sends `member`'s warning as an ephemeral message only they see. Returns `true` when it is
/// on screen (for them only, or — from a server that ignored the ephemeral parameters — for
/// everyone, then tracked as the public warning it is); `false` when the caller must post the
/// public warning.
async fn send_private(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    member: UserId,
    msg: &OutgoingMessage,
    batch: &WarnBatch,
) -> bool {
    let timers = app.flows().timers();
    match telegram.send_ephemeral(group.into(), member, msg).await {
        Ok(Posted::Ephemeral(id)) => {
            count(app, "warn_private", true);
            timers.schedule_ephemeral(group, member, id, batch.delete_after);
            log::debug!(group_id = group.get(), user_id = member.get(); "private warning sent");
            true
        }
        Ok(Posted::Public(message)) => {
            count(app, "warn_private", false);
            count(app, "warn", true);
            log::info!(
                group_id = group.get(),
                user_id = member.get();
                "the server posted the private warning publicly (no ephemeral messages before Bot API 10.2)"
            );
            timers.reschedule(group, Some(member), message, batch.delete_after);
            true
        }
        Err(err) => {
            count(app, "warn_private", false);
            log::info!(
                group_id = group.get(),
                user_id = member.get(),
                error:display = err;
                "cannot send a private warning; posting the public one"
            );
            false
        }
    }
}

/// A board member as the [`User`] the message names.
fn board_user(m: &BoardMember) -> User {
    User {
        id: m.id,
        is_bot: false,
        first_name: m.name.clone(),
        last_name: None,
        username: None,
    }
}

/// A token no other caller of the board holds: std's randomly keyed hasher (a fresh key
/// per call) over a per-process counter.
fn board_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u32(std::process::id());
    format!("{:016x}{n:x}", h.finish())
}

/// What [`send_shared`] did.
enum SharedSend {
    /// The warning is posted, edited or handed to the instance posting it.
    Done,
    /// Redis did not answer: the caller decides in process.
    Unavailable,
}

/// Notes the group's shown warning in this instance too, for an outage of the board later.
fn note_shown(
    outbox: &Outbox,
    group: GroupId,
    message: MessageId,
    posted: Instant,
    batch: &WarnBatch,
    view: &BoardView,
    missing: Vec<Arc<EnforcedChannel>>,
) {
    set_shown(
        outbox,
        group,
        ShownWarning {
            message,
            posted,
            cooldown: batch.cooldown,
            delete_after: batch.delete_after,
            named: view.named.iter().map(board_user).collect(),
            count: usize::try_from(view.count).unwrap_or(usize::MAX),
            missing,
        },
    );
}

/// Makes `shown` this instance's shown warning of `group` (while the group has a queue).
fn set_shown(outbox: &Outbox, group: GroupId, shown: ShownWarning) {
    let mut s = outbox.lock();
    if let Some(q) = s.groups.get_mut(&group) {
        q.shown = Some(shown);
    }
}

/// What [`edit_shown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    /// The message names the board's members now.
    Edited,
    /// The message is gone (deleted, too old to edit): a new one is needed.
    Gone,
    /// Telegram did not answer in time, or failed (5xx, 429 after every retry): the message
    /// is probably still up. The members are on the board; the next edit names them.
    Unsure,
}

/// Edits `message` into everyone on the board.
async fn edit_shown(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    message: MessageId,
    view: &BoardView,
    missing: &[Arc<EnforcedChannel>],
    delete_after: Duration,
) -> Edit {
    let named: Vec<User> = view.named.iter().map(board_user).collect();
    let count_all = usize::try_from(view.count).unwrap_or(usize::MAX);
    let msg = consolidated_message(&named, count_all, missing);
    match telegram.edit_message(group.into(), message, &msg).await {
        Ok(()) => {
            count(app, "warn_edit", true);
            app.flows()
                .timers()
                .reschedule(group, None, message, delete_after);
            log::info!(group_id = group.get(), members = count_all; "warning updated");
            Edit::Edited
        }
        Err(err) if err.is_transient() => {
            count(app, "warn_edit", false);
            log::info!(group_id = group.get(), error:display = err; "cannot edit the shown warning now; its members are named at its next edit");
            Edit::Unsure
        }
        Err(err) => {
            count(app, "warn_edit", false);
            log::debug!(group_id = group.get(), error:display = err; "cannot edit the shown warning; posting a new one");
            Edit::Gone
        }
    }
}

/// The group's warning through the shared board (several instances): post it, edit it, or
/// leave the members to the instance posting it.
async fn send_shared(
    outbox: &Outbox,
    app: &App,
    group: GroupId,
    batch: &WarnBatch,
    board: &dyn WarningBoard,
) -> SharedSend {
    let shared = app.flows().shared();
    let counted = |result: &str| {
        if let Some(s) = shared {
            s.count_board(result);
        }
    };
    let token = board_token();
    let members: Vec<BoardMember> = batch
        .named
        .iter()
        .map(|u| BoardMember {
            id: u.id,
            name: u.display_name(),
        })
        .collect();
    let telegram = app.telegram_in(Lane::Notify);
    // Two rounds at most: a shown warning that cannot be edited any more is cleared, and the
    // second round posts afresh.
    for _ in 0..2 {
        let slot = match board
            .join(group, &token, &members, MAX_NAMED, batch.cooldown)
            .await
        {
            Ok(slot) => slot,
            Err(err) => {
                counted("unavailable");
                log::debug!(group_id = group.get(), error:display = err; "warning board unanswered; this instance decides alone");
                return SharedSend::Unavailable;
            }
        };
        match slot {
            BoardSlot::Queued => {
                counted("queued");
                log::debug!(group_id = group.get(), members = batch.count; "another instance is posting the warning; members handed to it");
                return SharedSend::Done;
            }
            BoardSlot::Shown {
                message,
                view,
                left,
            } => {
                counted("edited");
                let edit = edit_shown(
                    app,
                    &telegram,
                    group,
                    message,
                    &view,
                    &batch.missing,
                    batch.delete_after,
                )
                .await;
                if edit == Edit::Unsure {
                    // Not a reason for a second message: the members are on the board.
                    return SharedSend::Done;
                }
                if edit == Edit::Edited {
                    let posted = Instant::now()
                        .checked_sub(batch.cooldown.saturating_sub(left))
                        .unwrap_or_else(Instant::now);
                    note_shown(
                        outbox,
                        group,
                        message,
                        posted,
                        batch,
                        &view,
                        batch.missing.clone(),
                    );
                    return SharedSend::Done;
                }
                // Gone (deleted by its timer or with its member's lift): cleared here and on
                // the board, so that the next round posts a new one.
                forget_shown(outbox, group, message);
                let _ = board.clear(group, &token, Some(message)).await;
            }
            BoardSlot::Post => {
                let now = Instant::now();
                let local = {
                    let s = outbox.lock();
                    s.groups
                        .get(&group)
                        .and_then(|q| q.shown.clone())
                        .filter(|w| w.is_fresh(now))
                };
                if let Some(shown) = local {
                    // This instance's warning from before the board was lost (Redis was
                    // down, or restarted empty): it goes back on the board, and the
                    // members are edited into it instead of a second message.
                    counted("restored");
                    if restore_shown(outbox, app, &telegram, group, batch, board, &token, &shown)
                        .await
                    {
                        return SharedSend::Done;
                    }
                    forget_shown(outbox, group, shown.message);
                    let _ = board.clear(group, &token, Some(shown.message)).await;
                    continue;
                }
                counted("posted");
                post_shared(outbox, app, &telegram, group, batch, board, &token).await;
                return SharedSend::Done;
            }
        }
    }
    SharedSend::Done
}

/// Forgets this instance's shown warning of `group` if it is `message`.
fn forget_shown(outbox: &Outbox, group: GroupId, message: MessageId) {
    let mut s = outbox.lock();
    if let Some(q) = s.groups.get_mut(&group) {
        if q.shown.as_ref().is_some_and(|w| w.message == message) {
            q.shown = None;
        }
    }
}

/// A warning of `group` was deleted (its member was unmuted): it is no longer the group's
/// shown warning, here or — with several instances — on the shared board, so the next
/// member gets a new one instead of an edit of a message that is gone.
pub(super) async fn warning_deleted(
    outbox: &Outbox,
    app: &App,
    group: GroupId,
    message: MessageId,
) {
    forget_shown(outbox, group, message);
    if let Some(shared) = app.flows().shared() {
        let board = Arc::clone(shared.board());
        if let Err(err) = board.clear(group, "", Some(message)).await {
            log::debug!(group_id = group.get(), error:display = err; "warning board not cleared; the next warning finds the message gone");
        }
    }
}

/// `user` in `group` was unmuted: if the group's shared warning names them alone (a
/// personal warning, possibly another instance's, whose deletion timer lives there), it is
/// deleted here and cleared from the board, so that the next member gets a new warning.
pub(super) async fn member_lifted(outbox: &Outbox, app: &App, group: GroupId, user: UserId) {
    let Some(shared) = app.flows().shared() else {
        return;
    };
    let board = Arc::clone(shared.board());
    let Ok(Some((message, view))) = board.shown(group).await else {
        return;
    };
    if view.count != 1 || view.named.first().map(|m| m.id) != Some(user) {
        return;
    }
    let telegram = app.telegram_in(Lane::Notify);
    if let Err(err) = telegram.delete_message(group.into(), message).await {
        if err.is_transient() {
            // Perhaps still up; its own timer deletes it.
            return;
        }
        log::debug!(group_id = group.get(), error:display = err; "a lifted member's warning was already gone");
    }
    forget_shown(outbox, group, message);
    let _ = board.clear(group, "", Some(message)).await;
}

/// Holding the board's slot with a warning of this instance still shown: puts it on the
/// board and edits the members in. `false` if it cannot be edited (gone).
#[allow(clippy::too_many_arguments)]
async fn restore_shown(
    outbox: &Outbox,
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    batch: &WarnBatch,
    board: &dyn WarningBoard,
    token: &str,
    shown: &ShownWarning,
) -> bool {
    let earlier: Vec<BoardMember> = shown
        .named
        .iter()
        .map(|u| BoardMember {
            id: u.id,
            name: u.display_name(),
        })
        .collect();
    let left = (shown.posted + shown.cooldown).saturating_duration_since(Instant::now());
    // Added under this caller's slot (the board answers `Queued` to its own token now).
    let _ = board.join(group, token, &earlier, MAX_NAMED, left).await;
    let mut view = match board.posted(group, token, shown.message).await {
        Ok(Some(view)) => view,
        _ => return false,
    };
    view.count = view.count.max((shown.count + batch.count) as u64);
    let mut missing = shown.missing.clone();
    merge_channels(&mut missing, &batch.missing);
    // Unsure: the message is probably up, and it is the board's now.
    if edit_shown(
        app,
        telegram,
        group,
        shown.message,
        &view,
        &missing,
        batch.delete_after,
    )
    .await
        == Edit::Gone
    {
        return false;
    }
    note_shown(
        outbox,
        group,
        shown.message,
        shown.posted,
        batch,
        &view,
        missing,
    );
    true
}

/// Holding the board's slot: posts the warning (personal for one member, private if the
/// group asks for it), then edits in whoever other instances gathered meanwhile.
async fn post_shared(
    outbox: &Outbox,
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    batch: &WarnBatch,
    board: &dyn WarningBoard,
    token: &str,
) {
    let (msg, personal) = match first_message(app, telegram, group, batch).await {
        Some(m) => m,
        None => {
            // Sent privately: nothing on screen for the others to join.
            let _ = board.clear(group, token, None).await;
            return;
        }
    };
    let message = match telegram.send_message(group.into(), &msg).await {
        Ok(message) => message,
        Err(err) => {
            count(app, "warn", false);
            log::warn!(group_id = group.get(), members = batch.count, error:display = err; "cannot post a warning");
            let _ = board.clear(group, token, None).await;
            return;
        }
    };
    count(app, "warn", true);
    log::info!(group_id = group.get(), message_id = message.0, members = batch.count; "warning posted (the group's shared warning)");
    let posted = Instant::now();
    let timers = app.flows().timers();
    timers.reschedule(group, personal, message, batch.delete_after);
    let view = match board.posted(group, token, message).await {
        Ok(Some(view)) => view,
        // The slot ran out while posting, or Redis went away: the message stands as this
        // instance's shown warning.
        _ => BoardView {
            count: batch.count as u64,
            named: batch
                .named
                .iter()
                .map(|u| BoardMember {
                    id: u.id,
                    name: u.display_name(),
                })
                .collect(),
        },
    };
    if view.count > batch.count as u64
        && edit_shown(
            app,
            telegram,
            group,
            message,
            &view,
            &batch.missing,
            batch.delete_after,
        )
        .await
            == Edit::Edited
    {
        note_shown(
            outbox,
            group,
            message,
            posted,
            batch,
            &view,
            batch.missing.clone(),
        );
        return;
    }
    set_shown(
        outbox,
        group,
        ShownWarning {
            message,
            posted,
            cooldown: batch.cooldown,
            delete_after: batch.delete_after,
            named: batch.named.clone(),
            count: batch.count,
            missing: batch.missing.clone(),
        },
    );
}

/// The message that starts a group's warning: the personal warning for one member (sent
/// privately when the group asks for it — then `None`), the consolidated one for several.
async fn first_message(
    app: &App,
    telegram: &dyn TelegramApi,
    group: GroupId,
    batch: &WarnBatch,
) -> Option<(OutgoingMessage, Option<UserId>)> {
    if batch.count == 1 && batch.named.len() == 1 {
        let member = &batch.named[0];
        let (mut msg, unlinked) = warning_message(member, &batch.missing);
        if !batch.joined_button {
            msg.buttons.retain(|row| {
                !row.iter()
                    .any(|b| matches!(b, InlineButton::Callback { .. }))
            });
            msg.html = msg.html.replace(", then press “I've joined”.", ".");
        }
        for channel in unlinked {
            let (app, channel) = (app.clone(), channel.clone());
            tokio::spawn(async move { notice::missing_invite_link(&app, group, &channel).await });
        }
        if batch.private && send_private(app, telegram, group, member.id, &msg, batch).await {
            return None;
        }
        Some((msg, Some(member.id)))
    } else {
        Some((
            consolidated_message(&batch.named, batch.count, &batch.missing),
            None,
        ))
    }
}

/// Puts this instance's shown warnings back on the shared board, after Redis came back
/// (perhaps restarted empty): a group whose board lost its warning learns it again, so the
/// next member is edited into the message on screen instead of getting a second one. A
/// board that has a warning already is left alone.
pub(super) async fn restore_board(outbox: &Outbox, app: &App) {
    let Some(shared) = app.flows().shared() else {
        return;
    };
    let board = Arc::clone(shared.board());
    let now = Instant::now();
    let shown: Vec<(GroupId, ShownWarning)> = {
        let s = outbox.lock();
        s.groups
            .iter()
            .filter_map(|(g, q)| q.shown.clone().filter(|w| w.is_fresh(now)).map(|w| (*g, w)))
            .collect()
    };
    let (mut restored, mut merged) = (0, 0);
    let mut errors_left = RESTORE_ERRORS;
    for (group, w) in shown {
        let token = board_token();
        let members: Vec<BoardMember> = w
            .named
            .iter()
            .map(|u| BoardMember {
                id: u.id,
                name: u.display_name(),
            })
            .collect();
        let left = (w.posted + w.cooldown).saturating_duration_since(now);
        let telegram = app.telegram_in(Lane::Notify);
        // A few rounds: another instance restoring at the same moment may hold the slot
        // between its `join` and its `posted` (Queued); then its warning is up a moment later.
        for _ in 0..RESTORE_ROUNDS {
            match board.join(group, &token, &members, MAX_NAMED, left).await {
                Ok(BoardSlot::Post) => {
                    if let Ok(Some(view)) = board.posted(group, &token, w.message).await {
                        restored += 1;
                        // Members another instance queued meanwhile are edited in.
                        if view.count > w.count as u64 {
                            edit_shown(
                                app,
                                &telegram,
                                group,
                                w.message,
                                &view,
                                &w.missing,
                                w.delete_after,
                            )
                            .await;
                        }
                    }
                    break;
                }
                // Another instance's warning went up meanwhile (each posted its own during
                // the outage): ours are named in it now, so this instance's copy goes.
                Ok(BoardSlot::Shown {
                    message,
                    view,
                    left,
                }) if message != w.message => {
                    if edit_shown(
                        app,
                        &telegram,
                        group,
                        message,
                        &view,
                        &w.missing,
                        w.delete_after,
                    )
                    .await
                        == Edit::Edited
                    {
                        // Deleted now (its timer, when due, finds it gone).
                        if let Err(err) = telegram.delete_message(group.into(), w.message).await {
                            log::debug!(group_id = group.get(), error:display = err; "cannot delete a duplicate warning; its timer deletes it");
                        }
                        let posted = now
                            .checked_sub(w.cooldown.saturating_sub(left))
                            .unwrap_or(now);
                        set_shown(
                            outbox,
                            group,
                            ShownWarning {
                                message,
                                posted,
                                named: view.named.iter().map(board_user).collect(),
                                count: usize::try_from(view.count).unwrap_or(usize::MAX),
                                ..w.clone()
                            },
                        );
                        merged += 1;
                    }
                    break;
                }
                Ok(BoardSlot::Queued) => {
                    tokio::time::sleep(RESTORE_PAUSE).await;
                }
                Ok(BoardSlot::Shown { .. }) => break,
                // Redis answered the subscription first; the board's connection is back
                // within a probe or two.
                Err(_) if errors_left > 0 => {
                    errors_left -= 1;
                    tokio::time::sleep(RESTORE_PAUSE).await;
                }
                Err(err) => {
                    log::warn!(error:display = err; "shown warnings not put back on the shared warning board (Redis does not answer); each instance keeps its own until it expires");
                    return;
                }
            }
        }
    }
    if restored > 0 || merged > 0 {
        log::info!(groups = restored, merged = merged; "shown warnings put back on the shared warning board; duplicates posted during the outage merged into the board's and deleted");
    }
}

/// Rounds of [`restore_board`] for one group while another instance holds its slot.
const RESTORE_ROUNDS: usize = 15;

/// The pause between those rounds.
const RESTORE_PAUSE: Duration = Duration::from_millis(300);

/// Unanswered board calls [`restore_board`] waits out in all before it gives up.
const RESTORE_ERRORS: usize = 10;

/// Posts or edits the group's warning for `batch`.
pub(super) async fn send(outbox: &Outbox, app: &App, group: GroupId, batch: WarnBatch) {
    if let Some(shared) = app.flows().shared() {
        let board = Arc::clone(shared.board());
        if let SharedSend::Done = send_shared(outbox, app, group, &batch, &*board).await {
            return;
        }
    }
    let now = Instant::now();
    let shown = {
        let mut s = outbox.lock();
        s.groups.get_mut(&group).and_then(|q| {
            if q.shown.as_ref().is_some_and(|w| !w.is_fresh(now)) {
                q.shown = None;
            }
            q.shown.clone()
        })
    };
    let telegram = app.telegram_in(Lane::Notify);
    let timers = app.flows().timers();
    if let Some(shown) = shown {
        let mut named = shown.named.clone();
        for u in &batch.named {
            if named.len() < MAX_NAMED && !named.iter().any(|n| n.id == u.id) {
                named.push(u.clone());
            }
        }
        let count_all = shown.count + batch.count;
        let mut missing = shown.missing.clone();
        merge_channels(&mut missing, &batch.missing);
        let msg = consolidated_message(&named, count_all, &missing);
        let (message, edited) = (
            shown.message,
            ShownWarning {
                named,
                count: count_all,
                missing,
                ..shown
            },
        );
        match telegram.edit_message(group.into(), message, &msg).await {
            Ok(()) => {
                count(app, "warn_edit", true);
                // Group-wide now: one member's join no longer deletes it.
                timers.reschedule(group, None, message, batch.delete_after);
                set_shown(outbox, group, edited);
                log::info!(group_id = group.get(), members = count_all; "warning updated");
                return;
            }
            Err(err) if err.is_transient() => {
                // Probably still up: no second message. The members are kept with it, so its
                // next edit names them.
                count(app, "warn_edit", false);
                log::info!(group_id = group.get(), error:display = err; "cannot edit the shown warning now; its members are named at its next edit");
                set_shown(outbox, group, edited);
                return;
            }
            Err(err) => {
                count(app, "warn_edit", false);
                // Deleted meanwhile (its timer, an admin, the member joined): post a new one.
                log::debug!(group_id = group.get(), error:display = err; "cannot edit the shown warning; posting a new one");
            }
        }
    }
    let Some((msg, personal)) = first_message(app, &telegram, group, &batch).await else {
        return;
    };
    match telegram.send_message(group.into(), &msg).await {
        Ok(message) => {
            count(app, "warn", true);
            log::info!(group_id = group.get(), message_id = message.0, members = batch.count; "warning posted");
            timers.reschedule(group, personal, message, batch.delete_after);
            set_shown(
                outbox,
                group,
                ShownWarning {
                    message,
                    posted: Instant::now(),
                    cooldown: batch.cooldown,
                    delete_after: batch.delete_after,
                    named: batch.named,
                    count: batch.count,
                    missing: batch.missing,
                },
            );
        }
        Err(err) => {
            count(app, "warn", false);
            log::warn!(group_id = group.get(), members = batch.count, error:display = err; "cannot post a warning");
        }
    }
}
