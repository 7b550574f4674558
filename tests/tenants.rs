//! The directory on the default shard: tenants by keyspace with their own
//! phase and status; a read-only tenant's writes refused with 0x2100 naming
//! it while other tenants are untouched; a BATCH across routes refused;
//! entries changed by reloading the file.

mod common;

use std::net::SocketAddr;

use common::{http, node_has_row, serve_admin, two_nodes};
use cutover::client::{Client, ClientError};
use cutover::config::Config;
use cutover::frame::Opcode;
use cutover::protocol::request::{Batch, BatchStatement};
use cutover::protocol::response::ResultBody;
use cutover::protocol::{ErrorCode, ErrorFrame};

fn config_text(origin: SocketAddr, target: SocketAddr, wayne: &str, stark: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\
         [clusters.origin]\ncontact_points = [\"{origin}\"]\n\
         [clusters.target]\ncontact_points = [\"{target}\"]\n\
         [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\n\
         [[tenants.entries]]\ntenant = \"wayne\"\nstatus = \"{wayne}\"\n\
         [[tenants.entries]]\ntenant = \"stark\"\nphase = \"origin-only\"\nstatus = \"{stark}\"\n"
    )
}

async fn has_row(node: SocketAddr, ks: &str) -> bool {
    node_has_row(node, &format!("{ks}.t"), 1).await
}

