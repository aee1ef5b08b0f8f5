"""The serving panel in a real headless Chromium against a real `owtrain serve` process under load:
the uPlot charts (answered instances/s per version, latency p50/p99, mean batch and queue depth,
cache hit rate) hold exactly what the server's `/api/history` says, and the tables its `/api/stats`.
A screenshot lands in test-artifacts/serving-panel.png."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.fixtures.common import ROOT
from tests.serving.helpers import publish_seeded, random_images

pytestmark = pytest.mark.browser


class Load(threading.Thread):
    """Requests to version 1 and 2 in turn: two of three from 8 images (cache hits once warm), every
    third a new image (a miss, so batches run)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop_event, self.sent, self.failed = url, threading.Event(), 0, []
        self.images = random_images(8, seed=9).tolist()
        self.fresh = random_images(2000, seed=10).tolist()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop_event.is_set():
            version = 1 + self.sent % 2
            image = self.fresh[self.sent % 2000] if self.sent % 3 == 2 else self.images[self.sent % len(self.images)]
            body = {"instances": [image]}
            reply = session.post(f"{self.url}/v1/models/mnist/versions/{version}:predict", json=body, timeout=30)
            if reply.status_code != 200:
                self.failed.append(reply.text)
            self.sent += 1
            time.sleep(0.01)


def chart(page, name: str) -> dict:
    return page.evaluate("""name => { const u = window.servingCharts[name];
        return {data: u.data.map(a => Array.from(a)), labels: u.series.map(s => s.label)}; }""", name)


def test_panel_plots_the_servers_history_per_version(serve_process, browser_page, tmp_path):
    publish_seeded(tmp_path / "repo", 1)
    publish_seeded(tmp_path / "repo", 2)
    server = serve_process(["--repository", str(tmp_path / "repo"), "--anon-rate", "0"])
    load = Load(server.url)
    load.start()
    page = browser_page
    try:
        page.goto(f"{server.url}/panel")
        assert page.title() == "owtrain serving"
        # at least four points with traffic to both versions
        page.wait_for_function("""() => { const u = window.servingCharts.versions;
            return u && u.series.length === 3 && u.data[0].length >= 4 && u.data[2].some(v => v > 0); }""",
                               timeout=30_000)
    finally:
        load.stop_event.set()
        load.join(timeout=30)
    assert not load.failed, load.failed[:3]
    page.wait_for_timeout(1500)  # one more poll after the load stopped

    history = requests.get(f"{server.url}/api/history?since=0", timeout=10).json()
    versions = chart(page, "versions")
    assert versions["labels"] == ["s", "mnist/1", "mnist/2"]
    n = len(versions["data"][0])
    assert 4 <= n <= len(history["t"])
    # every array the charts hold is the server's history, point for point (x is seconds before the newest)
    newest = history["t"][n - 1]
    assert versions["data"][0] == pytest.approx([t - newest for t in history["t"][:n]])
    assert versions["data"][1] == pytest.approx(history["versions"]["mnist/1"][:n])
    assert versions["data"][2] == pytest.approx(history["versions"]["mnist/2"][:n])
    latency, batch, cache = chart(page, "latency"), chart(page, "batch"), chart(page, "cache")
    assert latency["labels"] == ["s", "p50", "p99"] and latency["data"][1] == history["p50_ms"][:n]
    assert latency["data"][2] == history["p99_ms"][:n]
    assert batch["data"][1] == history["batch_mean"][:n] and batch["data"][2] == history["queue_depth"][:n]
    assert cache["data"][1] == [None if v is None else pytest.approx(100 * v) for v in history["cache_hit_rate"][:n]]
    # and the values are what this load produces: both versions answered, requests took time,
    # the 8 repeated images hit the cache once warm
    busy = [i for i in range(n) if history["answered_per_s"][i] > 0]
    assert busy and all(history["p99_ms"][i] >= history["p50_ms"][i] > 0 for i in busy)
    assert sum(history["versions"]["mnist/1"][:n]) > 0 and sum(history["versions"]["mnist/2"][:n]) > 0
    assert max(v for v in history["cache_hit_rate"][:n] if v is not None) > 0.5
    assert any(b is not None and b >= 1 for b in history["batch_mean"][:n])

    stats = requests.get(f"{server.url}/api/stats", timeout=10).json()
    answered = {f"{i['model']}/{i['version']}": i["count"] for i in stats["instances"]}
    table = page.evaluate("""() => Array.from(document.querySelectorAll('#models table tr')).slice(1)
        .map(tr => Array.from(tr.cells).map(td => td.textContent))""")
    assert {row[0].split(" ")[0]: int(row[2]) for row in table} == {"1": answered["mnist/1"], "2": answered["mnist/2"]}
    assert page.errors == []
    assert requests.get(f"{server.url}/api/history?since=soon", timeout=10).status_code == 400
    assert requests.get(f"{server.url}/panel/vendor/..%2Fdashboard.js", timeout=10).status_code == 404
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-artifacts" / "serving-panel.png"), full_page=True)
