//! `FrameCodec`: the `tokio_util` Decoder/Encoder for one connection.
//!
//! The codec holds the per-connection framing state that the handshake
//! changes: negotiated compression, whether v5 segments are in use, and which
//! size limit applies (a small one until the peer has authenticated).
//! Towards clients it also notes since when a frame has been partly
//! received (the session closes what never finishes) and holds large
//! partial frames against a proxy-wide [`ByteBudget`].

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::budget::ByteBudget;
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

/// Frames up to this size are never refused for the budget: a connection
/// holds at most one such partial frame, which its buffer bounds anyway.
pub const BUDGET_FREE_FRAME: usize = 64 * 1024;

#[derive(Debug)]
pub struct FrameCodec {
    config: CodecConfig,
    authenticated: bool,
    compression: Option<Compression>,
    /// `Some` once v5 segment framing is in force.
    segments: Option<(SegmentDecoder, SegmentEncoder)>,
    /// v5: payload bytes taken out of segments, not yet cut into envelopes.
    envelopes: BytesMut,
    /// What partly received frames larger than [`BUDGET_FREE_FRAME`] are
    /// held against, shared by every client connection of a proxy (client
    /// connections only): a frame whose header announces more than is left
    /// is refused (OVERLOADED) instead of buffered, so that connections
    /// announcing large frames and never finishing them cannot take the
    /// machine's memory.
    budget: Option<Arc<ByteBudget>>,
    /// What the partial frame being received holds of the budget.
    holding: usize,
    /// Since when bytes of a frame not yet whole have been buffered.
    partial_since: Option<Instant>,
}

impl Drop for FrameCodec {
    fn drop(&mut self) {
        self.release();
    }
}

impl FrameCodec {
    pub fn new(config: CodecConfig) -> FrameCodec {
        FrameCodec {
            config,
            authenticated: false,
            compression: None,
            segments: None,
            envelopes: BytesMut::new(),
            budget: None,
            holding: 0,
            partial_since: None,
        }
    }

    /// Holds large partial frames against `budget` (see [`ByteBudget`]).
    pub fn with_budget(mut self, budget: Arc<ByteBudget>) -> FrameCodec {
        self.budget = Some(budget);
        self
    }

    /// Since when part of a frame has been waiting for the rest: `None`
    /// when nothing is buffered but whole frames.
    pub fn partial_since(&self) -> Option<Instant> {
        self.partial_since
    }

    /// The frame being received, if any, is timed from now on: the reader
    /// paused (backpressure), so the time it waited is not the sender's.
    pub fn restart_partial_clock(&mut self) {
        if self.partial_since.is_some() {
            self.partial_since = Some(Instant::now());
        }
    }

    /// Forgets the frame being received (the connection reads no more):
    /// its bytes and its hold on the budget are given back at once.
    pub fn abandon_partial(&mut self) {
        self.envelopes = BytesMut::new();
        self.partial_since = None;
        self.release();
    }

    fn release(&mut self) {
        if self.holding > 0 {
            if let Some(b) = &self.budget {
                b.release(self.holding);
            }
            self.holding = 0;
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

    /// Whether v5 segment framing is in force.
    pub fn in_segments(&self) -> bool {
        self.segments.is_some()
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
        &mut self,
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
            if let Some(b) = &self.budget {
                if h.length as usize > BUDGET_FREE_FRAME && self.holding == 0 {
                    if !b.try_hold(h.length as usize) {
                        return Err(FrameError::OverBudget {
                            length: h.length as u64,
                            budget: b.limit(),
                            stream: h.stream,
                            version,
                        });
                    }
                    self.holding = h.length as usize;
                }
            }
            // Room for the whole frame when the budget (or its small size)
            // covers it; otherwise the buffer grows with what arrives, so a
            // header alone cannot make the proxy allocate what it announces.
            let missing = total - buf.len();
            if self.holding > 0 || h.length as usize <= BUDGET_FREE_FRAME {
                buf.reserve(missing);
            } else {
                buf.reserve(missing.min(BUDGET_FREE_FRAME));
            }
            return Ok(None);
        }
        self.release();
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
        let r = self.decode_frame(src);
        match &r {
            Ok(Some(_)) => self.partial_since = None,
            Ok(None) if src.is_empty() && self.envelopes.is_empty() => self.partial_since = None,
            Ok(None) => {
                self.partial_since.get_or_insert_with(Instant::now);
            }
            Err(_) => {}
        }
        r
    }
}

impl FrameCodec {
    fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
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

