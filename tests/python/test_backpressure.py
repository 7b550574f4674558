"""Backpressure as a real node does it, seen by the Python driver: a burst
past the proxy's per-connection in-flight limit is slowed down, never
refused, and a connection held back still answers the driver's heartbeats."""
import uuid

from cassandra.query import SimpleStatement

from conftest import Node, Proxy, connect, proxy_config, wait_for


def config(tmp_path, origin, target, limits=""):
    # Long enough that a pause the test holds is not a cluster timeout.
    return proxy_config(tmp_path, origin, target, extra=f"[limits]\n{limits}", request_timeout="30s")


def rows_on(node, ks):
    cluster, s = connect(node.port)
    try:
        return {r.k for r in s.execute(SimpleStatement(f"SELECT k FROM {ks}.t", fetch_size=500))}
    finally:
        cluster.shutdown()


def test_2500_execute_async_at_once_then_a_paged_read(tmp_path):
    origin, target = Node(), Node()
    proxy = Proxy(origin, target, config=config(tmp_path, origin, target), admin=True)
    try:
        cluster, s = connect(proxy.port)
        ks = "bp_" + uuid.uuid4().hex[:8]
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
        ins = s.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
        for n in (origin, target):
            # Slow enough that the whole burst is in flight at once.
            n.http("POST", "/faults/latency", {"ms": 300})
        futures = [s.execute_async(ins, (k, "burst")) for k in range(2500)]
        errors = []
        for f in futures:
            try:
                f.result()
            except Exception as e:  # every error is a failure of the test
                errors.append(repr(e))
        assert errors == [], f"{len(errors)} of 2500 failed, first: {errors[0]}"
        assert proxy.metric("cutover_client_pauses_total") >= 1, "the burst went past the limit"
        read = s.execute(SimpleStatement(f"SELECT k, v FROM {ks}.t", fetch_size=300))
        keys = [r.k for r in read]
        assert sorted(keys) == list(range(2500)), "the paged read returns every row once"
        cluster.shutdown()
        for n in (origin, target):
            n.http("DELETE", "/faults")
            assert rows_on(n, ks) == set(range(2500))
    finally:
        proxy.stop()
        origin.stop()
        target.stop()


def test_heartbeats_are_answered_while_a_connection_is_held_back(tmp_path):
    origin, target = Node(), Node()
    limits = "max_in_flight_per_connection = 2"
    proxy = Proxy(origin, target, config=config(tmp_path, origin, target, limits), admin=True)
    try:
        # A heartbeat each second, and a connection declared dead when one
        # is not answered within two.
        cluster, s = connect(proxy.port, idle_heartbeat_interval=1, idle_heartbeat_timeout=2)
        ks = "hb_" + uuid.uuid4().hex[:8]
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
        ins = s.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
        accepted = proxy.metric("cutover_client_connections_accepted_total")
        origin.http("POST", "/faults/hang")
        futures = [s.execute_async(ins, (k, "held")) for k in range(50)]
        wait_for(lambda: proxy.metric("cutover_requests_in_flight") == 50, what="the 50 writes at the proxy")
        # Two run, 48 wait. The pause outlasts the heartbeat timeout: eight
        # heartbeats (two connections, one a second each) are answered.
        options = proxy.metric("cutover_client_requests_total", opcode="OPTIONS")
        wait_for(
            lambda: proxy.metric("cutover_client_requests_total", opcode="OPTIONS") >= options + 8,
            timeout=20,
            what="heartbeats during the pause",
        )
        origin.http("POST", "/faults/release")
        for f in futures:
            f.result()
        assert proxy.metric("cutover_client_connections_accepted_total") == accepted, (
            "no connection was declared dead and replaced"
        )
        cluster.shutdown()
        for n in (origin, target):
            assert rows_on(n, ks) == set(range(50))
    finally:
        proxy.stop()
        origin.stop()
        target.stop()
