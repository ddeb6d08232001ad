//! Long polling: `deleteWebhook` (getUpdates answers 409 while a webhook is set), then
//! `getUpdates` in a loop with `offset`, the long-poll `timeout` and `allowed_updates` (always
//! sent: an omitted list keeps the previous one, and `chat_member` must be asked for).
//!
//! An update is confirmed by the next call's `offset` only once it has been *handled* or
//! *kept* in the store's update journal: the offset stops at the oldest accepted update that is
//! neither (Telegram sends the updates from there again; the runtime recognises them as
//! repeats), so stopping the bot, even in the middle of a raid, never loses an update Telegram
//! was told is done. A raided chat's updates are handled one after another; when
//! [`KEEP_BACKLOG_AT`] or more of them wait, they are written to the journal in one batch so the
//! offset can move past them and the updates of every other chat keep coming (getUpdates
//! returns at most 100 at a time). The runtime waits when full, so polling slows down rather
//! than piling updates up in memory.
//! Network errors and 5xx back off exponentially; a 429 waits `retry_after`; a 409 means a
//! second poller (or a webhook set by someone else) and is reported as such. A rejected token
//! stops polling with an error.

use std::time::Duration;

use gmbot_core::telegram::TelegramError;

use crate::botapi::{convert, BotApi, ALLOWED_UPDATES};
use crate::runtime::{Offer, Shutdown, Transport, UpdateSender};

/// Waiting updates (behind the one being handled in their chat) from which polling keeps them
/// in the update journal, to confirm them and fetch further: half of a `getUpdates` batch.
pub const KEEP_BACKLOG_AT: usize = 50;

/// Backoff bounds for failed `getUpdates` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollingOptions {
    /// First pause after a failure.
    pub backoff_min: Duration,
    /// Longest pause.
    pub backoff_max: Duration,
}

impl Default for PollingOptions {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Why polling stopped before the shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum PollingError {
    /// Telegram refused the bot (revoked token, …): retrying will not help.
    #[error("Telegram refused getUpdates: {0}")]
    Refused(#[source] TelegramError),
}

/// Whether an error is Telegram's 409 Conflict for `getUpdates`.
fn is_conflict(e: &TelegramError) -> bool {
    match e {
        TelegramError::BadRequest(text) | TelegramError::Forbidden(text) => {
            let lower = text.to_ascii_lowercase();
            lower.contains("conflict") || lower.contains("terminated by other getupdates")
        }
        _ => false,
    }
}

struct Backoff {
    options: PollingOptions,
    next: Duration,
}

impl Backoff {
    fn new(options: PollingOptions) -> Self {
        Self {
            options,
            next: options.backoff_min,
        }
    }

    fn reset(&mut self) {
        self.next = self.options.backoff_min;
    }

    fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.options.backoff_max);
        now
    }
}

/// Sleeps `d` unless shutdown comes first; `false` if it did.
async fn pause(d: Duration, shutdown: &Shutdown) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown.wait() => false,
    }
}

/// The offset that confirms what is handled: below the oldest accepted update not yet
/// handled, and never past what was fetched.
fn confirmable(sender: &UpdateSender, fetched: Option<i64>) -> Option<i64> {
    match (sender.oldest_unfinished(), fetched) {
        (Some(oldest), Some(f)) => Some(oldest.min(f)),
        (Some(oldest), None) => Some(oldest),
        (None, f) => f,
    }
}

