//! The node's listener and one task per client connection: handshake
//! (OPTIONS, STARTUP, SASL PLAIN), v5 framing switch, requests, schema
//! events, fault injection, and answers to bad input as Cassandra gives them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::faults::{ConnectionInfo, StatementKind};
use super::{Node, NodeConfig, NodeError, Outcome, SessionState};
use crate::frame::{Frame, FrameCodec, FrameError, Opcode};
use crate::protocol::request::{
    negotiate_compression, read_register, read_sasl_plain, read_startup,
};
use crate::protocol::response::{self, SchemaChange};
use crate::protocol::{ErrorCode, ErrorFrame};

/// A node that is running; dropping it does not stop it, `shutdown` does.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub control_addr: Option<SocketAddr>,
    pub node: Arc<Node>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl RunningNode {
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.node.drop_connections();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }
}

/// Binds the CQL port (and the control port when configured) and serves.
pub async fn start(config: NodeConfig) -> std::io::Result<RunningNode> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let control_listener = match config.control {
        Some(c) => Some(TcpListener::bind(c).await?),
        None => None,
    };
    let node = Arc::new(Node::new(config, addr));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let control_addr = match control_listener {
        Some(l) => {
            let a = l.local_addr()?;
            tasks.spawn(super::control::serve(node.clone(), l, shutdown.clone()));
            Some(a)
        }
        None => None,
    };
    tasks.spawn(accept_loop(
        node.clone(),
        listener,
        shutdown.clone(),
        tasks.clone(),
    ));
    Ok(RunningNode {
        addr,
        control_addr,
        node,
        shutdown,
        tasks,
    })
}

