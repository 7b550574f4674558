"""TLS with real clients: the Python driver (an ssl_context trusting a CA the
test makes) at v4 and at v5 with LZ4, and cqlsh --ssl, through a TLS proxy
to embedded nodes that require TLS; under mTLS a driver without a client
certificate is refused."""
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys

import pytest
from cassandra.cluster import NoHostAvailable
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Node, Proxy, connect


class CA:
    """A certificate authority of the test's own, writing PEM files to `dir`."""

    def __init__(self, dir, name):
        self.dir = dir
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )
        self.file = dir / f"{name}-ca.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem, names, client=False):
        """A certificate for `names` (DNS names or IPs): (cert file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = self.dir / f"{stem}.pem", self.dir / f"{stem}-key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return str(cert_file), str(key_file)


def client_context(ca, cert=None):
    """What an application gives the driver: trust `ca`, verify the name."""
    ctx = ssl.create_default_context(cafile=str(ca.file))
    ctx.check_hostname = True
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


@pytest.fixture
def tls_setup(tmp_path):
    """(ca, origin, target, make_proxy): two nodes that speak TLS only, and
    a function starting a TLS proxy in front of them."""
    ca = CA(tmp_path, "tls")
    node_cert, node_key = ca.issue("node", ["localhost", "127.0.0.1"])
    origin = Node("--tls-cert", node_cert, "--tls-key", node_key)
    target = Node("--tls-cert", node_cert, "--tls-key", node_key)
    ca.issue("proxy", ["127.0.0.1"])
    started = []

    def make_proxy(listener_extra=""):
        path = tmp_path / "cutover-tls.toml"
        clusters = "".join(
            f"""
[clusters.{name}]
contact_points = ["localhost:{n.port}"]
[clusters.{name}.tls]
ca_file = "{ca.file.name}"
"""
            for name, n in (("origin", origin), ("target", target))
        )
        path.write_text(
            f"""
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[tls]
cert_file = "proxy.pem"
key_file = "proxy-key.pem"
{listener_extra}
{clusters}
"""
        )
        p = Proxy(origin, target, config=str(path))
        started.append(p)
        return p

    yield ca, origin, target, make_proxy
    for p in started:
        p.stop()
    origin.stop()
    target.stop()


def tls_connect(port, ca, **kw):
    return connect(port, ssl_context=client_context(ca), ssl_options={"server_hostname": "127.0.0.1"}, **kw)


@pytest.mark.parametrize("version,compression", [(4, False), (4, True), (5, True)])
def test_the_python_driver_writes_and_reads_over_tls_on_every_leg(tls_setup, version, compression):
    ca, origin, target, make_proxy = tls_setup
    proxy = make_proxy()
    cluster, s = tls_connect(proxy.port, ca, protocol_version=version, compression=compression)
    ks = f"tls_v{version}{'_lz4' if compression else ''}"
    try:
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)")
        insert = s.prepare(f"INSERT INTO {ks}.t (k, v) VALUES (?, ?)")
        # Large values: compressed, and at v5 more than one segment each.
        for k in range(50):
            s.execute(insert, (k, f"value-{k}-" + "x" * 70_000))
        rows = sorted(s.execute(f"SELECT k, v FROM {ks}.t"))
        assert [r.k for r in rows] == list(range(50))
        assert all(r.v.startswith(f"value-{r.k}-") and len(r.v) > 70_000 for r in rows)
    finally:
        cluster.shutdown()
    # Each node, asked directly over TLS, has every row.
    for n in (origin, target):
        c, direct = tls_connect(n.port, ca)
        try:
            assert direct.execute(f"SELECT count(*) FROM {ks}.t").one()[0] == 50
        finally:
            c.shutdown()


def test_cqlsh_over_tls(tls_setup):
    ca, _, _, make_proxy = tls_setup
    proxy = make_proxy()
    exe = os.path.join(os.path.dirname(sys.executable), "cqlsh")
    env = dict(os.environ, SSL_CERTFILE=str(ca.file), SSL_VALIDATE="true")
    r = subprocess.run(
        [
            exe,
            "--ssl",
            "127.0.0.1",
            str(proxy.port),
            "-e",
            "CREATE KEYSPACE sh WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};"
            "CREATE TABLE sh.t (k int PRIMARY KEY, v text);"
            "INSERT INTO sh.t (k, v) VALUES (1, 'over tls');"
            "SELECT * FROM sh.t;",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "over tls" in r.stdout
    # Without --ssl, cqlsh is told the port speaks TLS.
    r = subprocess.run(
        [exe, "127.0.0.1", str(proxy.port), "-e", "SELECT * FROM system.local;"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "speaks TLS only" in r.stdout + r.stderr


def test_under_mtls_a_driver_without_a_client_certificate_is_refused(tls_setup, tmp_path):
    ca, _, _, make_proxy = tls_setup
    clients = CA(tmp_path, "clients")
    proxy = make_proxy(f'client_ca_file = "{clients.file.name}"')
    with pytest.raises(NoHostAvailable) as refused:
        tls_connect(proxy.port, ca)
    # The TLS alert says why (CERTIFICATE_REQUIRED).
    assert "CERTIFICATE" in str(refused.value).upper(), refused.value
    app = clients.issue("app", ["app.example"], client=True)
    ctx = client_context(ca, cert=app)
    cluster, s = connect(proxy.port, ssl_context=ctx, ssl_options={"server_hostname": "127.0.0.1"})
    try:
        assert s.execute("SELECT release_version FROM system.local").one() is not None
    finally:
        cluster.shutdown()