/// Polls until `shutdown` fires (then `Ok` with the offset after the last update fetched,
/// for [`confirm_handled`]) or Telegram refuses the bot (then `Err`).
pub async fn run(
    api: &BotApi,
    sender: &UpdateSender,
    shutdown: &Shutdown,
    options: PollingOptions,
) -> Result<Option<i64>, PollingError> {
    let mut backoff = Backoff::new(options);
    // getUpdates is refused while a webhook is set: remove it first (keeping pending updates).
    loop {
        let result = tokio::select! {
            r = api.delete_webhook(false) => r,
            () = shutdown.wait() => return Ok(None),
        };
        match result {
            Ok(()) => break,
            Err(e) if e.is_temporary() => {
                let wait = match e {
                    TelegramError::RetryAfter { retry_after } => retry_after,
                    _ => backoff.step(),
                };
                log::warn!(error:display = e, retry_ms = wait.as_millis() as u64; "deleteWebhook failed; retrying");
                if !pause(wait, shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(PollingError::Refused(e)),
        }
    }
    backoff.reset();
    log::info!(transport = "polling"; "receiving updates by long polling");

    // After the last update fetched; what is asked for is `confirmable` (≤ this).
    let mut fetched: Option<i64> = None;
    loop {
        sender.keep_backlog(KEEP_BACKLOG_AT).await;
        let offset = confirmable(sender, fetched);
        let result = tokio::select! {
            r = api.get_updates(offset) => r,
            () = shutdown.wait() => break,
        };
        let batch = match result {
            Ok(b) => {
                backoff.reset();
                b
            }
            Err(TelegramError::RetryAfter { retry_after }) => {
                log::warn!(retry_ms = retry_after.as_millis() as u64; "getUpdates rate limited");
                if !pause(retry_after, shutdown).await {
                    break;
                }
                continue;
            }
            Err(e) if is_conflict(&e) => {
                let wait = backoff.step();
                log::error!(
                    error:display = e,
                    retry_ms = wait.as_millis() as u64;
                    "getUpdates conflict (409): another process is polling with this token, or a webhook was set again. Run one polling instance per token, or set WEBHOOK_URL on every instance"
                );
                if !pause(wait, shutdown).await {
                    break;
                }
                continue;
            }
            Err(e) if e.is_transient() => {
                let wait = backoff.step();
                log::warn!(error:display = e, retry_ms = wait.as_millis() as u64; "getUpdates failed; retrying");
                if !pause(wait, shutdown).await {
                    break;
                }
                continue;
            }
            Err(e) => return Err(PollingError::Refused(e)),
        };
        for (id, error) in &batch.malformed {
            sender
                .app()
                .metrics()
                .errors
                .with_label_values(&["malformed_update"])
                .inc();
            log::warn!(update_id = id.unwrap_or(-1), error:display = error; "update not understood; skipped");
        }
        let mut closed = false;
        let mut fresh = 0usize;
        for update in batch.updates {
            if closed {
                break;
            }
            let update = convert::update(update);
            match sender.offer(update, Transport::Polling).await {
                Offer::Queued => fresh += 1,
                Offer::Duplicate => {}
                Offer::Closed => closed = true,
                // `offer` waits for room; it never reports a full queue.
                Offer::Full => {}
            }
        }
        if let Some(next) = batch.next_offset {
            fetched = Some(fetched.map_or(next, |f| f.max(next)));
        }
        if closed {
            break;
        }
        if fresh == 0 && sender.oldest_unfinished().is_some() {
            // Only updates already being handled came back (the offset waits for the
            // oldest of them): give the handlers a moment instead of asking again at once.
            if !pause(Duration::from_millis(20), shutdown).await {
                break;
            }
        }
    }
    Ok(fetched)
}

/// Confirms the updates handled (or kept in the update journal) so far, so a restart does not
/// fetch them again: up to the oldest one neither handled nor kept (which the next start
/// fetches again), at most `fetched`. Call it after the runtime drained. Best effort, bounded: the next start re-fetches them if
/// this fails.
pub async fn confirm_handled(api: &BotApi, sender: &UpdateSender, fetched: Option<i64>) {
    let Some(offset) = confirmable(sender, fetched) else {
        return;
    };
    let call = api.get_updates_with(Some(offset), 1, 0, &ALLOWED_UPDATES);
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => log::debug!(offset = offset; "confirmed queued updates"),
        Ok(Err(e)) => {
            log::warn!(error:display = e; "could not confirm the last updates; they will be fetched again")
        }
        Err(_) => log::warn!("confirming the last updates timed out; they will be fetched again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(PollingOptions {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
        });
        let steps: Vec<_> = (0..4).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(100));
    }

    #[test]
    fn conflict_is_recognised() {
        let e = TelegramError::BadRequest(
            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running".into(),
        );
        assert!(is_conflict(&e));
        assert!(!is_conflict(&TelegramError::BadRequest(
            "chat not found".into()
        )));
        assert!(!is_conflict(&TelegramError::Network("conflict".into())));
    }
}
