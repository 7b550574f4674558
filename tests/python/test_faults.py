"""Fault injection through the node's control port, seen by a real driver."""
import uuid

import pytest
from cassandra import OperationTimedOut, WriteTimeout
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException

# What a driver may raise while it reconnects to a restarted node.
RECONNECTING = (NoHostAvailable, OperationTimedOut, ConnectionException)

from conftest import connect, wait_for


def setup_table(s):
    ks = "f_" + uuid.uuid4().hex[:8]
    s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
    return ks


def test_write_timeout_injection_then_recovery(node):
    cluster, s = connect(node.port)
    try:
        ks = setup_table(s)
        ins = s.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
        node.http("POST", "/faults/error", {"error": "write_timeout", "share": 1.0})
        with pytest.raises(WriteTimeout):
            s.execute(ins, (1, "lost?"))
        with pytest.raises(WriteTimeout):
            s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (2, 'simple')")
        # Reads are not writes: they keep working during a write-timeout fault.
        assert s.execute(f"SELECT * FROM {ks}.t WHERE k = 1").one() is None
        assert node.stats()["errors"].get("0x1100", 0) == 2
        node.http("DELETE", "/faults")
        s.execute(ins, (1, "kept"))
        assert s.execute(f"SELECT v FROM {ks}.t WHERE k = 1").one().v == "kept"
    finally:
        cluster.shutdown()


def test_injection_filters_by_keyspace_and_share(node):
    cluster, s = connect(node.port)
    try:
        ks = setup_table(s)
        other = setup_table(s)
        node.http("POST", "/faults/error", {"error": "write_timeout", "keyspace": ks})
        with pytest.raises(WriteTimeout):
            s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, 'x')")
        s.execute(f"INSERT INTO {other}.t (k, v) VALUES (1, 'x')")
        node.http("POST", "/faults/error", {"error": "write_timeout", "share": 0.0})
        s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, 'x')")
    finally:
        cluster.shutdown()


def test_restart_forgets_prepared_and_the_driver_reprepares(node):
    # Without reprepare_on_up the driver does not re-prepare when the host
    # comes back, so the old id really reaches the restarted node.
    cluster, s = connect(node.port, reprepare_on_up=False)
    try:
        ks = setup_table(s)
        ins = s.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
        sel = s.prepare(f"SELECT v FROM {ks}.t WHERE k = ?")
        s.execute(ins, (1, "before"))
        node.http("POST", "/restart")

        def reconnected():
            try:
                return s.execute("SELECT key FROM system.local").one() is not None
            except RECONNECTING:
                return False

        wait_for(reconnected, timeout=30, what="the driver to reconnect")
        # The old id is unknown now: the node answers UNPREPARED, the driver
        # prepares again on its own and the EXECUTE succeeds.
        wait_for(lambda: try_execute(s, ins, (2, "after")), timeout=30, what="EXECUTE after restart")
        assert node.stats()["errors"].get("0x2500", 0) >= 1, node.stats()
        assert s.execute(sel, (1,)).one().v == "before", "data survives a restart"
        assert s.execute(sel, (2,)).one().v == "after"
    finally:
        cluster.shutdown()


def try_execute(s, stmt, args):
    try:
        s.execute(stmt, args)
        return True
    except RECONNECTING:
        return False


def test_latency_injection_makes_a_client_time_out(node):
    cluster, s = connect(node.port)
    try:
        ks = setup_table(s)
        node.http("POST", "/faults/latency", {"ms": 5000})
        with pytest.raises(OperationTimedOut):
            s.execute(f"SELECT * FROM {ks}.t WHERE k = 1", timeout=0.5)
        node.http("DELETE", "/faults")
        assert s.execute(f"SELECT * FROM {ks}.t WHERE k = 1", timeout=5).one() is None
    finally:
        cluster.shutdown()


def test_hung_requests_complete_when_released(node):
    import threading

    cluster, s = connect(node.port)
    try:
        ks = setup_table(s)
        node.http("POST", "/faults/hang")
        before = node.stats()["requests"].get("QUERY", 0)
        answered = threading.Event()
        future = s.execute_async(f"INSERT INTO {ks}.t (k, v) VALUES (5, 'held')")
        future.add_callbacks(lambda _: answered.set(), lambda _: answered.set())
        # The request reached the node and is held there, unanswered.
        wait_for(lambda: node.stats()["requests"].get("QUERY", 0) > before, what="the request to reach the node")
        assert not answered.is_set()
        node.http("POST", "/faults/release")
        future.result()
        assert answered.is_set()
        assert s.execute(f"SELECT v FROM {ks}.t WHERE k = 5").one().v == "held"
    finally:
        cluster.shutdown()


def test_down_refuses_connections_and_up_restores_them(node):
    node.http("POST", "/down")
    with pytest.raises(NoHostAvailable):
        connect(node.port, connect_timeout=2)
    node.http("POST", "/up")
    cluster, s = connect(node.port)
    try:
        assert s.execute("SELECT release_version FROM system.local").one().release_version.startswith("4.")
    finally:
        cluster.shutdown()