/// A proxy started from `text` written to `dir/cutover.toml`, its admin
/// API, and a client with the tables `t.t` of `keyspaces` created.
async fn start_from_file(
    dir: &std::path::Path,
    text: String,
    keyspaces: &[&str],
) -> (
    cutover::proxy::RunningProxy,
    SocketAddr,
    tokio_util::sync::CancellationToken,
    Client,
    std::path::PathBuf,
) {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("cutover.toml");
    std::fs::write(&file, text).unwrap();
    let cfg = Config::load(&file, Vec::new()).unwrap();
    let proxy = cutover::proxy::start_from(cfg, Some(file.clone()))
        .await
        .unwrap();
    let (admin, stop_admin) = serve_admin(&proxy, None, None).await;
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    for ks in keyspaces {
        c.query(&format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")).await.unwrap();
        c.query(&format!("CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)"))
            .await
            .unwrap();
    }
    (proxy, admin, stop_admin, c, file)
}

fn server_error(r: Result<ResultBody, ClientError>) -> ErrorFrame {
    match r {
        Err(ClientError::Server(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn tenants_take_their_own_phase_and_status() {
    let (origin, target) = two_nodes().await;
    let dir = std::env::temp_dir().join(format!("cutover-tenants-{}", std::process::id()));
    let text = config_text(origin.addr, target.addr, "read-only", "read-write");
    let (proxy, admin, stop_admin, mut c, file) =
        start_from_file(&dir, text, &["t_wayne", "t_stark", "t_other"]).await;

    // wayne is read-only: its writes are refused, naming it; reads work.
    let e = server_error(
        c.query("INSERT INTO t_wayne.t (k, v) VALUES (1, 'x')")
            .await,
    );
    assert_eq!(e.code, ErrorCode::UNAUTHORIZED);
    assert!(
        e.message.contains("\"wayne\"") && e.message.contains("read-only"),
        "{}",
        e.message
    );
    c.query("SELECT v FROM t_wayne.t WHERE k = 1")
        .await
        .unwrap();
    assert!(!has_row(origin.addr, "t_wayne").await && !has_row(target.addr, "t_wayne").await);

    // stark is origin-only; others follow the default route (dual-write).
    c.query("INSERT INTO t_stark.t (k, v) VALUES (1, 's')")
        .await
        .unwrap();
    c.query("INSERT INTO t_other.t (k, v) VALUES (1, 'o')")
        .await
        .unwrap();
    assert!(has_row(origin.addr, "t_stark").await && !has_row(target.addr, "t_stark").await);
    assert!(has_row(origin.addr, "t_other").await && has_row(target.addr, "t_other").await);
    // Prepared statements follow their keyspace's tenant too.
    let p = c
        .prepare("INSERT INTO t_wayne.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    let e = server_error(
        c.execute(
            &p,
            vec![
                cutover::protocol::reader::RawValue::Bytes(bytes::Bytes::from_static(&[
                    0, 0, 0, 2,
                ])),
                cutover::protocol::reader::RawValue::Bytes(bytes::Bytes::from_static(b"y")),
            ],
        )
        .await,
    );
    assert_eq!(e.code, ErrorCode::UNAUTHORIZED);

    // A BATCH across routes is refused; within one route it works.
    let batch = |a: &str, b: &str| {
        Batch {
            kind: 0,
            children: vec![
                cutover::protocol::request::BatchChild {
                    statement: BatchStatement::Query(format!(
                        "INSERT INTO {a}.t (k, v) VALUES (5, 'b')"
                    )),
                    values: vec![],
                },
                cutover::protocol::request::BatchChild {
                    statement: BatchStatement::Query(format!(
                        "INSERT INTO {b}.t (k, v) VALUES (6, 'b')"
                    )),
                    values: vec![],
                },
            ],
            consistency: 1,
            serial_consistency: None,
            timestamp: None,
            keyspace: None,
            now_in_seconds: None,
        }
        .encode(4)
    };
    let a = c
        .request(Opcode::Batch, batch("t_stark", "t_other"))
        .await
        .unwrap();
    let e = ErrorFrame::decode(&a.body).unwrap();
    assert_eq!(e.code, ErrorCode::INVALID);
    assert!(
        e.message.contains("stark") && e.message.contains("other"),
        "{}",
        e.message
    );
    let a = c
        .request(Opcode::Batch, batch("t_other", "t_other"))
        .await
        .unwrap();
    assert_eq!(a.op(), Some(Opcode::Result));

    // The file moves wayne to read-write and stark to not-ready.
    std::fs::write(
        &file,
        config_text(origin.addr, target.addr, "read-write", "not-ready"),
    )
    .unwrap();
    let (status, body) = http(admin, "POST", "/v1/reload", None).await;
    assert_eq!(status, 200, "{body}");
    c.query("INSERT INTO t_wayne.t (k, v) VALUES (1, 'x')")
        .await
        .unwrap();
    assert!(has_row(origin.addr, "t_wayne").await && has_row(target.addr, "t_wayne").await);
    let e = server_error(c.query("SELECT v FROM t_stark.t WHERE k = 1").await);
    assert!(
        e.message.contains("not-ready") && e.message.contains("reads and writes"),
        "{}",
        e.message
    );
    let (_, body) = http(admin, "GET", "/v1/policy", None).await;
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["tenants"]["stark"]["status"], "not-ready");
    assert_eq!(p["tenants"]["stark"]["phase"], "origin-only");

    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn turning_a_tenant_read_only_waits_for_its_writes_under_way() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let (origin, target) = two_nodes().await;
    let dir = std::env::temp_dir().join(format!("cutover-fence-{}", std::process::id()));
    let text = config_text(origin.addr, target.addr, "read-write", "read-write");
    let (proxy, admin, stop_admin, mut c, file) = start_from_file(&dir, text, &["t_wayne"]).await;

    // Five writes for wayne, held up by the origin.
    origin.node.faults.hang.store(true, Ordering::SeqCst);
    let mut writes = Vec::new();
    for k in 0..5 {
        let addr = proxy.addr;
        writes.push(tokio::spawn(async move {
            let mut w = Client::connect(addr, 4, None, None).await.unwrap();
            w.query(&format!(
                "INSERT INTO t_wayne.t (k, v) VALUES ({k}, 'before')"
            ))
            .await
        }));
    }
    let p = proxy.proxy.clone();
    common::wait_for("five writes under way", || {
        let p = p.clone();
        async move { p.metrics().in_flight.load(Ordering::SeqCst) == 5 }
    })
    .await;

    // wayne turns read-only: the reload waits for those five.
    std::fs::write(
        &file,
        config_text(origin.addr, target.addr, "read-only", "read-write"),
    )
    .unwrap();
    let reload = tokio::spawn(async move { http(admin, "POST", "/v1/reload", None).await });
    tokio::pin!(reload);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut reload)
            .await
            .is_err(),
        "the reload returned while writes admitted before it were under way"
    );
    // New writes for wayne are refused at once meanwhile.
    let e = server_error(
        c.query("INSERT INTO t_wayne.t (k, v) VALUES (9, 'after')")
            .await,
    );
    assert_eq!(e.code, ErrorCode::UNAUTHORIZED);
    origin.node.faults.hang.store(false, Ordering::SeqCst);
    origin.node.faults.release_all();
    let (status, body) = reload.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"fenced\":[\"wayne\"]") || body.contains("\"fenced\":[]"),
        "{body}"
    );
    for w in writes {
        w.await
            .unwrap()
            .expect("a write admitted before the change completes");
    }
    // After the call returned, nothing more of wayne's reaches a node.
    let e = server_error(
        c.query("INSERT INTO t_wayne.t (k, v) VALUES (10, 'after')")
            .await,
    );
    assert_eq!(e.code, ErrorCode::UNAUTHORIZED);
    for k in [9, 10] {
        assert!(
            !node_has_row(origin.addr, "t_wayne.t", k).await
                && !node_has_row(target.addr, "t_wayne.t", k).await
        );
    }
    for k in 0..5 {
        assert!(
            node_has_row(origin.addr, "t_wayne.t", k).await
                && node_has_row(target.addr, "t_wayne.t", k).await
        );
    }
    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_admin_api_keeps_entries_in_the_directory_file() {
    let (origin, target) = two_nodes().await;
    let dir = std::env::temp_dir().join(format!("cutover-directory-{}", std::process::id()));
    let text = config_text(origin.addr, target.addr, "read-write", "read-write")
        .replace(
            "[tenants]\n",
            "[tenants]\ndirectory_file = \"directory.toml\"\n",
        )
        .replace(
            "[[tenants.entries]]\ntenant = \"wayne\"\nstatus = \"read-write\"\n",
            "",
        );
    let (proxy, admin, stop_admin, mut c, _) = start_from_file(&dir, text, &["t_wayne"]).await;
    c.query("INSERT INTO t_wayne.t (k, v) VALUES (1, 'ok')")
        .await
        .unwrap();

    let (status, body) = http(
        admin,
        "PUT",
        "/v1/tenants/wayne",
        Some(r#"{"status": "read-only"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"version\":2") && body.contains("\"fenced\":[\"wayne\"]"),
        "{body}"
    );
    let written = std::fs::read_to_string(dir.join("directory.toml")).unwrap();
    assert!(
        written.contains("tenant = \"wayne\"") && written.contains("status = \"read-only\""),
        "{written}"
    );
    let e = server_error(
        c.query("INSERT INTO t_wayne.t (k, v) VALUES (2, 'no')")
            .await,
    );
    assert_eq!(e.code, ErrorCode::UNAUTHORIZED);
    let (_, list) = http(admin, "GET", "/v1/tenants", None).await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["stark", "wayne"]);
    assert_eq!(list[1]["status"], "read-only");

    // A reload reads the directory file: the API's change stays.
    let (status, body) = http(admin, "POST", "/v1/reload", None).await;
    assert_eq!(status, 200, "{body}");
    let e = server_error(
        c.query("INSERT INTO t_wayne.t (k, v) VALUES (3, 'no')")
            .await,
    );
    assert_eq!(e.code, ErrorCode::UNAUTHORIZED);

    // Invalid changes are refused and nothing is written.
    for (path, body) in [
        ("/v1/tenants/wayne", r#"{"shard": "nowhere"}"#),
        ("/v1/tenants/wayne", r#"{"status": "sleepy"}"#),
        ("/v1/tenants/stark", r#"{"status": "read-only"}"#),
    ] {
        let (status, answer) = http(admin, "PUT", path, Some(body)).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        if body.contains("nowhere") {
            // Said once, with the setting it is about for a script to read.
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            let errors = answer["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "said once: {answer}");
            assert!(errors[0].as_str().unwrap().contains("nowhere"), "{answer}");
            assert_eq!(answer["problems"][0]["key"], "tenants.entries", "{answer}");
            assert_eq!(answer["problems"][0]["message"], errors[0], "{answer}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("directory.toml")).unwrap(),
        written
    );
    let (status, body) = http(admin, "GET", "/v1/tenants/nobody", None).await;
    assert_eq!(status, 404, "{body}");

    // DELETE: wayne takes the default route again.
    let (status, body) = http(admin, "DELETE", "/v1/tenants/wayne", None).await;
    assert_eq!(status, 200, "{body}");
    c.query("INSERT INTO t_wayne.t (k, v) VALUES (4, 'ok')")
        .await
        .unwrap();
    assert!(!std::fs::read_to_string(dir.join("directory.toml"))
        .unwrap()
        .contains("wayne"));

    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
