//! The state every session shares: the proxy's clusters (node choice,
//! backoff, discovery, health), its shard map and routing policy, its
//! prepared map and classifier, topology and metrics. Sessions and the
//! pipeline read it; the lifecycle (start, accept, drain) is in `mod.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::front_door;
use crate::config::Config;
use crate::cql::ClassificationCache;
use crate::metrics::Metrics;
use crate::pipeline::{PagePins, PreparedMap, ShadowReads};
use crate::routing::{RoutePolicy, Routing, ShardId, Side};
use crate::topology::TopologyView;
pub use crate::upstream::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] crate::upstream::ResolveError),
}

pub use crate::routing::decide::{ClusterId, ShardMap};

/// State shared by every session of one proxy instance.
pub struct Proxy {
    pub config: Config,
    /// Every cluster of every shard, in name order.
    pub clusters: Vec<Arc<Cluster>>,
    /// The cluster that checks the client's credentials (`[auth]`, on the
    /// default route's shard at start).
    pub auth_cluster: ClusterId,
    pub prepared: PreparedMap,
    pub classifier: ClassificationCache,
    pub topology: TopologyView,
    pub metrics: Arc<Metrics>,
    /// The policy, tenants, fence and shard map.
    pub routing: Arc<Routing>,
    pub shadow: Arc<ShadowReads>,
    pub pages: PagePins,
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
        self.clusters.iter().find(|c| c.name == name).map(|c| &**c)
    }

    /// `side` of `shard`.
    pub fn on(&self, shard: ShardId, side: Side) -> ClusterId {
        self.routing.on(shard, side)
    }

    /// The routing policy in force: take it once per request.
    pub fn policy(&self) -> Arc<RoutePolicy> {
        self.routing.policy()
    }
}
