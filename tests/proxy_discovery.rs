//! The proxy's control connection: nodes beyond the contact points are
//! found in `system.peers_v2`, and only those of `local_datacenter` serve
//! client traffic.

use std::time::Duration;

use cutover::client::Client;
use cutover::config::Config;
use cutover::node::{self, NodeConfig, PeerInfo, RunningNode};

async fn node_on(ip: &str, dc: &str) -> RunningNode {
    let mut c = NodeConfig::new(format!("{ip}:0").parse().unwrap());
    c.datacenter = dc.into();
    node::start(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_the_discovered_nodes_of_the_local_data_center() {
    let nodes = vec![
        node_on("127.0.0.11", "dc1").await,
        node_on("127.0.0.12", "dc1").await,
        node_on("127.0.0.13", "dc2").await,
    ];
    let dcs = ["dc1", "dc1", "dc2"];
    for (i, n) in nodes.iter().enumerate() {
        let peers = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, p)| PeerInfo {
                addr: p.addr,
                datacenter: dcs[j].into(),
                rack: "r1".into(),
            })
            .collect();
        n.node.set_peers(peers);
    }
    let target = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    // Only the first node is a contact point.
    let mut cfg = Config::quick_start(
        &nodes[0].addr.to_string(),
        &target.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap();
    cfg.clusters.get_mut("origin").unwrap().local_datacenter = Some("dc1".into());
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proxy
        .proxy
        .cluster_named("origin")
        .unwrap()
        .discovered()
        .len()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the control connection found no peers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        proxy.proxy.cluster_named("origin").unwrap().discovered(),
        vec![nodes[0].addr, nodes[1].addr],
        "dc1 only"
    );
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
        c.query("SELECT key FROM system.local").await.unwrap();
        clients.push(c);
    }
    let sessions = |n: &RunningNode| {
        n.node
            .stats
            .report()
            .connections
            .iter()
            .filter(|c| c.startup.get("DRIVER_NAME").map(String::as_str) == Some("cutover-client"))
            .count()
    };
    assert!(
        sessions(&nodes[0]) >= 2,
        "the contact point serves sessions"
    );
    assert!(
        sessions(&nodes[1]) >= 2,
        "the discovered dc1 node serves sessions too"
    );
    assert_eq!(
        sessions(&nodes[2]),
        0,
        "the dc2 node gets no client traffic"
    );
    drop(clients);
    proxy.stop().await;
    for n in nodes {
        n.shutdown().await;
    }
    target.shutdown().await;
}
