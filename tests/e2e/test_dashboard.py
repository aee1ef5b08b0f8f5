"""The live dashboard in a real headless Chromium against a real parameter server process.

A background thread trains LeNet5 for real (grad pushes over HTTP) while the page is open; the
test reads what the page rendered (cards, table rows, the number of points each canvas plot drew)
and checks that it changes as the job runs. A screenshot lands in test-artifacts/dashboard.png.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_packer.shard import ShardInfo, write_shard
from owtrain.errors import BadTensor
from owtrain.models import build_model
from tests.fixtures.common import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"


def _eval_shard(path: Path, n: int = 256) -> Path:
    """A small test shard: images whose class is written in their mean brightness (learnable fast)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = (rng.integers(0, 40, (n, 1, 28, 28)) + (y * 20)[:, None, None, None]).astype(np.uint8)
    info = ShardInfo(dataset="toy", split="test", index=0, num_shards=1, sample_range=None,
                     classes=tuple(str(i) for i in range(10)), mean=(0.5,), std=(0.25,), scale=255.0)
    write_shard(path, x, y, info)
    return path


class Trainer(threading.Thread):
    """Pushes real LeNet5 gradients on the toy data as two workers until stopped."""

    def __init__(self, ps) -> None:
        super().__init__(daemon=True)
        self.ps, self.stop_event, self.pushes, self.errors = ps, threading.Event(), 0, []

    def run(self) -> None:
        torch.manual_seed(0)
        model = build_model("lenet5")
        clients = {w: self.ps.client(w) for w in ("w0", "w1")}
        for w, c in clients.items():
            c.register(w)
        seq = {w: 0 for w in clients}
        while not self.stop_event.is_set():
            for w, c in clients.items():
                pulled = c.pull(None)
                version, params = pulled if pulled else (None, None)
                model.load_state_dict(params, strict=False)
                y = torch.randint(0, 10, (32,))
                x = (torch.rand(32, 1, 28, 28) * 40 + (y * 20).view(-1, 1, 1, 1)) / 255.0
                loss = torch.nn.functional.cross_entropy(model((x - 0.5) / 0.25), y)
                model.zero_grad()
                loss.backward()
                grads = {n: p.grad for n, p in model.named_parameters()}
                try:
                    c.push(grads, {"worker": w, "seq": seq[w], "base_version": version, "kind": "grad",
                                   "samples": 32, "loss": loss.item()})
                    self.pushes += 1
                except Exception as exc:  # surfaced by the test, not swallowed
                    self.errors.append(exc)
                seq[w] += 1
            time.sleep(0.05)


@pytest.fixture
def browser_page():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh --with-test-services)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        page.errors = errors
        yield page
        browser.close()


def _points(page, canvas_id: str) -> int:
    return int(page.eval_on_selector(f"#{canvas_id}", "c => c.dataset.points || '0'"))


def test_dashboard_plots_update_while_a_job_runs(ps_server, browser_page, tmp_path):
    shard = _eval_shard(tmp_path / "test.tar.gz")
    ps = ps_server(eval_shard=shard, lr=0.05, extra=["--eval-interval", "0.5", "--eval-every", "5"])
    page = browser_page
    page.goto(f"{ps.url}/dashboard")
    assert page.title() == "owtrain dashboard"
    page.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=15_000)
    assert page.text_content("#stat-version") == "0"

    trainer = Trainer(ps)
    trainer.start()
    try:
        page.wait_for_function("Number(document.getElementById('stat-version').textContent) >= 5", timeout=30_000)
        page.wait_for_function("Number(document.getElementById('plot-loss-version').dataset.points) >= 2",
                               timeout=30_000)
        first = {c: _points(page, c) for c in ("plot-loss-version", "plot-loss-time", "plot-rate")}
        version_then = int(page.text_content("#stat-version"))
        # A bad update (NaN) is refused by the server and must show up by reason.
        bad = {n: torch.full_like(p, float("nan")) for n, p in build_model("lenet5").named_parameters()}
        with pytest.raises(BadTensor):
            ps.client("w9").push(bad, {"worker": "w9", "seq": 0, "base_version": 0, "kind": "grad"})
        page.wait_for_function("document.querySelector('#rejected tbody').textContent.includes('bad_tensor')",
                               timeout=15_000)
        page.wait_for_function("document.getElementById('stat-accuracy').textContent.includes('%')",
                               timeout=30_000)
        # a few more seconds of samples, so the plots (and the screenshot) show a curve
        page.wait_for_function(
            f"Number(document.getElementById('plot-loss-time').dataset.points) > {first['plot-loss-time'] + 6}",
            timeout=20_000)
    finally:
        trainer.stop_event.set()
        trainer.join(timeout=10)
    assert not trainer.errors, trainer.errors
    assert trainer.pushes >= 5

    # later samples were appended to the plots, the version moved on, workers are listed
    assert int(page.text_content("#stat-version")) > version_then
    assert _points(page, "plot-loss-version") > first["plot-loss-version"]
    assert _points(page, "plot-acc-version") >= 1
    assert _points(page, "plot-staleness") >= 1
    workers = page.text_content("#workers tbody")
    assert "w0" in workers and "w1" in workers
    assert "async" in page.text_content("#stat-strategy")
    assert float(page.text_content("#stat-rate")) >= 0.0
    assert page.errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_dashboard_with_protected_reads_needs_a_token_in_the_fragment(ps_server, browser_page):
    ps = ps_server(extra=["--protect-reads"])
    page = browser_page
    page.goto(f"{ps.url}/dashboard")
    page.wait_for_function("document.getElementById('conn').textContent.includes('HTTP 401')", timeout=15_000)
    assert "#token=" in page.text_content("#conn")

    page.goto(f"{ps.url}/dashboard#token={ps.token('viewer')}")
    page.reload()
    page.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=15_000)
    assert page.text_content("#stat-model") == "lenet5"
    assert page.errors == []
