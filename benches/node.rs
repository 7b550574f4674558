//! The embedded node's throughput as a real driver sees it: prepared INSERT
//! and prepared SELECT by key from the Rust `scylla` driver at 64 requests in
//! flight, against the same load sent by cutover's own minimal client (one
//! connection, 64 pipelined requests) as the baseline.
//!
//!     cargo bench --bench node            (about 25 s)
//!     cargo bench --bench node -- --quick (about 8 s)
//!
//! The node runs on its own single-threaded runtime and the load on another,
//! so on a 2-core machine each gets one core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::client::Client;
use cutover::frame::{Frame, Opcode};
use cutover::node::{self, NodeConfig};
use cutover::protocol::reader::RawValue;
use futures::stream::{FuturesUnordered, StreamExt};
use scylla::client::session_builder::SessionBuilder;

const IN_FLIGHT: usize = 64;

struct Report {
    ops: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&mut self, p: f64) -> u64 {
        self.latencies_us.sort_unstable();
        let i = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[i]
    }
}

fn value(i: u64) -> (String, i32, String) {
    (
        format!("k{}", i % 100_000),
        (i % 1000) as i32,
        format!("{:0>100}", i),
    )
}

async fn scylla_load(addr: std::net::SocketAddr, select: bool, time: Duration) -> Report {
    let s = Arc::new(
        SessionBuilder::new()
            .known_node_addr(addr)
            .build()
            .await
            .unwrap(),
    );
    let q = if select {
        "SELECT v FROM bench.t WHERE k = ? AND c = ?"
    } else {
        "INSERT INTO bench.t (k, c, v) VALUES (?, ?, ?)"
    };
    let p = s.prepare(q).await.unwrap();
    let mut lat = Vec::new();
    let mut pending = FuturesUnordered::new();
    let start = Instant::now();
    let mut i = 0u64;
    let mut done = 0u64;
    loop {
        while pending.len() < IN_FLIGHT && start.elapsed() < time {
            let (k, c, v) = value(i);
            i += 1;
            let s = s.clone();
            let p = p.clone();
            pending.push(async move {
                let t = Instant::now();
                if select {
                    s.execute_unpaged(&p, (k, c)).await.unwrap();
                } else {
                    s.execute_unpaged(&p, (k, c, v)).await.unwrap();
                }
                t.elapsed()
            });
        }
        match pending.next().await {
            Some(d) => {
                lat.push(d.as_micros() as u64);
                done += 1;
            }
            None => break,
        }
    }
    Report {
        ops: done,
        elapsed: start.elapsed(),
        latencies_us: lat,
    }
}

async fn own_client_load(addr: std::net::SocketAddr, select: bool, time: Duration) -> Report {
    let mut c = Client::connect(addr, 4, None, None).await.unwrap();
    let q = if select {
        "SELECT v FROM bench.t WHERE k = ? AND c = ?"
    } else {
        "INSERT INTO bench.t (k, c, v) VALUES (?, ?, ?)"
    };
    let p = c.prepare(q).await.unwrap();
    let mut sent_at = vec![Instant::now(); 32768];
    let mut lat = Vec::new();
    let start = Instant::now();
    let (mut i, mut in_flight, mut done) = (0u64, 0usize, 0u64);
    loop {
        while in_flight < IN_FLIGHT && start.elapsed() < time {
            let (k, cc, v) = value(i);
            i += 1;
            let mut values = vec![
                RawValue::Bytes(Bytes::from(k)),
                RawValue::Bytes(Bytes::copy_from_slice(&cc.to_be_bytes())),
            ];
            if !select {
                values.push(RawValue::Bytes(Bytes::from(v)));
            }
            let stream = c.stream();
            sent_at[stream as usize] = Instant::now();
            let body = c.execute_body(&p, values);
            c.feed(Frame::request(4, stream, Opcode::Execute, body))
                .await
                .unwrap();
            in_flight += 1;
        }
        c.flush().await.unwrap();
        if in_flight == 0 {
            break;
        }
        let f = c.recv().await.unwrap();
        assert_eq!(f.op(), Some(Opcode::Result), "{:?}", f);
        lat.push(sent_at[f.stream as usize].elapsed().as_micros() as u64);
        in_flight -= 1;
        done += 1;
    }
    Report {
        ops: done,
        elapsed: start.elapsed(),
        latencies_us: lat,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let time = Duration::from_secs(if quick { 1 } else { 4 });

    // The node on its own runtime and thread.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let n = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
            tx.send(n.addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let addr = rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut c = Client::connect(addr, 4, None, None).await.unwrap();
        c.query("CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
        c.query("CREATE TABLE bench.t (k text, c int, v text, PRIMARY KEY (k, c))").await.unwrap();
        println!("embedded node, prepared statements, {IN_FLIGHT} in flight, {}s per scenario\n", time.as_secs());
        println!("{:<10} {:<26} {:>10} {:>9} {:>9} {:>9}", "statement", "client", "ops/s", "p50 µs", "p99 µs", "max µs");
        for select in [false, true] {
            let name = if select { "SELECT" } else { "INSERT" };
            let mut own = own_client_load(addr, select, time).await;
            let mut drv = scylla_load(addr, select, time).await;
            for (label, r) in [("cutover client (baseline)", &mut own), ("scylla 1.9 driver", &mut drv)] {
                let (p50, p99, max) = (r.pct(50.0), r.pct(99.0), r.pct(100.0));
                println!("{:<10} {:<26} {:>10.0} {:>9} {:>9} {:>9}", name, label, r.ops_per_sec(), p50, p99, max);
            }
            println!("{:<10} {:<26} {:>10.2}", name, "driver ÷ baseline", drv.ops_per_sec() / own.ops_per_sec());
        }
    });
}
