//! Telegram `t.me` links: a public channel's username, or a private channel's invite link.

use anyhow::bail;
use gmbot_core::domain::ChannelUsername;

/// What a `t.me` link points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TmeLink {
    /// `https://t.me/NAME` (or the `t.me/s/NAME` preview page): a public channel.
    Public(ChannelUsername),
    /// `https://t.me/+CODE` or `https://t.me/joinchat/CODE`: an invite link,
    /// normalised to `https://`.
    Invite(String),
}

const HOSTS: [&str; 4] = ["t.me", "www.t.me", "telegram.me", "telegram.dog"];
const EXPECTED: &str = "expected https://t.me/NAME for a public channel or an invite link https://t.me/+CODE for a private one";

/// Parses a link as written in v1's `CHANNEL_URL`; the scheme may be omitted.
pub(crate) fn parse(input: &str) -> anyhow::Result<TmeLink> {
    let t = input.trim();
    let rest = match t.split_once("://") {
        Some((scheme, rest)) => {
            if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
                bail!("`{t}` has the unsupported scheme `{scheme}`: {EXPECTED}");
            }
            rest
        }
        None => t,
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !HOSTS.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        bail!("`{t}` is not a t.me link: {EXPECTED}");
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [first] if first.starts_with('+') => {
            let code = invite_code(t, &first[1..])?;
            Ok(TmeLink::Invite(format!("https://t.me/+{code}")))
        }
        ["joinchat", code] => {
            let code = invite_code(t, code)?;
            Ok(TmeLink::Invite(format!("https://t.me/joinchat/{code}")))
        }
        ["s", name] | [name] if *name != "joinchat" => Ok(TmeLink::Public(
            ChannelUsername::parse(name).map_err(anyhow::Error::new)?,
        )),
        _ => bail!("`{t}` names no channel: {EXPECTED}"),
    }
}

fn invite_code<'a>(link: &str, code: &'a str) -> anyhow::Result<&'a str> {
    if code.is_empty() {
        bail!("`{link}` has no invite code: {EXPECTED}");
    }
    if code.chars().all(|c| c.is_ascii_digit()) {
        // t.me/+<digits> is a phone-number link, not an invite.
        bail!("`{link}` is a phone-number link, not an invite link: {EXPECTED}");
    }
    if code.len() > 64
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("`{link}` does not hold a valid invite code: {EXPECTED}");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(name: &str) -> TmeLink {
        TmeLink::Public(ChannelUsername::parse(name).expect("valid username"))
    }

    #[test]
    fn public_links_give_the_username() {
        for link in [
            "https://t.me/my_channel",
            "http://t.me/my_channel/",
            "t.me/my_channel",
            "HTTPS://T.ME/my_channel?x=1",
            "https://telegram.me/my_channel",
            "https://t.me/s/my_channel",
        ] {
            assert_eq!(parse(link).ok(), Some(public("my_channel")), "{link}");
        }
    }

    #[test]
    fn invite_links_are_kept_normalised() {
        assert_eq!(
            parse("http://t.me/+AbC-d_e1").ok(),
            Some(TmeLink::Invite("https://t.me/+AbC-d_e1".into()))
        );
        assert_eq!(
            parse("https://t.me/joinchat/AAAAAEkXQ9").ok(),
            Some(TmeLink::Invite("https://t.me/joinchat/AAAAAEkXQ9".into()))
        );
    }

    #[test]
    fn other_links_are_refused_with_the_expected_form() {
        for link in [
            "ftp://t.me/my_channel",
            "https://example.com/my_channel",
            "https://t.me/",
            "https://t.me/+",
            "https://t.me/+123456789",
            "https://t.me/joinchat",
            "https://t.me/ab",
            "https://t.me/a/b/c",
            "https://t.me/+bad code",
        ] {
            let e = parse(link).expect_err(link).to_string();
            assert!(
                e.contains("expected https://t.me/") || e.contains("not a valid channel username"),
                "{link}: {e}"
            );
        }
    }
}
