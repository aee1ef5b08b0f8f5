"""Time to accuracy: `owtrain local` against tuned plain PyTorch (1 and 2 threads) and DDP (2 × 1 thread).

Every contender trains LeNet5 on MNIST until the accuracy on the **validation split** reaches the
target, and reports the **test** accuracy of the model that reached it (selection on validation,
report on test). The validation split is the one `owtrain pack` holds out
(`dataset_packer.split.holdout`: seeded, stratified, `default_val_size` samples, seed
`DEFAULT_VAL_SEED`), so the baselines train on exactly the samples owtrain's shards hold.

- `plain1`, `plain2`: one process, `torch.optim.SGD`, 1 or 2 torch threads;
- `ddp`: `DistributedDataParallel`, 2 processes × 1 thread, gloo on loopback, each rank a disjoint
  half of every epoch's permutation (per-rank batch = global batch / 2);
- `owtrain`: `owtrain local` with its defaults (2 workers), as a user runs it.

Each baseline is tuned first (`--sweep`): every learning rate × momentum of GRID at batch 64, then
batch 32 and 128 at the best of those; each cell trains until the target or `--sweep-epochs`. Cells
are ranked by samples to the target × seconds per sample at their batch size (measured once,
interleaved over the sizes, at the sweep's start), because other work on the machine changes the
speed from one cell to the next but not the samples a cell needs; a cell is cut as soon as it can
no longer win. Evaluations are skipped while the recent training accuracy is more than SKIP_MARGIN
below the target (they cost wall time only, never training time). The sweep is written to
`bench/results/tta_sweep.json` and the comparison (`--compare`) takes the winners from it.

Two times per contender and run:
- **training**: baselines: seconds of training steps to the first evaluation at or above the
  target (evaluations, every `--eval-every` samples, are not charged); owtrain: from its first
  activation's start to the evaluation that saw the target (its evaluations run beside training);
- **command**: from the command's start to its exit, as a process (imports, data loading, and for
  owtrain packing, S3, the servers, the wind-down and the report), the dataset cache warm; for the
  baselines also "command − evaluations" (what a baseline that knew when to stop would need).
The contenders run interleaved (the order rotates each repeat) on the same cores; medians and
ranges over `--repeats`, with the 1-minute load average beside each run. `--cold` adds one run of
owtrain and of plain2 with an empty dataset cache (reported separately).

    .venv/bin/python bench/time_to_accuracy.py --sweep [--kinds plain1,plain2,ddp]
    .venv/bin/python bench/time_to_accuracy.py --compare [--repeats 3] [--cold]
    .venv/bin/python bench/time_to_accuracy.py --sweep-owtrain [--repeats 2] [--max-epochs 3]

`--sweep-owtrain` gives owtrain the same tuning effort: every lr × momentum × push interval of
OWTRAIN_GRID as a real `owtrain local` run to the target, ranked by the epochs of samples it needed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from stats import spread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
SWEEP_FILE = RESULTS / "tta_sweep.json"
COMPARE_FILE = RESULTS / "time_to_accuracy.json"
KINDS = ("plain1", "plain2", "ddp")
# An evaluation is skipped while the training accuracy over the last `eval_every` samples is more
# than this below the target: it could not be at the target yet, and skipping saves wall time only.
SKIP_MARGIN = 0.02
# The sweep: every lr × momentum at batch 64, then the other batch sizes at the best (lr, momentum).
GRID = {"lr": (0.01, 0.02, 0.05), "momentum": (0.9, 0.5)}
BATCHES = (64, 32, 128)
# owtrain's sweep (`--sweep-owtrain`, delta mode, 2 workers, batch 64, async): learning rate,
# momentum and batches per push, each cell one real `owtrain local` run.
OWTRAIN_GRID = {"lr": (0.02, 0.05, 0.1), "momentum": (0.9, 0.5), "update_interval": (16, 4)}


# -- the baselines' training (runs inside worker processes) ---------------------------------------


def load_split(seed: int, data_dir: Path | None = None) -> dict[str, Any]:
    """MNIST as normalised float tensors: train (without the validation samples), val, test."""
    import torch

    from dataset_packer.config import default_data_dir
    from dataset_packer.pack import DEFAULT_VAL_SEED
    from dataset_packer.sources import load_source
    from dataset_packer.split import default_val_size, holdout

    ds = load_source("mnist", data_dir or default_data_dir())
    train_idx, val_idx = holdout(ds.train_y, default_val_size(len(ds.train_y)), DEFAULT_VAL_SEED)

    def tensors(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(x).float() / ds.scale - ds.mean[0]) / ds.std[0], torch.from_numpy(y).long()

    return {"train": tensors(ds.train_x[train_idx], ds.train_y[train_idx]),
            "val": tensors(ds.train_x[val_idx], ds.train_y[val_idx]), "test": tensors(ds.test_x, ds.test_y)}


def accuracy(model: Any, xy: tuple[Any, Any]) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        correct = sum(int((model(xy[0][i:i + 1000]).argmax(1) == xy[1][i:i + 1000]).sum())
                      for i in range(0, len(xy[1]), 1000))
    model.train()
    return correct / len(xy[1])


def train_to_target(data: dict, hp: dict, target: float, eval_every: int, max_epochs: float, seed: int,
                    give_up_samples: int | None = None, world: int = 1, rank: int = 0) -> dict:
    """SGD on LeNet5 until validation accuracy >= target; `hp` = {lr, momentum, batch} (global batch).

    With `world` > 1 the process group is initialised: each rank steps on its share of every
    global batch and DDP averages the gradients; rank 0 evaluates and decides for both.
    """
    import torch
    from torch.nn import functional as F

    from owtrain.models import build_model

    model = build_model("lenet5", seed=seed)
    net: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    opt = torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=hp["momentum"])
    x, y = data["train"]
    n, batch = len(y), int(hp["batch"])
    gen = torch.Generator().manual_seed(seed)
    trained = eval_s = 0.0
    samples = steps = next_eval = 0
    curve: list[dict] = []
    status = torch.zeros(2)  # [reached, give up], decided by rank 0
    recent: deque[tuple[int, int]] = deque(maxlen=eval_every // max(1, batch // world))  # (correct, seen)
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            t0 = time.perf_counter()
            idx = perm[i:i + batch][rank::world]
            logits = net(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            trained += time.perf_counter() - t0
            recent.append((int((logits.argmax(1) == y[idx]).sum()), len(idx)))
            steps += 1
            samples += len(perm[i:i + batch])
            if samples < next_eval:
                continue
            next_eval = samples + eval_every
            t1 = time.perf_counter()
            train_acc = sum(c for c, _ in recent) / max(1, sum(k for _, k in recent))
            if rank == 0 and train_acc < target - SKIP_MARGIN and samples < max_epochs * n:
                status[:] = 0  # far from the target: skip this evaluation (it would only cost wall time)
            elif rank == 0:
                acc = accuracy(model, data["val"])
                curve.append({"time": round(trained, 3), "samples": samples, "val_accuracy": acc})
                status[0] = acc >= target
                status[1] = samples >= max_epochs * n
            if rank == 0 and give_up_samples is not None and samples > give_up_samples:
                status[1] = 1  # slower than the best cell so far: it cannot win the sweep
            if world > 1:
                torch.distributed.broadcast(status, 0)
            if status[0] or status[1]:
                reached = bool(status[0])
                test = accuracy(model, data["test"]) if rank == 0 and reached else None
                eval_s += time.perf_counter() - t1
                return {"hp": hp, "reached": reached, "train_s": trained, "steps": steps, "samples": samples,
                        "epochs": samples / n, "val_accuracy": curve[-1]["val_accuracy"] if curve else None,
                        "test_accuracy": test, "eval_s": eval_s, "curve": curve, "gave_up": not reached}
            eval_s += time.perf_counter() - t1


def calibrate(data: dict, batches: list[int], world: int, rank: int, rounds: int = 5, steps: int = 8) -> dict:
    """Seconds per training sample at each batch size, measured interleaved (round-robin over the
    sizes, median of `rounds`), so a burst of load from other work hits every size alike."""
    import torch
    from torch.nn import functional as F

    from owtrain.models import build_model

    model = build_model("lenet5", seed=0)
    net: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = data["train"]
    per: dict[int, list[float]] = {b: [] for b in batches}
    for r in range(rounds + 1):
        for b in batches:
            t0 = time.perf_counter()
            for i in range(steps):
                idx = torch.arange(i * b, (i + 1) * b)[rank::world]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if r:  # round 0 warms up
                per[b].append((time.perf_counter() - t0) / (steps * b))
    return {b: statistics.median(v) for b, v in per.items()}


def worker(args: argparse.Namespace) -> None:
    """A baseline process: train each config of `--configs` in turn, print the results as JSON."""
    import torch

    t_start = time.time()
    torch.set_num_threads(args.threads)
    if args.world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank,
                                world_size=args.world)
    data = load_split(args.seed, Path(args.data_dir) if args.data_dir else None)
    loaded = time.time()
    results: list[dict] = []
    configs = json.loads(args.configs)
    then = [int(b) for b in args.then_batches.split(",") if b]
    # The sweep ranks cells by samples to the target × seconds per sample at their batch size (a
    # calibration interleaved over the sizes), not by their own seconds: other work on the machine
    # changes the speed from one cell to the next, not the number of samples a cell needs.
    cost = calibrate(data, sorted({int(c["batch"]) for c in configs} | set(then)), args.world, args.rank) \
        if args.prune else {}
    while configs:
        hp = configs.pop(0)
        reached = [r for r in results if r["reached"]]
        best_est = min((r["est_s"] for r in reached), default=None)
        give_up = None if best_est is None else int(best_est / cost[int(hp["batch"])])
        out = train_to_target(data, hp, args.target, args.eval_every, args.max_epochs, args.seed, give_up,
                              args.world, args.rank)
        out["est_s"] = out["samples"] * cost[int(hp["batch"])] if cost else None
        results.append(out)
        if not configs and then:  # second stage: the other batch sizes at the best lr and momentum so far
            best = min((r for r in results if r["reached"]), key=lambda r: r["est_s"], default=results[0])
            configs = [{**best["hp"], "batch": b} for b in then]
            then = []
    if args.rank == 0:
        print(json.dumps({"results": results, "load_s": loaded - t_start, "cost_s_per_sample": cost}), flush=True)
    if args.world > 1:
        torch.distributed.destroy_process_group()


def run_baseline(kind: str, configs: list[dict], args: argparse.Namespace, prune: bool = False,
                 data_dir: Path | None = None, then_batches: tuple[int, ...] = ()) -> dict:
    """Run `configs` in a fresh `kind` process (or 2 DDP processes); add the command's wall time."""
    threads, world = {"plain1": (1, 1), "plain2": (2, 1), "ddp": (1, 2)}[kind]
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    procs = []
    for rank in range(world):
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", str(threads),
                "--world", str(world), "--rank", str(rank), "--port", str(port), "--configs", json.dumps(configs),
                "--target", str(args.target), "--eval-every", str(args.eval_every), "--max-epochs",
                str(args.sweep_epochs if prune else args.max_epochs), "--seed", str(args.seed)]
        if prune:
            argv.append("--prune")
        if then_batches:
            argv += ["--then-batches", ",".join(map(str, then_batches))]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True))
    outs = [p.communicate()[0] for p in procs]
    wall = time.time() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{kind} failed: exit codes {[p.returncode for p in procs]}")
    out = json.loads(outs[0])
    out.update(kind=kind, wall_s=wall, loadavg_1m=os.getloadavg()[0])
    return out


