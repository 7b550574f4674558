//! Directory entries polled from a CQL table (`[tenants.table]`), with the
//! scylla driver as the client: the first read is in force before the
//! proxy takes clients; a changed row takes effect at the next poll; rows
//! that do not validate are refused with the entries last read kept; the
//! config file's entries win over the table's.

mod common;

use common::{http, node_has_row, serve_admin, two_nodes, wait_for};
use cutover::client::Client;
use cutover::config::Config;
use scylla::client::session_builder::SessionBuilder;

async fn json(admin: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(admin, "GET", path, None).await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn entries_follow_the_table() {
    let (origin, target) = two_nodes().await;
    let mut o = Client::connect(origin.addr, 4, None, None).await.unwrap();
    for q in [
        "CREATE KEYSPACE cutover WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE cutover.directory (tenant text PRIMARY KEY, shard text, phase text, status text)",
        "INSERT INTO cutover.directory (tenant, status) VALUES ('wayne', 'read-only')",
        "INSERT INTO cutover.directory (tenant, status) VALUES ('pym', 'read-write')",
    ] {
        o.query(q).await.unwrap();
    }
    let dir = std::env::temp_dir().join(format!("cutover-dirtable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cutover.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [clusters.origin]\ncontact_points = [\"{}\"]\n\
             [clusters.target]\ncontact_points = [\"{}\"]\n\
             [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n\
             [tenants.table]\ncluster = \"origin\"\nname = \"cutover.directory\"\npoll_every = \"100ms\"\n\
             [[tenants.entries]]\ntenant = \"pym\"\nstatus = \"read-only\"\n",
            origin.addr, target.addr
        ),
    )
    .unwrap();
    let cfg = Config::load(&file, Vec::new()).unwrap();
    let proxy = cutover::proxy::start_from(cfg, Some(file.clone()))
        .await
        .unwrap();
    let (admin, stop_admin) = serve_admin(&proxy, None, None).await;
    let s = SessionBuilder::new()
        .known_node_addr(proxy.addr)
        .build()
        .await
        .unwrap();
    for ks in ["t_wayne", "t_stark", "t_pym"] {
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
    let insert = |ks: &str, k: i32| format!("INSERT INTO {ks}.t (k, v) VALUES ({k}, 'x')");

    // In force from the first request: wayne read-only; pym read-only by
    // the config file, whatever the table says; stark has no entry.
    let e = s
        .query_unpaged(insert("t_wayne", 1), ())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tenant \"wayne\" is read-only"), "{e}");
    let e = s
        .query_unpaged(insert("t_pym", 1), ())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tenant \"pym\" is read-only"), "{e}");
    s.query_unpaged(insert("t_stark", 1), ()).await.unwrap();
    let (_, first) = json(admin, "/v1/policy").await;

    // A changed row: wayne read-write, origin-only, at the next poll.
    o.query("UPDATE cutover.directory SET status = 'read-write', phase = 'origin-only' WHERE tenant = 'wayne'")
        .await
        .unwrap();
    wait_for("wayne read-write from the table", || async {
        json(admin, "/v1/tenants/wayne").await.1["status"] == "read-write"
    })
    .await;
    s.query_unpaged(insert("t_wayne", 2), ()).await.unwrap();
    assert!(node_has_row(origin.addr, "t_wayne.t", 2).await);
    assert!(
        !node_has_row(target.addr, "t_wayne.t", 2).await,
        "origin-only"
    );

    // A row that does not validate: refused, named; nothing changes.
    let (_, policy) = json(admin, "/v1/policy").await;
    let version = policy["version"].as_u64().unwrap();
    assert!(version > first["version"].as_u64().unwrap());
    o.query("INSERT INTO cutover.directory (tenant, phase) VALUES ('bad', 'sideways')")
        .await
        .unwrap();
    o.query("UPDATE cutover.directory SET status = 'read-only' WHERE tenant = 'wayne'")
        .await
        .unwrap();
    wait_for("the bad row refused", || async {
        let (status, t) = json(admin, "/v1/directory-table").await;
        status == 200
            && t["error"]
                .as_str()
                .is_some_and(|e| e.contains("tenant \"bad\": phase \"sideways\""))
    })
    .await;
    o.query("UPDATE cutover.directory SET phase = null, shard = 'nowhere' WHERE tenant = 'bad'")
        .await
        .unwrap();
    wait_for("the unknown shard refused", || async {
        let t = json(admin, "/v1/directory-table").await.1;
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("shard \"nowhere\" is not configured"))
    })
    .await;
    let (_, policy) = json(admin, "/v1/policy").await;
    assert_eq!(policy["version"].as_u64().unwrap(), version);
    let (_, metrics) = http(admin, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("\ncutover_directory_table_applied 0\n"),
        "{metrics}"
    );
    s.query_unpaged(insert("t_wayne", 3), ()).await.unwrap();

    // Mended: the whole table in force (wayne read-only again); a row
    // deleted: its tenant takes the default route.
    o.query("DELETE FROM cutover.directory WHERE tenant = 'bad'")
        .await
        .unwrap();
    wait_for("the table applied again", || async {
        json(admin, "/v1/directory-table").await.1["error"].is_null()
            && json(admin, "/v1/tenants/wayne").await.1["status"] == "read-only"
    })
    .await;
    assert!(s.query_unpaged(insert("t_wayne", 4), ()).await.is_err());
    let (_, metrics) = http(admin, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("\ncutover_directory_table_applied 1\n"),
        "{metrics}"
    );
    o.query("DELETE FROM cutover.directory WHERE tenant = 'wayne'")
        .await
        .unwrap();
    wait_for("wayne without an entry", || async {
        json(admin, "/v1/tenants/wayne").await.0 == 404
    })
    .await;
    s.query_unpaged(insert("t_wayne", 5), ()).await.unwrap();
    assert!(node_has_row(origin.addr, "t_wayne.t", 5).await);
    assert!(
        node_has_row(target.addr, "t_wayne.t", 5).await,
        "dual-write"
    );

    drop(s);
    stop_admin.cancel();
    proxy.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The directory may live on a cluster of its own, one no shard names: the
