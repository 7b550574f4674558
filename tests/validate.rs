//! `cutover validate`: every planted difference among 10,000 rows is found
//! (missing, extra, a changed value, a write time beyond tolerance, a TTL,
//! static cells, a key-only row), none where there are none while
//! dual-writes run through the proxy, and after `--repair --delete-extra`
//! a second run finds nothing; `--ranges-from`, `--split` shares joined by
//! `--merge`, and the exit status.

mod common;

use common::{cutover_cli, two_nodes, Setup};
use cutover::client::Client;
use cutover::node::RunningNode;
use cutover::validate::{validate, Tolerance, ValidateOptions, ValidateReport};

const SCHEMA: [&str; 3] = [
    "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TABLE shop.items (k int PRIMARY KEY, v text, n int, f double)",
    "CREATE TABLE shop.events (p text, c int, s text static, v text, PRIMARY KEY (p, c))",
];

async fn run(c: &mut Client, qs: impl IntoIterator<Item = String>) {
    for q in qs {
        c.query(&q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

/// `n` rows of shop.items in batches of 100, at write time 1,000,000 + k,
/// leaving out the keys in `skip`.
fn items(n: i32, skip: &[i32]) -> Vec<String> {
    let rows: Vec<i32> = (0..n).filter(|k| !skip.contains(k)).collect();
    rows.chunks(100)
        .map(|chunk| {
            let inserts: String = chunk
                .iter()
                .map(|k| {
                    format!(
                        "INSERT INTO shop.items (k, v, n, f) VALUES ({k}, 'v{k}', {k}, {k}.5) USING TIMESTAMP {};",
                        1_000_000 + k
                    )
                })
                .collect();
            format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH")
        })
        .collect()
}

fn options(from: std::net::SocketAddr, to: std::net::SocketAddr) -> ValidateOptions {
    ValidateOptions {
        from: from.into(),
        to: to.into(),
        keyspace: "shop".into(),
        page_size: 500,
        concurrency: 4,
        splits: 16,
        recheck_after: std::time::Duration::from_millis(50),
        tolerance: Tolerance {
            writetime_us: 1000,
            ttl_s: 5,
            float_epsilon: 1e-9,
            ignore: Vec::new(),
        },
        ..ValidateOptions::default()
    }
}

fn table<'r>(r: &'r ValidateReport, name: &str) -> &'r cutover::validate::TableDiff {
    r.tables.iter().find(|t| t.table == name).unwrap()
}

/// Two nodes with the `SCHEMA`, and a connection to each.
async fn shop() -> (RunningNode, RunningNode, Client, Client) {
    let (from, to) = two_nodes().await;
    let mut o = Client::connect(from.addr, 4, None, None).await.unwrap();
    let mut t = Client::connect(to.addr, 4, None, None).await.unwrap();
    run(&mut o, SCHEMA.map(String::from)).await;
    run(&mut t, SCHEMA.map(String::from)).await;
    (from, to, o, t)
}

/// What the sample of `key` says differs.
fn detail_of(t: &cutover::validate::TableDiff, key: &str) -> String {
    t.found
        .samples
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no sample of {key}: {t:#?}"))
        .detail
        .join("; ")
}

fn keys(t: &cutover::validate::TableDiff, kind: &str) -> Vec<String> {
    let mut k: Vec<String> = t
        .found
        .samples
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.key.clone())
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planted_difference_is_found_and_repair_leaves_none() {
    let (from, to, mut o, mut t) = shop().await;
    // 10,000 rows on the origin; the target lacks three of them.
    run(&mut o, items(10_000, &[])).await;
    run(&mut t, items(10_000, &[17, 4242, 9999])).await;
    run(
        &mut o,
        [
            // A changed value, newer on the origin (the target missed it).
            "UPDATE shop.items USING TIMESTAMP 5000000 SET v = 'changed' WHERE k = 100",
            // The same value written again 10 s later: a write time
            // beyond the 1 ms tolerance.
            "UPDATE shop.items USING TIMESTAMP 11001200 SET n = 200 WHERE k = 200",
            // The same value and (nearly) the same time, with a TTL.
            "UPDATE shop.items USING TIMESTAMP 1000301 AND TTL 3600 SET v = 'v300' WHERE k = 300",
            // Static cells, and a row holding only its key.
            "INSERT INTO shop.events (p, c, v) VALUES ('a', 1, 'x') USING TIMESTAMP 10",
            "INSERT INTO shop.events (p, s) VALUES ('a', 'origin') USING TIMESTAMP 30",
            "INSERT INTO shop.events (p, c) VALUES ('b', 1)",
        ]
        .map(String::from),
    )
    .await;
    run(
        &mut t,
        [
            // Two rows only on the target.
            "INSERT INTO shop.items (k, v) VALUES (20000, 'extra') USING TIMESTAMP 7",
            "INSERT INTO shop.items (k, v) VALUES (20001, 'extra') USING TIMESTAMP 7",
            // A double off by 1e-12: within the epsilon, not a difference.
            "UPDATE shop.items USING TIMESTAMP 1000400 SET f = 400.500000000001 WHERE k = 400",
            "INSERT INTO shop.events (p, c, v) VALUES ('a', 1, 'x') USING TIMESTAMP 10",
            "INSERT INTO shop.events (p, s) VALUES ('a', 'target') USING TIMESTAMP 20",
        ]
        .map(String::from),
    )
    .await;

    let r = validate(&options(from.addr, to.addr), Vec::new())
        .await
        .unwrap();
    let items = table(&r, "items");
    assert_eq!(items.found.rows_compared, 10_002, "{r:#?}");
    assert_eq!(
        (
            items.found.missing,
            items.found.extra,
            items.found.differing
        ),
        (3, 2, 3),
        "{r:#?}"
    );
    assert_eq!(keys(items, "missing"), ["k=17", "k=4242", "k=9999"]);
    assert_eq!(keys(items, "extra"), ["k=20000", "k=20001"]);
    assert_eq!(keys(items, "differing"), ["k=100", "k=200", "k=300"]);
    let detail = |k: &str| detail_of(items, k);
    assert!(
        detail("k=100").contains("v: 'changed' on the origin, 'v100' on the target"),
        "{}",
        detail("k=100")
    );
    assert!(
        detail("k=200").contains("n: write time 11001200 on the origin, 1000200 on the target"),
        "{}",
        detail("k=200")
    );
    assert!(
        detail("k=300").contains("none on the target"),
        "{}",
        detail("k=300")
    );
    let events = table(&r, "events");
    assert_eq!(
        (
            events.found.missing,
            events.found.extra,
            events.found.differing
        ),
        (1, 0, 1),
        "{r:#?}"
    );
    assert_eq!(keys(events, "missing"), ["p='b', c=1"]);
    assert_eq!(keys(events, "differing"), ["p='a', (static cells)"]);
    assert!(!items.differing_ranges.is_empty());
    assert!(items.differing_ranges.len() <= 8, "{r:#?}");
    // Without the epsilon, the double differs too.
    let strict = validate(
        &ValidateOptions {
            tables: vec!["items".into()],
            tolerance: Tolerance {
                float_epsilon: 0.0,
                ..options(from.addr, to.addr).tolerance
            },
            ..options(from.addr, to.addr)
        },
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(strict.tables[0].found.differing, 4);

    // Repair without --delete-extra mends all but the extra rows.
    let repaired = validate(
        &ValidateOptions {
            repair: true,
            ..options(from.addr, to.addr)
        },
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(repaired.remaining(), 2, "{repaired:#?}");
    assert_eq!(table(&repaired, "items").found.repaired, 6);
    let again = validate(&options(from.addr, to.addr), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        (again.differences(), table(&again, "items").found.extra),
        (2, 2),
        "{again:#?}"
    );
    // (The static cells were repaired: the origin's are the newer, 30 > 20.)
    let deleted = validate(
        &ValidateOptions {
            repair: true,
            delete_extra: true,
            ..options(from.addr, to.addr)
        },
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(table(&deleted, "items").found.deleted, 2);
    let clean = validate(&options(from.addr, to.addr), Vec::new())
        .await
        .unwrap();
    assert_eq!(clean.differences(), 0, "{}", clean.human());
    assert!(clean.human().contains("no differences"));
    from.shutdown().await;
    to.shutdown().await;
}

/// A cell newer on the target is reported and left as it is by repair,
/// and a row the target deleted after the origin wrote it is reported as
/// not repaired (the write is checked by reading it back).
#[tokio::test]
async fn repair_never_writes_over_a_newer_cell() {
    let (from, to, mut o, mut t) = shop().await;
    run(&mut o, items(10, &[])).await;
    run(&mut t, items(10, &[])).await;
    run(
        &mut t,
        [
            "UPDATE shop.items USING TIMESTAMP 9000000 SET v = 'newer' WHERE k = 3",
            // Deleted on the target after the origin wrote it: the
            // tombstone wins over the origin's write times.
            "DELETE FROM shop.items USING TIMESTAMP 9000000 WHERE k = 4",
        ]
        .map(String::from),
    )
    .await;
    let r = validate(
        &ValidateOptions {
            repair: true,
            ..options(from.addr, to.addr)
        },
        Vec::new(),
    )
    .await
    .unwrap();
    let items = table(&r, "items");
    assert_eq!(
        (
            items.found.differing,
            items.found.missing,
            items.found.repaired
        ),
        (1, 1, 0),
        "{r:#?}"
    );
    assert_eq!(r.remaining(), 2);
    let why = |k: &str| detail_of(items, k);
    assert!(
        why("k=3").contains("not repaired: the target's cell is newer"),
        "{}",
        why("k=3")
    );
    assert!(
        why("k=4").contains("holds a newer deletion"),
        "{}",
        why("k=4")
    );
    let ResultBody::Rows(rows) = t
        .query("SELECT v FROM shop.items WHERE k = 3")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(rows.rows[0][0].as_deref(), Some(&b"newer"[..]));
    from.shutdown().await;
    to.shutdown().await;
}

use cutover::protocol::response::ResultBody;

/// Live writes through a dual-writing proxy while validate runs: the rows
/// in flight settle on re-read, and nothing is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_differences_are_reported_while_dual_writes_run() {
    let s = Setup::start(None, None).await;
    let mut c = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    run(&mut c, SCHEMA.map(String::from)).await;
    run(
        &mut c,
        (0..20).map(|i| {
            let rows: String = (0..100)
                .map(|j| {
                    format!(
                        "INSERT INTO shop.items (k, v, n) VALUES ({}, 'v', {j});",
                        i * 100 + j
                    )
                })
                .collect();
            format!("BEGIN UNLOGGED BATCH {rows} APPLY BATCH")
        }),
    )
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writes = tokio::spawn({
        let (stop, written, addr) = (stop.clone(), written.clone(), s.proxy.addr);
        async move {
            let mut c = Client::connect(addr, 4, None, None).await.unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let k = (n * 7919) % 2500;
                c.query(&format!(
                    "UPDATE shop.items SET v = 'w{n}', n = {n} WHERE k = {k}"
                ))
                .await
                .unwrap();
                n += 1;
                written.store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let count = || written.load(std::sync::atomic::Ordering::Relaxed);
    common::wait_for("the workload to start", || {
        std::future::ready(count() >= 10)
    })
    .await;
    // Runs until three of them had writes under way the whole time and
    // some row was caught in flight.
    let (mut settled, mut runs, mut overlapped) = (0, 0, 0);
    while (overlapped < 3 || settled == 0) && runs < 30 {
        let before = count();
        let r = validate(
            &ValidateOptions {
                tables: vec!["items".into()],
                tolerance: Tolerance::default(),
                ..options(s.origin.addr, s.target.addr)
            },
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.differences(), 0, "{}", r.human());
        if count() > before {
            overlapped += 1;
        }
        settled += r.tables[0].found.settled;
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writes.await.unwrap();
    assert!(
        overlapped >= 3,
        "writes ran during {overlapped} of {runs} runs"
    );
    assert!(
        settled > 0,
        "some rows were caught in flight and settled on re-read ({runs} runs)"
    );
    s.stop().await;
}

/// The command line: exit status 1 with differences and a JSON report;
/// `--ranges-from` compares only the ranges that differed; three
/// `--split` shares cover every range once and `--merge` joins them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_reports_reruns_differing_ranges_and_merges_shares() {
    let (from, to, mut o, mut t) = shop().await;
    run(&mut o, items(1000, &[])).await;
    run(&mut t, items(1000, &[5, 6])).await;
    let dir = std::env::temp_dir().join(format!("cutover-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let base = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "validate",
            "--from",
            &from.addr.to_string(),
            "--to",
            &to.addr.to_string(),
            "--keyspace",
            "shop",
            "--table",
            "items",
            "--splits",
            "32",
            "--recheck-after-ms",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let (ok, out, err) = cutover_cli(base(&["--report", &file("all.json")])).await;
    assert!(!ok, "differences make the exit status non-zero: {out}{err}");
    assert!(
        out.contains("items: 1000 rows compared, 2 missing, 0 extra, 0 differing"),
        "{out}"
    );
    assert!(
        out.contains("k=5") && out.contains("2 difference(s) remain"),
        "{out}"
    );
    let all: ValidateReport =
        serde_json::from_str(&std::fs::read_to_string(file("all.json")).unwrap()).unwrap();
    let differing = all.tables[0].differing_ranges.clone();
    assert!((1..=2).contains(&differing.len()), "{all:#?}");

    let (ok, out, _) = cutover_cli(base(&[
        "--ranges-from",
        &file("all.json"),
        "--report",
        &file("rerun.json"),
    ]))
    .await;
    assert!(!ok);
    let rerun: ValidateReport =
        serde_json::from_str(&std::fs::read_to_string(file("rerun.json")).unwrap()).unwrap();
    assert_eq!(rerun.tables[0].ranges as usize, differing.len(), "{out}");
    assert_eq!(rerun.tables[0].found.missing, 2);
    assert!(rerun.tables[0].found.rows_compared < 1000);

    let mut shares = Vec::new();
    for k in 1..=3 {
        let f = file(&format!("share{k}.json"));
        // The last share as a Kubernetes Indexed Job names it: 0-based.
        let split = if k < 3 {
            ["--split".to_string(), format!("{k}/3")]
        } else {
            ["--split-index".to_string(), format!("{}/3", k - 1)]
        };
        cutover_cli(base(&[&split[0], &split[1], "--report", &f])).await;
        shares.push(f);
    }
    let reports: Vec<ValidateReport> = shares
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect();
    let ranges: u64 = reports.iter().map(|r| r.tables[0].ranges).sum();
    assert_eq!(ranges, 32, "the shares cover the 32 ranges once");
    let mut merge = vec!["validate".to_string(), "--merge".into()];
    merge.extend(shares.iter().cloned());
    merge.extend(["--report".into(), file("merged.json")]);
    let (ok, out, err) = cutover_cli(merge).await;
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("items: 1000 rows compared, 2 missing"),
        "{out}{err}"
    );
    let merged: ValidateReport =
        serde_json::from_str(&std::fs::read_to_string(file("merged.json")).unwrap()).unwrap();
    assert_eq!(merged.tables[0].ranges, 32);

    // Repaired, the command exits 0.
    let (ok, out, err) = cutover_cli(base(&["--repair"])).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cutover_cli(base(&[])).await;
    assert!(ok && out.contains("no differences"), "{out}{err}");
    std::fs::remove_dir_all(dir).unwrap();
    from.shutdown().await;
    to.shutdown().await;
}

/// A validate stopped part way (its target went down) and started again on
/// its checkpoint compares only the ranges left, and its report still
/// counts the whole table, the differences of finished ranges included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_validate_resumes_and_reports_the_whole_table() {
    let (from, to, mut o, mut t) = shop().await;
    run(&mut o, items(2000, &[])).await;
    let skip: Vec<i32> = (0..2000).step_by(100).collect();
    run(&mut t, items(2000, &skip)).await;
    let dir = std::env::temp_dir().join(format!("cutover-validate-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let checkpoint = dir.join("checkpoint.jsonl");
    let _ = std::fs::remove_file(&checkpoint);
    let options = ValidateOptions {
        tables: vec!["items".into()],
        concurrency: 2,
        splits: 32,
        page_size: 50,
        checkpoint: Some(checkpoint.clone()),
        ..options(from.addr, to.addr)
    };
    let first = tokio::spawn({
        let o = ValidateOptions {
            rate: 4000,
            ..options.clone()
        };
        async move { validate(&o, Vec::new()).await }
    });
    let lines = || common::ranges_done(&checkpoint);
    common::wait_for("some ranges to finish", || std::future::ready(lines() >= 4)).await;
    to.node.set_down(true);
    let e = first.await.unwrap().expect_err("the target went down");
    assert!(e.contains(&to.addr.to_string()), "{e}");
    let done = lines();
    to.node.set_down(false);
    let second = validate(&options, Vec::new()).await.unwrap();
    let items = &second.tables[0];
    assert_eq!(items.ranges_already_done as usize, done);
    let whole = validate(
        &ValidateOptions {
            checkpoint: None,
            ..options.clone()
        },
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        items.ranges as usize + done,
        whole.tables[0].ranges as usize,
        "only the ranges left were compared: {second:#?}"
    );
    assert_eq!(items.found.rows_compared, 2000, "{second:#?}");
    assert_eq!(items.found.missing, 20, "{second:#?}");
    std::fs::remove_dir_all(dir).unwrap();
    from.shutdown().await;
    to.shutdown().await;
}

/// `copy` and `validate` reach clusters by their names in a proxy config,
/// with its logins and TLS (the origin speaks only TLS here), or by
/// host:port with --user and --tls-ca.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_validate_take_logins_and_tls_from_a_config() {
    let pki = common::certs::Pki::new("scan");
    let cert = pki.issue("origin", &["origin.test"]);
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut oc = cutover::node::NodeConfig::new(any);
    oc.users = vec![("app".into(), "s3cret".into())];
    oc.tls = Some(pki.server_config(&cert, None));
    let from = cutover::node::start(oc).await.unwrap();
    let mut tc = cutover::node::NodeConfig::new(any);
    tc.users = vec![("app".into(), "s3cret".into())];
    let to = cutover::node::start(tc).await.unwrap();
    let tls = pki.to("origin.test", None);
    let mut o = Client::connect_tls(from.addr, 4, None, Some(("app", "s3cret")), Some(&tls))
        .await
        .unwrap();
    let mut t = Client::connect(to.addr, 4, None, Some(("app", "s3cret")))
        .await
        .unwrap();
    run(&mut o, SCHEMA.map(String::from)).await;
    run(&mut t, SCHEMA.map(String::from)).await;
    run(&mut o, items(300, &[])).await;
    let file = pki.dir.join("cutover.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [clusters.origin]\ncontact_points = [\"{}\"]\nusername = \"app\"\n\
             [clusters.origin.tls]\nca_file = \"ca.pem\"\nserver_name = \"origin.test\"\n\
             [clusters.target]\ncontact_points = [\"{}\"]\nusername = \"app\"\npassword = \"s3cret\"\n",
            from.addr, to.addr
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        // The origin's password from the environment, the target's from the file.
        cmd.args(args)
            .env("CUTOVER_CLUSTERS__ORIGIN__PASSWORD", "s3cret");
        cmd.output().unwrap()
    };
    let config = file.to_string_lossy().into_owned();
    let by_name = ["--config", &config, "--from", "origin", "--to", "target"];
    let mut copy_args = vec!["copy", "--keyspace", "shop"];
    copy_args.extend(by_name);
    let out = cli(&copy_args);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    // The summary: per table, then the total and its rate.
    assert!(summary.contains("  items: 300 row(s)"), "{summary}");
    assert!(
        summary.contains("copied 300 row(s) of 2 table(s) in"),
        "{summary}"
    );
    let mut validate_args = vec!["validate", "--keyspace", "shop"];
    validate_args.extend(by_name);
    let out = cli(&validate_args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("items: 300 rows compared, 0 missing"),
        "{text}"
    );
    // The same by address, with the flags.
    let (from_addr, ca) = (from.addr.to_string(), pki.ca_file());
    let ca = ca.to_string_lossy();
    let out = cli(&[
        "validate",
        "--keyspace",
        "shop",
        "--from",
        &from_addr,
        "--to",
        &from_addr,
        "--user",
        "app:s3cret",
        "--tls-ca",
        &ca,
        "--tls-server-name",
        "origin.test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong name in the config says which names it has.
    let out = cli(&[
        "validate",
        "--keyspace",
        "shop",
        "--config",
        &config,
        "--from",
        "nope",
        "--to",
        "target",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the config names the clusters origin, target"),
        "{err}"
    );
    from.shutdown().await;
    to.shutdown().await;
}

/// A range where thousands of rows differ is settled in batches as the
/// scan goes (memory stays bounded): every one is still counted, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_differences_in_one_range_are_all_counted() {
    let (from, to, mut o, _t) = shop().await;
    run(&mut o, items(2500, &[])).await;
    let r = validate(
        &ValidateOptions {
            tables: vec!["items".into()],
            // One range: the whole ring.
            split: Some((1, 1)),
            splits: 1,
            ..options(from.addr, to.addr)
        },
        Vec::new(),
    )
    .await
    .unwrap();
    let items = &r.tables[0];
    assert_eq!(items.ranges, 1);
    assert_eq!(
        (items.found.rows_compared, items.found.missing),
        (2500, 2500),
        "{}",
        r.human()
    );
    assert_eq!(items.found.samples.len(), 10, "samples stay at --samples");
    from.shutdown().await;
    to.shutdown().await;
}
