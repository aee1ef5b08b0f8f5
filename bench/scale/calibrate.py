"""Measure on this machine what the scale simulation needs, and write it to bench/scale/calibration.json.

For each model (LeNet5, ResNet-18) and each compression (none, fp16, int8, top-k 1 %):
- the parameter server's CPU per push: the real `owtrain ps` (checkpoints and journal on, rate limits
  off) takes `--pushes` gradient pushes from one client; its CPU time is read from /proc before and
  after, so the figure does not depend on how fast the client was;
- the client's own CPU per push (compress, encode, HTTP: its thread's CPU time) and per pull (HTTP,
  decode, load into the model), and the bytes on the wire;
- the server's CPU per pull of a fresh version (push, then pull: the action's pattern) and the
  client's cost to decode and load it;
- the action's compute per batch (forward, backward, the local SGD step; one torch thread; CPU time,
  which is what a core of its own would take however busy this machine is);
- what each further shard costs the worker: the action's own client (owtrain.ps_shards.ShardSet: the
  plan's split, one request per shard, the slices written back) pushing and pulling LeNet5 against
  one real server and against two real shard servers (`--shard 0/2`, `1/2`), interleaved, with the
  client's process CPU time (all its threads) and each server's; the difference between the two is
  the CPU of one more request, the part of a push or pull that sharding does not divide;
- and, once: the cold start of `owtrain action serve` (spawn -> answering; wall and CPU), the CPU that other work
  left to us (two spinning processes for 1 s), and a push-throughput sweep over 1, 4 and 8 client
  threads for LeNet5 (the server-saturation check of the model).

    .venv/bin/python bench/scale/calibrate.py [--pushes 40] [--big-pushes 6] [--request-pushes 200]
        [--out bench/scale/calibration.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from actions.updates import load_params  # noqa: E402
from owtrain.codec import encode_tensors  # noqa: E402
from owtrain.compression import make_compressor  # noqa: E402
from owtrain.models import build_model, input_shape  # noqa: E402
from owtrain.ps_client import PSClient  # noqa: E402
from owtrain.ps_shards import ShardSet  # noqa: E402
from owtrain.shard_plan import ShardPlan  # noqa: E402
from owtrain.tokens import mint_token  # noqa: E402
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http  # noqa: E402

JOB, SECRET = "calib", "calib-secret"
COMPRESSIONS = ("none", "fp16", "int8", "topk:0.01")
TICK = os.sysconf("SC_CLK_TCK")
PULL_WAIT_S = 2.0  # pulls after a push long-poll for its version (it becomes visible just after the answer)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start_ps(folder: Path, model: str, shard: str = "0/1") -> tuple[ServiceProcess, str]:
    """The real `owtrain ps` for `model` (shard I/S of it), journal and checkpoints on, no rate limits."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [PYTHON, "-m", "commands", "ps", "--model", model, "--port", str(port), "--job", JOB,
            "--worker-rate", "0", "--global-rate", "0", "--lr", "1e-6", "--checkpoint-dir", str(folder / "ckpt"),
            "--checkpoint-every", "0", "--checkpoint-interval", "3600", "--keep-versions", "4", "--shard", shard]
    proc = ServiceProcess(argv, folder / f"ps-{model}-{shard.replace('/', 'of')}.log",
                          env={"OWTRAIN_JOB_SECRET": SECRET, "OWTRAIN_LOG": "WARNING"})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/getVersion", timeout=120, proc=proc.proc)
    return proc, url


def client(url: str, worker: str) -> PSClient:
    c = PSClient(url, mint_token(SECRET, JOB, worker, 3600), timeout=120)
    c.register(worker)
    return c


def push_costs(url: str, pid: int, model: str, spec: str, pushes: int) -> dict[str, float]:
    """Server CPU per push and per fresh pull, client cost per push and pull, wire bytes (median-free:
    totals over `pushes` push+pull pairs, so one slow request does not dominate)."""
    worker = f"w-{spec}"
    c = client(url, worker)
    local = build_model(model)
    grads = {n: torch.full_like(p, 1e-3) for n, p in local.named_parameters()}
    compressor = make_compressor(spec)
    version = c.version()
    t_compress = t_push = t_pull = t_load = 0.0
    cpu_push = cpu_pull = 0.0
    wire_bytes = pull_bytes = 0
    for seq in range(pushes):
        # the client's CPU (this thread's CPU time: blocked waiting for the server costs none):
        # compress, then the whole push call (encode, HTTP); the pull call (HTTP, decode), then loading
        c0 = time.thread_time()
        wire, meta = compressor.compress(grads)
        t1 = time.perf_counter()
        before = cpu_s(pid)
        reply = c.push(wire, {"worker": worker, "seq": seq, "base_version": version, "kind": "grad", "samples": 32,
                              "loss": 1.0, **meta})
        t2 = time.perf_counter()
        c2 = time.thread_time()
        mid = cpu_s(pid)
        # a short long-poll: the pushed version can become visible to pulls just after the push's answer
        pulled = c.pull(have=version, wait=PULL_WAIT_S)
        t3 = time.perf_counter()
        after = cpu_s(pid)
        assert pulled is not None and reply.status == "applied", reply
        load_params(local, pulled[1])  # what the action does with a pulled body
        c4 = time.thread_time()
        version = pulled[0]
        t_compress += c2 - c0
        t_load += c4 - c2  # CPU time only: the wait for the server is not counted
        t_push += t2 - t1
        t_pull += t3 - t2
        cpu_push += mid - before
        cpu_pull += after - mid
        wire_bytes += len(encode_tensors(wire, {k: str(v) for k, v in meta.items()}))
        pull_bytes += len(encode_tensors(pulled[1]))
    c.close()
    n = pushes
    return {"server_cpu_push_s": cpu_push / n, "server_cpu_pull_s": cpu_pull / n, "client_push_cpu_s": t_compress / n,
            "client_pull_cpu_s": t_load / n,
            "push_wall_s": t_push / n, "pull_wall_s": t_pull / n, "wire_bytes": wire_bytes / n,
            "pull_bytes": pull_bytes / n}


