//! The scylla-driver workload shared by the direct and the proxied tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cutover::client::Client;
use cutover::frame::Compression as OurCompression;
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::batch::Batch;
use scylla::statement::unprepared::Statement;
use scylla::value::Counter;
use scylla::{DeserializeValue, SerializeValue};

pub mod certs;
pub mod hostile;
mod shards;
#[allow(unused_imports)]
pub use shards::{two_shards_toml, Fleet, Sharded};

#[derive(Debug, Clone, PartialEq, SerializeValue, DeserializeValue)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

/// Typed rows of a result, for brevity in assertions.
pub trait Rows {
    fn rows_vec<T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>>(self) -> Vec<T>;
    fn one<T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>>(self) -> T;
}

impl Rows for scylla::response::query_result::QueryResult {
    fn rows_vec<T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>>(self) -> Vec<T> {
        self.into_rows_result()
            .unwrap()
            .rows::<T>()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn one<T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>>(self) -> T {
        self.into_rows_result().unwrap().single_row::<T>().unwrap()
    }
}

pub async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the workload on keyspace `ks`; `addr` takes the schema change made
/// on another connection; `executes` counts EXECUTE requests where they land
/// (to check the number of pages), when known.
pub async fn workload(
    addr: std::net::SocketAddr,
    executes: Option<&dyn Fn() -> u64>,
    s: &Session,
    ks: &str,
) {
    workload_over(addr, None, executes, s, ks).await
}

/// `workload`, with `addr` reached over TLS when `tls` is given.
pub async fn workload_over(
    addr: std::net::SocketAddr,
    tls: Option<&cutover::client::TlsTo>,
    executes: Option<&dyn Fn() -> u64>,
    s: &Session,
    ks: &str,
) {
    s.query_unpaged(
        format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
        (),
    )
    .await
    .unwrap();
    s.query_unpaged(format!("CREATE TYPE {ks}.point (x int, y int)"), ())
        .await
        .unwrap();
    s.query_unpaged(
        format!(
            "CREATE TABLE {ks}.events (p text, c int, v text, s text static, l list<int>, st set<text>, \
             m map<text, int>, pt frozen<point>, PRIMARY KEY (p, c))"
        ),
        (),
    )
    .await
    .unwrap();
    s.query_unpaged(
        format!("CREATE TABLE {ks}.ctr (k text PRIMARY KEY, n counter)"),
        (),
    )
    .await
    .unwrap();
    s.query_unpaged(
        format!("CREATE TABLE {ks}.big (p int, c int, v text, PRIMARY KEY (p, c))"),
        (),
    )
    .await
    .unwrap();

    // Prepared and simple inserts; the PREPARED metadata names the partition key.
    let ins = s
        .prepare(format!(
            "INSERT INTO {ks}.events (p, c, v) VALUES (?, ?, ?)"
        ))
        .await
        .unwrap();
    assert_eq!(
        ins.get_variable_pk_indexes().len(),
        1,
        "token-aware routing needs the partition key index"
    );
    assert!(ins.is_token_aware());
    for i in 0..20 {
        s.execute_unpaged(&ins, ("a", i, format!("v{i}")))
            .await
            .unwrap();
    }
    s.query_unpaged(
        format!("INSERT INTO {ks}.events (p, c, v) VALUES ('b', 1, 'simple')"),
        (),
    )
    .await
    .unwrap();

    // Clustering range.
    let rng = s
        .prepare(format!(
            "SELECT c, v FROM {ks}.events WHERE p = ? AND c >= ? AND c < ?"
        ))
        .await
        .unwrap();
    let rows: Vec<(i32, String)> = s
        .execute_unpaged(&rng, ("a", 5, 9))
        .await
        .unwrap()
        .rows_vec();
    assert_eq!(
        rows,
        (5..9).map(|i| (i, format!("v{i}"))).collect::<Vec<_>>()
    );

    // A batch with a static column.
    let mut batch = Batch::default();
    batch.append_statement(ins.clone());
    batch.append_statement(Statement::new(format!(
        "UPDATE {ks}.events SET s = 'static-c' WHERE p = 'c'"
    )));
    batch.append_statement(ins.clone());
    s.batch(&batch, (("c", 1, "one"), (), ("c", 2, "two")))
        .await
        .unwrap();
    let rows: Vec<(i32, String, String)> = s
        .query_unpaged(format!("SELECT c, v, s FROM {ks}.events WHERE p = 'c'"), ())
        .await
        .unwrap()
        .rows_vec();
    assert_eq!(
        rows,
        vec![
            (1, "one".into(), "static-c".into()),
            (2, "two".into(), "static-c".into())
        ]
    );

    // LWT.
    let lwt = s
        .prepare(format!(
            "INSERT INTO {ks}.events (p, c, v) VALUES (?, ?, ?) IF NOT EXISTS"
        ))
        .await
        .unwrap();
    let applied = |r: scylla::response::query_result::QueryResult| -> bool {
        let rows = r.into_rows_result().unwrap();
        let (a,): (bool,) = rows.first_row::<(bool,)>().unwrap_or_else(|_| {
            // Not applied: [applied] comes with the existing row's columns.
            let row = rows
                .rows::<scylla::value::Row>()
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            (row.columns[0].as_ref().unwrap().as_boolean().unwrap(),)
        });
        a
    };
    assert!(applied(
        s.execute_unpaged(&lwt, ("lwt", 1, "first")).await.unwrap()
    ));
    assert!(!applied(
        s.execute_unpaged(&lwt, ("lwt", 1, "second")).await.unwrap()
    ));
    let v: (String,) = s
        .query_unpaged(
            format!("SELECT v FROM {ks}.events WHERE p = 'lwt' AND c = 1"),
            (),
        )
        .await
        .unwrap()
        .one();
    assert_eq!(v.0, "first");

    // Counters (bound as bigint deltas).
    let inc = s
        .prepare(format!("UPDATE {ks}.ctr SET n = n + ? WHERE k = ?"))
        .await
        .unwrap();
    s.execute_unpaged(&inc, (Counter(5), "k")).await.unwrap();
    s.execute_unpaged(&inc, (Counter(3), "k")).await.unwrap();
    let (c,): (Counter,) = s
        .query_unpaged(format!("SELECT n FROM {ks}.ctr WHERE k = 'k'"), ())
        .await
        .unwrap()
        .one();
    assert_eq!(c, Counter(8));

    // Collections and a UDT, bound and read back.
    let coll = s
        .prepare(format!(
            "INSERT INTO {ks}.events (p, c, l, st, m, pt) VALUES (?, ?, ?, ?, ?, ?)"
        ))
        .await
        .unwrap();
    let set: BTreeSet<String> = ["x".to_string(), "y".to_string()].into();
    let map: BTreeMap<String, i32> = [("k".to_string(), 7)].into();
    s.execute_unpaged(
        &coll,
        ("col", 1, vec![3, 1, 2], &set, &map, Point { x: 4, y: 5 }),
    )
    .await
    .unwrap();
    s.query_unpaged(
        format!("UPDATE {ks}.events SET l = l + [9], st = st + {{'z'}} WHERE p = 'col' AND c = 1"),
        (),
    )
    .await
    .unwrap();
    type Coll = (Vec<i32>, BTreeSet<String>, BTreeMap<String, i32>, Point);
    let got: Coll = s
        .query_unpaged(
            format!("SELECT l, st, m, pt FROM {ks}.events WHERE p = 'col' AND c = 1"),
            (),
        )
        .await
        .unwrap()
        .one();
    assert_eq!(got.0, vec![3, 1, 2, 9]);
    assert_eq!(
        got.1,
        ["x", "y", "z"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(got.2, map);
    assert_eq!(got.3, Point { x: 4, y: 5 });

    // USING TIMESTAMP ordering, and WRITETIME.
    s.query_unpaged(
        format!("INSERT INTO {ks}.events (p, c, v) VALUES ('ts', 1, 'new') USING TIMESTAMP 2000"),
        (),
    )
    .await
    .unwrap();
    s.query_unpaged(
        format!("INSERT INTO {ks}.events (p, c, v) VALUES ('ts', 1, 'old') USING TIMESTAMP 1000"),
        (),
    )
    .await
    .unwrap();
    let (v, wt): (String, i64) = s
        .query_unpaged(
            format!("SELECT v, writetime(v) FROM {ks}.events WHERE p = 'ts' AND c = 1"),
            (),
        )
        .await
        .unwrap()
        .one();
    assert_eq!((v.as_str(), wt), ("new", 2000));

    // TTL expiry.
    s.query_unpaged(
        format!("INSERT INTO {ks}.events (p, c, v) VALUES ('ttl', 1, 'brief') USING TTL 1"),
        (),
    )
    .await
    .unwrap();
    wait_for("the TTL to expire the row", || async {
        s.query_unpaged(
            format!("SELECT v FROM {ks}.events WHERE p = 'ttl' AND c = 1"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num()
            == 0
    })
    .await;

    // Paging through 10,000 rows, 100 per page.
    let big = s
        .prepare(format!("INSERT INTO {ks}.big (p, c, v) VALUES (?, ?, ?)"))
        .await
        .unwrap();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..10_000i32 {
        pending.push(s.execute_unpaged(&big, (i % 7, i, format!("row{i}"))));
        if pending.len() >= 64 {
            pending.try_next().await.unwrap();
        }
    }
    while pending.try_next().await.unwrap().is_some() {}
    let mut scan = s
        .prepare(format!("SELECT p, c, v FROM {ks}.big"))
        .await
        .unwrap();
    scan.set_page_size(100);
    let pager = s.execute_iter(scan, ()).await.unwrap();
    let all: Vec<(i32, i32, String)> = pager.rows_stream().unwrap().try_collect().await.unwrap();
    assert_eq!(all.len(), 10_000);
    let mut cs: Vec<i32> = all.iter().map(|r| r.1).collect();
    cs.sort();
    assert_eq!(cs, (0..10_000).collect::<Vec<_>>());
    assert!(all
        .iter()
        .all(|(p, c, v)| *p == c % 7 && *v == format!("row{c}")));
    let before = executes.map(|f| f());
    let mut scan = s
        .prepare(format!("SELECT c FROM {ks}.big WHERE p = ?"))
        .await
        .unwrap();
    scan.set_page_size(100);
    let part: Vec<(i32,)> = s
        .execute_iter(scan, (3,))
        .await
        .unwrap()
        .rows_stream::<(i32,)>()
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        part.into_iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..10_000).filter(|i| i % 7 == 3).collect::<Vec<_>>()
    );
    if let (Some(f), Some(before)) = (executes, before) {
        assert_eq!(f() - before, 15, "1,429 rows at 100 per page take 15 pages");
    }

    // A schema change made on another connection reaches the driver as an event.
    let mut other = Client::connect_tls(addr, 4, Some(OurCompression::Lz4), None, tls)
        .await
        .unwrap();
    other
        .query(&format!("CREATE TABLE {ks}.late (k int PRIMARY KEY)"))
        .await
        .unwrap();
    wait_for(
        "the driver's metadata to learn of the new table",
        || async {
            s.get_cluster_state()
                .get_keyspace(ks)
                .is_some_and(|k| k.tables.contains_key("late"))
        },
    )
    .await;
}

/// A minimal HTTP/1.1 exchange (the admin API, the node's control port):
/// the status code and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Two embedded nodes (origin, target) on free loopback ports.
pub async fn two_nodes() -> (cutover::node::RunningNode, cutover::node::RunningNode) {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let origin = cutover::node::start(cutover::node::NodeConfig::new(any))
        .await
        .unwrap();
    let target = cutover::node::start(cutover::node::NodeConfig::new(any))
        .await
        .unwrap();
    (origin, target)
}

/// The admin API of `proxy` on a free loopback port; cancel the token to
/// stop it.
pub async fn serve_admin(
    proxy: &cutover::proxy::RunningProxy,
    token: Option<&str>,
    set_log_filter: Option<cutover::admin::SetLogFilter>,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = cutover::admin::serve(
        proxy.proxy.clone(),
        cutover::admin::AdminOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: token.map(String::from),
            set_log_filter,
        },
        stop.clone(),
    )
    .await
    .unwrap()
    .addr;
    (addr, stop)
}

/// Ranges a `copy`/`validate` checkpoint file records as finished.
pub fn ranges_done(checkpoint: &std::path::Path) -> usize {
    std::fs::read_to_string(checkpoint)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// Does `node`, asked directly, have row `k` in `table` (`ks.t`)?
pub async fn node_has_row(node: std::net::SocketAddr, table: &str, k: i32) -> bool {
    let mut c = Client::connect(node, 4, None, None).await.unwrap();
    match c
        .query(&format!("SELECT v FROM {table} WHERE k = {k}"))
        .await
        .unwrap()
    {
        cutover::protocol::response::ResultBody::Rows(r) => !r.rows.is_empty(),
        other => panic!("{other:?}"),
    }
}

/// Two nodes, a proxy in front (quick-start config, adjustable), and its
/// admin API.
pub struct Setup {
    pub origin: cutover::node::RunningNode,
    pub target: cutover::node::RunningNode,
    pub proxy: cutover::proxy::RunningProxy,
    pub admin: std::net::SocketAddr,
    pub stop_admin: tokio_util::sync::CancellationToken,
}

impl Setup {
    pub async fn start(
        token: Option<&str>,
        set_log_filter: Option<cutover::admin::SetLogFilter>,
    ) -> Setup {
        Setup::start_with(token, set_log_filter, |_| {}).await
    }

    pub async fn start_with(
        token: Option<&str>,
        set_log_filter: Option<cutover::admin::SetLogFilter>,
        configure: impl FnOnce(&mut cutover::config::Config),
    ) -> Setup {
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (origin, target) = two_nodes().await;
        let mut cfg = cutover::config::Config::quick_start(
            &origin.addr.to_string(),
            &target.addr.to_string(),
            any,
            None,
        )
        .unwrap();
        configure(&mut cfg);
        let proxy = cutover::proxy::start(cfg).await.unwrap();
        let (admin, stop_admin) = serve_admin(&proxy, token, set_log_filter).await;
        Setup {
            origin,
            target,
            proxy,
            admin,
            stop_admin,
        }
    }

    pub async fn client_with_table(&self) -> Client {
        let mut c = Client::connect(self.proxy.addr, 4, None, None)
            .await
            .unwrap();
        c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
        c.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
            .await
            .unwrap();
        c
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = http(self.admin, "GET", "/metrics", None).await;
        assert_eq!(status, 200);
        body
    }

    pub async fn histograms(&self) -> serde_json::Value {
        let (status, body) = http(self.admin, "GET", "/v1/histograms", None).await;
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }

    pub async fn ready(&self) -> (u16, serde_json::Value) {
        let (status, body) = http(self.admin, "GET", "/health/ready", None).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    pub async fn stop(self) {
        self.stop_admin.cancel();
        self.proxy.stop().await;
        self.origin.shutdown().await;
        self.target.shutdown().await;
    }
}

/// The `cutover` binary with `args`: (exit success, stdout, stderr).
pub async fn cutover_cli(args: Vec<String>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
