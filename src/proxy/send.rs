//! Sending a request to clusters and joining their answers: one cluster
//! leg at a time (timed and counted in that cluster's series), resent once
//! when idempotent and its connection closed under it; the client's answer
//! is the primary's when all succeeded, else the first failure.

use std::sync::Arc;

use super::prepared::Side;
use super::session::SessionState;
use crate::cql::StatementKind;
use crate::frame::{Frame, Opcode};
use crate::metrics::{OpClass, Outcome};
use crate::protocol::response::read_result_kind;
use crate::protocol::{consistency, ErrorCode, ErrorFrame};
use crate::upstream::UpstreamError;

pub(super) fn error_frame(state: &SessionState, e: ErrorFrame) -> Frame {
    Frame::response(state.version, 0, Opcode::Error, e.encode())
}

pub(super) fn malformed(e: impl std::fmt::Display) -> ErrorFrame {
    ErrorFrame::protocol(format!("malformed request body: {e}"))
}

pub(super) fn unavailable(e: UpstreamError) -> ErrorFrame {
    ErrorFrame::unavailable(consistency::ONE, format!("cutover: {e}"))
}

/// One request to one cluster. `kind` decides whether it may be resent
/// after a closed connection (reads may) and how a timeout is reported.
pub(super) async fn send_one(
    state: &Arc<SessionState>,
    side: Side,
    frame: Frame,
    kind: StatementKind,
    class: OpClass,
) -> Result<Frame, ErrorFrame> {
    let answers = vec![send_raw(state, side, frame, kind == StatementKind::Read, class).await];
    join(state, &[side], answers, kind)
}

/// Sends on the side's connection; when `idempotent`, a connection that
/// closed under the request is replaced and the request sent once more.
pub(super) async fn send_raw(
    state: &Arc<SessionState>,
    side: Side,
    frame: Frame,
    idempotent: bool,
    class: OpClass,
) -> Result<Frame, UpstreamError> {
    let started = std::time::Instant::now();
    let timeout = state.proxy.cluster(side).config.request_timeout.0;
    let r = async {
        let up = state.upstream(side).await?;
        match up.forward(&frame, timeout).await {
            Err(UpstreamError::Closed { .. }) if idempotent => {
                state.upstream(side).await?.forward(&frame, timeout).await
            }
            other => other,
        }
    }
    .await;
    record_leg(state, side, class, &r, started);
    r
}

/// Records one cluster leg: its latency and, when it failed, its error (a
/// timeout or an unreachable cluster counted as the error the client gets).
pub(super) fn record_leg(
    state: &SessionState,
    side: Side,
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
        .cluster(side)
        .metrics
        .record(class, outcome, started.elapsed());
}

/// The client's answer from every cluster's: the primary's when all
/// succeeded, else the first failure (the primary's first).
pub(super) fn join(
    state: &SessionState,
    sides: &[Side],
    answers: Vec<Result<Frame, UpstreamError>>,
    kind: StatementKind,
) -> Result<Frame, ErrorFrame> {
    let mut primary = None;
    let mut failure = None;
    for (side, a) in sides.iter().zip(answers) {
        let cluster = &state.proxy.cluster(*side).name;
        let frame = match a {
            Ok(f) => f,
            Err(e @ UpstreamError::Timeout { .. }) => {
                let msg = format!("cutover: the {cluster} cluster did not answer: {e}");
                let ef = if kind == StatementKind::Read {
                    ErrorFrame::read_timeout(consistency::ONE, msg)
                } else {
                    ErrorFrame::write_timeout(consistency::ONE, "SIMPLE", msg)
                };
                error_frame(state, ef)
            }
            Err(e) => error_frame(
                state,
                ErrorFrame::unavailable(
                    consistency::ONE,
                    format!("cutover: the {cluster} cluster is unreachable: {e}"),
                ),
            ),
        };
        if frame.op() == Some(Opcode::Error) {
            if sides.len() > 1 && kind == StatementKind::Write {
                state
                    .proxy
                    .cluster(*side)
                    .metrics
                    .mirror_write_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if failure.is_none() {
                failure = Some(frame.clone());
            }
        }
        if primary.is_none() {
            primary = Some(frame);
        }
    }
    let chosen = failure
        .or(primary)
        .ok_or_else(|| ErrorFrame::server("cutover: no cluster to send to"))?;
    if chosen.op() == Some(Opcode::Result) {
        // Sanity: a result body must at least have its kind.
        read_result_kind(&chosen.body).map_err(malformed)?;
    }
    Ok(chosen)
}
