//! The proxy's typed configuration: the TOML layout of DESIGN.md's config
//! sketch (the keys that exist so far), environment overrides, and
//! validation that reports every problem at once.
//!
//! This module parses and checks; it does not start anything. A `Config`
//! that `load` returns is valid: every name it refers to exists.

mod directory;
mod env;
mod problem;
mod route_file;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use directory::{read_directory, write_directory};
pub use problem::{messages, Problem};
pub use route_file::{
    read_route_file, spelled as route_file_spelled, write_route_file, MergedRoute, RouteOverride,
    RouteOverrides,
};
pub use units::{parse_duration, parse_size, ByteSize, ConfigDuration};

/// A password or token: read from the config (or `CUTOVER_*`) as a string,
/// never shown by `Debug` (so never in a log line at any level).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for where it is used (a login, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Every problem found in a config, each a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", messages(.0).join("\n  - "))]
pub struct ConfigErrors(pub Vec<Problem>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DdlMode {
    /// Every cluster of every shard.
    #[default]
    All,
    PrimaryOnly,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    OriginOnly,
    #[default]
    DualWrite,
    ShadowReads,
    TargetPrimary,
    TargetOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    #[default]
    Sync,
    AsyncSecondary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterRole {
    #[default]
    Origin,
    Target,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_client_connections: u32,
    /// Client connections from one source address at once (0: no limit
    /// beside `max_client_connections`).
    pub max_client_connections_per_source: u32,
    pub max_in_flight_per_connection: u32,
    pub max_frame_bytes: ByteSize,
    pub max_frame_bytes_before_auth: ByteSize,
    pub prepared_cache_entries: u32,
    /// Shadow reads under way at once; beyond this they are dropped.
    pub max_shadow_reads_in_flight: u32,
    /// A client must have finished STARTUP (and its login) within this.
    pub handshake_timeout: ConfigDuration,
    /// Once part of a frame has arrived, the rest must arrive within this.
    pub frame_timeout: ConfigDuration,
    /// What partly received frames of more than 64 KiB may hold, over every
    /// client connection; a large frame beyond it is refused (OVERLOADED).
    pub max_partial_frame_bytes: ByteSize,
    /// What the requests read from clients and not yet answered may hold,
    /// over every connection (each counts its frame and
    /// `REQUEST_OVERHEAD_BYTES`); a request past it is answered OVERLOADED.
    /// The one bound that fails requests: below it the proxy slows a
    /// client down instead (see `max_in_flight_per_connection`).
    pub max_in_flight_bytes: ByteSize,
    /// What a connection at its in-flight limit keeps reading (and holds,
    /// waiting) before it stops reading from the socket; heartbeats within
    /// it are answered at once.
    pub max_queued_bytes_per_connection: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_connections: 10_000,
            max_client_connections_per_source: 0,
            max_in_flight_per_connection: 2048,
            max_frame_bytes: ByteSize(crate::frame::DEFAULT_MAX_FRAME as u64),
            max_frame_bytes_before_auth: ByteSize(crate::frame::DEFAULT_MAX_FRAME_PRE_AUTH as u64),
            prepared_cache_entries: 100_000,
            max_shadow_reads_in_flight: 1024,
            handshake_timeout: ConfigDuration(std::time::Duration::from_secs(10)),
            frame_timeout: ConfigDuration(std::time::Duration::from_secs(30)),
            max_partial_frame_bytes: ByteSize(128 * 1024 * 1024),
            max_in_flight_bytes: ByteSize(512 * 1024 * 1024),
            max_queued_bytes_per_connection: ByteSize(1024 * 1024),
        }
    }
}

