//! The node's HTTP control port, for tests: fault injection (latency, errors,
//! hanging requests, dropped connections, restart, down/up) and inspection
//! (request counts, errors sent, negotiated STARTUP options).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::faults::ErrorRule;
use super::Node;

#[derive(Deserialize)]
struct Peer {
    addr: std::net::SocketAddr,
    #[serde(default = "default_dc")]
    datacenter: String,
    #[serde(default = "default_rack")]
    rack: String,
}

fn default_dc() -> String {
    "datacenter1".into()
}

fn default_rack() -> String {
    "rack1".into()
}

#[derive(Deserialize)]
struct Latency {
    ms: f64,
}

pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset))
        .route("/faults", delete(clear).get(show))
        .route("/faults/latency", post(latency))
        .route("/faults/error", post(error))
        .route("/faults/hang", post(hang))
        .route("/faults/release", post(release))
        .route("/drop-connections", post(drop_connections))
        .route("/restart", post(restart))
        .route("/down", post(down))
        .route("/up", post(up))
        .route("/peers", post(peers))
        .with_state(node);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

async fn stats(State(n): State<Arc<Node>>) -> Json<Value> {
    let r = n.stats.report();
    Json(json!({
        "requests": r.requests,
        "errors": r.errors,
        "connections": r.connections,
        "connections_accepted": r.connections_accepted,
        "down": n.is_down(),
    }))
}

async fn reset(State(n): State<Arc<Node>>) -> StatusCode {
    n.stats.reset();
    StatusCode::NO_CONTENT
}

async fn show(State(n): State<Arc<Node>>) -> Json<Value> {
    Json(json!({
        "latency_ms": n.faults.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
        "error": *n.faults.error.lock(),
        "hang": n.faults.hang.load(Ordering::SeqCst),
    }))
}

async fn clear(State(n): State<Arc<Node>>) -> StatusCode {
    n.faults.clear();
    StatusCode::NO_CONTENT
}

async fn latency(
    State(n): State<Arc<Node>>,
    Json(l): Json<Latency>,
) -> Result<StatusCode, (StatusCode, String)> {
    if !(0.0..=600_000.0).contains(&l.ms) {
        return Err((
            StatusCode::BAD_REQUEST,
            "ms must be between 0 and 600000".into(),
        ));
    }
    n.faults
        .latency_us
        .store((l.ms * 1000.0) as u64, Ordering::Relaxed);
    Ok(StatusCode::NO_CONTENT)
}

async fn error(
    State(n): State<Arc<Node>>,
    Json(rule): Json<ErrorRule>,
) -> Result<StatusCode, (StatusCode, String)> {
    if !(0.0..=1.0).contains(&rule.share) {
        return Err((
            StatusCode::BAD_REQUEST,
            "share must be between 0.0 and 1.0".into(),
        ));
    }
    *n.faults.error.lock() = Some(rule);
    Ok(StatusCode::NO_CONTENT)
}

async fn hang(State(n): State<Arc<Node>>) -> StatusCode {
    n.faults.hang.store(true, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn release(State(n): State<Arc<Node>>) -> StatusCode {
    n.faults.release_all();
    StatusCode::NO_CONTENT
}

async fn drop_connections(State(n): State<Arc<Node>>) -> StatusCode {
    n.drop_connections();
    StatusCode::NO_CONTENT
}

async fn restart(State(n): State<Arc<Node>>) -> StatusCode {
    n.restart();
    StatusCode::NO_CONTENT
}

async fn down(State(n): State<Arc<Node>>) -> StatusCode {
    n.set_down(true);
    StatusCode::NO_CONTENT
}

async fn up(State(n): State<Arc<Node>>) -> StatusCode {
    n.set_down(false);
    StatusCode::NO_CONTENT
}

/// The nodes this node reports in `system.peers(_v2)`, so that several
/// in-memory nodes look like one cluster to drivers and to the proxy.
async fn peers(State(n): State<Arc<Node>>, Json(list): Json<Vec<Peer>>) -> StatusCode {
    n.set_peers(
        list.into_iter()
            .map(|p| super::PeerInfo {
                addr: p.addr,
                datacenter: p.datacenter,
                rack: p.rack,
            })
            .collect(),
    );
    StatusCode::NO_CONTENT
}
