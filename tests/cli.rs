//! The command line as a user meets it.

use std::process::Command;

fn cutover() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
}

#[test]
fn check_config_accepts_the_example() {
    let out = cutover()
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/cutover.example.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = std::env::temp_dir().join(format!("cutover-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "listn = \"x\"\n[clusters.origin]\ncontact_points = []\n[route]\nshard = \"nope\"\n",
    )
    .unwrap();
    let out = cutover().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `listn`"), "{err}");
    assert!(
        err.contains("`clusters.origin.contact_points` is empty"),
        "{err}"
    );
    assert!(err.contains("`route.shard` is \"nope\""), "{err}");
    // An environment override is part of what is checked.
    let out = cutover()
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/cutover.example.toml"),
        ])
        .env("CUTOVER_ROUTE__PHASE", "sideways")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sideways"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_user_flag_is_a_clear_cli_error() {
    let out = cutover()
        .args(["node", "--listen", "127.0.0.1:0", "--user", "nopassword"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user expects NAME:PASSWORD"));
}

#[test]
fn demo_falls_back_to_free_ports_and_the_proxy_answers() {
    use std::io::{BufRead, BufReader};

    // Hold a port so that the proxy cannot have it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let mut child = cutover()
        .args([
            "demo",
            "--origin",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:0",
            "--listen",
            &busy_addr,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut proxy = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim_start().strip_prefix("proxy") {
            proxy = rest
                .split_whitespace()
                .next()
                .map(|a| a.parse::<std::net::SocketAddr>().unwrap());
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    let proxy = proxy.expect("the demo prints the proxy's address");
    assert_ne!(
        proxy.to_string(),
        busy_addr,
        "a free port instead of the busy one"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answered = rt.block_on(async {
        let mut c = cutover::client::Client::connect(proxy, 4, None, None)
            .await
            .unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c.query("SELECT rpc_address FROM system.local"),
        )
        .await
        .expect("the proxy answers system.local")
        .is_ok()
    });
    // SIGTERM: the demo stops its nodes and removes its folder.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    assert!(answered);
}

/// `cutover check-config FILE | head -1`: when the reader has gone, the
/// command ends quietly (by SIGPIPE, as other Unix tools do), not with a
/// panic about a broken pipe.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cutover()
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/cutover.example.toml"),
        ])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{err}");
}

/// A user's mistake is one line, even with RUST_BACKTRACE=1 set.
#[test]
fn a_user_error_is_one_line_without_a_backtrace() {
    let out = cutover()
        .args([
            "copy",
            "--from",
            "nope",
            "--to",
            "127.0.0.1:1",
            "--keyspace",
            "k",
        ])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: --from: \"nope\" is neither host:port"),
        "{err}"
    );
}

/// `cutover run --origin --target` has its admin API without `--admin`:
/// on 127.0.0.1:9180, or a free port when that is taken (here it is held).
#[test]
fn quick_start_has_an_admin_api() {
    use std::io::{BufRead, BufReader, Read, Write};
    let held = std::net::TcpListener::bind("127.0.0.1:9180");
    let mut child = cutover()
        .args(["run", "--origin", "127.0.0.1:1", "--target", "127.0.0.1:2"])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut admin = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("admin listening on http://") {
            admin = Some(a.parse::<std::net::SocketAddr>().unwrap());
            break;
        }
    }
    let admin = admin.expect("the admin API's address is printed");
    if held.is_ok() {
        assert_ne!(admin.port(), 9180, "a free port, 9180 being held");
    }
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    child.kill().unwrap();
    child.wait().unwrap();
}
