//! Bad input gets exactly the answer a real server gives, and the node keeps
//! serving every other connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use cutover::client::{Client, ClientError};
use cutover::frame::{crc24, Frame, Opcode};
use cutover::node::{self, NodeConfig, RunningNode};
use cutover::protocol::response::ResultBody;
use cutover::protocol::{ErrorCode, ErrorFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a test talks to: a node, or the proxy in front of two nodes. Every
/// case must get the same answer from both.
struct Target {
    addr: SocketAddr,
    nodes: Vec<RunningNode>,
    proxy: Option<cutover::proxy::RunningProxy>,
}

impl Target {
    async fn shutdown(self) {
        if let Some(p) = self.proxy {
            p.stop().await;
        }
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

async fn start_node() -> Target {
    let n = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    Target {
        addr: n.addr,
        nodes: vec![n],
        proxy: None,
    }
}

async fn start_proxy() -> Target {
    let o = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let t = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let cfg = cutover::config::Config::quick_start(
        &o.addr.to_string(),
        &t.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap();
    let p = cutover::proxy::start(cfg).await.unwrap();
    Target {
        addr: p.addr,
        nodes: vec![o, t],
        proxy: Some(p),
    }
}

/// Each case runs against the node and through the proxy.
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod on_the_node {
            $(#[tokio::test] async fn $case() { super::$case(super::start_node().await).await; })*
        }
        mod through_the_proxy {
            $(#[tokio::test] async fn $case() { super::$case(super::start_proxy().await).await; })*
        }
    };
}

both!(
    garbage_bytes_get_a_protocol_error_and_a_close,
    too_high_a_version_is_answered_as_cassandra_does,
    too_low_a_version_is_answered_in_its_own_framing,
    unknown_opcode_gets_an_error_on_its_stream_and_the_connection_stays_open,
    malformed_body_gets_an_error_and_the_connection_stays_open,
    oversized_length_gets_an_error_then_a_close,
    a_frame_over_the_pre_auth_limit_is_refused,
    a_bad_v5_crc_closes_the_connection,
    requests_before_startup_are_refused_without_closing,
    text_with_a_multi_byte_character_beside_a_symbol_is_a_syntax_error,
);

/// A euro sign next to a symbol once made the lexer slice inside the
/// character: an internal error through the proxy, a dropped connection
/// on the node. Now a syntax error on the same connection, which goes on.
async fn text_with_a_multi_byte_character_beside_a_symbol_is_a_syntax_error(t: Target) {
    let mut c = healthy(t.addr).await;
    for text in [
        "SELECT * FROM system.local WHERE key =€",
        "SELECT (€) FROM system.local",
        "INSERT INTO ks.t (k, v) VALUES (1, 2)€",
    ] {
        match c.query(text).await {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::SYNTAX_ERROR, "{text}: {e:?}");
                assert!(e.message.contains('€'), "{text}: {}", e.message);
            }
            other => panic!("{text}: {other:?}"),
        }
        match c.prepare(text).await {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::SYNTAX_ERROR, "{text}: {e:?}")
            }
            other => panic!("PREPARE {text}: {other:?}"),
        }
        still_serving(&mut c).await;
    }
    t.shutdown().await;
}

/// Reads one v3-v5 frame with the old framing, or None on EOF.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, i16, u8, Bytes)> {
    let mut h = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut h))
        .await
        .expect("answer in time")
        .ok()?;
    let len = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((
        h[0],
        i16::from_be_bytes([h[2], h[3]]),
        h[4],
        Bytes::from(body),
    ))
}

async fn assert_closed<S: AsyncRead + Unpin>(s: &mut S) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("close in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the server should close the connection, read {n:?}"
    );
}

fn protocol_error(body: &Bytes) -> ErrorFrame {
    let e = ErrorFrame::decode(body).unwrap();
    assert_eq!(e.code, ErrorCode::PROTOCOL_ERROR, "{e:?}");
    e
}

/// A healthy connection that must keep working whatever the others send.
async fn healthy(addr: SocketAddr) -> Client {
    Client::connect(addr, 4, None, None).await.unwrap()
}

async fn still_serving(c: &mut Client) {
    match c
        .query("SELECT release_version FROM system.local")
        .await
        .unwrap()
    {
        ResultBody::Rows(r) => assert_eq!(r.rows.len(), 1),
        other => panic!("{other:?}"),
    }
}

fn raw_frame(version: u8, stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(version);
    b.put_u8(0);
    b.put_i16(stream);
    b.put_u8(opcode);
    b.put_u32(body.len() as u32);
    b.put_slice(body);
    b.to_vec()
}

async fn garbage_bytes_get_a_protocol_error_and_a_close(n: Target) {
    let mut ok = healthy(n.addr).await;
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (version, _, op, body) = read_frame(&mut s).await.expect("an ERROR frame");
    assert_eq!(version, 0x85, "answered in the highest version we speak");
    assert_eq!(op, Opcode::Error as u8);
    assert!(protocol_error(&body)
        .message
        .contains("Invalid or unsupported protocol version (71)"));
    assert_closed(&mut s).await;
    still_serving(&mut ok).await;
    n.shutdown().await;
}

async fn too_high_a_version_is_answered_as_cassandra_does(n: Target) {
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    s.write_all(&raw_frame(66, 0, Opcode::Options as u8, &[]))
        .await
        .unwrap();
    let (version, stream, op, body) = read_frame(&mut s).await.unwrap();
    assert_eq!((version, stream, op), (0x85, 0, Opcode::Error as u8));
    assert_eq!(
        protocol_error(&body).message,
        "Invalid or unsupported protocol version (66); supported versions are (3/v3, 4/v4, 5/v5)"
    );
    assert_closed(&mut s).await;
    n.shutdown().await;
}

