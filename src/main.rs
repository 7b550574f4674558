//! The `cutover` command line.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use cutover::admin::{AdminOptions, SetLogFilter};
use cutover::config::{Config, LogFormat};
use cutover::node::{self, NodeConfig};

#[derive(Parser)]
#[command(
    name = "cutover",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BUILD_COMMIT"), ")"),
    about = "A CQL migration proxy and its embedded test node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: a variant's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run two embedded in-memory nodes (origin and target) with the proxy in front; print how to connect.
    Demo {
        /// Origin node address (a free port is used if it is taken).
        #[arg(long, default_value = "127.0.0.1:9043")]
        origin: SocketAddr,
        /// Target node address (a free port is used if it is taken).
        #[arg(long, default_value = "127.0.0.1:9044")]
        target: SocketAddr,
        /// Where the proxy listens: Cassandra's own port, so a bare `cqlsh`
        /// reaches it (a free port is used if it is taken).
        #[arg(long, default_value = "127.0.0.1:9042")]
        listen: SocketAddr,
    },
    /// Run the proxy, from a config file or from quick-start flags.
    Run {
        /// The TOML config (see config/cutover.example.toml).
        #[arg(long, conflicts_with_all = ["origin", "target"])]
        config: Option<std::path::PathBuf>,
        /// Quick start without a file: the origin cluster's contact point.
        #[arg(long, requires = "target")]
        origin: Option<String>,
        /// Quick start without a file: the target cluster's contact point.
        #[arg(long, requires = "origin")]
        target: Option<String>,
        /// Where clients connect (quick start).
        #[arg(long, default_value = "127.0.0.1:9042")]
        listen: SocketAddr,
        /// Admin API address (overrides `admin` in the config file; quick
        /// start: 127.0.0.1:9180, or a free port when that is taken).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Read or change the tenant directory of a running proxy (its admin API).
    Tenants {
        /// The proxy's admin address.
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
        /// Bearer token (default: $CUTOVER_ADMIN_TOKEN).
        #[arg(long)]
        token: Option<String>,
        #[command(flatten)]
        tls: AdminTlsArgs,
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Read or change the default route of a running proxy (its admin API);
    /// a change is kept in the proxy's route file, so reloads keep it.
    Policy {
        /// The proxy's admin address.
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
        /// Bearer token (default: $CUTOVER_ADMIN_TOKEN).
        #[arg(long)]
        token: Option<String>,
        #[command(flatten)]
        tls: AdminTlsArgs,
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Copy a keyspace's tables between clusters, keeping every cell's write
    /// time and TTL (a tenant moving to another shard, made read-only first).
    Copy {
        #[command(flatten)]
        reach: ReachArgs,
        /// The cluster to read from: host:port of a node, or a cluster's
        /// name in --config.
        #[arg(long)]
        from: String,
        /// Each cluster to write to (repeat the flag), as --from.
        #[arg(long, required = true)]
        to: Vec<String>,
        #[arg(long)]
        keyspace: String,
        #[command(flatten)]
        scan: ScanArgs,
    },
    /// Compare a keyspace's tables on two clusters row by row (missing,
    /// extra, differing cells); with --repair, mend the target. Exit status
    /// 1 while differences remain, 2 when the comparison failed.
    Validate {
        #[command(flatten)]
        reach: ReachArgs,
        /// The cluster that holds the truth (host:port, or a cluster of
        /// --config).
        #[arg(long, required_unless_present = "merge")]
        from: Option<String>,
        /// The cluster compared with it.
        #[arg(long, required_unless_present = "merge")]
        to: Option<String>,
        #[arg(long, required_unless_present = "merge")]
        keyspace: Option<String>,
        #[command(flatten)]
        scan: ScanArgs,
        /// Write times this far apart (milliseconds) are the same.
        #[arg(long, default_value_t = 0.0, value_name = "MS")]
        writetime_tolerance_ms: f64,
        /// Remaining TTLs this far apart (seconds) are the same.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        ttl_tolerance: i64,
        /// float and double values this close are the same.
        #[arg(long, default_value_t = 0.0)]
        float_epsilon: f64,
        /// A column not compared (repeat the flag).
        #[arg(long = "ignore-column", value_name = "NAME")]
        ignore_columns: Vec<String>,
        /// How long after a difference is seen both sides are read again.
        #[arg(long, default_value_t = 500, value_name = "MS")]
        recheck_after_ms: u64,
        /// Write what the target lacks or holds older, with the origin's
        /// write times and TTLs (never over a newer cell).
        #[arg(long)]
        repair: bool,
        /// Also delete rows only the target holds (see the README first).
        #[arg(long, requires = "repair")]
        delete_extra: bool,
        /// Compare only the ranges a former report found differing.
        #[arg(long, value_name = "REPORT")]
        ranges_from: Option<std::path::PathBuf>,
        /// Write the report as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        report: Option<std::path::PathBuf>,
        /// Keys of each kind of difference shown per table.
        #[arg(long, default_value_t = 10)]
        samples: usize,
        /// A proxy's admin address: its journal is checked first, and a
        /// backlog of writes not yet on the target is named.
        #[arg(long, value_name = "HOST:PORT")]
        proxy_admin: Option<String>,
        /// Bearer token for --proxy-admin (default: $CUTOVER_ADMIN_TOKEN).
        #[arg(long)]
        admin_token: Option<String>,
        #[command(flatten)]
        admin_tls: AdminTlsArgs,
        /// Join these reports of --split shares into one (nothing is read).
        #[arg(long, value_name = "REPORT", num_args = 1.., conflicts_with_all = ["from", "to", "repair", "ranges_from"])]
        merge: Vec<std::path::PathBuf>,
    },
    /// Send a journal's pending async-secondary writes (no proxy may be
    /// running on it): to a config's clusters, or to one node.
    Replay {
        /// The journal directory (`journal.dir`).
        #[arg(long)]
        journal: std::path::PathBuf,
        /// A proxy config: its clusters, by the names records carry, with
        /// their credentials.
        #[arg(long, conflicts_with = "to", required_unless_present_any = ["to", "dry_run"])]
        config: Option<std::path::PathBuf>,
        /// One node that gets every record, whatever cluster it names.
        #[arg(long)]
        to: Option<String>,
        /// Records per second at most (0: no limit).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Records sent at once.
        #[arg(long, default_value_t = 64)]
        concurrency: u32,
        /// Only count what is pending, per cluster.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a proxy config file (and CUTOVER_* overrides) without starting anything.
    CheckConfig {
        /// The TOML file.
        file: std::path::PathBuf,
    },
    /// Run one embedded in-memory CQL node.
    Node {
        /// Address for CQL clients (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:9042")]
        listen: SocketAddr,
        /// Require PasswordAuthenticator logins; repeat for more users.
        #[arg(long = "user", value_name = "NAME:PASSWORD")]
        users: Vec<String>,
        /// Serve the HTTP control port (fault injection, inspection) here.
        #[arg(long, value_name = "ADDR:PORT")]
        control: Option<SocketAddr>,
        /// Largest frame body accepted, in bytes.
        #[arg(long, default_value_t = cutover::frame::DEFAULT_MAX_FRAME)]
        max_frame_bytes: usize,
        /// Cluster name reported in system.local.
        #[arg(long, default_value = "cutover-embedded")]
        cluster_name: String,
        /// Protocol versions to speak, e.g. 3,4 (default: 3,4,5).
        #[arg(long, value_delimiter = ',', default_value = "3,4,5", value_parser = clap::value_parser!(u8).range(3..=5))]
        protocol_versions: Vec<u8>,
        /// Speak TLS only, with this certificate chain (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Clients must present a certificate these CAs signed (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_client_ca: Option<std::path::PathBuf>,
    },
}

/// `K/N` with 1 ≤ K ≤ N.
/// `A/B` as two numbers, named `a` and `b` in errors.
fn numbers_over(s: &str, a: &str, b: &str) -> Result<(usize, usize), String> {
    let (x, y) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected {a}/{b}"))?;
    let number = |v: &str, name: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?}: {name} is not a number"))
    };
    Ok((number(x, a)?, number(y, b)?))
}

fn parse_split_index(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = numbers_over(s, "I", "N")?;
    if n == 0 || i >= n {
        return Err(format!("{s:?}: I/N needs 0 ≤ I < N, e.g. 0/3"));
    }
    Ok((i + 1, n))
}

fn parse_split(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = numbers_over(s, "K", "N")?;
    if k == 0 || n == 0 || k > n {
        return Err(format!("{s:?}: K/N needs 1 ≤ K ≤ N, e.g. 2/3"));
    }
    Ok((k, n))
}

/// Which rows `copy` and `validate` scan, and how.
#[derive(clap::Args, Clone)]
struct ScanArgs {
    /// Only these tables (repeat the flag; default: every table).
    #[arg(long = "table")]
    tables: Vec<String>,
    /// Only this tenant's rows, for tenants keyed by a column
    /// (COLUMN=VALUE, e.g. tenant_id=wayne); tables without the column in
    /// their partition key are skipped.
    #[arg(long, value_name = "COLUMN=VALUE")]
    tenant: Option<String>,
    /// Rows read per page.
    #[arg(long, default_value_t = 1000)]
    page_size: i32,
    /// Token ranges scanned at once, each on connections of its own.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Ranges per table when the source has no system.size_estimates for
    /// it (else about 10,000 partitions a range), and for --split.
    #[arg(long, default_value_t = 64)]
    splits: usize,
    /// A file of finished ranges (and, for validate, what they held): a run
    /// started again on it scans only what is left.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<std::path::PathBuf>,
    /// Rows read per second at most, over every cluster read (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Only share K of N (e.g. 2/3): N processes, each with its own
    /// --checkpoint, together cover every range once (even splits).
    #[arg(long, value_name = "K/N", value_parser = parse_split)]
    split: Option<(usize, usize)>,
    /// --split by a 0-based index I of N (share I+1), such as a Kubernetes
    /// Indexed Job's $(JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "I/N", value_parser = parse_split_index, conflicts_with = "split")]
    split_index: Option<(usize, usize)>,
}

impl ScanArgs {
    fn tenant(&self) -> Result<Option<(String, String)>> {
        parse_tenant(self.tenant.as_deref())
    }

    fn split(&self) -> Option<(usize, usize)> {
        self.split.or(self.split_index)
    }
}

/// How `copy` and `validate` reach clusters: a proxy config's clusters by
/// name, or host:port with these login and TLS flags.
#[derive(clap::Args, Clone, Default)]
struct ReachArgs {
    /// A proxy config: --from and --to may name its clusters, reached with
    /// their credentials and TLS.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Login for clusters given as host:port, as USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    user: Option<String>,
    /// TLS towards clusters given as host:port, trusting these CAs (PEM).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the nodes' certificates must carry (default: the address).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// A client certificate (PEM), for clusters that verify clients.
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<std::path::PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The consistency of every read and write: one, quorum, local_quorum,
    /// all, ... (a replica behind at ONE would show as a difference).
    #[arg(long, default_value = "local_quorum", value_parser = cutover::scan::consistency_named)]
    consistency: u16,
}

impl ReachArgs {
    fn reach(&self) -> Result<cutover::scan::Reach> {
        let config = match &self.config {
            Some(path) => Some(
                Config::load(path, std::env::vars())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(cutover::scan::Reach {
            consistency: self.consistency,
            config,
            credentials: self.user.as_deref().map(parse_user).transpose()?,
            tls: self.tls_ca.as_ref().map(|ca| cutover::tls::ClusterTls {
                ca_file: Some(ca.clone()),
                server_name: self.tls_server_name.clone(),
                cert_file: self.tls_cert.clone(),
                key_file: self.tls_key.clone(),
                insecure_skip_verify: false,
            }),
        })
    }

    async fn endpoints(
        &self,
        from: &str,
        to: &[String],
    ) -> Result<(cutover::scan::Endpoint, Vec<cutover::scan::Endpoint>)> {
        let reach = self.reach()?;
        let from = reach
            .endpoint(from)
            .await
            .map_err(|e| anyhow::anyhow!("--from: {e}"))?;
        let mut tos = Vec::new();
        for t in to {
            tos.push(
                reach
                    .endpoint(t)
                    .await
                    .map_err(|e| anyhow::anyhow!("--to: {e}"))?,
            );
        }
        Ok((from, tos))
    }
}

/// HTTPS towards an admin API served with `[admin_tls]`.
#[derive(clap::Args, Clone, Default)]
struct AdminTlsArgs {
    /// Speak HTTPS to the admin API, trusting these CAs (PEM); its
    /// certificate must name the admin address's IP.
    #[arg(long, value_name = "FILE")]
    admin_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM), when the admin API verifies clients.
    #[arg(
        long,
        value_name = "FILE",
        requires = "admin_key",
        requires = "admin_ca"
    )]
    admin_cert: Option<std::path::PathBuf>,
    /// The key of --admin-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "admin_cert")]
    admin_key: Option<std::path::PathBuf>,
}