def exchanges(shard_set: ShardSet, plan: ShardPlan, pids: list[int], worker: str, pushes: int,
              first_seq: int) -> dict[str, float]:
    """`pushes` push+pull pairs of LeNet5 fp32 gradients through `shard_set` as the action makes them
    (split by the plan, one request per shard at once, the pulled slices written into the model):
    totals of the client's process CPU (its pool threads included), each server's CPU and the wall."""
    local = build_model("lenet5")
    params = dict(local.named_parameters())
    grads = {n: torch.full_like(p, 1e-3) for n, p in params.items()}
    versions = shard_set.versions()
    totals = {"client_push_cpu_s": 0.0, "client_pull_cpu_s": 0.0, "server_cpu_push_s": 0.0,
              "server_cpu_pull_s": 0.0, "push_wall_s": 0.0, "pull_wall_s": 0.0}
    for seq in range(first_seq, first_seq + pushes):
        c0, t0, s0 = time.process_time(), time.perf_counter(), sum(cpu_s(p) for p in pids)
        reply = shard_set.push(plan.split(grads), {"worker": worker, "seq": seq, "kind": "grad", "samples": 32,
                                                   "loss": 1.0}, versions)
        c1, t1, s1 = time.process_time(), time.perf_counter(), sum(cpu_s(p) for p in pids)
        pulled = shard_set.pull_into(params, have=versions, wait=PULL_WAIT_S)
        c2, t2, s2 = time.process_time(), time.perf_counter(), sum(cpu_s(p) for p in pids)
        assert reply.status == "applied" and pulled is not None, reply
        versions = pulled
        totals["client_push_cpu_s"] += c1 - c0
        totals["client_pull_cpu_s"] += c2 - c1
        totals["server_cpu_push_s"] += (s1 - s0) / len(pids)  # per shard (they take equal slices)
        totals["server_cpu_pull_s"] += (s2 - s1) / len(pids)
        totals["push_wall_s"] += t1 - t0
        totals["pull_wall_s"] += t2 - t1
    return totals


