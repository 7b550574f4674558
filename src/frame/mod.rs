//! Frames of the CQL native protocol, v3 to v5.
//!
//! Owns the 9-byte header, body compression (LZ4 / Snappy for v3–v4), the v5
//! segment wrapper (CRC24 / CRC32, optional LZ4) and the `tokio_util` codec
//! that ties them together. A body is kept as `Bytes` and never interpreted
//! here: reading what is inside a body is `protocol`'s job.

mod budget;
mod codec;
mod compress;
mod segment;

pub use budget::{ByteBudget, Held};
pub use codec::{CodecConfig, FrameCodec, BUDGET_FREE_FRAME};
pub use compress::Compression;
pub use segment::{crc24, crc32_cql, SegmentDecoder, SegmentEncoder, MAX_SEGMENT_PAYLOAD};

use bytes::{BufMut, Bytes, BytesMut};

/// Length of a v3/v4/v5 frame (envelope) header.
pub const HEADER_LEN: usize = 9;
/// Cassandra's default `native_transport_max_frame_size` since 4.0.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// What a connection may send before it has authenticated.
pub const DEFAULT_MAX_FRAME_PRE_AUTH: usize = 8 * 1024;

/// Header flags.
pub mod flags {
    pub const COMPRESSION: u8 = 0x01;
    pub const TRACING: u8 = 0x02;
    pub const CUSTOM_PAYLOAD: u8 = 0x04;
    pub const WARNING: u8 = 0x08;
    pub const USE_BETA: u8 = 0x10;
}

/// Protocol versions this code base speaks.
pub const SUPPORTED_VERSIONS: [u8; 3] = [3, 4, 5];
/// Direction bit in the version byte.
pub const RESPONSE_BIT: u8 = 0x80;

/// The opcodes of v3–v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Error = 0x00,
    Startup = 0x01,
    Ready = 0x02,
    Authenticate = 0x03,
    Options = 0x05,
    Supported = 0x06,
    Query = 0x07,
    Result = 0x08,
    Prepare = 0x09,
    Execute = 0x0A,
    Register = 0x0B,
    Event = 0x0C,
    Batch = 0x0D,
    AuthChallenge = 0x0E,
    AuthResponse = 0x0F,
    AuthSuccess = 0x10,
}

impl Opcode {
    pub fn from_u8(b: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match b {
            0x00 => Error,
            0x01 => Startup,
            0x02 => Ready,
            0x03 => Authenticate,
            0x05 => Options,
            0x06 => Supported,
            0x07 => Query,
            0x08 => Result,
            0x09 => Prepare,
            0x0A => Execute,
            0x0B => Register,
            0x0C => Event,
            0x0D => Batch,
            0x0E => AuthChallenge,
            0x0F => AuthResponse,
            0x10 => AuthSuccess,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use Opcode::*;
        match self {
            Error => "ERROR",
            Startup => "STARTUP",
            Ready => "READY",
            Authenticate => "AUTHENTICATE",
            Options => "OPTIONS",
            Supported => "SUPPORTED",
            Query => "QUERY",
            Result => "RESULT",
            Prepare => "PREPARE",
            Execute => "EXECUTE",
            Register => "REGISTER",
            Event => "EVENT",
            Batch => "BATCH",
            AuthChallenge => "AUTH_CHALLENGE",
            AuthResponse => "AUTH_RESPONSE",
            AuthSuccess => "AUTH_SUCCESS",
        }
    }
}

/// One frame (v5: one envelope), body decompressed, opcode still raw so that
/// an unknown opcode can be answered on its stream instead of failing the
/// whole connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Version byte including the direction bit.
    pub version: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub body: Bytes,
}

impl Frame {
    pub fn request(version: u8, stream: i16, opcode: Opcode, body: Bytes) -> Frame {
        Frame {
            version: version & 0x7f,
            flags: 0,
            stream,
            opcode: opcode as u8,
            body,
        }
    }

    pub fn response(version: u8, stream: i16, opcode: Opcode, body: Bytes) -> Frame {
        Frame {
            version: (version & 0x7f) | RESPONSE_BIT,
            flags: 0,
            stream,
            opcode: opcode as u8,
            body,
        }
    }

    /// The protocol version without the direction bit.
    pub fn protocol_version(&self) -> u8 {
        self.version & 0x7f
    }

    pub fn is_response(&self) -> bool {
        self.version & RESPONSE_BIT != 0
    }

