//! The front door: what a client connection must do to be kept, and what a
//! client the proxy has no room for is told.
//!
//! Owns the proxy-wide budgets (partly received frames; requests read and
//! not yet answered), the counters of connections closed for never
//! finishing and of connections paused at their in-flight limit (the
//! session decides when), and the answer to a client past
//! `limits.max_client_connections`. It must not read requests: that is the
//! session's job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Limits;
use crate::frame::{ByteBudget, Frame, Opcode, SUPPORTED_VERSIONS};
use crate::metrics::{Collector, Exposition, MetricType};
use crate::protocol::{ErrorCode, ErrorFrame};

/// Refused clients answered at once; past this they get a bare close (a
/// flood of connections must not become a flood of tasks).
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused client has to send the header its error answers.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// What a request counts against `limits.max_in_flight_bytes` beside its
/// frame: the proxy's own state for it (its task, its answer's slot, the
/// per-cluster copies a write's rewrite makes are counted by their frames).
pub const REQUEST_OVERHEAD_BYTES: usize = 512;

pub struct FrontDoor {
    pub budget: Arc<ByteBudget>,
    /// Requests read and not yet answered (`limits.max_in_flight_bytes`).
    pub requests: Arc<ByteBudget>,
    pauses: AtomicU64,
    handshake_timeout: Duration,
    frame_timeout: Duration,
    handshake_timeouts: AtomicU64,
    frame_timeouts: AtomicU64,
    refusing: Arc<Semaphore>,
}

/// Why a client connection was closed by the front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdue {
    /// STARTUP (and the login) did not finish within `handshake_timeout`.
    Handshake,
    /// A frame begun was not finished within `frame_timeout`.
    Frame,
}

/// The deadlines of one client connection, from its accept on.
/// `started`: STARTUP (and the login) finished, so the handshake deadline
/// no longer applies and an idle connection is never closed.
pub struct ConnectionWatch {
    handshake_deadline: Instant,
    frame_timeout: Duration,
}

impl ConnectionWatch {
    /// When to look again: the handshake deadline until started, the end
    /// of the frame timeout of a frame begun at `partial_since`, or one
    /// frame timeout from now (one timer wake per timeout while idle).
    pub fn next_check(&self, started: bool, partial_since: Option<std::time::Instant>) -> Instant {
        let frame = match partial_since {
            Some(since) => Instant::from_std(since) + self.frame_timeout,
            None => Instant::now() + self.frame_timeout,
        };
        if started {
            frame
        } else {
            frame.min(self.handshake_deadline)
        }
    }

    /// Why the connection must be closed now, if it must.
    pub fn overdue(
        &self,
        started: bool,
        partial_since: Option<std::time::Instant>,
    ) -> Option<Overdue> {
        let now = Instant::now();
        if !started && now >= self.handshake_deadline {
            return Some(Overdue::Handshake);
        }
        let since = Instant::from_std(partial_since?);
        (now >= since + self.frame_timeout).then_some(Overdue::Frame)
    }
}

impl FrontDoor {
    /// The deadlines of a connection accepted now.
    pub fn watch(&self) -> ConnectionWatch {
        ConnectionWatch {
            handshake_deadline: Instant::now() + self.handshake_timeout,
            frame_timeout: self.frame_timeout,
        }
    }

    pub fn new(limits: &Limits) -> FrontDoor {
        FrontDoor {
            budget: Arc::new(ByteBudget::new(limits.max_partial_frame_bytes.0 as usize)),
            requests: Arc::new(ByteBudget::new(limits.max_in_flight_bytes.0 as usize)),
            pauses: AtomicU64::new(0),
            handshake_timeout: limits.handshake_timeout.0,
            frame_timeout: limits.frame_timeout.0,
            handshake_timeouts: AtomicU64::new(0),
            frame_timeouts: AtomicU64::new(0),
            refusing: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
        }
    }

