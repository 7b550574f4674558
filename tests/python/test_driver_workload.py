"""A realistic workload through the Python driver at protocol v3, v4 and v5,
with and without LZ4: every result is checked against what was written."""
import uuid

import pytest
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import BatchStatement, SimpleStatement

from conftest import connect, wait_for

VARIANTS = [(v, lz4) for v in (3, 4, 5) for lz4 in (False, True)]


@pytest.mark.parametrize("version,lz4", VARIANTS, ids=[f"v{v}-{'lz4' if z else 'plain'}" for v, z in VARIANTS])
def test_workload(node, version, lz4):
    cluster, s = connect(node.port, protocol_version=version, compression="lz4" if lz4 else False)
    try:
        assert cluster.protocol_version == version
        stats = node.stats()
        assert stats["connections"], "the node saw the driver's connections"
        for c in stats["connections"]:
            assert c["protocol_version"] == version
            assert c["compression"] == ("lz4" if lz4 else None), c
        run_workload(cluster, s, node, "ks_" + uuid.uuid4().hex[:8])
    finally:
        cluster.shutdown()


def run_workload(cluster, s, node, ks):
    s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    s.execute(f"CREATE TYPE {ks}.point (x int, y int)")
    s.execute(
        f"CREATE TABLE {ks}.events (p text, c int, v text, s text static, l list<int>, st set<text>,"
        f" m map<text, int>, pt frozen<point>, PRIMARY KEY (p, c))"
    )
    s.execute(f"CREATE TABLE {ks}.ctr (k text PRIMARY KEY, n counter)")
    s.execute(f"CREATE TABLE {ks}.big (p int, c int, v text, PRIMARY KEY (p, c))")
    # The driver's metadata learned the schema from system_schema.
    wait_for(lambda: "events" in cluster.metadata.keyspaces[ks].tables, what="table metadata")
    events_meta = cluster.metadata.keyspaces[ks].tables["events"]
    assert [c.name for c in events_meta.partition_key] == ["p"]
    assert [c.name for c in events_meta.clustering_key] == ["c"]
    assert events_meta.columns["s"].is_static

    # Prepared and simple inserts.
    ins = s.prepare(f"INSERT INTO {ks}.events (p, c, v) VALUES (?, ?, ?)")
    for i in range(20):
        s.execute(ins, ("a", i, f"v{i}"))
    s.execute(f"INSERT INTO {ks}.events (p, c, v) VALUES ('b', 1, 'simple')")
    assert s.execute(f"SELECT v FROM {ks}.events WHERE p = 'b' AND c = 1").one().v == "simple"

    # Clustering range, descending order and LIMIT.
    rng = s.prepare(f"SELECT c, v FROM {ks}.events WHERE p = ? AND c >= ? AND c < ?")
    assert [(r.c, r.v) for r in s.execute(rng, ("a", 5, 9))] == [(i, f"v{i}") for i in range(5, 9)]
    desc = s.execute(f"SELECT c FROM {ks}.events WHERE p = 'a' ORDER BY c DESC LIMIT 3")
    assert [r.c for r in desc] == [19, 18, 17]
    assert s.execute(f"SELECT COUNT(*) FROM {ks}.events WHERE p = 'a'").one()[0] == 20

    # A logged batch mixing prepared and simple statements, with a static column.
    b = BatchStatement()
    b.add(ins, ("c", 1, "one"))
    b.add(SimpleStatement(f"UPDATE {ks}.events SET s = 'static-c' WHERE p = 'c'"))
    b.add(ins, ("c", 2, "two"))
    s.execute(b)
    rows = list(s.execute(f"SELECT c, v, s FROM {ks}.events WHERE p = 'c'"))
    assert [(r.c, r.v, r.s) for r in rows] == [(1, "one", "static-c"), (2, "two", "static-c")]
    # A partition holding only static data reads as one row with null clustering.
    s.execute(f"UPDATE {ks}.events SET s = 'lonely' WHERE p = 'd'")
    only = list(s.execute(f"SELECT p, c, s FROM {ks}.events WHERE p = 'd'"))
    assert [(r.p, r.c, r.s) for r in only] == [("d", None, "lonely")]

    # Lightweight transactions.
    first = s.execute(f"INSERT INTO {ks}.events (p, c, v) VALUES ('lwt', 1, 'first') IF NOT EXISTS").one()
    assert first.applied is True
    second = s.execute(f"INSERT INTO {ks}.events (p, c, v) VALUES ('lwt', 1, 'second') IF NOT EXISTS").one()
    assert second.applied is False and second.v == "first"
    cas_ok = s.execute(f"UPDATE {ks}.events SET v = 'third' WHERE p = 'lwt' AND c = 1 IF v = 'first'").one()
    assert cas_ok.applied is True
    cas_no = s.execute(f"UPDATE {ks}.events SET v = 'x' WHERE p = 'lwt' AND c = 1 IF v = 'first'").one()
    assert cas_no.applied is False and cas_no.v == "third"

    # Counters.
    inc = s.prepare(f"UPDATE {ks}.ctr SET n = n + ? WHERE k = ?")
    s.execute(inc, (5, "k"))
    s.execute(inc, (3, "k"))
    s.execute(f"UPDATE {ks}.ctr SET n = n - 2 WHERE k = 'k'")
    assert s.execute(f"SELECT n FROM {ks}.ctr WHERE k = 'k'").one().n == 6

    # Collections.
    s.execute(f"INSERT INTO {ks}.events (p, c, l, st, m) VALUES ('col', 1, [2, 3], {{'a', 'b'}}, {{'x': 1}})")
    s.execute(f"UPDATE {ks}.events SET l = l + [4], st = st + {{'c'}}, m['y'] = 2 WHERE p = 'col' AND c = 1")
    s.execute(f"UPDATE {ks}.events SET l = [1] + l, st = st - {{'a'}} WHERE p = 'col' AND c = 1")
    s.execute(f"DELETE m['x'] FROM {ks}.events WHERE p = 'col' AND c = 1")
    col = s.execute(f"SELECT l, st, m FROM {ks}.events WHERE p = 'col' AND c = 1").one()
    assert list(col.l) == [1, 2, 3, 4]
    assert set(col.st) == {"b", "c"}
    assert dict(col.m) == {"y": 2}
    bound = s.prepare(f"INSERT INTO {ks}.events (p, c, l, m) VALUES (?, ?, ?, ?)")
    s.execute(bound, ("col", 2, [9, 8], {"k": 7}))
    col2 = s.execute(f"SELECT l, m FROM {ks}.events WHERE p = 'col' AND c = 2").one()
    assert list(col2.l) == [9, 8] and dict(col2.m) == {"k": 7}

    # A user-defined type, as a literal and bound.
    s.execute(f"INSERT INTO {ks}.events (p, c, pt) VALUES ('udt', 1, {{x: 1, y: 2}})")
    pt = s.execute(f"SELECT pt FROM {ks}.events WHERE p = 'udt' AND c = 1").one().pt
    assert (pt.x, pt.y) == (1, 2)

    # USING TIMESTAMP: the higher write time wins whatever the arrival order.
    s.execute(f"INSERT INTO {ks}.events (p, c, v) VALUES ('ts', 1, 'new') USING TIMESTAMP 2000")
    s.execute(f"INSERT INTO {ks}.events (p, c, v) VALUES ('ts', 1, 'old') USING TIMESTAMP 1000")
    row = s.execute(f"SELECT v, writetime(v) AS wt FROM {ks}.events WHERE p = 'ts' AND c = 1").one()
    assert (row.v, row.wt) == ("new", 2000)

    # TTL expiry.
    # (3 s, not 1: on a loaded machine a second can pass before the read.)
    s.execute(f"INSERT INTO {ks}.events (p, c, v) VALUES ('ttl', 1, 'brief') USING TTL 3")
    ttl = s.execute(f"SELECT ttl(v) FROM {ks}.events WHERE p = 'ttl' AND c = 1").one()[0]
    assert 1 <= ttl <= 3
    wait_for(
        lambda: s.execute(f"SELECT v FROM {ks}.events WHERE p = 'ttl' AND c = 1").one() is None,
        timeout=8,
        what="the TTL to expire the row",
    )

    # Paging through 10,000 rows, 100 per page.
    big = s.prepare(f"INSERT INTO {ks}.big (p, c, v) VALUES (?, ?, ?)")
    execute_concurrent_with_args(s, big, [(i % 7, i, f"row{i}") for i in range(10_000)], concurrency=64)
    result = s.execute(SimpleStatement(f"SELECT p, c, v FROM {ks}.big", fetch_size=100))
    pages = 1
    seen = list(result.current_rows)
    assert len(seen) == 100
    while result.has_more_pages:
        result.fetch_next_page()
        pages += 1
        seen.extend(result.current_rows)
    assert pages == 100
    assert sorted(r.c for r in seen) == list(range(10_000))
    assert all(r.v == f"row{r.c}" and r.p == r.c % 7 for r in seen)
    # Paging a single partition through a prepared statement.
    by_partition = s.prepare(f"SELECT c FROM {ks}.big WHERE p = ?").bind((3,))
    by_partition.fetch_size = 100
    part = list(s.execute(by_partition))
    assert [r.c for r in part] == [i for i in range(10_000) if i % 7 == 3]

    # A schema change made elsewhere reaches this driver as an event.
    other_cluster, other = connect(s.cluster.port, protocol_version=s.cluster.protocol_version)
    try:
        other.execute(f"CREATE TABLE {ks}.late (k int PRIMARY KEY)")
        wait_for(lambda: "late" in cluster.metadata.keyspaces[ks].tables, what="the SCHEMA_CHANGE event")
    finally:
        other_cluster.shutdown()

    # Errors a driver understands.
    from cassandra import AlreadyExists, InvalidRequest
    from cassandra.protocol import SyntaxException

    with pytest.raises(SyntaxException):
        s.execute(f"SELEKT * FROM {ks}.events")
    with pytest.raises(InvalidRequest, match="unconfigured table nope"):
        s.execute(f"SELECT * FROM {ks}.nope")
    with pytest.raises(AlreadyExists):
        s.execute(f"CREATE TABLE {ks}.events (k int PRIMARY KEY)")
