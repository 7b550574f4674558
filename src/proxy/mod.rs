//! The proxy: a listener, one `session` per client connection, and the
//! state every session shares (config, prepared map, classification cache,
//! topology). Sessions reach the clusters through `upstream` connections
//! opened on demand.
//!
//! This module owns the lifecycle (start, drain on SIGTERM, stop); routing
//! decisions live in `route`, the client side of the wire in `session`.

mod batch;
mod context;
mod control;
mod decide;
mod directory_table;
mod errors;
pub mod front_door;
mod health;
mod join;
mod leg;
mod paging;
mod prepare;
mod prepared;
mod reload;
mod rewrite;
mod route;
mod session;
mod shadow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::routing::tenant::{Bound, Resolved, Tenant, TenantResolver, Values};
pub use crate::routing::{ShardId, Side};
pub use crate::topology::{SystemTable, TopologyView};
pub use health::{ClusterReport, Readiness};
pub use prepared::PreparedMap;
pub use shadow::{MismatchSample, ShadowReads, ShadowReport};

use crate::config::{ClusterConfig, Config};
use crate::cql::ClassificationCache;
use crate::metrics::{ClusterMetrics, Metrics, MetricsOptions};
use crate::routing::{PolicyStore, RoutePolicy};

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

    async fn wait_first_round(&self, limit: Duration) {
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
    pub directory_table: directory_table::Status,
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

async fn resolve(name: &str, c: &ClusterConfig, metrics: &Metrics) -> Result<Cluster, ProxyError> {
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

/// A running proxy instance.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    /// Stops accepting and reading new requests.
    stop_accepting: CancellationToken,
    /// Closes every connection at once.
    close_all: CancellationToken,
    tasks: TaskTracker,
}

impl RunningProxy {
    /// SIGTERM: stop accepting, let requests already received finish (up to
    /// the grace period), then close.
    pub async fn drain(self, grace: Duration) {
        self.proxy
            .accepting
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.stop_accepting.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "grace period over; closing connections with requests still in flight"
            );
        }
        self.close_all.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }

    /// SIGINT: stop at once.
    pub async fn stop(self) {
        self.proxy
            .accepting
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.stop_accepting.cancel();
        self.close_all.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }
}

/// Starts a proxy whose config came from flags (nothing to reload).
pub async fn start(config: Config) -> Result<RunningProxy, ProxyError> {
    start_from(config, None).await
}

