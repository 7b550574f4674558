//! What the admin API shows after known traffic: request counts per opcode,
//! latency in the right cluster's series at the right percentile, errors
//! under their code, readiness following the primary's health.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use common::{http, wait_for, Setup};
use cutover::admin::SetLogFilter;
use cutover::client::Client;
use cutover::frame::{Frame, Opcode};
use cutover::node::faults::{ErrorRule, InjectedError};
use cutover::protocol::reader::RawValue;
use cutover::protocol::request::{Query, QueryParams};
use cutover::protocol::{ErrorCode, ErrorFrame};
use serde_json::Value;

/// The value of the sample named exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Sum of `name`'s samples whose labels contain every `labels` pair.
fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The series of `/v1/histograms` with these fields.
fn series<'a>(h: &'a Value, family: &str, fields: &[(&str, &str)]) -> &'a Value {
    h["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["family"] == family && fields.iter().all(|(k, v)| s[*k] == *v))
        .unwrap_or_else(|| panic!("no {family} series with {fields:?} in {h}"))
}

fn insert(c: &Client, p: &cutover::protocol::response::Prepared, k: i32) -> Bytes {
    c.execute_body(
        p,
        vec![
            RawValue::Bytes(Bytes::copy_from_slice(&k.to_be_bytes())),
            RawValue::Bytes(Bytes::from_static(b"value")),
        ],
    )
}

#[tokio::test]
async fn request_counts_per_opcode_match_exactly() {
    let s = Setup::start(None, None).await;
    let mut c = s.client_with_table().await; // STARTUP, QUERY x2
    for _ in 0..2 {
        let a = c.request(Opcode::Options, Bytes::new()).await.unwrap();
        assert_eq!(a.op(), Some(Opcode::Supported));
    }
    let p = c
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    for k in 0..5 {
        let body = insert(&c, &p, k);
        let a = c.request(Opcode::Execute, body).await.unwrap();
        assert_eq!(a.op(), Some(Opcode::Result));
    }
    c.query("SELECT * FROM ks.t WHERE k = 1").await.unwrap();
    assert!(c.query("SELEC nonsense").await.is_err());
    let mut reg = bytes::BytesMut::new();
    cutover::protocol::writer::put_string_list(&mut reg, &["SCHEMA_CHANGE"]);
    let a = c.request(Opcode::Register, reg.freeze()).await.unwrap();
    assert_eq!(a.op(), Some(Opcode::Ready));
    let mut unknown = Frame::request(4, 99, Opcode::Options, Bytes::new());
    unknown.opcode = 0x42;
    c.send(unknown).await.unwrap();
    let a = c.recv_stream(99).await.unwrap();
    assert_eq!(
        ErrorFrame::decode(&a.body).unwrap().code,
        ErrorCode::PROTOCOL_ERROR
    );

    let m = s.metrics().await;
    for (opcode, n) in [
        ("STARTUP", 1.0),
        ("OPTIONS", 2.0),
        ("QUERY", 4.0),
        ("PREPARE", 1.0),
        ("EXECUTE", 5.0),
        ("REGISTER", 1.0),
        ("UNKNOWN", 1.0),
    ] {
        let name = format!("cutover_client_requests_total{{opcode=\"{opcode}\"}}");
        assert_eq!(sample(&m, &name), Some(n), "{name}");
    }
    // Every one of the 15 frames is in the client-visible latency, once its
    // answer has been written (recorded just after the socket write).
    let admin = s.admin;
    wait_for("all 15 answers in the latency series", || async move {
        let (_, m) = http(admin, "GET", "/metrics", None).await;
        sum_of(&m, "cutover_request_duration_seconds_count", &[]) == 15.0
    })
    .await;
    let m = s.metrics().await;
    let count = |labels: &[&str]| sum_of(&m, "cutover_request_duration_seconds_count", labels);
    assert_eq!(count(&["op=\"write\""]), 5.0);
    assert_eq!(count(&["op=\"read\""]), 1.0);
    assert_eq!(count(&["op=\"other\""]), 9.0);
    assert_eq!(count(&["outcome=\"syntax_error\""]), 1.0);
    assert_eq!(count(&["outcome=\"protocol_error\""]), 1.0);
    // Both clusters saw the five writes; only the origin the read.
    for cluster in ["origin", "target"] {
        let c = format!("cluster=\"{cluster}\"");
        assert_eq!(
            sum_of(
                &m,
                "cutover_cluster_request_duration_seconds_count",
                &[&c, "op=\"write\""]
            ),
            5.0
        );
    }
    assert_eq!(
        sum_of(
            &m,
            "cutover_cluster_request_duration_seconds_count",
            &["cluster=\"target\"", "op=\"read\""]
        ),
        0.0
    );
    assert_eq!(sample(&m, "cutover_prepared_statements"), Some(1.0));
    assert_eq!(sample(&m, "cutover_client_connections"), Some(1.0));
    assert_eq!(
        sample(&m, "cutover_upstream_connections{cluster=\"origin\"}"),
        Some(1.0)
    );
    s.stop().await;
}

