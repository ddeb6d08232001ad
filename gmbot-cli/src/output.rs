//! Writing results: the `--format` choice, JSON encoding, timestamps, and stdout that tolerates a closed pipe.

use std::io::{self, Write};

use gmbot_core::domain::UnixTime;
use serde::Serialize;

use crate::error::CliError;

/// How a listing is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

/// Pretty JSON followed by a newline.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::runtime(anyhow::Error::new(e).context("cannot encode JSON")))?;
    text.push('\n');
    Ok(text)
}

/// Writes a command's output. A reader that went away (`gmbot groups list | head`)
/// is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::runtime(
            anyhow::Error::new(e).context("cannot write to standard output"),
        )),
        _ => Ok(()),
    }
}

/// `2024-05-01 12:00:00 UTC`, from Unix seconds (proleptic Gregorian calendar).
pub(crate) fn time(t: UnixTime) -> String {
    let secs = t.secs();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_seconds_as_utc() {
        assert_eq!(time(UnixTime(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(UnixTime(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(UnixTime(1_714_564_800)), "2024-05-01 12:00:00 UTC");
        assert_eq!(time(UnixTime(-1)), "1969-12-31 23:59:59 UTC");
    }
}
