//! The route an operator set through the admin API survives every reload
//! and a restart: a tenant change (the directory file rewritten, the watcher
//! reloading), a touch of the config file, `POST /v1/reload`, SIGHUP. A
//! config file edited afterwards wins, and says so. `?fleet=true` changes
//! the route on every instance, and without `admin_instances` changes
//! nothing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{http, serve_admin, two_nodes, wait_for};
use cutover::client::Client;
use cutover::config::{Config, Phase};
use cutover::protocol::response::ResultBody;
use serde_json::Value;

fn config_text(origin: SocketAddr, target: SocketAddr, phase: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [clusters.origin]\ncontact_points = [\"{origin}\"]\n\
         [clusters.target]\ncontact_points = [\"{target}\"]\n\
         [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\ndirectory_file = \"directory.toml\"\n\
         [route]\nphase = \"{phase}\"\n"
    )
}

/// The same key with another value on each node, written directly: a read
/// through the proxy tells which cluster answered.
async fn mark_nodes(origin: SocketAddr, target: SocketAddr) {
    for (n, v) in [(origin, "from-origin"), (target, "from-target")] {
        let mut c = Client::connect(n, 4, None, None).await.unwrap();
        c.query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
        c.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
            .await
            .unwrap();
        c.query(&format!("INSERT INTO ks.t (k, v) VALUES (1, '{v}')"))
            .await
            .unwrap();
    }
}

async fn read_v(addr: SocketAddr) -> String {
    let mut c = Client::connect(addr, 4, None, None).await.unwrap();
    match c.query("SELECT v FROM ks.t WHERE k = 1").await.unwrap() {
        ResultBody::Rows(r) => String::from_utf8(r.rows[0][0].clone().unwrap().to_vec()).unwrap(),
        other => panic!("{other:?}"),
    }
}

