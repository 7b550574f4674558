"""The front door with the Python driver as the well-behaved client: its
pooled connections sit idle past the handshake and frame timeouts and are
never closed for it, while a socket that never starts and one that leaves a
frame half-sent are, each counted."""
import socket
import struct

import pytest

from conftest import Node, Proxy, connect, proxy_config, wait_for


def closed_by_peer(sock):
    sock.settimeout(10)
    while True:
        try:
            if not sock.recv(4096):
                return
        except (ConnectionResetError, BrokenPipeError):
            return


def frame(version, stream, opcode, body):
    return struct.pack(">BBhBI", version, 0, stream, opcode, len(body)) + body


def startup_body():
    k, v = b"CQL_VERSION", b"3.0.0"
    return struct.pack(">H", 1) + struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v


@pytest.mark.parametrize("version", [4, 5])
def test_idle_driver_connections_outlive_the_timeouts_that_close_unfinished_ones(tmp_path, version):
    origin, target = Node(), Node()
    extra = '[limits]\nhandshake_timeout = "500ms"\nframe_timeout = "500ms"\n'
    proxy = Proxy(origin, target, config=proxy_config(tmp_path, origin, target, extra=extra), admin=True)
    try:
        cluster, session = connect(proxy.port, protocol_version=version, compression="lz4")
        assert session.execute("SELECT rpc_address FROM system.local").one() is not None
        accepted = proxy.metric("cutover_client_connections_accepted_total")

        silent = socket.create_connection(("127.0.0.1", proxy.port))
        half = socket.create_connection(("127.0.0.1", proxy.port))
        half.sendall(frame(4, 0, 0x01, startup_body()))
        assert half.recv(9)[4] == 0x02  # READY
        query = b"SELECT * FROM system.local"
        body = struct.pack(">I", len(query)) + query + struct.pack(">HB", 1, 0)
        half.sendall(frame(4, 1, 0x07, body)[:12])
        closed_by_peer(silent)
        closed_by_peer(half)

        # The driver's connections were idle all that time: still the same ones.
        for _ in range(20):
            assert session.execute("SELECT rpc_address FROM system.local").one() is not None
        assert proxy.metric("cutover_client_connections_accepted_total") == accepted + 2
        assert proxy.metric("cutover_client_handshake_timeouts_total") == 1
        wait_for(lambda: proxy.metric("cutover_client_frame_timeouts_total") == 1, what="the frame timeout counted")
        cluster.shutdown()
    finally:
        proxy.stop()
        origin.stop()
        target.stop()
