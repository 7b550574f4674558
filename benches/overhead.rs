//! What a hop through cutover costs, against the floor for any proxy hop.
//!
//!     cargo bench --bench overhead              (about 3 minutes)
//!     cargo bench --bench overhead -- --quick   (under a minute)
//!
//! Every process is separate and on loopback: two embedded nodes, a minimal
//! TCP byte relay (this binary re-run as `relay`), cutover in `origin-only`
//! (passthrough), the same over TLS from the client (tls-passthrough: the
//! client leg is TLS 1.3, the node leg plain) and cutover in `dual-write`.
//! One load generator on cutover's own codec (benches/support/load.rs)
//! drives five scenarios the same way: direct (client → node), relay,
//! passthrough, tls-passthrough, dual-write.
//!
//! Workloads: prepared INSERT of a ~100-byte row and prepared SELECT by
//! key, closed loop at 64 in flight (throughput); then INSERT open loop at
//! half the passthrough's INSERT throughput, latency measured from each
//! request's intended send time (coordinated omission corrected).
//!
//! For each: ops/s, p50 … p99.99 and max, CPU time per request of the hop
//! process (relay or proxy) and of the nodes, from `/proc`; the proxy's peak
//! RSS and its RSS with idle client connections. Writes
//! `target/overhead/overhead.json` and `target/overhead/overhead.svg`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::chart::{self, Panel};
use support::load::{self, Mode, Workload};
use support::Process;

const CONNS: usize = 2;
const DEPTH: usize = 32;

struct Settings {
    warmup: Duration,
    closed: Duration,
    open: Duration,
    idle_conns: usize,
}

struct Scenario<'a> {
    name: &'static str,
    addr: SocketAddr,
    /// The hop between client and node, when there is one.
    hop: Option<&'a Process>,
    /// The nodes this scenario's requests reach.
    nodes: Vec<&'a Process>,
    /// The client leg is TLS.
    tls: Option<cutover::client::TlsTo>,
}

