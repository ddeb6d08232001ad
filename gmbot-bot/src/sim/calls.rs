//! The log of every Bot API call the simulator received, for tests to assert what a bot did.

use std::time::Duration;

use serde_json::Value;

/// One call to the simulated Bot API.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The method, spelled as Telegram documents it (`sendMessage`).
    pub method: String,
    /// The merged parameters (query, JSON or form body).
    pub params: Value,
    /// The HTTP status of the answer.
    pub status: u16,
    /// When the simulator received the call, counted from its start (budgets are checked
    /// against these: Telegram counts calls as they arrive).
    pub at: Duration,
    /// When the simulator answered it, counted from its start: later than `at` for a call a
    /// fault delayed. What the call did (a message posted) happened then.
    pub answered: Duration,
}

impl RecordedCall {
    /// A parameter as an integer (accepting its text form).
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.params.get(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// A parameter as text.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.params.get(name)?.as_str()
    }

    /// Whether the call succeeded.
    pub fn ok(&self) -> bool {
        self.status == 200
    }
}