async fn policy_json(admin: SocketAddr) -> Value {
    let (status, body) = http(admin, "GET", "/v1/policy", None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A proxy started from `file`, with its admin API.
async fn start_from_file(
    file: &Path,
) -> (
    cutover::proxy::RunningProxy,
    SocketAddr,
    tokio_util::sync::CancellationToken,
) {
    let config = Config::load(file, Vec::new()).unwrap();
    let proxy = cutover::proxy::start_from(config, Some(file.to_path_buf()))
        .await
        .unwrap();
    let (admin, stop) = serve_admin(&proxy, None, None).await;
    (proxy, admin, stop)
}

/// `PUT /v1/policy` of the target-primary phase; its answer.
async fn target_primary(admin: SocketAddr) -> String {
    let (status, body) = http(
        admin,
        "PUT",
        "/v1/policy",
        Some(r#"{"route": {"phase": "target-primary"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cutover-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until the proxy has done more than `n` reloads.
async fn reloads_past(p: &Arc<cutover::proxy::Proxy>, n: u64, what: &str) {
    let p = p.clone();
    wait_for(what, || {
        let p = p.clone();
        async move { p.routing().store().reloads.load(Ordering::SeqCst) > n }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_route_change_survives_tenant_changes_reloads_and_a_restart() {
    let (origin, target) = two_nodes().await;
    mark_nodes(origin.addr, target.addr).await;
    let dir = temp_dir("route-file");
    let file = dir.join("cutover.toml");
    let route_file = dir.join("cutover.route.toml");
    let text = config_text(origin.addr, target.addr, "dual-write");
    std::fs::write(&file, &text).unwrap();
    let (proxy, admin, stop_admin) = start_from_file(&file).await;
    let p = proxy.proxy.clone();
    assert_eq!(read_v(proxy.addr).await, "from-origin");

    let body = target_primary(admin).await;
    let put: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(put["persisted"], route_file.display().to_string());
    assert_eq!(read_v(proxy.addr).await, "from-target");

    // A tenant change rewrites the directory file; the watcher reloads.
    let n = p.routing().store().reloads.load(Ordering::SeqCst);
    let (status, body) = http(
        admin,
        "PUT",
        "/v1/tenants/acme",
        Some(r#"{"status": "read-write"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    reloads_past(&p, n, "the watcher to reload the directory file").await;
    assert_eq!(p.policy().route.phase, Phase::TargetPrimary);
    assert!(p.policy().tenants.contains_key("acme"));
    assert_eq!(
        read_v(proxy.addr).await,
        "from-target",
        "after a tenant change"
    );

    // The config file touched (written again, the same text).
    let n = p.routing().store().reloads.load(Ordering::SeqCst);
    std::fs::write(&file, format!("{text}\n")).unwrap();
    reloads_past(&p, n, "the watcher to reload the touched config").await;
    assert_eq!(read_v(proxy.addr).await, "from-target", "after a touch");

    // An explicit reload.
    let (status, body) = http(admin, "POST", "/v1/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        read_v(proxy.addr).await,
        "from-target",
        "after POST /v1/reload"
    );

    // Where each field comes from.
    let got = policy_json(admin).await;
    assert_eq!(got["route"]["phase"], "target-primary");
    assert_eq!(got["route_file"], route_file.display().to_string());
    let phase = &got["sources"]["phase"];
    assert_eq!(phase["from"], "admin-api", "{got}");
    assert_eq!(phase["config_file_says"], "dual-write");
    assert_eq!(phase["by"], "PUT /v1/policy");
    assert!(phase["set_at"].as_str().unwrap().ends_with('Z'), "{phase}");
    assert_eq!(got["sources"]["write_mode"]["from"], "config-file");

    // A restart reads the route file.
    stop_admin.cancel();
    proxy.stop().await;
    let (proxy, admin, stop_admin) = start_from_file(&file).await;
    let p = proxy.proxy.clone();
    assert_eq!(p.policy().route.phase, Phase::TargetPrimary);
    assert_eq!(read_v(proxy.addr).await, "from-target", "after a restart");

    // The config file's [route] edited afterwards: the newer change wins,
    // the route file forgets the phase, and the API says where it is from.
    let n = p.routing().store().reloads.load(Ordering::SeqCst);
    std::fs::write(&file, config_text(origin.addr, target.addr, "shadow-reads")).unwrap();
    reloads_past(&p, n, "the watcher to reload the edited config").await;
    assert_eq!(p.policy().route.phase, Phase::ShadowReads);
    assert_eq!(read_v(proxy.addr).await, "from-origin");
    assert!(
        cutover::config::read_route_file(&route_file)
            .unwrap()
            .phase
            .is_none(),
        "{}",
        std::fs::read_to_string(&route_file).unwrap()
    );
    let got = policy_json(admin).await;
    assert_eq!(got["sources"]["phase"]["from"], "config-file", "{got}");

    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The proxy binary, run from `file`; its admin address and the child.
async fn run_binary(file: &Path) -> (SocketAddr, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", "--config", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let admin = loop {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).await.unwrap() > 0,
            "the proxy exited"
        );
        if let Some(a) = line.trim().strip_prefix("admin listening on http://") {
            break a.parse().unwrap();
        }
    };
    (admin, child)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_keeps_an_api_route_change_through_sighup_and_a_restart() {
    let (origin, target) = two_nodes().await;
    let dir = temp_dir("route-file-sighup");
    let file = dir.join("cutover.toml");
    std::fs::write(&file, config_text(origin.addr, target.addr, "dual-write")).unwrap();
    let (admin, mut child) = run_binary(&file).await;
    target_primary(admin).await;

    let pid = child.id().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for("the SIGHUP reload", || async move {
        let (_, m) = http(admin, "GET", "/metrics", None).await;
        metric(&m, "cutover_policy_reloads_total") >= 1
    })
    .await;
    assert_eq!(policy_json(admin).await["route"]["phase"], "target-primary");

    let _ = child.kill().await;
    let (admin, mut child) = run_binary(&file).await;
    let got = policy_json(admin).await;
    assert_eq!(
        got["route"]["phase"], "target-primary",
        "after a restart: {got}"
    );
    assert_eq!(got["sources"]["phase"]["from"], "admin-api");
    let _ = child.kill().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_route_change_reaches_every_instance() {
    let (origin, target) = two_nodes().await;
    let fleet = common::Fleet::start(
        2,
        "route-fleet",
        &format!(
            "[clusters.origin]\ncontact_points = [\"{}\"]\n\
             [clusters.target]\ncontact_points = [\"{}\"]\n",
            origin.addr, target.addr
        ),
    )
    .await;
    let (ok, out, err) = common::cutover_cli(
        [
            "policy",
            "--admin",
            &fleet.admins[0].to_string(),
            "set",
            "--phase",
            "target-primary",
            "--fleet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert!(ok, "{out}{err}");
    for (i, p) in fleet.proxies.iter().enumerate() {
        assert_eq!(
            p.proxy.policy().route.phase,
            Phase::TargetPrimary,
            "instance {i}"
        );
        let kept = cutover::config::read_route_file(
            &fleet
                .base
                .join(format!("instance-{i}"))
                .join("cutover.route.toml"),
        )
        .unwrap();
        assert_eq!(
            kept.phase.map(|o| o.value),
            Some(Phase::TargetPrimary),
            "instance {i} keeps it in its route file"
        );
    }
    fleet.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

#[tokio::test]
async fn fleet_without_admin_instances_changes_nothing() {
    let (origin, target) = two_nodes().await;
    let dir = temp_dir("route-file-nofleet");
    let file = dir.join("cutover.toml");
    std::fs::write(&file, config_text(origin.addr, target.addr, "dual-write")).unwrap();
    let (proxy, admin, stop_admin) = start_from_file(&file).await;
    let p = proxy.proxy.clone();

    let (status, body) = http(
        admin,
        "PUT",
        "/v1/policy?fleet=true",
        Some(r#"{"route": {"phase": "target-primary"}}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("admin_instances") && body.contains("nothing changed"),
        "{body}"
    );
    assert_eq!(p.policy().route.phase, Phase::DualWrite);
    assert!(!dir.join("cutover.route.toml").exists());

    for (method, body) in [
        ("PUT", Some(r#"{"status": "read-only"}"#)),
        ("DELETE", None),
    ] {
        let (status, answer) = http(admin, method, "/v1/tenants/acme?fleet=true", body).await;
        assert_eq!(status, 400, "{method}: {answer}");
        assert!(answer.contains("nothing changed"), "{answer}");
    }
    assert!(!p.policy().tenants.contains_key("acme"));
    assert!(
        !dir.join("directory.toml").exists(),
        "the directory file was not written"
    );
    assert_eq!(p.policy().version, 1);

    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
