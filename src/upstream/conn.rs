use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::stream::Stream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::frame::{Compression, Frame, FrameCodec, FrameError, Opcode};
use crate::protocol::request::{build_startup, Query, QueryParams};
use crate::protocol::{consistency, ErrorFrame};

/// Stream ids kept for the proxy's own requests (heartbeats, re-prepares,
/// USE replay), so they get through even when clients fill the pool.
pub const RESERVED_STREAMS: i16 = 64;
const MAX_STREAMS: i16 = i16::MAX;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?} while connecting")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr} refused the handshake: {}", .error.message)]
    Handshake { addr: SocketAddr, error: ErrorFrame },
    #[error("{addr} requires authentication but no credentials are configured for it")]
    NoCredentials { addr: SocketAddr },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("the connection to {addr} is closed")]
    Closed { addr: SocketAddr },
    #[error("all {limit} stream ids to {addr} stayed in use for the whole request timeout")]
    Busy { addr: SocketAddr, limit: usize },
    /// Never sent: the connection closed while the request waited for a
    /// stream id (it is replaced when requests that timed out hold half
    /// its ids). Safe to send on the next connection.
    #[error("the connection to {addr} closed before this request could be sent (every stream id was in use)")]
    Replaced { addr: SocketAddr },
    #[error("framing error from {addr}: {source}")]
    Frame {
        addr: SocketAddr,
        source: FrameError,
    },
    #[error("TLS with {addr} (verifying the name {name}) failed: {reason}")]
    Tls {
        addr: SocketAddr,
        name: String,
        reason: String,
    },
}

impl UpstreamError {
    /// May the request be sent again elsewhere without risk of applying twice?
    /// Only when it certainly never reached the node.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::ConnectTimeout { .. }
                | UpstreamError::Handshake { .. }
                | UpstreamError::NoCredentials { .. }
                | UpstreamError::Tls { .. }
                | UpstreamError::Busy { .. }
                | UpstreamError::Replaced { .. }
        )
    }
}

/// How to open a connection.
#[derive(Clone)]
pub struct ConnectOptions {
    pub version: u8,
    pub compression: Option<Compression>,
    /// STARTUP options to send besides CQL_VERSION and COMPRESSION (already
    /// filtered to the ones the proxy understands).
    pub startup: Vec<(String, String)>,
    pub credentials: Option<(String, String)>,
    /// Replayed with USE once the connection is ready.
    pub keyspace: Option<String>,
    pub connect_timeout: Duration,
    /// Stream ids for client requests (the proxy's own come on top).
    pub max_in_flight: usize,
    /// OPTIONS is sent when the connection has been idle this long.
    pub heartbeat_interval: Option<Duration>,
    /// A frame begun by the cluster must be whole within this, or the
    /// connection is closed: after a half-sent answer nothing else on it
    /// can be read.
    pub frame_timeout: Duration,
    /// TLS towards the node (the cluster's `tls`), when set.
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
}

/// The password is never shown.
impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("version", &self.version)
            .field("compression", &self.compression)
            .field("startup", &self.startup)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("keyspace", &self.keyspace)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("frame_timeout", &self.frame_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            version: 4,
            compression: None,
            startup: Vec::new(),
            credentials: None,
            keyspace: None,
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 2048,
            frame_timeout: Duration::from_secs(10),
            heartbeat_interval: None,
            tls: None,
        }
    }
}

enum Slot {
    Free,
    Waiting(oneshot::Sender<Frame>),
    /// Its request timed out; the id stays taken until the late answer comes.
    Abandoned,
}

/// Stream ids: the reserved ones at the bottom (0..RESERVED_STREAMS), then
/// client ids, whose slots are created as they are first used so that an
/// idle connection costs little.
struct Streams {
    slots: Vec<Slot>,
    free_client: Vec<i16>,
    free_reserved: Vec<i16>,
    /// The next client id never handed out yet.
    next_client: i16,
    /// Client ids whose request timed out, kept until their late answer.
    abandoned: usize,
    /// One past the last client id.
    client_end: i16,
}

impl Streams {
    fn new(client: usize) -> Streams {
        let client = client.clamp(1, (MAX_STREAMS - RESERVED_STREAMS) as usize) as i16;
        Streams {
            slots: (0..RESERVED_STREAMS).map(|_| Slot::Free).collect(),
            free_client: Vec::new(),
            free_reserved: (0..RESERVED_STREAMS).rev().collect(),
            next_client: RESERVED_STREAMS,
            abandoned: 0,
            client_end: RESERVED_STREAMS + client,
        }
    }

