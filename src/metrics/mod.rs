//! What the proxy measures: latency series (HDR histograms, recorded
//! wait-free), counters and gauges, and the registry `/metrics` and
//! `/v1/histograms` read from.
//!
//! Series are found without a lock on the request path: the client-visible
//! series and each cluster's are fixed tables indexed by (operation,
//! outcome), each cell created on first use; tenants are a map fixed at
//! start. Later parts of the proxy add their own series by registering a
//! [`Collector`]. This module records and renders; it does not decide what
//! a request is (the proxy tells it).

mod exposition;
mod histogram;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;

pub use exposition::{Exposition, MetricType, LATENCY_BUCKETS_MICROS};
pub use histogram::{LatencySeries, Snapshot};

use crate::frame::{Frame, Opcode};
use crate::protocol::ErrorCode;

/// What a request does, for the latency series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    Read = 0,
    Write = 1,
    /// Everything else: PREPARE, schema, USE, OPTIONS, STARTUP, REGISTER...
    Other = 2,
}

impl OpClass {
    pub const ALL: [OpClass; 3] = [OpClass::Read, OpClass::Write, OpClass::Other];

    pub fn name(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::Other => "other",
        }
    }
}

/// Outcome names: `ok`, then the CQL error codes by name.
const OUTCOMES: [&str; 19] = [
    "ok",
    "server_error",
    "protocol_error",
    "bad_credentials",
    "unavailable",
    "overloaded",
    "is_bootstrapping",
    "truncate_error",
    "write_timeout",
    "read_timeout",
    "read_failure",
    "function_failure",
    "write_failure",
    "syntax_error",
    "unauthorized",
    "invalid",
    "config_error",
    "already_exists",
    "unprepared",
];

/// How a request ended: `ok`, or the class of its CQL error (an unknown
/// code counts as `server_error`'s neighbour `unknown`, kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome(u8);

const UNKNOWN_OUTCOME: u8 = OUTCOMES.len() as u8;
const OUTCOME_COUNT: usize = OUTCOMES.len() + 1;

impl Outcome {
    pub const OK: Outcome = Outcome(0);

    pub fn error(code: ErrorCode) -> Outcome {
        let name = code.name();
        Outcome(
            OUTCOMES
                .iter()
                .position(|n| *n == name)
                .map(|i| i as u8)
                .unwrap_or(UNKNOWN_OUTCOME),
        )
    }

    /// From an answer: an ERROR frame's code, anything else is `ok`.
    pub fn of(answer: &Frame) -> Outcome {
        if answer.op() != Some(Opcode::Error) || answer.body.len() < 4 {
            return Outcome::OK;
        }
        let code = i32::from_be_bytes([
            answer.body[0],
            answer.body[1],
            answer.body[2],
            answer.body[3],
        ]);
        Outcome::error(ErrorCode(code))
    }

    pub fn name(self) -> &'static str {
        OUTCOMES.get(self.0 as usize).copied().unwrap_or("unknown")
    }

    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    fn all() -> impl Iterator<Item = Outcome> {
        (0..OUTCOME_COUNT as u8).map(Outcome)
    }
}

/// Latency series by (operation, outcome), each created on first use.
pub struct SeriesTable {
    cells: Box<[OnceLock<LatencySeries>]>,
    shards: usize,
    window: Duration,
}

impl SeriesTable {
    fn new(shards: usize, window: Duration) -> SeriesTable {
        SeriesTable {
            cells: (0..OpClass::ALL.len() * OUTCOME_COUNT)
                .map(|_| OnceLock::new())
                .collect(),
            shards,
            window,
        }
    }

    pub fn record(&self, op: OpClass, outcome: Outcome, latency: Duration) {
        let i = op as usize * OUTCOME_COUNT + outcome.0 as usize;
        self.cells[i]
            .get_or_init(|| LatencySeries::new(self.shards, self.window))
            .record(latency);
    }

    /// Every series recorded into so far.
    pub fn series(&self) -> impl Iterator<Item = (OpClass, Outcome, &LatencySeries)> {
        OpClass::ALL.into_iter().flat_map(move |op| {
            Outcome::all().filter_map(move |o| {
                self.cells[op as usize * OUTCOME_COUNT + o.0 as usize]
                    .get()
                    .map(|s| (op, o, s))
            })
        })
    }

    fn merge(&self) {
        for (_, _, s) in self.series() {
            s.merge();
        }
    }
}

