#![no_main]
//! See `src/classify.rs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::classify::check(data));
