//! Two proxy instances on 127.0.0.1 and 127.0.0.2, same port, same
//! `[topology]`: the Rust driver discovers both and spreads requests.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use cutover::config::Config;
use cutover::node::{self, NodeConfig};
use scylla::client::session_builder::SessionBuilder;

/// A port free on both 127.0.0.1 and 127.0.0.2.
fn shared_free_port() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_discovers_both_instances_and_uses_both() {
    let origin = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let target = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let port = shared_free_port();
    let instances: Vec<SocketAddr> = ["127.0.0.1", "127.0.0.2"]
        .iter()
        .map(|ip| format!("{ip}:{port}").parse().unwrap())
        .collect();
    let mut proxies = Vec::new();
    for (index, listen) in instances.iter().enumerate() {
        let mut cfg = Config::quick_start(
            &origin.addr.to_string(),
            &target.addr.to_string(),
            *listen,
            None,
        )
        .unwrap();
        cfg.topology.instances = instances.clone();
        cfg.topology.index = index;
        proxies.push(cutover::proxy::start(cfg).await.unwrap());
    }
    let s = SessionBuilder::new()
        .known_node_addr(instances[0])
        .cluster_metadata_refresh_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let found: BTreeSet<SocketAddr> = s
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| SocketAddr::new(n.address.ip(), n.address.port()))
        .collect();
    assert_eq!(
        found,
        instances.iter().copied().collect(),
        "both instances, from system.peers"
    );
    let mut coordinators = BTreeSet::new();
    for _ in 0..50 {
        let r = s
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .unwrap();
        coordinators.insert(r.request_coordinator().connection_address().ip());
    }
    assert_eq!(
        coordinators.len(),
        2,
        "requests spread over both instances: {coordinators:?}"
    );
    for p in proxies {
        p.stop().await;
    }
    origin.shutdown().await;
    target.shutdown().await;
}
