//! Answering a command: HTML escaping and the reply itself.
//!
//! Replies use Telegram's HTML parse mode; anything a user typed or named
//! (arguments, titles, names) is escaped first (`<`, `>`, `&`, and `"` for
//! attribute safety), so it can never inject markup (TELEGRAM.md, "Acting").

use gmbot_core::telegram::{InlineButton, OutgoingMessage};

use crate::app::App;
use crate::handlers::HandleError;
use crate::update::Message;

/// Longest piece of user input quoted back in a reply.
const MAX_QUOTE: usize = 64;

/// Escapes text for Telegram's HTML parse mode (one implementation for the whole bot).
pub(crate) use crate::flows::warn::escape_html as escape;

/// User input to quote back: shortened to [`MAX_QUOTE`] characters, then escaped.
pub(crate) fn quote(input: &str) -> String {
    if input.chars().count() > MAX_QUOTE {
        let short: String = input.chars().take(MAX_QUOTE).collect();
        format!("{}…", escape(&short))
    } else {
        escape(input)
    }
}

/// Replies to `msg` in its chat with `html` (already escaped) and optional buttons.
pub(crate) async fn reply(
    app: &App,
    msg: &Message,
    html: String,
    buttons: Vec<Vec<InlineButton>>,
) -> Result<(), HandleError> {
    let out = OutgoingMessage {
        html,
        buttons,
        reply_to: Some(msg.id),
        silent: true,
    };
    app.telegram().send_message(msg.chat.id, &out).await?;
    Ok(())
}

/// Replies with text only.
pub(crate) async fn reply_text(app: &App, msg: &Message, html: String) -> Result<(), HandleError> {
    reply(app, msg, html, Vec::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<b>Tom & "Jerry"</b>"#),
            "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;"
        );
        let long = "<".repeat(100);
        let q = quote(&long);
        assert!(q.ends_with('…') && !q.contains('<'), "{q}");
        assert_eq!(q.matches("&lt;").count(), MAX_QUOTE);
    }
}
