//! Fuzz target `callback_data`: drives `gmbot_bot::fuzzing::callback_data` (its invariants are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gmbot_bot::fuzzing::callback_data(data));
