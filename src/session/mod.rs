//! One client connection: the handshake (OPTIONS from the allow-list,
//! STARTUP, v5 framing), then its requests, polled together, answers
//! coalesced into socket writes. The handshake itself (STARTUP, the login,
//! READY) is in `handshake.rs`.
//!
//! Backpressure, as a real node does it: at `max_in_flight_per_connection`
//! requests under way the connection takes no new one until answers drain.
//! It keeps reading up to `max_queued_bytes_per_connection` of requests,
//! which wait in order, so a heartbeat (OPTIONS) among them is answered at
//! once; past that it stops reading, and TCP slows the client. A request is
//! refused (OVERLOADED) only when the proxy-wide `max_in_flight_bytes`
//! would be exceeded.

mod handshake;
mod state;

pub use state::{SessionState, Stamp};

use handshake::supported;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::upstream::Stream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::frame::Held;
use crate::frame::{CodecConfig, Compression, Frame, FrameCodec, FrameError, Opcode};
use crate::metrics::{OpClass, Outcome};
use crate::protocol::{ErrorCode, ErrorFrame};
use crate::proxy::front_door::REQUEST_OVERHEAD_BYTES;
use crate::proxy::Proxy;
use crate::topology::Face;

/// A request read while the connection was at its in-flight limit, waiting
/// its turn.
struct Waiting {
    frame: Frame,
    op: Opcode,
    read_at: std::time::Instant,
    held: Held,
}

/// The requests of one connection under way; each ends with its answer
/// and the stamp its latency is recorded from.
type Running =
    FuturesUnordered<std::pin::Pin<Box<dyn std::future::Future<Output = (Frame, Stamp)> + Send>>>;

/// One client connection over `S` (TCP; any `Stream`).
pub struct ClientSession<S: Stream = TcpStream> {
    proxy: Arc<Proxy>,
    framed: Framed<S, FrameCodec>,
    peer: SocketAddr,
    /// The listener it came through.
    face: Face,
    stop_accepting: CancellationToken,
    close_all: CancellationToken,
    tasks: TaskTracker,
    state: Option<Arc<SessionState>>,
    /// A session waiting for the client's credentials, and its compression.
    authenticating: Option<(Arc<SessionState>, Option<Compression>)>,
    version: u8,
    /// The request being handled inline (answered by the session itself).
    current: Option<Stamp>,
    /// Inline answers written but not yet flushed, with their outcome.
    answered: Vec<(Stamp, Outcome)>,
    /// Requests under way at once before new ones wait.
    limit: usize,
    /// Requests read at the limit, in the order read, and their bytes.
    waiting: VecDeque<Waiting>,
    waiting_bytes: usize,
    /// Past this many bytes waiting, nothing more is read.
    waiting_bound: usize,
}

impl<S: Stream> ClientSession<S> {
    /// A session over `sock` (with `TCP_NODELAY` set by the caller, for TCP).
    pub fn new(
        proxy: Arc<Proxy>,
        sock: S,
        peer: SocketAddr,
        face: Face,
        stop_accepting: CancellationToken,
        close_all: CancellationToken,
        tasks: TaskTracker,
    ) -> ClientSession<S> {
        let l = &proxy.config().limits;
        let codec = FrameCodec::new(CodecConfig {
            max_frame: l.max_frame_bytes.0 as usize,
            max_frame_pre_auth: l.max_frame_bytes_before_auth.0 as usize,
        });
        let codec = codec.with_budget(proxy.front_door().budget.clone());
        let limit = l.max_in_flight_per_connection as usize;
        let waiting_bound = l.max_queued_bytes_per_connection.0 as usize;
        // Small to start with, grown by the traffic: idle clients are many.
        let mut framed = Framed::with_capacity(sock, codec, 1024);
        *framed.write_buffer_mut() = bytes::BytesMut::new();
        ClientSession {
            proxy,
            framed,
            peer,
            face,
            stop_accepting,
            close_all,
            tasks,
            state: None,
            authenticating: None,
            version: 0,
            current: None,
            answered: Vec::new(),
            limit,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            waiting_bound,
        }
    }

    /// Whether the socket is read: not while the requests waiting fill
    /// their bound.
    fn room_to_read(&self) -> bool {
        self.waiting_bytes < self.waiting_bound
    }

    /// Starts waiting requests while there is room under the limit.
    fn start_waiting(&mut self, running: &mut Running) {
        let was_full = !self.room_to_read();
        while running.len() < self.limit {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_bytes -= w.frame.body.len();
            let state = self
                .state
                .clone()
                .expect("requests wait only on a started session");
            running.push(Self::handling(state, w.op, w.frame, w.read_at, w.held));
        }
        if was_full && self.room_to_read() {
            // A frame half read when reading stopped gets its full time.
            self.framed.codec_mut().restart_partial_clock();
        }
    }