#[tokio::test]
async fn injected_latency_shows_in_that_clusters_series_at_the_right_percentile() {
    let s = Setup::start(None, None).await;
    let mut c = s.client_with_table().await;
    let p = c
        .prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    for k in 0..99 {
        let body = insert(&c, &p, k);
        c.request(Opcode::Execute, body).await.unwrap();
    }
    s.target
        .node
        .faults
        .latency_us
        .store(300_000, Ordering::SeqCst);
    let body = insert(&c, &p, 99);
    let a = c.request(Opcode::Execute, body).await.unwrap();
    assert_eq!(a.op(), Some(Opcode::Result));
    s.target.node.faults.clear();

    let h = s.histograms().await;
    assert_eq!(h["unit"], "microseconds");
    let target = series(
        &h,
        "cutover_cluster_request_duration_seconds",
        &[("cluster", "target"), ("op", "write"), ("outcome", "ok")],
    );
    let cum = &target["cumulative"];
    assert_eq!(cum["count"], 100);
    let (p99, p999, max) = (
        cum["p99"].as_u64().unwrap(),
        cum["p999"].as_u64().unwrap(),
        cum["max"].as_u64().unwrap(),
    );
    assert!(
        p99 < 300_000,
        "the 99th of 100 writes is a fast one: {p99} µs"
    );
    assert!(
        p999 >= 300_000,
        "the slow one is above p99: p99.9 = {p999} µs"
    );
    assert!((300_000..3_000_000).contains(&max), "max {max} µs");
    assert_eq!(target["recent"]["count"], 100);
    let origin = series(
        &h,
        "cutover_cluster_request_duration_seconds",
        &[("cluster", "origin"), ("op", "write"), ("outcome", "ok")],
    );
    assert!(
        origin["cumulative"]["max"].as_u64().unwrap() < 300_000,
        "the origin was not delayed: {origin}"
    );
    let client = series(
        &h,
        "cutover_request_duration_seconds",
        &[("op", "write"), ("outcome", "ok")],
    );
    assert!(client["cumulative"]["max"].as_u64().unwrap() >= 300_000);
    assert!(client["cumulative"]["p9999"].as_u64().unwrap() >= 300_000);
    s.stop().await;
}