# -- owtrain ---------------------------------------------------------------------------------------------


def run_owtrain(args: argparse.Namespace, data_dir: Path | None = None, options: tuple[str, ...] = ()) -> dict:
    """`owtrain local` with its defaults (or `options` over them); times from its report and driver records."""
    run_dir = ROOT / "runs" / f"bench-tta-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"  # gitignored
    argv = [sys.executable, "-m", "commands", "local", "--target-accuracy", str(args.target),
            "--run-dir", str(run_dir), "--no-progress", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if data_dir is not None:
        env["OWTRAIN_DATA_DIR"] = str(data_dir)
    t0 = time.time()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    report_path = run_dir / "report.json"
    if not report_path.exists():
        raise RuntimeError(f"owtrain local exited {proc.returncode} without a report:\n{proc.stderr[-3000:]}")
    report = json.loads(report_path.read_text())
    started = float(report["started"])
    starts = [a["started"] for a in _activations(run_dir)]
    first = min(starts) if starts else None
    after = report["target"]["after_s"]
    reached_at = None if after is None else started + after
    test = report.get("test", {}).get("accuracy") if isinstance(report.get("test"), dict) else None
    version = report["target"].get("version")
    per_push = int(report["config"].get("update_interval") or 1) * int(report["config"].get("batch_size") or 1)
    epoch = report["config"].get("samples_per_epoch")
    return {
        "kind": "owtrain", "run_dir": str(run_dir.relative_to(ROOT)), "exit": proc.returncode,
        "reached": reached_at is not None, "wall_s": wall,
        "train_s": None if reached_at is None or first is None else reached_at - first,
        "command_to_target_s": None if reached_at is None else reached_at - t0,
        "setup_s": None if first is None else first - t0,
        "first_activation_s": None if first is None else first - started,  # on the report's clock
        "wind_down_s": None if reached_at is None else t0 + wall - reached_at,
        "target_version": version, "selected_on": report["target"].get("split", "see report"),
        "test_accuracy": test if test is not None else report["final"]["accuracy"],
        "samples_trained": report["activations"]["samples"], "phases": report.get("phases"),
        # delta mode: every applied push is one version of `update_interval` local batches
        "epochs": None if version is None or not epoch else version * per_push / int(epoch),
        "config": {k: report["config"].get(k) for k in ("workers", "mode", "lr", "momentum", "batch_size",
                                                        "update_interval", "strategy")},
        "loadavg_1m": os.getloadavg()[0],
        "curve": report["evaluations"],
    }


def _activations(run_dir: Path) -> list[dict]:
    from wsk.state import DriverState

    state = DriverState(run_dir / "driver.db")
    try:
        return [row for shard in state.shards() for row in state.history(shard.key) if row["started"]]
    finally:
        state.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the two steps ---------------------------------------------------------------------------------------


def sweep(args: argparse.Namespace) -> None:
    """Tune every baseline kind over GRID; write the table of every cell and the winners."""
    grid = [{"lr": lr, "momentum": m, "batch": BATCHES[0]} for lr, m in itertools.product(*GRID.values())]
    previous = json.loads(SWEEP_FILE.read_text()) if SWEEP_FILE.exists() else {}
    kinds = previous.get("kinds", {})
    for kind in args.kinds.split(","):
        print(f"sweep {kind}: {len(grid)} cells", flush=True)
        out = run_baseline(kind, grid, args, prune=True, then_batches=BATCHES[1:])
        cells = [{k: v for k, v in r.items() if k != "curve"} for r in out["results"]]
        for c in cells:
            print(f"  {kind} {c['hp']}: {'reached' if c['reached'] else 'cut'} after {c['train_s']:.1f} s, "
                  f"{c['epochs']:.2f} epochs, estimated {c['est_s']:.1f} s", flush=True)
        best = min((c for c in cells if c["reached"]), key=lambda c: c["est_s"], default=None)
        kinds[kind] = {"cells": cells, "best": best and best["hp"], "loadavg_1m": out["loadavg_1m"],
                       "cost_s_per_sample": out["cost_s_per_sample"],
                       "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    SWEEP_FILE.write_text(json.dumps({"target": args.target, "grid": {**GRID, "batch": BATCHES},
                                      "eval_every": args.eval_every,
                                      "sweep_epochs": args.sweep_epochs, "kinds": kinds}, indent=1))
    print_sweep(kinds, args.sweep_epochs)