impl AdminTlsArgs {
    fn to(&self, admin: SocketAddr) -> Result<Option<cutover::client::TlsTo>> {
        let Some(ca) = &self.admin_ca else {
            return Ok(None);
        };
        let config = cutover::tls::client_config(&cutover::tls::ClusterTls {
            ca_file: Some(ca.clone()),
            cert_file: self.admin_cert.clone(),
            key_file: self.admin_key.clone(),
            ..Default::default()
        })
        .map_err(|e| anyhow::anyhow!("--admin-ca: {e}"))?;
        Ok(Some(cutover::client::TlsTo {
            config,
            name: rustls::pki_types::ServerName::IpAddress(admin.ip().into()),
        }))
    }
}

#[derive(Subcommand)]
enum PolicyAction {
    /// The policy in force and where each field of the route comes from.
    Show,
    /// Change fields of the default route; returns once in force.
    Set {
        /// origin-only, dual-write, shadow-reads, target-primary, target-only.
        #[arg(long)]
        phase: Option<String>,
        /// sync or async-secondary.
        #[arg(long)]
        write_mode: Option<String>,
        #[arg(long)]
        shard: Option<String>,
        /// Also shadow reads to the origin in target-primary (true/false).
        #[arg(long)]
        shadow_target_primary: Option<bool>,
        /// Move reads even to a cluster the journal still holds writes for.
        #[arg(long)]
        force: bool,
        /// On every instance of `[topology] admin_instances`.
        #[arg(long)]
        fleet: bool,
    },
}

