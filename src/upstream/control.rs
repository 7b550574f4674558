//! One control connection per cluster: it learns the cluster's nodes from
//! `system.local` and `system.peers_v2` (or `system.peers`), keeps those of
//! `local_datacenter`, and refreshes on topology and status events and
//! periodically. Sessions open their connections to the nodes it found;
//! without it (no login available, or nothing reachable yet) they use the
//! contact points.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use super::{Cluster, ConnectOptions, UpstreamConn, UpstreamError};
use crate::frame::Opcode;
use crate::protocol::consistency;
use crate::protocol::request::{Query, QueryParams};
use crate::protocol::response::{ResultBody, Rows};

const REFRESH_EVERY: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often a cluster reached without a login is checked by a handshake.
const CONTROL_HEARTBEAT: Duration = Duration::from_secs(5);
const PROBE_EVERY: Duration = Duration::from_secs(3);

fn cell<'a>(rows: &'a Rows, row: &'a [Option<Bytes>], name: &str) -> Option<&'a Bytes> {
    let i = rows.metadata.columns.iter().position(|c| c.name == name)?;
    row.get(i)?.as_ref()
}

fn inet(b: &Bytes) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(&b[..]).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(&b[..]).ok()?)),
        _ => None,
    }
}

fn int(b: &Bytes) -> Option<i32> {
    Some(i32::from_be_bytes(<[u8; 4]>::try_from(&b[..]).ok()?))
}

async fn select(conn: &UpstreamConn, text: &str) -> Result<Option<Rows>, UpstreamError> {
    let body = Query {
        text: text.into(),
        params: QueryParams {
            consistency: consistency::ONE,
            ..Default::default()
        },
    }
    .encode(conn.version());
    let f = conn.request_reserved(Opcode::Query, body, TIMEOUT).await?;
    Ok(match ResultBody::read(&f.body, conn.version()) {
        Ok(ResultBody::Rows(r)) => Some(r),
        _ => None,
    })
}

