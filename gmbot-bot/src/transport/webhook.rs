//! Webhook mode: registering the webhook with Telegram, and [`WebhookIngress`], which decides
//! what to answer to one POST.
//!
//! The HTTP listener ([`crate::http`], through the [`WebhookEndpoint`] seam) reads the body
//! (sent by Telegram with the `X-Telegram-Bot-Api-Secret-Token` header) with a cap of
//! [`WebhookIngress::max_body`] + 1 bytes and calls [`WebhookIngress::accept`], which is
//! synchronous and never blocks: it checks the secret in constant time, parses, and queues
//! with `try_send`. Telegram treats any non-2xx answer as "deliver again later", so the
//! answers are chosen for that: 401/413/400 for requests that are not Telegram's (or never
//! will parse), 503 when the queue is full or the bot is stopping (so the update comes back),
//! 200 for everything taken — including a repeat, which must not come back a third time.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use url::Url;

use gmbot_core::telegram::TelegramResult;

use crate::botapi::{convert, BotApi, ALLOWED_UPDATES};
use crate::http::{HttpReply, WebhookEndpoint};
use crate::metrics::BotMetrics;
use crate::runtime::{Offer, Transport, UpdateSender};
use crate::secret::{BotToken, SecretString};
use crate::update::Update;

/// `max_connections` asked of Telegram (its maximum: the listener is not the bottleneck).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100;

/// The answer to one webhook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookReply {
    /// HTTP status.
    pub status: u16,
    /// A small JSON body (`application/json`).
    pub body: &'static str,
}

impl WebhookReply {
    pub(crate) const OK: Self = Self {
        status: 200,
        body: r#"{"ok":true}"#,
    };
    const DUPLICATE: Self = Self {
        status: 200,
        body: r#"{"ok":true,"duplicate":true}"#,
    };
    const IGNORED: Self = Self {
        status: 200,
        body: r#"{"ok":true,"ignored":true}"#,
    };
    const UNAUTHORIZED: Self = Self {
        status: 401,
        body: r#"{"ok":false,"error":"wrong or missing secret token"}"#,
    };
    const TOO_LARGE: Self = Self {
        status: 413,
        body: r#"{"ok":false,"error":"body too large"}"#,
    };
    const MALFORMED: Self = Self {
        status: 400,
        body: r#"{"ok":false,"error":"malformed update"}"#,
    };
    const OVERLOADED: Self = Self {
        status: 503,
        body: r#"{"ok":false,"error":"busy, retry later"}"#,
    };
    const STOPPING: Self = Self {
        status: 503,
        body: r#"{"ok":false,"error":"shutting down, retry later"}"#,
    };
}

/// The webhook's request handler. Cheap to clone.
#[derive(Clone)]
pub struct WebhookIngress {
    gate: WebhookGate,
    sender: UpdateSender,
    overload_log: Arc<OverloadLog>,
}

/// What an ingress decides before an update is offered to the runtime: the secret, the size
/// cap and the parse. Synchronous and pure but for its metrics and log lines, so the fuzz
/// targets (`fuzz/`) drive exactly the checks a webhook request goes through.
#[derive(Clone)]
pub(crate) struct WebhookGate {
    secret: Arc<[u8]>,
    max_body: usize,
    metrics: BotMetrics,
}

/// Rate limit for the "queue full" warning: under overload every refused
/// update would otherwise write a line (tens of MB in seconds, measured in the
/// load benchmark); the exact count is in `gmbot_webhook_rejections_total`.
#[derive(Debug)]
struct OverloadLog {
    started: std::time::Instant,
    /// Seconds since `started` of the last warning, plus one (0 = never warned).
    last: std::sync::atomic::AtomicU64,
    /// Refusals since the last warning.
    suppressed: std::sync::atomic::AtomicU64,
}

impl OverloadLog {
    const EVERY_SECS: u64 = 10;

