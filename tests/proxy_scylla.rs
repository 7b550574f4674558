//! The dual-write proxy with the Rust `scylla` driver, which sends no client
//! timestamp: every write must still land on both nodes with one write time,
//! the proxy's.

use std::time::Duration;

use cutover::client::Client;
use cutover::config::Config;
use cutover::node::{self, NodeConfig, RunningNode};
use cutover::protocol::response::ResultBody;
use scylla::client::session_builder::SessionBuilder;

mod common;
use common::workload;

async fn start_node() -> RunningNode {
    node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

/// Two nodes and a quick-start proxy in front of them.
async fn proxy_over_two_nodes() -> (RunningNode, RunningNode, cutover::proxy::RunningProxy) {
    let origin = start_node().await;
    let target = start_node().await;
    let cfg = Config::quick_start(
        &origin.addr.to_string(),
        &target.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap();
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    (origin, target, proxy)
}

/// A scylla driver session through `proxy` with table `ks.t (k int, v
/// text)` made, and its prepared INSERT.
async fn session_with_table(
    proxy: &cutover::proxy::RunningProxy,
    ks: &str,
) -> (
    scylla::client::session::Session,
    scylla::statement::prepared::PreparedStatement,
) {
    let s = SessionBuilder::new()
        .known_node_addr(proxy.addr)
        .build()
        .await
        .unwrap();
    s.query_unpaged(
        format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
        (),
    )
    .await
    .unwrap();
    s.query_unpaged(
        format!("CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)"),
        (),
    )
    .await
    .unwrap();
    let ins = s
        .prepare(format!("INSERT INTO {ks}.t (k, v) VALUES (?, ?)"))
        .await
        .unwrap();
    (s, ins)
}

async fn snapshot(addr: std::net::SocketAddr, q: &str) -> Vec<Vec<Option<bytes::Bytes>>> {
    let mut c = Client::connect(addr, 4, None, None).await.unwrap();
    match c.query(q).await.unwrap() {
        ResultBody::Rows(r) => {
            let mut rows = r.rows;
            rows.sort();
            rows
        }
        other => panic!("{q}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_driver_through_the_proxy_writes_both_nodes_with_one_write_time() {
    let (origin, target, proxy) = proxy_over_two_nodes().await;
    let s = SessionBuilder::new()
        .known_node_addr(proxy.addr)
        .cluster_metadata_refresh_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    // The driver sees the proxy, not the nodes.
    let nodes: Vec<_> = s
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| n.address)
        .collect();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].port(), proxy.addr.port());

    // Nor the node's identity: the host id is the proxy instance's own.
    let node_id = snapshot(origin.addr, "SELECT host_id FROM system.local").await[0][0]
        .clone()
        .unwrap();
    let seen_id = s.get_cluster_state().get_nodes_info()[0].host_id;
    assert_ne!(
        &seen_id.as_bytes()[..],
        &node_id[..],
        "the node's host id leaked through the proxy"
    );

    let origin_executes = || {
        origin
            .node
            .stats
            .report()
            .requests
            .get("EXECUTE")
            .copied()
            .unwrap_or(0)
    };
    workload(proxy.addr, Some(&origin_executes), &s, "rs_proxy").await;

    for q in [
        "SELECT p, c, v, writetime(v) FROM rs_proxy.big",
        "SELECT p, c, v, writetime(v), l, st, m, pt FROM rs_proxy.events",
        "SELECT k, n FROM rs_proxy.ctr",
    ] {
        let a = snapshot(origin.addr, q).await;
        let b = snapshot(target.addr, q).await;
        assert!(!a.is_empty(), "{q}");
        assert_eq!(a.len(), b.len(), "{q}");
        for (x, y) in a.iter().zip(&b) {
            if x[0].as_deref() == Some(&b"lwt"[..]) {
                // A conditional write gets no proxy timestamp (Cassandra takes
                // its write time from the Paxos ballot): same value, each
                // cluster's own write time.
                assert_eq!((&x[..3], &x[4..]), (&y[..3], &y[4..]), "{q}");
            } else {
                assert_eq!(x, y, "origin and target differ for {q}");
            }
        }
    }
    let big = snapshot(origin.addr, "SELECT writetime(v) FROM rs_proxy.big").await;
    assert_eq!(big.len(), 10_000);
    assert!(
        big.iter().all(|r| r[0].is_some()),
        "every row has a write time"
    );
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

/// A cluster that restarted forgets its prepared statements: a BATCH of
/// prepared children from the scylla driver still succeeds on both
/// clusters, the proxy preparing the child the cluster names again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_prepared_statements_survives_a_cluster_that_forgot_them() {
    use scylla::statement::batch::Batch;
    let (origin, target, proxy) = proxy_over_two_nodes().await;
    let (s, ins) = session_with_table(&proxy, "bk").await;
    let mut batch = Batch::default();
    batch.append_statement(ins.clone());
    batch.append_statement(ins);
    s.batch(&batch, ((1, "a"), (2, "b"))).await.unwrap();
    // The target restarts: its connections drop and it forgets every
    // prepared statement; the proxy still holds the old ids.
    let prepares = || {
        proxy
            .proxy
            .metrics()
            .requests_by_opcode()
            .into_iter()
            .find(|(op, _)| *op == "PREPARE")
            .map(|(_, n)| n)
            .unwrap_or(0)
    };
    let before = prepares();
    target.node.restart();
    s.batch(&batch, ((3, "c"), (4, "d")))
        .await
        .expect("the proxy prepares the children again on the restarted target");
    assert_eq!(
        prepares(),
        before,
        "the driver never saw UNPREPARED, so it never had to prepare again"
    );
    for node in [origin.addr, target.addr] {
        let rows = snapshot(node, "SELECT k FROM bk.t").await;
        assert_eq!(rows.len(), 4, "{node}: every batched row");
    }
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

/// A burst of 5,000 prepared INSERTs in flight at once from the scylla
/// driver, against nodes that take 5 ms per request: the proxy takes
/// `max_in_flight_per_connection` at a time and holds the rest back, as a
/// node does, so nothing is answered OVERLOADED and every row lands on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_5000_in_flight_is_slowed_down_never_refused() {
    let (origin, target, proxy) = proxy_over_two_nodes().await;
    let (s, ins) = session_with_table(&proxy, "burst").await;
    for n in [&origin, &target] {
        n.node
            .faults
            .latency_us
            .store(5_000, std::sync::atomic::Ordering::Relaxed);
    }
    let writes = (0..5000).map(|k| {
        let (s, ins) = (&s, &ins);
        async move { s.execute_unpaged(ins, (k, "burst")).await }
    });
    let results = futures::future::join_all(writes).await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 5000 failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    for n in [&origin, &target] {
        n.node.faults.clear();
    }
    for node in [origin.addr, target.addr] {
        let rows = snapshot(node, "SELECT k FROM burst.t").await;
        assert_eq!(rows.len(), 5000, "{node}: every row");
    }
    let pauses = proxy
        .proxy
        .metrics()
        .render()
        .lines()
        .find_map(|l| {
            l.strip_prefix("cutover_client_pauses_total ")
                .map(str::to_owned)
        })
        .expect("the pause counter is exposed");
    assert_ne!(pauses, "0", "the burst went past the in-flight limit");
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}
