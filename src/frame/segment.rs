//! The v5 wrapper around envelopes (the spec's "frames"): a little-endian
//! header with its CRC24, a payload of at most 131,071 bytes, and the
//! payload's CRC32. Constants are those of PROTOCOL-NOTES.md, checked against
//! Cassandra 4 and the Python driver.

use bytes::{Buf, BufMut, BytesMut};

use super::FrameError;

pub const MAX_SEGMENT_PAYLOAD: usize = 131_071;
const CRC24_INIT: u32 = 0x875060;
const CRC24_POLY: u32 = 0x1974F0B;
const CRC32_SEED: [u8; 4] = [0xFA, 0x2D, 0x55, 0xCA];

/// CRC24 over the first `len` little-endian bytes of `value`.
pub fn crc24(value: u64, len: usize) -> u32 {
    let mut crc = CRC24_INIT;
    for i in 0..len {
        crc ^= (((value >> (8 * i)) & 0xff) as u32) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x1000000 != 0 {
                crc ^= CRC24_POLY;
            }
        }
    }
    crc & 0xFF_FFFF
}

/// The zlib CRC32 seeded with FA 2D 55 CA, as v5 uses for payloads.
pub fn crc32_cql(payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&CRC32_SEED);
    h.update(payload);
    h.finalize()
}

fn read_le(b: &[u8], n: usize) -> u64 {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(n).enumerate() {
        v |= (*byte as u64) << (8 * i);
    }
    v
}

fn put_le(dst: &mut BytesMut, v: u64, n: usize) {
    for i in 0..n {
        dst.put_u8(((v >> (8 * i)) & 0xff) as u8);
    }
}

/// Cuts v5 segments out of a byte stream and yields their payloads.
#[derive(Debug, Clone, Copy)]
pub struct SegmentDecoder {
    pub lz4: bool,
}

/// One decoded payload.
#[derive(Debug)]
pub struct Segment {
    /// Split off the input without copying when the payload is uncompressed.
    pub payload: BytesMut,
    pub self_contained: bool,
}

impl SegmentDecoder {
    fn header_len(&self) -> usize {
        if self.lz4 {
            5
        } else {
            3
        }
    }

    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Segment>, FrameError> {
        let hl = self.header_len();
        if src.len() < hl + 3 {
            return Ok(None);
        }
        let header = read_le(&src[..hl], hl);
        let received = read_le(&src[hl..hl + 3], 3) as u32;
        let computed = crc24(header, hl);
        if computed != received {
            return Err(FrameError::HeaderCrc { computed, received });
        }
        let (wire_len, uncompressed_len, self_contained) = if self.lz4 {
            (
                (header & 0x1FFFF) as usize,
                ((header >> 17) & 0x1FFFF) as usize,
                header & (1 << 34) != 0,
            )
        } else {
            ((header & 0x1FFFF) as usize, 0, header & (1 << 17) != 0)
        };
        let total = hl + 3 + wire_len + 4;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(hl + 3);
        let wire = src.split_to(wire_len);
        let received = src.get_u32_le();
        let computed = crc32_cql(&wire);
        if computed != received {
            return Err(FrameError::PayloadCrc { computed, received });
        }
        let payload = if self.lz4 && uncompressed_len != 0 {
            let v = lz4_flex::block::decompress(&wire, uncompressed_len)
                .map_err(|e| FrameError::Decompress(e.to_string()))?;
            BytesMut::from(&v[..])
        } else {
            wire
        };
        Ok(Some(Segment {
            payload,
            self_contained,
        }))
    }
}

/// Wraps envelopes into v5 segments.
#[derive(Debug, Clone, Copy)]
pub struct SegmentEncoder {
    pub lz4: bool,
}

impl SegmentEncoder {
    /// Writes `envelopes` (one or more whole envelopes) as one self-contained
    /// segment when they fit, or as a run of non-self-contained segments.
    pub fn encode(&self, envelopes: &[u8], dst: &mut BytesMut) {
        if envelopes.len() <= MAX_SEGMENT_PAYLOAD {
            self.encode_one(envelopes, true, dst);
        } else {
            for chunk in envelopes.chunks(MAX_SEGMENT_PAYLOAD) {
                self.encode_one(chunk, false, dst);
            }
        }
    }

