"""Continuous load from the Python driver while the routing policy changes
50 times — through the admin API, a file edit with SIGHUP, and a file edit
picked up by the watcher, invalid changes included — with no error seen by
the client or counted by the nodes, and every change visible in where reads
and writes go."""
import itertools
import random
import signal
import sys
import threading
import time

from conftest import Node, Proxy, connect, diverge, proxy_config, wait_for

# phase -> (the node reads come from, the nodes writes reach)
PHASES = {
    "target-primary": ("target", {"origin", "target"}),
    "dual-write": ("origin", {"origin", "target"}),
    "origin-only": ("origin", {"origin"}),
    "shadow-reads": ("origin", {"origin", "target"}),
    "target-only": ("target", {"target"}),
}


class Load(threading.Thread):
    """Prepared writes and reads, as fast as one thread goes, until stopped."""

    def __init__(self, session):
        super().__init__(daemon=True)
        self.session = session
        self.stop = threading.Event()
        self.requests = 0
        self.errors = []

    def run(self):
        insert = self.session.prepare("INSERT INTO ldk.t (k, v) VALUES (?, ?)")
        read = self.session.prepare("SELECT v FROM ldk.t WHERE k = ?")
        while not self.stop.is_set():
            try:
                self.session.execute(insert, (random.randint(1000, 100000), "load"))
                self.session.execute(read, (1,))
                self.requests += 2
            except Exception as e:  # every error is a failure of the test
                self.errors.append(repr(e))


def test_fifty_policy_changes_under_load_fail_no_request(tmp_path):
    origin, target = Node(), Node()
    diverge(origin, target, "ldk")
    path = proxy_config(tmp_path, origin, target, phase="dual-write")
    base = open(path).read()
    proxy = Proxy(origin, target, config=path, admin=True)
    cluster, session = connect(proxy.port)
    direct = {"origin": connect(origin.port), "target": connect(target.port)}
    # Drivers negotiating their protocol version leave PROTOCOL_ERRORs in the
    # nodes' counts (their own connections above); count from here on.
    errors_before = {n.port: dict(n.stats()["errors"]) for n in (origin, target)}
    load = Load(session)
    load.start()
    try:
        version = 1
        refused = 0
        marker = 0
        phases = itertools.cycle(PHASES)
        effective = file_phase = "dual-write"
        took = {"api": [], "sighup": [], "watcher": []}
        for i in range(50):
            mechanism = ("api", "sighup", "watcher")[i % 3]
            if i % 5 == 4:
                # Invalid: refused with the running policy unchanged.
                if mechanism == "api":
                    status, body = proxy.http("PUT", "/v1/policy", {"route": {"shard": "nowhere"}})
                    assert status == 400, body
                else:
                    with open(path, "w") as f:
                        f.write(base.replace('phase = "dual-write"', 'phase = "sideways"'))
                    if mechanism == "sighup":
                        proxy.proc.send_signal(signal.SIGHUP)
                refused += 1
                # (SIGHUP and the watcher may both refuse the same file.)
                wait_for(lambda: _refused(proxy) >= refused, what=f"change {i} refused")
                assert proxy.http("GET", "/v1/policy")[1]["version"] == version
                continue
            # A change must change something. A file edit wins over an API
            # change only when the file then says something else than it did
            # when the API change was made (the route file's rule), so it
            # names a phase other than the file's and the one in force.
            phase = next(phases)
            while phase == effective or (mechanism != "api" and phase == file_phase):
                phase = next(phases)
            effective = phase
            if mechanism != "api":
                file_phase = phase
            started = time.monotonic()
            if mechanism == "api":
                status, body = proxy.http("PUT", "/v1/policy", {"route": {"phase": phase}})
                assert status == 200, body
            else:
                with open(path, "w") as f:
                    f.write(base.replace('phase = "dual-write"', f'phase = "{phase}"'))
                if mechanism == "sighup":
                    proxy.proc.send_signal(signal.SIGHUP)
            version += 1
            wait_for(lambda: proxy.http("GET", "/v1/policy")[1]["version"] == version, what=f"change {i} ({mechanism}) in force")
            took[mechanism].append(time.monotonic() - started)
            reads_from, writes_to = PHASES[phase]
            # Reads: k = 1 differs between the nodes.
            assert session.execute("SELECT v FROM ldk.t WHERE k = 1").one().v == f"from-{reads_from}", (i, phase)
            # Writes: a marker lands exactly on the phase's nodes.
            marker += 1
            session.execute("INSERT INTO ldk.t (k, v) VALUES (%s, 'marker')", (-marker,))
            for name, (_, s) in direct.items():
                found = s.execute("SELECT v FROM ldk.t WHERE k = %s", (-marker,)).one() is not None
                assert found == (name in writes_to), (i, phase, name)
        before = load.requests
        wait_for(lambda: load.requests > before + 50, what="the load still running")
    finally:
        load.stop.set()
        load.join(timeout=30)
        cluster.shutdown()
        for c, _ in direct.values():
            c.shutdown()
        if sys.exc_info()[0] is not None:
            # Failing here: the processes must not outlive the test.
            proxy.stop()
            origin.stop()
            target.stop()
    try:
        assert load.errors == [], load.errors[:5]
        assert load.requests > 1000, load.requests
        for node in (origin, target):
            errors = node.stats()["errors"]
            assert errors == errors_before[node.port], (errors, errors_before[node.port])
        print(f"load: {load.requests} requests, 0 errors, through 40 valid and 10 refused changes")
        for m, t in took.items():
            print(f"  {m}: in force after {1000 * sum(t) / len(t):.0f} ms on average, {1000 * max(t):.0f} ms at most")
    finally:
        proxy.stop()
        origin.stop()
        target.stop()


def _refused(proxy):
    status, text = proxy.http("GET", "/metrics", raw=True)
    for line in text.splitlines():
        if line.startswith("cutover_policy_changes_refused_total "):
            return float(line.split()[1])
    return 0
