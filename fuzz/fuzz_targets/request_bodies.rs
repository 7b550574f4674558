#![no_main]
//! See `src/request_bodies.rs` for what this target checks.

#[global_allocator]
static ALLOC: cutover_fuzz::CountingAlloc = cutover_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::request_bodies::check(data));
