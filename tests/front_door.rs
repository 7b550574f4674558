//! The front door closes what never finishes and tells a client it has no
//! room for why: a handshake timeout that spares idle established
//! connections, a frame timeout that frees a half-sent frame's memory,
//! OVERLOADED past `max_client_connections`, and stream id -1 refused.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use common::{wait_for, Setup};
use cutover::client::Client;
use cutover::frame::{Frame, Opcode};
use cutover::protocol::request::{build_startup, Query, QueryParams};
use cutover::protocol::{ErrorCode, ErrorFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes; fails if it has not within `limit` (a bound
/// on a broken test, not a measurement).
async fn closed_by_peer(sock: &mut TcpStream, limit: Duration) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the proxy did not close the connection");
}

fn frame_bytes(f: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    f.write_plain(&mut b);
    b
}

async fn started(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let startup = Frame::request(
        4,
        0,
        Opcode::Startup,
        build_startup(&[("CQL_VERSION", "3.0.0")]),
    );
    s.write_all(&frame_bytes(&startup)).await.unwrap();
    let mut header = [0u8; 9];
    s.read_exact(&mut header).await.unwrap();
    assert_eq!(header[4], Opcode::Ready as u8);
    s
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test]
async fn a_client_that_never_starts_is_closed_and_an_idle_one_is_not() {
    let s = Setup::start_with(None, None, |c| {
        c.limits.handshake_timeout.0 = Duration::from_millis(300);
    })
    .await;
    // Established first, then left idle for longer than the handshake
    // timeout: the silent one is opened after it and closed by it.
    let mut idle = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    let mut silent = TcpStream::connect(s.proxy.addr).await.unwrap();
    let mut options_only = TcpStream::connect(s.proxy.addr).await.unwrap();
    options_only
        .write_all(&frame_bytes(&Frame::request(
            4,
            1,
            Opcode::Options,
            Default::default(),
        )))
        .await
        .unwrap();
    closed_by_peer(&mut silent, Duration::from_secs(10)).await;
    closed_by_peer(&mut options_only, Duration::from_secs(10)).await;
    assert!(
        idle.query("SELECT rpc_address FROM system.local")
            .await
            .is_ok(),
        "an idle established connection outlives the handshake timeout"
    );
    assert_eq!(
        metric(
            &s.metrics().await,
            "cutover_client_handshake_timeouts_total"
        ),
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn a_frame_left_half_sent_is_closed_and_its_budget_returned() {
    let s = Setup::start_with(None, None, |c| {
        c.limits.frame_timeout.0 = Duration::from_millis(500);
    })
    .await;
    let mut idle = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    let mut half = started(s.proxy.addr).await;
    let q = Query {
        text: format!(
            "SELECT * FROM system.local WHERE key = '{}'",
            "x".repeat(300_000)
        ),
        params: QueryParams::default(),
    };
    let whole = frame_bytes(&Frame::request(4, 1, Opcode::Query, q.encode(4)));
    half.write_all(&whole[..whole.len() / 2]).await.unwrap();
    wait_for("the half frame to be held", || async {
        metric(&s.metrics().await, "cutover_client_partial_frame_bytes") > 0.0
    })
    .await;
    closed_by_peer(&mut half, Duration::from_secs(10)).await;
    let m = s.metrics().await;
    assert_eq!(metric(&m, "cutover_client_frame_timeouts_total"), 1.0);
    assert_eq!(metric(&m, "cutover_client_partial_frame_bytes"), 0.0);
    assert!(idle
        .query("SELECT rpc_address FROM system.local")
        .await
        .is_ok());
    s.stop().await;
}

#[tokio::test]
async fn a_large_frame_past_the_budget_is_refused_with_overloaded() {
    let s = Setup::start_with(None, None, |c| {
        c.limits.max_frame_bytes.0 = 1 << 20;
        c.limits.max_partial_frame_bytes.0 = 1 << 20;
    })
    .await;
    let body = Query {
        text: format!(
            "SELECT * FROM system.local WHERE key = '{}'",
            "x".repeat(700_000)
        ),
        params: QueryParams::default(),
    }
    .encode(4);
    let big = frame_bytes(&Frame::request(4, 7, Opcode::Query, body));
    let mut first = started(s.proxy.addr).await;
    first.write_all(&big[..1000]).await.unwrap();
    wait_for("the first large frame to be held", || async {
        metric(&s.metrics().await, "cutover_client_partial_frame_bytes") > 0.0
    })
    .await;
    let mut c = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    c.socket_mut().write_all(&big[..1000]).await.unwrap();
    let answer = c.recv().await.unwrap();
    assert_eq!(answer.stream, 7);
    let e = ErrorFrame::decode(&answer.body).unwrap();
    assert_eq!(e.code, ErrorCode::OVERLOADED);
    assert!(
        e.message.contains("max_partial_frame_bytes"),
        "{}",
        e.message
    );
    assert_eq!(
        metric(
            &s.metrics().await,
            "cutover_client_frames_over_budget_total"
        ),
        1.0
    );
    // The first, finished, is served.
    first.write_all(&big[1000..]).await.unwrap();
    let mut header = [0u8; 9];
    first.read_exact(&mut header).await.unwrap();
    assert_eq!(i16::from_be_bytes([header[2], header[3]]), 7);
    s.stop().await;
}

#[tokio::test]
async fn a_client_past_max_client_connections_is_told_why() {
    let s = Setup::start_with(None, None, |c| c.limits.max_client_connections = 2).await;
    let mut one = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    let _two = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    let mut third = TcpStream::connect(s.proxy.addr).await.unwrap();
    third
        .write_all(&frame_bytes(&Frame::request(
            4,
            3,
            Opcode::Options,
            Default::default(),
        )))
        .await
        .unwrap();
    let mut header = [0u8; 9];
    third.read_exact(&mut header).await.unwrap();
    assert_eq!(header[0], 0x84, "answered in the client's version");
    assert_eq!(
        i16::from_be_bytes([header[2], header[3]]),
        3,
        "on its stream"
    );
    assert_eq!(header[4], Opcode::Error as u8);
    let mut body = vec![0u8; u32::from_be_bytes(header[5..9].try_into().unwrap()) as usize];
    third.read_exact(&mut body).await.unwrap();
    let e = ErrorFrame::decode(&body.into()).unwrap();
    assert_eq!(e.code, ErrorCode::OVERLOADED);
    assert!(
        e.message.contains("max_client_connections"),
        "{}",
        e.message
    );
    closed_by_peer(&mut third, Duration::from_secs(10)).await;
    assert!(one
        .query("SELECT rpc_address FROM system.local")
        .await
        .is_ok());
    s.stop().await;
}

#[tokio::test]
async fn stream_id_minus_one_is_a_protocol_error_and_the_connection_goes_on() {
    let s = Setup::start(None, None).await;
    let mut c = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    let q = Query {
        text: "SELECT rpc_address FROM system.local".into(),
        params: QueryParams {
            consistency: 1,
            ..Default::default()
        },
    }
    .encode(4);
    c.send(Frame::request(4, -1, Opcode::Query, q))
        .await
        .unwrap();
    let answer = c.recv().await.unwrap();
    let e = ErrorFrame::decode(&answer.body).unwrap();
    assert_eq!(e.code, ErrorCode::PROTOCOL_ERROR);
    assert!(e.message.contains("stream id -1"), "{}", e.message);
    assert!(c
        .query("SELECT rpc_address FROM system.local")
        .await
        .is_ok());
    s.stop().await;
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// The release of memory is seen from outside, in the proxy process's RSS:
/// 20 connections each send all but the last byte of a 12 MiB frame; the
/// frame timeout closes them and the memory goes back.
#[tokio::test]
async fn half_sent_frames_are_closed_and_their_memory_returned() {
    let (origin, target) = common::two_nodes().await;
    let mut cfg = cutover::config::Config::quick_start(
        &origin.addr.to_string(),
        &target.addr.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .unwrap();
    cfg.limits.frame_timeout.0 = Duration::from_secs(8);
    cfg.limits.max_partial_frame_bytes.0 = 1 << 30;
    let dir = std::env::temp_dir().join(format!("cutover-front-door-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(&file, toml::to_string(&cfg).unwrap()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args([
            "run",
            "--config",
            file.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        use tokio::io::AsyncBufReadExt;
        assert!(
            lines.read_line(&mut line).await.unwrap() > 0,
            "the proxy exited"
        );
        if let Some(a) = line.trim().strip_prefix("cutover proxy listening on ") {
            break a.parse().unwrap();
        }
    };
    let mut warm = Client::connect(addr, 4, None, None).await.unwrap();
    assert!(warm
        .query("SELECT rpc_address FROM system.local")
        .await
        .is_ok());
    let before = rss_bytes(pid);

    let body = Query {
        text: format!(
            "SELECT * FROM system.local WHERE key = '{}'",
            "x".repeat(12 << 20)
        ),
        params: QueryParams::default(),
    }
    .encode(4);
    let frame = frame_bytes(&Frame::request(4, 1, Opcode::Query, body));
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = started(addr).await;
        s.write_all(&frame[..frame.len() - 1]).await.unwrap();
        held.push(s);
    }
    let peak = rss_bytes(pid);
    assert!(
        peak > before + 150 * 1024 * 1024,
        "the half frames are held in the proxy: {} MiB before, {} MiB with them",
        before >> 20,
        peak >> 20
    );
    for s in &mut held {
        closed_by_peer(s, Duration::from_secs(30)).await;
    }
    let mut after = rss_bytes(pid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while after > before + 64 * 1024 * 1024 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rss_bytes(pid);
    }
    assert!(
        after <= before + 64 * 1024 * 1024,
        "memory not returned: {} MiB before, {} MiB at the peak, {} MiB after the close",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    eprintln!(
        "proxy RSS: {} MiB before, {} MiB with 20 half frames, {} MiB after their close",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    assert!(warm
        .query("SELECT rpc_address FROM system.local")
        .await
        .is_ok());
    let _ = child.kill().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// In v5 the refusal comes in a segment, like every frame after STARTUP,
/// so the driver can read it.
#[tokio::test]
async fn a_v5_client_past_the_budget_reads_its_overloaded_error() {
    let s = Setup::start_with(None, None, |c| {
        c.limits.max_frame_bytes.0 = 1 << 20;
        c.limits.max_partial_frame_bytes.0 = 1 << 20;
    })
    .await;
    let body = Query {
        text: format!(
            "SELECT * FROM system.local WHERE key = '{}'",
            "x".repeat(700_000)
        ),
        params: QueryParams::default(),
    }
    .encode(5);
    let big = frame_bytes(&Frame::request(5, 9, Opcode::Query, body));
    let mut first = Client::connect(s.proxy.addr, 5, None, None).await.unwrap();
    let mut segments = BytesMut::new();
    cutover::frame::SegmentEncoder { lz4: false }.encode(&big[..200_000], &mut segments);
    first.socket_mut().write_all(&segments).await.unwrap();
    wait_for("the first large frame to be held", || async {
        metric(&s.metrics().await, "cutover_client_partial_frame_bytes") > 0.0
    })
    .await;
    let mut second = Client::connect(s.proxy.addr, 5, None, None).await.unwrap();
    second.socket_mut().write_all(&segments).await.unwrap();
    let answer = second
        .recv()
        .await
        .expect("a v5 answer the client can decode");
    assert_eq!(answer.stream, 9);
    assert_eq!(
        ErrorFrame::decode(&answer.body).unwrap().code,
        ErrorCode::OVERLOADED
    );
    s.stop().await;
}

/// A real driver's pooled connections sit idle between requests: neither
/// timeout may close them (it would show as reconnects).
#[tokio::test]
async fn the_scylla_drivers_idle_pool_outlives_both_timeouts() {
    let s = Setup::start_with(None, None, |c| {
        c.limits.handshake_timeout.0 = Duration::from_millis(300);
        c.limits.frame_timeout.0 = Duration::from_millis(300);
    })
    .await;
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node_addr(s.proxy.addr)
        .build()
        .await
        .unwrap();
    session
        .query_unpaged("SELECT rpc_address FROM system.local", &[])
        .await
        .unwrap();
    let accepted = metric(
        &s.metrics().await,
        "cutover_client_connections_accepted_total",
    );
    // A silent socket closed by the handshake timeout: the driver's
    // connections, idle all along, have waited longer than both timeouts.
    let mut silent = TcpStream::connect(s.proxy.addr).await.unwrap();
    closed_by_peer(&mut silent, Duration::from_secs(10)).await;
    for _ in 0..10 {
        session
            .query_unpaged("SELECT rpc_address FROM system.local", &[])
            .await
            .unwrap();
    }
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "cutover_client_connections_accepted_total"),
        accepted + 1.0,
        "only the silent socket connected since: the driver reconnected nothing"
    );
    assert_eq!(metric(&m, "cutover_client_handshake_timeouts_total"), 1.0);
    assert_eq!(metric(&m, "cutover_client_frame_timeouts_total"), 0.0);
    s.stop().await;
}
