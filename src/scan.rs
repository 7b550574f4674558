//! What `copy` and `validate` share: reaching a cluster (login, TLS), a
//! keyspace's schema, a table's token ranges, the rows of a page, and a
//! rate limit over every worker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::client::{Client, ClientError, TlsTo};
use crate::protocol::consistency;
use crate::protocol::reader::RawValue;
use crate::protocol::response::{ResultBody, Rows};
use crate::ranges::{even, from_estimates, share, Estimate, Range};

/// One node of a cluster and how to log in to it.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub credentials: Option<(String, String)>,
    /// TLS, and the name the node's certificate must carry (its IP address
    /// when None).
    pub tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    /// The consistency of every read and write on it.
    pub consistency: u16,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("tls", &self.tls.is_some())
            .field("consistency", &self.consistency)
            .finish()
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            credentials: None,
            tls: None,
            consistency: consistency::LOCAL_QUORUM,
        }
    }
}

impl Endpoint {
    /// Connects (protocol v4) and logs in.
    pub async fn connect(&self) -> Result<Client, String> {
        let creds = self
            .credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()));
        let tls = self.tls.as_ref().map(|(config, name)| TlsTo {
            config: config.clone(),
            name: name
                .as_ref()
                .and_then(|n| rustls::pki_types::ServerName::try_from(n.clone()).ok())
                .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(self.addr.ip().into())),
        });
        let mut c = Client::connect_tls(self.addr, 4, None, creds, tls.as_ref())
            .await
            .map_err(|e| failed(&format!("cannot connect to {}", self.addr), e))?;
        c.consistency = self.consistency;
        Ok(c)
    }
}

/// A column as `system_schema.columns` describes it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: String,
    pub position: i32,
    pub typ: String,
}

impl Column {
    pub fn is_key(&self) -> bool {
        self.kind == "partition_key" || self.kind == "clustering"
    }

    /// A non-frozen collection: no WRITETIME/TTL selector for it.
    pub fn multi_cell(&self) -> bool {
        ["list<", "set<", "map<"]
            .iter()
            .any(|p| self.typ.starts_with(p))
    }
}

/// A CQL identifier, quoted so that any name works.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn text(b: &Option<Bytes>) -> String {
    b.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// An `int` or `bigint` cell (a write time, a TTL, a token, a count).
pub fn int(b: &Option<Bytes>) -> Option<i64> {
    let b = b.as_ref()?;
    match b.len() {
        8 => Some(i64::from_be_bytes(<[u8; 8]>::try_from(&b[..]).ok()?)),
        4 => Some(i32::from_be_bytes(<[u8; 4]>::try_from(&b[..]).ok()?) as i64),
        _ => None,
    }
}

pub fn cell<'a>(rows: &Rows, row: &'a [Option<Bytes>], name: &str) -> &'a Option<Bytes> {
    static NONE: Option<Bytes> = None;
    rows.metadata
        .columns
        .iter()
        .position(|c| c.name == name)
        .and_then(|i| row.get(i))
        .unwrap_or(&NONE)
}

pub fn failed(what: &str, e: ClientError) -> String {
    format!("{what}: {e}")
}

/// The keyspace's tables and their columns, keys first in key order.
pub async fn schema(
    c: &mut Client,
    keyspace: &str,
) -> Result<BTreeMap<String, Vec<Column>>, String> {
    let q = format!(
        "SELECT table_name, column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = '{}'",
        keyspace.replace('\'', "''")
    );
    let ResultBody::Rows(rows) = c
        .query(&q)
        .await
        .map_err(|e| failed("cannot read the source's schema", e))?
    else {
        return Err("the source answered its schema query without rows".into());
    };
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for row in &rows.rows {
        let position = int(cell(&rows, row, "position")).unwrap_or(-1) as i32;
        tables
            .entry(text(cell(&rows, row, "table_name")))
            .or_default()
            .push(Column {
                name: text(cell(&rows, row, "column_name")),
                kind: text(cell(&rows, row, "kind")),
                position,
                typ: text(cell(&rows, row, "type")),
            });
    }
    let rank = |k: &str| match k {
        "partition_key" => 0,
        "clustering" => 1,
        "static" => 2,
        _ => 3,
    };
    for cols in tables.values_mut() {
        cols.sort_by(|a, b| {
            (rank(&a.kind), a.position, &a.name).cmp(&(rank(&b.kind), b.position, &b.name))
        });
    }
    Ok(tables)
}

