//! Connections to a cluster, as the proxy holds them.
//!
//! `UpstreamConn` owns one connection to one node (TCP, or any `Stream`):
//! the handshake (the client's STARTUP options the proxy understands, SASL
//! PLAIN, the session's keyspace replayed), and then many requests at once
//! over a pool of stream ids. A writer task coalesces queued frames into one
//! socket write; a reader task hands each answer to the request waiting on
//! its stream. `Cluster` is one cluster: node choice, backoff, discovered
//! nodes, protocol versions, health; `control` keeps its node list and
//! health current. What this module must not do: decide routing, rewrite
//! bodies, retry — callers do.

mod cluster;
mod conn;
pub mod control;
mod health;
mod stream;

pub use cluster::{resolve, Cluster, ResolveError};
pub use conn::{ConnectOptions, UpstreamConn, UpstreamError, RESERVED_STREAMS};
pub use control::SchemaWatch;
pub use health::{rfc3339, ClusterHealth, ClusterReport, ConnectionList};
pub use stream::Stream;