    pub fn op(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode)
    }

    /// Writes header and body uncompressed (flags kept as given, minus compression).
    pub fn write_plain(&self, dst: &mut BytesMut) {
        dst.reserve(HEADER_LEN + self.body.len());
        self.write_header(dst, self.flags & !flags::COMPRESSION, self.body.len());
        dst.put_slice(&self.body);
    }

    pub(crate) fn write_header(&self, dst: &mut BytesMut, flags: u8, len: usize) {
        dst.put_u8(self.version);
        dst.put_u8(flags);
        dst.put_i16(self.stream);
        dst.put_u8(self.opcode);
        dst.put_u32(len as u32);
    }
}

/// A parsed 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub length: u32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(Header {
            version: b[0],
            flags: b[1],
            stream: i16::from_be_bytes([b[2], b[3]]),
            opcode: b[4],
            length: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
        })
    }
}

/// Everything that can go wrong while cutting bytes into frames. Each case
/// says what the peer must be told and whether the connection can go on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("Invalid or unsupported protocol version ({version}); supported versions are (3/v3, 4/v4, 5/v5)")]
    UnsupportedVersion { version: u8, stream: i16 },
    #[error("Request is too big: length {length} exceeds maximum allowed length {limit}")]
    TooLarge {
        length: u64,
        limit: usize,
        stream: i16,
        version: u8,
    },
    #[error("cutover: refusing a frame of {length} bytes: the {budget} bytes that partly received large frames may hold are in use (limits.max_partial_frame_bytes); retry later")]
    OverBudget {
        length: u64,
        budget: usize,
        stream: i16,
        version: u8,
    },
    #[error("Frame header CRC mismatch: computed {computed:#08x}, received {received:#08x}")]
    HeaderCrc { computed: u32, received: u32 },
    #[error("Frame payload CRC mismatch: computed {computed:#010x}, received {received:#010x}")]
    PayloadCrc { computed: u32, received: u32 },
    #[error("Could not decompress frame body: {0}")]
    Decompress(String),
    #[error("Compressed frame received but no compression was negotiated")]
    UnexpectedCompression { stream: i16, version: u8 },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The bytes of the ERROR frame (protocol error, 0x000A; OVERLOADED for a
    /// spent frame budget) to send before
    /// closing, or `None` when nothing can be trusted enough to answer. An
    /// unsupported version is answered in a version the client can read: the
    /// highest spoken here when it asked for more, its own framing when it
    /// asked for less (v1/v2 headers have one-byte stream ids).
    pub fn answer(&self) -> Option<BytesMut> {
        let (version, stream, body) = self.error_body()?;
        let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
        if version < 3 {
            out.put_u8(RESPONSE_BIT | version);
            out.put_u8(0);
            out.put_i8(stream as i8);
            out.put_u8(Opcode::Error as u8);
            out.put_u32(body.len() as u32);
            out.put_slice(&body);
        } else {
            Frame::response(version, stream, Opcode::Error, body).write_plain(&mut out);
        }
        Some(out)
    }

    /// The ERROR answer as a frame, for a connection that speaks v3 or
    /// later (so that its framing, v5 segments included, can wrap it);
    /// `None` where `answer` gives v1/v2 bytes or nothing.
    pub fn answer_frame(&self) -> Option<Frame> {
        let (version, stream, body) = self.error_body()?;
        (version >= 3).then(|| Frame::response(version, stream, Opcode::Error, body))
    }

    /// The version and stream to answer in, and the ERROR body.
    fn error_body(&self) -> Option<(u8, i16, Bytes)> {
        let (stream, version) = self.reply_stream()?;
        let v = match (version, self) {
            (0, FrameError::UnsupportedVersion { version, .. }) if *version > 5 => 5,
            (0, FrameError::UnsupportedVersion { version, .. }) => (*version).max(1),
            (0, _) => 4,
            (v, _) => v,
        };
        let message = self.to_string();
        let code = match self {
            FrameError::OverBudget { .. } => 0x1001, // OVERLOADED: try another node
            _ => 0x000A,                             // protocol error
        };
        let mut body = BytesMut::with_capacity(6 + message.len());
        body.put_i32(code);
        body.put_u16(message.len() as u16);
        body.put_slice(message.as_bytes());
        Some((v, stream, body.freeze()))
    }

    /// The stream id an ERROR answer should carry, when one can be sent at all.
    /// `None` means the connection must be closed without an answer (a
    /// corrupted v5 segment cannot be trusted to say anything).
    pub fn reply_stream(&self) -> Option<(i16, u8)> {
        match self {
            FrameError::UnsupportedVersion { stream, .. } => Some((*stream, 0)),
            FrameError::TooLarge {
                stream, version, ..
            }
            | FrameError::OverBudget {
                stream, version, ..
            }
            | FrameError::UnexpectedCompression { stream, version } => Some((*stream, *version)),
            _ => None,
        }
    }
}
