"""The dual-write proxy with the Python driver: the foundation workload
through the proxy, then each node read directly."""
import signal
import socket
import subprocess
import uuid

import pytest
from cassandra import Unavailable, WriteTimeout

from conftest import Proxy, connect, diverge, proxy_config, wait_for
from test_auth_and_cqlsh import cqlsh
from test_driver_workload import VARIANTS, run_workload


def table_snapshot(session, ks, table, columns):
    return sorted(tuple(r) for r in session.execute(f"SELECT {columns} FROM {ks}.{table}"))


@pytest.mark.parametrize("version,lz4", VARIANTS, ids=[f"v{v}-{'lz4' if z else 'plain'}" for v, z in VARIANTS])
def test_workload_through_the_proxy_lands_on_both_nodes(cluster_pair, version, lz4):
    origin, target, proxy = cluster_pair
    cluster, s = connect(proxy.port, protocol_version=version, compression="lz4" if lz4 else False)
    ks = "px_" + uuid.uuid4().hex[:8]
    try:
        assert cluster.protocol_version == version
        run_workload(cluster, s, proxy, ks)
    finally:
        cluster.shutdown()
    # Each node, read directly: every write is on both, with the same write time.
    co, so = connect(origin.port)
    ct, st = connect(target.port)
    try:
        for table, cols in [
            ("big", "p, c, v, writetime(v)"),
            ("events", "p, c, v, writetime(v), l, st, m, pt"),
            ("ctr", "k, n"),
        ]:
            a = table_snapshot(so, ks, table, cols)
            b = table_snapshot(st, ks, table, cols)
            assert a, table
            assert a == b, f"{table} differs between origin and target"
        assert len(table_snapshot(so, ks, "big", "p, c")) == 10_000
    finally:
        co.shutdown()
        ct.shutdown()


def test_reads_are_answered_by_the_primary_and_config_switches_it(cluster_pair, tmp_path):
    origin, target, proxy = cluster_pair
    ks = "rd_" + uuid.uuid4().hex[:8]
    diverge(origin, target, ks)
    c, s = connect(proxy.port)
    try:
        assert s.execute(f"SELECT v FROM {ks}.t WHERE k = 1").one().v == "from-origin"
        sel = s.prepare(f"SELECT v FROM {ks}.t WHERE k = ?")
        assert s.execute(sel, (1,)).one().v == "from-origin"
    finally:
        c.shutdown()
    flipped = Proxy(origin, target, config=proxy_config(tmp_path, origin, target, phase="target-primary"))
    c, s = connect(flipped.port)
    try:
        assert s.execute(f"SELECT v FROM {ks}.t WHERE k = 1").one().v == "from-target"
        # Writes still reach both.
        s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (2, 'both')")
    finally:
        c.shutdown()
        flipped.stop()
    for node in (origin, target):
        c, s = connect(node.port)
        assert s.execute(f"SELECT v FROM {ks}.t WHERE k = 2").one().v == "both"
        c.shutdown()


def test_drivers_see_only_the_proxy(cluster_pair):
    origin, target, proxy = cluster_pair
    c, s = connect(proxy.port)
    try:
        local = s.execute("SELECT rpc_address, host_id, tokens FROM system.local WHERE key = 'local'").one()
        assert str(local.rpc_address) == "127.0.0.1"
        assert len(local.tokens) == 8, "the proxy's own virtual tokens"
        direct_c, direct = connect(origin.port)
        node_id = direct.execute("SELECT host_id FROM system.local").one().host_id
        direct_c.shutdown()
        assert local.host_id != node_id, "the node's identity is not leaked"
        assert list(s.execute("SELECT * FROM system.peers")) == []
        hosts = c.metadata.all_hosts()
        assert [h.endpoint.port for h in hosts] == [proxy.port]
    finally:
        c.shutdown()


