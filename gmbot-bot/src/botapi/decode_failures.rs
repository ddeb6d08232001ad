//! Answers the client could not read: counted per method in
//! `gmbot_telegram_decode_failures_total{method}` and logged once per method (at warn, with
//! serde's message naming the field), then at debug — a server that answers in a shape this
//! version cannot read does so on every call, and one line says all there is to say.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gmbot_core::telegram::TelegramError;
use prometheus::{IntCounterVec, Opts, Registry};

/// Shared by clones of the client.
#[derive(Debug, Clone)]
pub(super) struct DecodeFailures {
    counter: IntCounterVec,
    logged: Arc<Mutex<HashSet<String>>>,
}

impl DecodeFailures {
    pub(super) fn new() -> Self {
        let counter = IntCounterVec::new(
            Opts::new(
                "gmbot_telegram_decode_failures_total",
                "Telegram answers and updates whose shape this version could not read, by method.",
            ),
            &["method"],
        )
        .unwrap_or_else(|_| unreachable!("constant, valid metric options"));
        Self {
            counter,
            logged: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    pub(super) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.counter.clone()))
    }

    /// Counts and logs one failure; returns the error to report. `method` is a Bot API method
    /// name (a closed set), so the label stays bounded.
    pub(super) fn note(&self, method: &str, detail: String) -> TelegramError {
        self.counter.with_label_values(&[method]).inc();
        let first = self
            .logged
            .lock()
            .map(|mut seen| seen.insert(method.to_owned()))
            .unwrap_or(false);
        if first {
            log::warn!(method = method, error:display = detail; "cannot read Telegram's answer: its shape does not fit this version (logged once per method; see gmbot_telegram_decode_failures_total)");
        } else {
            log::debug!(method = method, error:display = detail; "cannot read Telegram's answer");
        }
        TelegramError::Decode {
            method: method.to_owned(),
            detail,
        }
    }
}
