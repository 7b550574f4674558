//! The frame codec (v3–v5 headers, LZ4 and Snappy bodies, v5 segments) on
//! bytes from the network, cut into reads of any size.
//!
//! Properties: no panic; the frames decoded do not depend on how the bytes
//! were cut into reads; every frame decoded encodes and decodes back to
//! itself under the same framing state.

use super::{pieces, valid_segment};
use bytes::BytesMut;
use cutover::frame::{CodecConfig, Compression, Frame, FrameCodec};
use tokio_util::codec::{Decoder, Encoder};

#[derive(Clone, Copy, Debug)]
struct State {
    compression: Option<Compression>,
    segments: bool,
    authenticated: bool,
}

fn codec(s: State) -> FrameCodec {
    let mut c = FrameCodec::new(CodecConfig {
        max_frame: 1 << 20,
        max_frame_pre_auth: 8 * 1024,
    });
    c.set_compression(s.compression);
    if s.authenticated {
        c.set_authenticated();
    }
    if s.segments {
        c.enable_segments();
    }
    c
}

/// Every frame the codec cuts out of `reads`, and whether it stopped on an error.
fn decode_all(s: State, reads: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut c = codec(s);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for r in reads {
        buf.extend_from_slice(r);
        loop {
            match c.decode(&mut buf) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

pub fn check(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let mode = data[0];
    let state = State {
        compression: match mode & 3 {
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Snappy),
            _ => None,
        },
        segments: mode & 4 != 0,
        authenticated: mode & 8 != 0,
    };
    let cut = data[1];
    let rest = &data[2..];
    // With segments, the fuzzer's bytes become segment payloads with valid
    // CRCs (otherwise nearly every input stops at the checksum); bit 4
    // leaves them raw so the checksum paths are reached too.
    let wire: Vec<u8> = if state.segments && mode & 16 == 0 {
        let lz4 = state.compression == Some(Compression::Lz4);
        let mut b = BytesMut::new();
        for (i, chunk) in rest.chunks(((cut as usize) << 4).max(1)).enumerate() {
            let claimed = if lz4 && mode & 32 != 0 {
                chunk.len() * 2 + i
            } else {
                0
            };
            valid_segment(chunk, lz4, claimed, mode & 64 != 0, &mut b);
        }
        b.to_vec()
    } else {
        rest.to_vec()
    };
    let (whole, whole_err) = decode_all(state, &[&wire]);
    let sizes = [cut, cut.wrapping_mul(7), 1, cut / 3];
    let (cut_up, cut_err) = decode_all(state, &pieces(&wire, &sizes));
    assert_eq!(whole, cut_up, "frames depend on how the reads were cut");
    assert_eq!(whole_err, cut_err);
    for f in whole {
        let mut enc = codec(state);
        let mut b = BytesMut::new();
        enc.encode(f.clone(), &mut b)
            .expect("encoding a decoded frame");
        let (again, err) = decode_all(state, &[&b]);
        assert!(!err, "a frame the codec wrote does not decode: {f:?}");
        assert_eq!(again, vec![f]);
    }
}
