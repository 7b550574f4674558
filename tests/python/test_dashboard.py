"""The live page on the admin port, in headless Chromium (Debian's chromium
and chromium-driver, selenium from PyPI) against a proxy under a Python
driver workload: it loads from the binary alone, and its charts and tables
fill with what the proxy reports. With DASHBOARD_SCREENSHOT=path it saves a
screenshot there (docs/dashboard.png is one, taken with DASHBOARD_POINTS=30:
a minute of polls)."""
import os
import shutil
import threading

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Node, Proxy, connect, proxy_config


def browser():
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromium-driver (Debian) are missing: ./test installs them"
    o = Options()
    o.binary_location = chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"]:
        o.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=o)


def test_the_live_page_shows_the_proxy_under_load(tmp_path):
    origin, target = Node(), Node()
    proxy = Proxy(origin, target, config=proxy_config(tmp_path, origin, target), admin=True)
    stop = threading.Event()
    cluster, session = connect(proxy.port)
    session.execute("CREATE KEYSPACE page WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute("CREATE TABLE page.t (k int PRIMARY KEY, v text)")
    insert = session.prepare("INSERT INTO page.t (k, v) VALUES (?, ?)")
    select = session.prepare("SELECT v FROM page.t WHERE k = ?")

    def load():
        i = 0
        while not stop.is_set():
            session.execute(insert, (i % 500, f"v{i}"))
            session.execute(select, (i % 500,))
            i += 1

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    b = browser()
    try:
        b.get(proxy.admin + "/")
        assert b.title == "cutover"
        wait = WebDriverWait(b, 30)
        points = lambda id: int(b.find_element(By.ID, id).get_attribute("data-points") or 0)
        # Rates need two polls; every chart then draws lines from the load
        # (its longest line has this many points).
        want = int(os.environ.get("DASHBOARD_POINTS", "3"))
        wait = WebDriverWait(b, 30 + 2 * want)
        wait.until(lambda _: all(points(c) >= want for c in ["latency", "legs", "rate"]))
        route = b.find_element(By.ID, "route").text
        assert "phase dual-write" in route and "write mode sync" in route, route
        assert b.find_element(By.ID, "ready").text == "ready"
        clusters = b.find_element(By.ID, "clusters").text
        assert "origin (primary)" in clusters and "target" in clusters and "up" in clusters, clusters
        legend = b.find_element(By.ID, "latency-legend").text
        assert "read p99.99" in legend and "write p50" in legend, legend
        rates = b.find_element(By.ID, "rate-legend").text
        assert "read" in rates and "write" in rates, rates
        # No tenant entries here: the table says every tenant takes the
        # default route.
        wait.until(lambda _: "default route" in b.find_element(By.ID, "tenants").text)
        shot = os.environ.get("DASHBOARD_SCREENSHOT")
        if shot:
            b.save_screenshot(shot)
        errors = [e for e in b.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        stop.set()
        worker.join(timeout=10)
        b.quit()
        cluster.shutdown()
        proxy.stop()
        origin.stop()
        target.stop()
