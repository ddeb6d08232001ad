//! Telegram's HTML parse mode, as far as the simulator checks it: only the documented tags,
//! properly nested, and the four named entities. Unescaped `<` in a user's name is the classic
//! way a bot's message gets rejected, so the simulator rejects it the way Telegram does.

const TAGS: [&str; 17] = [
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "span",
    "tg-spoiler",
    "tg-emoji",
    "blockquote",
    "br",
];

/// Checks `html` and returns the text users see, or Telegram's error detail
/// (`can't parse entities: …`).
pub(crate) fn to_plain(html: &str) -> Result<String, String> {
    let mut out = String::with_capacity(html.len());
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        let offset = html.len() - rest.len();
        match c {
            '<' => {
                let Some(end) = rest.find('>') else {
                    return Err(format!(
                        "can't parse entities: Unclosed start tag at byte offset {offset}"
                    ));
                };
                let inner = &rest[1..end];
                let (closing, body) = match inner.strip_prefix('/') {
                    Some(b) => (true, b),
                    None => (false, inner),
                };
                let name = body
                    .split(|ch: char| ch.is_whitespace() || ch == '/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!(
                        "can't parse entities: Unsupported start tag \"{name}\" at byte offset {offset}"
                    ));
                }
                if closing {
                    if open.pop().as_deref() != Some(name.as_str()) {
                        return Err(format!(
                            "can't parse entities: Unmatched end tag at byte offset {offset}, expected \"</{name}>\""
                        ));
                    }
                } else if name != "br" && !body.ends_with('/') {
                    open.push(name);
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let entity = rest.find(';').filter(|&e| e <= 10).map(|e| &rest[1..e]);
                let decoded = match entity {
                    Some("lt") => Some('<'),
                    Some("gt") => Some('>'),
                    Some("amp") => Some('&'),
                    Some("quot") => Some('"'),
                    Some(num) if num.starts_with('#') => {
                        let n = num.trim_start_matches('#');
                        let code = match n.strip_prefix(['x', 'X']) {
                            Some(hex) => u32::from_str_radix(hex, 16).ok(),
                            None => n.parse().ok(),
                        };
                        code.and_then(char::from_u32)
                    }
                    _ => None,
                };
                match (decoded, entity) {
                    (Some(ch), Some(e)) => {
                        out.push(ch);
                        rest = &rest[e.len() + 2..];
                    }
                    _ => {
                        out.push('&');
                        rest = &rest[1..];
                    }
                }
            }
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some(tag) = open.pop() {
        return Err(format!(
            "can't parse entities: Can't find end tag corresponding to start tag \"{tag}\""
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::to_plain;

    #[test]
    fn accepts_escaped_and_rejects_raw_markup() {
        assert_eq!(
            to_plain("<b>Hi</b> &lt;script&gt; &amp; <a href=\"x\">y</a> &#65;"),
            Ok("Hi <script> & y A".to_owned())
        );
        assert!(to_plain("Hi <script>")
            .unwrap_err()
            .contains("Unsupported start tag"));
        assert!(to_plain("<b>open").unwrap_err().contains("end tag"));
        assert!(to_plain("<b>x</i>").is_err());
        assert!(to_plain("a < b").is_err());
        assert_eq!(to_plain("R&D"), Ok("R&D".to_owned()));
    }
}
