//! The journal and `async-secondary`, measured (`cargo bench --bench
//! journal [-- --quick]`):
//!
//! 1. Journal appends per second and MB/s under each durability, 64
//!    appenders waiting for each append to be durable, beside a plain
//!    sequential write of the same bytes to the same disk in the same run
//!    (64 KiB writes, one fdatasync at the end).
//! 2. The proxy in `dual-write`, `sync` against `async-secondary`: prepared
//!    INSERTs, 64 in flight, with a healthy target and with a target slowed
//!    by 5 ms per request: ops/s, the proxy's CPU per request, p50 and p99.
//!
//! Numbers are printed, never asserted.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::journal::{Durability, Journal, Options, Record};
use support::load::{self, Mode, Workload};
use support::Process;

const APPENDERS: usize = 64;

fn record(i: u64) -> Record {
    Record {
        written_at_ms: 1_796_000_000_000 + i,
        write_time: 1_796_000_000_000_000 + i as i64,
        cluster: "target".into(),
        tenant: None,
        table: "bench.kv".into(),
        keyspace: Some("bench".into()),
        version: 4,
        opcode: 0x0A,
        prepared: vec![cutover::journal::Statement {
            text: "INSERT INTO bench.kv (k, v) VALUES (?, ?)".into(),
            keyspace: Some("bench".into()),
        }],
        body: Bytes::from(vec![0xab; 140]),
    }
}

struct Appends {
    appends: u64,
    bytes: u64,
    seconds: f64,
    p99_us: u64,
}

