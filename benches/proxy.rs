//! What the proxy costs: the same prepared INSERT and SELECT load from the
//! Rust `scylla` driver (64 in flight) sent directly to a node, through the
//! proxy in `origin-only` (passthrough), and through the proxy in
//! `dual-write`; plus the proxy's CPU time per request and its memory, idle
//! and with 1,000 idle client connections.
//!
//!     cargo bench --bench proxy            (about 40 s)
//!     cargo bench --bench proxy -- --quick (about 12 s)
//!
//! The nodes run in this process on their own runtime; each proxy is the
//! real binary in its own process, so its CPU and memory are its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::client::Client;
use cutover::node::{self, NodeConfig};
use futures::stream::{FuturesUnordered, StreamExt};
use scylla::client::session_builder::SessionBuilder;

mod support;

use support::Process;

const IN_FLIGHT: usize = 64;

struct Report {
    ops: u64,
    elapsed: Duration,
    lat: Vec<u64>,
}

impl Report {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&mut self, p: f64) -> u64 {
        self.lat.sort_unstable();
        self.lat[((p / 100.0) * (self.lat.len() - 1) as f64).round() as usize]
    }
}

async fn load(addr: SocketAddr, select: bool, time: Duration) -> Report {
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
    let (mut i, mut done) = (0u64, 0u64);
    loop {
        while pending.len() < IN_FLIGHT && start.elapsed() < time {
            let (k, c, v) = (
                format!("k{}", i % 10_000),
                (i % 100) as i32,
                format!("{:0>100}", i),
            );
            i += 1;
            let (s, p) = (s.clone(), p.clone());
            pending.push(async move {
                let t = Instant::now();
                if select {
                    s.execute_unpaged(&p, (k, c)).await.unwrap();
                } else {
                    s.execute_unpaged(&p, (k, c, v)).await.unwrap();
                }
                t.elapsed().as_micros() as u64
            });
        }
        match pending.next().await {
            Some(us) => {
                lat.push(us);
                done += 1;
            }
            None => break,
        }
    }
    Report {
        ops: done,
        elapsed: start.elapsed(),
        lat,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let time = Duration::from_secs(if quick { 1 } else { 4 });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let o = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
            let t = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
            tx.send((o.addr, t.addr)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let (origin, target) = rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        for n in [origin, target] {
            let mut c = Client::connect(n, 4, None, None).await.unwrap();
            c.query("CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
            c.query("CREATE TABLE bench.t (k text, c int, v text, PRIMARY KEY (k, c))").await.unwrap();
        }
        let passthrough = Process::proxy(origin, target, "origin-only");
        let dual = Process::proxy(origin, target, "dual-write");
        println!("proxy overhead, scylla 1.9 driver, prepared statements, {IN_FLIGHT} in flight, {}s per scenario\n", time.as_secs());
        println!("{:<8} {:<22} {:>9} {:>8} {:>8} {:>9} {:>10} {:>12}", "op", "path", "ops/s", "p50 µs", "p99 µs", "÷direct", "+p99 µs", "proxy CPU µs");
        for select in [false, true] {
            let op = if select { "SELECT" } else { "INSERT" };
            let mut direct = load(origin, select, time).await;
            let (d_ops, d_p99) = (direct.ops_per_sec(), direct.pct(99.0));
            println!("{:<8} {:<22} {:>9.0} {:>8} {:>8} {:>9.2} {:>10} {:>12}", op, "direct to the node", d_ops, direct.pct(50.0), d_p99, 1.0, 0, "-");
            for (label, proxy) in [("proxy, origin-only", &passthrough), ("proxy, dual-write", &dual)] {
                let cpu0 = proxy.cpu_seconds();
                let mut r = load(proxy.addr, select, time).await;
                let cpu_per_req = (proxy.cpu_seconds() - cpu0) / r.ops as f64 * 1e6;
                let p99 = r.pct(99.0);
                println!(
                    "{:<8} {:<22} {:>9.0} {:>8} {:>8} {:>9.2} {:>10} {:>12.1}",
                    op,
                    label,
                    r.ops_per_sec(),
                    r.pct(50.0),
                    p99,
                    r.ops_per_sec() / d_ops,
                    p99 as i64 - d_p99 as i64,
                    cpu_per_req
                );
            }
        }
        // Memory: idle, then with 1,000 idle client connections (each has
        // done its handshake, so each holds its upstream connections too).
        let rss_idle = dual.rss_kib();
        let mut idle = Vec::with_capacity(1000);
        for _ in 0..1000 {
            idle.push(Client::connect(dual.addr, 4, None, None).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_1000 = dual.rss_kib();
        println!(
            "\nproxy RSS: {:.1} MiB after the load; {:.1} MiB with 1,000 idle client connections ({:.1} KiB each, upstream connections included)",
            rss_idle as f64 / 1024.0,
            rss_1000 as f64 / 1024.0,
            (rss_1000.saturating_sub(rss_idle)) as f64 / 1000.0
        );
        drop(idle);
    });
}