async fn too_low_a_version_is_answered_in_its_own_framing(n: Target) {
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    // v2: 8-byte header with a one-byte stream id.
    s.write_all(&[0x02, 0, 3, Opcode::Options as u8, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut h = [0u8; 8];
    s.read_exact(&mut h).await.unwrap();
    assert_eq!((h[0], h[2], h[3]), (0x82, 3, Opcode::Error as u8));
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    assert!(protocol_error(&Bytes::from(body)).message.contains("(2)"));
    assert_closed(&mut s).await;
    n.shutdown().await;
}

async fn unknown_opcode_gets_an_error_on_its_stream_and_the_connection_stays_open(n: Target) {
    let mut c = healthy(n.addr).await;
    c.send(Frame {
        version: 4,
        flags: 0,
        stream: 42,
        opcode: 0x42,
        body: Bytes::new(),
    })
    .await
    .unwrap();
    let f = c.recv_stream(42).await.unwrap();
    assert_eq!(f.op(), Some(Opcode::Error));
    assert_eq!(protocol_error(&f.body).message, "Unknown opcode 0x42");
    still_serving(&mut c).await;
    n.shutdown().await;
}

async fn malformed_body_gets_an_error_and_the_connection_stays_open(n: Target) {
    let mut c = healthy(n.addr).await;
    // A QUERY whose long string claims more bytes than the body has.
    let mut body = BytesMut::new();
    body.put_i32(1000);
    body.put_slice(b"SELECT");
    let f = c.request(Opcode::Query, body.freeze()).await.unwrap();
    assert_eq!(f.op(), Some(Opcode::Error));
    assert!(protocol_error(&f.body).message.contains("body ended early"));
    still_serving(&mut c).await;
    n.shutdown().await;
}

async fn oversized_length_gets_an_error_then_a_close(n: Target) {
    let mut ok = healthy(n.addr).await;
    let mut c = healthy(n.addr).await;
    let s = c.socket_mut();
    let mut header = BytesMut::new();
    header.put_u8(4);
    header.put_u8(0);
    header.put_i16(9);
    header.put_u8(Opcode::Query as u8);
    header.put_u32(17 * 1024 * 1024);
    s.write_all(&header).await.unwrap();
    let (_, stream, op, body) = read_frame(s).await.unwrap();
    assert_eq!((stream, op), (9, Opcode::Error as u8));
    assert!(protocol_error(&body)
        .message
        .contains("exceeds maximum allowed length 16777216"));
    assert_closed(s).await;
    still_serving(&mut ok).await;
    n.shutdown().await;
}

async fn a_frame_over_the_pre_auth_limit_is_refused(n: Target) {
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    // A STARTUP with a 20 KiB option value, before any authentication.
    let big = "x".repeat(20 * 1024);
    let body =
        cutover::protocol::request::build_startup(&[("CQL_VERSION", "3.0.0"), ("PADDING", &big)]);
    s.write_all(&raw_frame(4, 1, Opcode::Startup as u8, &body))
        .await
        .unwrap();
    let (_, stream, op, body) = read_frame(&mut s).await.unwrap();
    assert_eq!((stream, op), (1, Opcode::Error as u8));
    assert!(protocol_error(&body)
        .message
        .contains("maximum allowed length 8192"));
    assert_closed(&mut s).await;
    n.shutdown().await;
}

async fn a_bad_v5_crc_closes_the_connection(n: Target) {
    let mut ok = healthy(n.addr).await;
    let mut c = Client::connect(n.addr, 5, None, None).await.unwrap();
    still_serving_v5(&mut c).await;
    // A 3-byte header for a 10-byte payload, with a wrong CRC24.
    let header: u64 = 10 | (1 << 17);
    let good = crc24(header, 3);
    let mut seg = BytesMut::new();
    for i in 0..3 {
        seg.put_u8(((header >> (8 * i)) & 0xff) as u8);
    }
    for i in 0..3 {
        seg.put_u8((((good ^ 0x1) >> (8 * i)) & 0xff) as u8);
    }
    seg.put_slice(&[0u8; 14]);
    let s = c.socket_mut();
    s.write_all(&seg).await.unwrap();
    assert_closed(s).await;
    still_serving(&mut ok).await;
    n.shutdown().await;
}

async fn still_serving_v5(c: &mut Client) {
    match c.query("SELECT key FROM system.local").await {
        Ok(ResultBody::Rows(r)) => assert_eq!(r.rows.len(), 1),
        other => panic!("{:?}", other.map_err(|e: ClientError| e.to_string())),
    }
}

async fn requests_before_startup_are_refused_without_closing(n: Target) {
    let mut c = Client::connect_raw(n.addr, 4).await.unwrap();
    let f = c
        .request(
            Opcode::Query,
            cutover::protocol::request::Query {
                text: "SELECT * FROM system.local".into(),
                params: Default::default(),
            }
            .encode(4),
        )
        .await
        .unwrap();
    assert!(protocol_error(&f.body)
        .message
        .contains("expecting STARTUP or OPTIONS"));
    let f = c.request(Opcode::Options, Bytes::new()).await.unwrap();
    assert_eq!(f.op(), Some(Opcode::Supported));
    n.shutdown().await;
}
