//! The state every session shares: the proxy's clusters (node choice,
//! backoff, discovery, health), its shard map and routing policy, its
//! prepared map and classifier, topology and metrics. Sessions and the
//! pipeline read it; the lifecycle (start, accept, drain) is in `mod.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::front_door;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Statements;
use crate::routing::{ClusterId, RoutePolicy, Routing, ShardId, Side};
use crate::topology::TopologyView;
use crate::upstream::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] crate::upstream::ResolveError),
    #[error("cannot start the worker threads (worker_threads): {0}")]
    Workers(std::io::Error),
    #[error("cannot open the journal (journal.dir): {0}")]
    Journal(String),
    #[error("{section}: {reason}")]
    Tls { section: String, reason: String },
}

/// State shared by every session of one proxy instance, as a few handles:
/// the clusters (`upstream`), what routes requests (`routing`), what the
/// pipeline keeps across requests (`statements`), and the proxy's own face
/// (config, topology, front door, metrics).
pub struct Proxy {
    pub(super) config: Config,
    /// Every cluster some shard names, in name order (`ClusterId` order).
    pub(super) clusters: Vec<Arc<Cluster>>,
    /// The cluster that checks the client's credentials (`[auth]`, on the
    /// default route's shard at start).
    pub(super) auth_cluster: ClusterId,
    pub(super) routing: Arc<Routing>,
    pub(super) statements: Statements,
    pub(super) topology: TopologyView,
    /// The instances as plaintext clients see them, beside a TLS `listen`.
    pub(super) plaintext_topology: Option<TopologyView>,
    pub(super) metrics: Arc<Metrics>,
    /// False once a drain has begun (readiness turns 503).
    pub(super) accepting: std::sync::atomic::AtomicBool,
    /// Timeouts and the budget that keep unfinished connections from
    /// holding the proxy's memory.
    pub(super) front_door: Arc<front_door::FrontDoor>,
    /// The journal of async-secondary writes (opened when first needed).
    pub(super) journal: Arc<super::journal::JournalSlot>,
    /// Every TLS configuration read from files, for reloads.
    pub(super) tls: Arc<crate::tls::TlsSet>,
    /// The admin API's TLS (`admin_tls`).
    pub(super) admin_tls: Option<Arc<crate::tls::Reloading<rustls::ServerConfig>>>,
    pub(super) tls_counts: super::front_door::TlsCounts,
}

impl Proxy {
    /// The config the proxy started with (a reload changes the policy, not
    /// this).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id.0]
    }

    /// Every cluster with its id.
    pub fn clusters(&self) -> impl ExactSizeIterator<Item = (ClusterId, &Cluster)> {
        self.clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (ClusterId(i), &**c))
    }

    pub fn cluster_named(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name).map(|c| &**c)
    }

    /// The cluster that checks the client's credentials.
    pub fn auth_cluster(&self) -> ClusterId {
        self.auth_cluster
    }

    /// The policy, tenants, fence and shard map.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    /// The routing policy in force: take it once per request.
    pub fn policy(&self) -> Arc<RoutePolicy> {
        self.routing.policy()
    }

    /// `side` of `shard`.
    pub fn on(&self, shard: ShardId, side: Side) -> ClusterId {
        self.routing.on(shard, side)
    }

    /// The prepared map, classifier, page pins and shadow reads.
    pub fn statements(&self) -> &Statements {
        &self.statements
    }

    /// The proxy instances as drivers see them.
    pub fn topology(&self) -> &TopologyView {
        &self.topology
    }

    /// The proxy instances as clients of listener `face` see them.
    pub fn topology_for(&self, face: crate::topology::Face) -> &TopologyView {
        match (face, &self.plaintext_topology) {
            (crate::topology::Face::Plaintext, Some(t)) => t,
            _ => &self.topology,
        }
    }

    /// Reads every TLS certificate and key file again (SIGHUP,
    /// `POST /v1/reload`); the problems, the configurations in force kept
    /// for those.
    pub fn reload_tls(&self, by: &str) -> Vec<String> {
        self.tls.reload(by)
    }

    /// The TLS sections read from files (`tls`, `clusters.origin.tls` ...).
    pub fn tls_sections(&self) -> Vec<String> {
        self.tls
            .sections
            .iter()
            .map(|s| s.what().to_string())
            .collect()
    }

    /// The admin API's TLS configuration, when `admin_tls` is set.
    pub fn admin_tls(&self) -> Option<&Arc<crate::tls::Reloading<rustls::ServerConfig>>> {
        self.admin_tls.as_ref()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn journal(&self) -> &super::journal::JournalSlot {
        &self.journal
    }

    pub fn front_door(&self) -> &Arc<front_door::FrontDoor> {
        &self.front_door
    }

    /// Still taking clients (false once a drain has begun).
    pub fn accepting(&self) -> bool {
        self.accepting.load(std::sync::atomic::Ordering::Relaxed)
    }
}