/// ` WHERE column = value` for a table partitioned by the tenant column
/// (with ALLOW FILTERING when the partition key has other columns too); None
/// for a table without it in its partition key.
pub fn tenant_restriction(
    columns: &[Column],
    column: &str,
    value: &str,
) -> Result<Option<String>, String> {
    let partition: Vec<&Column> = columns
        .iter()
        .filter(|c| c.kind == "partition_key")
        .collect();
    let Some(c) = partition.iter().find(|c| c.name == column) else {
        return Ok(None);
    };
    let literal = match c.typ.as_str() {
        "text" | "varchar" | "ascii" => format!("'{}'", value.replace('\'', "''")),
        "int" | "bigint" | "smallint" | "tinyint" | "varint"
            if value.parse::<i128>().is_ok() =>
        {
            value.to_string()
        }
        "uuid" | "timeuuid"
            if value.len() == 36
                && value
                    .chars()
                    .all(|ch| ch.is_ascii_hexdigit() || ch == '-') =>
        {
            value.to_string()
        }
        other => {
            return Err(format!(
                "--tenant {column}={value}: the column is {other}, and \"{value}\" is not a value of it the copy can write (text, an integer or a UUID)"
            ))
        }
    };
    let filtering = if partition.len() > 1 {
        " ALLOW FILTERING"
    } else {
        ""
    };
    Ok(Some(format!(
        " WHERE {} = {literal}{filtering}",
        quote(column)
    )))
}

/// A range of about this many partitions, when the source estimates them.
pub const PARTITIONS_PER_RANGE: u64 = 10_000;

/// Rows read per second at most, over every worker.
pub struct Pace {
    started: std::time::Instant,
    rate: u64,
    rows: AtomicU64,
}

impl Pace {
    pub fn new(rate: u64) -> Pace {
        Pace {
            started: std::time::Instant::now(),
            rate,
            rows: AtomicU64::new(0),
        }
    }

