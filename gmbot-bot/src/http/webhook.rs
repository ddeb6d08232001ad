//! The webhook route: reads the request body with a cap and hands it to the ingress.
//!
//! `tiny_http` has no body limit of its own, so the declared length is checked
//! first and the body is then read through `take(max + 1)`: a sender that lies
//! about (or omits) the length still cannot make us buffer more than the cap.

use std::io::Read;

use tiny_http::{Header, Request};

/// The header in which Telegram sends the webhook's `secret_token`.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Largest webhook body accepted. Telegram's updates are a few kilobytes; a
/// message with a long text and its entities stays well under this.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// A small HTTP answer: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl HttpReply {
    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }
}

/// Where the listener delivers webhook requests: checks the secret, parses and
/// enqueues the update, and answers at once — it must not block.
pub trait WebhookEndpoint: Send + Sync + 'static {
    /// Takes one webhook request: the secret header as sent (if any) and the body.
    fn accept(&self, secret_header: Option<&str>, body: &[u8]) -> HttpReply;
}

/// Reads the body (at most `max_body` bytes) and passes it on; 413 when it is larger.
pub(super) fn accept(
    request: &mut Request,
    endpoint: &dyn WebhookEndpoint,
    max_body: usize,
) -> HttpReply {
    let declared = request.body_length();
    let secret = secret_header(request.headers()).map(str::to_owned);
    accept_parts(
        declared,
        secret.as_deref(),
        request.as_reader(),
        endpoint,
        max_body,
    )
}

/// The value of the [`SECRET_HEADER`] among `headers` (the first, if sent more than once).
pub(crate) fn secret_header(headers: &[Header]) -> Option<&str> {
    headers
        .iter()
        .find(|h| h.field.equiv(SECRET_HEADER))
        .map(|h| h.value.as_str())
}

/// [`accept`] on a request's parts: the length it declared (`Content-Length`, if any), its
/// secret header and its body as a reader. No socket needed, so the fuzz targets (`fuzz/`)
/// drive it with whatever a client could send.
pub(crate) fn accept_parts(
    declared: Option<usize>,
    secret: Option<&str>,
    reader: &mut dyn Read,
    endpoint: &dyn WebhookEndpoint,
    max_body: usize,
) -> HttpReply {
    if declared.is_some_and(|n| n > max_body) {
        return too_large();
    }
    let capacity = declared.unwrap_or(0).min(max_body);
    let mut body = Vec::with_capacity(capacity);
    let limit = u64::try_from(max_body)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    if let Err(e) = reader.take(limit).read_to_end(&mut body) {
        log::debug!(error = e.to_string().as_str(); "webhook body could not be read");
        return HttpReply::json(400, r#"{"error":"cannot read the body"}"#);
    }
    if body.len() > max_body {
        return too_large();
    }
    endpoint.accept(secret, &body)
}

fn too_large() -> HttpReply {
    HttpReply::json(413, r#"{"error":"body too large"}"#)
}
