//! The pipeline's own errors, typed: a `RequestError` says where it came
//! from (the client's request, a named cluster, the proxy itself), whether
//! the client may safely send the request again, and its cause (kept as the
//! error's `source`). It becomes a CQL ERROR frame once, at the edge
//! (`route::handle`). A cluster's own ERROR answer is not one of these: it
//! is the client's answer, passed on.

use crate::frame::{Frame, Opcode};
use crate::protocol::{consistency, ErrorCode, ErrorFrame};
use crate::routing::decide::Refusal;
use crate::routing::ClusterId;
use crate::session::SessionState;
use crate::upstream::UpstreamError;

/// Where a request's error came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request itself: malformed, refused by policy, not valid CQL.
    Client,
    /// A cluster (by name): unreachable, or an answer the proxy cannot read.
    Cluster(String),
    /// The proxy: a bug or a limit of its own.
    Proxy,
}

impl ErrorSource {
    /// The `from` label of `cutover_request_errors_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorSource::Client => "client",
            ErrorSource::Cluster(_) => "cluster",
            ErrorSource::Proxy => "proxy",
        }
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A request the pipeline could not carry out. Boxed: it is the error of
/// every stage's `Result`, which stays one word wide on the path where
/// nothing fails.
#[derive(Debug)]
pub struct RequestError(Box<Failure>);

/// What a `RequestError` holds.
#[derive(Debug)]
pub struct Failure {
    pub from: ErrorSource,
    /// Whether sending the same request again is safe: nothing of it was
    /// applied anywhere.
    pub retry_safe: bool,
    /// The CQL ERROR the client gets.
    pub answer: ErrorFrame,
    pub cause: Option<Cause>,
}

impl std::ops::Deref for RequestError {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.0
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (from {:?})", self.answer.message, self.from)
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl RequestError {
    /// The request itself is at fault; sending it again fails again.
    pub fn client(answer: ErrorFrame, cause: Option<Cause>) -> RequestError {
        RequestError(Box::new(Failure {
            from: ErrorSource::Client,
            retry_safe: false,
            answer,
            cause,
        }))
    }

    /// Cluster `name` is at fault.
    pub fn cluster(
        name: &str,
        answer: ErrorFrame,
        retry_safe: bool,
        cause: Option<Cause>,
    ) -> RequestError {
        RequestError(Box::new(Failure {
            from: ErrorSource::Cluster(name.to_string()),
            retry_safe,
            answer,
            cause,
        }))
    }

    /// The frame the client gets (its stream id is set by the session).
    pub fn into_frame(self, version: u8) -> Frame {
        Frame::response(version, 0, Opcode::Error, self.0.answer.encode())
    }
}

/// An error frame built by the pipeline: a request error by its code (the
/// request's fault for the codes a request earns, else the proxy's).
impl From<ErrorFrame> for RequestError {
    fn from(answer: ErrorFrame) -> RequestError {
        let client = [
            ErrorCode::PROTOCOL_ERROR,
            ErrorCode::SYNTAX_ERROR,
            ErrorCode::INVALID,
            ErrorCode::UNAUTHORIZED,
            ErrorCode::UNPREPARED,
            ErrorCode::BAD_CREDENTIALS,
        ]
        .contains(&answer.code);
        RequestError(Box::new(Failure {
            from: if client {
                ErrorSource::Client
            } else {
                ErrorSource::Proxy
            },
            retry_safe: false,
            answer,
            cause: None,
        }))
    }
}

impl From<Refusal> for RequestError {
    fn from(r: Refusal) -> RequestError {
        let answer = ErrorFrame::from(r.clone());
        RequestError::client(answer, Some(Box::new(r)))
    }
}

/// Helpers that still speak CQL errors keep the answer.
impl From<RequestError> for ErrorFrame {
    fn from(e: RequestError) -> ErrorFrame {
        e.0.answer
    }
}

pub(super) fn error_frame(state: &SessionState, e: impl Into<ErrorFrame>) -> Frame {
    Frame::response(state.version, 0, Opcode::Error, e.into().encode())
}

/// A request body the proxy cannot read: the client's fault.
pub(super) fn malformed(e: impl std::error::Error + Send + Sync + 'static) -> RequestError {
    let answer = ErrorFrame::protocol(format!("malformed request body: {e}"));
    RequestError::client(answer, Some(Box::new(e)))
}

/// Cluster `name` cannot be reached; nothing was sent, so a retry is safe.
pub(super) fn unavailable(name: &str, e: UpstreamError) -> RequestError {
    let answer = ErrorFrame::unavailable(
        consistency::ONE,
        format!("cutover: the {name} cluster is unreachable: {e}"),
    );
    RequestError::cluster(name, answer, true, Some(Box::new(e)))
}

/// An answer the proxy must read but cannot: the request fails with an
/// error naming the cluster, and the session's connection to it is
/// replaced (nothing that follows on it can be trusted).
pub(super) fn malformed_answer(
    state: &SessionState,
    cluster: ClusterId,
    what: &str,
    e: impl std::fmt::Display,
) -> RequestError {
    let name = &state.proxy.cluster(cluster).name;
    tracing::warn!(cluster = %name, error = %e, "malformed answer to {what}; replacing the connection");
    state.close_upstream(cluster);
    let answer = ErrorFrame::server(format!(
        "cutover: the {name} cluster answered {what} with a malformed body ({e}); the connection to it was replaced"
    ));
    RequestError::cluster(name, answer, false, None)
}
