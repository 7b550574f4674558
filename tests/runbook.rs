//! The tenant-move runbook end to end, with two proxy instances and four
//! nodes (shards `default` = o1/t1 and `dedicated` = o2/t2), under write
//! load through both instances:
//! 1. `cutover tenants set wayne --status read-only --fleet`: wayne's
//!    writes are refused with 0x2100 naming it, stark's keep working, and
//!    once the call has returned no write for wayne reaches any node (the
//!    nodes' write counters);
//! 2. `cutover copy` from o1 to o2 and t2, write times and TTLs kept;
//! 3. `cutover tenants set wayne --shard dedicated --fleet`;
//! 4. `cutover tenants set wayne --status read-write --fleet`: wayne's
//!    writes land on o2/t2 only, and every row acknowledged to a client is
//!    readable through the proxy with its original write time.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::wait_for;
use cutover::client::{Client, ClientError};
use cutover::node::RunningNode;
use cutover::protocol::response::ResultBody;
use cutover::protocol::ErrorCode;
use parking_lot::Mutex;

async fn tenants(admin: SocketAddr, args: &[&str]) {
    let mut all = vec!["tenants".to_string(), "--admin".into(), admin.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let (ok, out, err) = common::cutover_cli(all).await;
    assert!(ok, "cutover tenants {args:?} failed:\n{out}{err}");
}

/// What one writer saw.
#[derive(Default)]
struct Log {
    acked: Vec<i32>,
    refused: Vec<String>,
    failed: Vec<String>,
}

/// Writes rows of `ks.t` through `proxy` until `stop`, keys from `base`
/// on; every third row with a TTL of a day.
fn writer(
    proxy: SocketAddr,
    ks: &'static str,
    base: i32,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Log>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    let task = tokio::spawn(async move {
        let mut c = Client::connect(proxy, 4, None, None).await.unwrap();
        let mut k = base;
        while !stop.load(Ordering::SeqCst) {
            let ttl = if k % 3 == 0 { " USING TTL 86400" } else { "" };
            let r = c
                .query(&format!(
                    "INSERT INTO {ks}.t (k, v) VALUES ({k}, 'v{k}'){ttl}"
                ))
                .await;
            {
                let mut log = l.lock();
                match r {
                    Ok(_) => log.acked.push(k),
                    Err(ClientError::Server(e)) if e.code == ErrorCode::UNAUTHORIZED => {
                        log.refused.push(e.message)
                    }
                    Err(e) => log.failed.push(e.to_string()),
                }
            }
            k += 1;
            tokio::task::yield_now().await;
        }
    });
    (log, task)
}

/// Rows of `SELECT k, writetime(v), ttl(v) FROM ks.t` on `addr`: k → (write
/// time, ttl).
async fn write_times(addr: SocketAddr, ks: &str) -> BTreeMap<i32, (i64, Option<i32>)> {
    let mut c = Client::connect(addr, 4, None, None).await.unwrap();
    let ResultBody::Rows(r) = c
        .query(&format!("SELECT k, writetime(v), ttl(v) FROM {ks}.t"))
        .await
        .unwrap()
    else {
        panic!("no rows")
    };
    assert!(r.metadata.paging_state.is_none(), "one page");
    r.rows
        .iter()
        .map(|row| {
            let b = |i: usize| row[i].as_ref().unwrap();
            (
                i32::from_be_bytes(b(0)[..].try_into().unwrap()),
                (
                    i64::from_be_bytes(b(1)[..].try_into().unwrap()),
                    row[2]
                        .as_ref()
                        .map(|t| i32::from_be_bytes(t[..].try_into().unwrap())),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_to_another_shard_without_losing_a_write() {
    let mut nodes: Vec<RunningNode> = Vec::new();
    for _ in 0..4 {
        let n = cutover::node::start(cutover::node::NodeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
        ))
        .await
        .unwrap();
        n.node.stats.count_writes.store(true, Ordering::SeqCst);
        nodes.push(n);
    }
    let addr: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (o1, t1, o2, t2) = (addr[0], addr[1], addr[2], addr[3]);
    let wayne_writes = || -> Vec<u64> {
        nodes
            .iter()
            .map(|n| n.node.stats.writes_to("t_wayne"))
            .collect()
    };

    // Two instances, each with its own config and directory file.
    let fleet = common::Fleet::start(2, "runbook", &common::two_shards_toml(&addr)).await;
    let (proxies, admins) = (&fleet.proxies, &fleet.admins);
    let mut c = Client::connect(proxies[0].addr, 4, None, None)
        .await
        .unwrap();
    for ks in ["t_wayne", "t_stark"] {
        c.query(&format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")).await.unwrap();
        c.query(&format!("CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)"))
            .await
            .unwrap();
    }

    // Write load for both tenants through both instances.
    let stop = Arc::new(AtomicBool::new(false));
    let mut wayne = Vec::new();
    let mut stark = Vec::new();
    let mut tasks = Vec::new();
    for (i, p) in proxies.iter().enumerate() {
        let (log, task) = writer(p.addr, "t_wayne", i as i32 * 1_000_000, stop.clone());
        wayne.push(log);
        tasks.push(task);
        let (log, task) = writer(p.addr, "t_stark", i as i32 * 1_000_000, stop.clone());
        stark.push(log);
        tasks.push(task);
    }
    let acked = |logs: &[Arc<Mutex<Log>>]| -> Vec<usize> {
        logs.iter().map(|l| l.lock().acked.len()).collect()
    };
    let refused = |logs: &[Arc<Mutex<Log>>]| -> Vec<usize> {
        logs.iter().map(|l| l.lock().refused.len()).collect()
    };
    wait_for("100 writes per writer", || {
        let ok = acked(&wayne)
            .iter()
            .chain(&acked(&stark))
            .all(|n| *n >= 100);
        async move { ok }
    })
    .await;

    // 1. Read-only on the fleet, under load.
    tenants(
        admins[0],
        &["set", "wayne", "--status", "read-only", "--fleet"],
    )
    .await;
    let fenced_at = wayne_writes();
    let stark_then = acked(&stark);
    wait_for("stark writing on, wayne refused on both instances", || {
        let more = acked(&stark)
            .iter()
            .zip(&stark_then)
            .all(|(now, then)| *now >= then + 200);
        let refusals = refused(&wayne).iter().all(|n| *n >= 50);
        async move { more && refusals }
    })
    .await;
    assert_eq!(
        wayne_writes(),
        fenced_at,
        "a write for wayne reached a node after the fleet call returned"
    );
    for log in &wayne {
        let log = log.lock();
        let m = &log.refused[0];
        assert!(m.contains("\"wayne\"") && m.contains("read-only"), "{m}");
        assert!(log.failed.is_empty(), "{:?}", log.failed);
    }
    for log in &stark {
        let log = log.lock();
        assert!(log.refused.is_empty() && log.failed.is_empty());
    }
    let wayne_before: Vec<i32> = wayne.iter().flat_map(|l| l.lock().acked.clone()).collect();
    let originals = write_times(o1, "t_wayne").await;
    for k in &wayne_before {
        assert!(originals.contains_key(k), "acknowledged row {k} is on o1");
    }

    // 2. Copy with write times and TTLs.
    let (ok, out, err) = common::cutover_cli(
        [
            "copy",
            "--from",
            &o1.to_string(),
            "--to",
            &o2.to_string(),
            "--to",
            &t2.to_string(),
            "--keyspace",
            "t_wayne",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("\"rows\": {}", originals.len())),
        "{out}"
    );

    // 3. and 4. Point wayne at the dedicated shard, then read-write.
    tenants(
        admins[1],
        &["set", "wayne", "--shard", "dedicated", "--fleet"],
    )
    .await;
    tenants(
        admins[0],
        &["set", "wayne", "--status", "read-write", "--fleet"],
    )
    .await;
    let moved_at = wayne_writes();
    let wayne_then = acked(&wayne);
    wait_for("wayne writing again on both instances", || {
        let more = acked(&wayne)
            .iter()
            .zip(&wayne_then)
            .all(|(now, then)| *now >= then + 100);
        async move { more }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let now = wayne_writes();
    assert_eq!(
        (now[0], now[1]),
        (fenced_at[0], fenced_at[1]),
        "wayne's writes left the default shard"
    );
    assert!(now[2] > moved_at[2] && now[3] > moved_at[3], "{now:?}");
    for log in wayne.iter().chain(&stark) {
        assert!(log.lock().failed.is_empty(), "{:?}", log.lock().failed);
    }

    // Every acknowledged row of wayne is readable through the proxy (from
    // the new shard), the ones written before the move with their
    // original write times and TTLs.
    let through_proxy = write_times(proxies[1].addr, "t_wayne").await;
    let on_o2 = write_times(o2, "t_wayne").await;
    assert_eq!(
        through_proxy.keys().collect::<Vec<_>>(),
        on_o2.keys().collect::<Vec<_>>()
    );
    let all_acked: Vec<i32> = wayne.iter().flat_map(|l| l.lock().acked.clone()).collect();
    for k in &all_acked {
        assert!(through_proxy.contains_key(k), "acknowledged row {k} lost");
    }
    for k in &wayne_before {
        let (wt, ttl) = through_proxy[k];
        let (owt, ottl) = originals[k];
        assert_eq!(wt, owt, "row {k} kept its write time");
        assert_eq!(ttl.is_some(), k % 3 == 0, "row {k}'s TTL");
        if let (Some(t), Some(o)) = (ttl, ottl) {
            assert!(o - t <= 60, "row {k}: TTL {t} against {o}");
        }
    }
    // stark never moved: all its rows on o1 and t1, none on o2.
    let stark_acked: Vec<i32> = stark.iter().flat_map(|l| l.lock().acked.clone()).collect();
    let (s1, st1) = (
        write_times(o1, "t_stark").await,
        write_times(t1, "t_stark").await,
    );
    for k in &stark_acked {
        assert!(s1.contains_key(k) && st1.contains_key(k), "stark row {k}");
    }
    assert!(write_times(o2, "t_stark").await.is_empty());

    fleet.stop().await;
    for n in nodes {
        n.shutdown().await;
    }
}
