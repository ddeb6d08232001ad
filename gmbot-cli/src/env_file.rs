//! Reading a `.env` file, the format v1 was configured with, into a map (the
//! process environment is left alone).
//!
//! Accepted, as in the usual dotenv dialect: blank lines, `#` comments (whole
//! line, or after whitespace in an unquoted value), an optional `export `
//! prefix, `NAME=value` with spaces around `=`, `'single'` quotes (taken
//! literally) and `"double"` quotes (with `\n`, `\t`, `\r`, `\"`, `\\`, `\$`
//! escapes). Not accepted: values spanning several lines. `${VAR}` is not
//! expanded. A name given twice keeps its last value, as a shell would.

use std::collections::BTreeMap;
use std::fmt;

/// Why a `.env` file could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvFileError {
    line: usize,
    reason: String,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for EnvFileError {}

/// The variables a `.env` text sets.
pub(crate) fn parse(text: &str) -> Result<BTreeMap<String, String>, EnvFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let fail = |reason: String| EnvFileError {
            line: index + 1,
            reason,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = strip_export(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(fail(format!(
                "expected NAME=value, found `{}`",
                shorten(line)
            )));
        };
        let name = name.trim();
        if !is_name(name) {
            return Err(fail(format!(
                "`{}` is not a variable name (letters, digits and _, not starting with a digit)",
                shorten(name)
            )));
        }
        let value = parse_value(value.trim_start()).map_err(|r| fail(format!("{name}: {r}")))?;
        vars.insert(name.to_owned(), value);
    }
    Ok(vars)
}

fn strip_export(line: &str) -> &str {
    match line.strip_prefix("export") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim_start(),
        _ => line,
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

fn parse_value(v: &str) -> Result<String, String> {
    let (value, rest) = if let Some(body) = v.strip_prefix('"') {
        double_quoted(body)?
    } else if let Some(body) = v.strip_prefix('\'') {
        let end = body
            .find('\'')
            .ok_or("unterminated single quote (values spanning several lines are not supported)")?;
        (body[..end].to_owned(), &body[end + 1..])
    } else {
        return Ok(unquoted(v));
    };
    let rest = rest.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!(
            "unexpected `{}` after the closing quote",
            shorten(rest)
        ));
    }
    Ok(value)
}

/// The value up to the closing quote, and what follows it.
fn double_quoted(body: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, e @ ('"' | '\\' | '$'))) => out.push(e),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated double quote (values spanning several lines are not supported)".to_owned())
}

/// An unquoted value ends at a `#` that starts it or follows whitespace.
fn unquoted(v: &str) -> String {
    let mut end = v.len();
    let mut prev_space = true;
    for (i, c) in v.char_indices() {
        if c == '#' && prev_space {
            end = i;
            break;
        }
        prev_space = c.is_whitespace();
    }
    v[..end].trim_end().to_owned()
}

/// Long input is cut in messages, so a binary file does not flood the terminal.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() <= MAX {
        clean
    } else {
        format!("{}…", clean.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, name: &str) -> Option<String> {
        parse(text).expect("valid .env").get(name).cloned()
    }

    #[test]
    fn reads_the_usual_dialect() {
        let text = "\u{feff}# v1 config\r\n\
                    export GROUP_ID = -100123 # the group\r\n\
                    CHANNEL_ID=\"@my_channel\"\n\
                    CHANNEL_URL='https://t.me/+a#b'  # private\n\
                    EMPTY=\n\
                    TOKEN=abc#def\n\
                    ESCAPED=\"a\\\"b\\\\c\\nd\"\n\
                    exported_name=1\n";
        let vars = parse(text).expect("valid .env");
        assert_eq!(vars.get("GROUP_ID").map(String::as_str), Some("-100123"));
        assert_eq!(
            vars.get("CHANNEL_ID").map(String::as_str),
            Some("@my_channel")
        );
        assert_eq!(
            vars.get("CHANNEL_URL").map(String::as_str),
            Some("https://t.me/+a#b")
        );
        assert_eq!(vars.get("EMPTY").map(String::as_str), Some(""));
        assert_eq!(vars.get("TOKEN").map(String::as_str), Some("abc#def"));
        assert_eq!(vars.get("ESCAPED").map(String::as_str), Some("a\"b\\c\nd"));
        assert_eq!(vars.get("exported_name").map(String::as_str), Some("1"));
    }

    #[test]
    fn last_assignment_wins() {
        assert_eq!(get("A=1\nA=2\n", "A").as_deref(), Some("2"));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        for (text, line, needle) in [
            ("A=1\nthis is not an assignment\n", 2, "expected NAME=value"),
            ("A=\"open\n", 1, "unterminated double quote"),
            ("\n\nB='open\n", 3, "unterminated single quote"),
            ("1A=x\n", 1, "not a variable name"),
            ("A=\"x\" y\n", 1, "after the closing quote"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
    }
}