    /// Records the latency of answers just flushed to the socket.
    fn record_flushed(m: &crate::metrics::Metrics, flushed: &mut Vec<(Stamp, Outcome)>) {
        if flushed.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        for (stamp, outcome) in flushed.drain(..) {
            let latency = now.saturating_duration_since(stamp.read_at);
            m.client.record(stamp.op, outcome, latency);
            if let Some(t) = stamp.tenant {
                m.tenant_series(t).record(stamp.op, outcome, latency);
            }
        }
    }

    pub async fn run(mut self) {
        let m = self.proxy.metrics().clone();
        m.client_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.client_connections_accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.serve().await;
        m.client_connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn serve(&mut self) {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Frame>();
        let mut written: Vec<(Stamp, Outcome)> = Vec::new();
        // The requests under way, polled by this task: no task spawned per
        // request, and answers that finish together leave in one write.
        let mut running: Running = FuturesUnordered::new();
        let mut reading = true;
        let door = self.proxy.front_door().clone();
        let watch = door.watch();
        let check =
            tokio::time::sleep_until(watch.next_check(false, self.framed.codec().partial_since()));
        tokio::pin!(check);
        loop {
            tokio::select! {
                _ = self.close_all.cancelled() => break,
                // Not while paused: a frame left half read then is not late.
                _ = &mut check, if reading && self.room_to_read() => {
                    let started = self.state.is_some();
                    let partial_since = self.framed.codec().partial_since();
                    match watch.overdue(started, partial_since) {
                        Some(why) => {
                            door.count(why);
                            tracing::debug!(peer = %self.peer, ?why, "closing a client connection that did not finish in time");
                            self.stop_reading();
                            reading = false;
                        }
                        None => check.as_mut().reset(watch.next_check(started, partial_since)),
                    }
                }
                // Draining: no new requests; answer the ones under way.
                _ = self.stop_accepting.cancelled(), if reading => reading = false,
                _ = std::future::ready(()), if !reading && running.is_empty() && self.waiting.is_empty() => break,
                Some(first) = running.next(), if !running.is_empty() => {
                    let mut next = Some(first);
                    let mut ok = true;
                    let mut yielded = false;
                    while let Some((f, stamp)) = next.take() {
                        written.push((stamp, Outcome::of(&f)));
                        ok = self.framed.feed(f).await.is_ok();
                        if !ok { break; }
                        next = running.next().now_or_never().flatten();
                        if next.is_none() && !yielded {
                            // Let answers that are nearly ready join this write.
                            yielded = true;
                            tokio::task::yield_now().await;
                            next = running.next().now_or_never().flatten();
                        }
                    }
                    self.proxy.metrics().in_flight.fetch_sub(
                        written.len() as i64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    self.start_waiting(&mut running);
                    if !ok || self.framed.flush().await.is_err() { break; }
                    Self::record_flushed(self.proxy.metrics(), &mut written);
                }
                Some(f) = out_rx.recv() => {
                    // Server events (SCHEMA_CHANGE) pushed to the client.
                    if self.framed.send(f).await.is_err() { break; }
                }
                next = self.framed.next(), if reading && self.room_to_read() => {
                    let Some(first) = next else { break };
                    let read_at = std::time::Instant::now();
                    let mut item = Some(first);
                    let mut keep = true;
                    while let Some(r) = item.take() {
                        keep = match r {
                            Ok(frame) => self.on_frame(frame, read_at, &out_tx, &mut running).await,
                            Err(e) => {
                                // Nothing more is read; what was received
                                // before is still answered.
                                self.on_codec_error(e).await;
                                reading = false;
                                break;
                            }
                        };
                        if !keep || !self.room_to_read() { break; }
                        item = self.framed.next().now_or_never().flatten();
                    }
                    if self.framed.flush().await.is_err() || !keep { break; }
                    Self::record_flushed(self.proxy.metrics(), &mut self.answered);
                }
            }
        }
        let unanswered = running.len() + self.waiting.len();
        self.proxy
            .metrics()
            .in_flight
            .fetch_sub(unanswered as i64, std::sync::atomic::Ordering::Relaxed);
        if self.framed.flush().await.is_ok() {
            Self::record_flushed(self.proxy.metrics(), &mut self.answered);
        }
    }

    async fn on_codec_error(&mut self, e: FrameError) {
        tracing::debug!(peer = %self.peer, error = %e, "closing a client connection after a framing error");
        self.stop_reading();
        // In v5 the answer goes in a segment like any other frame.
        if let Some(f) = e
            .answer_frame()
            .filter(|_| self.framed.codec().in_segments())
        {
            let _ = self.framed.send(f).await;
        } else if let Some(out) = e.answer() {
            // Answers already fed go first: the socket keeps their order.
            let _ = self.framed.flush().await;
            let _ = self.framed.get_mut().write_all(&out).await;
        }
    }

    /// Frees what the connection holds of frames not yet whole; nothing
    /// more is read from it.
    fn stop_reading(&mut self) {
        *self.framed.read_buffer_mut() = bytes::BytesMut::new();
        self.framed.codec_mut().abandon_partial();
    }

    async fn reply(&mut self, stream: i16, op: Opcode, body: Bytes) -> bool {
        let f = Frame::response(self.version, stream, op, body);
        if let Some(stamp) = self.current.take() {
            self.answered.push((stamp, Outcome::of(&f)));
        }
        self.framed.feed(f).await.is_ok()
    }

    async fn error(&mut self, stream: i16, e: ErrorFrame) -> bool {
        self.reply(stream, Opcode::Error, e.encode()).await
    }

    /// A request's handling, answered with its stream id and the stamp its
    /// latency is recorded from; `held` is given back with the answer.
    fn handling(
        state: Arc<SessionState>,
        op: Opcode,
        frame: Frame,
        read_at: std::time::Instant,
        held: Held,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (Frame, Stamp)> + Send>> {
        Box::pin(async move {
            let _held = held;
            let stream = frame.stream;
            let mut stamp = Stamp {
                read_at,
                op: OpClass::Other,
                tenant: None,
            };
            // A bug must cost this one request a clear error, never leave
            // the client waiting for its timeout.
            let handling = std::panic::AssertUnwindSafe(crate::pipeline::handle(
                &state, op, frame, &mut stamp,
            ));
            let mut answer = match handling.catch_unwind().await {
                Ok(a) => a,
                Err(_) => {
                    tracing::error!(
                        opcode = op.name(),
                        "request handling panicked; answering SERVER_ERROR"
                    );
                    let e = ErrorFrame::server(
                        "cutover: internal error while handling this request (logged by the proxy)",
                    );
                    Frame::response(state.version, stream, Opcode::Error, e.encode())
                }
            };
            answer.stream = stream;
            (answer, stamp)
        })
    }

    async fn on_frame(
        &mut self,
        frame: Frame,
        read_at: std::time::Instant,
        out: &mpsc::UnboundedSender<Frame>,
        running: &mut Running,
    ) -> bool {
        self.proxy.metrics().count_request(frame.opcode);
        self.current = Some(Stamp {
            read_at,
            op: OpClass::Other,
            tenant: None,
        });
        let v = frame.protocol_version();
        if self.version == 0 {
            self.version = v;
        } else if v != self.version {
            let msg = format!("Invalid message version. Got {v} but previous messages on this connection had version {}", self.version);
            return self.error(frame.stream, ErrorFrame::protocol(msg)).await;
        }
        let Some(op) = frame.op().filter(|_| !frame.is_response()) else {
            let e = ErrorFrame::protocol(format!("Unknown opcode {:#04x}", frame.opcode));
            return self.error(frame.stream, e).await;
        };
        if frame.stream < 0 {
            // Negative stream ids are the server's (-1 carries events): an
            // answer on one would be taken for an event or lost.
            let e = ErrorFrame::protocol(format!(
                "Invalid stream id {}: clients use stream ids from 0 to 32767 (negative ids are reserved for the server, -1 for events)",
                frame.stream
            ));
            return self.error(frame.stream, e).await;
        }
        match op {
            Opcode::Options => {
                self.reply(frame.stream, Opcode::Supported, supported())
                    .await
            }
            Opcode::Startup => self.on_startup(frame, out).await,
            Opcode::AuthResponse => self.on_auth_response(frame).await,
            Opcode::Query
            | Opcode::Prepare
            | Opcode::Execute
            | Opcode::Batch
            | Opcode::Register => {
                let Some(state) = self.state.clone() else {
                    if self.authenticating.is_some() {
                        // Nothing is forwarded before the client has logged in.
                        let e = ErrorFrame::new(ErrorCode::UNAUTHORIZED, "You have not logged in");
                        return self.error(frame.stream, e).await;
                    }
                    let e = ErrorFrame::protocol(format!(
                        "Unexpected message {}, expecting STARTUP or OPTIONS",
                        op.name()
                    ));
                    return self.error(frame.stream, e).await;
                };
                let door = self.proxy.front_door();
                let bytes = crate::frame::HEADER_LEN + frame.body.len() + REQUEST_OVERHEAD_BYTES;
                let Some(held) = door.requests.hold(bytes) else {
                    let e = ErrorFrame::new(
                        ErrorCode::OVERLOADED,
                        format!(
                            "cutover: requests under way on this proxy hold its {} bytes for them (limits.max_in_flight_bytes); try again or another node",
                            door.requests.limit()
                        ),
                    );
                    return self.error(frame.stream, e).await;
                };
                // Answered when its future completes, with its own stamp.
                self.current = None;
                self.proxy
                    .metrics()
                    .in_flight
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if running.len() < self.limit && self.waiting.is_empty() {
                    running.push(Self::handling(state, op, frame, read_at, held));
                } else {
                    if self.waiting.is_empty() {
                        door.count_pause();
                    }
                    self.waiting_bytes += frame.body.len();
                    self.waiting.push_back(Waiting {
                        frame,
                        op,
                        read_at,
                        held,
                    });
                }
                true
            }
            other => {
                let e = ErrorFrame::protocol(format!(
                    "Unexpected message {} from a client",
                    other.name()
                ));
                self.error(frame.stream, e).await
            }
        }
    }
}