#[derive(Subcommand)]
enum TenantAction {
    /// Every tenant with an entry.
    List,
    /// One tenant's entry.
    Show { tenant: String },
    /// Set fields of a tenant's entry (created if missing); returns once in
    /// force (and, for read-only, once its writes under way have finished).
    Set {
        tenant: String,
        #[arg(long)]
        phase: Option<String>,
        /// read-write, read-only or not-ready.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        shard: Option<String>,
        /// sync or async-secondary.
        #[arg(long)]
        write_mode: Option<String>,
        /// Move the tenant's reads even to a cluster the journal still
        /// holds writes for.
        #[arg(long)]
        force: bool,
        /// On every instance of `[topology] admin_instances`.
        #[arg(long)]
        fleet: bool,
    },
    /// Remove a tenant's entry: it takes the default route again.
    Delete {
        tenant: String,
        #[arg(long)]
        fleet: bool,
    },
}

/// `cutover tenants ...`: one admin API call; its JSON answer on stdout,
/// its errors on stderr with exit status 1.
async fn tenants(admin: Admin, action: TenantAction) -> Result<()> {
    let fleet = |f: bool| if f { "?fleet=true" } else { "" };
    let (method, path, body) = match action {
        TenantAction::List => ("GET", "/v1/tenants".to_string(), None),
        TenantAction::Show { tenant } => ("GET", format!("/v1/tenants/{tenant}"), None),
        TenantAction::Set {
            tenant,
            phase,
            status,
            shard,
            write_mode,
            force,
            fleet: f,
        } => {
            let mut b = serde_json::Map::new();
            for (k, v) in [
                ("phase", phase),
                ("status", status),
                ("shard", shard),
                ("write_mode", write_mode),
            ] {
                if let Some(v) = v {
                    b.insert(k.into(), v.into());
                }
            }
            if b.is_empty() {
                bail!("give at least one of --phase, --status, --shard, --write-mode");
            }
            if force {
                b.insert("force".into(), true.into());
            }
            (
                "PUT",
                format!("/v1/tenants/{tenant}{}", fleet(f)),
                Some(serde_json::Value::Object(b).to_string()),
            )
        }
        TenantAction::Delete { tenant, fleet: f } => {
            ("DELETE", format!("/v1/tenants/{tenant}{}", fleet(f)), None)
        }
    };
    admin_call(&admin, method, &path, body).await
}

