//! Injected failures: rate limits, server errors, arbitrary error answers, broken bodies and
//! latency, so tests can drive every error path of a client.

use std::time::Duration;

use serde_json::Value;

use super::api_error::ApiError;

/// What an injected fault does to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// `429 Too Many Requests` with `parameters.retry_after` = this many seconds.
    RetryAfter(u32),
    /// A 5xx answer with this status.
    ServerError(u16),
    /// Any error answer.
    Error {
        /// HTTP status and `error_code`.
        code: u16,
        /// Telegram's `description`.
        description: String,
    },
    /// `200 OK` with a body that is not JSON.
    MalformedBody,
    /// Wait this long, then handle the call normally.
    Delay(Duration),
    /// `200 OK` with this `result`, whatever the simulated world holds: replays an answer
    /// recorded from a real server (an older or newer Bot API version's shape).
    Answer(Value),
}

/// A fault that hits the next `times` calls to `method` (or to any method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Method name (case-insensitive); `None` = every method.
    pub method: Option<String>,
    /// The effect.
    pub kind: FaultKind,
    /// How many calls it still hits; `u32::MAX` = until cleared.
    pub times: u32,
}

impl Fault {
    /// A fault on one method, once.
    pub fn on(method: &str, kind: FaultKind) -> Self {
        Self {
            method: Some(method.to_owned()),
            kind,
            times: 1,
        }
    }

    /// A fault on every method, once.
    pub fn on_any(kind: FaultKind) -> Self {
        Self {
            method: None,
            kind,
            times: 1,
        }
    }

    /// Hits the next `n` matching calls.
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Hits every matching call until [`Simulator::clear_faults`](super::Simulator::clear_faults).
    pub fn always(self) -> Self {
        self.times(u32::MAX)
    }

    fn matches(&self, method: &str) -> bool {
        self.times > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// What the server does with a call after consulting the faults.
pub(crate) enum FaultOutcome {
    Proceed,
    Delay(Duration),
    Fail(ApiError),
    Malformed,
    Answer(Value),
}

/// Takes one use of the first fault matching `method`.
pub(crate) fn take(faults: &mut Vec<Fault>, method: &str) -> FaultOutcome {
    let Some(pos) = faults.iter().position(|f| f.matches(method)) else {
        return FaultOutcome::Proceed;
    };
    let fault = &mut faults[pos];
    if fault.times != u32::MAX {
        fault.times -= 1;
    }
    let outcome = match &fault.kind {
        FaultKind::RetryAfter(s) => FaultOutcome::Fail(ApiError::too_many_requests(*s)),
        FaultKind::ServerError(code) => FaultOutcome::Fail(ApiError::server(*code)),
        FaultKind::Error { code, description } => FaultOutcome::Fail(ApiError {
            code: *code,
            description: description.clone(),
            retry_after: None,
            migrate_to_chat_id: None,
        }),
        FaultKind::MalformedBody => FaultOutcome::Malformed,
        FaultKind::Delay(d) => FaultOutcome::Delay(*d),
        FaultKind::Answer(v) => FaultOutcome::Answer(v.clone()),
    };
    if fault.times == 0 {
        faults.remove(pos);
    }
    outcome
}
