//! Fuzz target `command_parse`: drives `gmbot_bot::fuzzing::command_parse` (its invariants are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gmbot_bot::fuzzing::command_parse(data));
