//! What the requests of one client connection share: its protocol
//! version, keyspace, login and its connections to the clusters (opened on
//! demand, the keyspace replayed). The pipeline reads and changes a session
//! through this state alone; the connection's loop is in `mod.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::frame::Frame;
use crate::metrics::OpClass;
use crate::proxy::Proxy;
use crate::routing::ClusterId;
use crate::upstream::{ConnectOptions, UpstreamConn, UpstreamError};

/// When a request was read and what it was, so that its latency can be
/// recorded once its answer is written to the socket.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub read_at: std::time::Instant,
    pub op: OpClass,
    /// The tenant's latency series, when it has one.
    pub tenant: Option<u16>,
}

/// What the requests of one client connection share.
pub struct SessionState {
    pub proxy: Arc<Proxy>,
    pub version: u8,
    /// The listener the client came through.
    pub face: crate::topology::Face,
    pub(super) keyspace: Mutex<Option<String>>,
    pub(super) startup: Vec<(String, String)>,
    pub(super) upstreams: Mutex<HashMap<ClusterId, Arc<UpstreamConn>>>,
    pub(super) connecting: tokio::sync::Mutex<()>,
    /// The client's own login, used towards the `[auth]` cluster.
    pub(super) client_credentials: Mutex<Option<(String, String)>>,
    /// Server events (SCHEMA_CHANGE) for the client.
    pub out: mpsc::UnboundedSender<Frame>,
    pub tasks: TaskTracker,
    pub close: CancellationToken,
}

impl SessionState {
    /// The proxy instances as this client sees them (its listener's ports).
    pub fn topology(&self) -> &crate::topology::TopologyView {
        self.proxy.topology_for(self.face)
    }

    pub fn keyspace(&self) -> Option<String> {
        self.keyspace.lock().clone()
    }

    pub fn set_keyspace(&self, ks: String) {
        *self.keyspace.lock() = Some(ks);
    }

    /// The clusters this session has open connections to.
    pub fn connected(&self) -> Vec<ClusterId> {
        self.upstreams
            .lock()
            .iter()
            .filter(|(_, c)| !c.is_closed())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Closes the session's connection to cluster `id`; the next request
    /// opens another.
    pub fn close_upstream(&self, id: ClusterId) {
        if let Some(c) = self.upstreams.lock().remove(&id) {
            c.close();
        }
    }

    /// The connection to cluster `id`, opened (again) when missing or closed, with
    /// the session's keyspace replayed.
    pub async fn upstream(&self, id: ClusterId) -> Result<Arc<UpstreamConn>, UpstreamError> {
        let open = || {
            self.upstreams
                .lock()
                .get(&id)
                .filter(|c| !c.is_closed())
                .cloned()
        };
        if let Some(c) = open() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        // Another request may have connected while this one waited.
        if let Some(c) = open() {
            return Ok(c);
        }
        let cluster = self.proxy.cluster(id);
        let cfg = &cluster.config;
        let opts = ConnectOptions {
            version: self.version,
            compression: None,
            startup: self.startup.clone(),
            // Towards the [auth] cluster a session logs in as its client,
            // never with the proxy's own credentials, so that cluster checks
            // every client; the others get their configured login.
            credentials: if id == self.proxy.auth_cluster() {
                self.client_credentials.lock().clone()
            } else {
                cfg.username.clone().map(|u| {
                    (
                        u,
                        cfg.password
                            .as_ref()
                            .map(|p| p.expose().to_string())
                            .unwrap_or_default(),
                    )
                })
            },
            keyspace: self.keyspace(),
            connect_timeout: cfg.connect_timeout.0,
            max_in_flight: self.proxy.config().limits.max_in_flight_per_connection as usize,
            heartbeat_interval: Some(cfg.heartbeat_interval.0),
            frame_timeout: cfg.request_timeout.0,
            tls: cluster.tls.clone(),
        };
        let mut last = None;
        for node in cluster.candidates() {
            match UpstreamConn::connect(node, &opts).await {
                Ok(c) => {
                    cluster.mark_ok(node);
                    let c = Arc::new(c);
                    cluster.connections.add(&c);
                    self.upstreams.lock().insert(id, c.clone());
                    return Ok(c);
                }
                // A refused login is the client's answer, not a sick node.
                Err(
                    e @ (UpstreamError::Handshake { .. } | UpstreamError::NoCredentials { .. }),
                ) => return Err(e),
                Err(e) => {
                    cluster.mark_failed(node);
                    tracing::warn!(cluster = %cluster.name, %node, error = %e, "cannot open an upstream connection");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("a cluster has at least one contact point (validated)"))
    }
}
