//! A minimal CQL client on this crate's own codec, for tests, benchmarks and
//! health probes: connect, handshake (v3–v5, optional compression and SASL
//! PLAIN), over TCP or TLS, and request/response by stream id. It is not
//! a driver: no pooling, no retries, no topology.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::frame::{Compression, Frame, FrameCodec, FrameError, Opcode};
use crate::protocol::reader::RawValue;
use crate::protocol::request::{build_startup, Execute, Prepare, Query, QueryParams};
use crate::protocol::response::{Prepared, ResultBody};
use crate::protocol::{consistency, BodyError, ErrorFrame};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("malformed response body: {0}")]
    Body(#[from] BodyError),
    #[error("server error {:#06x}: {}", .0.code.0, .0.message)]
    Server(ErrorFrame),
    #[error("connection closed by the server")]
    Closed,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("unexpected response {0}")]
    Unexpected(String),
}

/// TLS towards a node: the configuration and the name its certificate
/// must carry.
#[derive(Clone)]
pub struct TlsTo {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// A client's connection: TCP, or TLS over TCP.
pub enum ClientStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! each_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientStream::Tcp($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            ClientStream::Tls($s) => {
                let $s = std::pin::Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl tokio::io::AsyncRead for ClientStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for ClientStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_stream!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, s => s.poll_shutdown(cx))
    }
}

/// A half of a `ClientStream`, to read or to write on its own task.
pub type ReadHalf = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub type WriteHalf = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

impl ClientStream {
    /// Its halves: TCP's without a lock between them, TLS's through one.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            ClientStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            ClientStream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

pub struct Client {
    framed: Framed<ClientStream, FrameCodec>,
    pub version: u8,
    /// The consistency of `query` and `execute` (ONE unless set).
    pub consistency: u16,
    next_stream: i16,
}

impl Client {
    /// Connects without a handshake (for tests that send raw frames).
    pub async fn connect_raw(addr: SocketAddr, version: u8) -> Result<Client, ClientError> {
        Client::connect_raw_tls(addr, version, None).await
    }

    /// Connects (over TLS when `tls` is given) without a CQL handshake.
    pub async fn connect_raw_tls(
        addr: SocketAddr,
        version: u8,
        tls: Option<&TlsTo>,
    ) -> Result<Client, ClientError> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let sock = match tls {
            None => ClientStream::Tcp(sock),
            Some(t) => {
                let s = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(t.name.clone(), sock)
                    .await
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                ClientStream::Tls(Box::new(s))
            }
        };
        Ok(Client {
            framed: Framed::new(sock, FrameCodec::client()),
            version,
            consistency: consistency::ONE,
            next_stream: 0,
        })
    }

    /// Connects and completes STARTUP (and SASL PLAIN when credentials are given).
    pub async fn connect(
        addr: SocketAddr,
        version: u8,
        compression: Option<Compression>,
        credentials: Option<(&str, &str)>,
    ) -> Result<Client, ClientError> {
        Client::connect_tls(addr, version, compression, credentials, None).await
    }

    /// `connect`, over TLS when `tls` is given.
    pub async fn connect_tls(
        addr: SocketAddr,
        version: u8,
        compression: Option<Compression>,
        credentials: Option<(&str, &str)>,
        tls: Option<&TlsTo>,
    ) -> Result<Client, ClientError> {
        let mut c = Client::connect_raw_tls(addr, version, tls).await?;
        let mut options = vec![("CQL_VERSION", "3.0.0"), ("DRIVER_NAME", "cutover-client")];
        if let Some(z) = compression {
            options.push(("COMPRESSION", z.name()));
        }
        let stream = c.stream();
        c.framed
            .send(Frame::request(
                version,
                stream,
                Opcode::Startup,
                build_startup(&options),
            ))
            .await?;
        if version < 5 {
            // STARTUP went out plain; its answer is already compressed.
            c.framed.codec_mut().set_compression(compression);
        }
        let answer = c.recv_stream(stream).await?;
        // v3/v4 compress from the answer to STARTUP on; v5 wraps in segments after it.
        if version >= 5 {
            c.framed.codec_mut().set_compression(compression);
            c.framed.codec_mut().enable_segments();
        }
        match answer.op() {
            Some(Opcode::Ready) => Ok(c),
            Some(Opcode::Authenticate) => {
                let (user, pass) = credentials.ok_or_else(|| {
                    ClientError::Unexpected("server requires authentication".into())
                })?;
                let r = c
                    .request(
                        Opcode::AuthResponse,
                        crate::protocol::request::sasl_plain(user, pass),
                    )
                    .await?;
                match r.op() {
                    Some(Opcode::AuthSuccess) => Ok(c),
                    _ => Err(error_of(&r)),
                }
            }
            _ => Err(error_of(&answer)),
        }
    }