def test_cqlsh_through_the_proxy(cluster_pair):
    origin, target, proxy = cluster_pair
    code, out, err = cqlsh(
        proxy.port,
        "CREATE KEYSPACE viaproxy WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};"
        "CREATE TABLE viaproxy.items (sku text PRIMARY KEY, qty int);"
        "INSERT INTO viaproxy.items (sku, qty) VALUES ('tee', 3);"
        "SELECT * FROM viaproxy.items;"
        "DESCRIBE TABLE viaproxy.items;",
    )
    assert code == 0, err
    assert "tee" in out and "3" in out
    assert "CREATE TABLE viaproxy.items (" in out
    # The schema and the row exist on both nodes.
    for node in (origin, target):
        code, out, err = cqlsh(node.port, "SELECT qty FROM viaproxy.items WHERE sku = 'tee';")
        assert code == 0 and "3" in out, (node.port, out, err)


def test_a_write_timeout_on_the_target_reaches_the_client(cluster_pair):
    origin, target, proxy = cluster_pair
    c, s = connect(proxy.port)
    try:
        ks = "wt_" + uuid.uuid4().hex[:8]
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
        target.http("POST", "/faults/error", {"error": "write_timeout"})
        with pytest.raises(WriteTimeout):
            s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, 'x')")
        # Reads are not affected: they go to the origin.
        s.execute(f"SELECT * FROM {ks}.t WHERE k = 1")
        target.http("DELETE", "/faults")
        s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, 'y')")
    finally:
        c.shutdown()


def test_target_down_is_a_clear_error_and_the_proxy_recovers(cluster_pair):
    origin, target, proxy = cluster_pair
    c, s = connect(proxy.port)
    try:
        ks = "dn_" + uuid.uuid4().hex[:8]
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
        target.http("POST", "/down")
        with pytest.raises(Unavailable, match="target cluster is unreachable"):
            s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, 'x')")
        target.http("POST", "/up")

        def write_works():
            try:
                s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (2, 'back')")
                return True
            except Unavailable:
                return False

        wait_for(write_works, timeout=10, what="the proxy to reach the target again")
    finally:
        c.shutdown()


def test_target_restart_is_invisible_to_prepared_statements(cluster_pair):
    origin, target, proxy = cluster_pair
    ks = "rs_" + uuid.uuid4().hex[:8]
    c, s = connect(proxy.port)
    s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
    c.shutdown()
    c, s = connect(proxy.port, keyspace=ks)
    try:
        ins = s.prepare("INSERT INTO t (k, v) VALUES (?, ?)")
        sel = s.prepare("SELECT v FROM t WHERE k = ?")
        s.execute(ins, (1, "before"))
        prepares_before = origin.stats()["requests"].get("PREPARE", 0)
        target.http("POST", "/restart")
        # Every prepared statement's next EXECUTE succeeds, USE included (the
        # statements are unqualified), and the client is never told UNPREPARED:
        # had it been, the driver would have prepared again through the proxy.
        s.execute(ins, (2, "after"))
        assert s.execute(sel, (2,)).one().v == "after"
        assert origin.stats()["requests"].get("PREPARE", 0) == prepares_before
        assert target.stats()["errors"].get("0x2500", 0) >= 1, "the target did answer UNPREPARED to the proxy"
    finally:
        c.shutdown()
    c, s = connect(target.port)
    assert s.execute(f"SELECT v FROM {ks}.t WHERE k = 2").one().v == "after"
    c.shutdown()


def test_garbage_gets_a_protocol_error_and_other_clients_are_unaffected(cluster_pair):
    origin, target, proxy = cluster_pair
    c, s = connect(proxy.port)
    try:
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
        header = raw.recv(9)
        assert header[0] == 0x85 and header[4] == 0x00, header
        assert raw.recv(4096) and raw.recv(4096) == b"", "closed after the ERROR"
        raw.close()
        assert s.execute("SELECT release_version FROM system.local").one() is not None
    finally:
        c.shutdown()


