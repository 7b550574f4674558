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
        from: from.addr.into(),
        to: vec![to.addr.into()],
        keyspace: "t_wayne".into(),
        tables: Vec::new(),
        page_size: 100,
        tenant: None,
        ..CopyOptions::default()
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
        from: from.addr.into(),
        to: vec![to.addr.into()],
        keyspace: "t_nobody".into(),
        tables: Vec::new(),
        page_size: 100,
        tenant: None,
        ..CopyOptions::default()
    })
    .await
    .unwrap_err();
    assert!(e.contains("t_nobody") && e.contains("no tables"), "{e}");
    from.shutdown().await;
    to.shutdown().await;
}

#[tokio::test]
async fn one_tenant_of_shared_tables_is_copied() {
    let (from, to) = two_nodes().await;
    let mut c = Client::connect(from.addr, 4, None, None).await.unwrap();
    let mut d = Client::connect(to.addr, 4, None, None).await.unwrap();
    for q in [
        "CREATE KEYSPACE app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE app.orders (tenant_id text, id int, v text, PRIMARY KEY (tenant_id, id))",
        "CREATE TABLE app.buckets (tenant_id text, b int, v text, PRIMARY KEY ((tenant_id, b)))",
        "CREATE TABLE app.audit (id int PRIMARY KEY, tenant_id text)",
    ] {
        c.query(q).await.unwrap();
        d.query(q).await.unwrap();
    }
    for q in [
        "INSERT INTO app.orders (tenant_id, id, v) VALUES ('wayne', 1, 'w') USING TIMESTAMP 1000",
        "INSERT INTO app.orders (tenant_id, id, v) VALUES ('o''brien', 1, 'o')",
        "INSERT INTO app.orders (tenant_id, id, v) VALUES ('stark', 1, 's')",
        "INSERT INTO app.buckets (tenant_id, b, v) VALUES ('wayne', 1, 'w1')",
        "INSERT INTO app.buckets (tenant_id, b, v) VALUES ('wayne', 2, 'w2')",
        "INSERT INTO app.buckets (tenant_id, b, v) VALUES ('stark', 1, 's1')",
        "INSERT INTO app.audit (id, tenant_id) VALUES (1, 'wayne')",
    ] {
        c.query(q).await.unwrap();
    }
    let options = |tenant: &str| CopyOptions {
        from: from.addr.into(),
        to: vec![to.addr.into()],
        keyspace: "app".into(),
        tables: Vec::new(),
        page_size: 100,
        tenant: Some(("tenant_id".into(), tenant.into())),
        ..CopyOptions::default()
    };
    let report = copy(&options("wayne")).await.unwrap();
    let by_table = |t: &str| report.tables.iter().find(|r| r.table == t).unwrap();
    assert_eq!(by_table("orders").rows, 1);
    assert_eq!(by_table("buckets").rows, 2, "a composite partition key");
    assert_eq!(by_table("audit").rows, 0);
    assert!(
        by_table("audit").notes[0].contains("shared table"),
        "{:?}",
        by_table("audit").notes
    );
    assert_eq!(
        rows(to.addr, "SELECT id, WRITETIME(v) FROM app.orders").await,
        [[Some("1".to_string()), Some("1000".to_string())]],
        "only wayne's row, with its write time"
    );
    assert_eq!(rows(to.addr, "SELECT b FROM app.buckets").await.len(), 2);
    assert!(rows(to.addr, "SELECT id FROM app.audit").await.is_empty());
    // A quote in the value is escaped, not an injection.
    copy(&options("o'brien")).await.unwrap();
    assert_eq!(
        rows(
            to.addr,
            "SELECT id FROM app.orders WHERE tenant_id = 'o''brien'"
        )
        .await
        .len(),
        1
    );
    assert_eq!(rows(to.addr, "SELECT id FROM app.orders").await.len(), 2);
}