fn bench_dir(name: &str) -> std::path::PathBuf {
    // Under target/, on the project's disk (/tmp may be memory).
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("journal-bench-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn appends(durability: Durability, window: Duration) -> Appends {
    let dir = bench_dir("appends");
    let (j, _) = Journal::open(Options {
        dir: dir.clone(),
        max_bytes: 16 * 1024 * 1024 * 1024,
        segment_bytes: 64 * 1024 * 1024,
        durability,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(parking_lot::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let (j, count, hist) = (j.clone(), count.clone(), hist.clone());
                tokio::spawn(async move {
                    let mut i = t as u64;
                    while started.elapsed() < window {
                        let at = Instant::now();
                        let a = j.append(&record(i)).unwrap();
                        let seq = a.durable().await.unwrap();
                        j.done(seq);
                        let _ = hist.lock().record(at.elapsed().as_micros() as u64);
                        count.fetch_add(1, Ordering::Relaxed);
                        i += APPENDERS as u64;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let appends = count.load(Ordering::Relaxed);
    let mut one = Vec::new();
    record(0).encode(&mut one);
    let entry = one.len() as u64 + 16;
    j.close();
    drop(j);
    let _ = std::fs::remove_dir_all(&dir);
    let p99_us = hist.lock().value_at_quantile(0.99);
    Appends {
        appends,
        bytes: appends * entry,
        seconds,
        p99_us,
    }
}

/// MB/s of writing `bytes` sequentially in 64 KiB writes, then one
/// fdatasync.
fn sequential(bytes: u64) -> f64 {
    let dir = bench_dir("sequential");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plain");
    let started = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xab; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_data().unwrap();
    let s = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    bytes as f64 / s / 1e6
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 2"), "{method} {path}: {out}");
}

struct Row {
    name: String,
    ops: f64,
    errors: u64,
    cpu_us: f64,
    p50: u64,
    p99: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (window, warmup) = if quick {
        (Duration::from_secs(2), Duration::from_millis(500))
    } else {
        (Duration::from_secs(8), Duration::from_secs(2))
    };
    println!(
        "journal benchmark{}: {APPENDERS} appenders, {:?} per durability; proxy: 2 connections x 32 in flight, {:?} after {:?} warm-up",
        if quick { " (--quick)" } else { "" },
        window,
        window,
        warmup
    );

    println!("\njournal appends (each waits until durable), beside a plain sequential write of the same bytes");
    println!(
        "  {:<24} {:>12} {:>9} {:>12} {:>16}",
        "durability", "appends/s", "MB/s", "p99 µs", "÷ plain write"
    );
    for (name, d) in [
        ("page-cache", Durability::PageCache),
        (
            "group-commit 2ms",
            Durability::GroupCommit(Duration::from_millis(2)),
        ),
        ("fsync", Durability::Fsync),
    ] {
        let a = appends(d, window);
        let plain = sequential(a.bytes.max(1));
        let mbs = a.bytes as f64 / a.seconds / 1e6;
        println!(
            "  {:<24} {:>12.0} {:>9.1} {:>12} {:>9.1} MB/s {:.2}",
            name,
            a.appends as f64 / a.seconds,
            mbs,
            a.p99_us,
            plain,
            mbs / plain
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let origin = Process::node();
    let (target, control) = Process::node_with_control();
    rt.block_on(async {
        load::create_schema(origin.addr).await;
        load::create_schema(target.addr).await;
    });
    let journal = bench_dir("proxy");
    let sync = Process::proxy(origin.addr, target.addr, "dual-write");
    let asynchronous = Process::proxy_with(
        origin.addr,
        target.addr,
        "dual-write",
        "write_mode = \"async-secondary\"",
        &format!(
            "[journal]\ndir = \"{}\"\ndurability = \"fsync\"\n",
            journal.display()
        ),
    );
    let page_cache = Process::proxy_with(
        origin.addr,
        target.addr,
        "dual-write",
        "write_mode = \"async-secondary\"",
        &format!(
            "[journal]\ndir = \"{}-pc\"\ndurability = \"page-cache\"\n",
            journal.display()
        ),
    );
    println!(
        "proxy pids: sync {}, async-secondary fsync {}, page-cache {}",
        sync.pid(),
        asynchronous.pid(),
        page_cache.pid()
    );
    let mut rows = Vec::new();
    for slow in [false, true] {
        if slow {
            http(control, "POST", "/faults/latency", "{\"ms\": 5}");
        }
        for (mode, p) in [
            ("sync", &sync),
            ("async-secondary fsync", &asynchronous),
            ("async-secondary page-cache", &page_cache),
        ] {
            let (m, (before, after)) = rt.block_on(load::run(
                p.addr,
                None,
                Workload::Insert,
                Mode::Closed { depth: 32 },
                2,
                warmup,
                window,
                |from: Instant, to: Instant| async move {
                    tokio::time::sleep_until(from.into()).await;
                    let before = p.cpu_seconds();
                    tokio::time::sleep_until(to.into()).await;
                    (before, p.cpu_seconds())
                },
            ));
            if let Some(e) = &m.first_error {
                println!("  ({mode}: {} errors, the first: {e})", m.errors);
            }
            rows.push(Row {
                name: format!("{mode}, target {}", if slow { "+5 ms" } else { "healthy" }),
                ops: m.ops_per_sec(),
                errors: m.errors,
                cpu_us: (after - before) * 1e6 / m.ops.max(1) as f64,
                p50: m.latency.value_at_quantile(0.5),
                p99: m.latency.value_at_quantile(0.99),
            });
        }
    }
    http(control, "DELETE", "/faults", "");
    println!("\ndual-write, prepared INSERT, 64 in flight");
    println!(
        "  {:<42} {:>10} {:>7} {:>14} {:>8} {:>8}",
        "write mode, target", "ops/s", "errors", "proxy CPU µs", "p50 µs", "p99 µs"
    );
    for r in &rows {
        println!(
            "  {:<42} {:>10.0} {:>7} {:>14.2} {:>8} {:>8}",
            r.name, r.ops, r.errors, r.cpu_us, r.p50, r.p99
        );
    }
    drop(asynchronous);
    drop(page_cache);
    let _ = std::fs::remove_dir_all(&journal);
    let _ = std::fs::remove_dir_all(journal.with_file_name("journal-bench-proxy-pc"));
}
