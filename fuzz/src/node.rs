//! The embedded node through its public entry points (QUERY, PREPARE,
//! EXECUTE, BATCH bodies), on a node with a keyspace and tables of every
//! kind of column.
//!
//! Properties: no panic; statement text the node cannot read is a syntax
//! or invalid-request error, never a server error.

use std::sync::OnceLock;

use bytes::Bytes;
use cutover::node::{Node, NodeConfig, SessionState};
use cutover::protocol::request::{Prepare, Query, QueryParams};
use cutover::protocol::ErrorCode;

const SCHEMA: &[&str] = &[
    "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TYPE ks.point (x int, y int)",
    "CREATE TABLE ks.t (k int, c text, v text, l list<int>, s set<text>, m map<text, int>, p frozen<point>, tu tuple<int, text>, PRIMARY KEY (k, c))",
    "CREATE TABLE ks.counters (k int PRIMARY KEY, n counter)",
];

fn query(text: &str, version: u8) -> Bytes {
    Query {
        text: text.into(),
        params: QueryParams {
            consistency: 1,
            ..Default::default()
        },
    }
    .encode(version)
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let n = Node::new(
            NodeConfig::new("127.0.0.1:0".parse().unwrap()),
            "127.0.0.1:9042".parse().unwrap(),
        );
        let st = SessionState {
            keyspace: None,
            version: 4,
        };
        for s in SCHEMA {
            if n.query(&st, &query(s, 4)).is_err() {
                panic!("schema statement refused: {s}");
            }
        }
        n
    })
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let node = node();
    let version = 3 + mode % 3;
    let st = SessionState {
        keyspace: Some("ks".into()),
        version,
    };
    // Schema changes would make the node grow from run to run.
    let schema_change = |text: &str| {
        let t = text.trim_start().to_ascii_lowercase();
        ["create", "drop", "alter", "truncate", "use"]
            .iter()
            .any(|w| t.starts_with(w))
    };
    match (mode / 3) % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if schema_change(&text) {
                return;
            }
            if let Err(e) = node.query(&st, &query(&text, version)) {
                assert_ne!(
                    e.0.code,
                    ErrorCode::SERVER_ERROR,
                    "{text:?}: {}",
                    e.0.message
                );
            }
            let p = Prepare {
                text: text.to_string(),
                keyspace: None,
            }
            .encode(version);
            if let Err(e) = node.prepare(&st, &p) {
                assert_ne!(
                    e.0.code,
                    ErrorCode::SERVER_ERROR,
                    "{text:?}: {}",
                    e.0.message
                );
            }
        }
        1 => {
            let body = Bytes::copy_from_slice(rest);
            if Query::read_text(&body).is_ok_and(schema_change) {
                return;
            }
            let _ = node.query(&st, &body);
        }
        2 => {
            let _ = node.execute(&st, &Bytes::copy_from_slice(rest));
        }
        _ => {
            let _ = node.batch(&st, &Bytes::copy_from_slice(rest));
        }
    }
}