/// proxy reaches it for the table alone.
#[tokio::test]
async fn the_table_may_live_on_a_cluster_no_shard_names() {
    let (origin, target) = two_nodes().await;
    let (directory, _) = two_nodes().await;
    let mut d = Client::connect(directory.addr, 4, None, None)
        .await
        .unwrap();
    for q in [
        "CREATE KEYSPACE cutover WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE cutover.directory (tenant text PRIMARY KEY, shard text, phase text, status text)",
        "INSERT INTO cutover.directory (tenant, status) VALUES ('wayne', 'read-only')",
    ] {
        d.query(q).await.unwrap();
    }
    let cfg = Config::from_toml(
        &format!(
            "listen = \"127.0.0.1:0\"\n\
             [clusters.origin]\ncontact_points = [\"{}\"]\n\
             [clusters.target]\ncontact_points = [\"{}\"]\n\
             [clusters.directory]\ncontact_points = [\"{}\"]\n\
             [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n\
             [tenants.table]\ncluster = \"directory\"\nname = \"cutover.directory\"\npoll_every = \"100ms\"\n",
            origin.addr, target.addr, directory.addr
        ),
        Vec::new(),
    )
    .unwrap();
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let (admin, stop_admin) = serve_admin(&proxy, None, None).await;
    let (status, t) = json(admin, "/v1/directory-table").await;
    assert_eq!(status, 200, "{t}");
    assert!(t["error"].is_null(), "{t}");
    assert_eq!(
        json(admin, "/v1/tenants/wayne").await.1["status"],
        "read-only"
    );
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    c.query("CREATE KEYSPACE t_wayne WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        .await
        .unwrap();
    c.query("CREATE TABLE t_wayne.t (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let e = c
        .query("INSERT INTO t_wayne.t (k, v) VALUES (1, 'x')")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tenant \"wayne\" is read-only"), "{e}");
    stop_admin.cancel();
    proxy.stop().await;
}
