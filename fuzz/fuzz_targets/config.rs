#![no_main]
//! See `src/config.rs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::config::check(data));