/// What drivers see in `system.local` / `system.peers`: the proxy instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Topology {
    /// Every proxy instance, as drivers should reach it. Empty: just `listen`.
    pub instances: Vec<SocketAddr>,
    /// This instance's position in `instances`.
    pub index: usize,
    /// The admin API of each instance, in the order of `instances`: where
    /// `?fleet=true` changes reach the others.
    pub admin_instances: Vec<SocketAddr>,
    /// With `tls.plaintext_listen`: each instance's plaintext listener, in
    /// the order of `instances`, as clients of that listener see them.
    pub plaintext_instances: Vec<SocketAddr>,
    pub tokens_per_instance: u32,
    pub datacenter: String,
    pub rack: String,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            instances: Vec::new(),
            index: 0,
            admin_instances: Vec::new(),
            plaintext_instances: Vec::new(),
            tokens_per_instance: 8,
            datacenter: "dc1".into(),
            rack: "rack1".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// `host:port` of one or more nodes; the rest are discovered.
    pub contact_points: Vec<String>,
    /// Client traffic goes to this data center's nodes (all nodes when unset).
    pub local_datacenter: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub connect_timeout: ConfigDuration,
    pub request_timeout: ConfigDuration,
    pub heartbeat_interval: ConfigDuration,
    /// TLS towards this cluster when present.
    pub tls: Option<crate::tls::ClusterTls>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            contact_points: Vec::new(),
            local_datacenter: None,
            username: None,
            password: None,
            connect_timeout: ConfigDuration(std::time::Duration::from_secs(5)),
            request_timeout: ConfigDuration(std::time::Duration::from_secs(10)),
            heartbeat_interval: ConfigDuration(std::time::Duration::from_secs(30)),
            tls: None,
        }
    }
}

/// A shard: the origin/target pair one tenant's data lives on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardConfig {
    pub origin: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AuthConfig {
    /// Which cluster checks the client's credentials; the other one gets
    /// its own configured credentials.
    pub check_client_against: ClusterRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConfig {
    pub shard: String,
    pub phase: Phase,
    pub write_mode: WriteMode,
    /// In `target-primary`, also shadow reads to the origin and compare
    /// (as `shadow-reads` does towards the target).
    pub shadow_target_primary: bool,
    /// The route file: the fields `PUT /v1/policy` set, written before they
    /// take effect and read by every reload and restart. Relative to the
    /// config file's folder; default `<config>.route.toml` beside it. A
    /// proxy started without a config file has none.
    #[serde(skip_serializing)]
    pub file: Option<std::path::PathBuf>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            shard: "default".into(),
            phase: Phase::default(),
            write_mode: WriteMode::default(),
            shadow_target_primary: false,
            file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WritesConfig {
    /// Add one client timestamp to writes that carry none (not LWT, not
    /// counters), the same for every cluster.
    pub add_timestamps: bool,
    /// Replace `now()`, `uuid()` and `currentTimestamp()` with values the
    /// proxy computes once, so both clusters store the same thing.
    pub replace_server_functions: bool,
}

impl Default for WritesConfig {
    fn default() -> Self {
        WritesConfig {
            add_timestamps: true,
            replace_server_functions: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShutdownConfig {
    /// How long SIGTERM waits for in-flight requests before closing.
    pub grace_period: ConfigDuration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_period: ConfigDuration(std::time::Duration::from_secs(30)),
        }
    }
}

/// How a request's tenant is found (`[tenants] key`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TenantKey {
    /// `"none"`: requests have no tenant.
    Named(String),
    /// `{ keyspace = "^t_(.*)$" }`: the keyspace, or the regex's first capture.
    Keyspace { keyspace: String },
    /// `{ column = "tenant_id" }`: that column's value.
    Column { column: String },
}

impl Default for TenantKey {
    fn default() -> Self {
        TenantKey::Named("none".into())
    }
}

/// Whether a tenant's requests are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TenantStatus {
    #[default]
    ReadWrite,
    /// Reads served, writes refused (while the tenant is copied elsewhere).
    ReadOnly,
    /// Nothing served.
    NotReady,
}

impl TenantStatus {
    pub fn name(self) -> &'static str {
        match self {
            TenantStatus::ReadWrite => "read-write",
            TenantStatus::ReadOnly => "read-only",
            TenantStatus::NotReady => "not-ready",
        }
    }
}

