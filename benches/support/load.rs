//! The load generator of the overhead benchmark, built on cutover's own
//! codec so it is identical for every scenario: prepared EXECUTEs over a
//! few connections, either closed loop (a fixed number in flight) or open
//! loop (a fixed rate; each latency measured from the request's *intended*
//! send time, so a stall is charged to every request it delayed — the
//! coordinated-omission correction).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::client::Client;
use cutover::frame::{Frame, FrameCodec, Opcode};
use cutover::protocol::reader::RawValue;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Keys the workloads cycle through.
pub const KEYS: usize = 10_000;
/// Value bytes of an INSERT: with the key and column overhead, a ~100-byte row.
const VALUE_BYTES: usize = 92;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Insert,
    Select,
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// This many requests in flight per connection.
    Closed { depth: usize },
    /// This many requests per second over all connections.
    Open { rate: f64 },
}

/// Creates the benchmark table on a node (directly, not through a proxy).
pub async fn create_schema(node: SocketAddr) {
    let mut c = Client::connect(node, 4, None, None).await.unwrap();
    c.query("CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
    c.query("CREATE TABLE IF NOT EXISTS bench.kv (k int PRIMARY KEY, v blob)")
        .await
        .unwrap();
}

/// One connection, handshake and PREPARE done, with every request body
/// encoded ahead so the generator spends little CPU per request.
struct Conn {
    socket: cutover::client::ClientStream,
    bodies: Vec<Bytes>,
}

async fn open(addr: SocketAddr, workload: Workload, tls: Option<&cutover::client::TlsTo>) -> Conn {
    let mut c = Client::connect_tls(addr, 4, None, None, tls).await.unwrap();
    let text = match workload {
        Workload::Insert => "INSERT INTO bench.kv (k, v) VALUES (?, ?)",
        Workload::Select => "SELECT v FROM bench.kv WHERE k = ?",
    };
    let p = c.prepare(text).await.unwrap();
    let value = Bytes::from(vec![0xab; VALUE_BYTES]);
    let bodies = (0..KEYS as i32)
        .map(|k| {
            let key = RawValue::Bytes(Bytes::copy_from_slice(&k.to_be_bytes()));
            let values = match workload {
                Workload::Insert => vec![key, RawValue::Bytes(value.clone())],
                Workload::Select => vec![key],
            };
            c.execute_body(&p, values)
        })
        .collect();
    Conn {
        socket: c.into_socket(),
        bodies,
    }
}

/// What one run measured, over the measured window only.
pub struct Measured {
    pub ops: u64,
    pub errors: u64,
    /// The first error answer, for the report.
    pub first_error: Option<String>,
    pub seconds: f64,
    /// µs; closed loop: send to answer; open loop: intended send to answer.
    pub latency: Histogram<u64>,
}

impl Measured {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// Runs `workload` against `addr` (over TLS when `tls` is given) over
/// `conns` connections: `warmup`, then
/// the measured `window`, during which `during` is awaited (to sample CPU).
#[allow(clippy::too_many_arguments)]
pub async fn run<F, Fut>(
    addr: SocketAddr,
    tls: Option<&cutover::client::TlsTo>,
    workload: Workload,
    mode: Mode,
    conns: usize,
    warmup: Duration,
    window: Duration,
    during: F,
) -> (Measured, Fut::Output)
where
    F: FnOnce(Instant, Instant) -> Fut,
    Fut: std::future::Future,
{
    let mut opened = Vec::new();
    for _ in 0..conns {
        opened.push(open(addr, workload, tls).await);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let per_conn = match mode {
        Mode::Closed { depth } => Mode::Closed { depth },
        Mode::Open { rate } => Mode::Open {
            rate: rate / conns as f64,
        },
    };
    let runs: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(drive(c, per_conn, i, start, measure_from, end)))
        .collect();
    let sampled = during(measure_from, end).await;
    let mut total = Measured {
        ops: 0,
        errors: 0,
        first_error: None,
        seconds: window.as_secs_f64(),
        latency: new_histogram(),
    };
    for r in runs {
        let m = r.await.unwrap();
        total.ops += m.ops;
        total.errors += m.errors;
        total.first_error = total.first_error.or(m.first_error);
        total.latency.add(&m.latency).unwrap();
    }
    (total, sampled)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

struct Shared {
    /// Send (or intended send) time by stream id.
    started: Mutex<Vec<Option<Instant>>>,
    free: Mutex<Vec<i16>>,
    in_flight: AtomicU64,
    done_sending: AtomicBool,
    done: tokio::sync::Notify,
    /// A stream id came back.
    freed: tokio::sync::Notify,
}

const STREAMS: usize = 32_768;
/// How often the open loop checks for requests due.
const PACE: Duration = Duration::from_micros(100);

async fn drive(
    conn: Conn,
    mode: Mode,
    offset: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Measured {
    let (r, w) = conn.socket.into_split();
    let mut reader = FramedRead::new(r, FrameCodec::client());
    let mut writer = FramedWrite::new(w, FrameCodec::client());
    let shared = Arc::new(Shared {
        started: Mutex::new(vec![None; STREAMS]),
        free: Mutex::new((0..STREAMS).rev().map(|i| i as i16).collect()),
        in_flight: AtomicU64::new(0),
        done_sending: AtomicBool::new(false),
        done: tokio::sync::Notify::new(),
        freed: tokio::sync::Notify::new(),
    });
    let permits = Arc::new(Semaphore::new(match mode {
        Mode::Closed { depth } => depth,
        Mode::Open { .. } => STREAMS,
    }));
    let bodies = conn.bodies;
    let sender = {
        let shared = shared.clone();
        let permits = permits.clone();
        async move {
            let mut next_key = offset * 7919;
            let mut sent: u64 = 0;
            let mut send_one = |at: Instant| {
                let id = shared.free.lock().pop().expect("a free stream id");
                shared.started.lock()[id as usize] = Some(at);
                shared.in_flight.fetch_add(1, Ordering::Relaxed);
                next_key = (next_key + 1) % KEYS;
                sent += 1;
                Frame::request(4, id, Opcode::Execute, bodies[next_key].clone())
            };
            match mode {
                Mode::Closed { .. } => {
                    while Instant::now() < end {
                        let p = permits.acquire().await.unwrap();
                        p.forget();
                        let mut ok = writer.feed(send_one(Instant::now())).await.is_ok();
                        while ok {
                            match permits.try_acquire() {
                                Ok(p) => {
                                    p.forget();
                                    ok = writer.feed(send_one(Instant::now())).await.is_ok();
                                }
                                Err(_) => break,
                            }
                        }
                        if !ok || writer.flush().await.is_err() {
                            break;
                        }
                    }
                }
                Mode::Open { rate } => {
                    // tokio's timer ticks in milliseconds, which would send
                    // in bursts; a thread with a finer sleep paces instead.
                    let tick = Arc::new(tokio::sync::Notify::new());
                    let pacer = {
                        let tick = tick.clone();
                        std::thread::spawn(move || {
                            while Instant::now() < end {
                                std::thread::sleep(PACE);
                                tick.notify_one();
                            }
                            tick.notify_one();
                        })
                    };
                    let interval = Duration::from_secs_f64(1.0 / rate);
                    let mut intended = start;
                    while intended < end {
                        let now = Instant::now();
                        let mut ok = true;
                        while intended <= now && ok {
                            // Every stream id taken (the hop is far behind):
                            // wait for one; the delay counts against the
                            // request, timed from when it was due.
                            while shared.free.lock().is_empty() {
                                let _ = writer.flush().await;
                                shared.freed.notified().await;
                            }
                            ok = writer.feed(send_one(intended)).await.is_ok();
                            intended += interval;
                        }
                        if !ok || writer.flush().await.is_err() {
                            break;
                        }
                        // Before `end` the pacer still ticks at least once
                        // more; after it (a flush that blocked past the end
                        // leaves the sender behind) no tick may come, and
                        // the requests still due are sent at once.
                        if Instant::now() < end {
                            tick.notified().await;
                        }
                    }
                    let _ = pacer.join();
                }
            }
            shared.done_sending.store(true, Ordering::SeqCst);
            shared.done.notify_one();
            writer
        }
    };
    let receiver = {
        let shared = shared.clone();
        async move {
            let mut m = Measured {
                ops: 0,
                errors: 0,
                first_error: None,
                seconds: (end - measure_from).as_secs_f64(),
                latency: new_histogram(),
            };
            loop {
                if shared.done_sending.load(Ordering::SeqCst)
                    && shared.in_flight.load(Ordering::Relaxed) == 0
                {
                    break;
                }
                let next = tokio::select! {
                    _ = shared.done.notified() => continue,
                    f = tokio::time::timeout(Duration::from_secs(10), reader.next()) => f,
                };
                let f = match next {
                    Ok(Some(Ok(f))) => f,
                    _ => break,
                };
                let now = Instant::now();
                let Some(at) = shared.started.lock()[f.stream as usize].take() else {
                    continue;
                };
                shared.free.lock().push(f.stream);
                shared.freed.notify_one();
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                permits.add_permits(1);
                if now >= measure_from && now < end {
                    m.ops += 1;
                    if f.op() != Some(Opcode::Result) {
                        m.errors += 1;
                        if m.first_error.is_none() {
                            m.first_error =
                                Some(match cutover::protocol::ErrorFrame::decode(&f.body) {
                                    Ok(e) => format!("{}: {}", e.code.name(), e.message),
                                    Err(_) => format!("{:?}", f.op()),
                                });
                        }
                    }
                    let us = now.saturating_duration_since(at).as_micros() as u64;
                    m.latency.saturating_record(us.max(1));
                }
            }
            m
        }
    };
    let (_writer, m) = tokio::join!(sender, receiver);
    m
}

/// Inserts keys `0..rows` into `bench.kv` (the same ~100-byte rows as the
/// INSERT workload) as fast as `conns` connections with `depth` requests in
/// flight each allow; every request body is encoded before the clock
/// starts. Returns the seconds it took.
pub async fn insert_rows(addr: SocketAddr, rows: usize, conns: usize, depth: usize) -> f64 {
    let value = Bytes::from(vec![0xab; VALUE_BYTES]);
    let mut prepared = Vec::new();
    for i in 0..conns {
        let mut c = Client::connect(addr, 4, None, None).await.unwrap();
        let p = c
            .prepare("INSERT INTO bench.kv (k, v) VALUES (?, ?)")
            .await
            .unwrap();
        let bodies: Vec<Bytes> = (i..rows)
            .step_by(conns)
            .map(|k| {
                let key = RawValue::Bytes(Bytes::copy_from_slice(&(k as i32).to_be_bytes()));
                c.execute_body(&p, vec![key, RawValue::Bytes(value.clone())])
            })
            .collect();
        prepared.push((c, bodies));
    }
    let started = Instant::now();
    let runs: Vec<_> = prepared
        .into_iter()
        .map(|(mut c, bodies)| {
            tokio::spawn(async move {
                let mut next = 0;
                let mut in_flight = 0;
                while next < bodies.len() || in_flight > 0 {
                    while in_flight < depth && next < bodies.len() {
                        let stream = (next % 32_768) as i16;
                        c.feed(Frame::request(
                            4,
                            stream,
                            Opcode::Execute,
                            bodies[next].clone(),
                        ))
                        .await
                        .unwrap();
                        next += 1;
                        in_flight += 1;
                    }
                    c.flush().await.unwrap();
                    let f = c.recv().await.unwrap();
                    assert_eq!(f.op(), Some(Opcode::Result), "an INSERT failed");
                    in_flight -= 1;
                }
            })
        })
        .collect();
    for r in runs {
        r.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}
