//! Shadow reads: in `shadow-reads` every first page also goes to the
//! target and the answers are compared by value; the client never waits
//! for the target.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{http, wait_for, Setup};
use cutover::client::Client;
use cutover::config::Phase;
use cutover::frame::Opcode;
use cutover::protocol::reader::RawValue;
use cutover::protocol::response::ResultBody;
use serde_json::Value;

#[tokio::test]
async fn shadow_reads_count_exactly_the_rows_that_differ_and_never_delay_the_client() {
    let setup = Setup::start_with(None, None, |cfg| {
        cfg.route.phase = Phase::ShadowReads;
        cfg.limits.max_shadow_reads_in_flight = 8;
        cfg.clusters.get_mut("target").unwrap().request_timeout =
            cutover::config::ConfigDuration(Duration::from_secs(3));
    })
    .await;
    let (proxy, admin, target) = (&setup.proxy, setup.admin, &setup.target);

    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
    c.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for k in 0..20 {
        c.query(&format!("INSERT INTO ks.t (k, v) VALUES ({k}, 'v{k}')"))
            .await
            .unwrap();
    }
    // Some rows differ on the target only.
    let differing = [3, 7, 11, 12, 19];
    let mut t = Client::connect(target.addr, 4, None, None).await.unwrap();
    for k in differing {
        t.query(&format!("UPDATE ks.t SET v = 'changed' WHERE k = {k}"))
            .await
            .unwrap();
    }
    let p = c.prepare("SELECT v FROM ks.t WHERE k = ?").await.unwrap();
    for k in 0..20i32 {
        let r = c
            .execute(
                &p,
                vec![RawValue::Bytes(Bytes::copy_from_slice(&k.to_be_bytes()))],
            )
            .await
            .unwrap();
        let ResultBody::Rows(rows) = r else { panic!() };
        assert_eq!(
            rows.rows[0][0].as_deref(),
            Some(format!("v{k}").as_bytes()),
            "the client reads the origin"
        );
    }
    let shadow = |admin| async move {
        let (status, body) = http(admin, "GET", "/v1/shadow", None).await;
        assert_eq!(status, 200);
        serde_json::from_str::<Value>(&body).unwrap()
    };
    wait_for("20 shadow reads compared", || async move {
        shadow(admin).await["compared"] == 20
    })
    .await;
    let r = shadow(admin).await;
    assert_eq!(r["mismatched"], 5, "{r}");
    assert_eq!(r["mismatched_by_table"]["ks.t"], 5);
    let keys: BTreeSet<String> = r["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = differing.iter().map(|k| format!("[{k}]")).collect();
    assert_eq!(
        keys, expected,
        "the logged keys are exactly the rows that differ"
    );
    let (_, m) = http(admin, "GET", "/metrics", None).await;
    assert!(
        m.contains("cutover_shadow_read_mismatches_total{table=\"ks.t\"} 5\n"),
        "{m}"
    );
    // A QUERY is shadowed too; its key is its text.
    c.query("SELECT v FROM ks.t WHERE k = 3").await.unwrap();
    wait_for("the QUERY compared", || async move {
        shadow(admin).await["mismatched"] == 6
    })
    .await;

    // The target hangs: every read still completes at once, shadow reads
    // beyond the 8 in flight are dropped, and none is compared.
    target.node.faults.hang.store(true, Ordering::SeqCst);
    let before = shadow(admin).await;
    let compared_before = before["compared"].as_u64().unwrap();
    let dropped_before = before["dropped"].as_u64().unwrap();
    for k in 0..40i32 {
        let body = c.execute_body(
            &p,
            vec![RawValue::Bytes(Bytes::copy_from_slice(
                &(k % 20).to_be_bytes(),
            ))],
        );
        let a = tokio::time::timeout(Duration::from_secs(2), c.request(Opcode::Execute, body))
            .await
            .expect("a client read waited for the hanging target")
            .unwrap();
        assert_eq!(a.op(), Some(Opcode::Result));
    }
    let r = shadow(admin).await;
    assert_eq!(r["dropped"].as_u64().unwrap(), dropped_before + 32, "{r}");
    assert_eq!(
        r["compared"].as_u64().unwrap(),
        compared_before,
        "the target answered nothing"
    );
    let (_, m) = http(admin, "GET", "/metrics", None).await;
    let dropped = format!(
        "\ncutover_shadow_reads_dropped_total {}\n",
        dropped_before + 32
    );
    assert!(m.contains(&dropped), "{m}");
    target.node.faults.release_all();
    target.node.faults.hang.store(false, Ordering::SeqCst);

    setup.stop().await;
}

#[tokio::test]
async fn target_primary_can_shadow_reads_to_the_origin() {
    let setup = Setup::start_with(None, None, |cfg| {
        cfg.route.phase = Phase::TargetPrimary;
        cfg.route.shadow_target_primary = true;
    })
    .await;
    let (proxy, admin, origin) = (&setup.proxy, setup.admin, &setup.origin);
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
    c.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for k in 0..4 {
        c.query(&format!("INSERT INTO ks.t (k, v) VALUES ({k}, 'v{k}')"))
            .await
            .unwrap();
    }
    let mut o = Client::connect(origin.addr, 4, None, None).await.unwrap();
    o.query("UPDATE ks.t SET v = 'stale' WHERE k = 2")
        .await
        .unwrap();
    for k in 0..4 {
        let ResultBody::Rows(r) = c
            .query(&format!("SELECT v FROM ks.t WHERE k = {k}"))
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            r.rows[0][0].as_deref(),
            Some(format!("v{k}").as_bytes()),
            "the target answers"
        );
    }
    wait_for("4 comparisons", || async move {
        let (_, body) = http(admin, "GET", "/v1/shadow", None).await;
        serde_json::from_str::<Value>(&body).unwrap()["compared"] == 4
    })
    .await;
    let (_, body) = http(admin, "GET", "/v1/shadow", None).await;
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["mismatched"], 1, "{r}");
    assert!(
        r["samples"][0]["key"].as_str().unwrap().contains("k = 2"),
        "{r}"
    );
    setup.stop().await;
}
