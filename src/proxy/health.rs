//! What the proxy reports about itself: each cluster's health as its
//! control connection sees it, readiness, and the gauges `/metrics` reads
//! from live state (connections, stream ids, prepared statements).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use super::{ClusterId, Proxy};
use crate::metrics::{Collector, Exposition, MetricType};
use crate::upstream::UpstreamConn;

/// A cluster's health: up while its control connection is open and answers.
pub struct ClusterHealth {
    state: Mutex<HealthState>,
}

#[derive(Clone)]
struct HealthState {
    /// None until the control connection's first attempt is over.
    up: Option<bool>,
    since: SystemTime,
    node: Option<std::net::SocketAddr>,
    error: Option<String>,
}

impl Default for ClusterHealth {
    fn default() -> Self {
        ClusterHealth {
            state: Mutex::new(HealthState {
                up: None,
                since: SystemTime::now(),
                node: None,
                error: None,
            }),
        }
    }
}

impl ClusterHealth {
    pub fn set_up(&self, node: std::net::SocketAddr) {
        let mut s = self.state.lock();
        if s.up != Some(true) {
            s.since = SystemTime::now();
        }
        s.up = Some(true);
        s.node = Some(node);
        s.error = None;
    }

    pub fn set_down(&self, error: String) {
        let mut s = self.state.lock();
        if s.up != Some(false) {
            s.since = SystemTime::now();
        }
        s.up = Some(false);
        s.node = None;
        s.error = Some(error);
    }

    pub fn is_up(&self) -> bool {
        self.state.lock().up == Some(true)
    }

    fn report(&self, name: &str, roles: Vec<String>, primary: bool) -> ClusterReport {
        let s = self.state.lock().clone();
        ClusterReport {
            cluster: name.to_string(),
            roles,
            primary,
            status: match s.up {
                None => "unknown",
                Some(true) => "up",
                Some(false) => "down",
            },
            since: rfc3339(s.since),
            for_seconds: s.since.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0),
            control_node: s.node.map(|n| n.to_string()),
            error: s.error,
        }
    }
}

#[derive(Serialize)]
pub struct ClusterReport {
    pub cluster: String,
    /// What the cluster is in each shard that names it: `SHARD.origin` or
    /// `SHARD.target`.
    pub roles: Vec<String>,
    /// Answers the default route's reads.
    pub primary: bool,
    /// `up`, `down`, or `unknown` (not tried yet).
    pub status: &'static str,
    /// When the status last changed (RFC 3339, UTC).
    pub since: String,
    pub for_seconds: f64,
    pub control_node: Option<String>,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub accepting_clients: bool,
    pub primary: String,
    pub clusters: std::collections::BTreeMap<String, ClusterReport>,
}

impl Proxy {
    /// Ready: accepting clients, and the primary's control connection is up.
    pub fn readiness(&self) -> Readiness {
        let primary = self.default_primary(&self.policy());
        let accepting = self.accepting.load(Ordering::Relaxed);
        let shard_names: Vec<&String> = self.config.shards.keys().collect();
        let clusters = (0..self.clusters.len())
            .map(ClusterId)
            .map(|id| {
                let c = self.cluster(id);
                let roles = self
                    .shards
                    .shards()
                    .iter()
                    .zip(&shard_names)
                    .flat_map(|([origin, target], name)| {
                        [(origin, "origin"), (target, "target")]
                            .into_iter()
                            .filter(|(c, _)| **c == id)
                            .map(move |(_, role)| format!("{name}.{role}"))
                    })
                    .collect();
                (
                    c.name.clone(),
                    c.health.report(&c.name, roles, id == primary),
                )
            })
            .collect();
        Readiness {
            ready: accepting && self.cluster(primary).health.is_up(),
            accepting_clients: accepting,
            primary: self.cluster(primary).name.clone(),
            clusters,
        }
    }
}

/// The sessions' upstream connections to one cluster, for the gauges.
#[derive(Default)]
pub struct ConnectionList {
    conns: Mutex<Vec<Weak<UpstreamConn>>>,
}

