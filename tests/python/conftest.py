"""Fixtures: embedded nodes started on free loopback ports, real drivers."""
import json
import os
import subprocess
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("CUTOVER_BIN", os.path.join(ROOT, "target", "debug", "cutover"))


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
