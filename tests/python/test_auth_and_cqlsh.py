"""PasswordAuthenticator logins and cqlsh 6.2.2 against the node."""
import os
import subprocess
import sys

import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import NoHostAvailable

from conftest import Node, connect


@pytest.fixture
def auth_node():
    n = Node("--user", "cassandra:secret", "--user", "app:pw")
    yield n
    n.stop()


@pytest.mark.parametrize("version", [3, 4, 5])
def test_password_authenticator(auth_node, version):
    cluster, s = connect(
        auth_node.port, protocol_version=version, auth_provider=PlainTextAuthProvider("app", "pw")
    )
    try:
        assert s.execute("SELECT cluster_name FROM system.local").one().cluster_name == "cutover-embedded"
        users = {c["user"] for c in auth_node.stats()["connections"]}
        assert users == {"app"}
    finally:
        cluster.shutdown()
    with pytest.raises(NoHostAvailable, match="incorrect"):
        connect(auth_node.port, protocol_version=version, auth_provider=PlainTextAuthProvider("app", "wrong"))
    with pytest.raises(NoHostAvailable):
        connect(auth_node.port, protocol_version=version)


def cqlsh(port, statements):
    exe = os.path.join(os.path.dirname(sys.executable), "cqlsh")
    r = subprocess.run(
        [exe, "127.0.0.1", str(port), "-e", statements],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.returncode, r.stdout, r.stderr


def test_cqlsh_session(node):
    code, out, err = cqlsh(
        node.port,
        "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};"
        "CREATE TABLE shop.items (sku text, variant int, price decimal, PRIMARY KEY (sku, variant));"
        "INSERT INTO shop.items (sku, variant, price) VALUES ('tee', 1, 19.99);"
        "SELECT * FROM shop.items;"
        "DESCRIBE TABLE shop.items;",
    )
    assert code == 0, err
    assert "tee" in out and "19.99" in out
    assert "CREATE TABLE shop.items (" in out
    assert "PRIMARY KEY (sku, variant)" in out
    assert "CLUSTERING ORDER BY (variant ASC)" in out


def test_cqlsh_describe_keyspaces_lists_new_keyspace(node):
    cqlsh(node.port, "CREATE KEYSPACE listed WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};")
    code, out, err = cqlsh(node.port, "DESCRIBE KEYSPACES;")
    assert code == 0, err
    assert "listed" in out.split()