/// One cluster's leg of every request, and what went wrong there.
pub struct ClusterMetrics {
    pub name: String,
    pub latency: SeriesTable,
    /// Error answers by where they came from (the cluster's own ERROR, or
    /// the proxy's for a timeout or an unreachable cluster), by outcome.
    errors: [[AtomicU64; OUTCOME_COUNT]; 2],
    /// Writes sent to several clusters that failed on this one.
    pub mirror_write_failures: AtomicU64,
    /// Statements prepared again after an UNPREPARED or on first use.
    pub reprepares: AtomicU64,
}

impl ClusterMetrics {
    /// Records one request to this cluster and counts it when it failed;
    /// `by_proxy`: the proxy concluded the error (a timeout, an unreachable
    /// cluster), not the cluster's own answer.
    pub fn record(&self, op: OpClass, outcome: Outcome, latency: Duration, by_proxy: bool) {
        self.latency.record(op, outcome, latency);
        if !outcome.is_ok() {
            self.errors[by_proxy as usize][outcome.0 as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Errors by source (`cluster`, `proxy`) and outcome.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, Outcome, u64)> + '_ {
        [("cluster", 0usize), ("proxy", 1)]
            .into_iter()
            .flat_map(move |(source, i)| {
                Outcome::all().skip(1).map(move |o| {
                    (
                        source,
                        o,
                        self.errors[i][o.0 as usize].load(Ordering::Relaxed),
                    )
                })
            })
    }
}

/// Adds series to `/metrics` (later parts of the proxy: routing, shadow
/// reads, reloads). Called at every scrape; keep it quick.
pub trait Collector: Send + Sync {
    fn collect(&self, out: &mut Exposition);
}

/// How the registry is set up: from `[metrics]` in the config.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// The recent window (`/metrics` quantile gauges, `/v1/histograms`).
    pub window: Duration,
    /// Tenants that get their own latency series.
    pub tenants: Vec<String>,
    /// Recording shards per series; one per runtime worker is enough.
    pub shards: usize,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            window: Duration::from_secs(60),
            tenants: Vec::new(),
            shards: std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4)
                .clamp(2, 32),
        }
    }
}

/// Opcodes a client may send, by value, for the per-opcode counter.
const REQUEST_OPCODES: usize = 0x11;

/// The registry of one proxy instance.
pub struct Metrics {
    options: MetricsOptions,
    /// Client-visible: socket read of the request to socket write of the answer.
    pub client: SeriesTable,
    clusters: Vec<Arc<ClusterMetrics>>,
    tenants: Vec<(String, SeriesTable)>,
    tenant_index: HashMap<String, u16>,
    /// Every request frame from clients, by opcode (unknown opcodes last).
    requests: [AtomicU64; REQUEST_OPCODES + 1],
    /// Requests answered with the proxy's own ERROR, by source.
    request_errors: [AtomicU64; 3],
    pub in_flight: AtomicI64,
    pub client_connections: AtomicI64,
    pub client_connections_accepted: AtomicU64,
    pub client_connections_refused: AtomicU64,
    /// EXECUTEs and BATCH children with an id the proxy does not know.
    pub prepared_misses: AtomicU64,
    collectors: RwLock<Vec<Arc<dyn Collector>>>,
    started: std::time::Instant,
}

