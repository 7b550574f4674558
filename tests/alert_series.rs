//! Every series the alert rules (deploy/prometheus/alerts.yml) and the
//! Grafana dashboard (deploy/grafana/cutover.json) name is one a running
//! proxy exports: a rule over a name that does not exist never fires, a
//! panel over one stays empty, and neither promtool nor Grafana can tell.

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
async fn every_series_an_alert_or_a_panel_names_is_exported() {
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
    let mut wanted = names_in(&exprs);
    assert!(wanted.len() >= 8, "{wanted:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/cutover.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let queries: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(queries.len() >= 13, "{queries:?}");
    for q in &queries {
        assert!(
            q.contains("$instance"),
            "every panel follows the instance variable: {q}"
        );
    }
    assert_eq!(
        dashboard["templating"]["list"][0]["type"], "datasource",
        "a data source variable, for provisioning"
    );
    wanted.extend(queries.iter().flat_map(|q| names_in(q)));
    // async-secondary, so the journal's series are there; one write and
    // one read, so the request series are.
    let dir = std::env::temp_dir().join(format!("cutover-alert-series-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.clone();
    let s = Setup::start_with(None, None, move |c| {
        c.route.write_mode = WriteMode::AsyncSecondary;
        c.journal.dir = d;
        // Tenants by keyspace, one listed: the per-tenant series.
        c.tenants.key = cutover::config::TenantKey::Keyspace {
            keyspace: "^(.*)$".into(),
        };
        c.metrics.tenants = vec!["ks".into()];
    })
    .await;
    let mut c = s.client_with_table().await;
    c.query("INSERT INTO ks.t (k, v) VALUES (1, 'a')")
        .await
        .unwrap();
    c.query("SELECT v FROM ks.t WHERE k = 1").await.unwrap();
    // A shadow read that differs: the mismatch series.
    common::wait_for("the row on the target", || async {
        common::node_has_row(s.target.addr, "ks.t", 1).await
    })
    .await;
    let mut t = cutover::client::Client::connect(s.target.addr, 4, None, None)
        .await
        .unwrap();
    t.query("UPDATE ks.t USING TIMESTAMP 9999999999999999 SET v = 'b' WHERE k = 1")
        .await
        .unwrap();
    let (status, body) = common::http(
        s.admin,
        "PUT",
        "/v1/policy",
        Some(r#"{"route": {"phase": "shadow-reads"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    c.query("SELECT v FROM ks.t WHERE k = 1").await.unwrap();
    let admin = s.admin;
    common::wait_for("the mismatch counted", || async move {
        let (_, m) = common::http(admin, "GET", "/metrics", None).await;
        m.contains("cutover_shadow_read_mismatches_total{")
    })
    .await;
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
