"""The routing policy changed on a running proxy with the Python driver
connected: by editing the config file and sending SIGHUP, and through the
admin API; an invalid file is refused and the running policy stays."""
import pathlib
import signal

from conftest import Node, Proxy, connect, diverge, proxy_config, wait_for


def counter(proxy, name):
    status, text = proxy.http("GET", "/metrics", raw=True)
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_sighup_and_the_admin_api_change_the_policy_under_a_connected_driver(tmp_path):
    origin, target = Node(), Node()
    diverge(origin, target, "pol")
    path = proxy_config(tmp_path, origin, target, phase="dual-write")
    proxy = Proxy(origin, target, config=path, admin=True)
    cluster, session = connect(proxy.port)
    try:
        read = session.prepare("SELECT v FROM pol.t WHERE k = ?")
        assert session.execute(read, (1,)).one().v == "from-origin"

        # Edit the file, SIGHUP: reads move to the target.
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('phase = "dual-write"', 'phase = "target-primary"'))
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: session.execute(read, (1,)).one().v == "from-target", what="reads from the target after SIGHUP")
        status, policy = proxy.http("GET", "/v1/policy")
        assert status == 200 and policy["version"] == 2 and policy["route"]["phase"] == "target-primary"

        # An invalid file: refused, counted, the policy stays.
        with open(path, "w") as f:
            f.write(text.replace('phase = "dual-write"', 'phase = "dual-write"\nshard = "nowhere"'))
        proxy.proc.send_signal(signal.SIGHUP)
        # Refused by SIGHUP and by the file watcher, whichever runs first.
        wait_for(lambda: counter(proxy, "cutover_policy_changes_refused_total") >= 1, what="the refused reload counted")
        assert proxy.http("GET", "/v1/policy")[1]["version"] == 2
        assert session.execute(read, (1,)).one().v == "from-target"
        status, body = proxy.http("POST", "/v1/reload")
        assert status == 400 and any('"nowhere"' in e for e in body["errors"]), body

        # The admin API puts it back; prepared statements keep working.
        status, body = proxy.http("PUT", "/v1/policy", {"route": {"phase": "dual-write"}})
        assert status == 200 and body["version"] == 3, body
        # Kept in the route file beside the config, so no reload undoes it.
        assert body["persisted"] == str(pathlib.Path(path).with_suffix(".route.toml")), body
        assert session.execute(read, (1,)).one().v == "from-origin"
        insert = session.prepare("INSERT INTO pol.t (k, v) VALUES (?, ?)")
        session.execute(insert, (2, "both"))
        for node in (origin, target):
            c, s = connect(node.port)
            assert s.execute("SELECT v FROM pol.t WHERE k = 2").one().v == "both"
            c.shutdown()
        assert counter(proxy, "cutover_policy_version") == 3
    finally:
        cluster.shutdown()
        proxy.stop()
        origin.stop()
        target.stop()