/// A copy stopped half-way (its target went down) and started again on
/// its checkpoint copies only the ranges left, and the target then holds
/// every row with its write time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_copy_resumes_from_its_checkpoint() {
    let (from, to) = two_nodes().await;
    for node in [from.addr, to.addr] {
        let mut c = Client::connect(node, 4, None, None).await.unwrap();
        c.query("CREATE KEYSPACE big WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
            .await
            .unwrap();
        c.query("CREATE TABLE big.t (k int PRIMARY KEY, v text)")
            .await
            .unwrap();
    }
    let mut c = Client::connect(from.addr, 4, None, None).await.unwrap();
    for k in 0..2000 {
        c.query(&format!(
            "INSERT INTO big.t (k, v) VALUES ({k}, 'v{k}') USING TIMESTAMP {}",
            1_000_000 + k
        ))
        .await
        .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("cutover-copy-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let checkpoint = dir.join("checkpoint.jsonl");
    let _ = std::fs::remove_file(&checkpoint);
    let options = CopyOptions {
        from: from.addr.into(),
        to: vec![to.addr.into()],
        keyspace: "big".into(),
        page_size: 100,
        concurrency: 2,
        splits: 64,
        checkpoint: Some(checkpoint.clone()),
        ..CopyOptions::default()
    };
    // The first run, slowed to 2,000 rows/s, loses its target part of the
    // way through (its ranges come from the node's system.size_estimates).
    let first = tokio::spawn({
        let o = CopyOptions {
            rate: 2000,
            ..options.clone()
        };
        async move { copy(&o).await }
    });
    let lines = || common::ranges_done(&checkpoint);
    common::wait_for("some ranges to finish", || std::future::ready(lines() >= 4)).await;
    to.node.set_down(true);
    let e = first
        .await
        .unwrap()
        .expect_err("the copy stops when its target is gone");
    assert!(e.contains(&to.addr.to_string()), "{e}");
    let done = lines();
    to.node.set_down(false);
    let second = copy(&options).await.unwrap();
    let t = &second.tables[0];
    let total = (t.ranges + t.ranges_already_done) as usize;
    assert!(
        (4..total).contains(&done),
        "{done} of {total} ranges finished"
    );
    assert_eq!(t.ranges_already_done as usize, done, "{second:?}");
    assert_eq!(
        t.ranges as usize,
        total - done,
        "only the ranges left are copied"
    );
    assert!(
        t.rows < 2000,
        "finished ranges were not read again: {} rows",
        t.rows
    );
    // The target holds every row with the origin's write time.
    let on = |node| async move {
        let mut r = rows(node, "SELECT k, v, WRITETIME(v) FROM big.t").await;
        r.sort();
        r
    };
    let (a, b) = (on(from.addr).await, on(to.addr).await);
    assert_eq!(a.len(), 2000);
    assert_eq!(
        a, b,
        "the target has what the origin has, write times included"
    );
    // A third run finds nothing left.
    let third = copy(&options).await.unwrap();
    assert_eq!((third.tables[0].ranges, third.tables[0].rows), (0, 0));
    // And the target validates clean.
    let v = cutover::validate::validate(
        &cutover::validate::ValidateOptions {
            from: from.addr.into(),
            to: to.addr.into(),
            keyspace: "big".into(),
            ..Default::default()
        },
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        (v.tables[0].found.rows_compared, v.differences()),
        (2000, 0),
        "{}",
        v.human()
    );
    std::fs::remove_dir_all(dir).unwrap();
    from.shutdown().await;
    to.shutdown().await;
}

/// `--split K/N`: three copies, each with its own checkpoint, together copy
/// every range exactly once, and the target then holds every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shares_cover_every_range_once() {
    let (from, to) = two_nodes().await;
    for node in [from.addr, to.addr] {
        let mut c = Client::connect(node, 4, None, None).await.unwrap();
        c.query("CREATE KEYSPACE sh WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
            .await
            .unwrap();
        c.query("CREATE TABLE sh.t (k int PRIMARY KEY, v text)")
            .await
            .unwrap();
    }
    let mut c = Client::connect(from.addr, 4, None, None).await.unwrap();
    for k in 0..600 {
        c.query(&format!("INSERT INTO sh.t (k, v) VALUES ({k}, 'v{k}')"))
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("cutover-copy-shares-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ranges = Vec::new();
    let mut rows = 0;
    for k in 1..=3 {
        let checkpoint = dir.join(format!("share-{k}.jsonl"));
        let _ = std::fs::remove_file(&checkpoint);
        let r = copy(&CopyOptions {
            from: from.addr.into(),
            to: vec![to.addr.into()],
            keyspace: "sh".into(),
            splits: 30,
            split: Some((k, 3)),
            checkpoint: Some(checkpoint.clone()),
            ..CopyOptions::default()
        })
        .await
        .unwrap();
        assert_eq!(r.tables[0].ranges, 10, "share {k}/3 of 30 ranges");
        rows += r.tables[0].rows;
        for line in std::fs::read_to_string(&checkpoint).unwrap().lines() {
            if !line.is_empty() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                ranges.push((v["start"].as_i64().unwrap(), v["end"].as_i64().unwrap()));
            }
        }
    }
    assert_eq!(rows, 600, "each row read by one share");
    ranges.sort();
    assert_eq!(ranges.len(), 30);
    assert_eq!(ranges.first().unwrap().0, i64::MIN);
    assert_eq!(ranges.last().unwrap().1, i64::MAX);
    assert!(
        ranges.windows(2).all(|w| w[0].1 == w[1].0),
        "the shares' ranges are adjacent, none twice, none missing"
    );
    let count = |node| async move { self::rows(node, "SELECT k FROM sh.t").await.len() };
    assert_eq!(count(to.addr).await, 600);
    std::fs::remove_dir_all(dir).unwrap();
    from.shutdown().await;
    to.shutdown().await;
}

/// A table's `default_time_to_live`: cells written under it keep what is
/// left of it on the target; a destination whose default differs is named
/// in the report, and one without the table stops the copy before it
/// starts.
#[tokio::test]
async fn default_time_to_live_is_kept_and_a_differing_one_named() {
    let (from, to) = two_nodes().await;
    let mut c = Client::connect(from.addr, 4, None, None).await.unwrap();
    let mut d = Client::connect(to.addr, 4, None, None).await.unwrap();
    let ks = "CREATE KEYSPACE ttl WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}";
    c.query(ks).await.unwrap();
    d.query(ks).await.unwrap();
    c.query("CREATE TABLE ttl.t (k int PRIMARY KEY, v text) WITH default_time_to_live = 3600")
        .await
        .unwrap();
    let options = CopyOptions {
        from: from.addr.into(),
        to: vec![to.addr.into()],
        keyspace: "ttl".into(),
        ..CopyOptions::default()
    };
    let e = copy(&options).await.expect_err("no table on the target");
    assert!(e.contains("ttl.t does not exist on"), "{e}");
    d.query("CREATE TABLE ttl.t (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    c.query("INSERT INTO ttl.t (k, v) VALUES (1, 'a')")
        .await
        .unwrap();
    c.query("INSERT INTO ttl.t (k, v) VALUES (2, 'b') USING TTL 0")
        .await
        .unwrap();
    let r = copy(&options).await.unwrap();
    assert!(
        r.tables[0]
            .notes
            .iter()
            .any(|n| n.contains("default_time_to_live is 3600 s on the origin and 0 s")),
        "{r:?}"
    );
    let got = rows(to.addr, "SELECT k, TTL(v) FROM ttl.t").await;
    let ttl_of = |k: &str| {
        got.iter()
            .find(|r| r[0].as_deref() == Some(k))
            .unwrap_or_else(|| panic!("{got:?}"))[1]
            .clone()
    };
    let left: i64 = ttl_of("1").expect("a TTL").parse().unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    assert_eq!(ttl_of("2"), None, "an explicit TTL 0 stays without TTL");
    from.shutdown().await;
    to.shutdown().await;
}
