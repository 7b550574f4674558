//! The fuzz targets' checks, one module each (`check(data)`: what a target
//! runs on one input), so that `cargo fuzz` and the stable regression test
//! (`tests/fuzz_regressions.rs`) run the same code; and what they share: an
//! allocation counter (to check that a
//! reader allocates no more than a small multiple of its input), and
//! builders of v5 segments with valid CRCs, so that the fuzzer's bytes reach
//! what lies behind the checksums instead of stopping at them.

pub mod classify;
pub mod config;
pub mod frame_codec;
pub mod lexer;
pub mod node;
pub mod request_bodies;
pub mod response_bodies;
pub mod segment;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{BufMut, BytesMut};
use cutover::frame::{crc24, crc32_cql};

/// Counts the bytes allocated by this thread while `counting` is on.
pub struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size.saturating_sub(layout.size()));
        System.realloc(ptr, layout, new_size)
    }
}

fn note(n: usize) {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(n)));
        }
    });
}

/// Runs `f` and returns what it returned with the bytes it allocated.
pub fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATED.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATED.with(|a| a.get()))
}

/// One v5 segment around `wire` with correct CRCs. With `lz4`, a non-zero
/// `uncompressed_len` says the payload is compressed (whatever it holds).
pub fn valid_segment(
    wire: &[u8],
    lz4: bool,
    uncompressed_len: usize,
    self_contained: bool,
    dst: &mut BytesMut,
) {
    let wire = &wire[..wire.len().min(0x1FFFF)];
    let (header, hl) = if lz4 {
        (
            wire.len() as u64
                | ((uncompressed_len as u64 & 0x1FFFF) << 17)
                | ((self_contained as u64) << 34),
            5,
        )
    } else {
        (wire.len() as u64 | ((self_contained as u64) << 17), 3)
    };
    for i in 0..hl {
        dst.put_u8((header >> (8 * i)) as u8);
    }
    let crc = crc24(header, hl);
    for i in 0..3 {
        dst.put_u8((crc >> (8 * i)) as u8);
    }
    dst.put_slice(wire);
    dst.put_u32_le(crc32_cql(wire));
}

/// Cuts `data` into pieces whose sizes come from `sizes` (each at least 1),
/// as the bytes of a socket arrive in reads of any size.
pub fn pieces<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut k = 0;
    while !rest.is_empty() {
        let n = (sizes.get(k % sizes.len().max(1)).copied().unwrap_or(255) as usize).max(1);
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
        k += 1;
    }
    out
}
