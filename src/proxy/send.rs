//! Sending a request to clusters and joining their answers: one cluster
//! leg at a time (timed and counted in that cluster's series), resent once
//! when idempotent and its connection closed under it; the client's answer
//! is the primary's when all succeeded, else the first failure.

use std::sync::Arc;

use super::session::SessionState;
use super::ClusterId;
use crate::cql::StatementKind;
use crate::frame::Frame;
use crate::metrics::{OpClass, Outcome};
use crate::protocol::{ErrorCode, ErrorFrame};
use crate::upstream::UpstreamError;

pub(super) use super::errors::{error_frame, malformed, unavailable};

/// An answer the proxy must read but cannot: the request fails with an
/// error naming the cluster, and the session's connection to it is
/// replaced (nothing that follows on it can be trusted).
pub(super) fn malformed_answer(
    state: &SessionState,
    cluster: ClusterId,
    what: &str,
    e: impl std::fmt::Display,
) -> ErrorFrame {
    let name = &state.proxy.cluster(cluster).name;
    tracing::warn!(cluster = %name, error = %e, "malformed answer to {what}; replacing the connection");
    state.close_upstream(cluster);
    ErrorFrame::server(format!(
        "cutover: the {name} cluster answered {what} with a malformed body ({e}); the connection to it was replaced"
    ))
}

/// One request to one cluster. `kind` decides whether it may be resent
/// after a closed connection (reads may) and how a timeout is reported.
pub(super) async fn send_one(
    state: &Arc<SessionState>,
    cluster: ClusterId,
    frame: Frame,
    kind: StatementKind,
    class: OpClass,
) -> Result<Frame, ErrorFrame> {
    let answers = vec![send_raw(state, cluster, frame, kind == StatementKind::Read, class).await];
    join(state, &[cluster], answers, kind)
}

/// Sends on the cluster's connection; when `idempotent`, a connection that
/// closed under the request is replaced and the request sent once more.
pub(super) async fn send_raw(
    state: &Arc<SessionState>,
    cluster: ClusterId,
    frame: Frame,
    idempotent: bool,
    class: OpClass,
) -> Result<Frame, UpstreamError> {
    let started = std::time::Instant::now();
    let timeout = state.proxy.cluster(cluster).config.request_timeout.0;
    let r = async {
        let up = state.upstream(cluster).await?;
        match up.forward(&frame, timeout).await {
            Err(UpstreamError::Closed { .. }) if idempotent => {
                state
                    .upstream(cluster)
                    .await?
                    .forward(&frame, timeout)
                    .await
            }
            other => other,
        }
    }
    .await;
    record_leg(state, cluster, class, &r, started);
    r
}

/// Records one cluster leg: its latency and, when it failed, its error (a
/// timeout or an unreachable cluster counted as the error the client gets).
pub(super) fn record_leg(
    state: &SessionState,
    cluster: ClusterId,
    class: OpClass,
    r: &Result<Frame, UpstreamError>,
    started: std::time::Instant,
) {
    let outcome = match r {
        Ok(f) => Outcome::of(f),
        Err(UpstreamError::Timeout { .. }) if class == OpClass::Read => {
            Outcome::error(ErrorCode::READ_TIMEOUT)
        }
        Err(UpstreamError::Timeout { .. }) => Outcome::error(ErrorCode::WRITE_TIMEOUT),
        Err(_) => Outcome::error(ErrorCode::UNAVAILABLE),
    };
    state
        .proxy
        .cluster(cluster)
        .metrics
        .record(class, outcome, started.elapsed());
}

/// The client's answer from every cluster's (`join::join`), counting the
/// failed legs of a mirrored write.
pub(super) fn join(
    state: &SessionState,
    clusters: &[ClusterId],
    answers: Vec<Result<Frame, UpstreamError>>,
    kind: StatementKind,
) -> Result<Frame, ErrorFrame> {
    let proxy = &state.proxy;
    let j = super::join::join(
        clusters,
        answers,
        kind,
        |c| proxy.cluster(c).name.as_str(),
        state.version,
    );
    if clusters.len() > 1 && kind == StatementKind::Write {
        for c in &j.failed {
            proxy
                .cluster(*c)
                .metrics
                .mirror_write_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    j.answer
}
