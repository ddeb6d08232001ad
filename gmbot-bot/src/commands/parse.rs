//! Recognising a command addressed to this bot in a message text.

use super::Command;

/// Arguments beyond this many are dropped (a `/protect` with more channels
/// than allowed is refused by the checks anyway; this only bounds the work).
pub const MAX_ARGS: usize = 16;

/// Parses `text` as a command for the bot called `bot_username`.
///
/// `/cmd` and `/cmd@ThisBot` (the bot's username in any case) are commands;
/// `/cmd@OtherBot`, unknown commands and anything not starting with `/` are
/// `None`. Arguments are split on whitespace.
///
/// ```
/// use gmbot_bot::commands::{parse, Command};
///
/// assert_eq!(parse("/status@GMBot", "gmbot"), Some(Command::Status));
/// assert_eq!(parse("/status@other_bot", "gmbot"), None);
/// assert_eq!(
///     parse("/protect @news  @more", "gmbot"),
///     Some(Command::Protect(vec!["@news".into(), "@more".into()]))
/// );
/// ```
pub fn parse(text: &str, bot_username: &str) -> Option<Command> {
    let rest = text.trim_start().strip_prefix('/')?;
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (name, addressee) = match head.split_once('@') {
        Some((name, to)) => (name, Some(to)),
        None => (head, None),
    };
    if let Some(to) = addressee {
        if !to.eq_ignore_ascii_case(bot_username.trim_start_matches('@')) {
            return None;
        }
    }
    // Telegram's command names: 1-32 of a-z, 0-9 and _.
    if name.is_empty()
        || name.len() > 32
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let args = || {
        args.split_whitespace()
            .take(MAX_ARGS)
            .map(str::to_owned)
            .collect()
    };
    Some(match name.to_ascii_lowercase().as_str() {
        "start" => Command::Start,
        "help" => Command::Help,
        "protect" => Command::Protect(args()),
        "unprotect" => Command::Unprotect,
        "status" => Command::Status,
        "settings" => Command::Settings(args()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "GuardBot";

    #[test]
    fn commands_for_this_bot() {
        assert_eq!(parse("/help", ME), Some(Command::Help));
        assert_eq!(parse("  /HELP  ", ME), Some(Command::Help));
        assert_eq!(parse("/help@guardbot", ME), Some(Command::Help));
        assert_eq!(parse("/help@GUARDBOT extra", ME), Some(Command::Help));
        assert_eq!(parse("/start payload", ME), Some(Command::Start));
        assert_eq!(parse("/unprotect", ME), Some(Command::Unprotect));
        assert_eq!(parse("/status", "@GuardBot"), Some(Command::Status));
        assert_eq!(
            parse("/settings allow\t42", ME),
            Some(Command::Settings(vec!["allow".into(), "42".into()]))
        );
        assert_eq!(parse("/protect", ME), Some(Command::Protect(vec![])));
        assert_eq!(
            parse("/protect@GuardBot\n@a_chan -1001", ME),
            Some(Command::Protect(vec!["@a_chan".into(), "-1001".into()]))
        );
    }

    #[test]
    fn everything_else_is_not_a_command() {
        assert_eq!(parse("/help@OtherBot", ME), None);
        assert_eq!(parse("/protect@other_bot @chan", ME), None);
        assert_eq!(parse("/help@", ME), None);
        assert_eq!(parse("help", ME), None);
        assert_eq!(parse("hello /help", ME), None);
        assert_eq!(parse("/", ME), None);
        assert_eq!(parse("/unknown", ME), None);
        assert_eq!(parse("/he-lp", ME), None);
        assert_eq!(parse("/<b>", ME), None);
        assert_eq!(parse("", ME), None);
        assert_eq!(parse(&format!("/{}", "a".repeat(40)), ME), None);
    }

    #[test]
    fn arguments_are_bounded() {
        let many = format!("/protect {}", "@chan_x ".repeat(1000));
        match parse(&many, ME) {
            Some(Command::Protect(args)) => assert_eq!(args.len(), MAX_ARGS),
            other => panic!("unexpected {other:?}"),
        }
    }
}
