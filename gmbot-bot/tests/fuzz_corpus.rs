//! The fuzz targets' committed corpora (`fuzz/corpus/<target>/`), replayed through the
//! targets' own functions ([`gmbot_bot::fuzzing`]) once per file: what the fuzzer found
//! interesting, and every input that once broke a property, keeps being checked by
//! `cargo test`, without cargo-fuzz or a nightly compiler.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{}: {} files; the committed corpus is missing",
        dir.display(),
        files.len()
    );
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let broken: Vec<String> = corpus(target)
        .into_iter()
        .filter(|(_, data)| std::panic::catch_unwind(|| run(data)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        broken.is_empty(),
        "{target}: these inputs break a property (the panics above say which): {broken:#?}"
    );
}

#[test]
fn update_decode_corpus() {
    replay("update_decode", gmbot_bot::fuzzing::update_decode);
}

#[test]
fn command_parse_corpus() {
    replay("command_parse", gmbot_bot::fuzzing::command_parse);
}

#[test]
fn callback_data_corpus() {
    replay("callback_data", gmbot_bot::fuzzing::callback_data);
}

#[test]
fn webhook_request_corpus() {
    replay("webhook_request", gmbot_bot::fuzzing::webhook_request);
}
