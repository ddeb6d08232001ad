//! Logging: `env_logger` behind the `log` facade, as human text or JSON lines, key-values included.
//!
//! `GMBOT_LOG_FORMAT=text` (the default) writes
//! `2025-01-31T12:00:00.123Z INFO  gmbot_bot::flows: message denied update_id=7 group_id=-100…`;
//! `json` writes one object per line with `timestamp` (RFC 3339, UTC), `level`,
//! `target`, `message` and every key-value of the record as its own field
//! (numbers and booleans stay JSON numbers and booleans).
//!
//! `RUST_LOG` is honoured (default `info`). HTTP and database client crates are
//! held at `warn` unless `RUST_LOG` names them: at `debug` they describe every
//! connection, which drowns the bot's own lines.
//!
//! Only binaries install a logger ([`init`], [`init_with_sentry`]); the
//! formatters are plain functions so tests can feed them records directly, and
//! [`LineBuffer`] captures a logger's output in memory.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use env_logger::fmt::{Target, WriteStyle};
use log::kv::{Key, Value, VisitSource};
use log::{LevelFilter, Record};

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// Chatty dependencies held at `warn` unless `RUST_LOG` names them.
pub const QUIET_DEPENDENCIES: &str = "reqwest=warn,hyper=warn,hyper_util=warn,h2=warn,rustls=warn,\
tokio_postgres=warn,postgres=warn,r2d2=warn,redis=warn,tiny_http=warn,mio=warn,want=warn";

/// Field names of every JSON line; a key-value with one of these names is written as `kv_<name>`.
const RESERVED: [&str; 4] = ["timestamp", "level", "target", "message"];

/// Why a logger could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("a logger is already installed")]
pub struct LoggingError(#[from] log::SetLoggerError);

/// An `env_logger` builder with GMBot's format and filters, writing to stderr.
///
/// `filter` is `RUST_LOG`'s value; its directives override the defaults.
pub fn builder(format: LogFormat, filter: Option<&str>) -> env_logger::Builder {
    let mut builder = env_logger::Builder::new();
    builder
        .parse_filters(DEFAULT_FILTER)
        .parse_filters(QUIET_DEPENDENCIES);
    if let Some(filter) = filter {
        builder.parse_filters(filter);
    }
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            let ts = buf.timestamp_millis().to_string();
            write_text(buf, &ts, record)
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let ts = buf.timestamp_millis().to_string();
            write_json(buf, &ts, record)
        }),
    };
    builder
}

/// A logger like [`builder`]'s that writes into `buffer` (for tests and transcripts).
pub fn captured(
    format: LogFormat,
    filter: Option<&str>,
    buffer: &LineBuffer,
) -> env_logger::Logger {
    builder(format, filter)
        .write_style(WriteStyle::Never)
        .target(Target::Pipe(Box::new(buffer.clone())))
        .build()
}

/// Installs the process' logger: `format`, `filter` from `RUST_LOG`.
pub fn init(format: LogFormat, filter: Option<&str>) -> Result<(), LoggingError> {
    let logger = builder(format, filter).build();
    let max = logger.filter();
    install(logger, max)
}

/// Like [`init`], and also reports error lines to Sentry (as events, with their
/// context as tags) and keeps warnings as breadcrumbs; see [`crate::sentry`].
pub fn init_with_sentry(format: LogFormat, filter: Option<&str>) -> Result<(), LoggingError> {
    let logger = builder(format, filter).build();
    // Warnings feed Sentry's breadcrumbs even when the log itself shows errors only.
    let max = logger.filter().max(LevelFilter::Warn);
    install(crate::sentry::logger(logger), max)
}

/// Installs any logger with `max` as the `log` macros' ceiling (records above
/// it are never even formatted).
pub fn install<L: log::Log + 'static>(logger: L, max: LevelFilter) -> Result<(), LoggingError> {
    log::set_boxed_logger(Box::new(logger))?;
    log::set_max_level(max);
    Ok(())
}

/// Writes one text line: `timestamp LEVEL target: message key=value …`.
pub fn write_text(out: &mut dyn Write, timestamp: &str, record: &Record<'_>) -> io::Result<()> {
    write!(
        out,
        "{timestamp} {:<5} {}: {}",
        record.level(),
        record.target(),
        record.args()
    )?;
    let mut visitor = TextFields { out, error: None };
    let _ = record.key_values().visit(&mut visitor);
    if let Some(e) = visitor.error {
        return Err(e);
    }
    visitor.out.write_all(b"\n")
}

/// Writes one JSON line: `timestamp`, `level`, `target`, `message`, then every key-value.
pub fn write_json(out: &mut dyn Write, timestamp: &str, record: &Record<'_>) -> io::Result<()> {
    out.write_all(b"{\"timestamp\":")?;
    json_str(out, timestamp)?;
    write!(out, ",\"level\":\"{}\",\"target\":", record.level())?;
    json_str(out, record.target())?;
    out.write_all(b",\"message\":")?;
    match record.args().as_str() {
        Some(s) => json_str(out, s)?,
        None => json_str(out, &record.args().to_string())?,
    }
    let mut visitor = JsonFields { out, error: None };
    let _ = record.key_values().visit(&mut visitor);
    if let Some(e) = visitor.error {
        return Err(e);
    }
    visitor.out.write_all(b"}\n")
}

fn json_str(out: &mut dyn Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(out, s).map_err(io::Error::other)
}

struct JsonFields<'a> {
    out: &'a mut dyn Write,
    error: Option<io::Error>,
}

