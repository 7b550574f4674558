"""The Node.js cassandra-driver (pinned in tests/nodejs/package.json, run by
tests/nodejs/gaps.js) against the embedded node and through the proxy:
named bind values on unprepared queries, and several updates of one counter
cell in one counter BATCH, which Cassandra adds up."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, Node, Proxy

SCRIPT = os.path.join(ROOT, "tests", "nodejs", "gaps.js")
MODULES = os.path.join(ROOT, "tests", "nodejs", "node_modules", "cassandra-driver")

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not os.path.isdir(MODULES),
    reason="Node.js or tests/nodejs/node_modules is missing (./test installs them with npm ci)",
)

EXPECTED = {
    "named": ["one"],
    "rows": [[1, "one"], [2, "two"]],
    "counters": [[1, "-2"], [2, "7"]],
}


def run(port, datacenter="datacenter1"):
    r = subprocess.run(["node", SCRIPT, str(port), datacenter], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_named_values_and_a_counter_batch_on_the_node(node):
    assert run(node.port) == EXPECTED


def test_named_values_and_a_counter_batch_through_the_proxy(cluster_pair):
    origin, target, proxy = cluster_pair
    # The proxy's instances are in `[topology] datacenter`, dc1 by default.
    assert run(proxy.port, "dc1") == EXPECTED
    # Both clusters hold the same totals.
    from conftest import connect

    for n in (origin, target):
        cluster, s = connect(n.port)
        try:
            assert sorted((r.k, r.n) for r in s.execute("SELECT k, n FROM nj.c")) == [(1, -2), (2, 7)]
        finally:
            cluster.shutdown()
