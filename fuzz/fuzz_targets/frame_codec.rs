#![no_main]
//! See `src/frame_codec.rs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::frame_codec::check(data));