def sweep_owtrain(args: argparse.Namespace) -> None:
    """owtrain's own tuning, as hard as the baselines': every cell of OWTRAIN_GRID is one real
    `owtrain local` run to the target (or `--max-epochs`); ranked by epochs to the target (the samples
    the two workers needed together), the measured training seconds beside it. Repeats interleave."""
    grid = json.loads(args.owtrain_grid) if args.owtrain_grid else OWTRAIN_GRID
    cells = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    runs: list[dict] = []
    out_file = args.sweep_out
    for repeat in range(args.repeats):
        for hp in cells if repeat % 2 == 0 else cells[::-1]:
            options = (*(part for name, value in hp.items() for part in (f"--{name.replace('_', '-')}", str(value))),
                       "--max-epochs", str(int(args.max_epochs)))
            out = {**run_owtrain(args, options=options), "hp": hp, "repeat": repeat}
            out.pop("curve", None)
            runs.append(out)
            RESULTS.mkdir(parents=True, exist_ok=True)
            out_file.write_text(json.dumps({"command": " ".join(sys.argv), "target": args.target,
                                            "grid": grid, "runs": runs}, indent=1))
            print(f"  {hp}: epochs {_s2(out['epochs'])}, training {_s(out['train_s'])}, "
                  f"command {out['wall_s']:.1f} s, load {out['loadavg_1m']:.2f}", flush=True)
    print(f"\n| {' | '.join(grid)} | epochs to target (runs) | training s (runs) | test accuracy |")
    print("|" + "---:|" * len(grid) + "---|---|---|")
    for hp in cells:
        rs = [r for r in runs if r["hp"] == hp]
        tests = ", ".join(f"{r['test_accuracy']:.4f}" for r in rs)
        print(f"| {' | '.join(str(v) for v in hp.values())} | {', '.join(_s2(r['epochs']) for r in rs)} | "
              f"{', '.join(_s(r['train_s']) for r in rs)} | {tests} |")