    fn encoded(f: &Frame) -> BytesMut {
        let mut b = BytesMut::new();
        FrameCodec::client().encode(f.clone(), &mut b).unwrap();
        b
    }

    #[test]
    fn large_partial_frames_are_held_against_the_budget_and_released() {
        let budget = Arc::new(ByteBudget::new(300_000));
        let codec = || {
            let mut c = FrameCodec::new(CodecConfig::default()).with_budget(budget.clone());
            c.set_authenticated();
            c
        };
        let big = encoded(&query_frame(1, 200_000));
        let (mut a, mut b) = (codec(), codec());
        let mut abuf = BytesMut::from(&big[..1000]);
        assert!(a.decode(&mut abuf).unwrap().is_none());
        assert_eq!(
            budget.held(),
            200_000,
            "a partial large frame holds what it announced"
        );
        assert!(a.partial_since().is_some());
        // A second one does not fit: refused on its stream, as OVERLOADED.
        let mut bbuf = BytesMut::from(&big[..1000]);
        let e = b.decode(&mut bbuf).unwrap_err();
        assert!(matches!(e, FrameError::OverBudget { stream: 1, .. }), "{e}");
        let answer = e.answer().unwrap();
        assert_eq!(&answer[9..13], &0x1001i32.to_be_bytes());
        assert_eq!(budget.refused(), 1);
        // Small frames are never refused for it.
        let mut small = encoded(&query_frame(2, 30_000));
        small.truncate(500);
        assert!(b.decode(&mut small).unwrap().is_none());
        // The first completes: released, nothing partial any more.
        abuf.extend_from_slice(&big[1000..]);
        assert_eq!(a.decode(&mut abuf).unwrap().unwrap().body.len(), 200_000);
        assert_eq!(budget.held(), 0);
        assert!(a.partial_since().is_none());
        // A connection that goes away with a partial frame releases it too.
        let mut c = codec();
        let mut cbuf = BytesMut::from(&big[..20]);
        assert!(c.decode(&mut cbuf).unwrap().is_none());
        assert_eq!(budget.held(), 200_000);
        drop(c);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_header_alone_does_not_buy_the_memory_it_announces() {
        // Towards clusters there is no budget: a 200 MB frame announced by
        // a header is not allocated before its bytes arrive.
        let mut c = FrameCodec::client();
        let mut buf = BytesMut::new();
        query_frame(3, 0).write_header(&mut buf, 0, 200 << 20);
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= 2 * BUDGET_FREE_FRAME,
            "{}",
            buf.capacity()
        );
    }

    #[test]
    fn partial_since_follows_the_frame_being_received() {
        let mut c = FrameCodec::client();
        let two = [encoded(&query_frame(1, 10)), encoded(&query_frame(2, 10))].concat();
        let mut buf = BytesMut::from(&two[..25]);
        assert!(c.decode(&mut buf).unwrap().is_some());
        assert!(c.partial_since().is_none(), "a whole frame was cut");
        assert!(c.decode(&mut buf).unwrap().is_none());
        let since = c
            .partial_since()
            .expect("part of the second frame is buffered");
        buf.extend_from_slice(&two[25..30]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert_eq!(
            c.partial_since(),
            Some(since),
            "more bytes do not restart it"
        );
        buf.extend_from_slice(&two[30..]);
        assert!(c.decode(&mut buf).unwrap().is_some());
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(c.partial_since().is_none());
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
