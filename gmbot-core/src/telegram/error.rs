//! Telegram call failures, classified by what the caller must do about them.

use std::time::Duration;

/// A failed Telegram call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    /// `429 Too Many Requests`: wait exactly `retry_after`, then retry.
    #[error("rate limited by Telegram: retry after {} s", retry_after.as_secs())]
    RetryAfter {
        /// `parameters.retry_after`.
        retry_after: Duration,
    },
    /// The bot lacks an admin right, or is not an admin of the channel
    /// ("member list is inaccessible", "not enough rights to restrict/unrestrict chat member").
    #[error("the bot lacks the rights for this: {0}")]
    NotEnoughRights(String),
    /// The chat does not exist or the bot is not a member of it.
    #[error("chat not found or the bot is not in it: {0}")]
    ChatNotFound(String),
    /// The user does not exist or is not known to the chat (`USER_NOT_PARTICIPANT`, `PARTICIPANT_ID_INVALID`).
    #[error("user not found: {0}")]
    UserNotFound(String),
    /// The bot may not message this user (blocked the bot, never started it) or was kicked (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Any other 400 answer: the request itself is wrong and retrying will not help.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A 5xx answer from Telegram.
    #[error("Telegram server error {code}: {description}")]
    Server {
        /// HTTP status.
        code: u16,
        /// Telegram's description.
        description: String,
    },
    /// The request did not complete (connection, timeout, an answer that is not the Bot API's
    /// JSON at all, such as a proxy's error page).
    #[error("network error talking to Telegram: {0}")]
    Network(String),
    /// Telegram answered, but the answer's `result` does not have the shape this version
    /// reads (a field missing that every Bot API version sends, a value of the wrong type, a
    /// status nobody knows yet). Asking again gets the same answer, so it is never retried.
    #[error("could not read Telegram's answer to {method}: {detail}")]
    Decode {
        /// The Bot API method (`getChatAdministrators`, `getUpdates`, …).
        method: String,
        /// What did not fit, naming the field (serde's message).
        detail: String,
    },
}

impl TelegramError {
    /// Worth retrying after a backoff (5xx, network). Never a [`Self::Decode`] failure.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Network(_))
    }

    /// Worth asking again later: a 429 (after its `retry_after`) or a [`Self::is_transient`]
    /// failure, as opposed to an answer about the call itself (a refusal, a bad request).
    pub fn is_temporary(&self) -> bool {
        self.is_transient() || matches!(self, Self::RetryAfter { .. })
    }

    /// A stable, bounded name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RetryAfter { .. } => "retry_after",
            Self::NotEnoughRights(_) => "not_enough_rights",
            Self::ChatNotFound(_) => "chat_not_found",
            Self::UserNotFound(_) => "user_not_found",
            Self::Forbidden(_) => "forbidden",
            Self::BadRequest(_) => "bad_request",
            Self::Server { .. } => "server",
            Self::Network(_) => "network",
            Self::Decode { .. } => "decode",
        }
    }
}

/// Result alias for Telegram calls.
pub type TelegramResult<T> = Result<T, TelegramError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoding_failure_is_its_own_kind_and_not_transient() {
        let e = TelegramError::Decode {
            method: "getChatAdministrators".into(),
            detail: "missing field `user`".into(),
        };
        assert!(!e.is_transient());
        assert_eq!(e.kind(), "decode");
        assert_eq!(
            e.to_string(),
            "could not read Telegram's answer to getChatAdministrators: missing field `user`"
        );
        assert!(TelegramError::Network("reset".into()).is_transient());
    }
}
