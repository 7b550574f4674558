//! Connections to one node of a cluster, as the proxy holds them.
//!
//! `UpstreamConn` owns one connection (TCP, or any `Stream`): the handshake (the client's
//! STARTUP options the proxy understands, SASL PLAIN, the session's
//! keyspace replayed), and then many requests at once over a pool of stream
//! ids. A writer task coalesces queued frames into one socket write; a reader
//! task hands each answer to the request waiting on its stream. What this
//! module must not do: decide routing, rewrite bodies, retry — callers do.

mod conn;
mod stream;

pub use conn::{ConnectOptions, UpstreamConn, UpstreamError, RESERVED_STREAMS};
pub use stream::Stream;
