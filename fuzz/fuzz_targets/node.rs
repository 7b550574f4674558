#![no_main]
//! See `src/node.rs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::node::check(data));
