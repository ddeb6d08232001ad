//! A second look at a message (or a join) let through because Telegram could not answer:
//! verified again once it answers, and enforced then.
//!
//! A group's failure policy `open` (the default) lets a member write, or a joiner in, when
//! their membership cannot be read. When the reason is Telegram itself (a 429 storm or a 5xx window that
//! outlasted the dispatcher's retries, timeouts) and not the bot's rights, the message is
//! verified again after 2 s, then 4, 8, 16, 32 and 60 s (10 looks, about six minutes): a
//! non-subscriber's message is deleted and the member muted and warned (a joiner muted and
//! warned) as if the first look had answered; a subscriber's stays. The looks wait in memory on the instance that handled
//! the message: an instance that stops or dies meanwhile drops them (the member's next
//! message is verified as usual).

use std::time::Duration;

use gmbot_core::domain::{GroupId, UnknownReason};
use gmbot_core::engine::{Decision, MessageContext, Verdict};

use crate::app::App;
use crate::outbox::{storm_wait, STORM_FIRST_WAIT, STORM_RETRIES};
use crate::update::User;

use super::enforce;

/// Looks at most after the first: the outbox's schedule after a storm.
const LOOKS: u32 = STORM_RETRIES;

/// Whether `verdict` let the member write only because Telegram did not answer for a channel.
pub(crate) fn wanted(verdict: &Verdict) -> bool {
    verdict.decision.is_allowed()
        && !matches!(verdict.decision, Decision::NotEnforced(_))
        && verdict
            .unverifiable
            .iter()
            .any(|u| u.reason == UnknownReason::TelegramUnavailable)
}

/// The wait before look number `look` (1 = the first).
fn wait(look: u32) -> Duration {
    storm_wait(STORM_FIRST_WAIT, look)
}

/// Verifies `member`'s message in `group` (described by `ctx`) again later, in the background,
/// and enforces the verdict then.
pub(crate) fn schedule(app: &App, group: GroupId, member: User, ctx: MessageContext) {
    let app = app.clone();
    app.metrics()
        .second_looks
        .with_label_values(&["scheduled"])
        .inc();
    tokio::spawn(async move {
        for look in 1..=LOOKS {
            tokio::time::sleep(wait(look)).await;
            let guard = app.flows().member_lock(group, member.id).await;
            let verdict = match app.engine().verify(group, member.id, ctx).await {
                Ok(v) => v,
                Err(err) => {
                    log::info!(group_id = group.get(), user_id = member.id.get(), error:display = err; "second look at a message failed; looking again later");
                    continue;
                }
            };
            if wanted(&verdict) {
                continue;
            }
            let outcome = if matches!(verdict.decision, Decision::NotEnforced(_))
                || verdict.decision.is_allowed()
            {
                "allowed"
            } else {
                if let Err(err) = enforce::perform(&app, group, &member, &verdict).await {
                    log::warn!(group_id = group.get(), user_id = member.id.get(), error:display = err; "cannot enforce a second look: the store failed");
                }
                log::info!(
                    group_id = group.get(),
                    user_id = member.id.get(),
                    look = look,
                    decision = verdict.decision.as_str();
                    "message denied on a second look (Telegram could not answer the first)"
                );
                "denied"
            };
            drop(guard);
            app.metrics()
                .second_looks
                .with_label_values(&[outcome])
                .inc();
            return;
        }
        log::info!(group_id = group.get(), user_id = member.id.get(); "message left as it is: Telegram did not answer any look");
        app.metrics()
            .second_looks
            .with_label_values(&["given_up"])
            .inc();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_wait_twice_as_long_each_time_up_to_a_minute() {
        let waits: Vec<u64> = (1..=LOOKS).map(|l| wait(l).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        assert_eq!(wait(u32::MAX), Duration::from_secs(60));
    }
}