    fn client_capacity(&self) -> usize {
        (self.client_end - RESERVED_STREAMS) as usize
    }

    fn alloc(&mut self, reserved: bool) -> Option<i16> {
        if reserved {
            return self.free_reserved.pop();
        }
        if let Some(id) = self.free_client.pop() {
            return Some(id);
        }
        if self.next_client < self.client_end {
            let id = self.next_client;
            self.next_client += 1;
            self.slots.push(Slot::Free);
            return Some(id);
        }
        None
    }

    fn release(&mut self, id: i16) {
        self.slots[id as usize] = Slot::Free;
        if id < RESERVED_STREAMS {
            self.free_reserved.push(id);
        } else {
            self.free_client.push(id);
        }
    }

    /// Whether requests that timed out hold half the client ids or more:
    /// the node is not answering them, and only a new connection gets the
    /// ids back.
    fn pinned(&self) -> bool {
        self.abandoned * 2 >= self.client_capacity()
    }

    fn client_in_use(&self) -> usize {
        (self.next_client - RESERVED_STREAMS) as usize - self.free_client.len()
    }
}

struct Shared {
    addr: SocketAddr,
    version: u8,
    streams: Mutex<Streams>,
    /// Woken when a client id is given back.
    freed: tokio::sync::Notify,
    closed: AtomicBool,
    last_activity: Mutex<tokio::time::Instant>,
    stop: CancellationToken,
}

impl Shared {
    fn fail_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut s = self.streams.lock();
        for slot in s.slots.iter_mut() {
            // Dropping the sender wakes the waiter with an error.
            *slot = Slot::Free;
        }
        s.abandoned = 0;
        drop(s);
        self.freed.notify_waiters();
    }

    /// Gives `id` back and wakes one request waiting for an id.
    fn release(&self, s: &mut Streams, id: i16) {
        s.release(id);
        if id >= RESERVED_STREAMS {
            self.freed.notify_one();
        }
    }

    /// Closes a connection whose ids are held by requests the node never
    /// answered; the session opens a new one, which has all its ids.
    fn replace_if_pinned(&self, s: &Streams) -> bool {
        if !s.pinned() {
            return false;
        }
        tracing::warn!(
            upstream = %self.addr,
            timed_out = s.abandoned,
            ids = s.client_capacity(),
            "closing an upstream connection: requests that timed out hold half its stream ids (the node does not answer them); a new connection takes its place"
        );
        self.closed.store(true, Ordering::SeqCst);
        self.stop.cancel();
        true
    }
}

/// One connection to one node.
pub struct UpstreamConn {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Frame>,
    events: Events,
    stop: CancellationToken,
}

/// Server events, for connections that REGISTER. The channel is made on
/// first use: it holds 256 slots, too much to carry on every connection.
type Events = Arc<std::sync::OnceLock<broadcast::Sender<Frame>>>;

impl Drop for UpstreamConn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Reader<S> = FramedRead<<S as Stream>::Read, FrameCodec>;
type Writer<S> = FramedWrite<<S as Stream>::Write, FrameCodec>;

