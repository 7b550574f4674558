//! A cluster that answers with hostile bytes cannot take the proxy down:
//! each hostile answer costs the request it answers a clear error naming
//! the cluster, every other connection goes on, and once a real node is
//! back on the same address clients are served again.

mod common;

use std::time::Duration;

use common::hostile::{Hostile, HostileNode};
use common::wait_for;
use cutover::client::{Client, ClientError};
use cutover::protocol::ErrorCode;

/// The error the proxy answered `what` with; fails on a hang (bounded well
/// past the cluster's request timeout) or on anything but an error.
async fn refused(
    what: &str,
    r: impl std::future::Future<Output = Result<impl std::fmt::Debug, ClientError>>,
) -> cutover::protocol::ErrorFrame {
    match tokio::time::timeout(Duration::from_secs(20), r).await {
        Err(_) => panic!("{what}: no answer from the proxy"),
        Ok(Err(ClientError::Server(e))) => e,
        Ok(other) => panic!("{what}: expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_answers_cost_one_request_each_and_a_real_node_is_served_after() {
    let fake = HostileNode::start("127.0.0.1:0".parse().unwrap(), Hostile::HugeRowCount).await;
    let target = cutover::node::start(cutover::node::NodeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mut cfg = cutover::config::Config::quick_start(
        &fake.addr.to_string(),
        &target.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap();
    for c in cfg.clusters.values_mut() {
        c.request_timeout.0 = Duration::from_millis(500);
    }
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    // A bystander straight to the healthy cluster's node never notices.
    let mut bystander = Client::connect(target.addr, 4, None, None).await.unwrap();

    let cases = [
        (Hostile::HugeRowCount, "malformed"),
        (Hostile::ManyEmptyRows, "malformed"),
        (Hostile::DeepType, "nested deeper"),
        (Hostile::DeepPrepared, "nested deeper"),
        (Hostile::Garbage, "origin cluster"),
        (Hostile::HalfFrame, "origin cluster did not answer"),
        (Hostile::Silence, "origin cluster did not answer"),
    ];
    for (mode, says) in cases {
        fake.set(mode);
        let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
        let e = if mode == Hostile::DeepPrepared {
            refused("PREPARE", c.prepare("SELECT * FROM ks.t WHERE k = ?")).await
        } else {
            refused("system.local", c.query("SELECT * FROM system.local")).await
        };
        eprintln!("{mode:?}: {:#06x} {}", e.code.0, e.message);
        assert!(
            e.message.contains(says) && e.message.contains("origin"),
            "{mode:?}: {:#06x} {}",
            e.code.0,
            e.message
        );
        assert_ne!(
            e.code,
            ErrorCode::PROTOCOL_ERROR,
            "{mode:?}: the client's request was fine"
        );
        assert!(bystander
            .query("SELECT rpc_address FROM system.local")
            .await
            .is_ok());
    }

    // A real node takes the fake's address: clients are served again, on
    // a connection opened during the trouble and on new ones.
    let during = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    let addr = fake.addr;
    fake.stop().await;
    let origin = cutover::node::start(cutover::node::NodeConfig::new(addr))
        .await
        .unwrap();
    let during = tokio::sync::Mutex::new(during);
    wait_for("the proxy to be served by the real node", || async {
        let mut c = during.lock().await;
        c.query("SELECT rpc_address FROM system.local")
            .await
            .is_ok()
    })
    .await;
    let mut after = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    after
        .query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        .await
        .unwrap();
    after
        .query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    after
        .query("INSERT INTO ks.t (k, v) VALUES (1, 'a')")
        .await
        .unwrap();
    assert!(common::node_has_row(origin.addr, "ks.t", 1).await);
    assert!(common::node_has_row(target.addr, "ks.t", 1).await);
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}
