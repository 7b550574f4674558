//! v5 segments on their own: headers, CRC24/CRC32, LZ4 payloads.
//!
//! Properties: no panic; a payload decoded re-encodes into a segment that
//! decodes to the same payload.

use super::valid_segment;
use bytes::BytesMut;
use cutover::frame::{SegmentDecoder, SegmentEncoder};

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let lz4 = mode & 1 != 0;
    let mut buf = if mode & 2 != 0 {
        // A segment with valid CRCs around the fuzzer's payload: reaches
        // the LZ4 decompressor with any claimed length.
        let claimed = if mode & 4 != 0 {
            (rest.len() * (mode as usize >> 3)) & 0x1FFFF
        } else {
            0
        };
        let mut b = BytesMut::new();
        valid_segment(rest, lz4, claimed, mode & 128 != 0, &mut b);
        b
    } else {
        BytesMut::from(rest)
    };
    let dec = SegmentDecoder { lz4 };
    while let Ok(Some(s)) = dec.decode(&mut buf) {
        let mut out = BytesMut::new();
        SegmentEncoder { lz4 }.encode(&s.payload, &mut out);
        let mut again = BytesMut::new();
        while let Some(t) = dec
            .decode(&mut out)
            .expect("a segment written here decodes")
        {
            again.extend_from_slice(&t.payload);
        }
        assert_eq!(again, s.payload);
    }
}