/// `cutover policy ...`: one admin API call, as `tenants`.
async fn policy(admin: Admin, action: PolicyAction) -> Result<()> {
    let (method, path, body) = match action {
        PolicyAction::Show => ("GET", "/v1/policy".to_string(), None),
        PolicyAction::Set {
            phase,
            write_mode,
            shard,
            shadow_target_primary,
            force,
            fleet,
        } => {
            let mut route = serde_json::Map::new();
            for (k, v) in [
                ("phase", phase),
                ("write_mode", write_mode),
                ("shard", shard),
            ] {
                if let Some(v) = v {
                    route.insert(k.into(), v.into());
                }
            }
            if let Some(b) = shadow_target_primary {
                route.insert("shadow_target_primary".into(), b.into());
            }
            if route.is_empty() {
                bail!(
                    "give at least one of --phase, --write-mode, --shard, --shadow-target-primary"
                );
            }
            (
                "PUT",
                format!("/v1/policy{}", if fleet { "?fleet=true" } else { "" }),
                Some(
                    if force {
                        serde_json::json!({ "route": route, "force": true })
                    } else {
                        serde_json::json!({ "route": route })
                    }
                    .to_string(),
                ),
            )
        }
    };
    admin_call(&admin, method, &path, body).await
}

/// One admin API call: its JSON answer on stdout, or its errors on stderr
/// with exit status 1.
/// Where the admin CLI commands send their call.
struct Admin {
    addr: SocketAddr,
    token: Option<String>,
    tls: Option<cutover::client::TlsTo>,
}

impl Admin {
    fn new(addr: SocketAddr, token: Option<String>, tls: &AdminTlsArgs) -> Result<Admin> {
        Ok(Admin {
            addr,
            token: token.or_else(|| std::env::var("CUTOVER_ADMIN_TOKEN").ok()),
            tls: tls.to(addr)?,
        })
    }
}

async fn admin_call(admin: &Admin, method: &str, path: &str, body: Option<String>) -> Result<()> {
    let (status, answer) = cutover::admin::client::request(
        admin.addr,
        admin.tls.as_ref(),
        method,
        path,
        body.as_deref(),
        admin.token.as_deref(),
        std::time::Duration::from_secs(120),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    let pretty = serde_json::from_str::<serde_json::Value>(&answer)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(answer);
    if status == 200 {
        println!("{pretty}");
        Ok(())
    } else {
        eprintln!("{method} {path}: HTTP {status}\n{pretty}");
        std::process::exit(1);
    }
}

fn parse_tenant(t: Option<&str>) -> Result<Option<(String, String)>> {
    match t.map(|t| t.split_once('=')) {
        None => Ok(None),
        Some(Some((c, v))) if !c.is_empty() => Ok(Some((c.to_string(), v.to_string()))),
        Some(_) => bail!("--tenant takes COLUMN=VALUE, e.g. --tenant tenant_id=wayne"),
    }
}

fn read_report(path: &std::path::Path) -> Result<cutover::validate::ValidateReport> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a report of cutover validate --report: {e}",
            path.display()
        )
    })
}

/// What a proxy's journal says about writes not yet on a cluster, as
/// warnings (and why it could not be asked).
async fn journal_backlog(admin: &Admin) -> Vec<String> {
    let answer = cutover::admin::client::request(
        admin.addr,
        admin.tls.as_ref(),
        "GET",
        "/v1/journal",
        None,
        admin.token.as_deref(),
        std::time::Duration::from_secs(10),
    )
    .await;
    let v = match answer {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(),
        Ok((status, body)) => {
            return vec![format!(
                "the journal of the proxy at {} could not be checked: HTTP {status} {body}",
                admin.addr
            )]
        }
        Err(e) => {
            return vec![format!(
                "the journal of the proxy at {} could not be checked: {e}",
                admin.addr
            )]
        }
    };
    let pending = v["pending_records"].as_u64().unwrap_or(0);
    if pending == 0 {
        return Vec::new();
    }
    let by: Vec<String> = v["pending_by_cluster"]
        .as_object()
        .map(|m| m.iter().map(|(c, n)| format!("{c}: {n}")).collect())
        .unwrap_or_default();
    vec![format!(
        "the proxy at {} still holds {pending} write(s) in its journal not yet applied ({}): differences on those clusters are expected until they are replayed",
        admin.addr,
        by.join(", ")
    )]
}

