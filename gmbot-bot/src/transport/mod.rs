//! How updates reach the bot: long polling (`getUpdates`) unless `WEBHOOK_URL` is set, then
//! a webhook (`setWebhook` + the HTTP listener calling [`webhook::WebhookIngress`]).
//!
//! Both transports convert the Bot API's updates, hand them to the runtime's
//! [`UpdateSender`](crate::runtime::UpdateSender) (which de-duplicates and counts them) and
//! stop taking updates when the shutdown signal fires.

pub mod polling;
pub mod webhook;

use crate::config::Config;

/// The transport a configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `getUpdates` long polling (no `WEBHOOK_URL`). Single instance by Telegram's design.
    Polling,
    /// Webhook at `WEBHOOK_URL`, served on `HTTP_LISTEN` at the URL's path.
    Webhook {
        /// The public URL given to `setWebhook`.
        url: url::Url,
        /// The path the listener serves the webhook at.
        path: String,
    },
}

impl Mode {
    /// Webhook when `WEBHOOK_URL` is set, long polling otherwise.
    pub fn detect(config: &Config) -> Self {
        match &config.webhook {
            Some(w) => Self::Webhook {
                url: w.url.clone(),
                path: w.url.path().to_owned(),
            },
            None => Self::Polling,
        }
    }

    /// `polling` or `webhook`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Webhook { .. } => "webhook",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_only_when_its_url_is_set() {
        let polling = Config::from_vars([("REDIS_URL", "")]).expect("valid");
        assert_eq!(Mode::detect(&polling), Mode::Polling);
        let hook =
            Config::from_vars([("WEBHOOK_URL", "https://bot.example.com/tg/hook")]).expect("valid");
        match Mode::detect(&hook) {
            Mode::Webhook { url, path } => {
                assert_eq!(path, "/tg/hook");
                assert_eq!(url.as_str(), "https://bot.example.com/tg/hook");
            }
            other => panic!("expected webhook, got {other:?}"),
        }
        assert_eq!(Mode::detect(&hook).name(), "webhook");
    }
}