def test_sigterm_answers_every_request_already_sent(tmp_path):
    from conftest import Node

    origin, target = Node(), Node()
    proxy = Proxy(origin, target)
    try:
        c, s = connect(proxy.port)
        ks = "st_" + uuid.uuid4().hex[:8]
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
        ins = s.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
        origin.http("POST", "/faults/latency", {"ms": 300})
        before = origin.stats()["requests"].get("EXECUTE", 0)
        futures = [s.execute_async(ins, (i, "v")) for i in range(50)]
        wait_for(lambda: origin.stats()["requests"].get("EXECUTE", 0) >= before + 50, what="the writes to reach the origin")
        proxy.proc.send_signal(signal.SIGTERM)
        for f in futures:
            f.result()
        assert proxy.proc.wait(timeout=15) == 0
        c.shutdown()
        origin.http("DELETE", "/faults")
        for node in (origin, target):
            dc, ds = connect(node.port)
            assert ds.execute(f"SELECT COUNT(*) FROM {ks}.t").one()[0] == 50
            dc.shutdown()
    finally:
        proxy.stop()
        origin.stop()
        target.stop()


@pytest.fixture
def auth_pair(tmp_path):
    """Origin checks clients (app/secret); the target only knows the proxy's own login."""
    from conftest import Node

    origin = Node("--user", "app:secret")
    target = Node("--user", "cutover:target-pw")
    extra = '[auth]\ncheck_client_against = "origin"\n'
    cfg = proxy_config(tmp_path, origin, target, extra=extra)
    text = open(cfg).read().replace(
        f'contact_points = ["127.0.0.1:{target.port}"]',
        f'contact_points = ["127.0.0.1:{target.port}"]\nusername = "cutover"\npassword = "target-pw"',
    )
    open(cfg, "w").write(text)
    proxy = Proxy(origin, target, config=cfg)
    yield origin, target, proxy
    proxy.stop()
    origin.stop()
    target.stop()


@pytest.mark.parametrize("version", [4, 5])
def test_clients_log_in_against_the_auth_cluster(auth_pair, version):
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import NoHostAvailable

    origin, target, proxy = auth_pair
    c, s = connect(proxy.port, protocol_version=version, auth_provider=PlainTextAuthProvider("app", "secret"))
    try:
        ks = "au_" + uuid.uuid4().hex[:8]
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
        s.execute(f"INSERT INTO {ks}.t (k, v) VALUES (1, 'both')")
        users = {node: {conn["user"] for conn in node.stats()["connections"]} for node in (origin, target)}
        assert "app" in users[origin], "the origin saw the client's own login"
        assert users[target] == {"cutover"}, "the target saw only the proxy's configured login"
    finally:
        c.shutdown()
    with pytest.raises(NoHostAvailable, match="incorrect"):
        connect(proxy.port, protocol_version=version, auth_provider=PlainTextAuthProvider("app", "wrong"))
    with pytest.raises(NoHostAvailable):
        connect(proxy.port, protocol_version=version)


def test_a_raw_socket_that_skips_authentication_gets_no_data(auth_pair):
    import struct

    origin, target, proxy = auth_pair
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)

    def frame(stream, opcode, body):
        return struct.pack(">BBhBI", 4, 0, stream, opcode, len(body)) + body

    def read_frame():
        header = b""
        while len(header) < 9:
            header += sock.recv(9 - len(header))
        length = struct.unpack(">I", header[5:9])[0]
        body = b""
        while len(body) < length:
            body += sock.recv(length - len(body))
        return header[4], body

    startup = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
    sock.sendall(frame(1, 0x01, startup))
    opcode, _ = read_frame()
    assert opcode == 0x03, "AUTHENTICATE"
    text = b"SELECT * FROM system_schema.keyspaces"
    query = struct.pack(">i", len(text)) + text + struct.pack(">HB", 1, 0)
    sock.sendall(frame(2, 0x07, query))
    opcode, body = read_frame()
    assert opcode == 0x00, "an ERROR, not rows"
    assert struct.unpack(">i", body[:4])[0] == 0x2100 and b"You have not logged in" in body
    sock.close()


