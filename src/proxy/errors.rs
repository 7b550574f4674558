//! The CQL errors the pipeline raises itself: a body it cannot read, a
//! cluster it cannot reach, and the frame an error becomes for the client.

use super::session::SessionState;
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