/// Starts a proxy. `config_file` is where SIGHUP and `POST /v1/reload`
/// read the policy again.
pub async fn start_from(
    config: Config,
    config_file: Option<std::path::PathBuf>,
) -> Result<RunningProxy, ProxyError> {
    let metrics = Arc::new(Metrics::new(
        MetricsOptions {
            window: config.metrics.window.0,
            tenants: config.metrics.tenants.clone(),
            ..MetricsOptions::default()
        },
        &config.clusters.keys().cloned().collect::<Vec<_>>(),
    ));
    // The clusters some shard names; a cluster of none is not reached.
    let names: std::collections::BTreeSet<&String> = config
        .shards
        .values()
        .flat_map(|s| [&s.origin, &s.target])
        .collect();
    let mut clusters = Vec::with_capacity(names.len());
    for name in &names {
        clusters.push(resolve(name, &config.clusters[*name], &metrics).await?);
    }
    let id_of = |name: &String| {
        ClusterId(
            names
                .iter()
                .position(|n| *n == name)
                .expect("a shard's clusters are resolved"),
        )
    };
    let shards = ShardMap::new(
        config
            .shards
            .values()
            .map(|s| [id_of(&s.origin), id_of(&s.target)])
            .collect(),
        names.len(),
    );
    let default_shard = &config.shards[&config.route.shard];
    let auth_cluster = id_of(match config.auth.check_client_against {
        crate::config::ClusterRole::Origin => &default_shard.origin,
        crate::config::ClusterRole::Target => &default_shard.target,
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ProxyError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ProxyError::Listen {
        addr: config.listen,
        source,
    })?;
    let mut topology = config.topology.clone();
    // No instances listed means this one alone; a listen port of 0 is only
    // known now.
    if topology.instances.is_empty()
        || (config.listen.port() == 0 && topology.instances == vec![config.listen])
    {
        topology.instances = vec![addr];
        topology.index = 0;
    }
    let proxy = Arc::new(Proxy {
        prepared: PreparedMap::new(config.limits.prepared_cache_entries as usize),
        classifier: ClassificationCache::new(
            config.limits.prepared_cache_entries as usize,
            match &config.tenants.key {
                crate::config::TenantKey::Column { column } => Some(column.clone()),
                _ => None,
            },
        ),
        topology: TopologyView::from_config(&topology),
        tenants: TenantResolver::new(&config.tenants.key, metrics.clone()),
        policy: PolicyStore::new(&config, config_file),
        pages: Default::default(),
        fence: Default::default(),
        directory_table: Default::default(),
        shadow: Arc::new(ShadowReads::new(
            config.limits.max_shadow_reads_in_flight as usize,
        )),
        front_door: Arc::new(front_door::FrontDoor::new(&config.limits)),
        config,
        clusters,
        shards,
        auth_cluster,
        metrics: metrics.clone(),
        accepting: std::sync::atomic::AtomicBool::new(true),
    });
    metrics.register(Arc::new(health::ProxyGauges(Arc::downgrade(&proxy))));
    metrics.register(proxy.shadow.clone());
    metrics.register(proxy.front_door.clone());
    let stop_accepting = CancellationToken::new();
    let close_all = CancellationToken::new();
    let tasks = TaskTracker::new();
    // Stops with accepting, so a drain waits only for requests.
    tasks.spawn(merge_metrics(metrics, stop_accepting.clone()));
    if let Some(file) = proxy.policy.file() {
        tasks.spawn(reload::watch_config(
            proxy.clone(),
            file,
            stop_accepting.clone(),
        ));
    }
    if let Some(table) = proxy.config.tenants.table.clone() {
        directory_table::start(proxy.clone(), table, &tasks, stop_accepting.clone()).await;
    }
    tasks.spawn(accept_loop(
        proxy.clone(),
        listener,
        stop_accepting.clone(),
        close_all.clone(),
        tasks.clone(),
    ));
    // Control connections stop with accepting, so a drain waits only for
    // requests.
    for id in (0..proxy.clusters.len()).map(ClusterId) {
        tasks.spawn(control::run(proxy.clone(), id, stop_accepting.clone()));
    }
    // The first clients already get the discovered nodes and the version
    // check, unless a cluster takes longer than its connect timeout.
    futures::future::join_all(
        proxy
            .clusters
            .iter()
            .map(|c| c.wait_first_round(c.config.connect_timeout.0)),
    )
    .await;
    Ok(RunningProxy {
        addr,
        proxy,
        stop_accepting,
        close_all,
        tasks,
    })
}

/// Moves what requests recorded into the histograms every second, so the
/// recent window is current to the second.
async fn merge_metrics(metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => metrics.merge(),
        }
    }
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    stop_accepting: CancellationToken,
    close_all: CancellationToken,
    tasks: TaskTracker,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        proxy.config.limits.max_client_connections as usize,
    ));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = stop_accepting.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((sock, peer)) => {
                backoff = Duration::from_millis(5);
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    proxy
                        .metrics
                        .client_connections_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Debug, not warn: a flood of connections must not become a flood
                    // of log lines (cutover_client_connections_refused_total counts).
                    tracing::debug!(%peer, "refusing a client: max_client_connections reached");
                    let max = proxy.config.limits.max_client_connections;
                    if let Some(answer) = proxy.front_door.refuse(sock, max) {
                        tasks.spawn(answer);
                    }
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let session = session::ClientSession::new(
                    proxy.clone(),
                    sock,
                    peer,
                    stop_accepting.clone(),
                    close_all.clone(),
                    tasks.clone(),
                );
                tasks.spawn(async move {
                    session.run().await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
