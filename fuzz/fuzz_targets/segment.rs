#![no_main]
//! See `src/segment.rs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::segment::check(data));
