//! The proxy: a listener, one `session` per client connection, and the
//! state every session shares (config, prepared map, classification cache,
//! topology). Sessions reach the clusters through `upstream` connections
//! opened on demand.
//!
//! This module owns the lifecycle (start, drain on SIGTERM, stop); routing
//! decisions live in `route`, the client side of the wire in `session`.

pub mod front_door;
mod health;
pub mod journal;
mod listener;
mod shared;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use health::Readiness;
pub use listener::Face;
pub use shared::{Proxy, ProxyError};

use crate::config::Config;
use crate::metrics::{Metrics, MetricsOptions};
use crate::pipeline::Statements;
use crate::routing::tenant::TenantResolver;
use crate::routing::{ClusterId, PolicyStore, Routing, ShardMap};
use crate::topology::TopologyView;
use crate::upstream::{control, resolve};

/// A running proxy instance.
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// The plaintext listener beside a TLS one (`tls.plaintext_listen`).
    pub plaintext_addr: Option<SocketAddr>,
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
        self.close_journal().await;
    }

    /// Everything appended to the journal is written and synced.
    async fn close_journal(&self) {
        let p = self.proxy.clone();
        let _ = tokio::task::spawn_blocking(move || p.journal().close()).await;
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
        self.close_journal().await;
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
        clusters.push(Arc::new(
            resolve(name, &config.clusters[*name], &metrics).await?,
        ));
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
    let bind = |addr: SocketAddr| async move {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Listen { addr, source })?;
        let bound = l
            .local_addr()
            .map_err(|source| ProxyError::Listen { addr, source })?;
        Ok::<_, ProxyError>((l, bound))
    };
    let (listener, addr) = bind(config.listen).await?;
    let plaintext = match config.tls.as_ref().and_then(|t| t.plaintext_listen) {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let mut topology = config.topology.clone();
    // No instances listed means this one alone; a listen port of 0 is only
    // known now.
    if topology.instances.is_empty()
        || (config.listen.port() == 0 && topology.instances == vec![config.listen])
    {
        topology.instances = vec![addr];
        topology.index = 0;
    }
    let topology_view = TopologyView::from_config(&topology);
    let plaintext_topology = plaintext.as_ref().map(|(_, a)| {
        if topology.plaintext_instances.is_empty() {
            topology_view.at(&[*a])
        } else {
            topology_view.at(&topology.plaintext_instances)
        }
    });
    let longest_request_timeout = clusters
        .iter()
        .map(|c| c.config.request_timeout.0)
        .max()
        .unwrap_or_default();
    let routing = Arc::new(Routing::new(
        PolicyStore::new(&config, config_file),
        TenantResolver::new(&config.tenants.key, metrics.clone()),
        shards,
        longest_request_timeout,
    ));
    // The directory table's cluster, also when no shard names it.
    let table_cluster = match &config.tenants.table {
        Some(t) => Some(match names.iter().position(|n| **n == t.cluster) {
            Some(i) => clusters[i].clone(),
            None => Arc::new(resolve(&t.cluster, &config.clusters[&t.cluster], &metrics).await?),
        }),
        None => None,
    };
    // The directory table's cluster's TLS too, when no shard names it.
    let extra = table_cluster
        .as_ref()
        .filter(|t| !clusters.iter().any(|c| Arc::ptr_eq(c, t)))
        .and_then(|t| t.tls.clone());
    let tls = tls_sections(&config, &clusters, extra)?;
    let close_all = CancellationToken::new();
    let journal = Arc::new(journal::JournalSlot::new(
        &config,
        clusters.clone(),
        close_all.clone(),
    ));
    let proxy = Arc::new(Proxy {
        journal: journal.clone(),
        statements: Statements::new(
            config.limits.prepared_cache_entries as usize,
            match &config.tenants.key {
                crate::config::TenantKey::Column { column } => Some(column.clone()),
                _ => None,
            },
            config.limits.max_shadow_reads_in_flight as usize,
        ),
        topology: topology_view,
        plaintext_topology,
        tls: tls.set.clone(),
        admin_tls: tls.admin.clone(),
        tls_counts: Default::default(),
        routing,
        front_door: Arc::new(front_door::FrontDoor::new(&config.limits)),
        config,
        clusters,
        auth_cluster,
        metrics: metrics.clone(),
        accepting: std::sync::atomic::AtomicBool::new(true),
    });
    metrics.register(Arc::new(health::ProxyGauges(Arc::downgrade(&proxy))));
    metrics.register(proxy.statements.shadow().clone());
    metrics.register(proxy.front_door().clone());
    metrics.register(journal.clone());
    if journal::JournalSlot::wanted_at_start(proxy.config()) {
        journal.open().map_err(ProxyError::Journal)?;
    }
    proxy.routing().store().set_journal_gate(journal.clone());
    let stop_accepting = CancellationToken::new();
    let tasks = TaskTracker::new();
    // Stops with accepting, so a drain waits only for requests.
    tasks.spawn(merge_metrics(metrics, stop_accepting.clone()));
    if let Some(file) = proxy.routing().store().file() {
        tasks.spawn(crate::routing::watch_config(
            proxy.routing().clone(),
            file,
            stop_accepting.clone(),
        ));
    }
    if let (Some(table), Some(cluster)) = (proxy.config().tenants.table.clone(), table_cluster) {
        crate::routing::directory_table::start(
            proxy.routing().clone(),
            cluster,
            table,
            &tasks,
            stop_accepting.clone(),
        )
        .await;
    }
    tasks.spawn(tls.set.clone().watch(stop_accepting.clone()));
    let workers = workers::Workers::start(proxy.config().worker_threads as usize, tasks.clone())
        .map_err(ProxyError::Workers)?;
    tracing::debug!(
        threads = workers.len(),
        "client connections are served on worker threads"
    );
    let workers = Arc::new(workers);
    let admission = Arc::new(listener::Admission::new(&proxy.config().limits));
    let plaintext_addr = plaintext.as_ref().map(|(_, a)| *a);
    let mut listeners = vec![listener::Listener {
        tcp: listener,
        tls: tls.listener.clone(),
        face: Face::Main,
    }];
    if let Some((l, _)) = plaintext {
        listeners.push(listener::Listener {
            tcp: l,
            tls: None,
            face: Face::Plaintext,
        });
    }
    for l in listeners {
        tasks.spawn(listener::accept_loop(
            proxy.clone(),
            l,
            admission.clone(),
            workers.clone(),
            stop_accepting.clone(),
            close_all.clone(),
            tasks.clone(),
        ));
    }
    drop(workers);
    // Control connections stop with accepting, so a drain waits only for
    // requests.
    for id in (0..proxy.clusters().len()).map(ClusterId) {
        let (p, stop) = (proxy.clone(), stop_accepting.clone());
        tasks.spawn(
            async move { control::run(p.cluster(id), id.0, p.routing().tenants(), stop).await },
        );
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
        plaintext_addr,
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

/// The TLS configurations read from files: the listener's, the admin
/// API's, and each cluster's (already made with the clusters).
struct TlsSections {
    listener: Option<Arc<crate::tls::Reloading<rustls::ServerConfig>>>,
    admin: Option<Arc<crate::tls::Reloading<rustls::ServerConfig>>>,
    set: Arc<crate::tls::TlsSet>,
}

fn tls_sections(
    config: &Config,
    clusters: &[Arc<crate::upstream::Cluster>],
    extra: Option<Arc<crate::tls::UpstreamTls>>,
) -> Result<TlsSections, ProxyError> {
    let server = |what: &str, t: &Option<crate::tls::ListenerTls>| {
        t.as_ref()
            .map(|t| {
                let owned = t.clone();
                crate::tls::Reloading::new(what, t.files(), move || {
                    crate::tls::server_config(&owned)
                })
                .map(Arc::new)
                .map_err(|reason| ProxyError::Tls {
                    section: what.to_string(),
                    reason,
                })
            })
            .transpose()
    };
    let listener = server("tls", &config.tls)?;
    let admin = server("admin_tls", &config.admin_tls)?;
    let mut sections: Vec<Arc<dyn crate::tls::Reload>> = Vec::new();
    sections.extend(listener.clone().map(|l| l as Arc<dyn crate::tls::Reload>));
    sections.extend(admin.clone().map(|l| l as Arc<dyn crate::tls::Reload>));
    for c in clusters {
        sections.extend(c.tls.clone().map(|t| t as Arc<dyn crate::tls::Reload>));
    }
    sections.extend(extra.map(|t| t as Arc<dyn crate::tls::Reload>));
    Ok(TlsSections {
        listener,
        admin,
        set: Arc::new(crate::tls::TlsSet { sections }),
    })
}
