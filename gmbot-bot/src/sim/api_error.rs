//! Error answers in Telegram's shape: `{"ok":false,"error_code":…,"description":…,"parameters":…}`.

use serde_json::{json, Value};

/// One error answer of the simulated Bot API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status and `error_code`.
    pub code: u16,
    /// Telegram's `description`, e.g. `Bad Request: chat not found`.
    pub description: String,
    /// `parameters.retry_after` (429 only).
    pub retry_after: Option<u32>,
    /// `parameters.migrate_to_chat_id` (a basic group that became a supergroup).
    pub migrate_to_chat_id: Option<i64>,
}

impl ApiError {
    fn new(code: u16, description: String) -> Self {
        Self {
            code,
            description,
            retry_after: None,
            migrate_to_chat_id: None,
        }
    }

    /// `400 Bad Request: <detail>`.
    pub fn bad_request(detail: impl AsRef<str>) -> Self {
        Self::new(400, format!("Bad Request: {}", detail.as_ref()))
    }

    /// `403 Forbidden: <detail>`.
    pub fn forbidden(detail: impl AsRef<str>) -> Self {
        Self::new(403, format!("Forbidden: {}", detail.as_ref()))
    }

    /// `401 Unauthorized` (wrong token).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized".to_owned())
    }

    /// `404 Not Found` (unknown method or path).
    pub fn not_found() -> Self {
        Self::new(404, "Not Found".to_owned())
    }

    /// `409 Conflict: <detail>`.
    pub fn conflict(detail: impl AsRef<str>) -> Self {
        Self::new(409, format!("Conflict: {}", detail.as_ref()))
    }

    /// `429 Too Many Requests` with `parameters.retry_after`.
    pub fn too_many_requests(retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(429, format!("Too Many Requests: retry after {retry_after}"))
        }
    }

    /// A 5xx answer.
    pub fn server(code: u16) -> Self {
        let text = match code {
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Internal Server Error",
        };
        Self::new(code, text.to_owned())
    }

    /// `400 Bad Request: chat not found`.
    pub fn chat_not_found() -> Self {
        Self::bad_request("chat not found")
    }

    /// `400 Bad Request: user not found`.
    pub fn user_not_found() -> Self {
        Self::bad_request("user not found")
    }

    /// A basic group that has become a supergroup: the old id stops working.
    pub fn migrated(to: i64) -> Self {
        Self {
            migrate_to_chat_id: Some(to),
            ..Self::bad_request("group chat was upgraded to a supergroup chat")
        }
    }

    /// The JSON body Telegram sends.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        let mut params = serde_json::Map::new();
        if let Some(r) = self.retry_after {
            params.insert("retry_after".into(), json!(r));
        }
        if let Some(m) = self.migrate_to_chat_id {
            params.insert("migrate_to_chat_id".into(), json!(m));
        }
        if !params.is_empty() {
            body["parameters"] = Value::Object(params);
        }
        body
    }
}
