//! The CQL errors the pipeline raises itself: a body it cannot read, a
//! cluster it cannot reach, and the frame an error becomes for the client.

use super::session::SessionState;
use super::ClusterId;
use crate::frame::{Frame, Opcode};
use crate::protocol::{consistency, ErrorFrame};
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