    /// Rows counted so far per second since the start.
    pub fn per_second(&self) -> f64 {
        self.rows.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    /// Counts `n` rows read; waits while the reads are ahead of the rate.
    pub async fn read(&self, n: u64) {
        let total = self.rows.fetch_add(n, Ordering::Relaxed) + n;
        if self.rate == 0 {
            return;
        }
        let due = std::time::Duration::from_secs_f64(total as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The token ranges to read `table` in: about `PARTITIONS_PER_RANGE`
/// partitions each from the source's `system.size_estimates`, else
/// `splits` even ranges.
pub async fn table_ranges(
    source: &mut Client,
    keyspace: &str,
    table: &str,
    splits: usize,
) -> Result<Vec<Range>, String> {
    let q = format!(
        "SELECT range_start, range_end, partitions_count FROM system.size_estimates WHERE keyspace_name = '{}' AND table_name = '{}'",
        keyspace.replace('\'', "''"),
        table.replace('\'', "''")
    );
    let estimates = match source.query(&q).await {
        Ok(ResultBody::Rows(rows)) => rows
            .rows
            .iter()
            .filter_map(|row| {
                Some(Estimate {
                    start: text(cell(&rows, row, "range_start")).parse().ok()?,
                    end: text(cell(&rows, row, "range_end")).parse().ok()?,
                    partitions: int(cell(&rows, row, "partitions_count"))?.max(0) as u64,
                })
            })
            .collect::<Vec<_>>(),
        // A cluster without the table (or that refuses it): even splits.
        _ => Vec::new(),
    };
    Ok(if estimates.is_empty() {
        even(splits.max(1))
    } else {
        from_estimates(&estimates, PARTITIONS_PER_RANGE, splits.max(1))
    })
}

pub fn bigint(n: i64) -> RawValue {
    RawValue::Bytes(Bytes::copy_from_slice(&n.to_be_bytes()))
}

pub fn raw(b: &Option<Bytes>) -> RawValue {
    match b {
        Some(b) => RawValue::Bytes(b.clone()),
        None => RawValue::Null,
    }
}

/// How `copy` and `validate` reach the clusters named on their command
/// line: by `host:port` with the login and TLS of the flags, or by a
/// cluster's name in a proxy config (`--config`), with its first contact
/// point, credentials and `[clusters.NAME.tls]`.
#[derive(Clone)]
pub struct Reach {
    pub config: Option<crate::config::Config>,
    pub credentials: Option<(String, String)>,
    pub tls: Option<crate::tls::ClusterTls>,
    pub consistency: u16,
}

impl Reach {
    /// The endpoint `spec` names: a cluster of the config, else
    /// `host:port`.
    pub async fn endpoint(&self, spec: &str) -> Result<Endpoint, String> {
        if let Some(c) = self.config.as_ref().and_then(|c| c.clusters.get(spec)) {
            let cp = c
                .contact_points
                .first()
                .ok_or_else(|| format!("cluster {spec} has no contact_points"))?;
            let addr = resolve(cp).await?;
            let credentials = match (&c.username, &c.password) {
                (Some(u), Some(p)) => Some((u.clone(), p.expose().to_string())),
                _ => self.credentials.clone(),
            };
            let tls = match &c.tls {
                Some(t) => {
                    // As the proxy does: server_name, else the contact
                    // point's host when it is a name (an IP: its address).
                    let host = crate::tls::host_of(cp);
                    let name = t.server_name.clone().or_else(|| {
                        (host.parse::<std::net::IpAddr>().is_err()).then(|| host.to_string())
                    });
                    Some((
                        crate::tls::client_config(t)
                            .map_err(|e| format!("clusters.{spec}.tls: {e}"))?,
                        name,
                    ))
                }
                None => None,
            };
            return Ok(Endpoint {
                addr,
                credentials,
                tls,
                consistency: self.consistency,
            });
        }
        let addr = resolve(spec).await.map_err(|e| match &self.config {
            Some(c) => format!(
                "{e}; the config names the clusters {}",
                c.clusters.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => e,
        })?;
        let tls = match &self.tls {
            Some(t) => Some((
                crate::tls::client_config(t).map_err(|e| format!("--tls-*: {e}"))?,
                t.server_name.clone(),
            )),
            None => None,
        };
        Ok(Endpoint {
            addr,
            credentials: self.credentials.clone(),
            tls,
            consistency: self.consistency,
        })
    }
}

/// A consistency level by its CQL name (`local_quorum`, `ONE`, ...).
pub fn consistency_named(name: &str) -> Result<u16, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "one" => consistency::ONE,
        "local_one" => consistency::LOCAL_ONE,
        "quorum" => consistency::QUORUM,
        "local_quorum" => consistency::LOCAL_QUORUM,
        "all" => 0x0005,
        "each_quorum" => 0x0007,
        "two" => 0x0002,
        "three" => 0x0003,
        _ => {
            return Err(format!(
                "{name:?} is not a consistency level: one, two, three, quorum, all, local_quorum, each_quorum, local_one"
            ))
        }
    })
}

/// `host:port` to its first address.
async fn resolve(spec: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = spec.parse() {
        return Ok(a);
    }
    if !spec.contains(':') {
        return Err(format!(
            "{spec:?} is neither host:port nor a cluster of the --config"
        ));
    }
    tokio::net::lookup_host(spec)
        .await
        .map_err(|e| format!("cannot resolve {spec}: {e}"))?
        .next()
        .ok_or_else(|| format!("{spec} resolves to no address"))
}

/// Each table's `default_time_to_live` (seconds; 0: none).
pub async fn default_ttls(c: &mut Client, keyspace: &str) -> Result<BTreeMap<String, i64>, String> {
    let q = format!(
        "SELECT table_name, default_time_to_live FROM system_schema.tables WHERE keyspace_name = '{}'",
        keyspace.replace('\'', "''")
    );
    let ResultBody::Rows(rows) = c
        .query(&q)
        .await
        .map_err(|e| failed("cannot read the tables' options", e))?
    else {
        return Err("the tables' options came without rows".into());
    };
    Ok(rows
        .rows
        .iter()
        .map(|row| {
            let ttl = int(cell(&rows, row, "default_time_to_live")).unwrap_or(0);
            (text(cell(&rows, row, "table_name")), ttl)
        })
        .collect())
}

/// The keyspace's tables on `source`, refused when there are none or a
/// table asked for (`wanted`) is not among them.
pub async fn tables_of(
    source: &mut Client,
    at: SocketAddr,
    keyspace: &str,
    wanted: &[String],
) -> Result<BTreeMap<String, Vec<Column>>, String> {
    let tables = schema(source, keyspace).await?;
    if tables.is_empty() {
        return Err(format!(
            "keyspace {keyspace} has no tables on {at} (or does not exist there)"
        ));
    }
    if let Some(t) = wanted.iter().find(|t| !tables.contains_key(*t)) {
        return Err(format!("table {keyspace}.{t} does not exist on {at}"));
    }
    Ok(tables)
}

/// The ranges one process scans a table in: the whole table as one piece
/// (None) when it is read by a tenant's restriction (`whole`; share 1 of
/// `split` takes it), share K of N of even splits with `split`, else
/// ranges from the source's estimates.
pub async fn ranges_for(
    source: &mut Client,
    keyspace: &str,
    table: &str,
    splits: usize,
    split: Option<(usize, usize)>,
    whole: bool,
) -> Result<Vec<Option<Range>>, String> {
    Ok(match (whole, split) {
        (true, None) => vec![None],
        (true, Some((k, _))) => {
            if k == 1 {
                vec![None]
            } else {
                Vec::new()
            }
        }
        // Shares must agree on the ranges whatever each process saw, so
        // they are even splits, not estimates that change with the data.
        (false, Some((k, n))) => share(&even(splits.max(n)), k, n)
            .into_iter()
            .map(Some)
            .collect(),
        (false, None) => table_ranges(source, keyspace, table, splits)
            .await?
            .into_iter()
            .map(Some)
            .collect(),
    })
}

/// A progress bar of `ranges` on stderr (hidden when not `shown`).
pub fn progress_bar(shown: bool, ranges: u64) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(ranges);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} ranges  ETA {eta}  {msg}",
        )
        .expect("a valid template"),
    );
    b
}