#[tokio::test]
async fn errors_show_under_their_code() {
    let s = Setup::start(None, None).await;
    let mut c = s.client_with_table().await;
    *s.target.node.faults.error.lock() = Some(ErrorRule {
        error: InjectedError::WriteTimeout,
        share: 1.0,
        opcode: None,
        keyspace: None,
    });
    let q = Query {
        text: "INSERT INTO ks.t (k, v) VALUES (1, 'a')".into(),
        params: QueryParams {
            consistency: 1,
            ..Default::default()
        },
    }
    .encode(4);
    let a = c.request(Opcode::Query, q.clone()).await.unwrap();
    assert_eq!(
        ErrorFrame::decode(&a.body).unwrap().code,
        ErrorCode::WRITE_TIMEOUT
    );
    s.target.node.faults.clear();
    // An unreachable target: the client gets UNAVAILABLE, counted as such.
    s.target.node.set_down(true);
    let a = c.request(Opcode::Query, q).await.unwrap();
    assert_eq!(
        ErrorFrame::decode(&a.body).unwrap().code,
        ErrorCode::UNAVAILABLE
    );

    let admin = s.admin;
    wait_for("both failed writes in the client series", || async move {
        let (_, m) = http(admin, "GET", "/metrics", None).await;
        sum_of(
            &m,
            "cutover_request_duration_seconds_count",
            &["op=\"write\""],
        ) == 2.0
    })
    .await;
    let m = s.metrics().await;
    // The node's own WRITE_TIMEOUT comes from the cluster; UNAVAILABLE for
    // a node that is down is the proxy's conclusion.
    for (code, source) in [("write_timeout", "cluster"), ("unavailable", "proxy")] {
        assert_eq!(
            sample(
                &m,
                &format!(
                    "cutover_cluster_errors_total{{cluster=\"target\",code=\"{code}\",source=\"{source}\"}}"
                )
            ),
            Some(1.0),
            "{code}"
        );
        assert_eq!(
            sum_of(
                &m,
                "cutover_request_duration_seconds_count",
                &["op=\"write\"", &format!("outcome=\"{code}\"")]
            ),
            1.0
        );
    }
    assert_eq!(
        sample(
            &m,
            "cutover_mirror_write_failures_total{cluster=\"target\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "cutover_mirror_write_failures_total{cluster=\"origin\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sum_of(&m, "cutover_cluster_errors_total", &["cluster=\"origin\""]),
        0.0
    );
    // Both were the clusters' answers, passed on: not the proxy's own
    // request errors. A body the proxy cannot read is, and the client's.
    assert_eq!(
        sample(&m, "cutover_request_errors_total{from=\"client\"}"),
        Some(0.0)
    );
    let truncated = bytes::Bytes::from_static(&[0, 0, 0, 9, b'S']);
    let a = c.request(Opcode::Query, truncated).await.unwrap();
    let e = ErrorFrame::decode(&a.body).unwrap();
    assert_eq!(e.code, ErrorCode::PROTOCOL_ERROR, "{}", e.message);
    let m = s.metrics().await;
    assert_eq!(
        sample(&m, "cutover_request_errors_total{from=\"client\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "cutover_request_errors_total{from=\"proxy\"}"),
        Some(0.0)
    );
    s.target.node.set_down(false);
    s.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_primary_and_reports_every_cluster() {
    let s = Setup::start(None, None).await;
    let (status, body) = s.ready().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["clusters"]["origin"]["status"], "up");
    assert_eq!(body["primary"], "origin");

    s.origin.node.set_down(true);
    let admin = s.admin;
    wait_for("503 with the origin down", || async move {
        let (status, _) = http(admin, "GET", "/health/ready", None).await;
        status == 503
    })
    .await;
    let (_, body) = s.ready().await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["clusters"]["origin"]["status"], "down");
    assert!(body["clusters"]["origin"]["error"].as_str().is_some());
    assert_eq!(body["clusters"]["target"]["status"], "up");
    let m = s.metrics().await;
    assert_eq!(
        sample(&m, "cutover_cluster_up{cluster=\"origin\"}"),
        Some(0.0)
    );
    assert_eq!(sample(&m, "cutover_ready"), Some(0.0));

    s.origin.node.set_down(false);
    wait_for("200 with the origin back", || async move {
        let (status, _) = http(admin, "GET", "/health/ready", None).await;
        status == 200
    })
    .await;

    // The target is not the primary: its outage shows, readiness stays.
    s.target.node.set_down(true);
    wait_for("the target reported down", || async move {
        let (_, body) = http(admin, "GET", "/health/ready", None).await;
        body.contains("\"target\":{\"cluster\":\"target\",\"roles\":[\"default.target\"],\"primary\":false,\"status\":\"down\"")
    })
    .await;
    let (status, body) = s.ready().await;
    assert_eq!(status, 200, "{body}");
    assert!(body["clusters"]["target"]["since"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    s.target.node.set_down(false);
    let (status, _) = http(s.admin, "GET", "/health/live", None).await;
    assert_eq!(status, 200);
    s.stop().await;
}

#[tokio::test]
async fn a_token_guards_the_admin_api_and_the_log_filter_changes_live() {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let set: SetLogFilter = Arc::new(move |f: &str| {
        f.parse::<tracing_subscriber::EnvFilter>()
            .map_err(|e| e.to_string())?;
        record.lock().push(f.to_string());
        Ok(())
    });
    let s = Setup::start(Some("s3cret"), Some(set)).await;
    let (status, body) = http(s.admin, "GET", "/metrics", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Bearer"));
    let (status, _) = http(s.admin, "GET", "/health/live", None).await;
    assert_eq!(status, 401);

    let authed = |method: &'static str, path: &'static str, body: Option<&'static str>| {
        let admin = s.admin;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut sock = tokio::net::TcpStream::connect(admin).await.unwrap();
            let b = body.unwrap_or("");
            let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
            sock.write_all(req.as_bytes()).await.unwrap();
            let mut raw = String::new();
            sock.read_to_string(&mut raw).await.unwrap();
            raw
        }
    };
    let r = authed("GET", "/metrics", None).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains("cutover_build_info{version=\"0.1.0\",commit=\""),
        "{r}"
    );
    // The route in force, as the config spells it.
    assert!(
        r.contains(
            "cutover_route_info{shard=\"default\",phase=\"dual-write\",write_mode=\"sync\"} 1"
        ),
        "{r}"
    );
    // Series a rate() needs are there before the first error.
    for cluster in ["origin", "target"] {
        let zero = format!(
            "cutover_cluster_errors_total{{cluster=\"{cluster}\",code=\"unavailable\",source=\"proxy\"}} 0"
        );
        assert!(r.contains(&zero), "{zero} in {r}");
    }
    let r = authed(
        "PUT",
        "/v1/log-level",
        Some(r#"{"filter": "info,cutover=debug"}"#),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = authed(
        "PUT",
        "/v1/log-level",
        Some(r#"{"filter": "info,cutover=loud"}"#),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("invalid filter"), "{r}");
    let r = authed("PUT", "/v1/log-level", Some("not json")).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(*seen.lock(), vec!["info,cutover=debug".to_string()]);
    s.stop().await;
}

#[tokio::test]
async fn listed_tenants_get_their_own_series() {
    let s = Setup::start_with(None, None, |c| {
        c.tenants.key = cutover::config::TenantKey::Keyspace {
            keyspace: "^t_(.*)$".into(),
        };
        c.metrics.tenants = vec!["wayne".into(), "pym".into()];
        c.tenants.entries = vec![cutover::config::TenantEntry {
            tenant: "pym".into(),
            shard: None,
            phase: Some(cutover::config::Phase::OriginOnly),
            status: cutover::config::TenantStatus::ReadOnly,
            write_mode: None,
        }];
    })
    .await;
    let mut c = Client::connect(s.proxy.addr, 4, None, None).await.unwrap();
    for ks in ["t_wayne", "t_stark"] {
        c.query(&format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")).await.unwrap();
        c.query(&format!("CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)"))
            .await
            .unwrap();
    }
    for k in 0..3 {
        c.query(&format!("INSERT INTO t_wayne.t (k, v) VALUES ({k}, 'w')"))
            .await
            .unwrap();
        c.query(&format!("INSERT INTO t_stark.t (k, v) VALUES ({k}, 's')"))
            .await
            .unwrap();
    }
    // Prepared statements resolve their tenant from the keyspace too.
    c.query("USE t_wayne").await.unwrap();
    let p = c.prepare("SELECT v FROM t WHERE k = ?").await.unwrap();
    let body = c.execute_body(
        &p,
        vec![RawValue::Bytes(Bytes::copy_from_slice(&1i32.to_be_bytes()))],
    );
    c.request(Opcode::Execute, body).await.unwrap();

    let admin = s.admin;
    wait_for("wayne's read in its series", || async move {
        let (_, m) = http(admin, "GET", "/metrics", None).await;
        sum_of(
            &m,
            "cutover_tenant_request_duration_seconds_count",
            &["op=\"read\""],
        ) == 1.0
    })
    .await;
    let m = s.metrics().await;
    let tenant =
        |labels: &[&str]| sum_of(&m, "cutover_tenant_request_duration_seconds_count", labels);
    assert_eq!(tenant(&["tenant=\"wayne\"", "op=\"write\""]), 3.0);
    assert_eq!(tenant(&["tenant=\"wayne\"", "op=\"read\""]), 1.0);
    assert!(
        !m.contains("tenant=\"stark\""),
        "unlisted tenants get no series"
    );
    // The route in force: wayne's (no entry) the default's, pym's its entry's.
    assert!(
        m.contains("cutover_tenant_route_info{tenant=\"wayne\",shard=\"default\",phase=\"dual-write\",status=\"read-write\",write_mode=\"sync\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("cutover_tenant_route_info{tenant=\"pym\",shard=\"default\",phase=\"origin-only\",status=\"read-only\",write_mode=\"sync\"} 1"),
        "{m}"
    );
    s.stop().await;
}

/// The live page comes from the binary with nothing fetched from elsewhere,
/// and without the token (it holds no data); the data it polls still needs
/// the token.
#[tokio::test]
async fn the_live_page_is_served_whole_and_its_data_needs_the_token() {
    let s = Setup::start(Some("s3cret"), None).await;
    for path in ["/", "/dashboard"] {
        let (status, body) = http(s.admin, "GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.starts_with("<!doctype html>"), "{body}");
        for id in ["latency", "legs", "rate", "errors"] {
            assert!(body.contains(&format!("<canvas id=\"{id}\">")), "{id}");
        }
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!body.contains(external), "no external asset: {external}");
        }
    }
    let (status, _) = http(s.admin, "GET", "/metrics", None).await;
    assert_eq!(status, 401, "the data needs the token");
    s.stop().await;
}
