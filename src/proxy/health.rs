//! What the proxy reports about itself: each cluster's health as its
//! control connection sees it, readiness, and the gauges `/metrics` reads
//! from live state (connections, stream ids, prepared statements).

use std::sync::atomic::Ordering;
use std::sync::Weak;

use serde::Serialize;

use super::{ClusterId, Proxy};
use crate::metrics::{Collector, Exposition, MetricType};
pub use crate::upstream::ClusterReport;

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
        let primary = self.routing.default_primary(&self.policy());
        let accepting = self.accepting();
        let shard_names: Vec<&String> = self.config.shards.keys().collect();
        let clusters = (0..self.clusters.len())
            .map(ClusterId)
            .map(|id| {
                let c = self.cluster(id);
                let roles = self
                    .routing
                    .shards()
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
                let mut report = c.health.report(&c.name, roles, id == primary);
                report.journal_backlog = self
                    .journal
                    .get()
                    .map(|j| j.pending_for(&c.name))
                    .unwrap_or(0);
                (c.name.clone(), report)
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

/// Gauges read from the proxy's state at each scrape.
pub struct ProxyGauges(pub Weak<Proxy>);

impl Collector for ProxyGauges {
    fn collect(&self, out: &mut Exposition) {
        let Some(p) = self.0.upgrade() else { return };
        for (name, help, n) in [
            (
                "cutover_client_tls_handshake_failures_total",
                "Client connections whose TLS handshake failed or did not finish within limits.handshake_timeout (no certificate under mTLS, an untrusted one, no common version)",
                &p.tls_counts.handshake_failures,
            ),
            (
                "cutover_client_plaintext_on_tls_total",
                "Clients that spoke plain CQL to the TLS port (answered with a protocol error saying so)",
                &p.tls_counts.plaintext_on_tls,
            ),
        ] {
            out.family(name, help, MetricType::Counter);
            out.sample(
                name,
                &[],
                n.load(std::sync::atomic::Ordering::Relaxed) as f64,
            );
        }
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
        // The route in force, by the config's spellings.
        fn word<T: serde::Serialize>(v: &T) -> String {
            crate::config::route_file_spelled(v)
                .trim_matches('"')
                .to_string()
        }
        out.family(
            "cutover_route_info",
            "The default route in force (value always 1): its shard, phase and write mode",
            MetricType::Gauge,
        );
        let (phase, mode) = (word(&policy.route.phase), word(&policy.route.write_mode));
        out.sample(
            "cutover_route_info",
            &[
                ("shard", &policy.route.shard),
                ("phase", &phase),
                ("write_mode", &mode),
            ],
            1.0,
        );
        let listed = &p.config().metrics.tenants;
        if !listed.is_empty() {
            out.family(
                "cutover_tenant_route_info",
                "The route in force for each tenant of [metrics] tenants (value always 1): its shard, phase, status and write mode, its entry's or the default's",
                MetricType::Gauge,
            );
        }
        for tenant in listed {
            let entry = policy.tenants.get(tenant);
            let shard = entry
                .and_then(|e| e.shard.clone())
                .unwrap_or_else(|| policy.route.shard.clone());
            let phase = word(&entry.and_then(|e| e.phase).unwrap_or(policy.route.phase));
            let mode = word(
                &entry
                    .and_then(|e| e.write_mode)
                    .unwrap_or(policy.route.write_mode),
            );
            let status = word(&entry.map(|e| e.status).unwrap_or_default());
            out.sample(
                "cutover_tenant_route_info",
                &[
                    ("tenant", tenant),
                    ("shard", &shard),
                    ("phase", &phase),
                    ("status", &status),
                    ("write_mode", &mode),
                ],
                1.0,
            );
        }
        for (name, help, v) in [
            (
                "cutover_policy_changes_total",
                "Routing policy changes installed (admin API, SIGHUP, reload)",
                &p.routing().store().changes,
            ),
            (
                "cutover_policy_changes_refused_total",
                "Routing policy changes refused as invalid (the running policy stayed)",
                &p.routing().store().refused,
            ),
            (
                "cutover_policy_reloads_total",
                "Config reloads done (SIGHUP, POST /v1/reload, the file watcher), whether or not the policy changed",
                &p.routing().store().reloads,
            ),
        ] {
            out.family(name, help, MetricType::Counter);
            out.sample(name, &[], v.load(Ordering::Relaxed) as f64);
        }
        if p.config().tenants.table.is_some() {
            let t = p.routing().directory_table();
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
                p.statements().prepared().len(),
            ),
            (
                "cutover_classified_statements",
                "Entries in the statement classification cache",
                p.statements().classifier().len(),
            ),
        ] {
            out.family(name, help, MetricType::Gauge);
            out.sample(name, &[], v as f64);
        }
    }
}