def _s2(epochs: float | None) -> str:
    return "not reached" if epochs is None else f"{epochs:.2f}"


def compare(args: argparse.Namespace) -> None:
    """The interleaved comparison with the swept settings; prints the table, writes the JSON."""
    swept = json.loads(SWEEP_FILE.read_text())["kinds"]
    missing = [k for k in KINDS if not (swept.get(k) or {}).get("best")]
    if missing:
        sys.exit(f"no swept settings for {', '.join(missing)}: run `bench/time_to_accuracy.py --sweep` first")
    contenders = ["owtrain", *KINDS]
    runs: list[dict] = []
    cold: list[dict] = []

    def save() -> None:  # after every run, so an interrupted comparison keeps what it measured
        RESULTS.mkdir(parents=True, exist_ok=True)
        COMPARE_FILE.write_text(json.dumps({"command": " ".join(sys.argv), "target": args.target, "runs": runs,
                                            "cold": cold, "settings": {k: swept[k]["best"] for k in KINDS}},
                                           indent=1))

    for repeat in range(args.repeats):
        order = contenders[repeat % len(contenders):] + contenders[:repeat % len(contenders)]
        for kind in order:
            out = run_owtrain(args) if kind == "owtrain" else _one(run_baseline(kind, [swept[kind]["best"]], args))
            out["repeat"] = repeat
            runs.append(out)
            save()
            print(f"  repeat {repeat} {kind:7s}: training {_s(out['train_s'])}, command {out['wall_s']:.1f} s, "
                  f"test accuracy {out['test_accuracy']}, load {out['loadavg_1m']:.2f}", flush=True)
    if args.cold:
        for kind in ("owtrain", "plain2"):
            with tempfile.TemporaryDirectory(prefix="tta-cold-") as tmp:
                out = run_owtrain(args, Path(tmp)) if kind == "owtrain" else \
                    _one(run_baseline(kind, [swept[kind]["best"]], args, data_dir=Path(tmp)))
            cold.append(out)
            save()
            print(f"  cold {kind}: command {out['wall_s']:.1f} s, training {_s(out['train_s'])}", flush=True)
    print_compare(runs, cold)
    plot(ROOT / "docs" / "img" / "time_to_accuracy.png", [r for r in runs if r["repeat"] == args.repeats - 1],
         args.target)


