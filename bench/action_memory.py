"""Peak RSS of one action activation (LeNet5, batch 32) against plain PyTorch training.

The action server process (`owtrain action serve`, what the image runs) is started, initialised
and given one activation over a cached MNIST-shaped shard; its VmHWM is read from /proc. The
baselines are fresh processes: a bare `import torch` (the floor of any torch worker) and plain
PyTorch training of the same model on the same shard. Goal: ≤ 256 MB (OpenWhisk's default).

    .venv/bin/python bench/action_memory.py [--samples 6000]
"""

from __future__ import annotations

import argparse
import subprocess

from action_common import PYTHON, ROOT, machine_note, params, proc_mb, run, services

CHILD = """
import sys
sys.path.insert(0, {bench!r})
import torch
{body}
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
print(*(int(status[k].split()[0]) / 1024 for k in ('VmHWM', 'RssAnon', 'RssFile')))
"""


def child_mb(body: str) -> tuple[float, ...]:
    """(peak RSS, anonymous RSS, file RSS) in MB of a fresh Python process that runs `body`."""
    code = CHILD.format(bench=str(ROOT / "bench"), body=body)
    out = subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return tuple(float(v) for v in out.stdout.split()[-3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=6000, help="samples in the shard (MNIST/10 = 6000)")
    args = parser.parse_args()
    fields = ("VmHWM", "RssAnon", "RssFile")
    with services(args.samples) as sv:
        after_init = tuple(proc_mb(sv.action.pid, f) for f in fields)
        result = run(sv.url, params(sv.ps_url, sv.sha256, epoch_n=1))
        after_run = tuple(proc_mb(sv.action.pid, f) for f in fields)
        torch_only = child_mb("")
        plain = child_mb(f"from action_plain import plain_train\nplain_train({str(sv.shard)!r})")
    print(machine_note())
    print(f"shard: {args.samples} samples (1x28x28 uint8 -> {args.samples * 784 * 4 / 2**20:.1f} MB as float32), "
          f"LeNet5, batch 32, grad mode, 1 thread; {result['samples']} samples, {result['pushes']} pushes")
    print(f"{'process':<38}{'peak RSS MB':>12}{'vs plain':>10}{'anon MB':>9}{'file MB':>9}  (anon/file: at the end)")
    rows = [("python + import torch", torch_only), ("plain PyTorch training (baseline)", plain),
            ("action server after /init", after_init), ("action server after one activation", after_run)]
    for name, (peak, anon, file) in rows:
        print(f"{name:<38}{peak:>12.1f}{peak / plain[0]:>9.2f}x{anon:>9.1f}{file:>9.1f}")
    print(f"goal <= 256 MB peak RSS: {'met' if after_run[0] <= 256 else 'NOT met'}")


if __name__ == "__main__":
    main()
