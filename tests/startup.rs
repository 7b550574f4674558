//! Start-up that speaks: `cutover run` with an unreachable origin logs a
//! WARN naming it at the default level within seconds, and says so again
//! when it answers; the log written to a file carries no colour codes.

mod common;

use std::process::{Command, Stdio};

use common::wait_for;

#[tokio::test]
async fn an_unreachable_origin_is_named_at_once_and_again_when_it_answers() {
    let target = cutover::node::start(cutover::node::NodeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    // A port nothing listens on, for now.
    let origin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("cutover-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", "--listen", "127.0.0.1:0", "--origin"])
        .arg(origin.to_string())
        .arg("--target")
        .arg(target.addr.to_string())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("a WARN naming the origin", || {
        let text = lines();
        std::future::ready(text.lines().any(|l| {
            l.contains(" WARN ")
                && l.contains("no node of the cluster answers")
                && l.contains("cluster=origin")
                && l.contains(&origin.to_string())
        }))
    })
    .await;
    assert!(
        !lines()
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("cluster=target")),
        "the target answers: nothing is said of it at WARN\n{}",
        lines()
    );
    assert!(!lines().contains('\u{1b}'), "no colour codes in a file");
    let node = cutover::node::start(cutover::node::NodeConfig::new(origin))
        .await
        .unwrap();
    wait_for("the origin named as answering again", || {
        let text = lines();
        std::future::ready(
            text.lines()
                .any(|l| l.contains("the cluster answers again") && l.contains("cluster=origin")),
        )
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    node.shutdown().await;
    target.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}
