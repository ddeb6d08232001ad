//! Secrets that must never reach a log line, an error message or `Debug` output: the bot
//! token (whoever has it controls the bot) and other credentials.

use std::fmt;

/// A secret string: `Debug` shows `<redacted>`, there is no `Display`; read it with
/// [`SecretString::expose`] only where it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Why a string is not a bot token. Never contains the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a bot token: expected <bot id>:<secret> as @BotFather gives it (digits, a colon, then about 35 characters of A-Z, a-z, 0-9, _ and -)")]
pub struct TokenShapeError;

/// A Telegram bot token, `<bot id>:<secret>`.
///
/// `Debug` shows only the bot id (public: it is the bot's user id).
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken {
    token: String,
    bot_id: i64,
}

impl BotToken {
    /// Checks the shape @BotFather gives tokens: a numeric bot id, `:`, and 30–60 characters of
    /// `A-Za-z0-9_-` (35 today).
    pub fn parse(input: &str) -> Result<Self, TokenShapeError> {
        let input = input.trim();
        let (id, secret) = input.split_once(':').ok_or(TokenShapeError)?;
        let id_ok = (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit());
        let secret_ok = (30..=60).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok || !secret_ok {
            return Err(TokenShapeError);
        }
        let bot_id = id.parse().map_err(|_| TokenShapeError)?;
        Ok(Self {
            token: input.to_owned(),
            bot_id,
        })
    }

    /// The bot's user id (the part before `:`).
    pub fn bot_id(&self) -> i64 {
        self.bot_id
    }

    /// The token itself, for building the request URL only.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// Removes the token from `text` (and any `/bot<something>` URL segment), so an error that
    /// quotes a URL cannot leak it.
    pub fn redact(&self, text: &str) -> String {
        redact_bot_paths(&text.replace(&self.token, "<redacted>"))
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({}:<redacted>)", self.bot_id)
    }
}

/// Replaces every `/bot<id>:<secret>` path segment with `/bot<redacted>`.
pub fn redact_bot_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("/bot") {
        let (before, after) = rest.split_at(pos + 4);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c == '/'
                    || c == '?'
                    || c == '#'
                    || c == '"'
                    || c == '\''
                    || c.is_whitespace()
                    || c == ')'
            })
            .unwrap_or(after.len());
        let segment = &after[..end];
        if segment.contains(':') {
            out.push_str("<redacted>");
        } else {
            out.push_str(segment);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-";

    #[test]
    fn token_shape_and_masking() {
        let t = BotToken::parse(TOKEN).expect("valid token");
        assert_eq!(t.bot_id(), 123_456_789);
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("AAHdq"), "{dbg}");
        assert!(BotToken::parse("123456789").is_err());
        assert!(BotToken::parse("abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw").is_err());
        assert!(BotToken::parse("123:short").is_err());
        assert!(BotToken::parse("123:AAHdqTcvCH1vGWJxfSeofSAs0K5PAL sa w").is_err());
        let err = BotToken::parse("123:bad token here")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("bad token"), "{err}");
    }

    #[test]
    fn redacts_urls() {
        let t = BotToken::parse(TOKEN).expect("valid token");
        let text = format!("error sending request for url (http://127.0.0.1:1/bot{TOKEN}/getMe)");
        let red = t.redact(&text);
        assert!(!red.contains("AAHdq"), "{red}");
        assert!(red.contains("/bot<redacted>/getMe"), "{red}");
        let other = redact_bot_paths("https://api.telegram.org/bot999:XYZ/sendMessage and /bottle");
        assert_eq!(
            other,
            "https://api.telegram.org/bot<redacted>/sendMessage and /bottle"
        );
        assert_eq!(
            format!("{:?}", SecretString::new("hunter2")),
            "SecretString(<redacted>)"
        );
    }
}
