"""Benchmark: fetch + pack + upload + presign of MNIST into 6, 12 and 60 shards, and download +
verify + ready-to-train for one shard, cold vs cached, against a real Swift S3 server.

Ratios are against the 6-shard run and the cold download of the same script run. It starts its
own Swift (scripts/swift.sh, free ports, temp dir) unless --endpoint is given.

    .venv/bin/python bench/pack_upload.py [--shards 6 12 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_swift(folder: Path) -> tuple[str, dict[str, str]]:
    env = {f"SWIFT_{n}_PORT": str(free_port()) for n in ("PROXY", "ACCOUNT", "CONTAINER", "OBJECT", "MEMCACHED")}
    subprocess.run(["bash", str(ROOT / "scripts" / "swift.sh"), "start", str(folder)], env={**os.environ, **env},
                   check=True, capture_output=True)
    return f"http://127.0.0.1:{env['SWIFT_PROXY_PORT']}", env


def pipeline(shards: int, endpoint: str, access: str, secret: str, work: Path) -> dict[str, float]:
    """Seconds per stage for one shard count, starting from an empty dataset cache."""
    from dataset_packer.fetch import fetch_dataset
    from dataset_packer.pack import pack
    from dataset_packer.presign import presign_all
    from dataset_packer.sources import load_source
    from dataset_packer.stores import open_store
    from dataset_packer.upload import upload_dir
    from owtrain.s3 import S3Settings

    times = {}
    t = time.perf_counter()
    fetch_dataset("mnist", work / "data", offline=True)
    times["fetch"] = time.perf_counter() - t
    t = time.perf_counter()
    pack(load_source("mnist", work / "data", offline=True), shards, work / "shards", stratified=True)
    times["pack"] = time.perf_counter() - t
    store = open_store("s3", S3Settings(endpoint, f"bench-{shards}", access, secret))
    t = time.perf_counter()
    upload_dir(store, work / "shards", progress=False)
    times["upload"] = time.perf_counter() - t
    t = time.perf_counter()
    presign_all(store, timedelta(minutes=30))
    times["presign"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    return times


def download(endpoint: str, access: str, secret: str, bucket: str, repeats: int, work: Path) -> dict[str, float]:
    """Median seconds for fetch_shard + read_shard + to_tensors of the first train shard, cold and cached."""
    from dataset_packer.download import fetch_shard
    from dataset_packer.presign import presign_all
    from dataset_packer.shard import read_shard
    from dataset_packer.stores import open_store
    from owtrain.s3 import S3Settings

    entry = presign_all(open_store("s3", S3Settings(endpoint, bucket, access, secret)), timedelta(minutes=30))[0]

    def ready(cache: Path) -> tuple[float, float]:
        """(seconds in fetch_shard, seconds in read_shard + to_tensors)."""
        t0 = time.perf_counter()
        path = fetch_shard(entry["url"], entry["sha256"], cache)
        t1 = time.perf_counter()
        read_shard(path).to_tensors()
        return t1 - t0, time.perf_counter() - t1

    cold = [ready(Path(tempfile.mkdtemp(dir=work))) for _ in range(repeats)]
    warm_cache = Path(tempfile.mkdtemp(dir=work))
    ready(warm_cache)
    cached = [ready(warm_cache) for _ in range(repeats)]
    return {"cold_fetch": statistics.median(f for f, _ in cold), "cached_fetch": statistics.median(f for f, _ in cached),
            "cold": statistics.median(f + r for f, r in cold), "cached": statistics.median(f + r for f, r in cached),
            "bytes": entry["size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="+", default=[6, 12, 60], help="shard counts (first = baseline)")
    parser.add_argument("--repeats", type=int, default=5, help="download repetitions (median reported)")
    parser.add_argument("--endpoint", help="use this S3 endpoint instead of starting Swift")
    parser.add_argument("--access-key", default="test:tester", help="S3 access key (default: Swift's tempauth)")
    parser.add_argument("--secret-key", default="testing", help="S3 secret key (default: Swift's tempauth)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="owtrain-bench-") as tmp:
        work = Path(tmp)
        swift_dir = work / "swift"
        endpoint = args.endpoint or start_swift(swift_dir)[0]
        try:
            rows = {n: pipeline(n, endpoint, args.access_key, args.secret_key, work / f"run{n}") for n in args.shards}
            dl = download(endpoint, args.access_key, args.secret_key, f"bench-{args.shards[0]}", args.repeats, work)
        finally:
            if not args.endpoint:
                subprocess.run(["bash", str(ROOT / "scripts" / "swift.sh"), "stop", str(swift_dir)], check=False)
    base = rows[args.shards[0]]["total"]
    print(f"{'shards':>6} {'fetch s':>8} {'pack s':>7} {'upload s':>9} {'presign s':>10} {'total s':>8} {'vs base':>8}")
    for n, r in rows.items():
        print(f"{n:>6} {r['fetch']:8.2f} {r['pack']:7.2f} {r['upload']:9.2f} {r['presign']:10.2f} "
              f"{r['total']:8.2f} {r['total'] / base:7.2f}x")
    print(f"one shard ({dl['bytes']:,} bytes, {args.shards[0]}-way split), median of {args.repeats}:")
    print(f"  fetch_shard (download+sha256)     cold {dl['cold_fetch'] * 1000:6.0f} ms  cached "
          f"{dl['cached_fetch'] * 1000:6.0f} ms  cached/cold {dl['cached_fetch'] / dl['cold_fetch']:.2f}x")
    print(f"  + read_shard + to_tensors (ready) cold {dl['cold'] * 1000:6.0f} ms  cached "
          f"{dl['cached'] * 1000:6.0f} ms  cached/cold {dl['cached'] / dl['cold']:.2f}x")


if __name__ == "__main__":
    main()