fn parse_user(s: &str) -> Result<(String, String)> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => bail!("--user expects NAME:PASSWORD, got {s:?}"),
    }
}

/// Logs to stderr, text or JSON, with a filter that can change while
/// running (`RUST_LOG` wins over the configured one at start).
fn init_logging(format: LogFormat, filter: &str) -> SetLogFilter {
    use cutover::config::log_filter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| match log_filter(&f) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("warning: RUST_LOG is not used: {e}");
                None
            }
        });
    let initial = from_env
        .or_else(|| log_filter(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (layer, handle) = reload::Layer::new(initial);
    let registry = tracing_subscriber::registry().with(layer);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours on a terminal only: not in a file or a journal.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
    }
    std::sync::Arc::new(move |f: &str| {
        let new = log_filter(f)?;
        handle.reload(new).map_err(|e| e.to_string())
    })
}

/// Starts the admin API, or explains why it cannot.
async fn start_admin(
    proxy: &cutover::proxy::RunningProxy,
    addr: SocketAddr,
    token: Option<String>,
    set_log_filter: SetLogFilter,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<SocketAddr> {
    let opts = AdminOptions {
        addr,
        token,
        set_log_filter: Some(set_log_filter),
    };
    let admin = cutover::admin::serve(proxy.proxy.clone(), opts, stop.clone())
        .await
        .with_context(|| {
            format!(
                "cannot listen for the admin API on {addr} (set `admin` in the config, or --admin)"
            )
        })?;
    Ok(admin.addr)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // One-shot commands end quietly when what reads their output stops
    // (`cutover check-config FILE | head -1`), as other Unix tools do; the
    // proxy and the node keep Rust's default (a closed socket is an error,
    // not a signal).
    if !matches!(
        cli.command,
        Command::Run { .. } | Command::Demo { .. } | Command::Node { .. }
    ) {
        // SAFETY: before any other thread writes; restores the default.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // A user's error is one line, whatever RUST_BACKTRACE says.
    if let Err(e) = run_command(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run_command(cli: Cli) -> Result<()> {
    let log_config = match &cli.command {
        Command::Run {
            config: Some(file), ..
        } => Config::load(file, std::env::vars()).map(|c| c.log).ok(),
        _ => None,
    }
    .unwrap_or_default();
    let set_log_filter = init_logging(log_config.format, &log_config.filter);
    match cli.command {
        Command::Run {
            config,
            origin,
            target,
            listen,
            admin,
        } => {
            let config_file = config.clone();
            // Quick start gets the admin API where a config's would be,
            // or a free port when that one is taken.
            let quick_admin = config.is_none() && admin.is_none();
            let admin = match quick_admin {
                true => Some(SocketAddr::from(([127, 0, 0, 1], 9180))),
                false => admin,
            };
            let cfg = match (config, origin, target) {
                (Some(file), _, _) => Config::load(&file, std::env::vars())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display())),
                (None, Some(o), Some(t)) => {
                    Config::quick_start(&o, &t, listen, admin).map_err(|e| anyhow::anyhow!("{e}"))
                }
                _ => Err(anyhow::anyhow!(
                    "give --config FILE, or --origin HOST:PORT --target HOST:PORT"
                )),
            };
            let cfg = match cfg {
                Ok(mut c) => {
                    if admin.is_some() {
                        c.admin = admin;
                    }
                    c
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(2);
                }
            };
            let grace = cfg.shutdown.grace_period.0;
            let (admin, token) = (
                cfg.admin,
                cfg.admin_token.as_ref().map(|t| t.expose().to_string()),
            );
            let running = cutover::proxy::start_from(cfg, config_file).await?;
            let stop_admin = tokio_util::sync::CancellationToken::new();
            let admin = match admin {
                Some(a) => {
                    let first = start_admin(
                        &running,
                        a,
                        token.clone(),
                        set_log_filter.clone(),
                        &stop_admin,
                    )
                    .await;
                    let started = match first {
                        Err(e) if quick_admin => {
                            tracing::warn!(error = %format!("{e:#}"), "the admin API takes a free port instead of 127.0.0.1:9180");
                            let any = SocketAddr::from(([127, 0, 0, 1], 0));
                            start_admin(&running, any, token, set_log_filter, &stop_admin).await
                        }
                        other => other,
                    };
                    match started {
                        Ok(a) => Some(a),
                        Err(e) => {
                            eprintln!("{e:#}");
                            running.stop().await;
                            std::process::exit(2);
                        }
                    }
                }
                None => None,
            };
            // Tests and scripts read these lines to find the ports.
            println!("cutover proxy listening on {}", running.addr);
            if let Some(a) = admin {
                let scheme = if running.proxy.admin_tls().is_some() {
                    "https"
                } else {
                    "http"
                };
                println!("admin listening on {scheme}://{a}");
            }
            if let Some(a) = running.plaintext_addr {
                println!("cutover proxy plaintext listener on {a}");
            }
            if running.proxy.config().tls.is_some() {
                tracing::info!(addr = %running.addr, mtls = running.proxy.config().tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()), "the client listener speaks TLS");
            }
            loop {
                match wait_for_signal().await {
                    Signal::Hangup => {
                        // Logged per section; the certificates in force stay on a problem.
                        let _ = running.proxy.reload_tls("SIGHUP");
                        if let Err(problems) = running.proxy.routing().reload("SIGHUP").await {
                            tracing::error!(
                                problems = ?cutover::config::messages(&problems),
                                "SIGHUP: the config was refused; the running policy stays"
                            );
                        }
                    }
                    Signal::Terminate => {
                        running.drain(grace).await;
                        break;
                    }
                    Signal::Interrupt => {
                        running.stop().await;
                        break;
                    }
                }
            }
            stop_admin.cancel();
        }
        Command::Tenants {
            admin,
            token,
            tls,
            action,
        } => tenants(Admin::new(admin, token, &tls)?, action).await?,
        Command::Policy {
            admin,
            token,
            tls,
            action,
        } => policy(Admin::new(admin, token, &tls)?, action).await?,
        Command::Validate {
            reach,
            from,
            to,
            keyspace,
            scan,
            writetime_tolerance_ms,
            ttl_tolerance,
            float_epsilon,
            ignore_columns,
            recheck_after_ms,
            repair,
            delete_extra,
            ranges_from,
            report,
            samples,
            proxy_admin,
            admin_token,
            admin_tls,
            merge,
        } => {
            use cutover::validate::{Tolerance, ValidateOptions, ValidateReport};
            let write = |r: &ValidateReport| -> Result<()> {
                if let Some(path) = &report {
                    std::fs::write(path, serde_json::to_string_pretty(r)? + "\n")
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                }
                print!("{}", r.human());
                Ok(())
            };
            if !merge.is_empty() {
                let mut reports = Vec::new();
                for path in &merge {
                    reports.push(read_report(path)?);
                }
                let r = ValidateReport::merge(&reports, samples).map_err(|e| anyhow::anyhow!(e))?;
                write(&r)?;
                std::process::exit(if r.remaining() > 0 { 1 } else { 0 });
            }
            let started = std::time::Instant::now();
            let (from, to) = reach
                .endpoints(
                    from.as_deref().unwrap_or_default(),
                    &[to.unwrap_or_default()],
                )
                .await?;
            let only = match &ranges_from {
                Some(path) => {
                    let r = read_report(path)?;
                    Some(
                        r.tables
                            .into_iter()
                            .filter(|t| !t.differing_ranges.is_empty())
                            .map(|t| (t.table, t.differing_ranges))
                            .collect(),
                    )
                }
                None => None,
            };
            let mut warnings = Vec::new();
            if let Some(spec) = proxy_admin {
                let addr = tokio::net::lookup_host(spec.as_str())
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        anyhow::anyhow!("--proxy-admin {spec}: not an address (HOST:PORT)")
                    })?;
                let admin = Admin::new(addr, admin_token, &admin_tls)?;
                warnings.extend(journal_backlog(&admin).await);
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            let o = ValidateOptions {
                from,
                to: to.into_iter().next().expect("one --to"),
                keyspace: keyspace.unwrap_or_default(),
                tenant: scan.tenant()?,
                split: scan.split(),
                tables: scan.tables,
                page_size: scan.page_size,
                concurrency: scan.concurrency,
                splits: scan.splits,
                checkpoint: scan.checkpoint,
                rate: scan.rate,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                tolerance: Tolerance {
                    writetime_us: (writetime_tolerance_ms * 1000.0) as i64,
                    ttl_s: ttl_tolerance,
                    float_epsilon,
                    ignore: ignore_columns,
                },
                recheck_after: std::time::Duration::from_millis(recheck_after_ms),
                repair,
                delete_extra,
                only,
                samples,
            };
            match cutover::validate::validate(&o, warnings).await {
                Ok(r) => {
                    write(&r)?;
                    let rows: u64 = r.tables.iter().map(|t| t.found.rows_compared).sum();
                    eprintln!(
                        "compared {rows} row(s) of {} table(s) in {:.1} s",
                        r.tables.len(),
                        started.elapsed().as_secs_f64()
                    );
                    std::process::exit(if r.remaining() > 0 { 1 } else { 0 });
                }
                Err(e) => {
                    eprintln!("validate failed: {e}");
                    std::process::exit(2);
                }
            }
        }
        Command::Replay {
            journal,
            config,
            to,
            rate,
            concurrency,
            dry_run,
        } => {
            use cutover::journal::offline::{run, Destination, ReplayArgs};
            let to = match (config, to) {
                (Some(path), _) => Destination::Config(Box::new(
                    Config::load(&path, std::env::vars())
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                )),
                (None, Some(addr)) => Destination::To(addr),
                (None, None) => Destination::To(String::new()),
            };
            let s = run(ReplayArgs {
                journal,
                to,
                rate,
                concurrency,
                dry_run,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            let pending: u64 = s.pending.iter().map(|(_, n)| n).sum();
            if s.dry_run {
                eprintln!("{pending} record(s) pending; nothing sent (--dry-run)");
            } else {
                eprintln!(
                    "replayed {} of {pending} record(s) in {:.1} s ({:.0}/s); {} expired, {} dead-lettered, {} left",
                    s.replayed,
                    s.seconds,
                    s.replayed as f64 / s.seconds.max(0.001),
                    s.expired,
                    s.dead_lettered,
                    s.left
                );
                if s.left > 0 {
                    bail!(
                        "{} record(s) could not be sent now ({}); they stay in the journal: run again",
                        s.left,
                        s.last_error.as_deref().unwrap_or("no reason given")
                    );
                }
            }
        }
        Command::Copy {
            reach,
            from,
            to,
            keyspace,
            scan,
        } => {
            let started = std::time::Instant::now();
            let (from, to) = reach.endpoints(&from, &to).await?;
            let o = cutover::copy::CopyOptions {
                from,
                to,
                keyspace,
                tenant: scan.tenant()?,
                split: scan.split(),
                tables: scan.tables,
                page_size: scan.page_size,
                concurrency: scan.concurrency,
                splits: scan.splits,
                checkpoint: scan.checkpoint,
                rate: scan.rate,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            match cutover::copy::copy(&o).await {
                Ok(r) => {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                    for t in &r.tables {
                        eprintln!(
                            "  {}: {} row(s), {} range(s){}",
                            t.table,
                            t.rows,
                            t.ranges,
                            if t.ranges_already_done > 0 {
                                format!(" ({} done before)", t.ranges_already_done)
                            } else {
                                String::new()
                            }
                        );
                        for n in &t.notes {
                            eprintln!("    note: {n}");
                        }
                    }
                    let secs = started.elapsed().as_secs_f64();
                    let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
                    eprintln!(
                        "copied {rows} row(s) of {} table(s) in {secs:.1} s ({:.0} rows/s)",
                        r.tables.len(),
                        rows as f64 / secs.max(0.001)
                    );
                }
                Err(e) => {
                    eprintln!("copy failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(&file, std::env::vars()) {
            Ok(c) => {
                println!("{}: valid", file.display());
                use cutover::config::route_file_spelled as spelled;
                let m = c.route_overrides.merge(&c.route);
                println!(
                    "  listen {}, {} cluster(s), {} shard(s), route: shard {} phase {} write mode {}",
                    c.listen,
                    c.clusters.len(),
                    c.shards.len(),
                    m.route.shard,
                    spelled(&m.route.phase).trim_matches('"'),
                    spelled(&m.route.write_mode).trim_matches('"')
                );
                if let Some(f) = &c.route.file {
                    if m.kept.is_empty() {
                        println!("  route file {}: sets nothing", f.display());
                    } else {
                        println!(
                            "  route file {}: sets {} (through the admin API)",
                            f.display(),
                            serde_json::to_string(&m.kept).unwrap_or_default()
                        );
                    }
                }
                for d in &m.dropped {
                    println!("  {d}");
                }
                if let Some(t) = &c.tls {
                    println!(
                        "  TLS on {} (certificate {}{}){}",
                        c.listen,
                        t.cert_file.display(),
                        t.client_ca_file
                            .as_ref()
                            .map(|ca| format!(
                                "; clients must present a certificate {} signed",
                                ca.display()
                            ))
                            .unwrap_or_default(),
                        t.plaintext_listen
                            .map(|a| format!("; plaintext listener {a}"))
                            .unwrap_or_default()
                    );
                }
                if let (Some(a), Some(t)) = (c.admin, &c.admin_tls) {
                    println!(
                        "  admin API over HTTPS on {a} (certificate {})",
                        t.cert_file.display()
                    );
                }
                for (name, cl) in &c.clusters {
                    let Some(t) = &cl.tls else { continue };
                    let verifying = if t.insecure_skip_verify {
                        "verifying NOTHING (insecure_skip_verify)".to_string()
                    } else {
                        format!(
                            "verifying {} against {}",
                            t.server_name.clone().unwrap_or_else(|| {
                                "each contact point's host (a discovered node's IP)".into()
                            }),
                            t.ca_file
                                .as_ref()
                                .map(|f| f.display().to_string())
                                .unwrap_or_else(|| "the system's CAs".into())
                        )
                    };
                    println!(
                        "  clusters.{name}: TLS, {verifying}{}",
                        t.cert_file
                            .as_ref()
                            .map(|f| format!(", client certificate {}", f.display()))
                            .unwrap_or_default()
                    );
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                std::process::exit(2);
            }
        },
        Command::Node {
            listen,
            users,
            control,
            max_frame_bytes,
            cluster_name,
            protocol_versions,
            tls_cert,
            tls_key,
            tls_client_ca,
        } => {
            let mut cfg = NodeConfig::new(listen);
            if let (Some(cert_file), Some(key_file)) = (tls_cert, tls_key) {
                let t = cutover::tls::ListenerTls {
                    cert_file,
                    key_file,
                    client_ca_file: tls_client_ca,
                    plaintext_listen: None,
                    ca_file: None,
                };
                cfg.tls =
                    Some(cutover::tls::server_config(&t).map_err(|e| anyhow::anyhow!("{e}"))?);
            }
            cfg.users = users.iter().map(|u| parse_user(u)).collect::<Result<_>>()?;
            cfg.control = control;
            cfg.codec.max_frame = max_frame_bytes;
            cfg.cluster_name = cluster_name;
            cfg.protocol_versions = protocol_versions;
            let running = node::start(cfg)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            // Tests and scripts read these two lines to find the ports.
            println!("cql listening on {}", running.addr);
            if let Some(c) = running.control_addr {
                println!("control listening on http://{c}");
            }
            wait_for_stop().await;
            running.shutdown().await;
        }
        Command::Demo {
            origin,
            target,
            listen,
        } => {
            let o = start_preferring(origin, "origin").await?;
            let t = start_preferring(target, "target").await?;
            // A config of its own in a fresh folder: tenants by keyspace
            // (t_NAME is tenant NAME) with a directory file the admin API
            // writes, and a route file for live flips.
            let dir = std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let file = dir.join("cutover.toml");
            let write_config = |listen: SocketAddr| {
                std::fs::write(
                    &file,
                    format!(
                        "listen = \"{listen}\"\n\
                         [clusters.origin]\ncontact_points = [\"{}\"]\n\
                         [clusters.target]\ncontact_points = [\"{}\"]\n\
                         [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\ndirectory_file = \"directory.toml\"\n",
                        o.addr, t.addr
                    ),
                )
            };
            write_config(listen)?;
            std::fs::write(dir.join("directory.toml"), "")?;
            let load = || Config::load(&file, Vec::new()).map_err(|e| anyhow::anyhow!("{e}"));
            let proxy = match cutover::proxy::start_from(load()?, Some(file.clone())).await {
                Ok(p) => p,
                Err(cutover::proxy::ProxyError::Listen { .. }) => {
                    eprintln!("{listen} is in use; the proxy takes a free port instead");
                    write_config(SocketAddr::new(listen.ip(), 0))?;
                    cutover::proxy::start_from(load()?, Some(file.clone())).await?
                }
                Err(e) => return Err(e.into()),
            };
            let stop_admin = tokio_util::sync::CancellationToken::new();
            let demo_admin: SocketAddr = "127.0.0.1:9180".parse().expect("literal address");
            let admin = match start_admin(
                &proxy,
                demo_admin,
                None,
                set_log_filter.clone(),
                &stop_admin,
            )
            .await
            {
                Ok(a) => a,
                Err(_) => {
                    eprintln!("{demo_admin} is in use; the admin API takes a free port instead");
                    let any = SocketAddr::new(demo_admin.ip(), 0);
                    start_admin(&proxy, any, None, set_log_filter, &stop_admin).await?
                }
            };
            let p = proxy.addr;
            println!(
                "cutover demo: a dual-write proxy in front of two embedded in-memory CQL nodes."
            );
            println!();
            println!(
                "  proxy   {:<21}  connect: cqlsh {} {}",
                p,
                p.ip(),
                p.port()
            );
            println!(
                "  origin  {:<21}  connect: cqlsh {} {}   (reads come from here)",
                o.addr,
                o.addr.ip(),
                o.addr.port()
            );
            println!(
                "  target  {:<21}  connect: cqlsh {} {}",
                t.addr,
                t.addr.ip(),
                t.addr.port()
            );
            println!("  admin   http://{admin}/  (the live page)   /metrics   /health/ready");
            println!();
            println!("Writes through the proxy land on both nodes with the same write time;");
            println!("reads are answered by the origin. Any CQL driver works (v3, v4 or v5;");
            println!("LZ4 or Snappy). A keyspace t_NAME belongs to tenant NAME:");
            println!("  cutover policy --admin {admin} set --phase target-primary   # reads move to the target");
            println!("  cutover tenants --admin {admin} set acme --status read-only  # t_acme's writes refused");
            println!(
                "Config and directory: {}. Press Ctrl-C to stop.",
                dir.display()
            );
            wait_for_stop().await;
            stop_admin.cancel();
            proxy.stop().await;
            o.shutdown().await;
            t.shutdown().await;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(())
}

/// Starts a node on `addr`, or on a free port when `addr` is taken.
async fn start_preferring(addr: SocketAddr, role: &str) -> Result<node::RunningNode> {
    match node::start(NodeConfig::new(addr)).await {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let any = SocketAddr::new(addr.ip(), 0);
            eprintln!("{addr} is in use; the {role} node takes a free port instead");
            node::start(NodeConfig::new(any))
                .await
                .with_context(|| format!("cannot start the {role} node on {any}"))
        }
        Err(e) => Err(e).with_context(|| format!("cannot start the {role} node on {addr}")),
    }
}

enum Signal {
    /// SIGTERM: drain.
    Terminate,
    /// SIGINT (Ctrl-C): stop at once.
    Interrupt,
    /// SIGHUP: reload the config file.
    Hangup,
}

async fn wait_for_signal() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
        _ = hup.recv() => Signal::Hangup,
    }
}

/// Waits for SIGTERM or SIGINT; SIGHUP means nothing here.
async fn wait_for_stop() {
    while let Signal::Hangup = wait_for_signal().await {}
}
