"""Peak memory of one action process training a registered model (default: ResNet-18) on a cached shard.

Starts the real `owtrain ps --model M` and `owtrain action serve`, gives the action one activation
(batch B, a push every K batches, grad or delta mode) over an MNIST-shaped shard of N samples already
in its shard cache, and reads the action process's VmHWM (peak RSS) and RssAnon from /proc. The
action's memory limit (`wsk action create --memory`) must hold at least the anonymous part; OpenWhisk's
cgroup reclaims file-backed pages (libtorch's code) before it OOM-kills (docs/benchmarks.md).

    .venv/bin/python bench/scale/action_memory.py [--model resnet18] [--batch 32] [--mode grad]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the action benchmarks' set-up

from action_common import cached_shard, init, machine_note, params, proc_mb, run, start_action, start_ps  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--samples", type=int, default=640)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--update-intv", type=int, default=4)
    ap.add_argument("--mode", default="grad", choices=("grad", "delta"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, sha = cached_shard(folder / "cache", args.samples)
        ps, ps_url = start_ps(folder, args.model)
        try:
            action, url, _ = start_action(folder, folder / "cache")
            try:
                init(url)
                after_init = proc_mb(action.pid), proc_mb(action.pid, "RssAnon")
                result = run(url, params(ps_url, sha, epoch_n=1, batch_sz_train=args.batch,
                                         update_intv=args.update_intv, mode=args.mode))
                peak, anon = proc_mb(action.pid), proc_mb(action.pid, "RssAnon")
            finally:
                action.stop()
        finally:
            ps.stop()
    print(machine_note())
    print(f"model {args.model}, batch {args.batch}, {args.mode} mode, a push every {args.update_intv} batches: "
          f"{result['samples']} samples, {result['pushes']} pushes")
    print(f"after /init: peak RSS {after_init[0]:.0f} MB (anon {after_init[1]:.0f} MB)")
    print(f"after one activation: peak RSS {peak:.0f} MB, anon at the end {anon:.0f} MB")


if __name__ == "__main__":
    main()
