"""Samples per second of one action worker vs plain single-process PyTorch, same shard, same run.

The baseline trains LeNet5 (batch 32, one thread) on the cached shard in this process with a
plain loop. The worker is a warm action server (one torch thread) training one epoch of the same
shard against a real parameter server, timed from the /run request to its reply, so it pays for
registration, pulls, pushes and the server's own work; its rate counts only acknowledged samples.
Baseline and worker runs alternate, and the best of `--repeat` of each is kept. Goal: ≥ 0.9×.

    .venv/bin/python bench/action_throughput.py [--repeat 2] [--samples 6000]
"""

from __future__ import annotations

import argparse
import time

from action_common import machine_note, params, run, services
from action_plain import plain_train

CONFIGS = {  # label → action parameters on top of batch 32, one epoch
    "grad, push every batch": {"mode": "grad", "update_intv": 1},
    "grad, push every 8 batches": {"mode": "grad", "update_intv": 8},
    "grad, push every 32 batches": {"mode": "grad", "update_intv": 32},
    "delta (local SGD), push every 8": {"mode": "delta", "update_intv": 8, "lr": 0.05},
    "delta, push every 8, fp16": {"mode": "delta", "update_intv": 8, "lr": 0.05, "compression": "fp16"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each (best kept)")
    parser.add_argument("--samples", type=int, default=6000, help="samples in the shard")
    args = parser.parse_args()
    plain_rates: list[float] = []
    worker_rates: dict[str, list[float]] = {label: [] for label in CONFIGS}
    with services(args.samples) as sv:
        run(sv.url, params(sv.ps_url, sv.sha256, worker="warmup", epoch_n=1, time_budget_s=1.0))  # shard, model
        for r in range(args.repeat):
            samples, seconds = plain_train(sv.shard)
            plain_rates.append(samples / seconds)
            for i, (label, extra) in enumerate(CONFIGS.items()):
                t = time.perf_counter()
                result = run(sv.url, params(sv.ps_url, sv.sha256, worker=f"w{r}-{i}", epoch_n=1, **extra))
                worker_rates[label].append(result["samples"] / (time.perf_counter() - t))
    base = max(plain_rates)
    print(machine_note())
    print(f"LeNet5, batch 32, 1 torch thread, {args.samples}-sample shard, one epoch; best of {args.repeat}")
    print(f"{'run':<36}{'samples/s':>10}{'vs plain':>10}")
    print(f"{'plain PyTorch loop (baseline)':<36}{base:>10.0f}{1.0:>9.2f}x")
    for label, rates in worker_rates.items():
        print(f"{'action: ' + label:<36}{max(rates):>10.0f}{max(rates) / base:>9.2f}x")


if __name__ == "__main__":
    main()
