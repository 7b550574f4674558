//! What is inside a frame body, read lazily and built when the proxy or the
//! node answers by itself.
//!
//! Readers borrow the body and decode only the fields asked for (a QUERY's
//! text, an EXECUTE's id, a RESULT's kind...); builders write complete bodies
//! for ERROR, READY, SUPPORTED, AUTHENTICATE and RESULT frames. Nothing here
//! knows about sockets or about CQL semantics.

pub mod bound;
pub mod error;
pub mod reader;
pub mod request;
pub mod response;
pub mod types;
pub mod writer;

mod ids;
pub use ids::prepared_id;

pub use error::{ErrorCode, ErrorFrame};
pub use reader::{BodyError, BodyReader};
pub use types::ColumnType;

/// Consistency levels, as sent on the wire.
pub mod consistency {
    pub const ANY: u16 = 0x0000;
    pub const ONE: u16 = 0x0001;
    pub const QUORUM: u16 = 0x0004;
    pub const LOCAL_QUORUM: u16 = 0x0006;
    pub const SERIAL: u16 = 0x0008;
    pub const LOCAL_SERIAL: u16 = 0x0009;
    pub const LOCAL_ONE: u16 = 0x000A;
}