    fn new() -> Self {
        Self {
            started: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts one refusal; returns how many refusals the warning to write now
    /// stands for, or `None` while within the quiet period.
    fn note(&self) -> Option<u64> {
        self.note_at(self.started.elapsed().as_secs() + 1)
    }

    /// [`note`](Self::note) at `now` seconds (≥ 1) after the start.
    fn note_at(&self, now: u64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last + Self::EVERY_SECS {
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl std::fmt::Debug for WebhookIngress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookIngress")
            .field("secret", &"<redacted>")
            .field("max_body", &self.gate.max_body)
            .finish_non_exhaustive()
    }
}

/// Byte-wise comparison whose time depends only on `expected`'s length, not on where the
/// first difference is (so response timing cannot be used to guess the secret).
fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = expected.len() ^ given.len();
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!*e);
        diff |= usize::from(e ^ g);
    }
    std::hint::black_box(diff) == 0
}

/// The webhook secret when `WEBHOOK_SECRET` is not set: hex of SHA-256 of
/// `"gmbot-webhook:" + token` (64 characters of `0-9a-f`, within Telegram's 1–256 of
/// `A-Za-z0-9_-`). Every instance with the same token derives the same value, and it reveals
/// nothing about the token.
pub fn derive_secret(token: &BotToken) -> SecretString {
    let digest = Sha256::new()
        .chain_update(b"gmbot-webhook:")
        .chain_update(token.expose().as_bytes())
        .finalize();
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 0x0f), 16).unwrap_or('0'));
    }
    SecretString::new(hex)
}

impl WebhookIngress {
    /// An ingress checking `secret`, refusing bodies over `max_body` bytes, queueing into `sender`.
    pub fn new(secret: &SecretString, max_body: usize, sender: UpdateSender) -> Self {
        let metrics = sender.app().metrics().clone();
        Self {
            gate: WebhookGate::new(secret, max_body, metrics),
            sender,
            overload_log: Arc::new(OverloadLog::new()),
        }
    }

    /// The largest body accepted; read at most this + 1 bytes.
    pub fn max_body(&self) -> usize {
        self.gate.max_body
    }

    /// Answers one `POST` to the webhook path. Never panics; blocks only for the update's
    /// write-ahead row in the update journal when that is on (`GMBOT_WEBHOOK_JOURNAL`), at
    /// most a few seconds. Called on the HTTP listener's own threads, never on tokio's.
    pub fn accept(&self, secret_header: Option<&str>, body: &[u8]) -> WebhookReply {
        self.gate
            .accept_with(secret_header, body, |update| self.offer(update))
    }

    /// Offers a parsed update to the runtime and answers for it.
    fn offer(&self, update: Update) -> WebhookReply {
        let id = update.id;
        match self.sender.try_offer(update, Transport::Webhook) {
            Offer::Queued => WebhookReply::OK,
            Offer::Duplicate => {
                log::debug!(update_id = id; "webhook update delivered again; already taken");
                self.gate.reject("duplicate", WebhookReply::DUPLICATE)
            }
            Offer::Full => {
                if let Some(refused) = self.overload_log.note() {
                    log::warn!(update_id = id, queued = self.sender.queue_len(), refused = refused; "update queue full; asking Telegram to retry (at most one such line per 10 s; `refused` counts the updates since the last one)");
                }
                self.gate.reject("overloaded", WebhookReply::OVERLOADED)
            }
            Offer::Closed => self.gate.reject("shutting_down", WebhookReply::STOPPING),
        }
    }
}

impl WebhookGate {
    /// A gate checking `secret` and refusing bodies over `max_body` bytes; rejections are
    /// counted in `metrics`.
    pub(crate) fn new(secret: &SecretString, max_body: usize, metrics: BotMetrics) -> Self {
        Self {
            secret: Arc::from(secret.expose().as_bytes()),
            max_body,
            metrics,
        }
    }

    fn reject(&self, reason: &'static str, reply: WebhookReply) -> WebhookReply {
        self.metrics
            .webhook_rejections
            .with_label_values(&[reason])
            .inc();
        reply
    }