/// One tenant's entry in the directory: where its data lives and how its
/// requests are served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    pub tenant: String,
    /// Default: the default route's shard.
    #[serde(default)]
    pub shard: Option<String>,
    /// Default: the default route's phase.
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub status: TenantStatus,
    /// Default: the default route's write mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_mode: Option<WriteMode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TenantsConfig {
    pub key: TenantKey,
    /// Inline directory entries (`[[tenants.entries]]`).
    pub entries: Vec<TenantEntry>,
    /// The directory file: entries the admin API manages (written
    /// atomically before a change takes effect). Relative to the config
    /// file's folder.
    pub directory_file: Option<std::path::PathBuf>,
    /// The directory file's entries, as read by `Config::load`.
    #[serde(skip)]
    pub file_entries: Vec<TenantEntry>,
    /// Entries polled from a CQL table (`[tenants.table]`).
    pub table: Option<DirectoryTable>,
    /// The table's entries as last read (kept across reloads).
    #[serde(skip)]
    pub table_entries: Vec<TenantEntry>,
}

/// `[tenants.table]`: directory entries read from a CQL table of one of
/// the configured clusters, polled. The table has the columns `tenant`
/// (its primary key), `shard`, `phase` and `status`, all text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryTable {
    /// The cluster that holds it.
    pub cluster: String,
    /// `keyspace.table`.
    pub name: String,
    #[serde(default = "DirectoryTable::default_poll")]
    pub poll_every: ConfigDuration,
}

impl DirectoryTable {
    fn default_poll() -> ConfigDuration {
        ConfigDuration(std::time::Duration::from_secs(5))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// The recent window behind the quantile gauges and `/v1/histograms`.
    pub window: ConfigDuration,
    /// Tenants that get their own latency series.
    pub tenants: Vec<String>,
    /// At most this many tenants may be listed (each costs memory).
    pub max_tenants: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            window: ConfigDuration(std::time::Duration::from_secs(60)),
            tenants: Vec::new(),
            max_tenants: 32,
        }
    }
}

/// When a journaled write counts as written (`journal.durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum JournalDurability {
    /// In the OS page cache: survives a crash of the proxy, not of the machine.
    PageCache,
    /// Synced at most once every `group_commit_interval`; a write waits for
    /// its sync (for disks where a sync is slow).
    GroupCommit,
    /// Synced before each write is answered; the writes that arrive while
    /// a sync runs share the next one.
    #[default]
    Fsync,
}

/// What a full journal does to the async-secondary writes that do not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Served as in `sync`: the client waits for both clusters again.
    #[default]
    Sync,
    /// Refused with an error naming the journal.
    Refuse,
}

/// `[journal]`: the write-ahead journal of `async-secondary` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JournalConfig {
    /// Its directory; relative to the config file's folder (to the working
    /// directory without a config file).
    pub dir: std::path::PathBuf,
    /// What its segments may hold on disk together.
    pub max_bytes: ByteSize,
    /// A segment is closed and the next begun past this; a segment is
    /// deleted once all its records are acknowledged.
    pub segment_bytes: ByteSize,
    pub durability: JournalDurability,
    pub group_commit_interval: ConfigDuration,
    pub when_full: WhenFull,
    /// Records replayed per second at most (0: no limit).
    pub replay_rate: u32,
    /// Records replayed at once.
    pub replay_concurrency: u32,
    /// Async-secondary writes under way to secondaries at once, over the
    /// proxy; beyond it a write is left to replay.
    pub max_secondary_in_flight: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: "journal".into(),
            max_bytes: ByteSize(1024 * 1024 * 1024),
            segment_bytes: ByteSize(64 * 1024 * 1024),
            durability: JournalDurability::default(),
            group_commit_interval: ConfigDuration(std::time::Duration::from_millis(2)),
            when_full: WhenFull::default(),
            replay_rate: 0,
            replay_concurrency: 64,
            max_secondary_in_flight: 8192,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter (`RUST_LOG` wins when set); changeable at run
    /// time with `PUT /v1/log-level`.
    pub filter: String,
}