/// The nodes of the cluster as the connected node sees them, filtered by
/// data center when one is configured.
async fn discover(
    conn: &UpstreamConn,
    local_dc: Option<&str>,
) -> Result<Vec<SocketAddr>, UpstreamError> {
    let mut nodes = Vec::new();
    if let Some(local) = select(
        conn,
        "SELECT data_center FROM system.local WHERE key = 'local'",
    )
    .await?
    {
        let dc = local
            .rows
            .first()
            .and_then(|r| cell(&local, r, "data_center"))
            .map(|b| String::from_utf8_lossy(b).into_owned());
        if local_dc.is_none() || dc.as_deref() == local_dc {
            nodes.push(conn.addr());
        }
    }
    let port = conn.addr().port();
    let (peers, v2) = match select(conn, "SELECT * FROM system.peers_v2").await? {
        Some(r) => (Some(r), true),
        None => (select(conn, "SELECT * FROM system.peers").await?, false),
    };
    if let Some(peers) = peers {
        for row in &peers.rows {
            let dc =
                cell(&peers, row, "data_center").map(|b| String::from_utf8_lossy(b).into_owned());
            if local_dc.is_some() && dc.as_deref() != local_dc {
                continue;
            }
            let (ip, p) = if v2 {
                (
                    cell(&peers, row, "native_address").and_then(inet),
                    cell(&peers, row, "native_port").and_then(int),
                )
            } else {
                (cell(&peers, row, "rpc_address").and_then(inet), None)
            };
            if let Some(ip) = ip {
                nodes.push(SocketAddr::new(ip, p.map(|p| p as u16).unwrap_or(port)));
            }
        }
    }
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

/// Who learns the cluster's schema from its control connection: with
/// tenants keyed by a column, which tables have it in their partition key.
pub trait SchemaWatch: Send + Sync {
    /// The column whose tables matter; None: the schema is not read.
    fn column(&self) -> Option<&str>;
    /// Cluster `cluster`'s `system_schema.columns` (keyspace_name,
    /// table_name, column_name, kind, type).
    fn columns(&self, cluster: usize, rows: &Rows);
}

/// Reads the cluster's columns for `schema`, if it asks.
async fn learn_tables(schema: &dyn SchemaWatch, cluster: usize, conn: &UpstreamConn) {
    if schema.column().is_none() {
        return;
    }
    match select(
        conn,
        "SELECT keyspace_name, table_name, column_name, kind, type FROM system_schema.columns",
    )
    .await
    {
        Ok(Some(rows)) => schema.columns(cluster, &rows),
        Ok(None) | Err(_) => {
            tracing::debug!(
                cluster,
                "could not read system_schema.columns; tenant-keyed tables as known before"
            )
        }
    }
}

/// Keeps `cluster`'s node list current until `stop`; `index` names it to
/// `schema`. The control connection logs in with the cluster's configured
/// credentials; without them it tries anonymously, and a cluster that then
/// requires a login is reached through its contact points only.
pub async fn run(
    cluster: &Cluster,
    index: usize,
    schema: &dyn SchemaWatch,
    stop: CancellationToken,
) {
    let cfg = &cluster.config;
    let credentials = cfg.username.clone().map(|u| {
        (
            u,
            cfg.password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        )
    });
    watch(cluster, index, schema, credentials, stop).await;
    cluster.first_round_over();
}

async fn watch(
    cluster: &Cluster,
    index: usize,
    schema: &dyn SchemaWatch,
    credentials: Option<(String, String)>,
    stop: CancellationToken,
) {
    let opts = ConnectOptions {
        version: 4,
        credentials,
        connect_timeout: cluster.config.connect_timeout.0,
        max_in_flight: 8,
        // Readiness rests on this connection: a node that stops answering
        // must show within seconds, not at the sessions' heartbeat pace.
        heartbeat_interval: Some(cluster.config.heartbeat_interval.0.min(CONTROL_HEARTBEAT)),
        frame_timeout: cluster.config.request_timeout.0,
        tls: cluster.tls.clone(),
        ..Default::default()
    };
    let mut backoff = Duration::from_millis(100);
    let mut told_no_login = false;
    loop {
        let mut conn = None;
        let mut last_error = None;
        for node in cluster.candidates() {
            match UpstreamConn::connect(node, &opts).await {
                Ok(c) => {
                    conn = Some(c);
                    break;
                }
                Err(UpstreamError::NoCredentials { .. }) => {
                    // The node answered (with AUTHENTICATE): it is up. Without
                    // a login there is no discovery; health is probed again.
                    if !told_no_login {
                        tracing::info!(cluster = %cluster.name, "the cluster requires a login and none is configured for it: no node discovery, its contact points are used; health is checked by a handshake every few seconds");
                        told_no_login = true;
                    }
                    cluster.health.set_up(node);
                    cluster.first_round_over();
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(PROBE_EVERY) => {}
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(cluster = %cluster.name, %node, error = %e, "control connection attempt failed");
                    last_error = Some(e.to_string());
                }
            }
        }
        let Some(conn) = conn else {
            if let Some(e) = last_error {
                // Once when it goes down (or is down from the start), not
                // at every retry.
                if !cluster.health.is_down() {
                    tracing::warn!(cluster = %cluster.name, error = %e, "no node of the cluster answers");
                }
                cluster.health.set_down(format!("no node answers: {e}"));
                cluster.first_round_over();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            continue;
        };
        backoff = Duration::from_millis(100);
        let mut body = BytesMut::new();
        let mut events = vec!["TOPOLOGY_CHANGE", "STATUS_CHANGE"];
        if schema.column().is_some() {
            // Tables created or altered: which are keyed by tenant.
            events.push("SCHEMA_CHANGE");
        }
        crate::protocol::writer::put_string_list(&mut body, &events);
        let _ = conn
            .request_reserved(Opcode::Register, body.freeze(), TIMEOUT)
            .await;
        if let Ok(f) = conn
            .request_reserved(Opcode::Options, Bytes::new(), TIMEOUT)
            .await
        {
            if let Ok(options) = crate::protocol::response::read_supported(&f.body) {
                // "4/v4", "5/v5" count; "5/v5-beta" does not.
                let versions = options
                    .iter()
                    .filter(|(k, _)| k == "PROTOCOL_VERSIONS")
                    .flat_map(|(_, v)| v.iter())
                    .filter(|v| !v.ends_with("-beta"))
                    .filter_map(|v| v.split('/').next()?.parse().ok())
                    .collect();
                cluster.set_versions(versions);
            }
        }
        let mut events = conn.events();
        loop {
            let found = discover(&conn, cluster.config.local_datacenter.as_deref()).await;
            if found.is_ok() {
                if let Some(down) = cluster.health.down_for() {
                    tracing::warn!(cluster = %cluster.name, node = %conn.addr(), down_seconds = down.as_secs(), "the cluster answers again");
                } else if !cluster.health.is_up() {
                    tracing::info!(cluster = %cluster.name, node = %conn.addr(), "control connection up");
                }
                cluster.health.set_up(conn.addr());
            }
            if found.is_ok() {
                learn_tables(schema, index, &conn).await;
            }
            match found {
                Ok(nodes) if !nodes.is_empty() => {
                    cluster.set_discovered(nodes);
                    cluster.first_round_over();
                }
                Ok(_) => {
                    cluster.first_round_over();
                    tracing::warn!(cluster = %cluster.name, "no node of the configured data center; using the contact points")
                }
                Err(e) => {
                    cluster.first_round_over();
                    tracing::warn!(cluster = %cluster.name, error = %e, "control connection lost");
                    cluster
                        .health
                        .set_down(format!("control connection lost: {e}"));
                    break;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_EVERY) => {}
                _ = events.recv() => {}
                _ = conn.closed() => {}
            }
            if conn.is_closed() {
                tracing::warn!(cluster = %cluster.name, node = %conn.addr(), "control connection closed");
                cluster
                    .health
                    .set_down(format!("control connection to {} closed", conn.addr()));
                break;
            }
        }
    }
}
