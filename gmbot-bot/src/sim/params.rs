//! Method parameters as Telegram accepts them: URL query, JSON body or form body, merged.
//!
//! Form and query values are strings, so numbers, booleans and JSON objects
//! (`reply_markup`, `permissions`, `allowed_updates`) may arrive as text; the
//! getters accept both spellings, as Telegram does.

use serde_json::{Map, Value};

use super::api_error::ApiError;

/// A chat named by id or by `@username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChatRef {
    Id(i64),
    Username(String),
}

/// The merged parameters of one call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Map<String, Value>);

impl Params {
    /// Adds `key=value&…` pairs (query string or form body).
    pub(crate) fn merge_form(&mut self, encoded: &[u8]) {
        for (k, v) in form_urlencoded::parse(encoded) {
            self.0.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }

    /// Adds the fields of a JSON object body.
    pub(crate) fn merge_json(&mut self, body: &[u8]) -> Result<(), ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                self.0.extend(map);
                Ok(())
            }
            Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
            Err(_) => Err(ApiError::bad_request("can't parse request JSON object")),
        }
    }

    /// Everything, for the call log.
    pub(crate) fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    fn raw(&self, name: &str) -> Option<&Value> {
        match self.0.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        }
    }

    /// A string parameter (numbers and booleans are rendered as text).
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.raw(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => Some(other.to_string()),
        }
    }

    /// An integer parameter; a value that is not a whole number is a 400.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let invalid = || ApiError::bad_request(format!("invalid {name} specified"));
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(invalid),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid()),
            Some(_) => Err(invalid()),
        }
    }

    /// A required integer parameter.
    pub(crate) fn req_int(&self, name: &str) -> Result<i64, ApiError> {
        self.int(name)?
            .ok_or_else(|| ApiError::bad_request(format!("{name} is empty")))
    }

    /// A boolean parameter (`true`/`false`, `1`/`0`).
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_i64() != Some(0))),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ApiError::bad_request(format!("invalid {name} specified"))),
            },
            Some(_) => Err(ApiError::bad_request(format!("invalid {name} specified"))),
        }
    }

    /// A JSON-valued parameter (an object or array, or its text).
    pub(crate) fn json(&self, name: &str) -> Result<Option<Value>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("can't parse {name} JSON object"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// A JSON-valued parameter decoded into a type; a wrong shape is a 400.
    pub(crate) fn typed<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.json(name)? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("can't parse {name}"))),
        }
    }

    /// `chat_id`: an integer or `@username`.
    pub(crate) fn chat(&self, name: &str) -> Result<ChatRef, ApiError> {
        match self.raw(name) {
            None => Err(ApiError::bad_request(format!("{name} is empty"))),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(ChatRef::Id)
                .ok_or_else(ApiError::chat_not_found),
            Some(Value::String(s)) => {
                let s = s.trim();
                if let Some(name) = s.strip_prefix('@') {
                    Ok(ChatRef::Username(name.to_ascii_lowercase()))
                } else {
                    s.parse()
                        .map(ChatRef::Id)
                        .map_err(|_| ApiError::chat_not_found())
                }
            }
            Some(_) => Err(ApiError::chat_not_found()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_text_and_typed_values() {
        let mut p = Params::default();
        p.merge_form(b"chat_id=-100123&flag=true&n=5&markup=%7B%22a%22%3A1%7D");
        p.merge_json(br#"{"user_id": 7, "chat2": "@Some_Channel"}"#)
            .expect("valid json");
        assert_eq!(p.chat("chat_id"), Ok(ChatRef::Id(-100123)));
        assert_eq!(
            p.chat("chat2"),
            Ok(ChatRef::Username("some_channel".into()))
        );
        assert_eq!(p.flag("flag"), Ok(Some(true)));
        assert_eq!(p.req_int("user_id"), Ok(7));
        assert_eq!(p.int("n"), Ok(Some(5)));
        assert_eq!(p.json("markup"), Ok(Some(serde_json::json!({"a": 1}))));
        assert_eq!(p.req_int("missing").unwrap_err().code, 400);
        assert!(p.merge_json(b"{not json").is_err());
        assert!(p.merge_json(b"[1,2]").is_err());
    }
}
