//! The byte streams CQL travels over: a client's connection and a
//! cluster's. The session, the upstream connection and the control
//! connection are written against this trait, not against `TcpStream`, so
//! that a TLS stream can take a TCP one's place without touching the
//! pipeline.

use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream that can be split into a half to read and
/// a half to write, each driven by its own task.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    type Read: AsyncRead + Send + Unpin + 'static;
    type Write: AsyncWrite + Send + Unpin + 'static;
    fn split(self) -> (Self::Read, Self::Write);
}

/// TCP splits without a lock.
impl Stream for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

/// Any other stream splits through `tokio::io::split` (a lock shared by
/// the halves): in-memory pipes in tests, TLS streams.
macro_rules! split_generically {
    ($($t:ty),*) => {$(
        impl Stream for $t {
            type Read = tokio::io::ReadHalf<$t>;
            type Write = tokio::io::WriteHalf<$t>;
            fn split(self) -> (Self::Read, Self::Write) {
                tokio::io::split(self)
            }
        }
    )*};
}

split_generically!(
    tokio::io::DuplexStream,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;

    use crate::frame::{CodecConfig, Frame, FrameCodec, Opcode};
    use crate::upstream::{ConnectOptions, UpstreamConn};

    /// The upstream connection over an in-memory pipe, the test playing the
    /// node: nothing in it depends on TCP.
    #[tokio::test]
    async fn an_upstream_connection_runs_over_any_stream() {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let node = tokio::spawn(async move {
            let mut f = Framed::new(theirs, FrameCodec::new(CodecConfig::default()));
            let startup = f.next().await.unwrap().unwrap();
            assert_eq!(startup.op(), Some(Opcode::Startup));
            f.send(Frame::response(
                4,
                startup.stream,
                Opcode::Ready,
                Bytes::new(),
            ))
            .await
            .unwrap();
            let q = f.next().await.unwrap().unwrap();
            assert_eq!(q.op(), Some(Opcode::Query));
            // RESULT Void on the stream the connection chose.
            let void = Bytes::from_static(&[0, 0, 0, 1]);
            f.send(Frame::response(4, q.stream, Opcode::Result, void))
                .await
                .unwrap();
        });
        let opts = ConnectOptions {
            version: 4,
            compression: None,
            startup: Vec::new(),
            credentials: None,
            keyspace: None,
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 8,
            heartbeat_interval: None,
            frame_timeout: Duration::from_secs(5),
            tls: None,
        };
        let addr = "127.0.0.1:9042".parse().unwrap();
        let conn = UpstreamConn::over(ours, addr, &opts).await.unwrap();
        let q = crate::protocol::request::Query {
            text: "INSERT INTO ks.t (k) VALUES (1)".into(),
            params: Default::default(),
        };
        let request = Frame::request(4, 7, Opcode::Query, q.encode(4));
        let answer = conn
            .forward(&request, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.op(), Some(Opcode::Result));
        assert_eq!(&answer.body[..], &[0, 0, 0, 1]);
        node.await.unwrap();
    }
}
