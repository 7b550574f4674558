"""Tenants keyed by a column (`[tenants] key = { column = "tenant_id" }`),
driven by the Python driver through a proxy in front of two shards (four
nodes): prepared statements (positional and named markers, `IN ?`), simple
statements (the driver writes their values into the text), batches, a
write that names no tenant, a shared table, and a tenant set read-only."""
import pytest
from cassandra import InvalidRequest, Unauthorized
from cassandra.query import BatchStatement

from conftest import Node, Proxy, connect, wait_for

NAMES = ("o1", "t1", "o2", "t2")


@pytest.fixture
def sharded(tmp_path):
    nodes = [Node() for _ in NAMES]
    clusters = "".join(f'[clusters.{n}]\ncontact_points = ["127.0.0.1:{node.port}"]\n' for n, node in zip(NAMES, nodes))
    (tmp_path / "directory.toml").write_text('[[entries]]\ntenant = "wayne"\nshard = "dedicated"\n')
    path = tmp_path / "cutover.toml"
    path.write_text(
        f"""
listen = "127.0.0.1:0"
{clusters}
[shards.default]
origin = "o1"
target = "t1"
[shards.dedicated]
origin = "o2"
target = "t2"
[route]
phase = "dual-write"
[tenants]
key = {{ column = "tenant_id" }}
directory_file = "directory.toml"
"""
    )
    proxy = Proxy(None, None, config=str(path), admin=True)
    cluster, session = connect(proxy.port)
    yield dict(zip(NAMES, nodes)), proxy, session
    cluster.shutdown()
    proxy.stop()
    for n in nodes:
        n.stop()


def holders(nodes, query):
    """The nodes (by name) where `query` finds a row, asked directly."""
    out = []
    for name, node in nodes.items():
        c, s = connect(node.port)
        if s.execute(query).one() is not None:
            out.append(name)
        c.shutdown()
    return out


def test_each_tenant_value_routes_to_its_shard(sharded):
    nodes, proxy, session = sharded
    session.execute("CREATE KEYSPACE app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute("CREATE TABLE app.orders (tenant_id text, id int, v text, PRIMARY KEY (tenant_id, id))")
    session.execute("CREATE TABLE app.audit (id int PRIMARY KEY, tenant_id text)")
    # The proxy learns from the clusters' schema which tables are keyed.
    wait_for(
        lambda: proxy.http("GET", "/v1/tenant-key")[1]["keyed_tables"] == ["app.orders"],
        what="app.orders known as keyed by tenant",
    )
    assert "app.audit" in proxy.http("GET", "/v1/tenant-key")[1]["shared_tables"]

    # A marker row on every node: a read through the proxy says who answered.
    for name, node in nodes.items():
        c, s = connect(node.port)
        for tenant in ("wayne", "stark"):
            s.execute("INSERT INTO app.orders (tenant_id, id, v) VALUES (%s, 0, %s)", (tenant, name))
        c.shutdown()

    # Prepared, positional markers.
    insert = session.prepare("INSERT INTO app.orders (tenant_id, id, v) VALUES (?, ?, ?)")
    session.execute(insert, ("wayne", 1, "w1"))
    session.execute(insert, ("stark", 1, "s1"))
    assert holders(nodes, "SELECT v FROM app.orders WHERE tenant_id = 'wayne' AND id = 1") == ["o2", "t2"]
    assert holders(nodes, "SELECT v FROM app.orders WHERE tenant_id = 'stark' AND id = 1") == ["o1", "t1"]

    # A simple statement: the driver puts the values in the text.
    session.execute("UPDATE app.orders SET v = %s WHERE tenant_id = %s AND id = %s", ("w2", "wayne", 2))
    assert holders(nodes, "SELECT v FROM app.orders WHERE tenant_id = 'wayne' AND id = 2") == ["o2", "t2"]

    # Named markers, and the primary of each tenant's shard answers.
    read = session.prepare("SELECT v FROM app.orders WHERE id = :id AND tenant_id = :who")
    assert session.execute(read, {"who": "wayne", "id": 0}).one().v == "o2"
    assert session.execute(read, {"who": "stark", "id": 0}).one().v == "o1"
    assert session.execute("SELECT v FROM app.orders WHERE tenant_id = 'wayne' AND id = 0").one().v == "o2"

    # IN ?: one tenant is fine; tenants on different shards are refused.
    listed = session.prepare("SELECT v FROM app.orders WHERE tenant_id IN ? AND id = 0")
    assert [r.v for r in session.execute(listed, (["wayne"],))] == ["o2"]
    with pytest.raises(InvalidRequest, match="tenants on different routes \\(wayne, stark\\)"):
        session.execute(listed, (["wayne", "stark"],))

    # A batch stays on one route.
    batch = BatchStatement()
    batch.add(insert, ("wayne", 3, "w3"))
    batch.add(insert, ("wayne", 4, "w4"))
    session.execute(batch)
    assert holders(nodes, "SELECT v FROM app.orders WHERE tenant_id = 'wayne' AND id = 4") == ["o2", "t2"]
    mixed = BatchStatement()
    mixed.add(insert, ("wayne", 5, "w5"))
    mixed.add(insert, ("stark", 5, "s5"))
    with pytest.raises(InvalidRequest, match="BATCH mixes tenants on different routes"):
        session.execute(mixed)
    assert holders(nodes, "SELECT v FROM app.orders WHERE tenant_id = 'stark' AND id = 5") == []

    # A write to a keyed table that names no tenant the proxy reads.
    with pytest.raises(InvalidRequest, match="write to app.orders names no tenant"):
        session.execute("INSERT INTO app.orders JSON '{\"tenant_id\": \"wayne\", \"id\": 6}'")

    # A shared table takes the default route, whatever its tenant_id says.
    session.execute("INSERT INTO app.audit (id, tenant_id) VALUES (1, 'wayne')")
    assert holders(nodes, "SELECT tenant_id FROM app.audit WHERE id = 1") == ["o1", "t1"]

    # wayne read-only: its writes are refused naming it; stark's go on.
    # pym shares wayne's shard and phase: reads of both are served, a write
    # naming both is refused for wayne's sake.
    assert proxy.http("PUT", "/v1/tenants/pym", {"shard": "dedicated"})[0] == 200
    status, _ = proxy.http("PUT", "/v1/tenants/wayne", {"status": "read-only"})
    assert status == 200
    with pytest.raises(Unauthorized, match='tenant "wayne" is read-only'):
        session.execute(insert, ("wayne", 7, "w7"))
    assert [r.v for r in session.execute(listed, (["wayne", "pym"],))] == ["o2"]
    with pytest.raises(Unauthorized, match='tenant "wayne" is read-only'):
        session.execute("DELETE FROM app.orders WHERE tenant_id IN ('pym', 'wayne') AND id = 1")
    session.execute(insert, ("stark", 7, "s7"))
    assert session.execute(read, {"who": "wayne", "id": 1}).one().v == "w1"
    assert holders(nodes, "SELECT v FROM app.orders WHERE tenant_id = 'wayne' AND id = 7") == []

    # TRUNCATE names no tenant: it empties the shared table on every shard.
    session.execute("TRUNCATE app.orders")
    for tenant in ("wayne", "stark"):
        assert holders(nodes, f"SELECT v FROM app.orders WHERE tenant_id = '{tenant}' AND id = 0") == []
