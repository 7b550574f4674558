//! `FrameCodec`: the `tokio_util` Decoder/Encoder for one connection.
//!
//! The codec holds the per-connection framing state that the handshake
//! changes: negotiated compression, whether v5 segments are in use, and which
//! size limit applies (a small one until the peer has authenticated).

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::segment::{SegmentDecoder, SegmentEncoder};
use super::{
    flags, Compression, Frame, FrameError, Header, DEFAULT_MAX_FRAME, DEFAULT_MAX_FRAME_PRE_AUTH,
    HEADER_LEN, SUPPORTED_VERSIONS,
};

#[derive(Debug, Clone, Copy)]
pub struct CodecConfig {
    /// Largest body accepted once authenticated.
    pub max_frame: usize,
    /// Largest body accepted before authentication completes.
    pub max_frame_pre_auth: usize,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            max_frame: DEFAULT_MAX_FRAME,
            max_frame_pre_auth: DEFAULT_MAX_FRAME_PRE_AUTH,
        }
    }
}

#[derive(Debug)]
pub struct FrameCodec {
    config: CodecConfig,
    authenticated: bool,
    compression: Option<Compression>,
    /// `Some` once v5 segment framing is in force.
    segments: Option<(SegmentDecoder, SegmentEncoder)>,
    /// v5: payload bytes taken out of segments, not yet cut into envelopes.
    envelopes: BytesMut,
}

impl FrameCodec {
    pub fn new(config: CodecConfig) -> FrameCodec {
        FrameCodec {
            config,
            authenticated: false,
            compression: None,
            segments: None,
            envelopes: BytesMut::new(),
        }
    }

    /// A codec for the client side of a connection (tests, benchmarks, the
    /// proxy's upstream legs): the server is trusted to send large results.
    pub fn client() -> FrameCodec {
        let mut c = FrameCodec::new(CodecConfig {
            max_frame: 256 * 1024 * 1024,
            max_frame_pre_auth: 256 * 1024 * 1024,
        });
        c.authenticated = true;
        c
    }

    /// Body compression for v3/v4 (set when STARTUP is accepted).
    pub fn set_compression(&mut self, c: Option<Compression>) {
        self.compression = c;
    }

    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// Switch to v5 segment framing (after READY or AUTHENTICATE).
    pub fn enable_segments(&mut self) {
        let lz4 = self.compression == Some(Compression::Lz4);
        self.segments = Some((SegmentDecoder { lz4 }, SegmentEncoder { lz4 }));
    }

    /// Lift the pre-authentication size limit.
    pub fn set_authenticated(&mut self) {
        self.authenticated = true;
    }

    fn limit(&self) -> usize {
        if self.authenticated {
            self.config.max_frame
        } else {
            self.config.max_frame_pre_auth
        }
    }