async fn accept_loop(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((sock, peer)) => {
                backoff = Duration::from_millis(5);
                if node.is_down() {
                    drop(sock);
                    continue;
                }
                node.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let node = node.clone();
                let shutdown = shutdown.clone();
                let conn_tasks = tasks.clone();
                tasks.spawn(async move {
                    let _ = sock.set_nodelay(true);
                    let id = node.next_connection_id();
                    match node.config.tls.clone() {
                        None => {
                            Connection::new(node.clone(), sock, peer, id, shutdown, conn_tasks)
                                .run()
                                .await
                        }
                        Some(tls) => {
                            let accept = tokio_rustls::TlsAcceptor::from(tls).accept(sock);
                            match tokio::time::timeout(Duration::from_secs(10), accept).await {
                                Ok(Ok(sock)) => {
                                    Connection::new(
                                        node.clone(),
                                        sock,
                                        peer,
                                        id,
                                        shutdown,
                                        conn_tasks,
                                    )
                                    .run()
                                    .await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "node: a TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%peer, "node: no TLS handshake within 10 s"),
                            }
                        }
                    }
                    node.stats.connections.lock().remove(&id);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[derive(PartialEq, Eq)]
enum Phase {
    /// Before STARTUP.
    New,
    /// STARTUP accepted, SASL exchange under way.
    Authenticating,
    Ready,
}

/// What a node connection runs over: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

struct Connection<S: Io> {
    node: Arc<Node>,
    framed: Framed<S, FrameCodec>,
    peer: SocketAddr,
    id: u64,
    phase: Phase,
    state: SessionState,
    events: Option<broadcast::Receiver<SchemaChange>>,
    deferred_tx: mpsc::UnboundedSender<Frame>,
    deferred_rx: mpsc::UnboundedReceiver<Frame>,
    /// Cancelled when the node stops or this connection ends; requests held
    /// by injected latency or a hang stop with it.
    cancel: CancellationToken,
    tasks: TaskTracker,
}

fn error_body(e: &ErrorFrame) -> Bytes {
    e.encode()
}

impl<S: Io> Connection<S> {
    fn new(
        node: Arc<Node>,
        sock: S,
        peer: SocketAddr,
        id: u64,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Connection<S> {
        let codec = FrameCodec::new(node.config.codec);
        let (deferred_tx, deferred_rx) = mpsc::unbounded_channel();
        Connection {
            node,
            framed: Framed::new(sock, codec),
            peer,
            id,
            phase: Phase::New,
            state: SessionState::default(),
            events: None,
            deferred_tx,
            deferred_rx,
            cancel: shutdown.child_token(),
            tasks,
        }
    }

    async fn run(mut self) {
        let mut kill = self.node.kill.subscribe();
        kill.mark_unchanged();
        let cancel = self.cancel.clone();
        let _stop_deferred = cancel.clone().drop_guard();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = kill.changed() => break,
                Some(f) = self.deferred_rx.recv() => {
                    if self.framed.send(f).await.is_err() { break; }
                }
                ev = recv_event(&mut self.events) => {
                    match ev {
                        Some(change) => {
                            let f = Frame::response(self.state.version, -1, Opcode::Event, response::schema_change_event(&change));
                            if self.framed.send(f).await.is_err() { break; }
                        }
                        None => self.events = None,
                    }
                }
                next = self.framed.next() => {
                    let Some(first) = next else { break };
                    // Handle every frame already buffered, then flush once.
                    let mut item = Some(first);
                    let mut keep = true;
                    while let Some(r) = item.take() {
                        keep = match r {
                            Ok(frame) => self.on_frame(frame).await,
                            Err(e) => { self.on_codec_error(e).await; false }
                        };
                        if !keep { break; }
                        item = self.framed.next().now_or_never().flatten();
                    }
                    if self.framed.flush().await.is_err() || !keep { break; }
                }
            }
        }
    }

    async fn on_codec_error(&mut self, e: FrameError) {
        tracing::debug!(peer = %self.peer, error = %e, "closing connection after a framing error");
        let Some(out) = e.answer() else { return };
        self.node
            .stats
            .count_error(&ErrorFrame::protocol(e.to_string()));
        let sock = self.framed.get_mut();
        let _ = sock.write_all(&out).await;
        let _ = sock.flush().await;
    }

    async fn reply(&mut self, stream: i16, op: Opcode, body: Bytes) -> bool {
        let f = Frame::response(self.state.version, stream, op, body);
        self.framed.feed(f).await.is_ok()
    }

    async fn reply_error(&mut self, stream: i16, e: ErrorFrame) -> bool {
        self.node.stats.count_error(&e);
        self.reply(stream, Opcode::Error, error_body(&e)).await
    }

    /// Returns false when the connection must close.
    async fn on_frame(&mut self, frame: Frame) -> bool {
        self.node.stats.count_request(frame.opcode);
        let v = frame.protocol_version();
        if self.state.version == 0 && !self.node.config.protocol_versions.contains(&v) {
            // Answered as Cassandra does, then closed: the driver tries lower.
            let listed: Vec<String> = self
                .node
                .config
                .protocol_versions
                .iter()
                .map(|v| format!("{v}/v{v}"))
                .collect();
            let e = ErrorFrame::protocol(format!(
                "Invalid or unsupported protocol version ({v}); supported versions are ({})",
                listed.join(", ")
            ));
            self.state.version = v;
            self.reply_error(frame.stream, e).await;
            return false;
        }
        if self.state.version == 0 {
            self.state.version = v;
        } else if v != self.state.version {
            let e = ErrorFrame::protocol(format!(
                "Invalid message version. Got {v} but previous messages on this connection had version {}",
                self.state.version
            ));
            return self.reply_error(frame.stream, e).await;
        }
        if frame.is_response() {
            return self
                .reply_error(
                    frame.stream,
                    ErrorFrame::protocol("Received a response frame from a client"),
                )
                .await;
        }
        let Some(op) = frame.op() else {
            let e = ErrorFrame::protocol(format!("Unknown opcode {:#04x}", frame.opcode));
            return self.reply_error(frame.stream, e).await;
        };
        match op {
            Opcode::Options => {
                let versions: Vec<String> = self
                    .node
                    .config
                    .protocol_versions
                    .iter()
                    .map(|v| format!("{v}/v{v}"))
                    .collect();
                let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
                let body = response::supported(&[
                    ("PROTOCOL_VERSIONS", &versions),
                    ("COMPRESSION", &["snappy", "lz4"]),
                    ("CQL_VERSION", &["3.4.5"]),
                ]);
                self.reply(frame.stream, Opcode::Supported, body).await
            }
            Opcode::Startup => self.on_startup(frame).await,
            Opcode::AuthResponse => self.on_auth_response(frame).await,
            Opcode::Register
            | Opcode::Query
            | Opcode::Prepare
            | Opcode::Execute
            | Opcode::Batch => {
                if self.phase != Phase::Ready {
                    let e = if self.phase == Phase::New {
                        ErrorFrame::protocol(format!(
                            "Unexpected message {}, expecting STARTUP or OPTIONS",
                            op.name()
                        ))
                    } else {
                        ErrorFrame::new(ErrorCode::UNAUTHORIZED, "You have not logged in")
                    };
                    return self.reply_error(frame.stream, e).await;
                }
                if op == Opcode::Register {
                    return match read_register(&frame.body) {
                        Ok(events) => {
                            if events.iter().any(|e| e == "SCHEMA_CHANGE") {
                                self.events = Some(self.node.subscribe_events());
                            }
                            self.reply(frame.stream, Opcode::Ready, Bytes::new()).await
                        }
                        Err(e) => {
                            self.reply_error(frame.stream, ErrorFrame::protocol(e.to_string()))
                                .await
                        }
                    };
                }
                self.on_request(op, frame).await
            }
            other => {
                let e = ErrorFrame::protocol(format!(
                    "Unexpected message {} from a client",
                    other.name()
                ));
                self.reply_error(frame.stream, e).await
            }
        }
    }

    async fn on_startup(&mut self, frame: Frame) -> bool {
        if self.phase != Phase::New {
            return self
                .reply_error(
                    frame.stream,
                    ErrorFrame::protocol(
                        "Unexpected message STARTUP, the connection is already started",
                    ),
                )
                .await;
        }
        let options = match read_startup(&frame.body) {
            Ok(o) => o,
            Err(e) => {
                return self
                    .reply_error(frame.stream, ErrorFrame::protocol(e.to_string()))
                    .await
            }
        };
        let compression = match negotiate_compression(&options, self.state.version) {
            Ok(c) => c,
            Err(m) => {
                return self
                    .reply_error(frame.stream, ErrorFrame::protocol(m))
                    .await
            }
        };
        self.node.stats.connections.lock().insert(
            self.id,
            ConnectionInfo {
                id: self.id,
                peer: self.peer.to_string(),
                protocol_version: self.state.version,
                startup: options.iter().cloned().collect(),
                compression: compression.map(|c| c.name().to_string()),
                user: None,
            },
        );
        let auth = !self.node.config.users.is_empty();
        let (op, body) = if auth {
            self.phase = Phase::Authenticating;
            (
                Opcode::Authenticate,
                response::authenticate("org.apache.cassandra.auth.PasswordAuthenticator"),
            )
        } else {
            self.phase = Phase::Ready;
            self.framed.codec_mut().set_authenticated();
            (Opcode::Ready, Bytes::new())
        };
        if self.state.version >= 5 {
            // v5: this answer still uses the old framing, uncompressed; the
            // segments (with LZ4 when asked for) start right after it.
            let ok = self.reply(frame.stream, op, body).await && self.framed.flush().await.is_ok();
            self.framed.codec_mut().set_compression(compression);
            self.framed.codec_mut().enable_segments();
            ok
        } else {
            self.framed.codec_mut().set_compression(compression);
            self.reply(frame.stream, op, body).await
        }
    }

    async fn on_auth_response(&mut self, frame: Frame) -> bool {
        if self.phase != Phase::Authenticating {
            return self
                .reply_error(
                    frame.stream,
                    ErrorFrame::protocol("Unexpected AUTH_RESPONSE"),
                )
                .await;
        }
        let (user, pass) = match read_sasl_plain(&frame.body) {
            Ok(c) => c,
            Err(m) => {
                return self
                    .reply_error(frame.stream, ErrorFrame::new(ErrorCode::BAD_CREDENTIALS, m))
                    .await
            }
        };
        if self
            .node
            .config
            .users
            .iter()
            .any(|(u, p)| *u == user && *p == pass)
        {
            self.phase = Phase::Ready;
            self.framed.codec_mut().set_authenticated();
            if let Some(c) = self.node.stats.connections.lock().get_mut(&self.id) {
                c.user = Some(user);
            }
            self.reply(
                frame.stream,
                Opcode::AuthSuccess,
                response::auth_token(None),
            )
            .await
        } else {
            let e = ErrorFrame::new(
                ErrorCode::BAD_CREDENTIALS,
                format!("Provided username {user} and/or password are incorrect"),
            );
            self.reply_error(frame.stream, e).await
        }
    }

    async fn on_request(&mut self, op: Opcode, frame: Frame) -> bool {
        let faults = &self.node.faults;
        let latency = faults.latency_us.load(Ordering::Relaxed);
        let hang = faults.hang.load(Ordering::SeqCst);
        let has_error_rule = faults.error.lock().is_some();
        let counting = self.node.stats.count_writes.load(Ordering::Relaxed);
        if latency > 0 || hang || has_error_rule || counting {
            let (ks, kind) = self.node.inspect(&self.state, op, &frame.body);
            if counting && kind == StatementKind::Write {
                self.node.stats.count_write(ks.as_deref().unwrap_or(""));
            }
            let system = ks.as_deref().is_none_or(super::schema::is_system_keyspace);
            if !system {
                if let Some(e) = faults.error_for(op, ks.as_deref(), kind) {
                    return self.reply_error(frame.stream, e).await;
                }
                if (latency > 0 || hang) && kind != StatementKind::Other {
                    self.defer(op, frame, latency, hang);
                    return true;
                }
            }
        }
        let (resp, new_ks) = execute(&self.node, &self.state, op, &frame);
        if let Some(k) = new_ks {
            self.state.keyspace = Some(k);
        }
        self.framed.feed(resp).await.is_ok()
    }

    /// Runs a request after the injected delay or once hung requests are
    /// released, answering through the deferred channel.
    fn defer(&self, op: Opcode, frame: Frame, latency_us: u64, hang: bool) {
        let node = self.node.clone();
        let state = self.state.clone();
        let tx = self.deferred_tx.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let wait = async {
                if hang {
                    let released = node.faults.release.notified();
                    if node.faults.hang.load(Ordering::SeqCst) {
                        released.await;
                    }
                }
                if latency_us > 0 {
                    tokio::time::sleep(Duration::from_micros(latency_us)).await;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wait => {}
            }
            let (resp, _) = execute(&node, &state, op, &frame);
            let _ = tx.send(resp);
        });
    }
}

async fn recv_event(
    events: &mut Option<broadcast::Receiver<SchemaChange>>,
) -> Option<SchemaChange> {
    match events {
        None => std::future::pending().await,
        Some(rx) => loop {
            match rx.recv().await {
                Ok(c) => return Some(c),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        },
    }
}

/// Runs one request and builds its response frame; also returns the new
/// keyspace when the request was a USE.
fn execute(
    node: &Node,
    state: &SessionState,
    op: Opcode,
    frame: &Frame,
) -> (Frame, Option<String>) {
    let result: Result<(Bytes, Option<String>), NodeError> = match op {
        Opcode::Query => node.query(state, &frame.body).map(split),
        Opcode::Execute => node.execute(state, &frame.body).map(split),
        Opcode::Batch => node.batch(state, &frame.body).map(split),
        Opcode::Prepare => node.prepare(state, &frame.body).map(|b| (b, None)),
        _ => Err(NodeError(ErrorFrame::protocol("unexpected opcode"))),
    };
    match result {
        Ok((body, ks)) => (
            Frame::response(state.version, frame.stream, Opcode::Result, body),
            ks,
        ),
        Err(NodeError(e)) => {
            node.stats.count_error(&e);
            (
                Frame::response(state.version, frame.stream, Opcode::Error, e.encode()),
                None,
            )
        }
    }
}

fn split(o: Outcome) -> (Bytes, Option<String>) {
    match o {
        Outcome::Body(b) => (b, None),
        Outcome::SetKeyspace(k, b) => (b, Some(k)),
    }
}