/// A `tracing` filter (`info,cutover::proxy=debug`), or why it is not one.
/// Filters are ASCII: tracing-subscriber's parser panics on some multi-byte
/// text (it slices inside a character), so such text is refused here, for
/// the config file, `RUST_LOG` and `PUT /v1/log-level` alike.
pub fn log_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    if let Some(c) = text.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "a log filter is ASCII (targets, levels, span fields); '{c}' is not"
        ));
    }
    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| e.to_string())
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub listen: SocketAddr,
    /// TLS on the client listener (`listen`) when present.
    pub tls: Option<crate::tls::ListenerTls>,
    pub admin: Option<SocketAddr>,
    /// The admin API over TLS when present.
    pub admin_tls: Option<crate::tls::ListenerTls>,
    /// Bearer token for the admin API; required when `admin` is not a
    /// loopback address.
    pub admin_token: Option<Secret>,
    pub ddl: DdlMode,
    /// Threads client connections are served on, each a single-threaded
    /// runtime owning its connections; 0: one per core.
    pub worker_threads: u32,
    pub limits: Limits,
    pub topology: Topology,
    pub clusters: BTreeMap<String, ClusterConfig>,
    pub shards: BTreeMap<String, ShardConfig>,
    pub auth: AuthConfig,
    pub route: RouteConfig,
    pub writes: WritesConfig,
    pub shutdown: ShutdownConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub tenants: TenantsConfig,
    pub journal: JournalConfig,
    /// The route file's fields, as read by `Config::load` (the file is
    /// `route.file`). `routing` decides which of them stand.
    #[serde(skip)]
    pub route_overrides: RouteOverrides,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9042".parse().expect("literal address"),
            tls: None,
            admin: Some("127.0.0.1:9180".parse().expect("literal address")),
            admin_tls: None,
            admin_token: None,
            ddl: DdlMode::default(),
            worker_threads: 0,
            limits: Limits::default(),
            topology: Topology::default(),
            clusters: BTreeMap::new(),
            shards: BTreeMap::new(),
            auth: AuthConfig::default(),
            route: RouteConfig::default(),
            writes: WritesConfig::default(),
            shutdown: ShutdownConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            tenants: TenantsConfig::default(),
            journal: JournalConfig::default(),
            route_overrides: RouteOverrides::default(),
        }
    }
}

