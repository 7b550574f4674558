#![no_main]
//! See `src/lexer.rs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::lexer::check(data));
