//! Entry points of the fuzz targets in `fuzz/` (docs/testing.md, "Fuzzing"): one function per
//! target, taking the fuzzer's bytes, driving the bot's own parsing code with them and
//! checking what must hold for every input. A violated property panics — that is how a fuzzer
//! learns of it — and the bot's code itself must never panic on any input.
//!
//! Not an API: hidden from the docs, kept here (and not in `fuzz/`) so that the code under
//! test stays private to the crate and so that `cargo test` replays every committed corpus
//! file through the same functions (`tests/fuzz_corpus.rs`) without cargo-fuzz.
//!
//! | function | what it drives |
//! |---|---|
//! | [`update_decode`] | the webhook's body parser, `getUpdates`' batch, the member and chat answers, the update journal |
//! | [`command_parse`] | command recognition, `/protect`'s channel names, `/settings`' user ids, quoting |
//! | [`callback_data`] | button routing, "I've joined" and join-gate data, the settings keyboard's presses |
//! | [`webhook_request`] | routing, the capped body read, the secret check and the parse of one request |

use std::io::Read;
use std::sync::{Mutex, OnceLock, PoisonError};

use gmbot_core::domain::{
    ChannelRef, ChatId, GroupId, GroupSettings, JournaledUpdate, MessageId, UnixTime, UserId,
};
use serde_json::Value;

use crate::botapi::lenient::{ChatFullInfo, ChatMember};
use crate::botapi::{chat_admin, chat_info, convert, member_status, UpdateBatch};
use crate::commands::settings::{parse_press, settings_message, Press};
use crate::commands::{parse, Command, MAX_ARGS};
use crate::flows::gate::{gate_data, parse_gate_data};
use crate::flows::joined_button;
use crate::flows::warn::{joined_data, parse_joined_data};
use crate::handlers::{button, Button};
use crate::http::{answer_parts, Answer, HttpReply, WebhookEndpoint, SECRET_HEADER};
use crate::metrics::BotMetrics;
use crate::outbox::ANYONE_JOINED_DATA;
use crate::runtime::journal;
use crate::secret::SecretString;
use crate::transport::webhook::{WebhookGate, WebhookReply};
use crate::update::{CallbackQuery, Update, User};

/// Telegram's limit on a button's `callback_data`, in bytes.
const MAX_CALLBACK_DATA: usize = 64;

