//! Processes the benchmarks start and measure: embedded nodes and proxies as
//! the real `cutover` binary, each with its CPU time and memory read from
//! `/proc`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A child process that printed the address it listens on.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `cmd` and reads its stdout until a line starting with `ready`
    /// (ending in the address).
    pub fn spawn(mut cmd: Command, ready: &str) -> Process {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start a benchmark process");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("the process exited before printing {ready:?}");
            }
            if line.starts_with(ready) {
                break;
            }
        }
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.trim_start_matches("http://").parse().ok())
            .expect("an address at the end of the ready line");
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        Process { child, addr }
    }

    /// An embedded node on a free loopback port.
    pub fn node() -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["node", "--listen", "127.0.0.1:0"]);
        Process::spawn(cmd, "cql listening on ")
    }

    /// An embedded node with its control port (fault injection) on a free
    /// port: the node and the control port's address.
    pub fn node_with_control() -> (Process, SocketAddr) {
        let control = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["node", "--listen", "127.0.0.1:0", "--control"])
            .arg(control.to_string());
        (Process::spawn(cmd, "cql listening on "), control)
    }

    /// The proxy in front of two nodes in `phase`, default config otherwise
    /// (histograms included), on a free port.
    pub fn proxy(origin: SocketAddr, target: SocketAddr, phase: &str) -> Process {
        Process::proxy_with(origin, target, phase, "", "")
    }

    /// As `proxy`, with `route` added to `[route]` and `extra` at the end;
    /// `name` tells the config files apart.
    pub fn proxy_with(
        origin: SocketAddr,
        target: SocketAddr,
        phase: &str,
        route: &str,
        extra: &str,
    ) -> Process {
        Process::proxy_limited(origin, target, phase, route, extra, 5000)
    }

    /// As `proxy_with`, serving at most `max_clients` client connections.
    pub fn proxy_limited(
        origin: SocketAddr,
        target: SocketAddr,
        phase: &str,
        route: &str,
        extra: &str,
        max_clients: usize,
    ) -> Process {
        let dir = std::env::temp_dir().join(format!("cutover-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let custom = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (route, extra, max_clients).hash(&mut h);
            h.finish()
        };
        let cfg = dir.join(
            if route.is_empty() && extra.is_empty() && max_clients == 5000 {
                format!("{phase}.toml")
            } else {
                format!("{phase}-{custom:x}.toml")
            },
        );
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[limits]\nmax_client_connections = {max_clients}\n\
                 [clusters.origin]\ncontact_points = [\"{origin}\"]\n[clusters.target]\ncontact_points = [\"{target}\"]\n\
                 [route]\nphase = \"{phase}\"\n{route}\n{extra}\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["run", "--config"]).arg(&cfg);
        Process::spawn(cmd, "cutover proxy listening on ")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds of the process (all its threads) so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / clock_ticks_per_second()
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux platform Rust targets.
    100.0
}

pub mod chart;
pub mod load;
