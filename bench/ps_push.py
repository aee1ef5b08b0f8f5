"""Push throughput of the parameter server against the bare stack and raw TCP loopback.

Three servers run side by side, each its own process, and the same external load generator
(bench/loadgen.py: one process per client, one keep-alive connection each, closed loop) drives
them in turn, interleaved: for every body size, client count and repeat, the real parameter
server's `POST /putGradient` (`owtrain ps` as a user starts it, strategy `async`, rate limits off,
a checkpoint folder so the journal and checkpoints are on unless `--ps-args` says otherwise), then
a bare gevent WSGI app that only reads the body (bench/bare_wsgi.py, the same
`owtrain.wsgi.NoDelayWSGIServer`), then a plain socket server that reads N bytes and answers
(bench/tcp_loopback.py). Bodies: a LeNet5 fp32 gradient (248 kB) and a 45 MB one (11.25 M
parameters, ResNet-18's size); every push carries its own sequence number, so each is applied.

With `--before-root DIR` (a checkout of an earlier commit, e.g. from `git archive`), that tree's
parameter server runs as a fourth server, `ps-before`, with the same options, interleaved too: a
before/after comparison from one script run on the same load.

For each cell it prints the median and the range (min–max) over the repeats of pushes/s, MB/s,
p50 and p99 latency, the server's CPU per push (/proc/<pid>/stat) and its peak RSS, with the
1-minute load average; `--out` also gets every repeat as JSON.

    .venv/bin/python bench/ps_push.py [--seconds 2] [--repeats 3] [--clients 1,8,32] \\
        [--big-clients 1] [--big-seconds 6] [--ps-args "--no-journal"] [--before-root /tmp/before] \\
        [--out bench/results/ps_push.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from loadgen import Target, measure  # noqa: E402

from owtrain.codec import CONTENT_TYPE, encode_tensors  # noqa: E402
from owtrain.models import build_model  # noqa: E402
from owtrain.tokens import mint_token  # noqa: E402
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http  # noqa: E402

SECRET, JOB = "bench-secret", "bench"
SEQ_WIDTH = 12
SEQ_MARK = "9" * SEQ_WIDTH  # placeholder the load generator overwrites with each request's number
TARGETS = ("ps", "bare", "tcp")


class Wide(nn.Module):
    """11.25 M parameters (45 MB of fp32), the size of ResNet-18, in two layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 14_336), nn.ReLU(), nn.Linear(14_336, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def push_body(model: nn.Module, folder: Path, name: str) -> tuple[Path, int]:
    """A gradient push body for `model` (no `worker` in the metadata: the token names it) and the
    offset of its sequence-number field."""
    grads = {n: torch.full(tuple(p.shape), 1e-3) for n, p in model.named_parameters()}
    body = encode_tensors(grads, {"seq": SEQ_MARK, "base_version": "0", "kind": "grad", "samples": "64",
                                  "loss": "1.0"})
    offset = body.find(SEQ_MARK.encode())
    assert offset > 0 and body.find(SEQ_MARK.encode(), offset + 1) < 0, "the seq placeholder must be unique"
    path = folder / name
    path.write_bytes(body)
    return path, offset


def start_servers(model: str, folder: Path, ps_args: list[str], before: Path | None,
                  ) -> dict[str, tuple[ServiceProcess, int]]:
    """The parameter server for `model` (and the one of the `before` tree), the bare WSGI app and
    the TCP server, each on its own port."""
    env = {"PYTHONPATH": f"{BENCH}:{ROOT}", "OWTRAIN_LOG": "WARNING", "OWTRAIN_JOB_SECRET": SECRET}
    servers: dict[str, tuple[ServiceProcess, int]] = {}
    for name, root in (("ps", ROOT), ("ps-before", before)):
        if root is None:
            continue
        port = free_port()
        entry = "commands" if (root / "commands").is_dir() else "owtrain.cli"  # the tree before the refactor
        argv = [PYTHON, "-m", entry, "ps", "--model", model, "--host", "127.0.0.1", "--port", str(port),
                "--job", JOB, "--strategy", "async", "--lr", "1e-6", "--worker-rate", "0", "--global-rate", "0",
                "--checkpoint-dir", str(folder / f"ckpt-{port}"), *ps_args]
        ps_env = {**env, "PYTHONPATH": f"{root / 'bench'}:{root}"}
        servers[name] = (ServiceProcess(argv, folder / f"{name}-{port}.log", env=ps_env, cwd=root), port)
    for name, script in (("bare", "bare_wsgi.py"), ("tcp", "tcp_loopback.py")):
        port = free_port()
        proc = ServiceProcess([PYTHON, str(BENCH / script), "--port", str(port)], folder / f"{name}-{port}.log", env=env)
        servers[name] = (proc, port)
    for name in ("ps", "ps-before"):
        if name in servers:
            wait_http(f"http://127.0.0.1:{servers[name][1]}/getVersion", timeout=120, proc=servers[name][0].proc)
    time.sleep(0.5)  # the two small servers listen within milliseconds of their start
    return servers


def cell(name: str, servers: dict, body: Path, offset: int, clients: int, seconds: float, run_id: str) -> dict:
    proc, port = servers[name]
    if name.startswith("ps"):
        workers = [f"{run_id}-c{i}" for i in range(clients)]
        headers = [{"Authorization": f"Bearer {mint_token(SECRET, JOB, w, 3600)}", "Content-Type": CONTENT_TYPE}
                   for w in workers]
        target = Target("127.0.0.1", port, "/putGradient", body, headers, offset, SEQ_WIDTH)
    else:
        target = Target("127.0.0.1", port, "/sink", body, [{"Content-Type": CONTENT_TYPE}], offset, SEQ_WIDTH)
    out = measure(target, clients, seconds, warmup=min(1.0, seconds / 2), server_pid=proc.pid)
    if out["errors"] or not out["n"]:
        raise RuntimeError(f"{name} with {clients} clients: {out['errors']} errors, first: {out['first_error']}; "
                           f"server log: {proc.log_text()[-2000:]}")
    return out


def summary(runs: list[dict]) -> dict:
    """Median and (min, max) of each figure over the repeats."""
    out: dict = {}
    for key in ("per_s", "mb_s", "p50_ms", "p99_ms", "cpu_ms_per_req", "cpu_cores", "peak_rss_mb", "loadavg_1m"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def fmt(s: dict, key: str, digits: int = 0) -> str:
    v = s.get(key)
    if v is None:
        return "–"
    digits = max(digits, 1) if v["median"] < 10 else digits  # a few pushes per second keep a decimal
    return f"{v['median']:,.{digits}f} ({v['min']:,.{digits}f}–{v['max']:,.{digits}f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring window per cell (after a warm-up)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every cell")
    ap.add_argument("--clients", default="1,8,32", help="client counts for the LeNet5 body")
    ap.add_argument("--big-clients", default="1", help="client counts for the 45 MB body ('' skips it)")
    ap.add_argument("--big-seconds", type=float, default=6.0,
                    help="measuring window for the 45 MB body (a push can take a second: keep several per window)")
    ap.add_argument("--ps-args", default="", help="extra `owtrain ps` options, e.g. \"--no-journal\"")
    ap.add_argument("--before-root", type=Path, default=None,
                    help="a checkout of an earlier tree: its parameter server runs beside, as ps-before")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ps_push.json", help="JSON of every run")
    args = ap.parse_args()
    if args.repeats < 1 or args.seconds <= 0:
        ap.error("--repeats must be at least 1 and --seconds positive")
    try:
        lenet = [int(c) for c in args.clients.split(",") if c]
        big = [int(c) for c in args.big_clients.split(",") if c]
    except ValueError:
        ap.error("--clients and --big-clients are comma-separated integers, e.g. 1,8,32")
    ps_args = shlex.split(args.ps_args)
    if args.before_root is not None and not (args.before_root / "param_server").is_dir():
        ap.error(f"--before-root {args.before_root} is not an owtrain checkout (no param_server/ in it)")
    targets = (("ps", "ps-before") if args.before_root else ("ps",)) + TARGETS[1:]
    torch.set_num_threads(1)
    results: list[dict] = []
    print(f"load average at the start: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}; ps args: {ps_args}")
    with tempfile.TemporaryDirectory(prefix="ps_push-") as tmp:
        folder = Path(tmp)
        for label, model, make, counts, seconds in (
                ("lenet5 248 kB", "lenet5", lambda: build_model("lenet5"), lenet, args.seconds),
                ("45 MB", "ps_push:Wide", Wide, big, args.big_seconds)):
            if not counts:
                continue
            body, offset = push_body(make(), folder, f"{model.replace(':', '_')}.bin")
            servers = start_servers(model, folder, ps_args, args.before_root)
            try:
                for repeat in range(args.repeats):
                    for clients in counts:
                        for name in targets:  # interleaved: ps (ps-before), bare, tcp, then the next cell
                            run_id = f"r{repeat}-n{clients}"
                            out = cell(name, servers, body, offset, clients, seconds, run_id)
                            results.append({"body": label, "bytes": body.stat().st_size, "target": name,
                                            "repeat": repeat, **out})
                            print(f"  {label} {name:9s} clients {clients:2d} repeat {repeat}: {out['per_s']:8.1f}/s "
                                  f"p99 {out['p99_ms']:7.1f} ms cpu/req {out.get('cpu_ms_per_req') or 0:6.2f} ms "
                                  f"load {out['loadavg_1m']:.2f}", flush=True)
            finally:
                for proc, _ in servers.values():
                    proc.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "ps_args": ps_args, "targets": targets,
                                    "runs": results}, indent=1))
    print_table(results, targets)


