//! TLS on every leg: real drivers (the Rust `scylla` driver with rustls, and
//! cutover's own client at v5 with LZ4) through a TLS proxy to embedded
//! nodes that require TLS; mTLS; an upstream whose certificate names
//! another host; certificates replaced on disk; the plaintext listener
//! beside the TLS one; the per-source connection limit.

use std::path::Path;
use std::time::Duration;

use cutover::client::{Client, ClientError};
use cutover::config::Config;
use cutover::frame::Compression;
use cutover::node::{self, NodeConfig, RunningNode};
use cutover::protocol::response::ResultBody;
use scylla::client::session_builder::SessionBuilder;

mod common;
use common::certs::{Issued, Pki};
use common::{wait_for, workload_over};

/// A node that speaks TLS only, with `issued` as its certificate.
async fn tls_node(pki: &Pki, issued: &Issued, client_ca: Option<&Path>) -> RunningNode {
    let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    c.control = Some("127.0.0.1:0".parse().unwrap());
    c.tls = Some(pki.server_config(issued, client_ca));
    node::start(c).await.unwrap()
}

/// Writes `toml` as a config file beside the certificates and loads it
/// (paths in it are relative to that folder).
fn load(pki: &Pki, toml: &str) -> (Config, std::path::PathBuf) {
    let file = pki.dir.join("cutover.toml");
    std::fs::write(&file, toml).unwrap();
    let cfg = Config::load(&file, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    (cfg, file)
}

/// The clusters of a config: origin and target at `localhost:PORT` (the
/// name their certificates carry), over TLS with the test CA.
fn clusters_toml(origin: &RunningNode, target: &RunningNode, extra: &str) -> String {
    format!(
        "[clusters.origin]\ncontact_points = [\"localhost:{}\"]\n[clusters.origin.tls]\nca_file = \"ca.pem\"\n{extra}\n\
         [clusters.target]\ncontact_points = [\"localhost:{}\"]\n[clusters.target.tls]\nca_file = \"ca.pem\"\n{extra}\n",
        origin.addr.port(),
        target.addr.port()
    )
}

struct Tls {
    pki: Pki,
    origin: RunningNode,
    target: RunningNode,
    proxy: cutover::proxy::RunningProxy,
}

/// Two TLS nodes and a TLS proxy in front of them; `listener` is put in
/// the `[tls]` section.
async fn setup(listener: &str) -> Tls {
    setup_with(|_| {}, listener).await
}

/// `setup`, with `prepare` run on the certificates' folder first.
async fn setup_with(prepare: impl FnOnce(&Pki), listener: &str) -> Tls {
    let pki = Pki::new("tls");
    prepare(&pki);
    let node_cert = pki.issue("node", &["localhost", "127.0.0.1"]);
    pki.issue("proxy", &["localhost", "127.0.0.1"]);
    let origin = tls_node(&pki, &node_cert, None).await;
    let target = tls_node(&pki, &node_cert, None).await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"proxy.pem\"\nkey_file = \"proxy-key.pem\"\n{listener}\n{}",
        clusters_toml(&origin, &target, "")
    );
    let (cfg, file) = load(&pki, &toml);
    let proxy = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
    Tls {
        pki,
        origin,
        target,
        proxy,
    }
}

impl Tls {
    async fn stop(self) {
        self.proxy.stop().await;
        self.origin.shutdown().await;
        self.target.shutdown().await;
    }
}