    /// Cuts one frame (envelope) out of `buf`, checking version and size first.
    fn cut_frame(
        &self,
        buf: &mut BytesMut,
        in_segments: bool,
    ) -> Result<Option<Frame>, FrameError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let version = buf[0] & 0x7f;
        if !SUPPORTED_VERSIONS.contains(&version) {
            // Cassandra answers a bad version as soon as it has the first
            // bytes of a header; v1/v2 headers carry a one-byte stream id.
            if buf.len() < 4 {
                return Ok(None);
            }
            let stream = if version < 3 {
                buf[2] as i8 as i16
            } else {
                i16::from_be_bytes([buf[2], buf[3]])
            };
            return Err(FrameError::UnsupportedVersion { version, stream });
        }
        let Some(h) = Header::parse(buf) else {
            return Ok(None);
        };
        let limit = self.limit();
        if h.length as usize > limit {
            return Err(FrameError::TooLarge {
                length: h.length as u64,
                limit,
                stream: h.stream,
                version,
            });
        }
        let total = HEADER_LEN + h.length as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let raw = buf.split_to(h.length as usize).freeze();
        let mut flags_out = h.flags;
        let body = if !in_segments && h.flags & flags::COMPRESSION != 0 {
            let Some(c) = self.compression else {
                return Err(FrameError::UnexpectedCompression {
                    stream: h.stream,
                    version,
                });
            };
            flags_out &= !flags::COMPRESSION;
            c.decompress_body(&raw, limit)?.into()
        } else {
            // In v5 the envelope's compression flag is not used.
            if in_segments {
                flags_out &= !flags::COMPRESSION;
            }
            raw
        };
        Ok(Some(Frame {
            version: h.version,
            flags: flags_out,
            stream: h.stream,
            opcode: h.opcode,
            body,
        }))
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some((seg, _)) = self.segments else {
            return self.cut_frame(src, false);
        };
        loop {
            // Whole envelopes already buffered come first.
            let mut env = std::mem::take(&mut self.envelopes);
            let r = self.cut_frame(&mut env, true);
            self.envelopes = env;
            if let Some(f) = r? {
                return Ok(Some(f));
            }
            match seg.decode(src)? {
                Some(s) => {
                    if self.envelopes.len() + s.payload.len()
                        > self.limit() + HEADER_LEN + super::MAX_SEGMENT_PAYLOAD
                    {
                        return Err(FrameError::TooLarge {
                            length: (self.envelopes.len() + s.payload.len()) as u64,
                            limit: self.limit(),
                            stream: 0,
                            version: 5,
                        });
                    }
                    if self.envelopes.is_empty() {
                        self.envelopes = s.payload;
                    } else {
                        self.envelopes.extend_from_slice(&s.payload);
                    }
                }
                None => return Ok(None),
            }
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        if let Some((_, enc)) = self.segments {
            enc.encode_envelope(&frame, dst);
            return Ok(());
        }
        match self.compression {
            Some(c) => {
                let z = c.compress_body(&frame.body);
                dst.reserve(HEADER_LEN + z.len());
                frame.write_header(dst, frame.flags | flags::COMPRESSION, z.len());
                dst.extend_from_slice(&z);
            }
            None => frame.write_plain(dst),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Opcode;
    use bytes::Bytes;

    fn query_frame(stream: i16, len: usize) -> Frame {
        Frame::request(4, stream, Opcode::Query, Bytes::from(vec![b'x'; len]))
    }

    fn round_trip(setup: impl Fn(&mut FrameCodec), frames: &[Frame]) {
        let mut enc = FrameCodec::client();
        let mut dec = FrameCodec::client();
        setup(&mut enc);
        setup(&mut dec);
        let mut buf = BytesMut::new();
        for f in frames {
            enc.encode(f.clone(), &mut buf).unwrap();
        }
        // Feed the bytes one small chunk at a time, as a socket might.
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        for chunk in buf.chunks(7) {
            input.extend_from_slice(chunk);
            while let Some(f) = dec.decode(&mut input).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn plain_lz4_snappy_and_v5_round_trip() {
        let frames: Vec<Frame> = (0..5).map(|i| query_frame(i, i as usize * 300)).collect();
        round_trip(|_| {}, &frames);
        round_trip(|c| c.set_compression(Some(Compression::Lz4)), &frames);
        round_trip(|c| c.set_compression(Some(Compression::Snappy)), &frames);
        let v5: Vec<Frame> = frames
            .iter()
            .map(|f| Frame {
                version: 5,
                ..f.clone()
            })
            .collect();
        round_trip(|c| c.enable_segments(), &v5);
        round_trip(
            |c| {
                c.set_compression(Some(Compression::Lz4));
                c.enable_segments()
            },
            &v5,
        );
        // An envelope larger than one segment payload is split and rejoined.
        let big = vec![Frame {
            version: 5,
            ..query_frame(9, 400_000)
        }];
        round_trip(|c| c.enable_segments(), &big);
    }

    #[test]
    fn bad_version_is_reported_with_its_stream() {
        let mut c = FrameCodec::new(CodecConfig::default());
        let mut b = BytesMut::from(&[0x42u8, 0, 0, 7, 5, 0, 0, 0, 0][..]);
        match c.decode(&mut b) {
            Err(FrameError::UnsupportedVersion {
                version: 0x42,
                stream: 7,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pre_auth_limit_then_full_limit() {
        let mut c = FrameCodec::new(CodecConfig {
            max_frame: 100_000,
            max_frame_pre_auth: 1000,
        });
        let mut b = BytesMut::new();
        query_frame(3, 2000).write_plain(&mut b);
        assert!(matches!(
            c.decode(&mut b.clone()),
            Err(FrameError::TooLarge {
                limit: 1000,
                stream: 3,
                ..
            })
        ));
        c.set_authenticated();
        assert_eq!(c.decode(&mut b).unwrap().unwrap().body.len(), 2000);
    }

    #[test]
    fn compressed_flag_without_negotiation_is_an_error() {
        let mut c = FrameCodec::new(CodecConfig::default());
        let mut b = BytesMut::new();
        let f = Frame {
            flags: flags::COMPRESSION,
            ..query_frame(1, 10)
        };
        f.write_header(&mut b, flags::COMPRESSION, 10);
        b.extend_from_slice(&f.body);
        assert!(matches!(
            c.decode(&mut b),
            Err(FrameError::UnexpectedCompression { .. })
        ));
    }
}
