//! Body compression negotiated in STARTUP.
//!
//! v3/v4 compress each frame body (flag 0x01): LZ4 bodies carry a 4-byte
//! big-endian uncompressed length before the raw LZ4 block (as Cassandra and
//! every driver do), Snappy bodies are raw Snappy. v5 compresses segments
//! instead; see `segment`.

use super::FrameError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Lz4,
    Snappy,
}

impl Compression {
    /// The STARTUP option value (`COMPRESSION`), case-insensitive.
    pub fn from_option(name: &str) -> Option<Compression> {
        match name.to_ascii_lowercase().as_str() {
            "lz4" => Some(Compression::Lz4),
            "snappy" => Some(Compression::Snappy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Snappy => "snappy",
        }
    }

    pub fn compress_body(self, body: &[u8]) -> Vec<u8> {
        match self {
            Compression::Lz4 => {
                let mut out =
                    Vec::with_capacity(4 + lz4_flex::block::get_maximum_output_size(body.len()));
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&lz4_flex::block::compress(body));
                out
            }
            Compression::Snappy => snap::raw::Encoder::new()
                .compress_vec(body)
                .expect("snappy compression of an in-memory buffer cannot fail"),
        }
    }

    /// Decompresses a body, refusing to allocate more than `limit` bytes.
    pub fn decompress_body(self, body: &[u8], limit: usize) -> Result<Vec<u8>, FrameError> {
        match self {
            Compression::Lz4 => {
                if body.len() < 4 {
                    return Err(FrameError::Decompress(
                        "LZ4 body shorter than its 4-byte length".into(),
                    ));
                }
                let n = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
                if n > limit {
                    return Err(FrameError::Decompress(format!(
                        "uncompressed length {n} exceeds the frame limit {limit}"
                    )));
                }
                if n == 0 {
                    return Ok(Vec::new());
                }
                lz4_flex::block::decompress(&body[4..], n)
                    .map_err(|e| FrameError::Decompress(e.to_string()))
            }
            Compression::Snappy => {
                let n = snap::raw::decompress_len(body)
                    .map_err(|e| FrameError::Decompress(e.to_string()))?;
                if n > limit {
                    return Err(FrameError::Decompress(format!(
                        "uncompressed length {n} exceeds the frame limit {limit}"
                    )));
                }
                snap::raw::Decoder::new()
                    .decompress_vec(body)
                    .map_err(|e| FrameError::Decompress(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_algorithms() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
        for c in [Compression::Lz4, Compression::Snappy] {
            let z = c.compress_body(&body);
            assert!(
                z.len() < body.len(),
                "{c:?} should shrink a repetitive body"
            );
            assert_eq!(c.decompress_body(&z, 1 << 20).unwrap(), body);
        }
    }

    #[test]
    fn refuses_a_claimed_length_over_the_limit() {
        let z = Compression::Lz4.compress_body(&[7u8; 100]);
        assert!(matches!(
            Compression::Lz4.decompress_body(&z, 50),
            Err(FrameError::Decompress(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for c in [Compression::Lz4, Compression::Snappy] {
            assert!(c
                .decompress_body(&[0, 0, 0, 9, 0xff, 0xfe, 1], 1 << 20)
                .is_err());
        }
    }
}