fn count(answer: &ResultBody, _version: u8) -> i64 {
    match answer {
        ResultBody::Rows(r) => {
            i64::from_be_bytes(r.rows[0][0].as_ref().unwrap()[..].try_into().unwrap())
        }
        other => panic!("not rows: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scylla_driver_works_over_tls_through_the_proxy_to_tls_nodes() {
    let t = setup("").await;
    let to_proxy = t.pki.to("127.0.0.1", None);
    for (ks, compression) in [
        ("tls_plain", None),
        ("tls_lz4", Some(scylla::frame::Compression::Lz4)),
    ] {
        let s = SessionBuilder::new()
            .known_node_addr(t.proxy.addr)
            .compression(compression)
            .tls_context(Some(t.pki.client_config(None)))
            .cluster_metadata_refresh_interval(Duration::from_millis(200))
            .build()
            .await
            .expect("the scylla driver connects to the proxy over TLS");
        workload_over(t.proxy.addr, Some(&to_proxy), None, &s, ks).await;
        s.query_unpaged(format!("CREATE TABLE {ks}.seen (k int PRIMARY KEY)"), ())
            .await
            .unwrap();
        for k in 0..20 {
            s.query_unpaged(format!("INSERT INTO {ks}.seen (k) VALUES ({k})"), ())
                .await
                .unwrap();
        }
        // Both nodes, over TLS themselves, got every write.
        for node in [&t.origin, &t.target] {
            let mut c =
                Client::connect_tls(node.addr, 4, None, None, Some(&t.pki.to("localhost", None)))
                    .await
                    .unwrap();
            let a = c
                .query(&format!("SELECT count(*) FROM {ks}.seen"))
                .await
                .unwrap();
            assert_eq!(count(&a, 4), 20, "{ks} on {}", node.addr);
        }
    }
    t.stop().await;
}

/// v5 framing starts after READY, inside TLS: a v5 client with LZ4 and a
/// v4 client with LZ4 both work through the TLS proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_with_lz4_and_v4_with_lz4_run_inside_tls() {
    let t = setup("").await;
    let to = t.pki.to("127.0.0.1", None);
    for version in [5u8, 4] {
        let mut c = Client::connect_tls(
            t.proxy.addr,
            version,
            Some(Compression::Lz4),
            None,
            Some(&to),
        )
        .await
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
        c.query("CREATE KEYSPACE IF NOT EXISTS v WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
            .await
            .unwrap();
        c.query("CREATE TABLE IF NOT EXISTS v.t (k int PRIMARY KEY, v text)")
            .await
            .unwrap();
        // Large enough to be worth compressing, and more than one v5 segment.
        let big = "x".repeat(200_000);
        for k in 0..10 {
            c.query(&format!(
                "INSERT INTO v.t (k, v) VALUES ({}, '{big}')",
                k + version as i32 * 100
            ))
            .await
            .unwrap();
        }
        let a = c.query("SELECT count(*) FROM v.t").await.unwrap();
        assert_eq!(
            count(&a, version),
            if version == 5 { 10 } else { 20 },
            "v{version}"
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_cql_client_on_the_tls_port_is_told_to_use_tls() {
    let t = setup("").await;
    let e = Client::connect(t.proxy.addr, 4, None, None)
        .await
        .err()
        .expect("a plaintext client is refused");
    match e {
        ClientError::Server(f) => assert!(f.message.contains("speaks TLS only"), "{}", f.message),
        other => panic!("not a CQL error: {other}"),
    }
    // A TLS client is still served.
    Client::connect_tls(
        t.proxy.addr,
        4,
        None,
        None,
        Some(&t.pki.to("127.0.0.1", None)),
    )
    .await
    .unwrap();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_mtls_only_a_client_with_a_certificate_the_ca_signed_is_served() {
    let clients = Pki::new("clients");
    let t = setup_with(
        |pki| {
            std::fs::copy(clients.ca_file(), pki.dir.join("clients-ca.pem")).unwrap();
        },
        "client_ca_file = \"clients-ca.pem\"",
    )
    .await;
    let with_cert = clients.issue("app", &["app.example"]);
    let stranger_ca = Pki::new("stranger");
    let stranger = stranger_ca.issue("app", &["app.example"]);
    // Presenting no certificate, or one another CA signed: refused, and
    // the error says why.
    for (who, client) in [("no certificate", None), ("another CA's", Some(&stranger))] {
        let tls = cutover::client::TlsTo {
            config: match client {
                None => t.pki.client_config(None),
                Some(c) => client_config_trusting(&t.pki, c),
            },
            name: rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
        };
        let e = match Client::connect_tls(t.proxy.addr, 4, None, None, Some(&tls)).await {
            Ok(_) => panic!("{who}: a client was served without a valid certificate"),
            Err(e) => e.to_string(),
        };
        // CertificateRequired, UnknownCA: the TLS alert names the reason.
        assert!(
            ["certificaterequired", "unknownca"]
                .iter()
                .any(|why| e.to_lowercase().contains(why)),
            "{who}: the error does not say why: {e}"
        );
    }
    let mut ok = Client::connect_tls(
        t.proxy.addr,
        4,
        None,
        None,
        Some(&cutover::client::TlsTo {
            config: client_config_trusting(&t.pki, &with_cert),
            name: rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
        }),
    )
    .await
    .expect("a client with a certificate the clients' CA signed is served");
    ok.query("SELECT release_version FROM system.local")
        .await
        .unwrap();
    t.stop().await;
}

/// A client configuration trusting `server`'s CA and presenting `client`.
fn client_config_trusting(server: &Pki, client: &Issued) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in cutover::tls::read_certs(&server.ca_file()).unwrap() {
        roots.add(c).unwrap();
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(cutover::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                cutover::tls::read_certs(&client.cert).unwrap(),
                cutover::tls::read_key(&client.key).unwrap(),
            )
            .unwrap(),
    )
}

/// A cluster whose certificate names another host is refused, and
/// readiness says why; one that does match keeps working beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_whose_certificate_names_another_host_is_refused_and_readiness_says_why() {
    let pki = Pki::new("mismatch");
    let good = pki.issue("good", &["localhost"]);
    let wrong = pki.issue("wrong", &["db.elsewhere.example"]);
    let origin = tls_node(&pki, &good, None).await;
    let target = tls_node(&pki, &wrong, None).await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n{}",
        clusters_toml(&origin, &target, "")
    );
    let (cfg, file) = load(&pki, &toml);
    let proxy = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
    let (admin, stop_admin) = common::serve_admin(&proxy, None, None).await;
    wait_for("readiness to show the target's TLS failure", || async {
        let (status, body) = common::http(admin, "GET", "/health/ready", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let target = &v["clusters"]["target"];
        status == 200
            && v["clusters"]["origin"]["status"] == "up"
            && target["status"] == "down"
            && target["error"].as_str().is_some_and(|e| {
                e.contains("TLS") && e.contains("localhost") && e.contains("not valid for name")
            })
    })
    .await;
    // A schema change, which goes to every cluster, fails naming the target.
    let mut c = Client::connect(proxy.addr, 4, None, None).await.unwrap();
    let e = c
        .query("CREATE KEYSPACE m WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        .await
        .expect_err("the target cannot be reached");
    assert!(e.to_string().contains("target"), "{e}");
    stop_admin.cancel();
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

/// The serial number of the certificate `addr` presents to a new TLS
/// connection.
async fn served_certificate(addr: std::net::SocketAddr, pki: &Pki) -> Vec<u8> {
    let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let s = tokio_rustls::TlsConnector::from(pki.client_config(None))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            sock,
        )
        .await
        .unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A certificate replaced on disk reaches new connections once its file
/// changes; connections already open keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_to_new_connections_and_old_ones_keep_working() {
    let t = setup("").await;
    let before = served_certificate(t.proxy.addr, &t.pki).await;
    let to = t.pki.to("127.0.0.1", None);
    let mut open = Client::connect_tls(t.proxy.addr, 4, None, None, Some(&to))
        .await
        .unwrap();
    t.pki.issue("proxy", &["localhost", "127.0.0.1"]);
    let after = cutover::tls::read_certs(&t.pki.dir.join("proxy.pem")).unwrap()[0].to_vec();
    assert_ne!(before, after);
    let addr = t.proxy.addr;
    let pki = &t.pki;
    wait_for("new connections to get the new certificate", || {
        let after = after.clone();
        async move { served_certificate(addr, pki).await == after }
    })
    .await;
    open.query("SELECT release_version FROM system.local")
        .await
        .expect("a connection opened before the change keeps working");
    // A broken file is refused by POST /v1/reload, which says so (the
    // config naming it is refused too, as check-config would); the
    // certificate in force stays.
    std::fs::write(t.pki.dir.join("proxy.pem"), "not a certificate").unwrap();
    let (admin, stop_admin) = common::serve_admin(&t.proxy, None, None).await;
    let (status, body) = common::http(admin, "POST", "/v1/reload", None).await;
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["errors"].to_string().contains("proxy.pem")
            && v["tls_reloaded"].to_string().contains("tls"),
        "{body}"
    );
    assert_eq!(served_certificate(addr, pki).await, after);
    // Mended, POST /v1/reload puts the mended one in force at once.
    t.pki.issue("proxy", &["localhost", "127.0.0.1"]);
    let mended = cutover::tls::read_certs(&t.pki.dir.join("proxy.pem")).unwrap()[0].to_vec();
    let (status, body) = common::http(admin, "POST", "/v1/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_certificate(addr, pki).await, mended);
    stop_admin.cancel();
    t.stop().await;
}

/// With a plaintext listener beside the TLS one, each client sees in
/// `system.local` and `system.peers_v2` the ports of the listener it came
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_shows_its_own_ports_in_system_local_and_peers() {
    let pki = Pki::new("faces");
    let node_cert = pki.issue("node", &["localhost", "127.0.0.1"]);
    pki.issue("proxy", &["127.0.0.1"]);
    let origin = tls_node(&pki, &node_cert, None).await;
    let target = tls_node(&pki, &node_cert, None).await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (tls_port, plain_port) = (free(), free());
    let toml = format!(
        "listen = \"{tls_port}\"\n[tls]\ncert_file = \"proxy.pem\"\nkey_file = \"proxy-key.pem\"\nplaintext_listen = \"{plain_port}\"\n\
         [topology]\ninstances = [\"{tls_port}\", \"127.0.0.2:7142\"]\nplaintext_instances = [\"{plain_port}\", \"127.0.0.2:7042\"]\nindex = 0\n{}",
        clusters_toml(&origin, &target, "")
    );
    let (cfg, file) = load(&pki, &toml);
    let proxy = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
    assert_eq!(proxy.plaintext_addr, Some(plain_port));
    let mut tls = Client::connect_tls(tls_port, 4, None, None, Some(&pki.to("127.0.0.1", None)))
        .await
        .unwrap();
    let mut plain = Client::connect(plain_port, 4, None, None).await.unwrap();
    for (c, local, peer) in [
        (&mut tls, tls_port.port(), 7142),
        (&mut plain, plain_port.port(), 7042),
    ] {
        let l = c.query("SELECT rpc_port FROM system.local").await.unwrap();
        assert_eq!(int_of(&l), local as i32, "system.local");
        let p = c
            .query("SELECT native_port FROM system.peers_v2")
            .await
            .unwrap();
        assert_eq!(int_of(&p), peer, "system.peers_v2");
    }
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

fn int_of(answer: &ResultBody) -> i32 {
    match answer {
        ResultBody::Rows(r) => {
            i32::from_be_bytes(r.rows[0][0].as_ref().unwrap()[..].try_into().unwrap())
        }
        other => panic!("not rows: {other:?}"),
    }
}

/// `limits.max_client_connections_per_source`: the connection past it is
/// refused with an error naming the setting; another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_source_limit_are_refused_with_a_clear_error() {
    let origin = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let target = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let mut cfg = Config::quick_start(
        &origin.addr.to_string(),
        &target.addr.to_string(),
        "0.0.0.0:0".parse().unwrap(),
        None,
    )
    .unwrap();
    cfg.limits.max_client_connections_per_source = 2;
    let proxy = cutover::proxy::start(cfg).await.unwrap();
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.addr.port()));
    let a = Client::connect(at, 4, None, None).await.unwrap();
    let b = Client::connect(at, 4, None, None).await.unwrap();
    let e = Client::connect(at, 4, None, None)
        .await
        .err()
        .expect("a third connection from 127.0.0.1 is refused");
    assert!(
        e.to_string()
            .contains("limits.max_client_connections_per_source"),
        "{e}"
    );
    // From another address on the loopback: served (READY to its STARTUP).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = sock.connect(at).await.unwrap();
        let startup = cutover::protocol::request::build_startup(&[("CQL_VERSION", "3.0.0")]);
        let mut out = bytes::BytesMut::new();
        cutover::frame::Frame::request(4, 0, cutover::frame::Opcode::Startup, startup)
            .write_plain(&mut out);
        other.write_all(&out).await.unwrap();
        let mut header = [0u8; 9];
        other.read_exact(&mut header).await.unwrap();
        assert_eq!(
            header[4],
            cutover::frame::Opcode::Ready as u8,
            "127.0.0.2 is served"
        );
    }
    // A closed connection gives its place back.
    drop(a);
    wait_for(
        "the place of a closed connection to be given back",
        || async { Client::connect(at, 4, None, None).await.is_ok() },
    )
    .await;
    drop(b);
    proxy.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}

/// The proxy binary on `config`, its stdout and stderr written to files
/// beside it; `addr` once it listens.
struct Spawned {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

async fn spawn_proxy(config: &Path) -> Spawned {
    let out = config.with_extension("stdout");
    let err = config.with_extension("stderr");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut addr = None;
    wait_for("the proxy to print its address", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        addr = text
            .lines()
            .find_map(|l| l.strip_prefix("cutover proxy listening on "))
            .map(|a| a.trim().parse().unwrap());
        std::future::ready(addr.is_some())
    })
    .await;
    Spawned {
        child,
        addr: addr.unwrap(),
        out,
        err,
    }
}

impl Spawned {
    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-s", sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Stops it (SIGINT) and returns everything it printed.
    async fn stop(mut self) -> String {
        self.signal("INT");
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        std::fs::read_to_string(&self.out).unwrap() + &std::fs::read_to_string(&self.err).unwrap()
    }
}

/// SIGHUP reads the certificate files again, also when the watcher cannot
/// tell they changed (same size, same modification time): new connections
/// get the new certificate, an open one keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_certificates_again() {
    let pki = Pki::new("sighup");
    let node_cert = pki.issue("node", &["localhost", "127.0.0.1"]);
    let origin = tls_node(&pki, &node_cert, None).await;
    let target = tls_node(&pki, &node_cert, None).await;
    let proxy_cert = pki.issue("proxy", &["127.0.0.1"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[tls]\ncert_file = \"proxy.pem\"\nkey_file = \"proxy-key.pem\"\n{}",
        clusters_toml(&origin, &target, "")
    );
    let file = pki.dir.join("cutover.toml");
    std::fs::write(&file, toml).unwrap();
    let p = spawn_proxy(&file).await;
    let before = served_certificate(p.addr, &pki).await;
    let mut open = Client::connect_tls(p.addr, 4, None, None, Some(&pki.to("127.0.0.1", None)))
        .await
        .unwrap();
    // A new certificate and key of the very same sizes, written with the
    // old modification times: only SIGHUP can tell the proxy.
    let (old_cert, old_key) = (
        std::fs::read_to_string(&proxy_cert.cert).unwrap(),
        std::fs::read_to_string(&proxy_cert.key).unwrap(),
    );
    let (cert, key) = (0..500)
        .map(|_| pki.make("proxy", &["127.0.0.1"]))
        .find(|(c, k)| c.len() == old_cert.len() && k.len() == old_key.len())
        .expect("a certificate of the same size");
    for (path, text) in [(&proxy_cert.cert, cert), (&proxy_cert.key, key)] {
        let modified = std::fs::metadata(path).unwrap().modified().unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    let after = cutover::tls::read_certs(&proxy_cert.cert).unwrap()[0].to_vec();
    assert_ne!(before, after);
    p.signal("HUP");
    let addr = p.addr;
    let pki_ref = &pki;
    wait_for("SIGHUP to put the new certificate in force", || {
        let after = after.clone();
        async move { served_certificate(addr, pki_ref).await == after }
    })
    .await;
    open.query("SELECT release_version FROM system.local")
        .await
        .expect("a connection opened before SIGHUP keeps working");
    let printed = p.stop().await;
    assert!(
        printed.contains("TLS certificates and keys read again"),
        "{printed}"
    );
    origin.shutdown().await;
    target.shutdown().await;
}

/// At trace level, through a TLS start-up, a login, a failed login and an
/// authorized admin request, nothing the proxy prints holds a password, the
/// admin token or a line of a private key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_run_shows_no_secret() {
    let pki = Pki::new("secrets");
    let node_cert = pki.issue("node", &["localhost", "127.0.0.1"]);
    let proxy_cert = pki.issue("proxy", &["127.0.0.1"]);
    let (client_pw, cluster_pw, wrong_pw, token) = (
        "Cl1ent-Pa55word",
        "Clu5ter-Pa55word",
        "Wr0ng-Pa55word",
        "Adm1n-T0ken-Value",
    );
    let node = |users: Vec<(String, String)>| {
        let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
        c.tls = Some(pki.server_config(&node_cert, None));
        c.users = users;
        node::start(c)
    };
    let origin = node(vec![("app".into(), client_pw.into())]).await.unwrap();
    let target = node(vec![("proxy".into(), cluster_pw.into())])
        .await
        .unwrap();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nadmin_token = \"{token}\"\n\
         [log]\nfilter = \"trace\"\n[tls]\ncert_file = \"proxy.pem\"\nkey_file = \"proxy-key.pem\"\n{}",
        clusters_toml(&origin, &target, "").replace(
            "[clusters.target.tls]",
            &format!("username = \"proxy\"\npassword = \"{cluster_pw}\"\n[clusters.target.tls]")
        )
    );
    let file = pki.dir.join("cutover.toml");
    std::fs::write(&file, toml).unwrap();
    let p = spawn_proxy(&file).await;
    let to = pki.to("127.0.0.1", None);
    let mut c = Client::connect_tls(p.addr, 4, None, Some(("app", client_pw)), Some(&to))
        .await
        .expect("the client's login, checked by the origin");
    c.query(
        "CREATE KEYSPACE s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    )
    .await
    .expect("a schema change reaches the target with the proxy's own login");
    assert!(
        Client::connect_tls(p.addr, 4, None, Some(("app", wrong_pw)), Some(&to))
            .await
            .is_err(),
        "a wrong password is refused"
    );
    let admin: std::net::SocketAddr = {
        let out = std::fs::read_to_string(&p.out).unwrap();
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("admin listening on http://"))
            .unwrap();
        line.trim().parse().unwrap()
    };
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(format!("GET /v1/policy HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    drop(c);
    let printed = p.stop().await;
    assert!(
        printed.matches("TRACE").count() > 20,
        "the run did not log at trace level: {} bytes",
        printed.len()
    );
    for secret in [client_pw, cluster_pw, wrong_pw, token] {
        assert!(
            !printed.contains(secret),
            "`{secret}` is in the proxy's output"
        );
    }
    let key = std::fs::read_to_string(&proxy_cert.key).unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !printed.contains(line),
            "a line of the private key is in the proxy's output"
        );
    }
    origin.shutdown().await;
    target.shutdown().await;
}

/// `[admin_tls]`: the admin API answers HTTPS (and not plain HTTP), the CLI
/// reaches it with `--admin-ca`, and a `?fleet=true` change reaches the
/// other instance over TLS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_over_tls_serves_the_cli_and_the_fleet() {
    let pki = Pki::new("admin");
    pki.issue("admin", &["127.0.0.1"]);
    let origin = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let target = node::start(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (cql, admin) = ([free(), free()], [free(), free()]);
    let mut proxies = Vec::new();
    let mut stops = Vec::new();
    for i in 0..2 {
        let toml = format!(
            "listen = \"{}\"\nadmin = \"{}\"\n[admin_tls]\ncert_file = \"admin.pem\"\nkey_file = \"admin-key.pem\"\nca_file = \"ca.pem\"\n\
             [topology]\ninstances = [\"{}\", \"{}\"]\nadmin_instances = [\"{}\", \"{}\"]\nindex = {i}\n\
             [clusters.origin]\ncontact_points = [\"{}\"]\n[clusters.target]\ncontact_points = [\"{}\"]\n",
            cql[i], admin[i], cql[0], cql[1], admin[0], admin[1], origin.addr, target.addr
        );
        let file = pki.dir.join(format!("cutover-{i}.toml"));
        std::fs::write(&file, toml).unwrap();
        let cfg = Config::load(&file, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let p = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        cutover::admin::serve(
            p.proxy.clone(),
            cutover::admin::AdminOptions {
                addr: admin[i],
                token: None,
                set_log_filter: None,
            },
            stop.clone(),
        )
        .await
        .unwrap();
        proxies.push(p);
        stops.push(stop);
    }
    let call = |i: usize, method: &'static str, path: &'static str, body: Option<&'static str>| {
        let tls = pki.to("127.0.0.1", None);
        let addr = admin[i];
        async move {
            cutover::admin::client::request(
                addr,
                Some(&tls),
                method,
                path,
                body,
                None,
                Duration::from_secs(20),
            )
            .await
        }
    };
    let (status, _) = call(0, "GET", "/health/live", None).await.unwrap();
    assert_eq!(status, 200, "HTTPS is served");
    assert!(
        !matches!(
            cutover::admin::client::request(
                admin[0],
                None,
                "GET",
                "/health/live",
                None,
                None,
                Duration::from_secs(5)
            )
            .await,
            Ok((200, _))
        ),
        "plain HTTP is not served on an HTTPS admin port"
    );
    // The CLI, trusting the CA.
    let (ok, out, err) = common::cutover_cli(vec![
        "policy".into(),
        "--admin".into(),
        admin[1].to_string(),
        "--admin-ca".into(),
        pki.ca_file().display().to_string(),
        "show".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\"version\""), "{out}");
    // A fleet change from instance 0 reaches instance 1 over TLS.
    let (status, body) = call(
        0,
        "PUT",
        "/v1/policy?fleet=true",
        Some(r#"{"route": {"phase": "shadow-reads"}}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        proxies[1].proxy.policy().route.phase,
        cutover::config::Phase::ShadowReads,
        "the other instance took the change"
    );
    for s in stops {
        s.cancel();
    }
    for p in proxies {
        p.stop().await;
    }
    origin.shutdown().await;
    target.shutdown().await;
}

/// The running proxy logs a cluster whose certificate names another host
/// (once), and check-config shows the TLS set-up or names the file it
/// cannot use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_mismatch_is_logged_and_check_config_shows_tls() {
    let pki = Pki::new("logged");
    let good = pki.issue("good", &["localhost"]);
    let wrong = pki.issue("wrong", &["db.elsewhere.example"]);
    pki.issue("proxy", &["127.0.0.1"]);
    let origin = tls_node(&pki, &good, None).await;
    let target = tls_node(&pki, &wrong, None).await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[tls]\ncert_file = \"proxy.pem\"\nkey_file = \"proxy-key.pem\"\n{}",
        clusters_toml(&origin, &target, "")
    );
    let file = pki.dir.join("cutover.toml");
    std::fs::write(&file, &toml).unwrap();
    let (ok, out, err) =
        common::cutover_cli(vec!["check-config".into(), file.display().to_string()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("TLS on 127.0.0.1:0 (certificate "), "{out}");
    assert!(
        out.contains("clusters.target: TLS, verifying each contact point's host"),
        "{out}"
    );
    let p = spawn_proxy(&file).await;
    let err_file = p.err.clone();
    wait_for("the log line naming the target's certificate", || {
        let log = std::fs::read_to_string(&err_file).unwrap_or_default();
        std::future::ready(log.lines().any(|l| {
            l.contains("no node of the cluster answers")
                && l.contains("target")
                && l.contains("not valid for name")
        }))
    })
    .await;
    p.stop().await;
    // The certificate given as the key too (a usual slip): check-config
    // names the file and what is wrong with it.
    std::fs::copy(pki.dir.join("proxy.pem"), pki.dir.join("proxy-key.pem")).unwrap();
    let (ok, out, err) =
        common::cutover_cli(vec!["check-config".into(), file.display().to_string()]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("proxy-key.pem") && err.contains("no private key"),
        "{err}"
    );
    origin.shutdown().await;
    target.shutdown().await;
}

/// A cluster that verifies its clients gets the proxy's client certificate
/// (`clusters.NAME.tls.cert_file`/`key_file`); `insecure_skip_verify`
/// reaches a node whose certificate names another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_verifies_clients_gets_the_proxys_certificate() {
    let pki = Pki::new("cluster-mtls");
    let node_cert = pki.issue("node", &["localhost"]);
    let elsewhere = pki.issue("elsewhere", &["db.elsewhere.example"]);
    pki.issue("proxy-client", &["proxy.example"]);
    // The origin requires a client certificate the test CA signed.
    let origin = tls_node(&pki, &node_cert, Some(&pki.ca_file())).await;
    let target = tls_node(&pki, &elsewhere, None).await;
    let start = |origin_extra: &str| {
        let toml = format!(
            "listen = \"127.0.0.1:0\"\n[clusters.origin]\ncontact_points = [\"localhost:{}\"]\n[clusters.origin.tls]\nca_file = \"ca.pem\"\n{origin_extra}\n\
             [clusters.target]\ncontact_points = [\"localhost:{}\"]\n[clusters.target.tls]\ninsecure_skip_verify = true\n",
            origin.addr.port(),
            target.addr.port()
        );
        load(&pki, &toml)
    };
    // Without its certificate the origin refuses the proxy.
    let (cfg, file) = start("");
    let p = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
    let refused = match Client::connect(p.addr, 4, None, None).await {
        Err(e) => e.to_string(),
        Ok(mut c) => match c.query("SELECT release_version FROM system.local").await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the origin took a proxy without a client certificate"),
        },
    };
    assert!(
        refused.contains("origin") && refused.contains("CertificateRequired"),
        "{refused}"
    );
    p.stop().await;
    // With it, both clusters answer: a write lands on the origin (verified,
    // with the client certificate) and on the target (not verified).
    let (cfg, file) =
        start("cert_file = \"proxy-client.pem\"\nkey_file = \"proxy-client-key.pem\"");
    let p = cutover::proxy::start_from(cfg, Some(file)).await.unwrap();
    let mut c = Client::connect(p.addr, 4, None, None).await.unwrap();
    c.query(
        "CREATE KEYSPACE c WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    )
    .await
    .unwrap();
    c.query("CREATE TABLE c.t (k int PRIMARY KEY)")
        .await
        .unwrap();
    c.query("INSERT INTO c.t (k) VALUES (1)").await.unwrap();
    let a = c.query("SELECT count(*) FROM c.t").await.unwrap();
    assert_eq!(count(&a, 4), 1);
    let with_cert = cutover::client::TlsTo {
        config: client_config_trusting(
            &pki,
            &Issued {
                cert: pki.dir.join("proxy-client.pem"),
                key: pki.dir.join("proxy-client-key.pem"),
            },
        ),
        name: rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    };
    let mut direct = Client::connect_tls(origin.addr, 4, None, None, Some(&with_cert))
        .await
        .unwrap();
    assert_eq!(
        count(&direct.query("SELECT count(*) FROM c.t").await.unwrap(), 4),
        1
    );
    let to_target = cutover::client::TlsTo {
        config: pki.client_config(None),
        name: rustls::pki_types::ServerName::try_from("db.elsewhere.example").unwrap(),
    };
    let mut direct = Client::connect_tls(target.addr, 4, None, None, Some(&to_target))
        .await
        .unwrap();
    assert_eq!(
        count(&direct.query("SELECT count(*) FROM c.t").await.unwrap(), 4),
        1
    );
    p.stop().await;
    origin.shutdown().await;
    target.shutdown().await;
}
