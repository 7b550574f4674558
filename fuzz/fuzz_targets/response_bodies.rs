#![no_main]
//! See `src/response_bodies.rs` for what this target checks.

#[global_allocator]
static ALLOC: cutover_fuzz::CountingAlloc = cutover_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz::response_bodies::check(data));