/// Runs `n` workers made by `worker` and waits for all; the first error.
pub async fn run_workers<F, Fut>(n: usize, what: &str, worker: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let workers: Vec<_> = (0..n.max(1)).map(|_| tokio::spawn(worker())).collect();
    let mut first_error = None;
    for w in workers {
        let r = w
            .await
            .unwrap_or_else(|e| Err(format!("a {what} worker failed: {e}")));
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_levels_by_their_cql_names() {
        assert_eq!(
            consistency_named("LOCAL_QUORUM"),
            Ok(consistency::LOCAL_QUORUM)
        );
        assert_eq!(consistency_named("one"), Ok(consistency::ONE));
        assert_eq!(consistency_named("all"), Ok(0x0005));
        let e = consistency_named("serial").unwrap_err();
        assert!(e.contains("not a consistency level"), "{e}");
    }

    #[tokio::test]
    async fn an_endpoint_by_address_carries_the_flags_login_and_consistency() {
        let reach = Reach {
            config: None,
            credentials: Some(("app".into(), "pw".into())),
            tls: None,
            consistency: consistency::QUORUM,
        };
        let e = reach.endpoint("127.0.0.1:9042").await.unwrap();
        assert_eq!(e.addr, "127.0.0.1:9042".parse().unwrap());
        assert_eq!(e.consistency, consistency::QUORUM);
        assert_eq!(e.credentials.as_ref().unwrap().0, "app");
        let e = reach.endpoint("nope").await.unwrap_err();
        assert!(e.contains("neither host:port nor a cluster"), "{e}");
    }
}
