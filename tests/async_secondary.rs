//! `async-secondary` against embedded nodes: what stays synchronous, a
//! PREPARE while the target is down, a full journal, a newer write the
//! replay must not overwrite, and reads refused a move to a cluster with
//! backlog.

mod common;

use std::path::Path;

use common::{http, wait_for, Setup};
use cutover::client::{Client, ClientError};
use cutover::config::{Config, WhenFull, WriteMode};
use cutover::frame::Opcode;
use cutover::protocol::reader::RawValue;
use cutover::protocol::request::{Batch, BatchChild, BatchStatement};
use cutover::protocol::response::ResultBody;
use cutover::protocol::ErrorCode;

fn journaled(dir: &Path) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| {
        c.route.write_mode = WriteMode::AsyncSecondary;
        c.journal.dir = dir.to_path_buf();
        for cl in c.clusters.values_mut() {
            cl.request_timeout.0 = std::time::Duration::from_secs(2);
            cl.connect_timeout.0 = std::time::Duration::from_secs(1);
        }
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cutover-async-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A journal directory, two nodes and an async-secondary proxy in front,
/// and a client with `ks.t`.
async fn started(name: &str) -> (std::path::PathBuf, Setup, Client) {
    let dir = tempdir(name);
    let s = Setup::start_with(None, None, journaled(&dir)).await;
    let c = s.client_with_table().await;
    (dir, s, c)
}

/// `started`, then the target down.
async fn with_target_down(name: &str) -> (std::path::PathBuf, Setup, Client) {
    let (dir, s, c) = started(name).await;
    s.target.node.set_down(true);
    (dir, s, c)
}

async fn metric(s: &Setup, name: &str) -> f64 {
    let text = s.metrics().await;
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

async fn pending(s: &Setup) -> u64 {
    let (status, body) = http(s.admin, "GET", "/v1/journal", None).await;
    assert_eq!(status, 200, "{body}");
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    j["pending_records"].as_u64().unwrap()
}

async fn rows(node: std::net::SocketAddr, query: &str) -> Vec<Vec<Option<bytes::Bytes>>> {
    let mut c = Client::connect(node, 4, None, None).await.unwrap();
    match c.query(query).await.unwrap() {
        ResultBody::Rows(r) => r.rows,
        other => panic!("{other:?}"),
    }
}

fn server_error(r: Result<ResultBody, ClientError>) -> cutover::protocol::ErrorFrame {
    match r {
        Err(ClientError::Server(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn with_the_target_down_what_cannot_be_replayed_stays_synchronous() {
    let (dir, s, mut c) = started("sync").await;
    c.query("CREATE TABLE ks.counts (k int PRIMARY KEY, n counter)")
        .await
        .unwrap();
    c.query("CREATE TABLE ks.lists (k int PRIMARY KEY, l list<int>)")
        .await
        .unwrap();
    c.query("CREATE TABLE ks.events (k int PRIMARY KEY, at timeuuid)")
        .await
        .unwrap();
    s.target.node.set_down(true);
    // A plain write: journaled, answered by the origin alone.
    c.query("INSERT INTO ks.t (k, v) VALUES (1, 'a')")
        .await
        .unwrap();
    // A PREPARE during the outage succeeds, and its EXECUTE is journaled.
    let p = c
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    c.execute(
        &p,
        vec![
            RawValue::Bytes(bytes::Bytes::from_static(&[0, 0, 0, 2])),
            RawValue::Bytes(bytes::Bytes::from_static(b"b")),
        ],
    )
    .await
    .unwrap();
    // What would not replay to the same cells waits for the target, as in
    // sync, and fails naming it.
    for (text, reason) in [
        (
            "INSERT INTO ks.t (k, v) VALUES (3, 'c') IF NOT EXISTS",
            "lwt",
        ),
        ("UPDATE ks.counts SET n = n + 1 WHERE k = 1", "increment"),
        ("UPDATE ks.lists SET l = l + [1] WHERE k = 1", "increment"),
        (
            "INSERT INTO ks.events (k, at) VALUES (1, now())",
            "server-function",
        ),
    ] {
        let e = server_error(c.query(text).await);
        assert!(e.message.contains("target"), "{text}: {}", e.message);
        let kept = metric(
            &s,
            &format!("cutover_writes_kept_sync_total{{reason=\"{reason}\"}}"),
        )
        .await;
        assert!(
            kept >= 1.0,
            "{text}: not counted as kept synchronous ({reason})"
        );
    }
    assert_eq!(
        pending(&s).await,
        2,
        "the two replayable writes wait in the journal"
    );
    let by_table = "cutover_journal_pending_records{cluster=\"target\",table=\"ks.t\"}";
    assert_eq!(metric(&s, by_table).await, 2.0);
    for (table, n) in [
        ("ks.t", 1.0),
        ("ks.counts", 1.0),
        ("ks.lists", 1.0),
        ("ks.events", 1.0),
    ] {
        let kept = format!(
            "cutover_writes_kept_sync_by_table_total{{cluster=\"target\",table=\"{table}\"}}"
        );
        assert_eq!(metric(&s, &kept).await, n, "{kept}");
    }
    s.target.node.set_down(false);
    let target = s.target.addr;
    wait_for("the replay of both writes", || async move {
        rows(target, "SELECT k FROM ks.t").await.len() == 2
    })
    .await;
    let on_origin = rows(
        s.origin.addr,
        "SELECT k, v, WRITETIME(v) FROM ks.t WHERE k = 2",
    )
    .await;
    let on_target = rows(target, "SELECT k, v, WRITETIME(v) FROM ks.t WHERE k = 2").await;
    assert_eq!(on_origin, on_target, "the same cells and write time");
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_full_journal_falls_back_to_sync_or_refuses_as_configured() {
    for when_full in [WhenFull::Sync, WhenFull::Refuse] {
        let dir = tempdir(&format!("full-{when_full:?}"));
        let s = Setup::start_with(None, None, |c| {
            journaled(&dir)(c);
            c.journal.segment_bytes.0 = 4096;
            c.journal.max_bytes.0 = 8192;
            c.journal.when_full = when_full;
        })
        .await;
        let mut c = s.client_with_table().await;
        s.target.node.set_down(true);
        let mut answered = 0;
        let err = loop {
            let r = c
                .query(&format!("INSERT INTO ks.t (k, v) VALUES ({answered}, 'x')"))
                .await;
            match r {
                Ok(_) => answered += 1,
                Err(ClientError::Server(e)) => break e,
                Err(e) => panic!("{e}"),
            }
            assert!(answered < 1000, "8 KiB of journal never filled");
        };
        assert!(answered > 10, "only {answered} writes fit");
        assert!(metric(&s, "cutover_journal_full_total").await >= 1.0);
        match when_full {
            // As in sync: the client sees the target's failure again.
            WhenFull::Sync => {
                assert!(err.message.contains("target"), "{}", err.message);
                assert!(
                    metric(
                        &s,
                        "cutover_writes_kept_sync_total{reason=\"journal-full\"}"
                    )
                    .await
                        >= 1.0
                );
            }
            WhenFull::Refuse => {
                assert_eq!(err.code, ErrorCode::OVERLOADED);
                assert!(err.message.contains("journal is full"), "{}", err.message);
                assert!(metric(&s, "cutover_journal_refused_total").await >= 1.0);
            }
        }
        s.target.node.set_down(false);
        let s2 = &s;
        wait_for("the replay to empty the journal", || async move {
            pending(s2).await == 0
        })
        .await;
        // Room again: journaled once more.
        c.query("INSERT INTO ks.t (k, v) VALUES (5000, 'again')")
            .await
            .unwrap();
        s.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn a_replay_never_overwrites_a_newer_value_on_the_target() {
    let (dir, s, mut c) = with_target_down("newer").await;
    c.query("INSERT INTO ks.t (k, v) VALUES (1, 'journaled')")
        .await
        .unwrap();
    assert_eq!(pending(&s).await, 1);
    // The proxy stops with the write still journaled; the target comes
    // back and gets a newer value for the same cell directly.
    let cfg = s.proxy.proxy.config().clone();
    let (origin, target) = (s.origin, s.target);
    s.stop_admin.cancel();
    s.proxy.stop().await;
    target.node.set_down(false);
    let mut direct = Client::connect(target.addr, 4, None, None).await.unwrap();
    direct
        .query("INSERT INTO ks.t (k, v) VALUES (1, 'newer')")
        .await
        .unwrap();
    // A proxy on the same journal replays the older write.
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let replayed = proxy.proxy.clone();
    wait_for("the replay", || {
        let p = replayed.clone();
        async move {
            p.journal()
                .get()
                .is_some_and(|j| j.stats().pending_records == 0)
        }
    })
    .await;
    let replay = &replayed.journal().replay_stats;
    assert_eq!(
        replay.replayed.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the write was replayed"
    );
    let v = rows(target.addr, "SELECT v FROM ks.t WHERE k = 1").await;
    assert_eq!(
        v[0][0].as_deref(),
        Some(&b"newer"[..]),
        "the replay overwrote a newer value"
    );
    let v = rows(origin.addr, "SELECT v FROM ks.t WHERE k = 1").await;
    assert_eq!(v[0][0].as_deref(), Some(&b"journaled"[..]));
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn reads_move_to_a_cluster_with_backlog_only_with_force() {
    let (dir, s, mut c) = with_target_down("flip").await;
    c.query("INSERT INTO ks.t (k, v) VALUES (1, 'a')")
        .await
        .unwrap();
    let flip = r#"{"route": {"phase": "target-primary"}}"#;
    let (status, body) = http(s.admin, "PUT", "/v1/policy", Some(flip)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("1 journaled writes not replayed yet"),
        "{body}"
    );
    let (_, ready) = s.ready().await;
    assert_eq!(ready["clusters"]["target"]["journal_backlog"], 1, "{ready}");
    let forced = r#"{"route": {"phase": "target-primary"}, "force": true}"#;
    let (status, body) = http(s.admin, "PUT", "/v1/policy", Some(forced)).await;
    assert_eq!(status, 200, "{body}");
    // Back to reads from the origin, then the backlog drains and the flip
    // is allowed without force.
    let back = r#"{"route": {"phase": "dual-write"}}"#;
    assert_eq!(http(s.admin, "PUT", "/v1/policy", Some(back)).await.0, 200);
    s.target.node.set_down(false);
    let s2 = &s;
    wait_for("the replay", || async move { pending(s2).await == 0 }).await;
    let (status, body) = http(s.admin, "PUT", "/v1/policy", Some(flip)).await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_write_the_target_refuses_for_good_goes_to_the_dead_letters() {
    let (dir, s, mut c) = started("dead").await;
    // A table only the origin has: the target refuses every write to it.
    let mut origin = Client::connect(s.origin.addr, 4, None, None).await.unwrap();
    origin
        .query("CREATE TABLE ks.only_origin (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    c.query("INSERT INTO ks.only_origin (k, v) VALUES (1, 'x')")
        .await
        .unwrap();
    let s2 = &s;
    wait_for("the dead letter", || async move {
        let (_, body) = http(s2.admin, "GET", "/v1/journal", None).await;
        let j: serde_json::Value = serde_json::from_str(&body).unwrap();
        j["dead_letters"] == 1 && j["pending_records"] == 0
    })
    .await;
    let (_, body) = http(s.admin, "GET", "/v1/journal", None).await;
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    let dead = &j["recent_dead_letters"][0];
    assert_eq!(dead["table"], "ks.only_origin", "{j}");
    assert_eq!(dead["cluster"], "target", "{j}");
    assert!(!dead["error"].as_str().unwrap().is_empty(), "{j}");
    assert_eq!(metric(&s, "cutover_journal_dead_letters_total").await, 1.0);
    let failed =
        "cutover_journal_mirror_failures_total{cluster=\"target\",table=\"ks.only_origin\"}";
    assert_eq!(metric(&s, failed).await, 1.0);
    // Kept on disk with the record.
    assert!(dir.join("dead-letter.log").exists());
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_replayed_ttl_is_what_remains_of_it_and_an_expired_write_is_dropped() {
    let (dir, s, mut c) = with_target_down("ttl").await;
    let journaled_at = std::time::Instant::now();
    c.query("INSERT INTO ks.t (k, v) VALUES (1, 'literal') USING TTL 3600")
        .await
        .unwrap();
    let p = c
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?) USING TTL ?")
        .await
        .unwrap();
    c.execute(
        &p,
        vec![
            RawValue::Bytes(bytes::Bytes::from_static(&[0, 0, 0, 2])),
            RawValue::Bytes(bytes::Bytes::from_static(b"bound")),
            RawValue::Bytes(bytes::Bytes::copy_from_slice(&3600i32.to_be_bytes())),
        ],
    )
    .await
    .unwrap();
    c.query("INSERT INTO ks.t (k, v) VALUES (3, 'short') USING TTL 2")
        .await
        .unwrap();
    // A literal in a prepared statement, and a BATCH whose children have
    // TTLs of their own (the short one runs out; the other child stays).
    let p = c
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, 'prepared literal') USING TTL 3600")
        .await
        .unwrap();
    c.execute(
        &p,
        vec![RawValue::Bytes(bytes::Bytes::from_static(&[0, 0, 0, 4]))],
    )
    .await
    .unwrap();
    let child = |text: &str| BatchChild {
        statement: BatchStatement::Query(text.into()),
        values: vec![],
    };
    let batch = Batch {
        kind: 0,
        children: vec![
            child("INSERT INTO ks.t (k, v) VALUES (5, 'batched') USING TTL 3600"),
            child("INSERT INTO ks.t (k, v) VALUES (6, 'batched short') USING TTL 2"),
        ],
        consistency: 1,
        serial_consistency: None,
        timestamp: None,
        keyspace: None,
        now_in_seconds: None,
    };
    let answer = c.request(Opcode::Batch, batch.encode(4)).await.unwrap();
    assert_eq!(answer.op(), Some(Opcode::Result), "{answer:?}");
    assert_eq!(pending(&s).await, 5);
    // The short TTL runs out while the target is down; the others lose
    // the same seconds.
    wait_for("three seconds to pass", || async move {
        journaled_at.elapsed() >= std::time::Duration::from_secs(3)
    })
    .await;
    s.target.node.set_down(false);
    let s2 = &s;
    wait_for("the replay", || async move { pending(s2).await == 0 }).await;
    let target = s.target.addr;
    let got = rows(target, "SELECT k, TTL(v) FROM ks.t").await;
    let mut keys: Vec<i32> = got
        .iter()
        .map(|r| i32::from_be_bytes(r[0].as_deref().unwrap().try_into().unwrap()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![1, 2, 4, 5],
        "the expired writes must not be replayed, the others must: {got:?}"
    );
    for row in got {
        let ttl = i32::from_be_bytes(row[1].as_deref().unwrap().try_into().unwrap());
        assert!(
            (3500..=3597).contains(&ttl),
            "a TTL of 3600 journaled 3+ s ago replays as what remains, got {ttl}"
        );
    }
    assert_eq!(metric(&s, "cutover_journal_expired_total").await, 1.0);
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `cutover validate --proxy-admin`: with writes the target refused held
/// in the proxy's journal, validate names the backlog before it reports the
/// rows the target lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_the_journal_backlog() {
    let (dir, s, mut c) = started("validate").await;
    *s.target.node.faults.error.lock() = Some(cutover::node::faults::ErrorRule {
        error: cutover::node::faults::InjectedError::WriteTimeout,
        share: 1.0,
        opcode: None,
        keyspace: Some("ks".into()),
    });
    for k in 0..5 {
        c.query(&format!("INSERT INTO ks.t (k, v) VALUES ({k}, 'v')"))
            .await
            .unwrap();
    }
    wait_for("5 journaled writes", || async { pending(&s).await >= 5 }).await;
    // The journal's report spells its durability as the config does.
    let (_, body) = http(s.admin, "GET", "/v1/journal", None).await;
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["durability"], "fsync", "{body}");
    let (ok, out, err) = common::cutover_cli(
        [
            "validate",
            "--from",
            &s.origin.addr.to_string(),
            "--to",
            &s.target.addr.to_string(),
            "--keyspace",
            "ks",
            "--proxy-admin",
            &s.admin.to_string(),
            "--recheck-after-ms",
            "10",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("warning: the proxy at")
            && out.contains("in its journal not yet applied (target: 5)"),
        "{out}"
    );
    assert!(out.contains("t: 5 rows compared, 5 missing"), "{out}");
    s.target.node.faults.clear();
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