    pub fn codec_mut(&mut self) -> &mut FrameCodec {
        self.framed.codec_mut()
    }

    pub fn socket_mut(&mut self) -> &mut ClientStream {
        self.framed.get_mut()
    }

    /// The socket, for a caller that takes over after the handshake (the
    /// load generator of the benchmarks). Only valid with nothing pending.
    pub fn into_socket(self) -> ClientStream {
        self.framed.into_inner()
    }

    pub fn stream(&mut self) -> i16 {
        let s = self.next_stream;
        self.next_stream = (self.next_stream + 1) & 0x7fff;
        s
    }

    pub async fn send(&mut self, f: Frame) -> Result<(), ClientError> {
        Ok(self.framed.send(f).await?)
    }

    /// Queues a frame without flushing (pipelining).
    pub async fn feed(&mut self, f: Frame) -> Result<(), ClientError> {
        Ok(self.framed.feed(f).await?)
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        Ok(SinkExt::<Frame>::flush(&mut self.framed).await?)
    }

    /// The next frame from the server, events included.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        match self.framed.next().await {
            Some(r) => Ok(r?),
            None => Err(ClientError::Closed),
        }
    }

    /// The next frame on `stream`, skipping events.
    pub async fn recv_stream(&mut self, stream: i16) -> Result<Frame, ClientError> {
        loop {
            let f = self.recv().await?;
            if f.stream == stream {
                return Ok(f);
            }
        }
    }

    pub async fn request(&mut self, op: Opcode, body: Bytes) -> Result<Frame, ClientError> {
        let stream = self.stream();
        self.send(Frame::request(self.version, stream, op, body))
            .await?;
        self.recv_stream(stream).await
    }

    pub async fn query(&mut self, text: &str) -> Result<ResultBody, ClientError> {
        self.query_with(
            text,
            QueryParams {
                consistency: self.consistency,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn query_with(
        &mut self,
        text: &str,
        params: QueryParams,
    ) -> Result<ResultBody, ClientError> {
        let body = Query {
            text: text.into(),
            params,
        }
        .encode(self.version);
        let r = self.request(Opcode::Query, body).await?;
        self.result(r)
    }

    pub async fn prepare(&mut self, text: &str) -> Result<Prepared, ClientError> {
        let body = Prepare {
            text: text.into(),
            keyspace: None,
        }
        .encode(self.version);
        let r = self.request(Opcode::Prepare, body).await?;
        match self.result(r)? {
            ResultBody::Prepared(p) => Ok(p),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn execute(
        &mut self,
        p: &Prepared,
        values: Vec<RawValue>,
    ) -> Result<ResultBody, ClientError> {
        let body = self.execute_body(p, values);
        let r = self.request(Opcode::Execute, body).await?;
        self.result(r)
    }

    pub fn execute_body(&self, p: &Prepared, values: Vec<RawValue>) -> Bytes {
        Execute {
            id: p.id.clone(),
            result_metadata_id: p.result_metadata_id.clone(),
            params: QueryParams {
                consistency: self.consistency,
                values,
                ..Default::default()
            },
        }
        .encode(self.version)
    }

    pub fn result(&self, f: Frame) -> Result<ResultBody, ClientError> {
        match f.op() {
            Some(Opcode::Result) => Ok(ResultBody::read(&f.body, self.version)?),
            _ => Err(error_of(&f)),
        }
    }
}

fn error_of(f: &Frame) -> ClientError {
    match f.op() {
        Some(Opcode::Error) => match ErrorFrame::decode(&f.body) {
            Ok(e) => ClientError::Server(e),
            Err(e) => ClientError::Body(e),
        },
        other => ClientError::Unexpected(format!("{:?}", other)),
    }
}
