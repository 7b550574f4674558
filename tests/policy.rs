//! The routing policy changed while clients run: through the admin API and
//! by reloading the config file, with invalid changes refused and the
//! running policy kept; requests under way never fail.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{http, node_has_row, serve_admin, two_nodes, wait_for};
use cutover::client::Client;
use cutover::config::Config;
use cutover::protocol::response::ResultBody;
use serde_json::Value;

fn config_text(origin: SocketAddr, target: SocketAddr, phase: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [clusters.origin]\ncontact_points = [\"{origin}\"]\n\
         [clusters.target]\ncontact_points = [\"{target}\"]\n\
         [route]\nphase = \"{phase}\"\n\
         [journal]\ndir = \"/dev/null/journal\"\n"
    )
}

/// The value of k = 1 as the proxy answers it (tells which cluster read).
async fn read_v(c: &mut Client) -> String {
    match c.query("SELECT v FROM ks.t WHERE k = 1").await.unwrap() {
        ResultBody::Rows(r) => String::from_utf8(r.rows[0][0].clone().unwrap().to_vec()).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_policy_changes_live_and_invalid_changes_are_refused() {
    let (origin, target) = two_nodes().await;
    // The same key with a different value on each node, written directly.
    for (n, v) in [(origin.addr, "from-origin"), (target.addr, "from-target")] {
        let mut c = Client::connect(n, 4, None, None).await.unwrap();
        c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
        c.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
            .await
            .unwrap();
        c.query(&format!("INSERT INTO ks.t (k, v) VALUES (1, '{v}')"))
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("cutover-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cutover.toml");
    std::fs::write(&file, config_text(origin.addr, target.addr, "dual-write")).unwrap();
    let cfg = Config::load(&file, Vec::new()).unwrap();
    let proxy = cutover::proxy::start_from(cfg, Some(file.clone()))
        .await
        .unwrap();
    let (admin, stop_admin) = serve_admin(&proxy, None, None).await;

    // Load on its own connection through every change: reads and writes,
    // none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, done, addr) = (stop.clone(), done.clone(), proxy.addr);
        tokio::spawn(async move {
            let mut c = Client::connect(addr, 4, None, None).await.unwrap();
            let mut k = 1000;
            while !stop.load(Ordering::SeqCst) {
                k += 1;
                c.query(&format!("INSERT INTO ks.t (k, v) VALUES ({k}, 'load')"))
                    .await
                    .unwrap_or_else(|e| panic!("write {k} failed during policy changes: {e}"));
                c.query("SELECT v FROM ks.t WHERE k = 1")
                    .await
                    .unwrap_or_else(|e| panic!("read failed during policy changes: {e}"));
                done.fetch_add(2, Ordering::SeqCst);
            }
        })
    };
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    assert_eq!(read_v(&mut c).await, "from-origin");
    let (status, body) = http(admin, "GET", "/v1/policy", None).await;
    assert_eq!(status, 200);
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["version"], 1);
    assert_eq!(p["route"]["phase"], "dual-write");

    // The admin API: reads move to the target at once.
    let (status, body) = http(
        admin,
        "PUT",
        "/v1/policy",
        Some(r#"{"route": {"phase": "target-primary"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let put: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(put["version"], 2);
    assert_eq!(
        put["persisted"],
        dir.join("cutover.route.toml").display().to_string(),
        "the change is kept in the route file beside the config"
    );
    assert_eq!(read_v(&mut c).await, "from-target");

    // Invalid changes: refused with every reason, nothing changes.
    for bad in [
        r#"{"route": {"write_mode": "async-secondary", "shard": "other"}}"#,
        r#"{"route": {"phase": "sideways"}}"#,
        r#"{"rout": {}}"#,
    ] {
        let (status, body) = http(admin, "PUT", "/v1/policy", Some(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("errors"), "{body}");
    }
    let (_, body) = http(
        admin,
        "PUT",
        "/v1/policy",
        Some(r#"{"route": {"phase": "sideways"}}"#),
    )
    .await;
    assert!(
        body.contains("route.phase: unknown variant `sideways`"),
        "the field is named: {body}"
    );
    let (_, body) = http(
        admin,
        "PUT",
        "/v1/policy",
        Some(r#"{"route": {"write_mode": "async-secondary", "shard": "other"}}"#),
    )
    .await;
    // Both problems listed, each with the setting it is about.
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = answer["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    // The journal async-secondary needs cannot be opened (its directory is
    // under /dev/null).
    assert_eq!(keys, ["route.shard", "journal.dir"], "{body}");
    assert!(body.contains("/dev/null/journal"), "{body}");
    assert_eq!(answer["errors"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(read_v(&mut c).await, "from-target");

    // The file: origin-only. The watcher reloads it; writes stop reaching
    // the target. An explicit reload then finds nothing new.
    std::fs::write(&file, config_text(origin.addr, target.addr, "origin-only")).unwrap();
    let p = proxy.proxy.clone();
    wait_for("the watcher to reload the edited file", || {
        let p = p.clone();
        async move { p.policy().version == 3 }
    })
    .await;
    assert_eq!(read_v(&mut c).await, "from-origin");
    let (status, body) = http(admin, "POST", "/v1/reload", None).await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (r["version"].clone(), r["changed"].clone()),
        (3.into(), false.into())
    );
    c.query("INSERT INTO ks.t (k, v) VALUES (7, 'origin only')")
        .await
        .unwrap();
    assert!(node_has_row(origin.addr, "ks.t", 7).await);
    assert!(
        !node_has_row(target.addr, "ks.t", 7).await,
        "origin-only wrote to the target"
    );

    // A broken file is refused, by the watcher and by a reload; the policy stays.
    std::fs::write(&file, "listen = [oops").unwrap();
    let (status, body) = http(admin, "POST", "/v1/reload", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid TOML"), "{body}");
    let p = proxy.proxy.clone();
    wait_for("the watcher to refuse the broken file", || {
        let p = p.clone();
        async move { p.routing().store().refused.load(Ordering::SeqCst) == 4 }
    })
    .await;
    assert_eq!(proxy.proxy.policy().version, 3);
    assert_eq!(read_v(&mut c).await, "from-origin");

    // The load kept going through all of it without an error.
    let before = done.load(Ordering::SeqCst);
    wait_for("more load after the changes", || {
        let done = done.clone();
        async move { done.load(Ordering::SeqCst) > before + 20 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();

    let (_, m) = http(admin, "GET", "/metrics", None).await;
    assert!(m.contains("\ncutover_policy_version 3\n"), "{m}");
    assert!(m.contains("\ncutover_policy_changes_total 2\n"));
    assert!(
        m.contains("\ncutover_policy_changes_refused_total 4\n"),
        "two bad PUTs that parse, the broken file twice (watcher and reload)"
    );
    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_continuation_page_stays_with_the_cluster_that_issued_it() {
    use cutover::protocol::request::QueryParams;
    use cutover::routing::{PolicyPatch, RoutePatch};
    let (origin, target) = two_nodes().await;
    for (n, v) in [(origin.addr, "o"), (target.addr, "t")] {
        let mut c = Client::connect(n, 4, None, None).await.unwrap();
        c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
        c.query("CREATE TABLE ks.p (k int PRIMARY KEY, v text)")
            .await
            .unwrap();
        for k in 0..30 {
            c.query(&format!("INSERT INTO ks.p (k, v) VALUES ({k}, '{v}')"))
                .await
                .unwrap();
        }
    }
    let cfg = Config::quick_start(
        &origin.addr.to_string(),
        &target.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap();
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    let page = |paging_state| QueryParams {
        consistency: 1,
        page_size: Some(10),
        paging_state,
        ..Default::default()
    };
    let values = |r: &cutover::protocol::response::Rows| -> Vec<String> {
        r.rows
            .iter()
            .map(|row| String::from_utf8(row[1].clone().unwrap().to_vec()).unwrap())
            .collect()
    };
    let ResultBody::Rows(first) = c
        .query_with("SELECT * FROM ks.p", page(None))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(values(&first), vec!["o"; 10]);
    let state = first.metadata.paging_state.clone().expect("more pages");

    // Reads move to the target; the paged read already under way does not.
    let p = proxy
        .proxy
        .routing()
        .store()
        .apply(
            PolicyPatch {
                route: Some(RoutePatch {
                    phase: Some(cutover::config::Phase::TargetPrimary),
                    ..Default::default()
                }),
                force: false,
            },
            "test",
        )
        .unwrap()
        .policy;
    assert_eq!(p.version, 2);
    let ResultBody::Rows(second) = c
        .query_with("SELECT * FROM ks.p", page(Some(state)))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        values(&second),
        vec!["o"; 10],
        "the continuation page came from the origin"
    );
    let ResultBody::Rows(fresh) = c
        .query_with("SELECT * FROM ks.p", page(None))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        values(&fresh),
        vec!["t"; 10],
        "a new read follows the new policy"
    );
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}
