//! Two proxy instances: `cutover tenants ... --fleet` turns a tenant
//! read-only on both (each writing its own directory file) and returns once
//! both have; the tenant's writes are then refused through either.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::two_nodes;
use cutover::admin::AdminOptions;
use cutover::client::{Client, ClientError};
use cutover::config::Config;
use cutover::protocol::ErrorCode;
use tokio_util::sync::CancellationToken;

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `cutover tenants --admin ADMIN ARGS...`: (exit success, stdout, stderr).
async fn cli(admin: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(["tenants", "--admin", &admin.to_string()])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn write(c: &mut Client, k: i32) -> Result<(), ClientError> {
    c.query(&format!("INSERT INTO t_wayne.t (k, v) VALUES ({k}, 'w')"))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_turned_read_only_on_the_fleet_is_refused_everywhere() {
    let (origin, target) = two_nodes().await;
    let listen = [free_port(), free_port()];
    let admins = [free_port(), free_port()];
    let base = std::env::temp_dir().join(format!("cutover-fleet-{}", std::process::id()));
    let mut proxies = Vec::new();
    let stop = CancellationToken::new();
    for i in 0..2 {
        let dir = base.join(format!("instance-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cutover.toml");
        std::fs::write(
            &file,
            format!(
                "listen = \"{}\"\n\
                 [topology]\ninstances = [\"{}\", \"{}\"]\nadmin_instances = [\"{}\", \"{}\"]\nindex = {i}\n\
                 [clusters.origin]\ncontact_points = [\"{}\"]\n\
                 [clusters.target]\ncontact_points = [\"{}\"]\n\
                 [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\ndirectory_file = \"directory.toml\"\n",
                listen[i], listen[0], listen[1], admins[0], admins[1], origin.addr, target.addr
            ),
        )
        .unwrap();
        let cfg = Config::load(&file, Vec::new()).unwrap();
        let proxy = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
        cutover::admin::serve(
            proxy.proxy.clone(),
            AdminOptions {
                addr: admins[i],
                token: None,
                set_log_filter: None,
            },
            stop.clone(),
        )
        .await
        .unwrap();
        proxies.push(proxy);
    }
    let mut clients = Vec::new();
    for p in &proxies {
        clients.push(Client::connect(p.addr, 4, None, None).await.unwrap());
    }
    clients[0].query("CREATE KEYSPACE t_wayne WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await.unwrap();
    clients[0]
        .query("CREATE TABLE t_wayne.t (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        write(c, i as i32).await.unwrap();
    }

    let (ok, out, err) = cli(
        admins[0],
        &["set", "wayne", "--status", "read-only", "--fleet"],
    )
    .await;
    assert!(ok, "{out}{err}");
    for a in admins {
        assert!(
            out.contains(&a.to_string()),
            "both instances answered: {out}"
        );
    }
    for (i, c) in clients.iter_mut().enumerate() {
        match write(c, 10 + i as i32).await {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::UNAUTHORIZED);
                assert!(e.message.contains("wayne"), "{}", e.message);
            }
            other => panic!("instance {i} accepted a write of a read-only tenant: {other:?}"),
        }
    }
    let (ok, out, _) = cli(admins[1], &["list"]).await;
    assert!(ok && out.contains("\"read-only\""), "{out}");
    for i in 0..2 {
        let f = base.join(format!("instance-{i}/directory.toml"));
        assert!(std::fs::read_to_string(f).unwrap().contains("read-only"));
    }

    // A mistake is refused with the reason; nothing changes.
    let (ok, _, err) = cli(admins[0], &["set", "wayne", "--status", "sleepy"]).await;
    assert!(!ok && err.contains("400"), "{err}");
    let (ok, _, err) = cli(admins[0], &["set", "wayne"]).await;
    assert!(!ok && err.contains("--status"), "{err}");

    let (ok, out, err) = cli(admins[1], &["delete", "wayne", "--fleet"]).await;
    assert!(ok, "{out}{err}");
    for (i, c) in clients.iter_mut().enumerate() {
        write(c, 20 + i as i32).await.unwrap();
    }
    stop.cancel();
    for p in proxies {
        p.stop().await;
    }
    origin.shutdown().await;
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(base);
}