def test_two_instances_are_discovered_and_both_serve(tmp_path):
    from conftest import Node

    origin, target = Node(), Node()
    while True:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        other = socket.socket()
        try:
            other.bind(("127.0.0.2", port))
            break
        except OSError:
            continue
        finally:
            probe.close()
            other.close()
    proxies = []
    try:
        for index, ip in enumerate(["127.0.0.1", "127.0.0.2"]):
            extra = f'[topology]\ninstances = ["127.0.0.1:{port}", "127.0.0.2:{port}"]\nindex = {index}\n'
            cfg = proxy_config(tmp_path, origin, target, extra=extra, listen=f"{ip}:{port}")
            proxies.append(Proxy(origin, target, config=cfg))
        c, s = connect(port)
        try:
            wait_for(lambda: len(c.metadata.all_hosts()) == 2, what="the driver to discover both instances")
            assert sorted(str(h.address) for h in c.metadata.all_hosts()) == ["127.0.0.1", "127.0.0.2"]
            served = set()
            for _ in range(40):
                rs = s.execute("SELECT release_version FROM system.local")
                served.add(str(rs.response_future.coordinator_host))
            assert len(served) == 2, served
        finally:
            c.shutdown()
    finally:
        for p in proxies:
            p.stop()
        origin.stop()
        target.stop()


def rows_on(node, query):
    """Rows from this node itself, though it reports peers (drivers would
    otherwise spread the query over the whole cluster)."""
    from cassandra.cluster import NoHostAvailable

    c, s = connect(node.port)
    try:
        host = next(h for h in c.metadata.all_hosts() if h.endpoint.port == node.port)

        def attempt():
            try:
                return (list(s.execute(query, host=host)),)
            except NoHostAvailable:
                return None  # the driver is still bringing its pool up

        return wait_for(attempt, what=f"a read on {node.port}")[0]
    finally:
        c.shutdown()


