//! The proxy's per-connection in-flight limit: beyond it a request gets
//! OVERLOADED at once, and the requests under way are unaffected.

use std::sync::atomic::Ordering;

use cutover::client::Client;
use cutover::config::Config;
use cutover::frame::{Frame, Opcode};
use cutover::node::{self, NodeConfig};
use cutover::protocol::request::{Query, QueryParams};
use cutover::protocol::{ErrorCode, ErrorFrame};

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_get_overloaded() {
    let origin = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let target = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let mut cfg = Config::quick_start(
        &origin.addr.to_string(),
        &target.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap();
    cfg.limits.max_in_flight_per_connection = 2;
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
    c.query("CREATE TABLE ks.t (k int PRIMARY KEY)")
        .await
        .unwrap();

    origin.node.faults.hang.store(true, Ordering::SeqCst);
    let q = Query {
        text: "SELECT * FROM ks.t".into(),
        params: QueryParams {
            consistency: 1,
            ..Default::default()
        },
    }
    .encode(4);
    for stream in [10, 11, 12] {
        c.feed(Frame::request(4, stream, Opcode::Query, q.clone()))
            .await
            .unwrap();
    }
    c.flush().await.unwrap();
    let third = c.recv().await.unwrap();
    assert_eq!(
        third.stream, 12,
        "the third request is answered first, at once"
    );
    let e = ErrorFrame::decode(&third.body).unwrap();
    assert_eq!(e.code, ErrorCode::OVERLOADED);
    assert!(
        e.message.contains("max_in_flight_per_connection"),
        "{}",
        e.message
    );
    origin.node.faults.release_all();
    let mut answered: Vec<i16> = Vec::new();
    for _ in 0..2 {
        let f = c.recv().await.unwrap();
        assert_eq!(f.op(), Some(Opcode::Result));
        answered.push(f.stream);
    }
    answered.sort();
    assert_eq!(answered, vec![10, 11]);
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}
