"""async-secondary: a target outage never fails the application, and every
acknowledged write reaches the target afterwards, with its write time."""
import signal
import threading
import time

import pytest

from conftest import Node, Proxy, connect, proxy_config, wait_for

KS = "journaled"


def config(tmp_path, origin, target, extra=""):
    return proxy_config(
        tmp_path,
        origin,
        target,
        extra=f"""write_mode = "async-secondary"
[journal]
dir = "{tmp_path / 'journal'}"
{extra}
""",
        request_timeout="2s",
    )


def schema(session):
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    session.execute(f"CREATE TABLE IF NOT EXISTS {KS}.t (k int PRIMARY KEY, v text)")


class Writer:
    """Writes rows at a steady rate from a thread; remembers what was
    acknowledged and every error."""

    def __init__(self, session, rate=200, start=0):
        self.session = session
        self.insert = session.prepare(f"INSERT INTO {KS}.t (k, v) VALUES (?, ?)")
        self.rate = rate
        self.next = start
        self.acked = []
        self.errors = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        period = 1.0 / self.rate
        t = time.monotonic()
        while not self.stop_flag.is_set():
            k = self.next
            self.next += 1
            try:
                self.session.execute(self.insert, (k, f"v{k}"), timeout=10)
                self.acked.append(k)
            except Exception as e:  # every failure counts against the test
                self.errors.append(f"{k}: {e!r}")
            t += period
            time.sleep(max(0.0, t - time.monotonic()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(timeout=30)


def journal_drained(proxy):
    status, j = proxy.http("GET", "/v1/journal")
    assert status == 200
    return j["open"] and j["pending_records"] == 0


def assert_on_target(origin, target, keys):
    """Every key is on the target with the origin's write time."""
    co, so = connect(origin.port, keyspace=KS)
    ct, st = connect(target.port, keyspace=KS)
    try:
        read = "SELECT k, v, WRITETIME(v) FROM t"
        on_origin = {r.k: (r.v, r.writetime_v) for r in so.execute(read)}
        on_target = {r.k: (r.v, r.writetime_v) for r in st.execute(read)}
        missing = [k for k in keys if k not in on_target]
        assert not missing, f"{len(missing)} acknowledged rows missing on the target, e.g. {missing[:5]}"
        differ = [k for k in keys if on_target[k] != on_origin[k]]
        assert not differ, f"rows differ (value or write time), e.g. {[(k, on_origin[k], on_target[k]) for k in differ[:3]]}"
    finally:
        co.shutdown()
        ct.shutdown()


@pytest.mark.parametrize("fault", ["down", "hang"])
def test_a_target_outage_fails_no_write_and_replay_brings_every_row(tmp_path, fault):
    origin, target = Node(), Node()
    proxy = Proxy(origin, target, config=config(tmp_path, origin, target), admin=True)
    cluster, session = connect(proxy.port)
    try:
        schema(session)
        with Writer(session) as w:
            wait_for(lambda: len(w.acked) >= 200, timeout=20, what="writes before the outage")
            if fault == "down":
                target.http("POST", "/down")
            else:
                target.http("POST", "/faults/hang")
            outage_started = len(w.acked)
            time.sleep(20)
            during = len(w.acked) - outage_started
            assert proxy.metric("cutover_journal_pending_records") > 0, "the outage left nothing to replay"
            if fault == "down":
                target.http("POST", "/up")
            else:
                target.http("POST", "/faults/release")
            wait_for(lambda: len(w.acked) >= outage_started + during + 200, timeout=30, what="writes after the outage")
        assert w.errors == [], f"{len(w.errors)} client errors, e.g. {w.errors[:3]}"
        # The application kept its pace through the outage.
        assert during >= 20 * 200 * 0.5, f"only {during} writes were acknowledged during the 20 s outage"
        wait_for(lambda: journal_drained(proxy), timeout=60, what="replay to finish")
        assert_on_target(origin, target, w.acked)
        assert proxy.metric("cutover_journal_replayed_total") > 0
    finally:
        cluster.shutdown()
        proxy.stop()
        origin.stop()
        target.stop()


def test_a_proxy_killed_during_the_outage_replays_after_its_restart(tmp_path):
    origin, target = Node(), Node()
    cfg = config(tmp_path, origin, target, extra='durability = "fsync"')
    proxy = Proxy(origin, target, config=cfg, admin=True)
    cluster, session = connect(proxy.port)
    try:
        schema(session)
        with Writer(session) as w:
            wait_for(lambda: len(w.acked) >= 100, timeout=20, what="writes before the outage")
            target.http("POST", "/down")
            wait_for(lambda: len(w.acked) >= 1100, timeout=30, what="writes during the outage")
            proxy.stop(signal.SIGKILL)
        cluster.shutdown()
        acked = list(w.acked)
        assert len(acked) >= 1100
        target.http("POST", "/up")
        proxy = Proxy(origin, target, config=cfg, admin=True)
        wait_for(lambda: journal_drained(proxy), timeout=60, what="replay after the restart")
        assert_on_target(origin, target, acked)
        assert proxy.metric("cutover_journal_replayed_total") >= 1, "nothing was replayed after the restart"
    finally:
        proxy.stop()
        origin.stop()
        target.stop()


def test_cutover_replay_sends_a_journal_by_hand(tmp_path):
    import json
    import subprocess

    from conftest import BINARY

    origin, target = Node(), Node()
    cfg = config(tmp_path, origin, target)
    proxy = Proxy(origin, target, config=cfg, admin=True)
    cluster, session = connect(proxy.port)
    try:
        schema(session)
        target.http("POST", "/down")
        insert = session.prepare(f"INSERT INTO {KS}.t (k, v) VALUES (?, ?)")
        for k in range(300):
            session.execute(insert, (k, f"v{k}"))
        cluster.shutdown()
        proxy.stop(signal.SIGKILL)
        journal = str(tmp_path / "journal")
        dry = subprocess.run([BINARY, "replay", "--journal", journal, "--dry-run"], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["pending"] == [["target", 300]], dry.stdout
        # The target still down: nothing is lost, the tool says to run again.
        down = subprocess.run([BINARY, "replay", "--journal", journal, "--config", cfg], capture_output=True, text=True, timeout=60)
        assert down.returncode != 0 and "run again" in down.stderr, down.stderr
        target.http("POST", "/up")
        up = subprocess.run(
            [BINARY, "replay", "--journal", journal, "--to", f"127.0.0.1:{target.port}", "--rate", "2000"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert up.returncode == 0, up.stderr
        summary = json.loads(up.stdout)
        assert summary["replayed"] == 300 and summary["left"] == 0, summary
        assert "replayed 300 of 300" in up.stderr, up.stderr
        assert_on_target(origin, target, list(range(300)))
        again = subprocess.run([BINARY, "replay", "--journal", journal, "--dry-run"], capture_output=True, text=True, timeout=60)
        assert json.loads(again.stdout)["pending"] in ([], [["target", 0]]), again.stdout
    finally:
        proxy.stop()
        origin.stop()
        target.stop()
