//! Tenants keyed by an int column, through the scylla driver, on two shards
//! (four embedded nodes): prepared statements and query text with bound
//! values (the driver sends them apart from the text) each reach their
//! tenant's shard, and moving one tenant to another phase moves only its
//! own traffic.

mod common;

use std::net::SocketAddr;

use common::{http, wait_for};
use cutover::client::Client;
use cutover::protocol::response::ResultBody;
use scylla::client::session::Session;

const NAMES: [&str; 4] = ["o1", "t1", "o2", "t2"];

/// The nodes (by name) holding row `id` of tenant `tenant`, asked directly.
async fn holders(nodes: &[SocketAddr; 4], tenant: i32, id: i32) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (name, addr) in NAMES.into_iter().zip(nodes) {
        let mut c = Client::connect(*addr, 4, None, None).await.unwrap();
        let q = format!("SELECT v FROM app.orders WHERE tenant_id = {tenant} AND id = {id}");
        match c.query(&q).await.unwrap() {
            ResultBody::Rows(r) if !r.rows.is_empty() => out.push(name),
            ResultBody::Rows(_) => {}
            other => panic!("{other:?}"),
        }
    }
    out
}

/// Which node answers a read of the tenant's marker row (id 0 holds each
/// node's name, written there directly).
async fn answered_by(s: &Session, tenant: i32) -> String {
    let (v,): (String,) = s
        .query_unpaged(
            "SELECT v FROM app.orders WHERE tenant_id = ? AND id = 0",
            (tenant,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    v
}

#[tokio::test]
async fn an_int_tenant_column_routes_prepared_and_bound_queries() {
    // Tenant 42 has a shard of its own; tenant 7 takes the default route.
    let sharded = common::Sharded::start(
        "column",
        "key = { column = \"tenant_id\" }",
        "[[entries]]\ntenant = \"42\"\nshard = \"dedicated\"\n",
    )
    .await;
    let (nodes, admin) = (sharded.nodes, sharded.admin);
    let s = sharded.session().await;
    s.query_unpaged("CREATE KEYSPACE app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", ())
        .await
        .unwrap();
    s.query_unpaged(
        "CREATE TABLE app.orders (tenant_id int, id int, v text, PRIMARY KEY ((tenant_id), id))",
        (),
    )
    .await
    .unwrap();
    // Query text with bound values needs the column's type: learned from
    // the clusters' schema.
    wait_for("app.orders known as keyed by tenant", || async {
        let (_, body) = http(admin, "GET", "/v1/tenant-key", None).await;
        body.contains("\"keyed_tables\":[\"app.orders\"]")
    })
    .await;
    for (name, addr) in NAMES.into_iter().zip(&nodes) {
        let mut c = Client::connect(*addr, 4, None, None).await.unwrap();
        for tenant in [7, 42] {
            c.query(&format!(
                "INSERT INTO app.orders (tenant_id, id, v) VALUES ({tenant}, 0, '{name}')"
            ))
            .await
            .unwrap();
        }
    }

    let insert = s
        .prepare("INSERT INTO app.orders (tenant_id, id, v) VALUES (?, ?, ?)")
        .await
        .unwrap();
    let phases = [
        ("dual-write", vec!["o2", "t2"], "o2"),
        ("target-primary", vec!["o2", "t2"], "t2"),
        ("target-only", vec!["t2"], "t2"),
    ];
    for (i, (phase, writes_to, reads_from)) in phases.iter().enumerate() {
        let body = format!("{{\"phase\": \"{phase}\"}}");
        let (status, answer) = http(admin, "PUT", "/v1/tenants/42", Some(&body)).await;
        assert_eq!(status, 200, "{answer}");
        let id = 1 + 2 * i as i32;
        for tenant in [7, 42] {
            s.execute_unpaged(&insert, (tenant, id, phase.to_string()))
                .await
                .unwrap();
            s.query_unpaged(
                "UPDATE app.orders SET v = ? WHERE id = ? AND tenant_id = ?",
                (phase.to_string(), id + 1, tenant),
            )
            .await
            .unwrap();
        }
        for id in [id, id + 1] {
            assert_eq!(&holders(&nodes, 42, id).await, writes_to, "42 in {phase}");
            assert_eq!(holders(&nodes, 7, id).await, ["o1", "t1"], "7 in {phase}");
        }
        assert_eq!(
            answered_by(&s, 42).await,
            *reads_from,
            "42 reads in {phase}"
        );
        assert_eq!(answered_by(&s, 7).await, "o1", "7 reads in {phase}");
    }

    // A write whose tenant comes from a function call is refused by the
    // proxy, before any node sees it.
    let err = s
        .query_unpaged(
            "INSERT INTO app.orders (tenant_id, id, v) VALUES (blobAsInt(0x0000002a), 9, 'x')",
            (),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("names no tenant the proxy can read"), "{err}");
    assert!(holders(&nodes, 42, 9).await.is_empty());

    drop(s);
    sharded.stop().await;
}
