//! One cluster as the proxy reaches it: its resolved contact points and
//! the nodes its control connection found, the node a new connection tries
//! first (spread over sessions, nodes that refused one passed over for a
//! while), the protocol versions it speaks, its health and the sessions'
//! connections to it. It does not route: which cluster a request goes to is
//! `routing`'s decision.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::health::{ClusterHealth, ConnectionList};
use crate::config::ClusterConfig;
use crate::metrics::{ClusterMetrics, Metrics};

/// A contact point that does not resolve, or TLS towards the cluster that
/// cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cluster {cluster}: cannot resolve contact point {contact_point}: {reason}")]
    ContactPoint {
        cluster: String,
        contact_point: String,
        reason: String,
    },
    #[error("cluster {cluster}: clusters.{cluster}.tls: {reason}")]
    Tls { cluster: String, reason: String },
}

/// One cluster as the proxy reaches it.
pub struct Cluster {
    pub name: String,
    /// Resolved contact points.
    pub nodes: Vec<SocketAddr>,
    pub config: ClusterConfig,
    /// TLS towards the cluster (`clusters.NAME.tls`).
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
    /// Nodes that recently refused a connection, avoided until the time set.
    avoid_until: parking_lot::Mutex<std::collections::HashMap<SocketAddr, tokio::time::Instant>>,
    /// Spreads sessions over the nodes.
    next: std::sync::atomic::AtomicUsize,
    /// The nodes the control connection found (empty: use `nodes`).
    discovered: parking_lot::RwLock<Vec<SocketAddr>>,
    /// Protocol versions the cluster speaks, from its SUPPORTED (unknown
    /// until the control connection has asked).
    versions: parking_lot::RwLock<Option<Vec<u8>>>,
    /// Notified when the control connection's first round is over (done or
    /// failed), so that `start` can wait for it.
    first_round: tokio::sync::Notify,
    first_round_done: std::sync::atomic::AtomicBool,
    pub metrics: Arc<ClusterMetrics>,
    pub health: ClusterHealth,
    /// The sessions' connections to this cluster (for the gauges).
    pub connections: ConnectionList,
}

/// How long a node that refused a connection is passed over.
const NODE_BACKOFF: Duration = Duration::from_secs(2);

impl Cluster {
    /// The nodes to try for a new connection, in order: starting at a
    /// different node for each session, nodes in backoff last.
    pub fn candidates(&self) -> Vec<SocketAddr> {
        let discovered = self.discovered.read().clone();
        let nodes = if discovered.is_empty() {
            &self.nodes
        } else {
            &discovered
        };
        let n = nodes.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n.max(1);
        let now = tokio::time::Instant::now();
        let avoid = self.avoid_until.lock();
        let (mut healthy, mut resting): (Vec<SocketAddr>, Vec<SocketAddr>) = (0..n)
            .map(|i| nodes[(start + i) % n])
            .partition(|a| avoid.get(a).is_none_or(|until| *until <= now));
        healthy.append(&mut resting);
        healthy
    }

    /// The nodes the control connection found; sessions use them from now on.
    pub fn set_discovered(&self, nodes: Vec<SocketAddr>) {
        let mut d = self.discovered.write();
        if *d != nodes {
            tracing::info!(cluster = %self.name, ?nodes, "cluster nodes");
            *d = nodes;
        }
    }

    pub fn first_round_over(&self) {
        self.first_round_done
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.first_round.notify_waiters();
    }

    pub async fn wait_first_round(&self, limit: Duration) {
        let notified = self.first_round.notified();
        if !self
            .first_round_done
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            let _ = tokio::time::timeout(limit, notified).await;
        }
    }

    pub fn set_versions(&self, versions: Vec<u8>) {
        *self.versions.write() = Some(versions);
    }

    /// Does the cluster speak `version`? (Yes while unknown.)
    pub fn speaks(&self, version: u8) -> bool {
        self.versions
            .read()
            .as_ref()
            .is_none_or(|v| v.contains(&version))
    }

    pub fn discovered(&self) -> Vec<SocketAddr> {
        self.discovered.read().clone()
    }

    pub fn mark_failed(&self, node: SocketAddr) {
        self.avoid_until
            .lock()
            .insert(node, tokio::time::Instant::now() + NODE_BACKOFF);
    }

    pub fn mark_ok(&self, node: SocketAddr) {
        self.avoid_until.lock().remove(&node);
    }
}

/// Resolves the contact points of cluster `name`.
pub async fn resolve(
    name: &str,
    c: &ClusterConfig,
    metrics: &Metrics,
) -> Result<Cluster, ResolveError> {
    let mut nodes = Vec::new();
    let mut named = Vec::new();
    for cp in &c.contact_points {
        let mut addrs =
            tokio::net::lookup_host(cp.as_str())
                .await
                .map_err(|e| ResolveError::ContactPoint {
                    cluster: name.into(),
                    contact_point: cp.clone(),
                    reason: e.to_string(),
                })?;
        if let Some(a) = addrs.next() {
            nodes.push(a);
            named.push((cp.clone(), a));
        }
    }
    let tls = match &c.tls {
        Some(t) => Some(Arc::new(
            crate::tls::UpstreamTls::new(name, t, &named).map_err(|reason| ResolveError::Tls {
                cluster: name.into(),
                reason,
            })?,
        )),
        None => None,
    };
    Ok(Cluster {
        name: name.into(),
        nodes,
        config: c.clone(),
        tls,
        avoid_until: Default::default(),
        next: Default::default(),
        discovered: Default::default(),
        versions: Default::default(),
        first_round: Default::default(),
        first_round_done: Default::default(),
        metrics: metrics
            .cluster(name)
            .expect("every configured cluster has its metrics"),
        health: Default::default(),
        connections: Default::default(),
    })
}
