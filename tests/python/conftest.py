"""Fixtures: embedded nodes started on free loopback ports, real drivers."""
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("TEST_CUTOVER_BINARY", os.path.join(ROOT, "target", "debug", "cutover"))


class Node:
    """One `cutover node` process with its control port."""

    def __init__(self, *extra):
        if not os.path.exists(BINARY):
            raise RuntimeError(f"{BINARY} is missing: run `cargo build` first (./test does)")
        self.proc = subprocess.Popen(
            [BINARY, "node", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.port = None
        self.control = None
        deadline = time.monotonic() + 20
        while (self.port is None or self.control is None) and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("cql listening on "):
                self.port = int(line.rsplit(":", 1)[1])
            elif line.startswith("control listening on "):
                self.control = line.split(" on ", 1)[1].strip()
        if self.port is None or self.control is None:
            self.stop()
            raise RuntimeError("the node did not report its ports")

    def http(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.control + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def stats(self):
        return self.http("GET", "/stats")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Proxy:
    """A `cutover run` process in front of two nodes."""

    def __init__(self, origin, target, config=None, admin=False, stderr=None):
        """`admin`: start the admin API on a free port (self.admin is its URL);
        `stderr`: a file path for the proxy's logs."""
        if config is None:
            args = ["run", "--origin", f"127.0.0.1:{origin.port}", "--target", f"127.0.0.1:{target.port}", "--listen", "127.0.0.1:0"]
        else:
            self.config_path = config
            args = ["run", "--config", config]
        if admin:
            args += ["--admin", "127.0.0.1:0"]
        self.stderr = open(stderr, "w") if stderr else subprocess.DEVNULL
        self.proc = subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("cutover proxy listening on "):
            self.stop()
            raise RuntimeError(f"the proxy did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.admin = None
        if admin:
            line = self.proc.stdout.readline()
            if not line.startswith("admin listening on "):
                self.stop()
                raise RuntimeError(f"the admin API did not start: {line!r}")
            self.admin = line.split(" on ", 1)[1].strip()

    def http(self, method, path, body=None, raw=False):
        """(status, body) from the admin API; JSON bodies decoded unless `raw`."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.admin + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        return status, (text if raw else json.loads(text))

    def metric(self, name, **labels):
        """The sum of `name`'s samples in /metrics with these labels."""
        status, text = self.http("GET", "/metrics", raw=True)
        assert status == 200
        want = [f'{k}="{v}"' for k, v in labels.items()]
        found = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if (line.startswith(name + " ") or line.startswith(name + "{")) and all(w in line for w in want)
        ]
        assert found, f"{name} {labels} not in /metrics"
        return sum(found)

    def stop(self, sig=None):
        if self.proc.poll() is None:
            if sig:
                self.proc.send_signal(sig)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def proxy_config(tmp_path, origin, target, phase="dual-write", extra="", listen="127.0.0.1:0", request_timeout="3s"):
    """A config file for a proxy (on a free port by default) in front of the two nodes."""
    path = tmp_path / f"cutover-{phase}-{listen.replace(':', '-')}.toml"
    path.write_text(
        f"""
listen = "{listen}"
admin = "127.0.0.1:0"
[clusters.origin]
contact_points = ["127.0.0.1:{origin.port}"]
request_timeout = "{request_timeout}"
[clusters.target]
contact_points = ["127.0.0.1:{target.port}"]
request_timeout = "{request_timeout}"
[route]
phase = "{phase}"
{extra}
"""
    )
    return str(path)


def wait_for(condition, timeout=10.0, what="condition"):
    """Polls `condition` until it returns a truthy value or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def node():
    n = Node()
    yield n
    n.stop()


@pytest.fixture
def cluster_pair():
    """Origin and target nodes, and a proxy in front of them."""
    origin, target = Node(), Node()
    proxy = Proxy(origin, target)
    yield origin, target, proxy
    proxy.stop()
    origin.stop()
    target.stop()


@pytest.fixture(scope="module")
def shared_node():
    n = Node()
    yield n
    n.stop()


def connect(port, protocol_version=None, compression=False, keyspace=None, **kw):
    """A cluster and session with a fall-through retry policy so no error is hidden."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import FallthroughRetryPolicy, RoundRobinPolicy

    profile = ExecutionProfile(
        load_balancing_policy=RoundRobinPolicy(), retry_policy=FallthroughRetryPolicy(), request_timeout=20
    )
    args = dict(
        contact_points=["127.0.0.1"],
        port=port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        compression=compression,
        **kw,
    )
    if protocol_version:
        args["protocol_version"] = protocol_version
    cluster = Cluster(**args)
    return cluster, cluster.connect(keyspace)


def diverge(origin, target, ks):
    """The same key with a different value on each node, written directly."""
    for node, value in ((origin, "from-origin"), (target, "from-target")):
        c, s = connect(node.port)
        s.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE IF NOT EXISTS {ks}.t (k int PRIMARY KEY, v text)")
        s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, '{value}')")
        c.shutdown()