impl Metrics {
    pub fn new(options: MetricsOptions, clusters: &[String]) -> Metrics {
        let table = || SeriesTable::new(options.shards, options.window);
        Metrics {
            client: table(),
            clusters: clusters
                .iter()
                .map(|name| {
                    Arc::new(ClusterMetrics {
                        name: name.clone(),
                        latency: table(),
                        errors: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
                        mirror_write_failures: AtomicU64::new(0),
                        reprepares: AtomicU64::new(0),
                    })
                })
                .collect(),
            tenants: options
                .tenants
                .iter()
                .map(|t| (t.clone(), table()))
                .collect(),
            tenant_index: options
                .tenants
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u16))
                .collect(),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            request_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            in_flight: AtomicI64::new(0),
            client_connections: AtomicI64::new(0),
            client_connections_accepted: AtomicU64::new(0),
            client_connections_refused: AtomicU64::new(0),
            prepared_misses: AtomicU64::new(0),
            collectors: RwLock::new(Vec::new()),
            started: std::time::Instant::now(),
            options,
        }
    }

    pub fn options(&self) -> &MetricsOptions {
        &self.options
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The cluster's metrics (created at start for every configured cluster).
    pub fn cluster(&self, name: &str) -> Option<Arc<ClusterMetrics>> {
        self.clusters.iter().find(|c| c.name == name).cloned()
    }

    pub fn clusters(&self) -> &[Arc<ClusterMetrics>] {
        &self.clusters
    }

    /// The tenant's series, when it is one of `[metrics] tenants`.
    pub fn tenant(&self, tenant: &str) -> Option<&SeriesTable> {
        self.tenant_index(tenant).map(|i| self.tenant_series(i))
    }

    /// The index of a listed tenant's series (looked up once per tenant).
    pub fn tenant_index(&self, tenant: &str) -> Option<u16> {
        self.tenant_index.get(tenant).copied()
    }

    pub fn tenant_series(&self, index: u16) -> &SeriesTable {
        &self.tenants[index as usize].1
    }

    /// Counts one request frame from a client (opcodes that do not exist
    /// count as `UNKNOWN`).
    pub fn count_request(&self, opcode: u8) {
        let i = match Opcode::from_u8(opcode) {
            Some(_) if (opcode as usize) < REQUEST_OPCODES => opcode as usize,
            _ => REQUEST_OPCODES,
        };
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered with the proxy's own ERROR, from `from`
    /// (`client`, `cluster`, `proxy`).
    pub fn count_request_error(&self, from: &str) {
        let i = match from {
            "client" => 0,
            "cluster" => 1,
            _ => 2,
        };
        self.request_errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests by opcode name (only opcodes seen).
    pub fn requests_by_opcode(&self) -> Vec<(&'static str, u64)> {
        self.requests
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                let name = Opcode::from_u8(i as u8)
                    .filter(|_| i < REQUEST_OPCODES)
                    .map_or("UNKNOWN", |o| o.name());
                (n > 0).then_some((name, n))
            })
            .collect()
    }

    pub fn register(&self, c: Arc<dyn Collector>) {
        self.collectors.write().push(c);
    }

    /// Merges every series; the background task calls this every second so
    /// the recent window moves on time.
    pub fn merge(&self) {
        self.client.merge();
        for c in &self.clusters {
            c.latency.merge();
        }
        for (_, t) in &self.tenants {
            t.merge();
        }
    }

    /// Every latency series with its labels, for rendering.
    pub fn latency_families(&self) -> Vec<LatencyFamily<'_>> {
        let mut f = vec![LatencyFamily {
            name: "cutover_request_duration_seconds",
            help: "Client-visible latency, from the socket read of a request to the socket write of its answer",
            scope_label: None,
            tables: vec![("", &self.client)],
        }];
        f.push(LatencyFamily {
            name: "cutover_cluster_request_duration_seconds",
            help: "Each cluster's leg: from sending a request upstream to receiving its answer",
            scope_label: Some("cluster"),
            tables: self
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), &c.latency))
                .collect(),
        });
        let tenants: Vec<_> = self.tenants.iter().map(|(k, v)| (k.as_str(), v)).collect();
        f.push(LatencyFamily {
            name: "cutover_tenant_request_duration_seconds",
            help: "Client-visible latency of the tenants listed under [metrics] tenants",
            scope_label: Some("tenant"),
            tables: tenants,
        });
        f
    }

    /// Prometheus text for everything this registry and its collectors hold.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        exposition::render_latency(&mut out, &self.latency_families());
        out.family(
            "cutover_client_requests_total",
            "Request frames received from clients, by opcode (driver metadata queries and heartbeats included)",
            MetricType::Counter,
        );
        for (op, n) in self.requests_by_opcode() {
            out.sample("cutover_client_requests_total", &[("opcode", op)], n as f64);
        }
        out.family(
            "cutover_cluster_errors_total",
            "Error answers per cluster, by CQL error code and source: the cluster's own ERROR (cluster) or the proxy's timeout or unreachable cluster (proxy)",
            MetricType::Counter,
        );
        // The errors alerts and dashboards rate() are there at 0 from the
        // start (a rate needs a series before the first error); the rest
        // appear with their first error.
        const AT_ZERO: [(&str, &str); 5] = [
            ("cluster", "unavailable"),
            ("cluster", "write_timeout"),
            ("cluster", "read_timeout"),
            ("cluster", "overloaded"),
            ("proxy", "unavailable"),
        ];
        for c in &self.clusters {
            for (source, o, n) in c
                .errors()
                .filter(|(s, o, n)| *n > 0 || AT_ZERO.contains(&(*s, o.name())))
            {
                out.sample(
                    "cutover_cluster_errors_total",
                    &[("cluster", &c.name), ("code", o.name()), ("source", source)],
                    n as f64,
                );
            }
        }
        out.family(
            "cutover_request_errors_total",
            "Requests the proxy answered with its own ERROR, by where the error came from (client, cluster, proxy); a cluster's own ERROR answers are not counted here",
            MetricType::Counter,
        );
        for (from, n) in ["client", "cluster", "proxy"]
            .iter()
            .zip(&self.request_errors)
        {
            out.sample(
                "cutover_request_errors_total",
                &[("from", from)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
        for (name, help, get) in [
            (
                "cutover_mirror_write_failures_total",
                "Writes sent to several clusters that failed on this one",
                (|c: &ClusterMetrics| c.mirror_write_failures.load(Ordering::Relaxed))
                    as fn(&ClusterMetrics) -> u64,
            ),
            (
                "cutover_reprepares_total",
                "Statements the proxy prepared again on a cluster (after UNPREPARED, or first use there)",
                |c: &ClusterMetrics| c.reprepares.load(Ordering::Relaxed),
            ),
        ] {
            out.family(name, help, MetricType::Counter);
            for c in &self.clusters {
                out.sample(name, &[("cluster", &c.name)], get(c) as f64);
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        for (name, help, ty, v) in [
            (
                "cutover_prepared_misses_total",
                "EXECUTEs (and BATCH children) with a prepared id the proxy does not know; answered UNPREPARED",
                MetricType::Counter,
                load(&self.prepared_misses),
            ),
            (
                "cutover_client_connections_accepted_total",
                "Client connections accepted",
                MetricType::Counter,
                load(&self.client_connections_accepted),
            ),
            (
                "cutover_client_connections_refused_total",
                "Client connections refused at limits.max_client_connections",
                MetricType::Counter,
                load(&self.client_connections_refused),
            ),
            (
                "cutover_client_connections",
                "Open client connections",
                MetricType::Gauge,
                self.client_connections.load(Ordering::Relaxed) as f64,
            ),
            (
                "cutover_requests_in_flight",
                "Client requests received and not yet answered",
                MetricType::Gauge,
                self.in_flight.load(Ordering::Relaxed) as f64,
            ),
            (
                "cutover_uptime_seconds",
                "Seconds since the proxy started",
                MetricType::Gauge,
                self.uptime().as_secs_f64(),
            ),
        ] {
            out.family(name, help, ty);
            out.sample(name, &[], v);
        }
        out.family(
            "cutover_build_info",
            "The running build (value is always 1)",
            MetricType::Gauge,
        );
        out.sample(
            "cutover_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("BUILD_COMMIT")),
            ],
            1.0,
        );
        let collectors = self.collectors.read().clone();
        for c in collectors {
            c.collect(&mut out);
        }
        out.finish()
    }
}

/// One histogram family and the tables whose series it shows.
pub struct LatencyFamily<'a> {
    pub name: &'static str,
    pub help: &'static str,
    /// The label telling the tables apart (`cluster`, `tenant`), if several.
    pub scope_label: Option<&'static str>,
    pub tables: Vec<(&'a str, &'a SeriesTable)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_error_codes() {
        assert_eq!(
            Outcome::error(ErrorCode::WRITE_TIMEOUT).name(),
            "write_timeout"
        );
        assert_eq!(Outcome::error(ErrorCode(0x7777)).name(), "unknown");
        let e = crate::protocol::ErrorFrame::new(ErrorCode::OVERLOADED, "busy").encode();
        let f = Frame::response(4, 1, Opcode::Error, e);
        assert_eq!(Outcome::of(&f).name(), "overloaded");
        let ok = Frame::response(
            4,
            1,
            Opcode::Result,
            bytes::Bytes::from_static(&[0, 0, 0, 1]),
        );
        assert!(Outcome::of(&ok).is_ok());
    }

    #[test]
    fn requests_are_counted_by_opcode() {
        let m = Metrics::new(MetricsOptions::default(), &[]);
        m.count_request(Opcode::Query as u8);
        m.count_request(Opcode::Query as u8);
        m.count_request(Opcode::Options as u8);
        m.count_request(0x42);
        let got = m.requests_by_opcode();
        assert!(got.contains(&("QUERY", 2)));
        assert!(got.contains(&("OPTIONS", 1)));
        assert!(got.contains(&("UNKNOWN", 1)));
    }

    #[test]
    fn only_listed_tenants_get_series() {
        let opts = MetricsOptions {
            tenants: vec!["wayne".into()],
            ..Default::default()
        };
        let m = Metrics::new(opts, &["origin".into()]);
        assert!(m.tenant("wayne").is_some());
        assert!(m.tenant("stark").is_none());
        m.tenant("wayne")
            .unwrap()
            .record(OpClass::Write, Outcome::OK, Duration::from_micros(250));
        let text = m.render();
        assert!(text.contains(
            "cutover_tenant_request_duration_seconds_count{tenant=\"wayne\",op=\"write\",outcome=\"ok\"} 1"
        ), "{text}");
    }
}