impl UpstreamConn {
    pub async fn connect(
        addr: SocketAddr,
        opts: &ConnectOptions,
    ) -> Result<UpstreamConn, UpstreamError> {
        match tokio::time::timeout(opts.connect_timeout, UpstreamConn::open(addr, opts)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::ConnectTimeout {
                addr,
                timeout: opts.connect_timeout,
            }),
        }
    }

    async fn open(addr: SocketAddr, opts: &ConnectOptions) -> Result<UpstreamConn, UpstreamError> {
        let sock = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = sock.set_nodelay(true);
        match &opts.tls {
            None => UpstreamConn::over(sock, addr, opts).await,
            Some(tls) => {
                let name = tls.name_for(addr);
                let tls_err = |reason: String| UpstreamError::Tls {
                    addr,
                    name: name.to_str().into_owned(),
                    reason,
                };
                let connector = tokio_rustls::TlsConnector::from(tls.config.current());
                let sock = connector
                    .connect(name.clone(), sock)
                    .await
                    .map_err(|e| tls_err(e.to_string()))?;
                UpstreamConn::over(sock, addr, opts).await
            }
        }
    }

    /// The handshake, then requests, over `sock`, already connected to the
    /// node at `addr` (which names it in errors and logs).
    pub async fn over<S: Stream>(
        sock: S,
        addr: SocketAddr,
        opts: &ConnectOptions,
    ) -> Result<UpstreamConn, UpstreamError> {
        let (r, w) = sock.split();
        // Buffers start small and grow with the traffic: idle connections are many.
        let mut reader = FramedRead::with_capacity(r, FrameCodec::client(), 1024);
        let mut writer = FramedWrite::new(w, FrameCodec::client());
        *writer.write_buffer_mut() = BytesMut::new();
        let v = opts.version;
        let frame_err = |source| UpstreamError::Frame { addr, source };

        // STARTUP, then (maybe) SASL PLAIN; both on stream 0 before any other traffic.
        let mut options: Vec<(&str, &str)> = vec![("CQL_VERSION", "3.0.0")];
        if let Some(c) = opts.compression {
            options.push(("COMPRESSION", c.name()));
        }
        for (k, val) in &opts.startup {
            if !k.eq_ignore_ascii_case("CQL_VERSION") && !k.eq_ignore_ascii_case("COMPRESSION") {
                options.push((k, val));
            }
        }
        writer
            .send(Frame::request(
                v,
                0,
                Opcode::Startup,
                build_startup(&options),
            ))
            .await
            .map_err(frame_err)?;
        if v < 5 {
            writer.encoder_mut().set_compression(opts.compression);
            reader.decoder_mut().set_compression(opts.compression);
        }
        let mut answer = next::<S>(&mut reader, addr).await?;
        if v >= 5 {
            for codec in [writer.encoder_mut(), reader.decoder_mut()] {
                codec.set_compression(opts.compression);
                codec.enable_segments();
            }
        }
        if answer.op() == Some(Opcode::Authenticate) {
            let (user, pass) = opts
                .credentials
                .as_ref()
                .ok_or(UpstreamError::NoCredentials { addr })?;
            let body = crate::protocol::request::sasl_plain(user, pass);
            writer
                .send(Frame::request(v, 0, Opcode::AuthResponse, body))
                .await
                .map_err(frame_err)?;
            answer = next::<S>(&mut reader, addr).await?;
            if answer.op() == Some(Opcode::AuthSuccess) {
                answer = Frame::response(v, 0, Opcode::Ready, Bytes::new());
            }
        }
        if answer.op() != Some(Opcode::Ready) {
            return Err(handshake_error(addr, &answer));
        }
        if let Some(ks) = &opts.keyspace {
            let body = Query {
                text: format!("USE \"{}\"", ks.replace('"', "\"\"")),
                params: QueryParams {
                    consistency: consistency::ONE,
                    ..Default::default()
                },
            }
            .encode(v);
            writer
                .send(Frame::request(v, 0, Opcode::Query, body))
                .await
                .map_err(frame_err)?;
            let r = next::<S>(&mut reader, addr).await?;
            if r.op() != Some(Opcode::Result) {
                return Err(handshake_error(addr, &r));
            }
        }

        let shared = Arc::new(Shared {
            addr,
            version: v,
            streams: Mutex::new(Streams::new(opts.max_in_flight)),
            freed: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            last_activity: Mutex::new(tokio::time::Instant::now()),
            stop: CancellationToken::new(),
        });
        let (out, rx) = mpsc::unbounded_channel();
        let events: Events = Arc::default();
        let stop = shared.stop.clone();
        tokio::spawn(write_loop::<S>(writer, rx, shared.clone(), stop.clone()));
        tokio::spawn(read_loop::<S>(
            reader,
            shared.clone(),
            events.clone(),
            stop.clone(),
            opts.frame_timeout,
        ));
        let conn = UpstreamConn {
            shared,
            out,
            events,
            stop,
        };
        if let Some(every) = opts.heartbeat_interval {
            tokio::spawn(heartbeat(conn.handle(), every));
        }
        Ok(conn)
    }

    fn handle(&self) -> HeartbeatHandle {
        HeartbeatHandle {
            shared: self.shared.clone(),
            out: self.out.clone(),
            stop: self.stop.clone(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn version(&self) -> u8 {
        self.shared.version
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Server events (stream -1) for connections that sent REGISTER.
    pub fn events(&self) -> broadcast::Receiver<Frame> {
        self.events
            .get_or_init(|| broadcast::channel(256).0)
            .subscribe()
    }

    /// Sends a client request and waits for its answer (its stream id is
    /// rewritten to one of this connection's; the answer comes back with
    /// the upstream id, which callers replace with the client's).
    pub async fn request(
        &self,
        op: Opcode,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Frame, UpstreamError> {
        send(&self.shared, &self.out, op, body, 0, timeout, false).await
    }

    /// A request of the proxy's own, on the reserved stream ids.
    pub async fn request_reserved(
        &self,
        op: Opcode,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Frame, UpstreamError> {
        send(&self.shared, &self.out, op, body, 0, timeout, true).await
    }

    /// Forwards a frame with its flags (tracing, custom payload) kept.
    pub async fn forward(&self, frame: &Frame, timeout: Duration) -> Result<Frame, UpstreamError> {
        send(
            &self.shared,
            &self.out,
            frame.op().unwrap_or(Opcode::Query),
            frame.body.clone(),
            frame.flags,
            timeout,
            false,
        )
        .await
    }

    /// Stream ids in use by client requests (waiting or abandoned).
    pub fn in_flight(&self) -> usize {
        self.shared.streams.lock().client_in_use()
    }

    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Resolves once the connection is closed (by either side).
    pub async fn closed(&self) {
        self.stop.cancelled().await
    }
}

async fn send(
    shared: &Arc<Shared>,
    out: &mpsc::UnboundedSender<Frame>,
    op: Opcode,
    body: Bytes,
    flags: u8,
    timeout: Duration,
    reserved: bool,
) -> Result<Frame, UpstreamError> {
    let addr = shared.addr;
    if shared.closed.load(Ordering::SeqCst) {
        return Err(UpstreamError::Closed { addr });
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let (tx, rx) = oneshot::channel();
    let mut tx = Some(tx);
    // Every id in use: wait (within the request's timeout) for one to be
    // given back; the session's in-flight limit bounds how many wait.
    let id = match take_id(shared, reserved, &mut tx)? {
        Some(id) => id,
        None => loop {
            let freed = shared.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(id) = take_id(shared, reserved, &mut tx)? {
                break id;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                let limit = shared.streams.lock().client_capacity();
                return Err(UpstreamError::Busy { addr, limit });
            }
        },
    };
    let mut frame = Frame::request(shared.version, id, op, body);
    frame.flags = flags & !crate::frame::flags::COMPRESSION;
    if out.send(frame).is_err() {
        let mut s = shared.streams.lock();
        shared.release(&mut s, id);
        return Err(UpstreamError::Closed { addr });
    }
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(_)) => Err(UpstreamError::Closed { addr }),
        Err(_) => {
            let mut s = shared.streams.lock();
            if matches!(s.slots[id as usize], Slot::Waiting(_)) {
                s.slots[id as usize] = Slot::Abandoned;
                if id >= RESERVED_STREAMS {
                    s.abandoned += 1;
                    shared.replace_if_pinned(&s);
                }
            }
            Err(UpstreamError::Timeout { addr, timeout })
        }
    }
}

/// A free stream id, taken for the request answered through `tx`; None
/// when every one is in use; an error when waiting is pointless (the
/// reserved ids, a connection closed or replaced).
fn take_id(
    shared: &Shared,
    reserved: bool,
    tx: &mut Option<oneshot::Sender<Frame>>,
) -> Result<Option<i16>, UpstreamError> {
    let addr = shared.addr;
    let mut s = shared.streams.lock();
    if shared.closed.load(Ordering::SeqCst) {
        return Err(UpstreamError::Replaced { addr });
    }
    if let Some(id) = s.alloc(reserved) {
        s.slots[id as usize] = Slot::Waiting(tx.take().expect("one id per request"));
        return Ok(Some(id));
    }
    if reserved {
        let limit = RESERVED_STREAMS as usize;
        return Err(UpstreamError::Busy { addr, limit });
    }
    if shared.replace_if_pinned(&s) {
        // Never sent: safe to send again on the connection that takes
        // this one's place.
        return Err(UpstreamError::Replaced { addr });
    }
    Ok(None)
}

async fn next<S: Stream>(reader: &mut Reader<S>, addr: SocketAddr) -> Result<Frame, UpstreamError> {
    match reader.next().await {
        Some(Ok(f)) => Ok(f),
        Some(Err(source)) => Err(UpstreamError::Frame { addr, source }),
        None => Err(UpstreamError::Closed { addr }),
    }
}

fn handshake_error(addr: SocketAddr, f: &Frame) -> UpstreamError {
    let error = match f.op() {
        Some(Opcode::Error) => ErrorFrame::decode(&f.body).unwrap_or_else(|e| {
            ErrorFrame::protocol(format!("unreadable ERROR during the handshake: {e}"))
        }),
        other => ErrorFrame::protocol(format!("unexpected {:?} during the handshake", other)),
    };
    UpstreamError::Handshake { addr, error }
}

async fn write_loop<S: Stream>(
    mut w: Writer<S>,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            f = rx.recv() => match f { Some(f) => f, None => break },
        };
        // Everything already queued goes out in the same socket write. One
        // yield first lets the request tasks that are ready run and queue
        // theirs: under load a write then carries many frames, not one.
        let mut ok = w.feed(first).await.is_ok();
        let mut yielded = false;
        while ok {
            match rx.try_recv() {
                Ok(f) => ok = w.feed(f).await.is_ok(),
                Err(_) if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        if !ok || w.flush().await.is_err() {
            break;
        }
        *shared.last_activity.lock() = tokio::time::Instant::now();
    }
    stop.cancel();
    shared.fail_all();
}

async fn read_loop<S: Stream>(
    mut r: Reader<S>,
    shared: Arc<Shared>,
    events: Events,
    stop: CancellationToken,
    frame_timeout: Duration,
) {
    let check = tokio::time::sleep(frame_timeout);
    tokio::pin!(check);
    loop {
        let f = tokio::select! {
            _ = stop.cancelled() => break,
            _ = &mut check => {
                let now = tokio::time::Instant::now();
                match r.decoder().partial_since().map(tokio::time::Instant::from_std) {
                    Some(since) if now >= since + frame_timeout => {
                        tracing::warn!(upstream = %shared.addr, timeout = ?frame_timeout, "closing upstream connection: a frame it began was not finished in time");
                        break;
                    }
                    Some(since) => check.as_mut().reset(since + frame_timeout),
                    None => check.as_mut().reset(now + frame_timeout),
                }
                continue;
            }
            f = r.next() => f,
        };
        let f = match f {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                tracing::warn!(upstream = %shared.addr, error = %e, "closing upstream connection after a framing error");
                break;
            }
            None => break,
        };
        if f.stream < 0 {
            if let Some(tx) = events.get() {
                let _ = tx.send(f);
            }
            continue;
        }
        let mut s = shared.streams.lock();
        let Some(slot) = s.slots.get_mut(f.stream as usize) else {
            tracing::warn!(upstream = %shared.addr, stream = f.stream, "answer on a stream id never used");
            continue;
        };
        match std::mem::replace(slot, Slot::Free) {
            Slot::Waiting(tx) => {
                shared.release(&mut s, f.stream);
                drop(s);
                let _ = tx.send(f);
            }
            Slot::Abandoned => {
                if f.stream >= RESERVED_STREAMS {
                    s.abandoned -= 1;
                }
                shared.release(&mut s, f.stream);
            }
            Slot::Free => {
                tracing::warn!(upstream = %shared.addr, stream = f.stream, "answer on a free stream id")
            }
        }
    }
    stop.cancel();
    shared.fail_all();
}

struct HeartbeatHandle {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Frame>,
    stop: CancellationToken,
}

/// OPTIONS on an idle connection; a connection that does not answer is closed.
async fn heartbeat(h: HeartbeatHandle, every: Duration) {
    loop {
        let idle_since = *h.shared.last_activity.lock();
        let due = idle_since + every;
        tokio::select! {
            _ = h.stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        if *h.shared.last_activity.lock() > idle_since {
            continue;
        }
        match send(
            &h.shared,
            &h.out,
            Opcode::Options,
            Bytes::new(),
            0,
            every,
            true,
        )
        .await
        {
            Ok(_) => *h.shared.last_activity.lock() = tokio::time::Instant::now(),
            Err(e) => {
                tracing::warn!(upstream = %h.shared.addr, error = %e, "heartbeat failed; closing the connection");
                h.stop.cancel();
                return;
            }
        }
    }
}
