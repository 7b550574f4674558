//! A connection storm: many idle clients that completed STARTUP, held open
//! against one proxy (dual-write, two embedded nodes, every process on
//! loopback).
//!
//!     cargo bench --bench storm              (10,000 clients, about a minute)
//!     cargo bench --bench storm -- --quick   (2,000 clients)
//!
//! Reports the proxy's RSS and file descriptors per client connection,
//! how long the storm took to connect, whether a new client is still served
//! (and how fast) with all of them open, and what the client past
//! `limits.max_client_connections` is told. The file-descriptor limit is
//! raised for this process and the ones it starts (they inherit it).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cutover::client::Client;
use support::Process;

/// Clients connecting at once.
const AT_ONCE: usize = 200;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let wanted: usize = if quick { 2_000 } else { 10_000 };
    // The proxy holds two descriptors per idle client (its socket and its
    // session's connection to the origin), three once it has written to
    // both clusters; the nodes one each.
    let limit = raise_nofile((wanted as u64) * 3 + 1_000);
    let n = wanted.min((limit.saturating_sub(500) / 2) as usize);
    println!(
        "connection storm{}: {n} idle clients (RLIMIT_NOFILE {limit}){}",
        if quick { " (--quick)" } else { "" },
        if n < wanted {
            format!("; {wanted} would need RLIMIT_NOFILE ≥ {} for the proxy, and this process may not raise its hard limit", wanted * 2 + 500)
        } else {
            String::new()
        }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = Process::node();
    let target = Process::node();
    let proxy = Process::proxy_limited(origin.addr, target.addr, "dual-write", "", "", n + 1);
    let base_rss = proxy.rss_kib();
    let base_fds = fds(proxy.pid());
    let (clients, took) = rt.block_on(storm(proxy.addr, n));
    let rss = proxy.rss_kib();
    let open_fds = fds(proxy.pid());
    let per_rss = (rss.saturating_sub(base_rss)) as f64 / n as f64;
    let per_fd = (open_fds.saturating_sub(base_fds)) as f64 / n as f64;
    println!(
        "  connected {} clients in {:.2} s ({:.0}/s)",
        clients.len(),
        took.as_secs_f64(),
        clients.len() as f64 / took.as_secs_f64()
    );
    println!(
        "  proxy RSS {:.1} MiB before, {:.1} MiB with them: {per_rss:.1} KiB per connection",
        base_rss as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!("  proxy file descriptors {base_fds} before, {open_fds} with them: {per_fd:.2} per connection");
    let (served, last) = rt.block_on(one_more(proxy.addr));
    println!("  a new client with all of them open: {served}");
    let refused = rt.block_on(past_the_limit(proxy.addr));
    println!(
        "  the client past max_client_connections ({}): {refused}",
        n + 1
    );
    let budget_mib = 30.0 + n as f64 * 20.0 / 1024.0;
    println!(
        "\ngoal (report only, never a test): RSS {:.1} MiB with {n} clients, budget 30 MiB + 20 KiB each = {budget_mib:.1} MiB: {}",
        rss as f64 / 1024.0,
        if rss as f64 / 1024.0 <= budget_mib { "met" } else { "NOT met" }
    );
    drop(last);
    drop(clients);
}

/// Opens `n` clients (STARTUP answered READY), `AT_ONCE` at a time.
async fn storm(addr: SocketAddr, n: usize) -> (Vec<Client>, Duration) {
    let start = Instant::now();
    let mut clients = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(AT_ONCE);
        let opened = futures::future::join_all(
            (0..batch).map(|_| async move { Client::connect(addr, 4, None, None).await }),
        )
        .await;
        for c in opened {
            clients.push(c.unwrap_or_else(|e| panic!("client {}: {e}", clients.len())));
        }
        left -= batch;
    }
    (clients, start.elapsed())
}

/// A new client's STARTUP and one query, with the storm open; the client
/// is kept (it takes the last place under the limit).
async fn one_more(addr: SocketAddr) -> (String, Option<Client>) {
    let t = Instant::now();
    let mut c = match Client::connect(addr, 4, None, None).await {
        Ok(c) => c,
        Err(e) => return (format!("NOT served: {e}"), None),
    };
    match c.query("SELECT release_version FROM system.local").await {
        Ok(_) => (
            format!(
                "served (connect, STARTUP and a query in {:.1} ms)",
                t.elapsed().as_secs_f64() * 1e3
            ),
            Some(c),
        ),
        Err(e) => (format!("NOT served: {e}"), None),
    }
}

/// What the client past the limit is told.
async fn past_the_limit(addr: SocketAddr) -> String {
    match Client::connect(addr, 4, None, None).await {
        Ok(_) => "served (the limit did not hold)".into(),
        Err(e) => format!("refused: {e}"),
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Raises RLIMIT_NOFILE to at least `want` (the hard limit too, when this
/// process may); returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_max < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}