    /// A connection reached its in-flight limit and waits for answers
    /// before it takes more requests.
    pub fn count_pause(&self) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self, why: Overdue) {
        match why {
            Overdue::Handshake => &self.handshake_timeouts,
            Overdue::Frame => &self.frame_timeouts,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Tells a client the proxy has no room for why it is refused (an
    /// OVERLOADED error, which drivers take as "try another node"), then
    /// closes; over TLS when `tls` is given. None when too many refusals
    /// are under way already: the caller just closes.
    pub fn refuse(
        &self,
        sock: TcpStream,
        tls: Option<Arc<rustls::ServerConfig>>,
        message: String,
    ) -> Option<impl std::future::Future<Output = ()>> {
        let permit = self.refusing.clone().try_acquire_owned().ok()?;
        Some(async move {
            let e = ErrorFrame::new(ErrorCode::OVERLOADED, message);
            match tls {
                None => answer_and_close(sock, e).await,
                Some(config) => {
                    let accept = tokio_rustls::TlsAcceptor::from(config).accept(sock);
                    if let Ok(Ok(sock)) = tokio::time::timeout(REFUSAL_WAIT, accept).await {
                        answer_and_close(sock, e).await;
                    }
                }
            }
            drop(permit);
        })
    }
}

/// Answers the first frame a client sends (within a second) with `e`, on
/// its stream and in its version, then closes.
pub async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, e: ErrorFrame) {
    let mut header = [0u8; 9];
    let read = tokio::time::timeout(REFUSAL_WAIT, sock.read_exact(&mut header)).await;
    let (version, stream) = match read {
        Ok(Ok(_)) if SUPPORTED_VERSIONS.contains(&(header[0] & 0x7f)) => {
            (header[0] & 0x7f, i16::from_be_bytes([header[2], header[3]]))
        }
        _ => (4, 0),
    };
    let mut out = bytes::BytesMut::new();
    Frame::response(version, stream, Opcode::Error, e.encode()).write_plain(&mut out);
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        let _ = sock.write_all(&out).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

/// Client TLS starts that failed, and plaintext clients on a TLS port.
#[derive(Default)]
pub struct TlsCounts {
    pub handshake_failures: AtomicU64,
    pub plaintext_on_tls: AtomicU64,
    /// When a failure was last logged (ms since the proxy's epoch): at most
    /// one line a second, so that a scan cannot flood the log.
    last_logged: AtomicU64,
}

impl TlsCounts {
    pub fn log_failure(&self, peer: std::net::SocketAddr, error: &str) {
        let now = crate::journal::unix_ms();
        let last = self.last_logged.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%peer, error, "a client's TLS handshake failed (cutover_client_tls_handshake_failures_total counts them all)");
        } else {
            tracing::debug!(%peer, error, "a client's TLS handshake failed");
        }
    }
}

impl Collector for FrontDoor {
    fn collect(&self, out: &mut Exposition) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        for (name, help, ty, v) in [
            (
                "cutover_client_handshake_timeouts_total",
                "Client connections closed for not finishing STARTUP (and the login) within limits.handshake_timeout",
                MetricType::Counter,
                load(&self.handshake_timeouts),
            ),
            (
                "cutover_client_frame_timeouts_total",
                "Client connections closed for not finishing a frame within limits.frame_timeout",
                MetricType::Counter,
                load(&self.frame_timeouts),
            ),
            (
                "cutover_client_frames_over_budget_total",
                "Large client frames refused (OVERLOADED) because limits.max_partial_frame_bytes was in use",
                MetricType::Counter,
                self.budget.refused() as f64,
            ),
            (
                "cutover_client_partial_frame_bytes",
                "Bytes announced by large client frames now partly received (held against limits.max_partial_frame_bytes)",
                MetricType::Gauge,
                self.budget.held() as f64,
            ),
            (
                "cutover_client_pauses_total",
                "Times a client connection reached limits.max_in_flight_per_connection and took no new request until answers drained (backpressure, not an error)",
                MetricType::Counter,
                load(&self.pauses),
            ),
            (
                "cutover_requests_over_budget_total",
                "Client requests answered OVERLOADED because requests in flight held limits.max_in_flight_bytes",
                MetricType::Counter,
                self.requests.refused() as f64,
            ),
            (
                "cutover_request_bytes_in_flight",
                "Bytes held by client requests read and not yet answered (against limits.max_in_flight_bytes)",
                MetricType::Gauge,
                self.requests.held() as f64,
            ),
        ] {
            out.family(name, help, ty);
            out.sample(name, &[], v);
        }
    }
}
