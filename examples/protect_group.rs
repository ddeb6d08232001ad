//! Opens a store, protects a group and reads it back. (Being written.)
fn main() {}
