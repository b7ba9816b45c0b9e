//! Examples for the zg-compute library crates. Run one with `cargo run -p zg-examples --example NAME`.
//!
//! The examples live beside this file; each is a complete program a downstream developer can copy.