impl ConnectionList {
    pub fn add(&self, c: &Arc<UpstreamConn>) {
        let mut l = self.conns.lock();
        l.retain(|w| w.upgrade().is_some_and(|c| !c.is_closed()));
        l.push(Arc::downgrade(c));
    }

    /// (open connections, stream ids in use by requests).
    fn usage(&self) -> (usize, usize) {
        let mut l = self.conns.lock();
        l.retain(|w| w.upgrade().is_some_and(|c| !c.is_closed()));
        let live: Vec<_> = l.iter().filter_map(Weak::upgrade).collect();
        drop(l);
        (live.len(), live.iter().map(|c| c.in_flight()).sum())
    }
}

/// Gauges read from the proxy's state at each scrape.
pub struct ProxyGauges(pub Weak<Proxy>);

impl Collector for ProxyGauges {
    fn collect(&self, out: &mut Exposition) {
        let Some(p) = self.0.upgrade() else { return };
        let usage: Vec<_> = p
            .clusters
            .iter()
            .map(|c| (c, c.connections.usage()))
            .collect();
        out.family(
            "cutover_upstream_connections",
            "Open connections from client sessions to each cluster",
            MetricType::Gauge,
        );
        for (c, (n, _)) in &usage {
            out.sample(
                "cutover_upstream_connections",
                &[("cluster", &c.name)],
                *n as f64,
            );
        }
        out.family(
            "cutover_upstream_stream_ids_in_use",
            "Stream ids held by requests on the connections to each cluster",
            MetricType::Gauge,
        );
        for (c, (_, ids)) in &usage {
            out.sample(
                "cutover_upstream_stream_ids_in_use",
                &[("cluster", &c.name)],
                *ids as f64,
            );
        }
        out.family(
            "cutover_cluster_up",
            "1 while the cluster's control connection is open and answering",
            MetricType::Gauge,
        );
        for c in &p.clusters {
            out.sample(
                "cutover_cluster_up",
                &[("cluster", &c.name)],
                if c.health.is_up() { 1.0 } else { 0.0 },
            );
        }
        out.family(
            "cutover_ready",
            "1 while /health/ready answers 200",
            MetricType::Gauge,
        );
        out.sample(
            "cutover_ready",
            &[],
            if p.readiness().ready { 1.0 } else { 0.0 },
        );
        let policy = p.policy();
        out.family(
            "cutover_policy_version",
            "Version of the routing policy in force",
            MetricType::Gauge,
        );
        out.sample("cutover_policy_version", &[], policy.version as f64);
        for (name, help, v) in [
            (
                "cutover_policy_changes_total",
                "Routing policy changes installed (admin API, SIGHUP, reload)",
                &p.policy.changes,
            ),
            (
                "cutover_policy_changes_refused_total",
                "Routing policy changes refused as invalid (the running policy stayed)",
                &p.policy.refused,
            ),
            (
                "cutover_policy_reloads_total",
                "Config reloads done (SIGHUP, POST /v1/reload, the file watcher), whether or not the policy changed",
                &p.policy.reloads,
            ),
        ] {
            out.family(name, help, MetricType::Counter);
            out.sample(name, &[], v.load(Ordering::Relaxed) as f64);
        }
        if p.config.tenants.table.is_some() {
            let t = &p.directory_table;
            out.family(
                "cutover_directory_table_polls_total",
                "Reads of [tenants.table] done",
                MetricType::Counter,
            );
            out.sample(
                "cutover_directory_table_polls_total",
                &[],
                t.polls.load(Ordering::Relaxed) as f64,
            );
            out.family(
                "cutover_directory_table_applied",
                "1 while the last read of [tenants.table] is in force, 0 while it fails or is refused",
                MetricType::Gauge,
            );
            out.sample(
                "cutover_directory_table_applied",
                &[],
                if t.error.lock().is_none() { 1.0 } else { 0.0 },
            );
        }
        for (name, help, v) in [
            (
                "cutover_prepared_statements",
                "Entries in the proxy's prepared-statement map",
                p.prepared.len(),
            ),
            (
                "cutover_classified_statements",
                "Entries in the statement classification cache",
                p.classifier.len(),
            ),
        ] {
            out.family(name, help, MetricType::Gauge);
            out.sample(name, &[], v as f64);
        }
    }
}

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
