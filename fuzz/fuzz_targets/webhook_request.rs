//! Fuzz target `webhook_request`: drives `gmbot_bot::fuzzing::webhook_request` (its invariants are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gmbot_bot::fuzzing::webhook_request(data));