    /// Writes one envelope as a segment, straight into `dst` when it fits in
    /// one uncompressed segment (no intermediate buffer).
    pub fn encode_envelope(&self, frame: &super::Frame, dst: &mut BytesMut) {
        let len = super::HEADER_LEN + frame.body.len();
        if self.lz4 || len > MAX_SEGMENT_PAYLOAD {
            let mut env = BytesMut::with_capacity(len);
            frame.write_plain(&mut env);
            self.encode(&env, dst);
            return;
        }
        let header = (len as u64) | (1 << 17);
        dst.reserve(6 + len + 4);
        put_le(dst, header, 3);
        put_le(dst, crc24(header, 3) as u64, 3);
        let start = dst.len();
        frame.write_plain(dst);
        let crc = crc32_cql(&dst[start..]);
        dst.put_u32_le(crc);
    }

    fn encode_one(&self, payload: &[u8], self_contained: bool, dst: &mut BytesMut) {
        if self.lz4 {
            let compressed = lz4_flex::block::compress(payload);
            let (wire, uncompressed_len): (&[u8], usize) = if compressed.len() < payload.len() {
                (&compressed, payload.len())
            } else {
                (payload, 0)
            };
            let header = (wire.len() as u64)
                | ((uncompressed_len as u64) << 17)
                | ((self_contained as u64) << 34);
            dst.reserve(5 + 3 + wire.len() + 4);
            put_le(dst, header, 5);
            put_le(dst, crc24(header, 5) as u64, 3);
            dst.put_slice(wire);
            dst.put_u32_le(crc32_cql(wire));
        } else {
            let header = (payload.len() as u64) | ((self_contained as u64) << 17);
            dst.reserve(3 + 3 + payload.len() + 4);
            put_le(dst, header, 3);
            put_le(dst, crc24(header, 3) as u64, 3);
            dst.put_slice(payload);
            dst.put_u32_le(crc32_cql(payload));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed by the Python driver's `cassandra/segment.py`, an
    /// independent implementation of the same framing.
    #[test]
    fn crcs_match_the_python_driver() {
        assert_eq!(crc24(10 | (1 << 17), 3), 0x79688c);
        assert_eq!(crc24(0x1ffff, 3), 0xfe9138);
        assert_eq!(crc24(0, 3), 0x7de777);
        assert_eq!(crc24(100 | (200 << 17) | (1 << 34), 5), 0x629c56);
        assert_eq!(crc32_cql(b""), 0x44777ed3);
        assert_eq!(crc32_cql(b"hello envelope"), 0xe997ad3a);
        assert_eq!(crc32_cql(&(0..=255u8).collect::<Vec<_>>()), 0x214de79b);
    }

    #[test]
    fn round_trip_small_and_split_payloads() {
        for lz4 in [false, true] {
            for size in [
                0usize,
                10,
                MAX_SEGMENT_PAYLOAD,
                MAX_SEGMENT_PAYLOAD + 1,
                300_000,
            ] {
                let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
                let mut buf = BytesMut::new();
                SegmentEncoder { lz4 }.encode(&data, &mut buf);
                let dec = SegmentDecoder { lz4 };
                let mut out = Vec::new();
                let mut count = 0;
                while let Some(seg) = dec.decode(&mut buf).unwrap() {
                    assert_eq!(seg.self_contained, size <= MAX_SEGMENT_PAYLOAD);
                    out.extend_from_slice(&seg.payload[..]);
                    count += 1;
                }
                assert_eq!(out, data, "lz4={lz4} size={size}");
                assert_eq!(count, size.div_ceil(MAX_SEGMENT_PAYLOAD).max(1));
            }
        }
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let mut buf = BytesMut::new();
        SegmentEncoder { lz4: false }.encode(b"hello envelope", &mut buf);
        let mut bad = buf.clone();
        bad[8] ^= 1;
        assert!(matches!(
            SegmentDecoder { lz4: false }.decode(&mut bad),
            Err(FrameError::PayloadCrc { .. })
        ));
        let mut bad = buf.clone();
        bad[0] ^= 1;
        assert!(matches!(
            SegmentDecoder { lz4: false }.decode(&mut bad),
            Err(FrameError::HeaderCrc { .. })
        ));
    }

    #[test]
    fn incompressible_payload_is_stored_with_zero_uncompressed_length() {
        let data: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut buf = BytesMut::new();
        SegmentEncoder { lz4: true }.encode(&data, &mut buf);
        let header = read_le(&buf[..5], 5);
        assert_eq!((header >> 17) & 0x1FFFF, 0, "stored as is");
        let seg = SegmentDecoder { lz4: true }
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(&seg.payload[..], &data[..]);
    }
}
