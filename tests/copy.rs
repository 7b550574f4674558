//! `cutover copy`: every cell arrives with its own write time and TTL,
//! static cells once per partition, collections and key-only rows as the
//! report says; a counter table is skipped with its reason.

mod common;

use common::two_nodes;
use cutover::client::Client;
use cutover::copy::{copy, CopyOptions};
use cutover::protocol::response::ResultBody;

async fn rows(node: std::net::SocketAddr, q: &str) -> Vec<Vec<Option<String>>> {
    let mut c = Client::connect(node, 4, None, None).await.unwrap();
    let ResultBody::Rows(r) = c.query(q).await.unwrap() else {
        panic!("no rows for {q}")
    };
    r.rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&r.metadata.columns)
                .map(|(v, spec)| {
                    v.as_ref().map(|b| match spec.typ {
                        cutover::protocol::ColumnType::Bigint => {
                            i64::from_be_bytes(b[..].try_into().unwrap()).to_string()
                        }
                        cutover::protocol::ColumnType::Int => {
                            i32::from_be_bytes(b[..].try_into().unwrap()).to_string()
                        }
                        _ => format!("{b:?}"),
                    })
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn cells_keep_their_write_times_and_ttls() {
    let (from, to) = two_nodes().await;
    let mut c = Client::connect(from.addr, 4, None, None).await.unwrap();
    let mut d = Client::connect(to.addr, 4, None, None).await.unwrap();
    for q in [
        "CREATE KEYSPACE t_wayne WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE t_wayne.events (p text, c int, a text, b int, s text static, l list<int>, PRIMARY KEY (p, c))",
        "CREATE TABLE t_wayne.ctr (k text PRIMARY KEY, n counter)",
    ] {
        c.query(q).await.unwrap();
        d.query(q).await.unwrap();
    }
    for q in [
        "INSERT INTO t_wayne.events (p, c, a, b) VALUES ('x', 1, 'one', 1) USING TIMESTAMP 1000",
        "UPDATE t_wayne.events USING TIMESTAMP 2000 AND TTL 3600 SET a = 'newer' WHERE p = 'x' AND c = 1",
        "INSERT INTO t_wayne.events (p, c, a) VALUES ('x', 2, 'two') USING TIMESTAMP 3000",
        "INSERT INTO t_wayne.events (p, s) VALUES ('x', 'static') USING TIMESTAMP 4000",
        "INSERT INTO t_wayne.events (p, c, l) VALUES ('y', 1, [1, 2]) USING TIMESTAMP 5000",
        "INSERT INTO t_wayne.events (p, c) VALUES ('z', 1)",
        "UPDATE t_wayne.ctr SET n = n + 3 WHERE k = 'k'",
    ] {
        c.query(q).await.unwrap();
    }
    // Enough rows for several pages.
    for i in 0..250 {
        c.query(&format!(
            "INSERT INTO t_wayne.events (p, c, a) VALUES ('bulk', {i}, 'v{i}') USING TIMESTAMP {}",
            10_000 + i
        ))
        .await
        .unwrap();
    }
    let report = copy(&CopyOptions {
        from: from.addr,
        to: vec![to.addr],
        keyspace: "t_wayne".into(),
        tables: Vec::new(),
        credentials: None,
        page_size: 100,
    })
    .await
    .unwrap();
    let events = report.tables.iter().find(|t| t.table == "events").unwrap();
    assert_eq!(events.rows, 2 + 1 + 1 + 250, "{report:?}");
    let ctr = report.tables.iter().find(|t| t.table == "ctr").unwrap();
    assert!(ctr.notes[0].contains("skipped"), "{report:?}");
    assert!(
        events.notes.iter().any(|n| n.contains("collections"))
            && events
                .notes
                .iter()
                .any(|n| n.contains("1 row(s) with no regular cell")),
        "{report:?}"
    );

    let q = "SELECT p, c, writetime(a), ttl(a), writetime(b), writetime(s) FROM t_wayne.events WHERE p = 'x'";
    let want = rows(from.addr, q).await;
    let got = rows(to.addr, q).await;
    assert_eq!(got, want);
    assert_eq!(got[0][2].as_deref(), Some("2000"));
    assert_eq!(got[0][4].as_deref(), Some("1000"));
    assert_eq!(got[0][5].as_deref(), Some("4000"));
    let ttl: i32 = got[0][3].as_deref().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
    let q = "SELECT c, a, writetime(a) FROM t_wayne.events WHERE p = 'bulk'";
    assert_eq!(rows(to.addr, q).await, rows(from.addr, q).await);
    assert_eq!(rows(to.addr, q).await.len(), 250);
    for q in [
        "SELECT l FROM t_wayne.events WHERE p = 'y'",
        "SELECT c FROM t_wayne.events WHERE p = 'z'",
    ] {
        assert_eq!(rows(to.addr, q).await, rows(from.addr, q).await, "{q}");
    }
    assert_eq!(
        rows(to.addr, "SELECT n FROM t_wayne.ctr WHERE k = 'k'")
            .await
            .len(),
        0,
        "counters are not copied"
    );

    // A keyspace the source lacks is a clear error.
    let e = copy(&CopyOptions {
        from: from.addr,
        to: vec![to.addr],
        keyspace: "t_nobody".into(),
        tables: Vec::new(),
        credentials: None,
        page_size: 100,
    })
    .await
    .unwrap_err();
    assert!(e.contains("t_nobody") && e.contains("no tables"), "{e}");
    from.shutdown().await;
    to.shutdown().await;
}
