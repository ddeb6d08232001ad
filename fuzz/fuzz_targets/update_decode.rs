//! Fuzz target `update_decode`: drives `gmbot_bot::fuzzing::update_decode` (its invariants are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gmbot_bot::fuzzing::update_decode(data));
