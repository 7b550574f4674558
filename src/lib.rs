//! cutover: a CQL migration proxy.
//!
//! Module map (see DESIGN.md in the README's design section):
//!
//! - [`admin`]: the admin HTTP API: metrics, health, histograms, log level.
//! - [`config`]: the proxy's typed configuration, environment overrides and
//!   validation.
//! - [`frame`]: the frame codec (v3–v5 headers, v5 segments, LZ4/Snappy);
//!   bodies stay `Bytes`.
//! - [`protocol`]: lazy readers of the request and response bodies the proxy
//!   looks into, and builders for the frames it answers itself.
//! - [`cql`]: the CQL lexer shared by the classifier and the embedded node.
//! - [`journal`]: the write-ahead journal of async-secondary writes: one
//!   writer thread appending to checksummed segments, recovery that cuts a
//!   torn tail, done marks, dead letters, the records replay claims.
//! - [`metrics`]: latency series (HDR histograms, recorded wait-free),
//!   counters, gauges and their Prometheus text.
//! - [`client`]: a minimal client on the same codec (tests, benchmarks).
//! - [`routing`]: the routing policy, a versioned snapshot behind `ArcSwap`,
//!   and its validated changes (admin API, route file, reloads and the
//!   file watcher in `live.rs`, the directory table's poller); tenant
//!   resolution (`tenant`, `keyed`); admission and the read-only fence;
//!   `decide`, the plan of a request as a pure function of statement,
//!   snapshot and shard map. `Routing` is the handle sessions share.
//! - [`proxy`]: one proxy instance: start, accept and drain (`mod.rs`),
//!   the state sessions share as a few handles (`shared.rs`: clusters,
//!   routing, statements, topology, metrics), the front door (connection
//!   budget, refusals) and readiness.
//! - [`session`]: one client connection: handshake and login, frames in
//!   and out, in-flight accounting, shutdown; a session's own state
//!   (keyspace, its upstream connections) in `session/state.rs`.
//! - [`pipeline`]: one request from classification to answer: QUERY and
//!   EXECUTE in `route.rs`, one file per stage (`context`, `decide`,
//!   `rewrite`, `leg`, `join`, `after`, `errors`), BATCH and PREPARE; and
//!   what it keeps across requests (`Statements`): the prepared-id map
//!   (`prepared.rs`), page pins (`paging.rs`), shadow reads (`shadow.rs`).
//! - [`topology`]: the proxy's own `system.local` / `system.peers(_v2)`
//!   answers: the proxy instances as drivers must see them.
//! - [`upstream`]: a cluster as the proxy reaches it: one connection to one
//!   node (handshake, stream-id pool, coalesced writes, timeouts,
//!   heartbeats, over any `Stream`), the cluster (node choice, backoff,
//!   discovered nodes, protocol versions, health) and its control
//!   connection.
//! - [`node`]: the embedded in-memory CQL node used by `demo`, the tests and
//!   the benchmarks, with fault injection on a control port.
#![forbid(unsafe_code)]

pub mod admin;
pub mod client;
pub mod config;
pub mod copy;
pub mod cql;
pub mod frame;
pub mod journal;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod protocol;
pub mod proxy;
pub mod ranges;
pub mod routing;
pub mod scan;
pub mod session;
pub mod tls;
pub mod token;
pub mod topology;
pub mod upstream;
pub mod validate;
