//! `gmbot`, the operator CLI. (Being written.)
fn main() {}