impl JsonFields<'_> {
    fn pair(&mut self, key: &str, value: &Value<'_>) -> io::Result<()> {
        self.out.write_all(b",")?;
        if RESERVED.contains(&key) {
            json_str(self.out, &format!("kv_{key}"))?;
        } else {
            json_str(self.out, key)?;
        }
        self.out.write_all(b":")?;
        if let Some(v) = value.to_i64() {
            write!(self.out, "{v}")
        } else if let Some(v) = value.to_u64() {
            write!(self.out, "{v}")
        } else if let Some(v) = value.to_f64().filter(|v| v.is_finite()) {
            serde_json::to_writer(&mut *self.out, &v).map_err(io::Error::other)
        } else if let Some(v) = value.to_bool() {
            write!(self.out, "{v}")
        } else if let Some(v) = value.to_borrowed_str() {
            json_str(self.out, v)
        } else {
            json_str(self.out, &value.to_string())
        }
    }
}

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        if let Err(e) = self.pair(key.as_str(), &value) {
            self.error = Some(e);
            return Err(log::kv::Error::msg("write failed"));
        }
        Ok(())
    }
}

struct TextFields<'a> {
    out: &'a mut dyn Write,
    error: Option<io::Error>,
}

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let text = value.to_string();
        // Quote values a reader (or a grep) would otherwise split wrongly.
        let plain = !text.is_empty()
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '=');
        let written = if plain {
            write!(self.out, " {key}={text}")
        } else {
            write!(self.out, " {key}={text:?}")
        };
        if let Err(e) = written {
            self.error = Some(e);
            return Err(log::kv::Error::msg("write failed"));
        }
        Ok(())
    }
}

/// An in-memory log destination shared between a logger and its reader.
#[derive(Debug, Clone, Default)]
pub struct LineBuffer(Arc<Mutex<Vec<u8>>>);

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, split into lines.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Empties the buffer.
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Write for LineBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log as _;

    fn emit(logger: &env_logger::Logger, level: log::Level, kvs: &[(&str, Value<'_>)]) {
        let kvs: Vec<(&str, Value<'_>)> = kvs.to_vec();
        logger.log(
            &Record::builder()
                .level(level)
                .target("gmbot_bot::flows::enforce")
                .args(format_args!("message \"denied\""))
                .key_values(&kvs)
                .build(),
        );
    }

    #[test]
    fn json_lines_carry_every_field() {
        let buffer = LineBuffer::new();
        let logger = captured(LogFormat::Json, None, &buffer);
        emit(
            &logger,
            log::Level::Info,
            &[
                ("update_id", Value::from(42_u64)),
                ("group_id", Value::from(-1_001_234_i64)),
                ("user_id", Value::from(7_i64)),
                ("decision", Value::from("deny")),
                ("latency_ms", Value::from(1.5_f64)),
                ("cached", Value::from(true)),
                ("message", Value::from("clash")),
            ],
        );
        emit(&logger, log::Level::Debug, &[]); // below the default filter
        let lines = buffer.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("one JSON object");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "gmbot_bot::flows::enforce");
        assert_eq!(v["message"], "message \"denied\"");
        assert_eq!(v["update_id"], 42);
        assert_eq!(v["group_id"], -1_001_234);
        assert_eq!(v["user_id"], 7);
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["latency_ms"], 1.5);
        assert_eq!(v["cached"], true);
        assert_eq!(v["kv_message"], "clash");
        let ts = v["timestamp"].as_str().expect("timestamp string");
        // RFC 3339 in UTC, e.g. 2025-01-31T12:00:00.123Z
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }

    #[test]
    fn text_lines_append_key_values() {
        let buffer = LineBuffer::new();
        let logger = captured(LogFormat::Text, Some("debug"), &buffer);
        emit(
            &logger,
            log::Level::Debug,
            &[
                ("update_id", Value::from(42_u64)),
                ("reason", Value::from("not enough rights")),
            ],
        );
        let lines = buffer.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(
            line.ends_with(
                " DEBUG gmbot_bot::flows::enforce: message \"denied\" update_id=42 reason=\"not enough rights\""
            ),
            "{line}"
        );
        assert!(
            line.starts_with("20") && line.as_bytes()[10] == b'T',
            "{line}"
        );
    }

    #[test]
    fn rust_log_overrides_and_dependencies_stay_quiet() {
        let buffer = LineBuffer::new();
        let logger = captured(LogFormat::Json, Some("trace"), &buffer);
        let meta = |target: &'static str, level| {
            log::Metadata::builder().target(target).level(level).build()
        };
        assert!(logger.enabled(&meta("gmbot_bot", log::Level::Trace)));
        assert!(!logger.enabled(&meta("reqwest::connect", log::Level::Info)));
        assert!(!logger.enabled(&meta("hyper_util::client", log::Level::Debug)));
        assert!(logger.enabled(&meta("reqwest", log::Level::Warn)));
        let loud = captured(LogFormat::Json, Some("info,reqwest=debug"), &buffer);
        assert!(loud.enabled(&meta("reqwest::connect", log::Level::Debug)));
        let default = captured(LogFormat::Json, None, &buffer);
        assert!(default.enabled(&meta("gmbot_bot", log::Level::Info)));
        assert!(!default.enabled(&meta("gmbot_bot", log::Level::Debug)));
        assert_eq!(default.filter(), LevelFilter::Info);
        assert_eq!(logger.filter(), LevelFilter::Trace);
    }
}
