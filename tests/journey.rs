//! The migration runbook of the README, end to end, under a running
//! application workload (the Rust `scylla` driver: prepared and unprepared
//! writes, each read back prepared or not) for two tenants, against two
//! embedded nodes:
//!
//! - one tenant (acme), by its directory entry: dual-write → copy →
//!   validate → shadow-reads (no mismatch) → target-primary → a rollback
//!   to dual-write and forward again → a read-only fence, validate with no
//!   write in flight → target-only, read-write;
//! - everything else (globex), by the default route: dual-write → copy →
//!   validate → shadow-reads → target-primary → validate → target-only.
//!
//! It ends with every validate at 0 differences, 0 client errors and 0
//! stale reads over the whole run (the writes acme's fence refused on
//! purpose counted apart), and every acknowledged write on the target.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{cutover_cli, http, wait_for};
use cutover::client::Client;
use cutover::protocol::response::ResultBody;
use parking_lot::Mutex;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const HISTORY: i32 = 2000;
const KEYS: i32 = 3000;

/// What one tenant's application saw.
#[derive(Default)]
struct Seen {
    /// Each key's last acknowledged value.
    acked: HashMap<i32, String>,
    /// Writes refused by a read-only fence (on purpose).
    refused: u64,
    /// Any other error, and reads that did not return the value just
    /// acknowledged.
    errors: Vec<String>,
}

struct App {
    seen: Arc<Mutex<Seen>>,
    writes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// The application of one tenant: writes through the proxy, alternately a
/// prepared INSERT and an unprepared UPDATE, each read back (prepared or
/// not) and checked, until `stop`.
async fn app(session: Arc<Session>, ks: &'static str, stop: Arc<AtomicBool>) -> App {
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.orders (id, v, n) VALUES (?, ?, ?)"
        ))
        .await
        .unwrap();
    let select = session
        .prepare(format!("SELECT v FROM {ks}.orders WHERE id = ?"))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writes = Arc::new(AtomicU64::new(0));
    let (s, w) = (seen.clone(), writes.clone());
    let task = tokio::spawn(async move {
        let mut i: i32 = 0;
        while !stop.load(Ordering::SeqCst) {
            let k = (i * 7919) % KEYS;
            let v = format!("{ks}-{i}");
            let written = if i % 2 == 0 {
                session
                    .execute_unpaged(&insert, (k, v.as_str(), i))
                    .await
                    .map(|_| ())
            } else {
                session
                    .query_unpaged(
                        format!("UPDATE {ks}.orders SET v = '{v}', n = {i} WHERE id = {k}"),
                        (),
                    )
                    .await
                    .map(|_| ())
            };
            i += 1;
            match written {
                Ok(()) => {
                    s.lock().acked.insert(k, v.clone());
                    w.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) if e.to_string().contains("read-only") => {
                    s.lock().refused += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => {
                    s.lock().errors.push(format!("write {k}: {e}"));
                    continue;
                }
            }
            let read = if i % 3 == 0 {
                session.execute_unpaged(&select, (k,)).await
            } else {
                session
                    .query_unpaged(format!("SELECT v FROM {ks}.orders WHERE id = {k}"), ())
                    .await
            };
            let got = read.map_err(|e| e.to_string()).and_then(|r| {
                r.into_rows_result()
                    .map_err(|e| e.to_string())?
                    .single_row::<(Option<String>,)>()
                    .map_err(|e| e.to_string())
            });
            match got {
                Ok((Some(got),)) if got == v => {}
                other => s
                    .lock()
                    .errors
                    .push(format!("read {k} after writing {v:?}: {other:?}")),
            }
        }
    });
    App { seen, writes, task }
}

/// `cutover ARGS...`, which must succeed; its stdout.
async fn cli(args: &[&str]) -> String {
    let (ok, out, err) = cutover_cli(args.iter().map(|a| a.to_string()).collect()).await;
    assert!(ok, "cutover {args:?} failed:\n{out}{err}");
    out
}

