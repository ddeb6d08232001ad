//! `gmbot-bot demo` end to end: the scripted scenario passes every check, in bounded time,
//! and its transcript shows what each actor and the bot did.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_and_tells_the_story() {
    let mut out = Vec::new();
    let summary = gmbot_bot::demo::run(&mut out, Duration::from_secs(30))
        .await
        .expect("the demo runs");
    let transcript = String::from_utf8(out).expect("utf-8 transcript");
    assert!(summary.passed(), "{:?}\n{transcript}", summary.checks);
    assert!(summary.checks.len() >= 10, "{:?}", summary.checks);
    for line in [
        "Olivia  › /protect @rust_news",
        "deletes Bob's message",
        "mutes Bob",
        "unmutes Bob",
        "answers the button press",
        "Summary",
    ] {
        assert!(
            transcript.contains(line),
            "missing {line:?} in:\n{transcript}"
        );
    }
    assert!(!transcript.contains("FAILED"), "{transcript}");
}
