//! Telegram's error answers classified into [`TelegramError`] kinds, from `error_code`,
//! `description` and `parameters` — the only place that reads error texts.

use std::time::Duration;

use gmbot_core::telegram::TelegramError;

use crate::secret::BotToken;

/// Classifies one error answer.
///
/// Order matters: a rate limit and a server error are recognised by code; then the
/// descriptions Telegram uses for missing rights, unknown chats and unknown users (some of
/// them arrive as 403, e.g. "bot is not a member of the channel chat"); then the remaining
/// codes. `401 Unauthorized` (a revoked or mistyped token) is reported as `Forbidden`, the
/// non-retryable refusal the port offers.
pub fn classify(code: u64, description: &str, retry_after: Option<u64>) -> TelegramError {
    let text = description.to_owned();
    let lower = description.to_ascii_lowercase();
    if code == 429 {
        // "Too Many Requests: retry after N" also carries N in the text; parameters win.
        let secs = retry_after
            .or_else(|| {
                lower
                    .rsplit("retry after ")
                    .next()
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(1);
        return TelegramError::RetryAfter {
            retry_after: Duration::from_secs(secs),
        };
    }
    if (500..600).contains(&code) {
        return TelegramError::Server {
            code: u16::try_from(code).unwrap_or(500),
            description: text,
        };
    }
    let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if any(&[
        "member list is inaccessible",
        "not enough rights",
        "have no rights",
        "chat_admin_required",
        "need administrator rights",
        "can't manage",
    ]) {
        return TelegramError::NotEnoughRights(text);
    }
    if any(&[
        "chat not found",
        "bot is not a member",
        "peer_id_invalid",
        "channel_private",
        "group chat was upgraded",
    ]) {
        return TelegramError::ChatNotFound(text);
    }
    if any(&[
        "user not found",
        "participant_id_invalid",
        "user_not_participant",
        "user_id_invalid",
        "invalid user_id",
    ]) {
        return TelegramError::UserNotFound(text);
    }
    match code {
        401 => TelegramError::Forbidden(format!(
            "{text} (Telegram rejected the bot token: check TELEGRAM_BOT_TOKEN)"
        )),
        403 => TelegramError::Forbidden(text),
        _ => TelegramError::BadRequest(text),
    }
}

/// A transport failure as text: the error and its causes, with the token removed from any URL.
pub(crate) fn network(token: &BotToken, err: &(dyn std::error::Error + 'static)) -> TelegramError {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    TelegramError::Network(token.redact(&text))
}

/// Converts a client error into the port's error, never letting the token through.
pub(crate) fn from_client(token: &BotToken, err: frankenstein::Error) -> TelegramError {
    let classified = match err {
        frankenstein::Error::Api(resp) => classify(
            resp.error_code,
            &resp.description,
            resp.parameters.and_then(|p| p.retry_after).map(u64::from),
        ),
        frankenstein::Error::HttpReqwest(e) => {
            let timeout = e.is_timeout();
            let net = network(token, &e);
            if timeout {
                TelegramError::Network(format!("request timed out ({net})"))
            } else {
                net
            }
        }
        // A body that is not the Bot API's JSON envelope at all: a proxy's error page, a
        // truncated answer — something between us and Telegram, which a retry may get past.
        // A `result` of an unexpected shape is decoded (and reported) by the client itself.
        frankenstein::Error::JsonDecode { source, .. } => {
            TelegramError::Network(format!("malformed answer from the Bot API: {source}"))
        }
        frankenstein::Error::JsonEncode { source, .. } => {
            TelegramError::BadRequest(format!("could not encode the request: {source}"))
        }
        other => TelegramError::Network(other.to_string()),
    };
    redact(token, classified)
}

/// Removes the token from whatever text an error carries.
fn redact(token: &BotToken, e: TelegramError) -> TelegramError {
    match e {
        TelegramError::NotEnoughRights(t) => TelegramError::NotEnoughRights(token.redact(&t)),
        TelegramError::ChatNotFound(t) => TelegramError::ChatNotFound(token.redact(&t)),
        TelegramError::UserNotFound(t) => TelegramError::UserNotFound(token.redact(&t)),
        TelegramError::Forbidden(t) => TelegramError::Forbidden(token.redact(&t)),
        TelegramError::BadRequest(t) => TelegramError::BadRequest(token.redact(&t)),
        TelegramError::Server { code, description } => TelegramError::Server {
            code,
            description: token.redact(&description),
        },
        TelegramError::Network(t) => TelegramError::Network(token.redact(&t)),
        TelegramError::Decode { method, detail } => TelegramError::Decode {
            method,
            detail: token.redact(&detail),
        },
        other @ TelegramError::RetryAfter { .. } => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_telegram_errors() {
        assert_eq!(
            classify(429, "Too Many Requests: retry after 7", Some(7)),
            TelegramError::RetryAfter {
                retry_after: Duration::from_secs(7)
            }
        );
        assert_eq!(
            classify(429, "Too Many Requests: retry after 3", None),
            TelegramError::RetryAfter {
                retry_after: Duration::from_secs(3)
            }
        );
        let k = |code, d: &str| classify(code, d, None).kind();
        assert_eq!(
            k(400, "Bad Request: member list is inaccessible"),
            "not_enough_rights"
        );
        assert_eq!(
            k(
                400,
                "Bad Request: not enough rights to restrict/unrestrict chat member"
            ),
            "not_enough_rights"
        );
        assert_eq!(k(400, "Bad Request: chat not found"), "chat_not_found");
        assert_eq!(
            k(403, "Forbidden: bot is not a member of the channel chat"),
            "chat_not_found"
        );
        assert_eq!(k(400, "Bad Request: user not found"), "user_not_found");
        assert_eq!(
            k(400, "Bad Request: PARTICIPANT_ID_INVALID"),
            "user_not_found"
        );
        assert_eq!(
            k(400, "Bad Request: USER_NOT_PARTICIPANT"),
            "user_not_found"
        );
        assert_eq!(
            k(403, "Forbidden: bot was blocked by the user"),
            "forbidden"
        );
        assert_eq!(k(401, "Unauthorized"), "forbidden");
        assert_eq!(k(502, "Bad Gateway"), "server");
        assert_eq!(k(400, "Bad Request: message text is empty"), "bad_request");
        assert_eq!(
            k(409, "Conflict: terminated by other getUpdates request"),
            "bad_request"
        );
    }
}
