//! The state every session shares: the proxy's clusters (node choice,
//! backoff, discovery, health), its shard map and routing policy, its
//! prepared map and classifier, topology and metrics. Sessions and the
//! pipeline read it; the lifecycle (start, accept, drain) is in `mod.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::prepared::PreparedMap;
use super::shadow::ShadowReads;
use super::{cluster_health as health, front_door, paging};
use crate::config::{ClusterConfig, Config};
use crate::cql::ClassificationCache;
use crate::metrics::{ClusterMetrics, Metrics};
use crate::routing::tenant::TenantResolver;
use crate::routing::{PolicyStore, RoutePolicy, ShardId, Side};
use crate::topology::TopologyView;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster {cluster}: cannot resolve contact point {contact_point}: {reason}")]
    Resolve {
        cluster: String,
        contact_point: String,
        reason: String,
    },
}

pub use crate::routing::decide::{ClusterId, ShardMap};

/// One cluster as the proxy reaches it.
pub struct Cluster {
    pub name: String,
    /// Resolved contact points.
    pub nodes: Vec<SocketAddr>,
    pub config: ClusterConfig,
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
    pub health: health::ClusterHealth,
    /// The sessions' connections to this cluster (for the gauges).
    pub connections: health::ConnectionList,
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

    pub(super) async fn wait_first_round(&self, limit: Duration) {
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

/// State shared by every session of one proxy instance.
pub struct Proxy {
    pub config: Config,
    /// Every cluster of every shard, in name order.
    pub clusters: Vec<Cluster>,
    /// Each shard's origin and target, indexed by `ShardId` (shard names in
    /// order, as the policy numbers them).
    pub shards: ShardMap,
    /// The cluster that checks the client's credentials (`[auth]`, on the
    /// default route's shard at start).
    pub auth_cluster: ClusterId,
    pub prepared: PreparedMap,
    pub classifier: ClassificationCache,
    pub topology: TopologyView,
    pub metrics: Arc<Metrics>,
    pub tenants: TenantResolver,
    pub policy: PolicyStore,
    pub shadow: Arc<ShadowReads>,
    pub pages: paging::PagePins,
    pub fence: crate::routing::fence::WriteFence,
    /// How polling `[tenants.table]` goes.
    pub directory_table: DirectoryTableStatus,
    /// False once a drain has begun (readiness turns 503).
    pub accepting: std::sync::atomic::AtomicBool,
    /// Timeouts and the budget that keep unfinished connections from
    /// holding the proxy's memory.
    pub front_door: Arc<front_door::FrontDoor>,
}

impl Proxy {
    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id.0]
    }

    pub fn cluster_named(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// `side` of `shard`.
    pub fn on(&self, shard: ShardId, side: Side) -> ClusterId {
        self.shards.on(shard, side)
    }

    /// The cluster that answers reads on the default route.
    pub fn default_primary(&self, policy: &RoutePolicy) -> ClusterId {
        self.shards.default_primary(policy)
    }

    /// The routing policy in force: take it once per request.
    pub fn policy(&self) -> Arc<RoutePolicy> {
        self.policy.snapshot()
    }
}

pub(super) async fn resolve(
    name: &str,
    c: &ClusterConfig,
    metrics: &Metrics,
) -> Result<Cluster, ProxyError> {
    let mut nodes = Vec::new();
    for cp in &c.contact_points {
        let mut addrs =
            tokio::net::lookup_host(cp.as_str())
                .await
                .map_err(|e| ProxyError::Resolve {
                    cluster: name.into(),
                    contact_point: cp.clone(),
                    reason: e.to_string(),
                })?;
        if let Some(a) = addrs.next() {
            nodes.push(a);
        }
    }
    Ok(Cluster {
        name: name.into(),
        nodes,
        config: c.clone(),
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

/// The directory table's poller: polls done, and the error of the last
/// one (None when it was applied).
#[derive(Default)]
pub struct DirectoryTableStatus {
    pub polls: std::sync::atomic::AtomicU64,
    pub error: parking_lot::Mutex<Option<String>>,
    /// Rows last refused: the same rows again are not judged (nor counted)
    /// again.
    pub(super) refused: parking_lot::Mutex<Option<Vec<crate::config::TenantEntry>>>,
}