#[derive(Clone)]
struct Row {
    scenario: &'static str,
    ops_per_sec: f64,
    errors: u64,
    /// p50, p90, p99, p99.9, p99.99, max in µs.
    latency: [u64; 6],
    hop_cpu_us: Option<f64>,
    node_cpu_us: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("relay") {
        return relay(args[2].parse().expect("relay TARGET"));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            warmup: Duration::from_millis(500),
            closed: Duration::from_secs(2),
            open: Duration::from_secs(3),
            idle_conns: 300,
        }
    } else {
        Settings {
            warmup: Duration::from_secs(2),
            closed: Duration::from_secs(10),
            open: Duration::from_secs(15),
            idle_conns: 1000,
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let origin = Process::node();
    let target = Process::node();
    let relay = {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["relay", &origin.addr.to_string()]);
        Process::spawn(cmd, "relay listening on ")
    };
    rt.block_on(async {
        load::create_schema(origin.addr).await;
        load::create_schema(target.addr).await;
    });
    let passthrough = Process::proxy(origin.addr, target.addr, "origin-only");
    let (tls_section, to_proxy) = bench_certificates();
    let tls_passthrough =
        Process::proxy_with(origin.addr, target.addr, "origin-only", "", &tls_section);
    let dual = Process::proxy(origin.addr, target.addr, "dual-write");
    let scenarios = [
        Scenario {
            name: "direct",
            addr: origin.addr,
            hop: None,
            nodes: vec![&origin],
            tls: None,
        },
        Scenario {
            name: "relay",
            addr: relay.addr,
            hop: Some(&relay),
            nodes: vec![&origin],
            tls: None,
        },
        Scenario {
            name: "passthrough",
            addr: passthrough.addr,
            hop: Some(&passthrough),
            nodes: vec![&origin],
            tls: None,
        },
        Scenario {
            name: "tls-passthrough",
            addr: tls_passthrough.addr,
            hop: Some(&tls_passthrough),
            nodes: vec![&origin],
            tls: Some(to_proxy),
        },
        Scenario {
            name: "dual-write",
            addr: dual.addr,
            hop: Some(&dual),
            nodes: vec![&origin, &target],
            tls: None,
        },
    ];
    println!(
        "overhead benchmark{}: {} connections x {} in flight (closed loop), {:?} per scenario after {:?} warm-up",
        if quick { " (--quick)" } else { "" },
        CONNS,
        DEPTH,
        s.closed,
        s.warmup
    );
    // For a profiler to attach to (benches/README.md, "Profiling").
    println!(
        "proxy pids: passthrough {}, dual-write {}",
        passthrough.pid(),
        dual.pid()
    );
    let mut results: Vec<(String, Vec<Row>)> = Vec::new();
    for (title, workload) in [
        ("INSERT, closed loop, 64 in flight", Workload::Insert),
        ("SELECT by key, closed loop, 64 in flight", Workload::Select),
    ] {
        let rows: Vec<Row> = scenarios
            .iter()
            .map(|sc| {
                measure(
                    &rt,
                    sc,
                    workload,
                    Mode::Closed { depth: DEPTH },
                    s.warmup,
                    s.closed,
                )
            })
            .collect();
        print_table(title, &rows);
        results.push((title.to_string(), rows));
    }
    let saturation = results[0].1[2].ops_per_sec;
    let rate = (saturation / 2.0).round();
    let open_title =
        format!("INSERT, open loop at {rate:.0}/s (half the passthrough's saturation)");
    let rows: Vec<Row> = scenarios
        .iter()
        .map(|sc| {
            measure(
                &rt,
                sc,
                Workload::Insert,
                Mode::Open { rate },
                s.warmup,
                s.open,
            )
        })
        .collect();
    print_table(&open_title, &rows);
    results.push((open_title.clone(), rows));

    // Memory: the passthrough proxy after all that load, then with idle clients.
    let peak_kib = passthrough.peak_rss_kib();
    let before_kib = passthrough.rss_kib();
    let idle = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..s.idle_conns {
            held.push(
                cutover::client::Client::connect(passthrough.addr, 4, None, None)
                    .await
                    .unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let with = passthrough.rss_kib();
        drop(held);
        with
    });
    let per_conn_kib = (idle.saturating_sub(before_kib)) as f64 / s.idle_conns as f64;
    println!(
        "\nproxy memory (passthrough): peak RSS {:.1} MiB; RSS {:.1} MiB after the load, {:.1} MiB with {} idle clients ({:.1} KiB each, its upstream connection included)",
        peak_kib as f64 / 1024.0,
        before_kib as f64 / 1024.0,
        idle as f64 / 1024.0,
        s.idle_conns,
        per_conn_kib
    );
    let dual_peak_kib = dual.peak_rss_kib();

    let goals = goals(&results, idle, s.idle_conns);
    println!("\ngoals (report only, never a test):");
    for g in &goals {
        println!(
            "  {:<62} {:>8}  goal {:<8} {}",
            g["goal"].as_str().unwrap(),
            g["value"].as_str().unwrap(),
            g["target"].as_str().unwrap(),
            if g["met"].as_bool().unwrap() {
                "met"
            } else {
                "NOT met"
            }
        );
    }

    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/overhead");
    std::fs::create_dir_all(&out).unwrap();
    let report = json!({
        "quick": quick,
        "connections": CONNS,
        "in_flight_per_connection": DEPTH,
        "open_loop_rate": rate,
        "workloads": results.iter().map(|(t, rows)| json!({
            "workload": t,
            "scenarios": rows.iter().map(row_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "memory": {
            "passthrough_peak_rss_kib": peak_kib,
            "dual_write_peak_rss_kib": dual_peak_kib,
            "passthrough_rss_after_load_kib": before_kib,
            "passthrough_rss_with_idle_kib": idle,
            "idle_connections": s.idle_conns,
            "kib_per_idle_connection": per_conn_kib,
        },
        "goals": goals,
    });
    std::fs::write(
        out.join("overhead.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    let panels: Vec<Panel> = results
        .iter()
        .map(|(t, rows)| Panel {
            title: t.split(" (").next().unwrap().to_string(),
            lines: rows
                .iter()
                .map(|r| (r.scenario.to_string(), r.latency))
                .collect(),
        })
        .collect();
    std::fs::write(
        out.join("overhead.svg"),
        chart::svg(
            "cutover overhead: latency percentiles per scenario",
            &panels,
        ),
    )
    .unwrap();
    println!(
        "\nwrote {} and {}",
        out.join("overhead.json").display(),
        out.join("overhead.svg").display()
    );
}

fn measure(
    rt: &tokio::runtime::Runtime,
    sc: &Scenario<'_>,
    workload: Workload,
    mode: Mode,
    warmup: Duration,
    window: Duration,
) -> Row {
    let cpu = |p: Option<&Process>, nodes: &[&Process]| {
        (
            p.map(|p| p.cpu_seconds()),
            nodes.iter().map(|n| n.cpu_seconds()).sum::<f64>(),
        )
    };
    let (m, (before, after)) = rt.block_on(load::run(
        sc.addr,
        sc.tls.as_ref(),
        workload,
        mode,
        CONNS,
        warmup,
        window,
        |from: Instant, to: Instant| async move {
            tokio::time::sleep_until(from.into()).await;
            let before = cpu(sc.hop, &sc.nodes);
            tokio::time::sleep_until(to.into()).await;
            (before, cpu(sc.hop, &sc.nodes))
        },
    ));
    if let Some(e) = &m.first_error {
        println!("  ({}: {} errors, the first: {e})", sc.name, m.errors);
    }
    let per_req = |d: f64| d * 1e6 / m.ops.max(1) as f64;
    let h = &m.latency;
    Row {
        scenario: sc.name,
        ops_per_sec: m.ops_per_sec(),
        errors: m.errors,
        latency: [
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max(),
        ],
        hop_cpu_us: before.0.zip(after.0).map(|(b, a)| per_req(a - b)),
        node_cpu_us: per_req(after.1 - before.1),
    }
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "  {:<15} {:>9} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9}",
        "scenario",
        "ops/s",
        "errors",
        "p50 µs",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max",
        "÷ direct",
        "hop CPU",
        "÷ relay"
    );
    let direct = rows[0].ops_per_sec;
    let relay_cpu = rows[1].hop_cpu_us;
    for r in rows {
        let l = r.latency;
        println!(
            "  {:<15} {:>9.0} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9.2} {:>8} {:>9}",
            r.scenario,
            r.ops_per_sec,
            r.errors,
            l[0],
            l[1],
            l[2],
            l[3],
            l[4],
            l[5],
            r.ops_per_sec / direct,
            r.hop_cpu_us
                .map(|c| format!("{c:.2}µs"))
                .unwrap_or_else(|| "-".into()),
            match (r.hop_cpu_us, relay_cpu) {
                (Some(c), Some(rc)) => format!("{:.2}", c / rc),
                _ => "-".into(),
            }
        );
    }
    println!(
        "  (hop CPU: CPU time of the relay or proxy process per request; node CPU µs/request: {})",
        rows.iter()
            .map(|r| format!("{} {:.2}", r.scenario, r.node_cpu_us))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn row_json(r: &Row) -> Value {
    json!({
        "scenario": r.scenario,
        "ops_per_sec": r.ops_per_sec,
        "errors": r.errors,
        "latency_us": {
            "p50": r.latency[0], "p90": r.latency[1], "p99": r.latency[2],
            "p99.9": r.latency[3], "p99.99": r.latency[4], "max": r.latency[5],
        },
        "hop_cpu_us_per_request": r.hop_cpu_us,
        "node_cpu_us_per_request": r.node_cpu_us,
    })
}

/// Where cutover stands against the goals.
fn goals(results: &[(String, Vec<Row>)], rss_with_idle_kib: u64, idle: usize) -> Vec<Value> {
    let mut g = Vec::new();
    let mut goal = |name: String, value: f64, target: f64, unit: &str| {
        g.push(json!({
            "goal": name,
            "value": format!("{value:.2}{unit}"),
            "target": format!("≤ {target}{unit}"),
            "met": value <= target,
        }));
    };
    for (title, rows) in &results[..2] {
        let w = title.split(',').next().unwrap();
        let (relay, pass, tls, dual) = (&rows[1], &rows[2], &rows[3], &rows[4]);
        if let (Some(p), Some(t)) = (pass.hop_cpu_us, tls.hop_cpu_us) {
            goal(
                format!("{w}: tls-passthrough CPU/request ÷ passthrough's"),
                t / p,
                2.0,
                "×",
            );
        }
        if let (Some(r), Some(p), Some(d)) = (relay.hop_cpu_us, pass.hop_cpu_us, dual.hop_cpu_us) {
            goal(
                format!("{w}: passthrough CPU/request ÷ relay's (project: 1.5×)"),
                p / r,
                2.0,
                "×",
            );
            goal(
                format!("{w}: dual-write CPU/request ÷ relay's"),
                d / r,
                3.5,
                "×",
            );
        }
    }
    let errors: u64 = results
        .iter()
        .flat_map(|(_, rows)| rows.iter().skip(1))
        .map(|r| r.errors)
        .sum();
    goal(
        "error answers (OVERLOADED included), every hop, every scenario".into(),
        errors as f64,
        0.0,
        "",
    );
    let open = &results[2].1;
    let added = |r: &Row| r.latency[0] as f64 - open[0].latency[0] as f64;
    goal(
        "open loop: passthrough added p50 ÷ relay's added p50".into(),
        added(&open[2]) / added(&open[1]).max(1.0),
        1.2,
        "×",
    );
    let budget = 30.0 + idle as f64 * 20.0 / 1024.0;
    goal(
        format!("proxy RSS with {idle} idle clients (budget 30 MiB + 20 KiB each)"),
        rss_with_idle_kib as f64 / 1024.0,
        (budget * 10.0).round() / 10.0,
        " MiB",
    );
    g
}

/// The floor for any proxy hop: bytes copied both ways, nothing parsed.
/// A CA and a certificate for 127.0.0.1, made for this run: the proxy's
/// `[tls]` section, and what the load generator trusts.
fn bench_certificates() -> (String, cutover::client::TlsTo) {
    let dir = std::env::temp_dir().join(format!("cutover-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (cert_file, key_file) = (dir.join("proxy.pem"), dir.join("proxy-key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(cutover::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert_file.display(),
            key_file.display()
        ),
        cutover::client::TlsTo {
            config: std::sync::Arc::new(config),
            name: rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
        },
    )
}

fn relay(target: SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("relay listening on {}", listener.local_addr().unwrap());
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                let Ok(mut node) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = node.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
            });
        }
    });
}