    /// Checks the secret and the size, parses the body, and hands a parsed update to
    /// `offer`, whose answer is the request's; anything refused before is answered here.
    pub(crate) fn accept_with(
        &self,
        secret_header: Option<&str>,
        body: &[u8],
        offer: impl FnOnce(Update) -> WebhookReply,
    ) -> WebhookReply {
        let authorized = secret_header.is_some_and(|h| same_secret(&self.secret, h.as_bytes()));
        if !authorized {
            log::warn!(
                reason = if secret_header.is_some() { "wrong" } else { "missing" };
                "webhook request without the right secret token"
            );
            return self.reject("unauthorized", WebhookReply::UNAUTHORIZED);
        }
        if body.len() > self.max_body {
            log::warn!(bytes = body.len(), max = self.max_body; "webhook body over the cap");
            return self.reject("too_large", WebhookReply::TOO_LARGE);
        }
        match convert::from_json(body) {
            Ok(update) => offer(update),
            Err(e) => self.unparsed(body, &e),
        }
    }

    /// A body that is not an update GMBot can read. Valid JSON with an `update_id` is an update
    /// of a kind (or shape) this version does not know: acknowledge it, or Telegram would
    /// re-deliver it for hours. Anything else is refused as malformed.
    fn unparsed(&self, body: &[u8], error: &serde_json::Error) -> WebhookReply {
        let id = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("update_id").and_then(serde_json::Value::as_u64));
        match id {
            Some(id) => {
                log::warn!(update_id = id, error:display = error; "webhook update not understood; acknowledged and skipped");
                self.reject("unsupported", WebhookReply::IGNORED)
            }
            None => {
                log::warn!(bytes = body.len(), error:display = error; "malformed webhook body");
                self.reject("malformed", WebhookReply::MALFORMED)
            }
        }
    }
}

impl WebhookEndpoint for WebhookIngress {
    fn accept(&self, secret_header: Option<&str>, body: &[u8]) -> HttpReply {
        let reply = WebhookIngress::accept(self, secret_header, body);
        HttpReply::json(reply.status, reply.body)
    }
}

/// `setWebhook` for `url` with the secret, [`ALLOWED_UPDATES`] (always sent: an omitted list
/// keeps the previous one, and `chat_member` must be asked for) and `max_connections`.
pub async fn register(
    api: &BotApi,
    url: &Url,
    secret: &SecretString,
    max_connections: u32,
) -> TelegramResult<()> {
    api.set_webhook(
        url.as_str(),
        Some(secret.expose()),
        &ALLOWED_UPDATES,
        max_connections,
        false,
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn overload_warning_is_written_once_per_quiet_period() {
        let log = super::OverloadLog::new();
        assert_eq!(log.note_at(1), Some(1), "the first refusal is logged");
        for _ in 0..999 {
            assert_eq!(
                log.note_at(5),
                None,
                "refusals within 10 s are only counted"
            );
        }
        assert_eq!(log.note_at(10), None);
        assert_eq!(
            log.note_at(11),
            Some(1001),
            "the next line stands for every refusal since the last one"
        );
        assert_eq!(log.note_at(12), None);
    }

    use super::*;

    #[test]
    fn secret_comparison() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"abc", b""));
        assert!(!same_secret(b"", b"a"));
        // A byte equal to the complement of the expected one must not read as a match.
        assert!(!same_secret(b"a", &[!b'a']));
    }

    #[test]
    fn derived_secret_is_stable_valid_and_hides_the_token() {
        let t = BotToken::parse("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-").expect("token");
        let a = derive_secret(&t);
        let b = derive_secret(&t);
        assert_eq!(a, b, "every instance agrees");
        let s = a.expose();
        assert_eq!(s.len(), 64);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(!s.contains("AAHdq"));
        let other =
            BotToken::parse("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_").expect("token");
        assert_ne!(derive_secret(&other), a);
        // Known answer: sha256("gmbot-webhook:123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-").
        let expected = {
            let d = Sha256::digest(b"gmbot-webhook:123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-");
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(s, expected);
    }
}