def plot(path: Path, runs: list[dict], target: float) -> None:
    """Accuracy against training seconds, one line per contender (one repeat)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        if r["kind"] == "owtrain":
            first = r["first_activation_s"] or 0.0
            pts = [(e["time"] - first, e["accuracy"]) for e in r["curve"] if e["accuracy"] is not None]
            label = "owtrain local, 2 workers (since its first activation)"
        else:
            pts = [(p["time"], p["val_accuracy"]) for p in r["curve"]]
            label = f"{r['kind']} {r['hp']}"
        ax.plot([t for t, _ in pts], [a for _, a in pts], "-o", ms=3, label=label)
    ax.axhline(target, ls="--", color="grey", label=f"target {target:g}")
    ax.set_ylim(0.9, 1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("accuracy (validation; owtrain: its report's evaluations)")
    ax.set_title("LeNet5 on MNIST: time to accuracy")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _one(out: dict) -> dict:
    """A baseline process that trained one config: its result with the command's times."""
    r = out["results"][0]
    return {**r, "kind": out["kind"], "wall_s": out["wall_s"], "load_s": out["load_s"],
            "wall_minus_eval_s": out["wall_s"] - r["eval_s"], "loadavg_1m": out["loadavg_1m"]}


def _s(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.1f} s"


def print_sweep(kinds: dict, sweep_epochs: float) -> None:
    for kind, entry in kinds.items():
        print(f"\n{kind} (best {entry['best']}, load {entry['loadavg_1m']:.1f}, {entry['measured']})")
        print("| lr | momentum | batch | epochs to target | samples × s/sample (s) | measured training s | "
              "val acc at stop | |")
        print("|---:|---:|---:|---:|---:|---:|---:|---|")
        for c in entry["cells"]:
            hp = c["hp"]
            mark = ("**best**" if hp == entry["best"] else "reached" if c["reached"] else
                    "not reached in the sweep's epochs" if c["epochs"] >= sweep_epochs else "cut: slower than the best")
            val = "–" if c["val_accuracy"] is None else f"{c['val_accuracy']:.4f}"
            print(f"| {hp['lr']} | {hp['momentum']} | {hp['batch']} | {c['epochs']:.2f} | {c['est_s']:.1f} | "
                  f"{c['train_s']:.1f} | {val} | {mark} |")


