//! `cutover copy` and `cutover validate` against the load client: the same
//! rows (keys 0..N of `bench.kv`, ~100 bytes each) inserted into an
//! embedded node by the benchmarks' own pipelined client (the fastest
//! writer in the repo), then copied to a second node, then validated; all
//! three in the same run, on the same two node processes.
//!
//!     cargo bench --bench migrate              (200,000 rows)
//!     cargo bench --bench migrate -- --quick   (20,000 rows)
//!
//! Goal: copy ≥ 50 % of the load client's insert rate.

mod support;

use std::time::Instant;

use support::{load, Process};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rows: usize = if quick { 20_000 } else { 200_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = Process::node();
    let target = Process::node();
    println!(
        "migrate{}: {rows} rows of ~100 bytes, two embedded nodes (each its own process), 2 cores",
        if quick { " (--quick)" } else { "" }
    );
    rt.block_on(async {
        load::create_schema(origin.addr).await;
        load::create_schema(target.addr).await;
        let load_s = load::insert_rows(origin.addr, rows, 4, 64).await;
        let load_rate = rows as f64 / load_s;
        println!(
            "  load client   {:>9.0} rows/s  ({rows} INSERTs, 4 connections × 64 in flight, {load_s:.2} s)",
            load_rate
        );
        let from: cutover::scan::Endpoint = origin.addr.into();
        let mut copy_rates = Vec::new();
        for concurrency in [8, 1] {
            if concurrency == 1 && quick {
                continue;
            }
            let started = Instant::now();
            let r = cutover::copy::copy(&cutover::copy::CopyOptions {
                from: from.clone(),
                to: vec![target.addr.into()],
                keyspace: "bench".into(),
                concurrency,
                ..Default::default()
            })
            .await
            .unwrap();
            let s = started.elapsed().as_secs_f64();
            let copied = r.tables[0].rows;
            assert_eq!(copied as usize, rows, "{r:?}");
            let rate = copied as f64 / s;
            copy_rates.push(rate);
            println!(
                "  copy          {rate:>9.0} rows/s  ({:.2} × the load client; --concurrency {concurrency}, {} ranges, {s:.2} s)",
                rate / load_rate,
                r.tables[0].ranges
            );
        }
        for concurrency in [8, 1] {
            if concurrency == 1 && quick {
                continue;
            }
            let started = Instant::now();
            let r = cutover::validate::validate(
                &cutover::validate::ValidateOptions {
                    from: from.clone(),
                    to: target.addr.into(),
                    keyspace: "bench".into(),
                    concurrency,
                    ..Default::default()
                },
                Vec::new(),
            )
            .await
            .unwrap();
            let s = started.elapsed().as_secs_f64();
            let compared = r.tables[0].found.rows_compared;
            assert_eq!(compared as usize, rows);
            assert_eq!(r.differences(), 0, "{}", r.human());
            let rate = compared as f64 / s;
            println!(
                "  validate      {rate:>9.0} rows/s  ({:.2} × the load client; --concurrency {concurrency}, each row read on both nodes, {s:.2} s, 0 differences)",
                rate / load_rate
            );
        }
        println!(
            "goal: copy ≥ 0.50 × the load client — {}",
            if copy_rates[0] >= 0.5 * load_rate { "met" } else { "NOT met" }
        );
    });
}
