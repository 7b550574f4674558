"""The admin API as an SRE uses it, with the Python driver as the workload:
/metrics that Prometheus tooling accepts, /v1/histograms, the log level
changed while running, JSON logs."""
import json
import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from conftest import Node, Proxy, connect, proxy_config, wait_for


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, family, sample_name, **labels):
    for s in fams[family].samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_metrics_from_a_driver_workload_parse_and_pass_promtool(tmp_path):
    origin, target = Node(), Node()
    proxy = Proxy(origin, target, config=proxy_config(tmp_path, origin, target), admin=True)
    try:
        cluster, session = connect(proxy.port)
        session.execute("CREATE KEYSPACE m WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        session.execute("CREATE TABLE m.t (k int PRIMARY KEY, v text)")
        insert = session.prepare("INSERT INTO m.t (k, v) VALUES (?, ?)")
        for k in range(120):
            session.execute(insert, (k, "v" * 80))
        select = session.prepare("SELECT v FROM m.t WHERE k = ?")
        for k in range(30):
            assert session.execute(select, (k,)).one().v == "v" * 80
        target.http("POST", "/faults/error", {"error": "write_timeout"})
        try:
            session.execute(insert, (1000, "x"))
            raise AssertionError("the write should have failed on the target")
        except Exception as e:  # the driver's WriteTimeout
            assert "WriteTimeout" in type(e).__name__ or "timed out" in str(e), e
        target.http("DELETE", "/faults")
        cluster.shutdown()

        def scraped():
            status, text = proxy.http("GET", "/metrics", raw=True)
            assert status == 200
            fams = families(text)
            writes = value(fams, "cutover_request_duration_seconds", "cutover_request_duration_seconds_count", op="write", outcome="ok")
            return (text, fams) if writes == 120 else None

        text, fams = wait_for(scraped, what="120 successful writes in the client series")
        # The driver's own EXECUTEs, exactly: 120 inserts, 30 selects, 1 failed insert.
        assert value(fams, "cutover_client_requests", "cutover_client_requests_total", opcode="EXECUTE") == 151
        assert value(fams, "cutover_request_duration_seconds", "cutover_request_duration_seconds_count", op="read", outcome="ok") >= 30
        assert value(fams, "cutover_cluster_errors", "cutover_cluster_errors_total", cluster="target", code="write_timeout", source="cluster") == 1
        assert value(fams, "cutover_mirror_write_failures", "cutover_mirror_write_failures_total", cluster="target") == 1
        assert value(fams, "cutover_request_duration_seconds", "cutover_request_duration_seconds_count", op="write", outcome="write_timeout") == 1
        # Buckets are cumulative, fine below 1 ms, and end with +Inf == count.
        buckets = [
            (s.labels["le"], s.value)
            for s in fams["cutover_request_duration_seconds"].samples
            if s.name.endswith("_bucket") and s.labels["op"] == "write" and s.labels["outcome"] == "ok"
        ]
        bounds = [float(le) for le, _ in buckets]
        assert bounds[:4] == [0.000025, 0.00005, 0.000075, 0.0001]
        assert sum(1 for b in bounds if b < 0.001) >= 10
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1] == ("+Inf", 120)
        # The summary's quantiles over the recent window, in order.
        qs = {
            s.labels["quantile"]: s.value
            for s in fams["cutover_request_duration_recent_seconds"].samples
            if s.labels.get("op") == "write" and s.labels.get("outcome") == "ok" and "quantile" in s.labels
        }
        assert list(qs) == ["0.5", "0.9", "0.99", "0.999", "0.9999"]
        assert 0 < qs["0.5"] <= qs["0.9"] <= qs["0.99"] <= qs["0.999"] <= qs["0.9999"]

        promtool = shutil.which("promtool")
        assert promtool, "promtool is missing: ./test installs it (Debian package prometheus)"
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

        status, h = proxy.http("GET", "/v1/histograms")
        assert status == 200 and h["unit"] == "microseconds"
        writes = [
            s for s in h["series"]
            if s["family"] == "cutover_cluster_request_duration_seconds" and s["op"] == "write" and s["outcome"] == "ok"
        ]
        assert {s["cluster"] for s in writes} == {"origin", "target"}
        for s in writes:
            c = s["cumulative"]
            assert c["count"] >= 120
            assert c["min"] <= c["p50"] <= c["p90"] <= c["p99"] <= c["p999"] <= c["p9999"] <= c["p99999"] <= c["max"]
    finally:
        proxy.stop()
        origin.stop()
        target.stop()


def test_log_level_changes_live_and_logs_can_be_json(tmp_path):
    origin, target = Node(), Node()
    log = tmp_path / "proxy.log"
    cfg = proxy_config(tmp_path, origin, target, extra='[log]\nformat = "json"\nfilter = "warn"\n')
    proxy = Proxy(origin, target, config=cfg, admin=True, stderr=str(log))
    try:
        status, body = proxy.http("PUT", "/v1/log-level", {"filter": "info,cutover=debug"})
        assert status == 200 and body == {"filter": "info,cutover=debug"}
        status, body = proxy.http("PUT", "/v1/log-level", {"filter": "cutover=shouting"})
        assert status == 400 and "invalid filter" in body["errors"][0]
        # Text tracing-subscriber's parser panics on is refused before it.
        status, body = proxy.http("PUT", "/v1/log-level", {"filter": "o, s\u00e9="})
        assert status == 400 and "is ASCII" in body["errors"][0], body
        # Logged at info, so only seen because the filter changed from warn.
        def logged():
            lines = [json.loads(l) for l in log.read_text().splitlines() if l.strip()]
            return lines if any("log filter changed" in l.get("fields", {}).get("message", "") for l in lines) else None

        lines = wait_for(logged, what="the filter change in the JSON log")
        assert all("level" in l and "timestamp" in l for l in lines)
        assert not any(l["level"] == "INFO" and "control connection up" in l.get("fields", {}).get("message", "") for l in lines), "info lines before the change are filtered out"
    finally:
        proxy.stop()
        origin.stop()
        target.stop()


def test_the_shipped_prometheus_config_and_alert_rules_are_valid():
    """deploy/prometheus: the alerts use metric names /metrics really has."""
    import os

    from conftest import ROOT

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: ./test installs it (Debian package prometheus)"
    deploy = os.path.join(ROOT, "deploy", "prometheus")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        r = subprocess.run([promtool, *args], cwd=deploy, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    rules = open(os.path.join(deploy, "alerts.yml")).read()
    import re

    exprs = [l for l in rules.splitlines() if l.strip().startswith("expr:")]
    used = set(re.findall(r"\b(cutover_[a-z_]+)", "\n".join(exprs)))
    assert used, "no expressions found"
    readme = open(os.path.join(ROOT, "README.md")).read()
    documented = set(re.findall(r"`(cutover_[a-z_]+)`", readme))
    base = {re.sub(r"_(count|sum|bucket)$", "", m) for m in used}
    assert base <= documented, f"alerts use undocumented metrics: {base - documented}"
