//! Every series the alert rules in deploy/prometheus/alerts.yml name is one
//! a running proxy exports: a rule over a name that does not exist never
//! fires, and promtool cannot tell.

mod common;

use std::collections::BTreeSet;

use common::Setup;
use cutover::config::WriteMode;

/// The `cutover_*` names in `text`, histogram suffixes taken off.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("cutover_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(name.to_string());
        i = end;
    }
    out
}

#[tokio::test]
async fn every_series_an_alert_names_is_exported() {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alerts.yml"
    ))
    .unwrap();
    let exprs: String = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect::<Vec<_>>()
        .join("\n");
    let wanted = names_in(&exprs);
    assert!(wanted.len() >= 8, "{wanted:?}");
    // async-secondary, so the journal's series are there; one write and
    // one read, so the request series are.
    let dir = std::env::temp_dir().join(format!("cutover-alert-series-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.clone();
    let s = Setup::start_with(None, None, move |c| {
        c.route.write_mode = WriteMode::AsyncSecondary;
        c.journal.dir = d;
    })
    .await;
    let mut c = s.client_with_table().await;
    c.query("INSERT INTO ks.t (k, v) VALUES (1, 'a')")
        .await
        .unwrap();
    c.query("SELECT v FROM ks.t WHERE k = 1").await.unwrap();
    let metrics = s.metrics().await;
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(names_in)
        .collect();
    let missing: Vec<&String> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "alerts name series the proxy does not export: {missing:?}"
    );
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
