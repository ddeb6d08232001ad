//! Sentry (`SENTRY_DSN`, optional): error log lines and panics become events, tagged with their context.
//!
//! - **Errors**: a `log::error!` record becomes an event; its key-values named in
//!   [`TAG_KEYS`] (`update_id`, `group_id`, `user_id`, `decision`, …) become tags,
//!   the other harmless ones extra data. Warnings become breadcrumbs; info and
//!   below are not sent (they would cost on every update for nothing).
//! - **Panics**: the SDK's panic hook reports them; a panic inside [`scoped`]
//!   (the work on one update) carries that update's context as tags.
//! - **Scrubbing**: every event passes [`scrub`] before it leaves the process:
//!   the bot token (and any `/bot<token>` URL segment) is replaced, and fields
//!   that could hold what users wrote (`text`, `caption`, …) or secrets are dropped.
//!
//! The DSN is parsed by the SDK's own parser in [`crate::config`], so a bad one
//! is a configuration error naming `SENTRY_DSN`, never a panic here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use log::kv::{Key, Value, VisitSource};
use log::Record;
use sentry::integrations::log::{LogFilter, RecordMapping, SentryLogger};
use sentry::protocol::{Breadcrumb, Event, Level, Map};
use sentry::types::Dsn;

use crate::config::{Config, ConfigError};
use crate::secret::BotToken;

/// Key-values that become event tags: bounded, searchable context.
pub const TAG_KEYS: [&str; 8] = [
    "update_id",
    "group_id",
    "user_id",
    "channel_id",
    "decision",
    "kind",
    "method",
    "lane",
];

/// Key-values never sent, whatever their value: they may hold what users wrote, or secrets.
const DROPPED_KEYS: [&str; 10] = [
    "text",
    "caption",
    "body",
    "name",
    "first_name",
    "last_name",
    "username",
    "token",
    "secret",
    "password",
];

/// How long dropping the guard waits to deliver queued events.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the client is built from.
#[derive(Clone)]
pub struct SentrySettings {
    dsn: Dsn,
    /// `gmbot-bot@<version>`.
    pub release: String,
    /// `GMBOT_ENV` (default `production`).
    pub environment: String,
    token: Option<BotToken>,
}

impl std::fmt::Debug for SentrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentrySettings")
            .field("release", &self.release)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

impl SentrySettings {
    /// Settings from the configuration; `None` when `SENTRY_DSN` is unset.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let Some(dsn) = &config.sentry_dsn else {
            return Ok(None);
        };
        let mut settings = Self::new(dsn.expose(), &config.environment)?;
        settings.token = config.token.clone();
        Ok(Some(settings))
    }

    /// Settings for a DSN and environment, with this build's release.
    pub fn new(dsn: &str, environment: &str) -> Result<Self, ConfigError> {
        let dsn = dsn.parse::<Dsn>().map_err(|_| ConfigError {
            var: "SENTRY_DSN",
            reason: "expected https://<key>@<host>/<project id>".to_owned(),
        })?;
        Ok(Self {
            dsn,
            release: release(),
            environment: environment.to_owned(),
            token: None,
        })
    }

    /// The token to scrub from every event (in addition to any `/bot…` URL segment).
    pub fn scrub_token(mut self, token: BotToken) -> Self {
        self.token = Some(token);
        self
    }
}

/// `gmbot-bot@<version>`, the release events are grouped by.
pub fn release() -> String {
    format!("gmbot-bot@{}", env!("CARGO_PKG_VERSION"))
}

/// The running client. Dropping it delivers queued events (up to two seconds) and stops it.
#[must_use = "dropping the guard stops reporting to Sentry"]
pub struct SentryGuard {
    client: Arc<sentry::Client>,
    _init: sentry::ClientInitGuard,
}

impl std::fmt::Debug for SentryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentryGuard")
            .field("enabled", &self.client.is_enabled())
            .finish()
    }
}

impl SentryGuard {
    /// Waits until queued events are sent, at most `timeout`; `true` if all were.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.client.flush(Some(timeout))
    }
}

