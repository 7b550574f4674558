//! The embedded node as a Murmur3 cluster, through the Rust `scylla`
//! driver: `token()` in SELECT gives the token the driver computes itself,
//! partitions come back in token order (also page by page), and
//! `WHERE token(k) > ? AND token(k) <= ?` splits a table into ranges that
//! hold every row exactly once.

use std::collections::BTreeSet;

use cutover::node::{self, NodeConfig};
use futures::TryStreamExt;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::unprepared::Statement;

mod common;
use common::Rows;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_order_and_ranges_are_cassandras() {
    let n = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let s = SessionBuilder::new()
        .known_node_addr(n.addr)
        .build()
        .await
        .unwrap();
    s.query_unpaged(
        "CREATE KEYSPACE tk WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        (),
    )
    .await
    .unwrap();
    s.query_unpaged("CREATE TABLE tk.one (k int PRIMARY KEY, v text)", ())
        .await
        .unwrap();
    s.query_unpaged(
        "CREATE TABLE tk.two (a text, b int, c int, PRIMARY KEY ((a, b), c))",
        (),
    )
    .await
    .unwrap();
    let insert = s
        .prepare("INSERT INTO tk.one (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    let insert_two = s
        .prepare("INSERT INTO tk.two (a, b, c) VALUES (?, ?, ?)")
        .await
        .unwrap();
    for k in 0..1000i32 {
        s.execute_unpaged(&insert, (k, format!("v{k}")))
            .await
            .unwrap();
        s.execute_unpaged(&insert_two, (format!("é-{k}"), k, 1))
            .await
            .unwrap();
    }

    // token(k) is the token the driver computes for the key, and a full
    // scan returns partitions in token order, page after page.
    let mut scan = Statement::new("SELECT token(k), k FROM tk.one");
    scan.set_page_size(100);
    let rows: Vec<(i64, i32)> = s
        .query_iter(scan, ())
        .await
        .unwrap()
        .rows_stream::<(i64, i32)>()
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
    for (token, k) in &rows {
        let theirs = insert.calculate_token(&(k, "")).unwrap().unwrap().value();
        assert_eq!(*token, theirs, "token of k = {k}");
    }
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0),
        "partitions come in token order"
    );
    let two: Vec<(i64, String, i32)> = s
        .query_unpaged("SELECT token(a, b), a, b FROM tk.two", ())
        .await
        .unwrap()
        .rows_vec::<(i64, String, i32)>();
    assert_eq!(two.len(), 1000);
    for (token, a, b) in &two {
        let theirs = insert_two
            .calculate_token(&(a, b, 1))
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(*token, theirs, "token of ({a}, {b})");
    }

    // Eight ranges (MIN, t1], (t1, t2] ... (t7, MAX] hold every row once.
    let range = s
        .prepare("SELECT k FROM tk.one WHERE token(k) > ? AND token(k) <= ?")
        .await
        .unwrap();
    let step = (u64::MAX / 8) as i64;
    let bounds: Vec<i64> = (0..=8)
        .map(|i| {
            if i == 8 {
                i64::MAX
            } else {
                i64::MIN.wrapping_add(step.wrapping_mul(i))
            }
        })
        .collect();
    let mut seen = Vec::new();
    for w in bounds.windows(2) {
        let part: Vec<(i32,)> = s
            .execute_unpaged(&range, (w[0], w[1]))
            .await
            .unwrap()
            .rows_vec::<(i32,)>();
        for (k,) in &part {
            let t = insert.calculate_token(&(k, "")).unwrap().unwrap().value();
            assert!(
                w[0] < t && t <= w[1],
                "k = {k} (token {t}) outside ({}, {}]",
                w[0],
                w[1]
            );
        }
        seen.extend(part.into_iter().map(|(k,)| k));
    }
    assert_eq!(seen.len(), 1000, "each row in exactly one range");
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>().len(), 1000);

    // system.size_estimates: the node's ranges, each with the partitions
    // whose tokens fall in it, 1,000 in all.
    let estimates: Vec<(String, String, i64, i64)> = s
        .query_unpaged(
            "SELECT range_start, range_end, partitions_count, mean_partition_size FROM system.size_estimates WHERE keyspace_name = 'tk' AND table_name = 'one'",
            (),
        )
        .await
        .unwrap()
        .rows_vec::<(String, String, i64, i64)>();
    assert!(estimates.len() > 1, "{estimates:?}");
    let mut counted = 0;
    for (start, end, n, size) in &estimates {
        let (start, end): (i64, i64) = (start.parse().unwrap(), end.parse().unwrap());
        let last = if end == i64::MIN { i64::MAX } else { end };
        let here = rows
            .iter()
            .filter(|(t, _)| *t > start && *t <= last)
            .count() as i64;
        assert_eq!(*n, here, "partitions in ({start}, {end}]");
        assert!(*n == 0 || *size > 0);
        counted += n;
    }
    assert_eq!(counted, 1000, "the ranges cover the ring once");

    // token(k) = t finds that partition; a range that excludes a pinned
    // partition leaves it out; token() on the wrong columns is refused.
    let (t, k) = rows[500];
    let one: Vec<(i32,)> = s
        .query_unpaged(format!("SELECT k FROM tk.one WHERE token(k) = {t}"), ())
        .await
        .unwrap()
        .rows_vec::<(i32,)>();
    assert_eq!(one, vec![(k,)]);
    let none = s
        .query_unpaged(
            format!("SELECT k FROM tk.one WHERE k = {k} AND token(k) > {t}"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(none.rows_num(), 0);
    let e = s
        .query_unpaged("SELECT token(b, a) FROM tk.two", ())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("partition key order"), "{e}");
    n.shutdown().await;
}