/// Target `update_decode`: `data` as what Telegram sends — a webhook body, a `getUpdates`
/// result, a member or chat answer — and as a row of the update journal.
///
/// Properties: nothing panics; an update that decodes survives the journal unchanged; a
/// `getUpdates` batch accounts for every entry, and its next offset is past every id it saw.
pub fn update_decode(data: &[u8]) {
    // The webhook's parser.
    if let Ok(update) = convert::from_json(data) {
        check_update(&update);
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        journal_row(data, 0);
        return;
    };
    match &value {
        Value::Array(items) => {
            // `getUpdates`' result.
            let batch = UpdateBatch::from_values(items.clone());
            assert_eq!(
                batch.updates.len() + batch.malformed.len(),
                items.len(),
                "every entry of a batch is either an update or malformed"
            );
            let ids: Vec<i64> = items
                .iter()
                .filter_map(|item| item.get("update_id").and_then(Value::as_i64))
                .filter(|id| *id >= 0)
                .collect();
            match batch.next_offset {
                None => assert!(ids.is_empty(), "no offset past {ids:?}"),
                Some(next) => {
                    assert!(next >= 1, "offset {next} would not confirm anything");
                    for id in ids {
                        assert!(
                            next >= id.saturating_add(1),
                            "next offset {next} is not past update {id}"
                        );
                    }
                }
            }
            for update in &batch.updates {
                check_update(&convert::update(update.clone()));
            }
            // `getChatAdministrators`' result.
            if let Ok(admins) = serde_json::from_value::<Vec<ChatMember>>(value.clone()) {
                admins.iter().for_each(check_member);
            }
        }
        Value::Object(map) => {
            // `getChatMember` and `getChat` answers.
            if let Ok(member) = serde_json::from_value::<ChatMember>(value.clone()) {
                check_member(&member);
            }
            if let Ok(chat) = serde_json::from_value::<ChatFullInfo>(value.clone()) {
                let info = chat_info(&chat);
                assert_eq!(info.id, ChatId(chat.id));
            }
            // A journal row holding its own update id.
            let id = map
                .get("update")
                .and_then(|u| u.get("id"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            journal_row(data, id);
        }
        _ => {}
    }
}

fn check_member(member: &ChatMember) {
    let status = member_status(member);
    let rights = chat_admin(member);
    if matches!(member, ChatMember::Unknown { .. }) {
        assert!(status.is_none(), "an unknown status is never a known one");
    }
    if rights.is_some() {
        assert!(
            matches!(
                member,
                ChatMember::Creator(_) | ChatMember::Administrator(_)
            ),
            "only a creator or an administrator has admin rights: {member:?}"
        );
    }
}

/// What every decoded update must allow: the journal keeps it unchanged, and the runtime's
/// keys and the log context can be taken.
fn check_update(update: &Update) {
    let row = journal::encode(update, UnixTime(1_700_000_000));
    assert_eq!(row.update_id, update.id);
    match journal::decode(&row) {
        Ok(back) => assert_eq!(&back, update, "the journal changed the update"),
        Err(e) => panic!("the journal cannot read back what it wrote: {e}"),
    }
    let _ = update.sequence_key();
    let _ = update.subject();
    let _ = update.kind.name();
}

/// `data` as a journal row's payload: whatever decodes is the update the row names.
fn journal_row(data: &[u8], update_id: i64) {
    let row = JournaledUpdate {
        update_id,
        payload: String::from_utf8_lossy(data).into_owned(),
        received_at: UnixTime(0),
    };
    if let Ok(update) = journal::decode(&row) {
        assert_eq!(update.id, update_id, "a row holds the update it names");
        check_update(&update);
    }
}

/// The bot's username when an input names none.
const DEFAULT_BOT: &str = "GuardBot";

/// Target `command_parse`: `data` as `bot username`, a newline and a message text (or only a
/// text, for a bot called [`DEFAULT_BOT`]).
///
/// Properties: the bot's name is matched without regard to ASCII case or a leading `@`; a
/// command starts with `/`; its arguments are at most [`MAX_ARGS`] non-empty words of the
/// text; every channel name that parses prints as itself; quoted input carries no markup.
pub fn command_parse(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let (bot, text) = match input.split_once('\n') {
        Some((bot, text)) if !bot.starts_with('/') => (bot, text),
        _ => (DEFAULT_BOT, input.as_ref()),
    };
    let command = parse(text, bot);
    assert_eq!(
        command,
        parse(text, &bot.to_ascii_uppercase()),
        "the bot's name is case-insensitive"
    );
    assert_eq!(
        command,
        parse(text, &format!("@{bot}")),
        "a leading @ on the bot's name does not matter"
    );
    check_quote(text);
    let Some(command) = command else {
        return;
    };
    assert!(text.trim_start().starts_with('/'), "{text:?} is no command");
    match command {
        Command::Protect(args) => {
            check_args(text, &args);
            for arg in &args {
                check_quote(arg);
                if let Ok(channel) = arg.parse::<ChannelRef>() {
                    let printed = channel.to_string();
                    assert_eq!(
                        printed.parse::<ChannelRef>().ok().as_ref(),
                        Some(&channel),
                        "{arg:?} prints as {printed:?}, which names another channel"
                    );
                    let json = serde_json::to_string(&channel).expect("a channel serialises");
                    let back: ChannelRef =
                        serde_json::from_str(&json).expect("a stored channel reads back");
                    assert_eq!(back, channel);
                }
            }
        }
        Command::Settings(args) => {
            check_args(text, &args);
            if let [_, target] = args.as_slice() {
                check_quote(target);
                if let Ok(user) = target.parse::<UserId>() {
                    assert_eq!(user.to_string().parse::<UserId>(), Ok(user));
                }
            }
        }
        Command::Start | Command::Help | Command::Unprotect | Command::Status => {}
    }
}

fn check_args(text: &str, args: &[String]) {
    assert!(args.len() <= MAX_ARGS, "{} arguments", args.len());
    for arg in args {
        assert!(!arg.is_empty(), "an empty argument");
        assert!(
            !arg.chars().any(char::is_whitespace),
            "an argument with whitespace: {arg:?}"
        );
        assert!(text.contains(arg.as_str()), "{arg:?} is not in the text");
    }
}

/// A quote of user input is escaped HTML: no tag can start, every `&` starts an entity.
fn check_quote(input: &str) {
    let quoted = crate::commands::quote(input);
    assert!(
        !quoted.contains(['<', '>', '"']),
        "markup in a quote: {quoted:?}"
    );
    let mut rest = quoted.as_str();
    while let Some(i) = rest.find('&') {
        rest = &rest[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "a bare & in a quote: {quoted:?}"
        );
        rest = &rest[1..];
    }
}

/// The presser of the callbacks [`callback_data`] builds.
const PRESSER: UserId = UserId(4242);

/// Target `callback_data`: `data` as lines of `callback_data`, pressed one after another
/// under a message in a group, by one member; the settings presses are applied to one
/// group's settings, whose keyboard is drawn after each.
///
/// Properties: each data goes to the handler its prefix names; "I've joined" and join-gate
/// data that parse name an id whose own button data parses back to it, within Telegram's 64
/// bytes; a press is bound to the member its data names (or to the presser, for the
/// consolidated warning's button); every button of the settings keyboard, whatever was
/// pressed before, parses back to a press.
pub fn callback_data(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let mut settings = GroupSettings::default();
    for line in input.split('\n') {
        press_one(line, &mut settings);
    }
    // Ids of every shape, from the input's first bytes.
    let mut raw = [0u8; 8];
    let n = data.len().min(8);
    raw[..n].copy_from_slice(&data[..n]);
    let id = i64::from_le_bytes(raw);
    for id in [id, id.wrapping_neg(), id.saturating_abs()] {
        if let Ok(user) = UserId::new(id) {
            let d = joined_data(user);
            assert!(d.len() <= MAX_CALLBACK_DATA, "{d:?} is too long");
            assert_eq!(parse_joined_data(&d), Some(user), "{d:?}");
        }
        if let Ok(group) = GroupId::new(id) {
            let d = gate_data(group);
            assert!(d.len() <= MAX_CALLBACK_DATA, "{d:?} is too long");
            assert_eq!(parse_gate_data(&d), Some(group), "{d:?}");
        }
    }
}

fn press_one(data: &str, settings: &mut GroupSettings) {
    let routed = button(Some(data));
    let press = parse_press(data);
    let joined = parse_joined_data(data);
    let gate = parse_gate_data(data);
    match routed {
        Button::Settings => assert!(joined.is_none() && gate.is_none()),
        Button::Joined => assert!(press.is_none() && gate.is_none()),
        Button::Gate => assert!(press.is_none() && joined.is_none()),
        Button::Unknown => assert!(press.is_none() && joined.is_none() && gate.is_none()),
    }
    if let Some(user) = joined {
        assert_eq!(parse_joined_data(&joined_data(user)), Some(user));
    }
    if let Some(group) = gate {
        assert_eq!(parse_gate_data(&gate_data(group)), Some(group));
    }
    // The press as the "I've joined" handler reads it, under a message in a group and not.
    for chat in [ChatId(-100_123), ChatId(77)] {
        let cq = CallbackQuery {
            id: "q".into(),
            from: User {
                id: PRESSER,
                is_bot: false,
                first_name: "F".into(),
                last_name: None,
                username: None,
            },
            message: Some((chat, MessageId(5))),
            data: Some(data.to_owned()),
        };
        match joined_button::press(&cq, data) {
            Some(p) => {
                assert_eq!(routed, Button::Joined, "{data:?} is no joined button");
                assert_eq!(p.group.get(), chat.get());
                assert_eq!(p.anyone, data == ANYONE_JOINED_DATA);
                let expected = if p.anyone { Some(PRESSER) } else { joined };
                assert_eq!(Some(p.bound), expected, "{data:?}");
            }
            None => assert!(
                chat.get() > 0 || (joined.is_none() && data != ANYONE_JOINED_DATA),
                "{data:?} in a group was refused"
            ),
        }
    }
    // The settings keyboard.
    if let Some(Press::Change(change)) = press {
        // A preset can be refused by the settings' own rules; the keyboard stays drawable.
        let _ = settings.apply(&change);
        let message = settings_message(Some("Group <&>"), settings);
        for b in message.buttons.iter().flatten() {
            if let gmbot_core::telegram::InlineButton::Callback { data, .. } = b {
                assert!(data.len() <= MAX_CALLBACK_DATA, "{data:?} is too long");
                assert!(
                    parse_press(data).is_some(),
                    "the keyboard's own button {data:?} does not parse"
                );
            }
        }
    }
}

/// The secret the webhook of [`webhook_request`] checks.
pub const FUZZ_SECRET: &str = "fuzz-secret_0123456789";
/// Its path.
pub const FUZZ_WEBHOOK_PATH: &str = "/tg/hook";
/// Its body cap (small, so the fuzzer reaches it).
pub const FUZZ_MAX_BODY: usize = 2048;

/// The webhook gate, built once per process: no per-input setup.
fn gate() -> &'static WebhookGate {
    static GATE: OnceLock<WebhookGate> = OnceLock::new();
    GATE.get_or_init(|| {
        let metrics = BotMetrics::register(&prometheus::Registry::new())
            .expect("fresh registry takes the metrics");
        WebhookGate::new(&SecretString::new(FUZZ_SECRET), FUZZ_MAX_BODY, metrics)
    })
}

/// The production gate, recording what reached it and what it offered; an offered update is
/// taken (`200`), as by a runtime with room.
struct Recorder {
    seen: Mutex<Option<(Option<String>, Vec<u8>)>>,
    offered: Mutex<Option<Update>>,
}

impl WebhookEndpoint for Recorder {
    fn accept(&self, secret_header: Option<&str>, body: &[u8]) -> HttpReply {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((secret_header.map(str::to_owned), body.to_vec()));
        let reply = gate().accept_with(secret_header, body, |update| {
            *self.offered.lock().unwrap_or_else(PoisonError::into_inner) = Some(update);
            WebhookReply::OK
        });
        HttpReply::json(reply.status, reply.body)
    }
}

/// The body as `tiny_http` hands it over: `Content-Length` bytes (an error if the client
/// sent fewer and closed), everything with `Transfer-Encoding` (de-chunked by then), nothing
/// with neither.
struct Body<'a> {
    data: &'a [u8],
    fail_at_end: bool,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data.is_empty() {
            return if self.fail_at_end {
                Err(std::io::ErrorKind::ConnectionAborted.into())
            } else {
                Ok(0)
            };
        }
        let n = self.data.len().min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Target `webhook_request`: `data` as an HTTP request without the HTTP version — a request
/// line `METHOD URL`, header lines `Name: value`, an empty line, the body — answered as the
/// listener answers it (without `METRICS_LISTEN`). Lines end with `\n` (`\r` is trimmed).
///
/// Properties: only a `POST` to the webhook's path reaches the endpoint, with at most the cap
/// and exactly the bytes the client sent, and the first secret header; the answer is the one
/// the rules give — 404/405 by the route, 413 over the cap, 400 for a body that could not
/// be read, 401 without the exact secret, 200 for an update (taken, or acknowledged when only
/// its `update_id` is readable), 400 for anything else.
pub fn webhook_request(data: &[u8]) {
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut parts = request_line.splitn(2, ' ');
    let Ok(method) = parts
        .next()
        .unwrap_or_default()
        .parse::<tiny_http::Method>()
    else {
        return;
    };
    let url = parts.next().unwrap_or("/");
    let mut headers = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        // What tiny_http cannot represent never reaches the bot.
        if let Ok(h) = tiny_http::Header::from_bytes(&line[..colon], value) {
            headers.push(h);
        }
    }
    let header = |name: &'static str| {
        headers
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    };
    let chunked = header("Transfer-Encoding").is_some();
    let declared = if chunked {
        None
    } else {
        header("Content-Length").and_then(|v| v.parse::<usize>().ok())
    };
    let (sent, fail_at_end) = match declared {
        Some(n) => (&body[..n.min(body.len())], n > body.len()),
        None if chunked => (body, false),
        None => (&[][..], false),
    };
    let secret = header(SECRET_HEADER).map(str::to_owned);
    let recorder = Recorder {
        seen: Mutex::new(None),
        offered: Mutex::new(None),
    };
    let mut reader = Body {
        data: sent,
        fail_at_end,
    };
    let answer = answer_parts(
        &method,
        url,
        true,
        FUZZ_WEBHOOK_PATH,
        &headers,
        declared,
        &mut reader,
        &recorder,
        FUZZ_MAX_BODY,
    );
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let seen = recorder
        .seen
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let offered = recorder
        .offered
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let (reply, allow) = match answer {
        Answer::Now(reply, allow) => (reply, allow),
        Answer::Probe(_) => {
            assert!(
                matches!(path, "/ready" | "/metrics"),
                "{path:?} waits for the probes"
            );
            assert!(seen.is_none());
            return;
        }
    };
    let webhook = path == FUZZ_WEBHOOK_PATH;
    let known = webhook || matches!(path, "/health" | "/ready" | "/metrics");
    if !known {
        assert_eq!(reply.status, 404, "{path:?}");
        assert!(seen.is_none());
        return;
    }
    if allow.is_some() {
        assert_eq!(reply.status, 405);
        assert!(seen.is_none());
        return;
    }
    if !webhook {
        assert_eq!((reply.status, path), (200, "/health"));
        assert!(seen.is_none());
        return;
    }
    assert_eq!(
        method,
        tiny_http::Method::Post,
        "only a POST reaches the webhook"
    );
    if declared.is_some_and(|n| n > FUZZ_MAX_BODY) || sent.len() > FUZZ_MAX_BODY {
        assert_eq!(reply.status, 413, "over the cap");
        assert!(seen.is_none(), "a body over the cap reached the endpoint");
        return;
    }
    if fail_at_end {
        assert_eq!(reply.status, 400, "a body cut short");
        assert!(seen.is_none(), "a body cut short reached the endpoint");
        return;
    }
    let (got_secret, got_body) = seen.expect("a webhook request reaches the endpoint");
    assert_eq!(
        got_body, sent,
        "the endpoint got other bytes than were sent"
    );
    assert_eq!(got_secret, secret, "the endpoint got another secret header");
    if secret.as_deref() != Some(FUZZ_SECRET) {
        assert_eq!(reply.status, 401, "a request without the secret was let in");
        assert!(offered.is_none());
        return;
    }
    match convert::from_json(sent) {
        Ok(update) => {
            assert_eq!(reply.status, 200);
            assert_eq!(
                offered.as_ref(),
                Some(&update),
                "the update offered is the body's"
            );
        }
        Err(_) => {
            assert!(offered.is_none());
            let id = serde_json::from_slice::<Value>(sent)
                .ok()
                .and_then(|v| v.get("update_id").and_then(Value::as_u64));
            let expected = if id.is_some() { 200 } else { 400 };
            assert_eq!(reply.status, expected, "{}", reply.body);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