def print_compare(runs: list[dict], cold: list[dict]) -> None:
    base = {k: statistics.median([r["train_s"] for r in runs if r["kind"] == k and r["train_s"] is not None] or [0])
            for k in KINDS}
    walls = {k: statistics.median([r["wall_s"] for r in runs if r["kind"] == k]) for k in KINDS}
    print("\n| contender | training s to target | vs plain2 | command s (start → exit) | vs plain2 | "
          "command − evaluations s | test accuracy | epochs | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("owtrain", *KINDS):
        rs = [r for r in runs if r["kind"] == kind]
        train = [r["train_s"] for r in rs]
        wall = [r["wall_s"] for r in rs]
        t_med = statistics.median([t for t in train if t is not None] or [float("nan")])
        epochs = [r.get("epochs") for r in rs]
        print(f"| {kind} | {spread(train)} | {t_med / base['plain2']:.2f}× | {spread(wall)} | "
              f"{statistics.median(wall) / walls['plain2']:.2f}× | "
              f"{spread([r.get('wall_minus_eval_s') for r in rs])} | {spread([r['test_accuracy'] for r in rs], 4)} | "
              f"{spread(epochs, 2)} | {spread([r['loadavg_1m'] for r in rs])} |")
    ow = [r for r in runs if r["kind"] == "owtrain"]
    print(f"owtrain set-up (command start → first activation) {spread([r['setup_s'] for r in ow])} s, "
          f"wind-down (target → exit) {spread([r['wind_down_s'] for r in ow])} s")
    for r in cold:
        print(f"cold cache, {r['kind']}: command {r['wall_s']:.1f} s, training {_s(r['train_s'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    step = ap.add_mutually_exclusive_group(required=True)
    step.add_argument("--sweep", action="store_true", help="tune the baselines (writes tta_sweep.json)")
    step.add_argument("--compare", action="store_true", help="the interleaved comparison (needs the sweep)")
    step.add_argument("--sweep-owtrain", action="store_true",
                      help="tune owtrain's lr, momentum and push interval (writes tta_owtrain_sweep.json)")
    step.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kinds", default=",".join(KINDS), help="baselines to sweep")
    ap.add_argument("--owtrain-grid", help="--sweep-owtrain's grid as JSON {option: [values]} (default OWTRAIN_GRID; "
                                           "option names as `owtrain local` spells them, with _ for -)")
    ap.add_argument("--sweep-out", type=Path, default=RESULTS / "tta_owtrain_sweep.json",
                    help="where --sweep-owtrain writes its runs")
    ap.add_argument("--target", type=float, default=0.98, help="validation accuracy to reach")
    ap.add_argument("--eval-every", type=int, default=2560, help="baselines evaluate every this many samples")
    ap.add_argument("--max-epochs", type=float, default=4.0, help="baselines give up after this many epochs")
    ap.add_argument("--sweep-epochs", type=float, default=2.0, help="sweep cells give up after this many epochs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also one run each of owtrain and plain2, empty caches")
    ap.add_argument("--seed", type=int, default=0, help="initial weights and shuffling of the baselines")
    for hidden in ("--threads", "--world", "--rank", "--port"):
        ap.add_argument(hidden, type=int, default=1 if hidden != "--rank" else 0, help=argparse.SUPPRESS)
    ap.add_argument("--configs", help=argparse.SUPPRESS)
    ap.add_argument("--prune", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--then-batches", default="", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
    elif args.sweep:
        unknown = set(args.kinds.split(",")) - set(KINDS)
        if unknown:
            ap.error(f"unknown --kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
        sweep(args)
    elif args.sweep_owtrain:
        sweep_owtrain(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