/// The sum of every series of `name` in the proxy's `/metrics`.
async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let (_, body) = http(admin, "GET", "/metrics", None).await;
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `app` has had 50 more writes acknowledged.
async fn progress(app: &App) {
    let from = app.writes.load(Ordering::SeqCst);
    wait_for("the application to write on", || {
        let now = app.writes.load(Ordering::SeqCst);
        async move { now >= from + 50 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_under_a_running_workload() {
    let (origin, target) = common::two_nodes().await;
    let (o, t) = (origin.addr.to_string(), target.addr.to_string());
    let dir = std::env::temp_dir().join(format!("cutover-journey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cutover.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [clusters.origin]\ncontact_points = [\"{o}\"]\n\
             [clusters.target]\ncontact_points = [\"{t}\"]\n\
             [route]\nphase = \"origin-only\"\n\
             [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\ndirectory_file = \"directory.toml\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("directory.toml"), "").unwrap();
    let cfg = cutover::config::Config::load(&file, Vec::new()).unwrap();
    let proxy = cutover::proxy::start_from(cfg, Some(file.clone()))
        .await
        .unwrap();
    let (admin, stop_admin) = common::serve_admin(&proxy, None, None).await;
    let admin_s = admin.to_string();
    let tenants = |args: &[&str]| {
        let mut a = vec!["tenants", "--admin", &admin_s];
        a.extend(args);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let policy = |args: &[&str]| {
        let mut a = vec!["policy", "--admin", &admin_s, "set"];
        a.extend(args);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&a).await
    };
    let validate = |ks: &'static str| {
        let (o, t) = (o.clone(), t.clone());
        async move {
            let out = cli(&["validate", "--from", &o, "--to", &t, "--keyspace", ks]).await;
            assert!(out.contains("no differences"), "{out}");
            out
        }
    };

    // Before: the application's schema and history, on the origin only.
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    for ks in ["t_acme", "t_globex"] {
        for q in [
            format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
            format!("CREATE TABLE {ks}.orders (id int PRIMARY KEY, v text, n int)"),
        ] {
            // `ddl = "all"` (the default): the target gets the schema too.
            c.query(&q).await.unwrap();
        }
        for chunk in (0..HISTORY).collect::<Vec<_>>().chunks(100) {
            let rows: String = chunk
                .iter()
                .map(|k| format!("INSERT INTO {ks}.orders (id, v, n) VALUES ({k}, 'old', {k});"))
                .collect();
            c.query(&format!("BEGIN UNLOGGED BATCH {rows} APPLY BATCH"))
                .await
                .unwrap();
        }
    }
    let session = Arc::new(
        SessionBuilder::new()
            .known_node_addr(proxy.addr)
            .build()
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut acme = app(session.clone(), "t_acme", stop.clone()).await;
    let mut globex = app(session.clone(), "t_globex", stop.clone()).await;
    progress(&acme).await;
    progress(&globex).await;

    // One tenant: acme, by its directory entry.
    run(tenants(&["set", "acme", "--phase", "dual-write"])).await;
    progress(&acme).await;
    let checkpoint = dir.join("acme.jsonl").to_string_lossy().into_owned();
    cli(&[
        "copy",
        "--from",
        &o,
        "--to",
        &t,
        "--keyspace",
        "t_acme",
        "--checkpoint",
        &checkpoint,
    ])
    .await;
    validate("t_acme").await;
    run(tenants(&["set", "acme", "--phase", "shadow-reads"])).await;
    let compared = metric(admin, "cutover_shadow_reads_compared_total").await;
    wait_for("shadow reads compared", || async {
        metric(admin, "cutover_shadow_reads_compared_total").await >= compared + 20.0
    })
    .await;
    assert_eq!(
        metric(admin, "cutover_shadow_read_mismatches_total").await,
        0.0,
        "the target answers as the origin does"
    );
    run(tenants(&["set", "acme", "--phase", "target-primary"])).await;
    progress(&acme).await;
    // The rollback drill: reads back to the origin, and forward again.
    run(tenants(&["set", "acme", "--phase", "dual-write"])).await;
    progress(&acme).await;
    run(tenants(&["set", "acme", "--phase", "target-primary"])).await;
    progress(&acme).await;
    // Before the point of no return: fenced, nothing in flight, validated.
    run(tenants(&["set", "acme", "--status", "read-only"])).await;
    wait_for("acme's writes refused", || {
        let n = acme.seen.lock().refused;
        async move { n >= 10 }
    })
    .await;
    validate("t_acme").await;
    run(tenants(&[
        "set",
        "acme",
        "--phase",
        "target-only",
        "--status",
        "read-write",
    ]))
    .await;
    progress(&acme).await;

    // Everything else: the default route.
    run(policy(&["--phase", "dual-write"])).await;
    progress(&globex).await;
    cli(&["copy", "--from", &o, "--to", &t, "--keyspace", "t_globex"]).await;
    validate("t_globex").await;
    run(policy(&["--phase", "shadow-reads"])).await;
    let compared = metric(admin, "cutover_shadow_reads_compared_total").await;
    wait_for("shadow reads compared", || async {
        metric(admin, "cutover_shadow_reads_compared_total").await >= compared + 20.0
    })
    .await;
    assert_eq!(
        metric(admin, "cutover_shadow_read_mismatches_total").await,
        0.0
    );
    run(policy(&["--phase", "target-primary"])).await;
    progress(&globex).await;
    validate("t_globex").await;
    run(policy(&["--phase", "target-only"])).await;
    progress(&globex).await;
    progress(&acme).await;

    stop.store(true, Ordering::SeqCst);
    (&mut acme.task).await.unwrap();
    (&mut globex.task).await.unwrap();
    for (name, a) in [("acme", &acme), ("globex", &globex)] {
        let seen = a.seen.lock();
        assert!(
            seen.errors.is_empty(),
            "{name}: {} client error(s), first: {:?}",
            seen.errors.len(),
            seen.errors.first()
        );
        assert!(seen.acked.len() > 100, "{name} wrote");
    }
    assert!(acme.seen.lock().refused >= 10);
    // Past the point of no return: the origin no longer gets the writes.
    let (ok, out, _) = cutover_cli(
        ["validate", "--from", &o, "--to", &t, "--keyspace", "t_acme"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(!ok && out.contains("differing"), "{out}");
    assert_eq!(globex.seen.lock().refused, 0, "only acme was fenced");
    // Every acknowledged write is on the target, the cluster now in use.
    let mut d = Client::connect(target.addr, 4, None, None).await.unwrap();
    for (ks, a) in [("t_acme", &acme), ("t_globex", &globex)] {
        let ResultBody::Rows(rows) = d
            .query(&format!("SELECT id, v FROM {ks}.orders"))
            .await
            .unwrap()
        else {
            panic!("no rows")
        };
        let on_target: HashMap<i32, String> = rows
            .rows
            .iter()
            .map(|r| {
                (
                    i32::from_be_bytes(r[0].as_ref().unwrap()[..].try_into().unwrap()),
                    String::from_utf8(r[1].as_ref().unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        assert!(on_target.len() >= HISTORY as usize, "{ks}: history copied");
        for (k, v) in &a.seen.lock().acked {
            assert_eq!(on_target.get(k), Some(v), "{ks}: acknowledged {k}");
        }
    }
    drop(session);
    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}
