//! A logger for tests that count log lines (an outage is reported once, its end once): every
//! `gmbot_core` line is recorded with its level.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};

/// Records every `gmbot_core` log line.
struct CaptureLogger;

/// Every line recorded so far, with its level.
pub(crate) fn captured() -> &'static Mutex<Vec<(log::Level, String)>> {
    static LINES: OnceLock<Mutex<Vec<(log::Level, String)>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("gmbot_core") {
            captured()
                .lock()
                .expect("log capture lock")
                .push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger once per test binary, at `info`.
pub(crate) fn install_logger() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        static LOGGER: CaptureLogger = CaptureLogger;
        log::set_logger(&LOGGER).expect("logger installs once");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Lines recorded so far at `level` that contain every one of `needles`.
pub(crate) fn count_logs(level: log::Level, needles: &[&str]) -> usize {
    captured()
        .lock()
        .expect("log capture lock")
        .iter()
        .filter(|(l, m)| *l == level && needles.iter().all(|n| m.contains(n)))
        .count()
}
