//! The Rust `scylla` driver (protocol v4) running a realistic workload
//! against the embedded node, every result checked against what was written.

use std::time::Duration;

use cutover::node::{self, NodeConfig, RunningNode};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

mod common;
use common::workload;

async fn start(config: impl FnOnce(&mut NodeConfig)) -> RunningNode {
    let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    c.control = Some("127.0.0.1:0".parse().unwrap());
    config(&mut c);
    node::start(c).await.unwrap()
}

async fn session(n: &RunningNode, compression: Option<scylla::frame::Compression>) -> Session {
    SessionBuilder::new()
        .known_node_addr(n.addr)
        .compression(compression)
        // The driver re-reads only the keyspaces that SCHEMA_CHANGE events
        // named, on this tick: a short tick lets a test see an event's effect.
        .cluster_metadata_refresh_interval(Duration::from_millis(200))
        .build()
        .await
        .expect("the scylla driver connects to the node")
}

/// GET /stats on the node's control port (plain HTTP/1.0, no client library).
async fn control_stats(addr: std::net::SocketAddr) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stats HTTP/1.0\r\nHost: node\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_driver_workload() {
    let n = start(|_| {}).await;
    let s = session(&n, None).await;
    workload(n.addr, Some(&|| executes(&n)), &s, "rs_plain").await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_driver_workload_with_lz4() {
    let n = start(|_| {}).await;
    let s = session(&n, Some(scylla::frame::Compression::Lz4)).await;
    // Asked through the control port, as an operator or a test in another process would.
    let stats = control_stats(n.control_addr.unwrap()).await;
    let conns = stats["connections"].as_array().unwrap();
    assert!(!conns.is_empty());
    for c in conns {
        assert_eq!(c["protocol_version"], 4, "the scylla crate speaks v4");
        assert_eq!(c["compression"], "lz4", "{c}");
        assert_eq!(c["startup"]["COMPRESSION"], "lz4", "{c}");
    }
    workload(n.addr, Some(&|| executes(&n)), &s, "rs_lz4").await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_driver_with_password_authenticator() {
    let n = start(|c| c.users = vec![("app".into(), "pw".into())]).await;
    let s = SessionBuilder::new()
        .known_node_addr(n.addr)
        .user("app", "pw")
        .build()
        .await
        .unwrap();
    let r = s
        .query_unpaged("SELECT cluster_name FROM system.local", ())
        .await
        .unwrap();
    let (name,): (String,) = r.into_rows_result().unwrap().single_row().unwrap();
    assert_eq!(name, "cutover-embedded");
    let bad = SessionBuilder::new()
        .known_node_addr(n.addr)
        .user("app", "nope")
        .build()
        .await;
    assert!(bad.is_err(), "wrong password is refused");
    n.shutdown().await;
}

fn executes(n: &RunningNode) -> u64 {
    n.node
        .stats
        .report()
        .requests
        .get("EXECUTE")
        .copied()
        .unwrap_or(0)
}