/// Starts the client, installs the panic hook, and binds it for every thread.
/// Install the logger with [`crate::logging::init_with_sentry`] to report error lines.
pub fn init(settings: SentrySettings) -> SentryGuard {
    let token = settings.token.clone();
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some(settings.dsn);
    options.release = Some(Cow::Owned(settings.release));
    options.environment = Some(Cow::Owned(settings.environment));
    options.send_default_pii = false;
    options.shutdown_timeout = SHUTDOWN_TIMEOUT;
    options.before_send = Some(Arc::new(move |mut event: Event<'static>| {
        add_context_tags(&mut event);
        scrub(&mut event, token.as_ref());
        Some(event)
    }));
    let init = sentry::init(options);
    let client = sentry::Hub::current().client().unwrap_or_else(|| {
        // `init` binds the client it built to the current hub; this path is
        // only reached if that ever changes, and then reports nothing.
        Arc::new(sentry::Client::from(sentry::ClientOptions::default()))
    });
    // Threads started before or after `init` on another thread than main start
    // from the process hub: bind there too, so every thread reports.
    sentry::Hub::main().bind_client(Some(Arc::clone(&client)));
    SentryGuard {
        client,
        _init: init,
    }
}

/// Wraps a logger so that error records become Sentry events and warnings breadcrumbs.
pub fn logger<L: log::Log>(dest: L) -> SentryLogger<L> {
    SentryLogger::with_dest(dest)
        .filter(|meta| match meta.level() {
            log::Level::Error => LogFilter::Event,
            log::Level::Warn => LogFilter::Breadcrumb,
            _ => LogFilter::Ignore,
        })
        .mapper(|record: &Record<'_>| match record.level() {
            log::Level::Error => RecordMapping::Event(Box::new(event_from(record))),
            log::Level::Warn => RecordMapping::Breadcrumb(breadcrumb_from(record)),
            _ => RecordMapping::Ignore,
        })
}

/// The context of the update being handled, attached as tags to whatever is
/// reported while it runs (panics included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventContext {
    /// Telegram's update id.
    pub update_id: Option<i64>,
    /// The group the update is about.
    pub group_id: Option<i64>,
    /// The member the update is about.
    pub user_id: Option<i64>,
}

tokio::task_local! {
    static CONTEXT: EventContext;
}

/// Runs `work` with `context` attached to any event it reports (cheap: a task-local).
pub async fn scoped<F: Future>(context: EventContext, work: F) -> F::Output {
    CONTEXT.scope(context, work).await
}

/// The context of the current [`scoped`] work, if any.
pub fn current_context() -> Option<EventContext> {
    CONTEXT.try_with(|c| *c).ok()
}

fn add_context_tags(event: &mut Event<'static>) {
    let Some(ctx) = current_context() else {
        return;
    };
    for (key, value) in [
        ("update_id", ctx.update_id),
        ("group_id", ctx.group_id),
        ("user_id", ctx.user_id),
    ] {
        if let Some(v) = value {
            event
                .tags
                .entry(key.to_owned())
                .or_insert_with(|| v.to_string());
        }
    }
}

/// Removes the token and anything users wrote from an event, in place.
pub fn scrub(event: &mut Event<'static>, token: Option<&BotToken>) {
    let clean = |s: &str| -> String {
        match token {
            Some(t) => {
                let out = t.redact(s);
                match t.expose().split_once(':') {
                    Some((_, secret)) if out.contains(secret) => out.replace(secret, "<redacted>"),
                    _ => out,
                }
            }
            None => crate::secret::redact_bot_paths(s),
        }
    };
    if let Some(m) = &mut event.message {
        *m = clean(m);
    }
    if let Some(entry) = &mut event.logentry {
        entry.message = clean(&entry.message);
        entry.params.clear();
    }
    for exception in &mut event.exception.values {
        if let Some(v) = &mut exception.value {
            *v = clean(v);
        }
    }
    for value in event.tags.values_mut() {
        *value = clean(value);
    }
    scrub_map(&mut event.extra, &clean);
    for crumb in &mut event.breadcrumbs.values {
        if let Some(m) = &mut crumb.message {
            *m = clean(m);
        }
        scrub_map(&mut crumb.data, &clean);
    }
    event.user = None;
    event.request = None;
}

