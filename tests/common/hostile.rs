//! A fake cluster node that does the handshake like a real one (OPTIONS,
//! STARTUP, REGISTER) and then answers every request with something
//! hostile: counts the body cannot hold, types nested thousands deep,
//! garbage, half a frame, or nothing at all.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use cutover::frame::{CodecConfig, Frame, FrameCodec, Opcode};
use cutover::protocol::response::{result_kind, rows_flags};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// ROWS of no columns and 2^31 - 1 rows: 16 bytes.
    HugeRowCount,
    /// ROWS of no columns and 50,000,000 rows.
    ManyEmptyRows,
    /// ROWS whose one column is a list nested 3,000 deep.
    DeepType,
    /// PREPARED whose bind marker's type is nested 3,000 deep.
    DeepPrepared,
    /// Bytes that are no frame at all.
    Garbage,
    /// A frame header announcing 1,000 bytes, 10 of them, then nothing.
    HalfFrame,
    /// No answer.
    Silence,
}

pub struct HostileNode {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Hostile>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

fn put_string(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len() as u16);
    b.put_slice(s.as_bytes());
}

fn deep_type(b: &mut BytesMut) {
    for _ in 0..3_000 {
        b.put_u16(0x0020);
    }
    b.put_u16(0x0009);
}

fn rows_of_no_columns(rows: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(result_kind::ROWS);
    b.put_i32(0);
    b.put_i32(0);
    b.put_i32(rows);
    b.freeze()
}

fn deep_rows() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(result_kind::ROWS);
    b.put_i32(rows_flags::GLOBAL_TABLES_SPEC);
    b.put_i32(1);
    put_string(&mut b, "system");
    put_string(&mut b, "local");
    put_string(&mut b, "rpc_address");
    deep_type(&mut b);
    b.put_i32(0);
    b.freeze()
}

fn deep_prepared() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(result_kind::PREPARED);
    b.put_u16(16);
    b.put_slice(&[7; 16]);
    b.put_i32(rows_flags::GLOBAL_TABLES_SPEC);
    b.put_i32(1);
    b.put_i32(0); // partition-key indexes (v4)
    put_string(&mut b, "ks");
    put_string(&mut b, "t");
    put_string(&mut b, "k");
    deep_type(&mut b);
    b.put_i32(rows_flags::NO_METADATA);
    b.put_i32(0);
    b.freeze()
}

impl HostileNode {
    /// Listens on `addr` (port 0: any free one).
    pub async fn start(addr: SocketAddr, mode: Hostile) -> HostileNode {
        let listener = TcpListener::bind(addr).await.unwrap();
        let node = HostileNode {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let (mode, stop, tasks) = (node.mode.clone(), node.stop.clone(), node.tasks.clone());
        node.tasks.spawn(async move {
            loop {
                let sock = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                tasks.spawn(serve(sock, mode.clone(), stop.clone()));
            }
        });
        node
    }

    pub fn set(&self, mode: Hostile) {
        *self.mode.lock() = mode;
    }

    /// Closes the listener and every connection; the port is free again.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn serve(sock: TcpStream, mode: Arc<Mutex<Hostile>>, stop: CancellationToken) {
    let mut framed = Framed::new(
        sock,
        FrameCodec::new(CodecConfig {
            max_frame: 16 << 20,
            max_frame_pre_auth: 16 << 20,
        }),
    );
    loop {
        let f = tokio::select! {
            _ = stop.cancelled() => return,
            f = framed.next() => match f { Some(Ok(f)) => f, _ => return },
        };
        let v = f.protocol_version();
        let answer = |op, body| Frame::response(v, f.stream, op, body);
        let reply = match f.op() {
            Some(Opcode::Options) => {
                let mut b = BytesMut::new();
                b.put_u16(2);
                put_string(&mut b, "PROTOCOL_VERSIONS");
                b.put_u16(2);
                put_string(&mut b, "3/v3");
                put_string(&mut b, "4/v4");
                put_string(&mut b, "CQL_VERSION");
                b.put_u16(1);
                put_string(&mut b, "3.4.5");
                answer(Opcode::Supported, b.freeze())
            }
            Some(Opcode::Startup) if v == 5 => {
                let mut b = BytesMut::new();
                b.put_i32(0x000A);
                put_string(&mut b, "Invalid or unsupported protocol version (5); supported versions are (3/v3, 4/v4)");
                answer(Opcode::Error, b.freeze())
            }
            Some(Opcode::Startup) | Some(Opcode::Register) => answer(Opcode::Ready, Bytes::new()),
            _ => {
                let m = *mode.lock();
                match m {
                    Hostile::HugeRowCount => answer(Opcode::Result, rows_of_no_columns(i32::MAX)),
                    Hostile::ManyEmptyRows => {
                        answer(Opcode::Result, rows_of_no_columns(50_000_000))
                    }
                    Hostile::DeepType => answer(Opcode::Result, deep_rows()),
                    Hostile::DeepPrepared if f.op() == Some(Opcode::Prepare) => {
                        answer(Opcode::Result, deep_prepared())
                    }
                    Hostile::DeepPrepared => answer(Opcode::Result, deep_rows()),
                    Hostile::Garbage => {
                        let _ = framed
                            .get_mut()
                            .write_all(b"\x42\x00\xff\xffgarbage that is no frame")
                            .await;
                        continue;
                    }
                    Hostile::HalfFrame => {
                        let mut b = BytesMut::new();
                        b.put_u8(0x80 | v);
                        b.put_u8(0);
                        b.put_i16(f.stream);
                        b.put_u8(Opcode::Result as u8);
                        b.put_u32(1000);
                        b.put_slice(&[0; 10]);
                        let _ = framed.get_mut().write_all(&b).await;
                        continue;
                    }
                    Hostile::Silence => continue,
                }
            }
        };
        if framed.send(reply).await.is_err() {
            return;
        }
    }
}