def request_costs(folder: Path, pushes: int, rounds: int = 4) -> dict[str, Any]:
    """What one more shard costs a worker per push and per pull: the action's client against one
    server and against two shard servers, `rounds` interleaved rounds of `pushes`/`rounds` each."""
    servers = {1: [start_ps(folder / "requests-1", "lenet5")],
               2: [start_ps(folder / f"requests-2-{i}", "lenet5", f"{i}/2") for i in range(2)]}
    try:
        sets = {s: ShardSet([url for _, url in procs], mint_token(SECRET, JOB, f"req{s}", 3600), timeout=120)
                for s, procs in servers.items()}
        plans = {s: shard_set.check_plan() for s, shard_set in sets.items()}
        pids = {s: [proc.pid for proc, _ in procs] for s, procs in servers.items()}
        for s, shard_set in sets.items():
            shard_set.register(f"req{s}")
            exchanges(shard_set, plans[s], pids[s], f"req{s}", 3, 0)  # warm: connections, first allocations
        totals: dict[int, dict[str, float]] = {s: {} for s in servers}
        per_round = max(1, pushes // rounds)
        for r in range(rounds):
            for s, shard_set in sets.items():
                got = exchanges(shard_set, plans[s], pids[s], f"req{s}", per_round, 3 + r * per_round)
                for k, v in got.items():
                    totals[s][k] = totals[s].get(k, 0.0) + v
        for shard_set in sets.values():
            shard_set.close()
    finally:
        for procs in servers.values():
            for proc, _ in procs:
                proc.stop()
    n = per_round * rounds
    out: dict[str, Any] = {"model": "lenet5", "pushes": n,
                           **{f"shards_{s}": {k: v / n for k, v in t.items()} for s, t in totals.items()}}
    one, two = out["shards_1"], out["shards_2"]
    # kept non-negative, like the server's fitted lines (a negative CPU cost would be noise)
    out["client_push_request_s"] = max(0.0, two["client_push_cpu_s"] - one["client_push_cpu_s"])
    out["client_pull_request_s"] = max(0.0, two["client_pull_cpu_s"] - one["client_pull_cpu_s"])
    return out


def sweep(url: str, pid: int, model: str, clients: int, seconds: float) -> dict[str, float]:
    """Pushes/s and the server's CPU share with `clients` threads pushing fp32 updates as fast as they can."""
    grads = {n: torch.full_like(p, 1e-3) for n, p in build_model(model).named_parameters()}
    count = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def run(i: int) -> None:
        name = f"s{clients}-{i}"
        c = client(url, name)
        seq = 0
        while not stop.is_set():
            c.push(grads, {"worker": name, "seq": seq, "base_version": 0, "kind": "grad", "samples": 32})
            seq += 1
            with lock:
                count[0] += 1
        c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with lock:
        n0 = count[0]
    c0, w0 = cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    with lock:
        n1 = count[0]
    c1, w1 = cpu_s(pid), time.monotonic()
    stop.set()
    for t in threads:
        t.join()
    return {"clients": clients, "pushes_per_s": (n1 - n0) / (w1 - w0), "server_cores": (c1 - c0) / (w1 - w0),
            "server_cpu_push_s": (c1 - c0) / max(1, n1 - n0)}


def compute_per_batch(model: str, batch: int, repeat: int = 6) -> float:
    """Median seconds of one training step (forward, backward, SGD step) on one thread."""
    from actions.updates import LocalOptimizer

    torch.set_num_threads(1)
    m = build_model(model)
    opt = LocalOptimizer("sgd", list(m.parameters()), 0.01, 0.5)
    shape = input_shape(model)
    assert shape is not None, model  # the registry's models (lenet5, resnet18) have one
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    times = []
    for _ in range(repeat + 1):
        t0 = time.thread_time()  # CPU time: what one dedicated core would take, whatever else runs here
        loss = torch.nn.functional.cross_entropy(m(x), y)
        m.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.thread_time() - t0)
    return statistics.median(times[1:])


def cold_start(folder: Path, repeat: int = 3) -> dict[str, float]:
    """Median seconds from spawning `owtrain action serve` to its first answer (wall), and the CPU
    seconds the process used by then (what it takes on a core of its own: the start is CPU-bound)."""
    times, cpus = [], []
    for _ in range(repeat):
        port = free_port()
        t0 = time.monotonic()
        proc = ServiceProcess([PYTHON, "-m", "commands", "action", "serve", "--port", str(port)],
                              folder / f"action-{port}.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/", timeout=120, proc=proc.proc)
            times.append(time.monotonic() - t0)
            cpus.append(cpu_s(proc.pid))
        finally:
            proc.stop()
    return {"wall_s": statistics.median(times), "cpu_s": statistics.median(cpus)}


def _spin(seconds: float, out: Any) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    out.put(time.process_time())


def free_cores(seconds: float = 1.0) -> float:
    """CPU cores two spinning processes got over `seconds` of wall time (2.0 on an idle 2-core machine)."""
    q: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_spin, args=(seconds, q)) for _ in range(2)]
    for p in procs:
        p.start()
    got = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return got / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pushes", type=int, default=40, help="push+pull pairs per compression, LeNet5")
    ap.add_argument("--big-pushes", type=int, default=6, help="push+pull pairs per compression, ResNet-18")
    ap.add_argument("--request-pushes", type=int, default=200,
                    help="push+pull pairs against one server and against two shards (LeNet5), each")
    ap.add_argument("--sweep-seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("calibration.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    out: dict[str, Any] = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                           "machine": f"{os.cpu_count()} cores", "load_before": os.getloadavg(),
                           "free_cores_before": free_cores(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model, pushes in (("lenet5", args.pushes), ("resnet18", args.big_pushes)):
            m = build_model(model)
            entry: dict[str, Any] = {"parameters": sum(p.numel() for p in m.parameters()),
                                     "compute_per_batch_s": {str(b): compute_per_batch(model, b) for b in (32, 64)},
                                     "compression": {}}
            proc, url = start_ps(folder / model, model)
            try:
                for spec in COMPRESSIONS:
                    entry["compression"][spec] = push_costs(url, proc.pid, model, spec, pushes)
                    print(model, spec, json.dumps(entry["compression"][spec]), flush=True)
                if model == "lenet5":
                    entry["sweep"] = [sweep(url, proc.pid, model, k, args.sweep_seconds) for k in (1, 4, 8)]
                    print("sweep", json.dumps(entry["sweep"]), flush=True)
            finally:
                proc.stop()
            out["models"][model] = entry
        out["requests"] = request_costs(folder, args.request_pushes)
        print("requests", json.dumps(out["requests"]), flush=True)
        start = cold_start(folder)
        out["cold_start_wall_s"], out["cold_start_s"] = start["wall_s"], start["cpu_s"]
    out["free_cores_after"] = free_cores()
    out["load_after"] = os.getloadavg()
    out["wall_s"] = time.time() - started
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in out.items() if k != "models"}))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