impl Config {
    /// Reads, overrides from `vars` (`CUTOVER_*`), and validates.
    pub fn load(
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![format!("cannot read {}: {e}", path.display()).into()])
        })?;
        let mut c = Config::from_toml(&text, vars)?;
        let beside = |file: std::path::PathBuf| match path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file,
        };
        let route_file = match c.route.file.clone() {
            Some(f) => beside(f),
            None => path.with_extension("route.toml"),
        };
        c.route_overrides = read_route_file(&route_file).map_err(ConfigErrors)?;
        let shard = c.route_overrides.merge(&c.route).route.shard;
        if !c.shards.contains_key(&shard) {
            return Err(ConfigErrors(vec![Problem::at("route.shard", format!(
                "the route file {} sets route.shard = \"{shard}\" (through the admin API), but the configured shards are [{}]; remove [shard] from that file or configure the shard",
                route_file.display(),
                c.shards.keys().cloned().collect::<Vec<_>>().join(", ")
            ))]));
        }
        c.route.file = Some(route_file);
        c.journal.dir = beside(c.journal.dir.clone());
        if let Some(dir) = path.parent() {
            for t in [&mut c.tls, &mut c.admin_tls].into_iter().flatten() {
                t.relative_to(dir);
            }
            for t in c.clusters.values_mut().filter_map(|c| c.tls.as_mut()) {
                t.relative_to(dir);
            }
        }
        let problems = c.tls_problems();
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        if let Some(file) = c.tenants.directory_file.clone() {
            let file = beside(file);
            c.tenants.file_entries = read_directory(&file).map_err(ConfigErrors)?;
            c.tenants.directory_file = Some(file);
            let problems = c.problems();
            if !problems.is_empty() {
                return Err(ConfigErrors(problems));
            }
        }
        Ok(c)
    }

    pub fn from_toml(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut value: toml::Value = toml::from_str(text)
            .map_err(|e| ConfigErrors(vec![format!("not valid TOML: {e}").into()]))?;
        let mut errors = env::apply_overrides(&mut value, vars);
        let mut unknown = Vec::new();
        // A key of the wrong type stops deserialization; it is taken out
        // (its default applies) and the rest read again, so every such key
        // is reported at once, not only the first.
        let mut parsed: Result<Config, _>;
        let mut wrong_types = Vec::new();
        loop {
            unknown.clear();
            parsed =
                serde_ignored::deserialize(value.clone(), |path| unknown.push(path.to_string()));
            let Err(e) = &parsed else { break };
            let message = e.to_string();
            match key_of(&message) {
                Some(key) if wrong_types.len() < 100 && remove_key(&mut value, &key) => {
                    let what = message[..message.rfind("in `").unwrap_or(message.len())].trim();
                    let hint = if what.contains("socket address") {
                        " — an IP address and a port, such as 127.0.0.1:9142 or [::1]:9142 (a host name such as localhost is not accepted here)"
                    } else {
                        ""
                    };
                    wrong_types.push(Problem::at(key.clone(), format!("{key}: {what}{hint}")));
                }
                _ => break,
            }
        }
        errors.extend(
            unknown
                .into_iter()
                .map(|k| Problem::at(k.clone(), format!("unknown key `{k}`"))),
        );
        errors.extend(wrong_types);
        match parsed {
            Ok(mut c) => {
                c.fill_defaults();
                errors.extend(c.problems());
                if errors.is_empty() {
                    Ok(c)
                } else {
                    Err(ConfigErrors(errors))
                }
            }
            Err(e) => {
                errors.push(e.to_string().trim().into());
                Err(ConfigErrors(errors))
            }
        }
    }

    /// The config of `cutover run --origin A --target B` (no file).
    pub fn quick_start(
        origin: &str,
        target: &str,
        listen: SocketAddr,
        admin: Option<SocketAddr>,
    ) -> Result<Config, ConfigErrors> {
        let mut c = Config {
            listen,
            admin,
            ..Config::default()
        };
        for (name, addr) in [("origin", origin), ("target", target)] {
            c.clusters.insert(
                name.into(),
                ClusterConfig {
                    contact_points: vec![addr.to_string()],
                    ..Default::default()
                },
            );
        }
        c.fill_defaults();
        let problems = c.problems();
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Defaults that depend on other keys.
    fn fill_defaults(&mut self) {
        if self.topology.instances.is_empty() {
            self.topology.instances.push(self.listen);
        }
        if self.shards.is_empty()
            && self.clusters.contains_key("origin")
            && self.clusters.contains_key("target")
        {
            self.shards.insert(
                "default".into(),
                ShardConfig {
                    origin: "origin".into(),
                    target: "target".into(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;

/// The key a deserialization error names (`... in `a.b.c``).
fn key_of(message: &str) -> Option<String> {
    let at = message.rfind("in `")?;
    let rest = &message[at + 4..];
    Some(rest[..rest.find('`')?].to_string())
}

/// Takes the key at `path` (dotted) out of `value`; false when there is
/// none.
fn remove_key(value: &mut toml::Value, path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let mut v = value;
    for p in parts {
        v = match v {
            toml::Value::Table(t) => match t.get_mut(p) {
                Some(next) => next,
                None => return false,
            },
            toml::Value::Array(a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match v {
        toml::Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}