def test_losing_one_node_of_three_costs_at_most_the_requests_in_flight_on_it(tmp_path):
    from conftest import Node

    origins = [Node() for _ in range(3)]
    targets = [Node() for _ in range(3)]
    cfg = tmp_path / "three.toml"
    cfg.write_text(
        f"""
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[clusters.origin]
contact_points = [{", ".join(f'"127.0.0.1:{n.port}"' for n in origins)}]
request_timeout = "3s"
[clusters.target]
contact_points = [{", ".join(f'"127.0.0.1:{n.port}"' for n in targets)}]
request_timeout = "3s"
"""
    )
    # In-memory nodes do not replicate: every node gets the schema directly.
    for n in origins + targets:
        c, s = connect(n.port)
        s.execute("CREATE KEYSPACE three WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        s.execute("CREATE TABLE three.t (k int PRIMARY KEY, v text)")
        c.shutdown()
    # Each cluster's nodes report one another as peers, as a real cluster's do.
    for cluster in (origins, targets):
        for n in cluster:
            n.http("POST", "/peers", [{"addr": f"127.0.0.1:{p.port}"} for p in cluster if p is not n])
    proxy = Proxy(origins[0], targets[0], config=str(cfg))
    try:
        c, s = connect(proxy.port)
        ins = s.prepare("INSERT INTO three.t (k, v) VALUES (?, ?)")
        in_flight = 32
        acknowledged, failed = [], []
        victim = None
        pending = []
        for k in range(1200):
            if k == 400:
                # Take down the origin node that has been taking the writes.
                victim = max(origins, key=lambda n: n.stats()["requests"].get("EXECUTE", 0))
                assert victim.stats()["requests"].get("EXECUTE", 0) > 0
                victim.http("POST", "/down")
            pending.append((k, s.execute_async(ins, (k, f"v{k}"))))
            if len(pending) >= in_flight:
                done_k, f = pending.pop(0)
                try:
                    f.result()
                    acknowledged.append(done_k)
                except Exception as e:  # noqa: BLE001 - every failure is counted
                    failed.append((done_k, e))
        for done_k, f in pending:
            try:
                f.result()
                acknowledged.append(done_k)
            except Exception as e:  # noqa: BLE001
                failed.append((done_k, e))
        c.shutdown()
        print(f"failed around the kill: {len(failed)} of {len(failed) + len(acknowledged)}")
        assert len(failed) <= in_flight, failed[:3]
        assert all(400 - in_flight <= k < 400 + in_flight for k, _ in failed), failed[:3]
        # Every acknowledged write is on a live node of each cluster.
        for cluster in (origins, targets):
            keys = set()
            for n in cluster:
                if n is victim:
                    continue
                keys |= {r.k for r in rows_on(n, "SELECT k FROM three.t")}
            if cluster is origins:
                # Writes acknowledged by the victim before it went down live there only.
                acknowledged_after = [k for k in acknowledged if k >= 400 + in_flight]
                assert set(acknowledged_after) <= keys
            else:
                assert set(acknowledged) <= keys
    finally:
        proxy.stop()
        for n in origins + targets:
            n.stop()


def test_server_functions_are_computed_once_for_both_clusters(cluster_pair, tmp_path):
    import datetime

    from cassandra.query import BatchStatement, SimpleStatement

    origin, target, default_proxy = cluster_pair
    ks = "fn_" + uuid.uuid4().hex[:8]
    c, s = connect(default_proxy.port)
    s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, id timeuuid, u uuid, at timestamp)")
    # Without replacement each cluster evaluates now() itself: the values differ.
    s.execute(f"INSERT INTO {ks}.t (k, id) VALUES (0, now())")
    c.shutdown()

    proxy = Proxy(origin, target, config=proxy_config(tmp_path, origin, target, extra="[writes]\nreplace_server_functions = true\n"))
    c, s = connect(proxy.port)
    try:
        s.execute(f"INSERT INTO {ks}.t (k, id, u, at) VALUES (1, now(), uuid(), currentTimestamp())")
        ins = s.prepare(f"INSERT INTO {ks}.t (k, id, u, at) VALUES (?, now(), uuid(), ?)")
        # The client sees only its own markers; the proxy binds the others.
        assert [col.name for col in ins.column_metadata] == ["k", "at"]
        assert ins.routing_key_indexes == [0]
        at = datetime.datetime(2024, 5, 6, 7, 8, 9)
        s.execute(ins, (2, at))
        b = BatchStatement()
        b.add(ins, (3, at))
        b.add(SimpleStatement(f"INSERT INTO {ks}.t (k, id) VALUES (4, now())"))
        s.execute(b)
    finally:
        c.shutdown()
        proxy.stop()

    rows = {}
    for node in (origin, target):
        nc, ns = connect(node.port)
        rows[node] = {r.k: r for r in ns.execute(f"SELECT k, id, u, at FROM {ks}.t")}
        nc.shutdown()
    assert rows[origin][0].id != rows[target][0].id, "without replacement the clusters disagree"
    for k in (1, 2, 3, 4):
        assert rows[origin][k] == rows[target][k], k
        assert rows[origin][k].id is not None
    assert rows[origin][2].at == at and rows[origin][1].u is not None
    assert rows[origin][2].id != rows[origin][3].id, "a fresh value on every EXECUTE"


def test_the_version_is_negotiated_to_what_both_clusters_speak():
    from conftest import Node

    origin, target = Node(), Node("--protocol-versions", "3,4")
    proxy = Proxy(origin, target)
    try:
        # The driver starts high (66, 65, 5): the proxy refuses v5 because the
        # target does not speak it, as Cassandra refuses, and the driver settles.
        c, s = connect(proxy.port)
        try:
            assert c.protocol_version == 4
            s.execute("CREATE KEYSPACE nv WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
            s.execute("CREATE TABLE nv.t (k int PRIMARY KEY)")
            s.execute("INSERT INTO nv.t (k) VALUES (1)")
        finally:
            c.shutdown()
        for node in (origin, target):
            nc, ns = connect(node.port)
            assert ns.execute("SELECT k FROM nv.t").one().k == 1
            nc.shutdown()
    finally:
        proxy.stop()
        origin.stop()
        target.stop()
