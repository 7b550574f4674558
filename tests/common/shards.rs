//! Several clusters and instances for the shard tests: four nodes as two
//! shards behind one proxy, and fleets of instances that know each other.

use std::time::Duration;

use scylla::client::session::Session;

use super::serve_admin;

/// Clusters o1, t1, o2, t2 at `nodes` and two shards: `default` (o1, t1)
/// and `dedicated` (o2, t2); tenants by keyspace (`t_NAME`), entries in
/// `directory.toml`.
pub fn two_shards_toml(nodes: &[std::net::SocketAddr]) -> String {
    let [o1, t1, o2, t2] = nodes else {
        panic!("four nodes")
    };
    format!(
        "[clusters.o1]\ncontact_points = [\"{o1}\"]\n\
         [clusters.t1]\ncontact_points = [\"{t1}\"]\n\
         [clusters.o2]\ncontact_points = [\"{o2}\"]\n\
         [clusters.t2]\ncontact_points = [\"{t2}\"]\n\
         [shards.default]\norigin = \"o1\"\ntarget = \"t1\"\n\
         [shards.dedicated]\norigin = \"o2\"\ntarget = \"t2\"\n\
         [tenants]\nkey = {{ keyspace = \"^t_(.*)$\" }}\ndirectory_file = \"directory.toml\"\n"
    )
}

/// Four embedded nodes as two shards (`two_shards_toml`) behind one proxy
/// with its admin API, started from a config file in its own folder.
pub struct Sharded {
    pub running: Vec<cutover::node::RunningNode>,
    pub nodes: [std::net::SocketAddr; 4],
    pub proxy: cutover::proxy::RunningProxy,
    pub admin: std::net::SocketAddr,
    stop_admin: tokio_util::sync::CancellationToken,
    dir: std::path::PathBuf,
}

impl Sharded {
    /// `tenant_key`: the `[tenants] key` line; `directory`: the directory
    /// file's text.
    pub async fn start(name: &str, tenant_key: &str, directory: &str) -> Sharded {
        let mut running = Vec::new();
        for _ in 0..4 {
            running.push(
                cutover::node::start(cutover::node::NodeConfig::new(
                    "127.0.0.1:0".parse().unwrap(),
                ))
                .await
                .unwrap(),
            );
        }
        let nodes = [0, 1, 2, 3].map(|i| running[i].addr);
        let dir = std::env::temp_dir().join(format!("cutover-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cutover.toml");
        let shards =
            two_shards_toml(&nodes).replace("key = { keyspace = \"^t_(.*)$\" }", tenant_key);
        std::fs::write(&file, format!("listen = \"127.0.0.1:0\"\n{shards}")).unwrap();
        std::fs::write(dir.join("directory.toml"), directory).unwrap();
        let cfg = cutover::config::Config::load(&file, Vec::new()).unwrap();
        let proxy = cutover::proxy::start_from(cfg, Some(file.clone()))
            .await
            .unwrap();
        let (admin, stop_admin) = serve_admin(&proxy, None, None).await;
        Sharded {
            running,
            nodes,
            proxy,
            admin,
            stop_admin,
            dir,
        }
    }

    /// A scylla driver session through the proxy.
    pub async fn session(&self) -> Session {
        scylla::client::session_builder::SessionBuilder::new()
            .known_node_addr(self.proxy.addr)
            .build()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.stop_admin.cancel();
        self.proxy.stop().await;
        for n in self.running {
            tokio::time::timeout(Duration::from_secs(5), n.shutdown())
                .await
                .unwrap();
        }
        let _ = std::fs::remove_dir_all(self.dir);
    }
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Proxy instances that know each other (`[topology]` instances and admin
/// instances), each started from its own config file (`rest` after the
/// topology) in its own folder under `base`, with its admin API.
pub struct Fleet {
    pub proxies: Vec<cutover::proxy::RunningProxy>,
    pub admins: Vec<std::net::SocketAddr>,
    pub base: std::path::PathBuf,
    stop_admin: tokio_util::sync::CancellationToken,
}

impl Fleet {
    pub async fn start(n: usize, name: &str, rest: &str) -> Fleet {
        let listen: Vec<_> = (0..n).map(|_| free_port()).collect();
        let admins: Vec<_> = (0..n).map(|_| free_port()).collect();
        let list = |a: &[std::net::SocketAddr]| {
            a.iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let base = std::env::temp_dir().join(format!("cutover-{name}-{}", std::process::id()));
        let stop_admin = tokio_util::sync::CancellationToken::new();
        let mut proxies = Vec::new();
        for i in 0..n {
            let dir = base.join(format!("instance-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("cutover.toml");
            std::fs::write(
                &file,
                format!(
                    "listen = \"{}\"\n[topology]\ninstances = [{}]\nadmin_instances = [{}]\nindex = {i}\n{rest}",
                    listen[i],
                    list(&listen),
                    list(&admins)
                ),
            )
            .unwrap();
            let cfg = cutover::config::Config::load(&file, Vec::new()).unwrap();
            let proxy = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
            cutover::admin::serve(
                proxy.proxy.clone(),
                cutover::admin::AdminOptions {
                    addr: admins[i],
                    token: None,
                    set_log_filter: None,
                },
                stop_admin.clone(),
            )
            .await
            .unwrap();
            proxies.push(proxy);
        }
        Fleet {
            proxies,
            admins,
            base,
            stop_admin,
        }
    }

    pub async fn stop(self) {
        self.stop_admin.cancel();
        for p in self.proxies {
            p.stop().await;
        }
        let _ = std::fs::remove_dir_all(self.base);
    }
}