fn scrub_map(map: &mut Map<String, sentry::protocol::Value>, clean: &dyn Fn(&str) -> String) {
    map.retain(|k, _| !is_dropped(k));
    for value in map.values_mut() {
        if let sentry::protocol::Value::String(s) = value {
            *s = clean(s);
        }
    }
}

fn is_dropped(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    DROPPED_KEYS
        .iter()
        .any(|d| key == *d || key.contains("token") || key.contains("secret"))
}

fn event_from(record: &Record<'_>) -> Event<'static> {
    let fields = Fields::of(record);
    Event {
        level: Level::Error,
        logger: Some(record.target().to_owned()),
        message: Some(record.args().to_string()),
        tags: fields.tags,
        extra: fields.extra,
        ..Event::default()
    }
}

fn breadcrumb_from(record: &Record<'_>) -> Breadcrumb {
    let fields = Fields::of(record);
    let mut data = fields.extra;
    data.extend(
        fields
            .tags
            .into_iter()
            .map(|(k, v)| (k, sentry::protocol::Value::String(v))),
    );
    Breadcrumb {
        ty: "log".into(),
        level: Level::Warning,
        category: Some(record.target().to_owned()),
        message: Some(record.args().to_string()),
        data,
        ..Breadcrumb::default()
    }
}

/// A record's key-values, split into tags and extra data, dropped keys left out.
#[derive(Default)]
struct Fields {
    tags: BTreeMap<String, String>,
    extra: Map<String, sentry::protocol::Value>,
}

impl Fields {
    fn of(record: &Record<'_>) -> Self {
        let mut fields = Self::default();
        let _ = record.key_values().visit(&mut fields);
        fields
    }
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let key = key.as_str();
        if is_dropped(key) {
            return Ok(());
        }
        if TAG_KEYS.contains(&key) {
            self.tags.insert(key.to_owned(), value.to_string());
        } else {
            let value = if let Some(v) = value.to_i64() {
                v.into()
            } else if let Some(v) = value.to_u64() {
                v.into()
            } else if let Some(v) = value.to_bool() {
                v.into()
            } else {
                value.to_string().into()
            };
            self.extra.insert(key.to_owned(), value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-";

    #[test]
    fn error_records_become_tagged_events_without_user_text() {
        let kvs: Vec<(&str, Value<'_>)> = vec![
            ("update_id", Value::from(9_u64)),
            ("group_id", Value::from(-100_i64)),
            ("user_id", Value::from(5_i64)),
            ("decision", Value::from("deny")),
            ("text", Value::from("what the member wrote")),
            ("attempt", Value::from(2_u64)),
        ];
        let url = format!("https://api.telegram.org/bot{TOKEN}/restrictChatMember");
        let mut event = event_from(
            &Record::builder()
                .level(log::Level::Error)
                .target("gmbot_bot::flows")
                .args(format_args!("call failed at {url}"))
                .key_values(&kvs)
                .build(),
        );
        let token = BotToken::parse(TOKEN).expect("token");
        scrub(&mut event, Some(&token));
        assert_eq!(event.tags.get("update_id").map(String::as_str), Some("9"));
        assert_eq!(event.tags.get("group_id").map(String::as_str), Some("-100"));
        assert_eq!(event.tags.get("user_id").map(String::as_str), Some("5"));
        assert_eq!(event.tags.get("decision").map(String::as_str), Some("deny"));
        assert_eq!(event.extra.get("attempt"), Some(&2_i64.into()));
        let json = serde_json::to_string(&event).expect("event serializes");
        assert!(!json.contains("AAHdqTcv"), "{json}");
        assert!(!json.contains("what the member wrote"), "{json}");
    }

    #[test]
    fn bad_dsn_is_a_config_error() {
        let err = SentrySettings::new("not a dsn", "production").expect_err("invalid");
        assert_eq!(err.var, "SENTRY_DSN");
        let ok = SentrySettings::new("http://key@127.0.0.1:9/1", "staging").expect("valid");
        assert_eq!(
            ok.release,
            format!("gmbot-bot@{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(ok.environment, "staging");
    }
}
