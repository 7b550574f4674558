//! Tenants on different shards (four embedded nodes): each tenant's reads
//! and writes reach only its shard's clusters, through the scylla driver;
//! moving one tenant through every phase changes only its own traffic.

mod common;

use std::net::SocketAddr;

use common::{http, wait_for, Rows};
use cutover::client::Client;
use cutover::protocol::response::ResultBody;
use scylla::client::session::Session;

/// The value of row `k` of `ks.t` on `node`, asked directly.
async fn value_on(node: SocketAddr, ks: &str, k: i32) -> Option<String> {
    let mut c = Client::connect(node, 4, None, None).await.unwrap();
    match c
        .query(&format!("SELECT v FROM {ks}.t WHERE k = {k}"))
        .await
        .unwrap()
    {
        ResultBody::Rows(r) => r
            .rows
            .first()
            .map(|row| String::from_utf8(row[0].clone().expect("v is set").to_vec()).unwrap()),
        other => panic!("{other:?}"),
    }
}

/// Which of the four nodes hold row `k` of `ks.t`, by name.
async fn holders(nodes: &[SocketAddr; 4], ks: &str, k: i32) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (name, addr) in ["o1", "t1", "o2", "t2"].into_iter().zip(nodes) {
        if value_on(*addr, ks, k).await.is_some() {
            out.push(name);
        }
    }
    out
}

/// Writes the same row on one node directly, with the node's name as its
/// value: a read through the proxy then tells which node answered it.
async fn mark(node: SocketAddr, name: &str, ks: &str) {
    let mut c = Client::connect(node, 4, None, None).await.unwrap();
    c.query(&format!("INSERT INTO {ks}.t (k, v) VALUES (0, '{name}')"))
        .await
        .unwrap();
}

async fn answered_by(s: &Session, ks: &str) -> String {
    let (v,): (String,) = s
        .query_unpaged(format!("SELECT v FROM {ks}.t WHERE k = 0"), ())
        .await
        .unwrap()
        .one();
    v
}

#[tokio::test]
async fn each_tenant_stays_on_its_shard_through_every_phase() {
    let sharded = common::Sharded::start(
        "shards",
        "key = { keyspace = \"^t_(.*)$\" }",
        "[[entries]]\ntenant = \"wayne\"\nshard = \"dedicated\"\n",
    )
    .await;
    let (nodes, admin) = (sharded.nodes, sharded.admin);
    let s = sharded.session().await;

    // Schema changes reach every cluster of every shard.
    for ks in ["t_wayne", "t_stark"] {
        s.query_unpaged(format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"), ())
            .await
            .unwrap();
        s.query_unpaged(
            format!("CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .unwrap();
    }
    for (addr, name) in nodes.iter().zip(["o1", "t1", "o2", "t2"]) {
        for ks in ["t_wayne", "t_stark"] {
            assert_eq!(value_on(*addr, ks, 0).await, None, "{name} lacks {ks}.t");
            mark(*addr, name, ks).await;
        }
    }
    let insert_wayne = s
        .prepare("INSERT INTO t_wayne.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    let insert_stark = s
        .prepare("INSERT INTO t_stark.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();

    // wayne through every phase, one row written in each (prepared and as
    // query text); stark stays on the default route all along.
    let phases = [
        ("dual-write", vec!["o2", "t2"], "o2"),
        ("origin-only", vec!["o2"], "o2"),
        ("dual-write", vec!["o2", "t2"], "o2"),
        ("shadow-reads", vec!["o2", "t2"], "o2"),
        ("target-primary", vec!["o2", "t2"], "t2"),
        ("target-only", vec!["t2"], "t2"),
    ];
    for (i, (phase, writes_to, reads_from)) in phases.iter().enumerate() {
        let body = format!("{{\"phase\": \"{phase}\"}}");
        let (status, answer) = http(admin, "PUT", "/v1/tenants/wayne", Some(&body)).await;
        assert_eq!(status, 200, "{answer}");
        let k = 1 + 2 * i as i32;
        s.execute_unpaged(&insert_wayne, (k, phase.to_string()))
            .await
            .unwrap();
        s.query_unpaged(
            format!("INSERT INTO t_wayne.t (k, v) VALUES ({}, '{phase}')", k + 1),
            (),
        )
        .await
        .unwrap();
        s.execute_unpaged(&insert_stark, (k, phase.to_string()))
            .await
            .unwrap();
        for row in [k, k + 1] {
            assert_eq!(
                &holders(&nodes, "t_wayne", row).await,
                writes_to,
                "wayne's write in {phase}"
            );
        }
        assert_eq!(
            holders(&nodes, "t_stark", k).await,
            vec!["o1", "t1"],
            "stark's write while wayne is {phase}"
        );
        assert_eq!(
            answered_by(&s, "t_wayne").await,
            *reads_from,
            "wayne's read in {phase}"
        );
        assert_eq!(
            answered_by(&s, "t_stark").await,
            "o1",
            "stark's read while wayne is {phase}"
        );
    }

    // The shadow reads of wayne's phase went to t2 and found its row 0
    // different; stark was never shadowed.
    wait_for("wayne's shadow mismatch", || async {
        let (_, body) = http(admin, "GET", "/v1/shadow", None).await;
        let r: serde_json::Value = serde_json::from_str(&body).unwrap();
        r["mismatched_by_tenant"]["wayne"].as_u64() == Some(1)
            && r["mismatched_by_tenant"].get("stark").is_none()
    })
    .await;

    // Every cluster is reported, with its role in its shard.
    let (_, body) = http(admin, "GET", "/health/ready", None).await;
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["clusters"]["o2"]["roles"][0], "dedicated.origin");
    assert_eq!(ready["clusters"]["t1"]["roles"][0], "default.target");
    assert_eq!(ready["primary"], "o1");

    drop(s);
    sharded.stop().await;
}
