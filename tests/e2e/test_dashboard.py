"""The live dashboard in a real headless Chromium against a real parameter server process.

A background thread trains LeNet5 for real (grad pushes over HTTP) while the page is open; the
test reads what the page shows (cards, table rows, each uPlot chart's data arrays and scales, and
pixels of the drawn curves) and checks it against the server's own `/api/history` and `/status`.
The static copy is opened from disk after the server has stopped. A screenshot lands in
test-artifacts/dashboard.png.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from dataset_packer.shard import ShardInfo, write_shard
from owtrain.errors import BadTensor
from owtrain.models import build_model
from param_server.dashboard import write_static
from tests.fixtures.common import ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"


def _val_shard(path: Path, n: int = 256) -> Path:
    """A small validation shard: images whose class is written in their mean brightness (learnable fast)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = (rng.integers(0, 40, (n, 1, 28, 28)) + (y * 20)[:, None, None, None]).astype(np.uint8)
    info = ShardInfo(dataset="toy", split="val", index=0, num_shards=1, sample_range=None,
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


def _chart(page, name: str) -> dict:
    """What a uPlot chart holds and shows: its data arrays, y scale and series labels."""
    return page.evaluate("""name => { const u = window.owtrainCharts[name];
        return {data: u.data.map(a => Array.from(a)), ymin: u.scales.y.min, ymax: u.scales.y.max,
                distr: u.scales.y.distr, labels: u.series.map(s => s.label)}; }""", name)


# The colour of the line at the chart's newest point, read from the canvas the user sees: the
# drawn curve passes through the value the data arrays hold.
PIXEL_AT_LAST_POINT = """([name, series]) => {
  const u = window.owtrainCharts[name];
  const xs = u.data[0], ys = u.data[series];
  let i = ys.length - 1; while (i > 0 && ys[i] == null) { i--; }
  const cx = Math.round(u.valToPos(xs[i], "x", true)), cy = Math.round(u.valToPos(ys[i], "y", true));
  const px = u.ctx.getImageData(cx - 3, cy - 3, 7, 7).data;
  const out = [];
  for (let k = 0; k < px.length; k += 4) { out.push([px[k], px[k + 1], px[k + 2], px[k + 3]]); }
  return out;
}"""


def _near(colour: tuple[int, int, int], pixels: list[list[int]], tol: int = 40) -> bool:
    return any(a > 0 and all(abs(c - w) <= tol for c, w in zip(p, colour, strict=True)) for *p, a in pixels)


GREEN, BLUE = (0x05, 0x96, 0x69), (0x25, 0x63, 0xEB)  # COLORS.acc, COLORS.train in dashboard.js


def test_dashboard_charts_show_the_servers_values_while_a_job_runs(ps_server, browser_page, tmp_path):
    shard = _val_shard(tmp_path / "toy-val.tar.gz")
    ps = ps_server(eval_shard=shard, lr=0.05, checkpoint_dir=tmp_path / "ckpt",
                   extra=["--eval-interval", "0.5", "--eval-every", "5", "--target-accuracy", "0.9",
                          "--samples-per-epoch", "640", "--max-epochs", "50", "--checkpoint-every", "10",
                          "--static-dashboard", str(tmp_path / "dashboard.html")])
    page = browser_page
    page.goto(f"{ps.url}/dashboard")
    assert page.title() == "owtrain dashboard"
    page.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=15_000)
    assert page.text_content("#stat-version") == "0"

    trainer = Trainer(ps)
    trainer.start()
    try:
        page.wait_for_function("Number(document.getElementById('stat-version').textContent) >= 5", timeout=30_000)
        page.wait_for_function("window.owtrainCharts['loss-version'].data[0].length >= 2", timeout=30_000)
        first = {c: len(_chart(page, c)["data"][0]) for c in ("loss-version", "loss-time", "rate")}
        version_then = int(page.text_content("#stat-version"))
        # A bad update (NaN) is refused by the server and must show up by reason.
        bad = {n: torch.full_like(p, float("nan")) for n, p in build_model("lenet5").named_parameters()}
        with pytest.raises(BadTensor):
            ps.client("w9").push(bad, {"worker": "w9", "seq": 0, "base_version": 0, "kind": "grad"})
        page.wait_for_function("document.querySelector('#rejected tbody').textContent.includes('bad_tensor')",
                               timeout=15_000)
        page.wait_for_function("document.getElementById('stat-accuracy').textContent.includes('%')",
                               timeout=30_000)
        # a few more seconds of samples, so the charts (and the screenshot) show a curve
        page.wait_for_function(
            f"window.owtrainCharts['loss-time'].data[0].length > {first['loss-time'] + 6}", timeout=20_000)
    finally:
        trainer.stop_event.set()
        trainer.join(timeout=10)
    assert not trainer.errors, trainer.errors
    assert trainer.pushes >= 5
    time.sleep(1.5)  # let the page take the last samples

    # the charts hold exactly the server's history: same versions, losses and accuracies
    history = requests.get(f"{ps.url}/api/history", params={"since": 0}, timeout=10).json()
    loss = _chart(page, "loss-version")
    n = len(loss["data"][0])
    assert n > first["loss-version"] and n <= len(history["version"])
    assert loss["data"][0] == history["version"][:n]
    assert loss["data"][1] == pytest.approx(history["loss"][:n], nan_ok=True)
    assert loss["data"][2] == pytest.approx(history["eval_loss"][:n], nan_ok=True)
    assert loss["distr"] == 3, "the loss axis is logarithmic"
    assert loss["labels"][1:] == ["train loss (moving avg)", "validation loss"]
    acc = _chart(page, "acc-version")
    assert acc["data"][1] == pytest.approx(history["accuracy"][:n], nan_ok=True)
    assert acc["data"][2] == [0.9] * n, "the target line"
    measured = [a for a in acc["data"][1] if a is not None]
    assert measured, "no validation accuracy on the chart"
    # zoomed to the range that matters: not 0..1, but around the measured values and the target
    assert acc["ymin"] > 0.0 or acc["ymax"] < 1.0
    assert acc["ymin"] <= min(measured[len(measured) // 5:] + [0.9]) and acc["ymax"] >= max(measured[-1], 0.9)
    page.click("#acc-zoom")
    unzoomed = _chart(page, "acc-version")
    assert (unzoomed["ymin"], unzoomed["ymax"]) == (0, 1)
    page.click("#acc-zoom")
    # the curves pass through the newest values on the canvas itself
    assert _near(GREEN, page.evaluate(PIXEL_AT_LAST_POINT, ["acc-version", 1]))
    assert _near(BLUE, page.evaluate(PIXEL_AT_LAST_POINT, ["loss-version", 1]))
    staleness = _chart(page, "staleness")
    status = requests.get(f"{ps.url}/status", timeout=10).json()
    assert dict(zip(staleness["data"][0], staleness["data"][1], strict=True)) == \
        {float(k): v for k, v in status["staleness_histogram"].items()}

    # epoch = samples trained / samples per epoch; a time-left estimate while the job runs
    samples = sum(w["samples"] for w in status["workers"].values())
    epoch, limit = page.text_content("#stat-epoch").split(" / ")
    assert limit == "50" and float(epoch) == pytest.approx(samples / 640, abs=0.06)
    assert page.text_content("#stat-eta") != ""
    assert int(page.text_content("#stat-version")) > version_then
    workers = page.text_content("#workers tbody")
    assert "w0" in workers and "w1" in workers
    # where an activation's time went: what an action reports at its end shows per worker
    ps.client("w0").report_phases("w0", {"compute": {"s": 1.25, "n": 40}, "push": {"s": 0.5, "n": 10}}, 2.0)
    page.wait_for_function("document.querySelector('#phases tbody').textContent.includes('w0')", timeout=15_000)
    row = page.eval_on_selector("#phases tbody tr", "tr => [...tr.cells].map(c => c.textContent)")
    assert row == ["w0", "1", "0.00", "0.00", "0.00", "0.00", "1.25", "0.50", "0.00", "0.25"]
    assert "async" in page.text_content("#stat-strategy")
    assert float(page.text_content("#stat-rate")) >= 0.0
    assert page.errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # the server's own static copy (written at checkpoints and at exit) opens once it is gone
    final_version = requests.get(f"{ps.url}/getVersion", timeout=10).json()["version"]
    ps.stop()
    page.goto("about:blank")
    page.errors.clear()  # the live page's polls that failed while the server stopped
    page.goto((tmp_path / "dashboard.html").as_uri())
    page.wait_for_function("document.getElementById('conn').textContent === 'static copy'", timeout=15_000)
    assert int(page.text_content("#stat-version")) == final_version
    assert len(_chart(page, "loss-version")["data"][0]) >= n
    assert page.text_content("#stat-eta") == "run over"
    assert page.errors == []


def test_static_copy_shows_its_data_and_the_test_accuracy_without_a_server(browser_page, tmp_path):
    status = {"version": 42, "job": "j", "model": "lenet5", "strategy": {"name": "async"}, "workers": {},
              "updates": {"applied": 42, "rejected": {}}, "staleness_histogram": {"0": 30, "2": 12},
              "eval": {"accuracy": 0.9765, "loss": 0.07, "evaluated_version": 42, "time": 3.5},
              "run": {"target_accuracy": 0.97, "samples_per_epoch": 1000, "max_epochs": 3}}
    history = {"time": [1.0, 2.0, 3.0], "version": [10, 25, 42], "loss": [1.2, 0.3, 0.1],
               "accuracy": [0.91, 0.96, 0.975], "eval_loss": [0.5, 0.2, 0.08], "updates_per_s": [5.0, 6.0, 7.0],
               "staleness": [0.5, 1.0, 0.2], "workers": [2, 2, 2]}
    path = write_static(tmp_path / "copy" / "dashboard.html", status, history,
                        test={"accuracy": 0.9731, "loss": 0.09, "version": 42})
    html = path.read_text()
    assert "<script src=" not in html and "stylesheet" not in html, "everything is inlined"
    page = browser_page
    page.goto(path.as_uri())
    page.wait_for_function("document.getElementById('conn').textContent === 'static copy'", timeout=15_000)
    assert page.text_content("#stat-test") == "97.31 % (v42)"
    assert page.text_content("#stat-accuracy") == "97.65 %"
    acc = _chart(page, "acc-version")
    # the final evaluation, newer than the last history point, ends the curves
    assert acc["data"] == [[10, 25, 42, 42], [0.91, 0.96, 0.975, 0.9765], [0.97] * 4]
    assert 0.85 < acc["ymin"] < 0.97 and acc["ymax"] <= 1.0
    assert _chart(page, "loss-time")["data"][0] == [0, 1, 2, 2.5]
    assert _chart(page, "loss-version")["data"][2] == [0.5, 0.2, 0.08, 0.07]
    assert _near(GREEN, page.evaluate(PIXEL_AT_LAST_POINT, ["acc-version", 1]))
    assert page.errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-static.png"), full_page=True)


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
