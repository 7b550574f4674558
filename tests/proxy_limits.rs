//! Backpressure at the in-flight limit, and the one bound that fails
//! requests: at `max_in_flight_per_connection` a connection takes no new
//! request until answers drain (requests wait, heartbeats are answered),
//! and only past the proxy-wide `max_in_flight_bytes` is a request
//! answered OVERLOADED.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cutover::client::Client;
use cutover::config::{ByteSize, Config};
use cutover::frame::{Frame, Opcode};
use cutover::node::{self, NodeConfig, RunningNode};
use cutover::protocol::request::{Query, QueryParams};
use cutover::protocol::response::ResultBody;
use cutover::protocol::{ErrorCode, ErrorFrame};

const T: Duration = Duration::from_secs(10);

async fn two_nodes() -> (RunningNode, RunningNode) {
    let n = || node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()));
    (n().await.unwrap(), n().await.unwrap())
}

fn config(origin: &RunningNode, target: &RunningNode) -> Config {
    Config::quick_start(
        &origin.addr.to_string(),
        &target.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap()
}

async fn schema(c: &mut Client) {
    c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
    c.query("CREATE TABLE ks.t (k int PRIMARY KEY)")
        .await
        .unwrap();
}

fn insert(k: i32) -> bytes::Bytes {
    Query {
        text: format!("INSERT INTO ks.t (k) VALUES ({k})"),
        params: QueryParams {
            consistency: 1,
            ..Default::default()
        },
    }
    .encode(4)
}

/// Waits until `cond` holds, or fails after `T` with `what`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_burst_past_the_in_flight_limit_waits_and_is_all_answered() {
    let (origin, target) = two_nodes().await;
    let mut cfg = config(&origin, &target);
    cfg.limits.max_in_flight_per_connection = 2;
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    schema(&mut c).await;

    // The origin holds every request: two run, the rest wait in the proxy.
    origin.node.faults.hang.store(true, Ordering::SeqCst);
    for k in 0..100 {
        c.feed(Frame::request(4, 100 + k as i16, Opcode::Query, insert(k)))
            .await
            .unwrap();
    }
    c.flush().await.unwrap();
    until("the 100 requests never reached the proxy", || {
        proxy.proxy.metrics().in_flight.load(Ordering::Relaxed) == 100
    })
    .await;
    // A heartbeat while the connection waits is answered at once.
    c.send(Frame::request(4, 7, Opcode::Options, bytes::Bytes::new()))
        .await
        .unwrap();
    let first = tokio::time::timeout(T, c.recv()).await.unwrap().unwrap();
    assert_eq!(
        (first.stream, first.op()),
        (7, Some(Opcode::Supported)),
        "the heartbeat is answered before the requests the origin holds"
    );
    origin.node.faults.release_all();
    let mut answered = Vec::new();
    for _ in 0..100 {
        let f = tokio::time::timeout(T, c.recv()).await.unwrap().unwrap();
        assert_eq!(
            f.op(),
            Some(Opcode::Result),
            "{:?}",
            ErrorFrame::decode(&f.body)
        );
        answered.push(f.stream);
    }
    answered.sort();
    assert_eq!(answered, (100..200).collect::<Vec<i16>>());
    for n in [&origin, &target] {
        let mut direct = Client::connect(n.addr, 4, None, None).await.unwrap();
        let ResultBody::Rows(r) = direct.query("SELECT k FROM ks.t").await.unwrap() else {
            panic!("not rows")
        };
        assert_eq!(r.rows.len(), 100, "every write on {}", n.addr);
    }
    let metrics = proxy.proxy.metrics().render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cutover_client_pauses_total ") && !l.ends_with(" 0")),
        "the pause is counted"
    );
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

#[tokio::test]
async fn a_paused_connection_stops_reading_past_its_queue_bound() {
    let (origin, target) = two_nodes().await;
    let mut cfg = config(&origin, &target);
    cfg.limits.max_in_flight_per_connection = 2;
    cfg.limits.max_queued_bytes_per_connection = ByteSize(1024);
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    schema(&mut c).await;
    origin.node.faults.hang.store(true, Ordering::SeqCst);
    let body = insert(1000).len();
    let sent = 1000;
    for k in 0..sent {
        c.feed(Frame::request(4, k as i16, Opcode::Query, insert(1000 + k)))
            .await
            .unwrap();
    }
    c.flush().await.unwrap();
    // Two run; about 1 KiB of requests wait; the rest stay in the socket.
    let most = 2 + 1024 / body as i64 + 1;
    until("the requests that fit never reached the proxy", || {
        proxy.proxy.metrics().in_flight.load(Ordering::Relaxed) >= most - 1
    })
    .await;
    let read = proxy.proxy.metrics().in_flight.load(Ordering::Relaxed);
    assert!(
        read <= most,
        "read {read} of {sent} requests; the bound allows {most}"
    );
    origin.node.faults.release_all();
    for _ in 0..sent {
        let f = tokio::time::timeout(T, c.recv()).await.unwrap().unwrap();
        assert_eq!(f.op(), Some(Opcode::Result));
    }
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

#[tokio::test]
async fn past_the_proxy_wide_byte_budget_a_request_gets_overloaded() {
    let (origin, target) = two_nodes().await;
    let mut cfg = config(&origin, &target);
    // Room for about four requests of ~560 bytes each (frame + overhead).
    cfg.limits.max_in_flight_bytes = ByteSize(2400);
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    schema(&mut c).await;
    origin.node.faults.hang.store(true, Ordering::SeqCst);
    for k in 0..10 {
        c.feed(Frame::request(4, 10 + k as i16, Opcode::Query, insert(k)))
            .await
            .unwrap();
    }
    c.flush().await.unwrap();
    // The ones past the budget are refused at once, while the origin
    // still holds the others.
    let mut refused = Vec::new();
    for _ in 0..6 {
        let f = tokio::time::timeout(T, c.recv()).await.unwrap().unwrap();
        let e = ErrorFrame::decode(&f.body).unwrap();
        assert_eq!(e.code, ErrorCode::OVERLOADED);
        assert!(
            e.message.contains("limits.max_in_flight_bytes"),
            "{}",
            e.message
        );
        refused.push(f.stream);
    }
    assert_eq!(refused, (14..20).collect::<Vec<i16>>(), "the last six");
    origin.node.faults.release_all();
    let mut answered = Vec::new();
    for _ in 0..4 {
        let f = tokio::time::timeout(T, c.recv()).await.unwrap().unwrap();
        assert_eq!(f.op(), Some(Opcode::Result));
        answered.push(f.stream);
    }
    answered.sort();
    assert_eq!(answered, vec![10, 11, 12, 13]);
    until("the budget is never given back", || {
        proxy.proxy.front_door().requests.held() == 0
    })
    .await;
    // With the budget back, requests are served again.
    c.query("SELECT * FROM ks.t").await.unwrap();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}