def print_table(results: list[dict], targets: tuple[str, ...]) -> None:
    print("\n| body | clients | server | push/s | MB/s | p50 ms | p99 ms | CPU ms/push | server cores | "
          "peak RSS MB | vs bare | vs TCP | load avg |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cells = sorted({(r["body"], r["clients"]) for r in results}, key=lambda c: (c[0] != "lenet5 248 kB", c[1]))
    for body, clients in cells:
        stats = {t: summary([r for r in results if (r["body"], r["clients"], r["target"]) == (body, clients, t)])
                 for t in targets}
        for t in targets:
            s = stats[t]
            ratio = {ref: s["per_s"]["median"] / stats[ref]["per_s"]["median"] for ref in ("bare", "tcp")}
            print(f"| {body} | {clients} | {t} | {fmt(s, 'per_s')} | {fmt(s, 'mb_s')} | {fmt(s, 'p50_ms', 1)} | "
                  f"{fmt(s, 'p99_ms', 1)} | {fmt(s, 'cpu_ms_per_req', 2)} | {fmt(s, 'cpu_cores', 2)} | "
                  f"{fmt(s, 'peak_rss_mb')} | {ratio['bare']:.2f}× | {ratio['tcp']:.2f}× | {fmt(s, 'loadavg_1m', 1)} |")


if __name__ == "__main__":
    main()
