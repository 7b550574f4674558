//! Two proxy instances: `cutover tenants ... --fleet` turns a tenant
//! read-only on both (each writing its own directory file) and returns once
//! both have; the tenant's writes are then refused through either.

mod common;

use std::net::SocketAddr;

use common::two_nodes;
use cutover::client::{Client, ClientError};
use cutover::protocol::ErrorCode;

/// `cutover tenants --admin ADMIN ARGS...`: (exit success, stdout, stderr).
async fn cli(admin: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["tenants".to_string(), "--admin".into(), admin.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    common::cutover_cli(all).await
}

async fn write(c: &mut Client, k: i32) -> Result<(), ClientError> {
    c.query(&format!("INSERT INTO t_wayne.t (k, v) VALUES ({k}, 'w')"))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_turned_read_only_on_the_fleet_is_refused_everywhere() {
    let (origin, target) = two_nodes().await;
    let fleet = common::Fleet::start(
        2,
        "fleet",
        &format!(
            "[clusters.origin]\ncontact_points = [\"{}\"]\n\
             [clusters.target]\ncontact_points = [\"{}\"]\n\
             [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\ndirectory_file = \"directory.toml\"\n",
            origin.addr, target.addr
        ),
    )
    .await;
    let (proxies, admins, base) = (&fleet.proxies, fleet.admins.clone(), fleet.base.clone());
    let mut clients = Vec::new();
    for p in proxies {
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
    for a in &admins {
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
    // The field is named, and the spellings it takes.
    assert!(err.contains("status: unknown variant `sleepy`"), "{err}");
    assert!(
        err.contains("read-only") && !err.contains(" at line "),
        "{err}"
    );
    let (ok, _, err) = cli(admins[0], &["set", "wayne", "--phase", "bogus"]).await;
    assert!(
        !ok && err.contains("phase: unknown variant `bogus`"),
        "{err}"
    );
    let (ok, _, err) = cli(admins[0], &["set", "wayne"]).await;
    assert!(!ok && err.contains("--status"), "{err}");

    let (ok, out, err) = cli(admins[1], &["delete", "wayne", "--fleet"]).await;
    assert!(ok, "{out}{err}");
    for (i, c) in clients.iter_mut().enumerate() {
        write(c, 20 + i as i32).await.unwrap();
    }
    fleet.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}
