//! Upstream connections against the embedded node: handshake variants,
//! many requests at once, timeouts that keep stream ids safe, and a node
//! that goes away.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cutover::frame::{Compression, Opcode};
use cutover::node::{self, NodeConfig, RunningNode};
use cutover::protocol::request::{Query, QueryParams};
use cutover::protocol::response::ResultBody;
use cutover::upstream::{ConnectOptions, UpstreamConn, UpstreamError};

const T: Duration = Duration::from_secs(5);

async fn start(users: Vec<(String, String)>) -> RunningNode {
    let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    c.users = users;
    node::start(c).await.unwrap()
}

fn q(text: &str, version: u8) -> Bytes {
    Query {
        text: text.into(),
        params: QueryParams {
            consistency: 1,
            ..Default::default()
        },
    }
    .encode(version)
}

async fn rows(c: &UpstreamConn, text: &str) -> Vec<Vec<Option<Bytes>>> {
    let f = c
        .request(Opcode::Query, q(text, c.version()), T)
        .await
        .unwrap();
    match ResultBody::read(&f.body, c.version()).unwrap() {
        ResultBody::Rows(r) => r.rows,
        other => panic!("{text}: {other:?}"),
    }
}

/// More requests than stream ids: a caller waits its turn.
async fn when_free(c: &UpstreamConn, text: &str) -> cutover::frame::Frame {
    loop {
        match c.request(Opcode::Query, q(text, 4), T).await {
            Ok(f) => return f,
            Err(UpstreamError::Busy { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn setup(n: &RunningNode) {
    let c = UpstreamConn::connect(n.addr, &ConnectOptions::default())
        .await
        .unwrap();
    for s in [
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE ks.t (k int PRIMARY KEY, v text)",
    ] {
        assert_eq!(c.request(Opcode::Query, q(s, 4), T).await.unwrap().op(), Some(Opcode::Result));
    }
}

#[tokio::test]
async fn every_version_and_compression_with_the_keyspace_replayed() {
    let n = start(Vec::new()).await;
    setup(&n).await;
    let mut open = Vec::new();
    for (version, compression) in [
        (3, None),
        (4, Some(Compression::Lz4)),
        (4, Some(Compression::Snappy)),
        (5, None),
        (5, Some(Compression::Lz4)),
    ] {
        let opts = ConnectOptions {
            version,
            compression,
            keyspace: Some("ks".into()),
            startup: vec![
                ("DRIVER_NAME".into(), "cutover-test".into()),
                ("COMPRESSION".into(), "ignored".into()),
            ],
            ..Default::default()
        };
        let c = UpstreamConn::connect(n.addr, &opts).await.unwrap();
        // Unqualified: works only because USE was replayed.
        let f = c
            .request(
                Opcode::Query,
                q(
                    &format!("INSERT INTO t (k, v) VALUES ({version}, 'x')"),
                    version,
                ),
                T,
            )
            .await
            .unwrap();
        assert_eq!(f.op(), Some(Opcode::Result), "v{version} {compression:?}");
        assert_eq!(
            rows(&c, &format!("SELECT v FROM t WHERE k = {version}"))
                .await
                .len(),
            1
        );
        open.push(c);
    }
    let stats = n.node.stats.report();
    let conns: Vec<_> = stats
        .connections
        .iter()
        .filter(|c| c.startup.get("DRIVER_NAME").map(String::as_str) == Some("cutover-test"))
        .collect();
    assert_eq!(conns.len(), 5);
    assert!(conns
        .iter()
        .any(|c| c.protocol_version == 5 && c.compression.as_deref() == Some("lz4")));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_at_once_each_get_their_own_answer() {
    let n = start(Vec::new()).await;
    setup(&n).await;
    let c = Arc::new(
        UpstreamConn::connect(
            n.addr,
            &ConnectOptions {
                max_in_flight: 64,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..500 {
        let c = c.clone();
        let text = format!("INSERT INTO ks.t (k, v) VALUES ({i}, 'v{i}')");
        tasks.push(tokio::spawn(async move { when_free(&c, &text).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().op(), Some(Opcode::Result));
    }
    let mut reads = Vec::new();
    for i in 0..500 {
        let c = c.clone();
        let text = format!("SELECT v FROM ks.t WHERE k = {i}");
        reads.push(tokio::spawn(async move { (i, when_free(&c, &text).await) }));
    }
    for r in reads {
        let (i, f) = r.await.unwrap();
        let ResultBody::Rows(rows) = ResultBody::read(&f.body, 4).unwrap() else {
            panic!("{f:?}")
        };
        assert_eq!(
            rows.rows[0][0].as_deref(),
            Some(format!("v{i}").as_bytes()),
            "answer {i} went to its own request"
        );
    }
    assert_eq!(c.in_flight(), 0);
    n.shutdown().await;
}

#[tokio::test]
async fn credentials_are_sent_and_refusals_are_typed() {
    let n = start(vec![("proxy".into(), "pw".into())]).await;
    let good = ConnectOptions {
        credentials: Some(("proxy".into(), "pw".into())),
        ..Default::default()
    };
    let c = UpstreamConn::connect(n.addr, &good).await.unwrap();
    assert_eq!(rows(&c, "SELECT key FROM system.local").await.len(), 1);
    let bad = ConnectOptions {
        credentials: Some(("proxy".into(), "nope".into())),
        ..Default::default()
    };
    match UpstreamConn::connect(n.addr, &bad).await {
        Err(e @ UpstreamError::Handshake { .. }) => {
            assert!(
                e.to_string()
                    .contains("Provided username proxy and/or password are incorrect"),
                "{e}"
            );
            assert!(e.never_sent());
        }
        other => panic!("{:?}", other.err()),
    }
    match UpstreamConn::connect(n.addr, &ConnectOptions::default()).await {
        Err(UpstreamError::NoCredentials { .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    n.shutdown().await;
}

#[tokio::test]
async fn a_timed_out_stream_id_is_not_reused_until_its_late_answer_arrives() {
    let n = start(Vec::new()).await;
    setup(&n).await;
    let c = Arc::new(
        UpstreamConn::connect(
            n.addr,
            &ConnectOptions {
                max_in_flight: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    );
    n.node
        .faults
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let short = Duration::from_millis(100);
    match c
        .request(
            Opcode::Query,
            q("INSERT INTO ks.t (k, v) VALUES (1, 'late')", 4),
            short,
        )
        .await
    {
        Err(e @ UpstreamError::Timeout { .. }) => {
            assert!(!e.never_sent(), "a timed-out write may have applied")
        }
        other => panic!("{other:?}"),
    }
    // One of three ids timed out: not enough to replace the connection.
    assert!(!c.is_closed());
    // Two requests take the two other ids; the timed-out one still owns
    // the third, so a fourth waits its whole timeout for an id.
    let hung: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.request(Opcode::Query, q("SELECT * FROM ks.t", 4), T)
                    .await
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + T;
    while c.in_flight() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests never sent"
        );
        tokio::task::yield_now().await;
    }
    match c
        .request(Opcode::Query, q("SELECT * FROM ks.t", 4), short)
        .await
    {
        Err(e @ UpstreamError::Busy { .. }) => assert!(e.never_sent()),
        other => panic!("{other:?}"),
    }
    // The proxy's own requests still get through on the reserved ids.
    assert_eq!(
        c.request_reserved(Opcode::Options, Bytes::new(), T)
            .await
            .unwrap()
            .op(),
        Some(Opcode::Supported)
    );
    n.node.faults.release_all();
    for h in hung {
        assert_eq!(h.await.unwrap().unwrap().op(), Some(Opcode::Result));
    }
    // Once the late answer has come and gone, its id serves a new request,
    // and that request gets its own answer, not the late one.
    while c.in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the late answer never came"
        );
        tokio::task::yield_now().await;
    }
    let f = c
        .request(Opcode::Query, q("SELECT v FROM ks.t WHERE k = 1", 4), T)
        .await
        .unwrap();
    let ResultBody::Rows(r) = ResultBody::read(&f.body, 4).unwrap() else {
        panic!("not rows: {f:?}")
    };
    assert_eq!(r.rows[0][0].as_deref(), Some(&b"late"[..]));
    n.shutdown().await;
}

#[tokio::test]
async fn a_request_waits_for_a_stream_id_and_a_hung_node_cannot_pin_them() {
    let n = start(Vec::new()).await;
    setup(&n).await;
    let opts = ConnectOptions {
        max_in_flight: 2,
        ..Default::default()
    };
    let c = Arc::new(UpstreamConn::connect(n.addr, &opts).await.unwrap());
    // Both ids busy with slow answers: a third request waits for one
    // instead of failing, and gets its own answer.
    n.node
        .faults
        .latency_us
        .store(200_000, std::sync::atomic::Ordering::Relaxed);
    let three: Vec<_> = (1..=3)
        .map(|k| {
            let c = c.clone();
            tokio::spawn(async move {
                c.request(
                    Opcode::Query,
                    q(&format!("INSERT INTO ks.t (k, v) VALUES ({k}, 'w')"), 4),
                    T,
                )
                .await
            })
        })
        .collect();
    for h in three {
        assert_eq!(h.await.unwrap().unwrap().op(), Some(Opcode::Result));
    }
    n.node.faults.clear();

    // A node that stops answering: one request holds an id, another
    // times out on the other. Half the ids are then held by a request that
    // timed out, so the connection is closed (a new one gets every id
    // back), and the request waiting for an id learns it was never sent.
    n.node
        .faults
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let holding = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(Opcode::Query, q("SELECT * FROM ks.t", 4), T)
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + T;
    while c.in_flight() < 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    let timing_out = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(
                Opcode::Query,
                q("SELECT * FROM ks.t", 4),
                Duration::from_millis(100),
            )
            .await
        })
    };
    while c.in_flight() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(Opcode::Query, q("SELECT * FROM ks.t", 4), T)
                .await
        })
    };
    assert!(matches!(
        timing_out.await.unwrap(),
        Err(UpstreamError::Timeout { .. })
    ));
    match waiting.await.unwrap() {
        Err(e @ UpstreamError::Replaced { .. }) => assert!(e.never_sent(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        holding.await.unwrap(),
        Err(UpstreamError::Closed { .. })
    ));
    assert!(c.is_closed());
    n.node.faults.release_all();
    let fresh = UpstreamConn::connect(n.addr, &opts).await.unwrap();
    assert_eq!(
        fresh
            .request(Opcode::Query, q("SELECT * FROM ks.t", 4), T)
            .await
            .unwrap()
            .op(),
        Some(Opcode::Result)
    );
    n.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_fails_waiting_requests_at_once() {
    let n = start(Vec::new()).await;
    setup(&n).await;
    let c = Arc::new(
        UpstreamConn::connect(n.addr, &ConnectOptions::default())
            .await
            .unwrap(),
    );
    n.node
        .faults
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(
                Opcode::Query,
                q("SELECT * FROM ks.t", 4),
                Duration::from_secs(30),
            )
            .await
        })
    };
    // Wait until the node holds the request, then drop every connection.
    let deadline = tokio::time::Instant::now() + T;
    while n
        .node
        .stats
        .report()
        .requests
        .get("QUERY")
        .copied()
        .unwrap_or(0)
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never reached the node"
        );
        tokio::task::yield_now().await;
    }
    n.node.drop_connections();
    let r = tokio::time::timeout(T, waiting)
        .await
        .expect("failed promptly, not after 30 s")
        .unwrap();
    assert!(matches!(r, Err(UpstreamError::Closed { .. })), "{r:?}");
    assert!(c.is_closed());
    assert!(matches!(
        c.request(Opcode::Options, Bytes::new(), T).await,
        Err(UpstreamError::Closed { .. })
    ));
    n.node.faults.release_all();
    n.shutdown().await;
}

#[tokio::test]
async fn connecting_to_nothing_is_a_clear_error() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    match UpstreamConn::connect(unused, &ConnectOptions::default()).await {
        Err(e @ UpstreamError::Connect { .. }) => {
            assert!(e.to_string().contains(&unused.to_string()));
            assert!(e.never_sent());
        }
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_and_detect_a_dead_one() {
    let n = start(Vec::new()).await;
    let opts = ConnectOptions {
        heartbeat_interval: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let c = UpstreamConn::connect(n.addr, &opts).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while n
        .node
        .stats
        .report()
        .requests
        .get("OPTIONS")
        .copied()
        .unwrap_or(0)
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeats were sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!c.is_closed());
    n.shutdown().await;
    let deadline = tokio::time::Instant::now() + T;
    while !c.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dead node was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
