#!/usr/bin/env python3
"""The driver session recorded into the python-driver fixtures.

    python_session.py HOST PORT [PROTOCOL_VERSION|default] [lz4|none]
"""
import sys

from cassandra.cluster import Cluster
from cassandra.policies import RoundRobinPolicy
from cassandra.query import BatchStatement, SimpleStatement

host, port = sys.argv[1], int(sys.argv[2])
version = sys.argv[3] if len(sys.argv) > 3 else "default"
compression = sys.argv[4] if len(sys.argv) > 4 else "none"
kw = dict(contact_points=[host], port=port, load_balancing_policy=RoundRobinPolicy(),
          compression="lz4" if compression == "lz4" else False)
if version != "default":
    kw["protocol_version"] = int(version)
cluster = Cluster(**kw)
s = cluster.connect()
s.execute("CREATE KEYSPACE fx WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
s.execute("CREATE TABLE fx.t (p text, c int, v text, PRIMARY KEY (p, c))")
ins = s.prepare("INSERT INTO fx.t (p, c, v) VALUES (?, ?, ?)")
for i in range(5):
    s.execute(ins, ("k", i, f"v{i}"))
b = BatchStatement()
b.add(ins, ("k", 5, "v5"))
b.add(SimpleStatement("INSERT INTO fx.t (p, c, v) VALUES ('k', 6, 'v6')"))
s.execute(b)
rows = list(s.execute(SimpleStatement("SELECT c, v FROM fx.t WHERE p = 'k'", fetch_size=3)))
assert [r.c for r in rows] == list(range(7)), rows
sel = s.prepare("SELECT v FROM fx.t WHERE p = ? AND c = ?")
assert s.execute(sel, ("k", 2)).one().v == "v2"
assert s.execute("INSERT INTO fx.t (p, c, v) VALUES ('k', 0, 'x') IF NOT EXISTS").one().applied is False
try:
    s.execute("SELECT * FROM fx.nope")
except Exception:
    pass
cluster.shutdown()
