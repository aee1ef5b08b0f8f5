"""What the update journal costs and buys: push throughput with the journal on vs off, recovery time
after a SIGKILL as a function of the journal's length, and disk use per update.

1. Throughput: two parameter servers (`owtrain ps`, strategy async, rate limits off, a checkpoint
   folder), one with the journal (the default) and one with `--no-journal`, driven in turn by the
   external load generator (bench/loadgen.py: a process per client, keep-alive, closed loop) with a
   LeNet5 gradient body, 1 / 8 / 32 clients, interleaved repeats; the journal's fsync count over its
   record count says what group commit buys.
2. Recovery: a server with checkpoints by count off (`--checkpoint-every 0`, no time-based one
   within the run) takes N pushes (1k, 10k), is SIGKILLed, and is started again on the same folder;
   the time from the restart to its first answer, and the replay time it logs, for each N; the
   journal's bytes per record.

    .venv/bin/python bench/ps_journal.py [--seconds 2] [--repeats 3] [--clients 1,8,32] \\
        [--records 1000,10000] [--out bench/results/ps_journal.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import torch

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from loadgen import Target, measure  # noqa: E402
from ps_push import JOB, SECRET, SEQ_WIDTH, push_body  # noqa: E402

from owtrain.codec import CONTENT_TYPE  # noqa: E402
from owtrain.models import build_model  # noqa: E402
from owtrain.tokens import mint_token  # noqa: E402
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http  # noqa: E402

ENV = {"PYTHONPATH": f"{BENCH}:{ROOT}", "OWTRAIN_LOG": "INFO", "OWTRAIN_JOB_SECRET": SECRET}


def start_ps(folder: Path, name: str, extra: list[str], port: int | None = None) -> tuple[ServiceProcess, int]:
    port = port or free_port()
    argv = [PYTHON, "-m", "commands", "ps", "--model", "lenet5", "--host", "127.0.0.1", "--port", str(port),
            "--job", JOB, "--strategy", "async", "--lr", "1e-6", "--worker-rate", "0", "--global-rate", "0",
            "--checkpoint-dir", str(folder / name), "--checkpoint-interval", "3600", *extra]
    proc = ServiceProcess(argv, folder / f"{name}.log", env=ENV)
    wait_http(f"http://127.0.0.1:{port}/getVersion", timeout=600, proc=proc.proc)
    return proc, port


def status(port: int) -> dict:
    return requests.get(f"http://127.0.0.1:{port}/status", timeout=30).json()


def throughput(folder: Path, body: Path, offset: int, clients: list[int], seconds: float, repeats: int) -> list[dict]:
    servers = {"journal": start_ps(folder, "on", []), "no journal": start_ps(folder, "off", ["--no-journal"])}
    runs: list[dict] = []
    try:
        for repeat in range(repeats):
            for n in clients:
                for name, (proc, port) in servers.items():
                    workers = [f"r{repeat}-n{n}-c{i}" for i in range(n)]
                    headers = [{"Authorization": f"Bearer {mint_token(SECRET, JOB, w, 3600)}",
                                "Content-Type": CONTENT_TYPE} for w in workers]
                    before = status(port).get("journal") or {}
                    out = measure(Target("127.0.0.1", port, "/putGradient", body, headers, offset, SEQ_WIDTH),
                                  n, seconds, warmup=min(1.0, seconds / 2), server_pid=proc.pid)
                    after = status(port).get("journal") or {}
                    records = after.get("records_written", 0) - before.get("records_written", 0)
                    fsyncs = after.get("fsyncs", 0) - before.get("fsyncs", 0)
                    out.update({"server": name, "clients": n, "repeat": repeat,
                                "fsyncs_per_push": fsyncs / records if records else None})
                    runs.append(out)
                    print(f"  {name:10s} clients {n:2d} repeat {repeat}: {out['per_s']:7.1f}/s p99 "
                          f"{out['p99_ms']:6.1f} ms cpu/push {out.get('cpu_ms_per_req') or 0:5.2f} ms "
                          f"fsyncs/push {out['fsyncs_per_push'] if out['fsyncs_per_push'] is not None else '-'} "
                          f"load {out['loadavg_1m']:.1f}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.stop()
    return runs


def recovery(folder: Path, body: Path, offset: int, records: int) -> dict:
    name = f"rec{records}"
    proc, port = start_ps(folder, name, ["--checkpoint-every", "0"])
    burst = 0
    while status(port)["version"] < records:  # load generator bursts (new workers each) until N updates are in
        headers = [{"Authorization": f"Bearer {mint_token(SECRET, JOB, f'b{burst}-w{i}', 3600)}",
                    "Content-Type": CONTENT_TYPE} for i in range(8)]
        measure(Target("127.0.0.1", port, "/putGradient", body, headers, offset, SEQ_WIDTH), 8, 1.0, warmup=0.0)
        burst += 1
    taken = status(port)
    proc.kill()
    proc.proc.wait()
    journal = taken["journal"]
    began = time.monotonic()
    proc2, _ = start_ps(folder, name, ["--checkpoint-every", "0"], port=port)
    ready = time.monotonic() - began
    after = status(port)
    replay = re.findall(r"replayed (\d+) journal record\(s\) from offset \d+ in ([\d.]+) s",
                        (folder / f"{name}.log").read_text())
    proc2.stop()
    result = {"records": journal["durable"], "version_before": taken["version"], "version_after": after["version"],
              "restart_to_first_answer_s": ready, "replay_s": float(replay[-1][1]) if replay else None,
              "replayed": int(replay[-1][0]) if replay else 0, "journal_bytes": journal["disk_bytes"],
              "bytes_per_record": journal["disk_bytes"] / max(1, journal["durable"]),
              "body_bytes": body.stat().st_size, "loadavg_1m": os.getloadavg()[0]}
    print(f"  recovery of {result['replayed']} records: first answer after {ready:.2f} s (replay "
          f"{result['replay_s']} s); version {taken['version']} -> {after['version']}; "
          f"{result['bytes_per_record']:.0f} bytes/record", flush=True)
    return result


def cells(runs: list[dict], key: str, server: str, n: int) -> str:
    values = [r[key] for r in runs if r["server"] == server and r["clients"] == n and r.get(key) is not None]
    if not values:
        return "–"
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}–{max(values):,.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--records", default="1000,10000", help="journal lengths for the recovery figure")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "ps_journal.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clients = [int(c) for c in args.clients.split(",") if c]
    lengths = [int(c) for c in args.records.split(",") if c]
    print(f"load average at the start: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="ps_journal-") as tmp:
        folder = Path(tmp)
        body, offset = push_body(build_model("lenet5"), folder, "lenet5.bin")
        runs = throughput(folder, body, offset, clients, args.seconds, args.repeats) if clients else []
        recoveries = [recovery(folder, body, offset, n) for n in lengths]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs, "recovery": recoveries}, indent=1))
    print("\n| clients | server | push/s | p99 ms | CPU ms/push | fsyncs/push | on/off |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in clients:
        on = statistics.median(r["per_s"] for r in runs if r["server"] == "journal" and r["clients"] == n)
        off = statistics.median(r["per_s"] for r in runs if r["server"] == "no journal" and r["clients"] == n)
        for server in ("journal", "no journal"):
            ratio = f"{on / off:.2f}×" if server == "journal" else ""
            print(f"| {n} | {server} | {cells(runs, 'per_s', server, n)} | {cells(runs, 'p99_ms', server, n)} | "
                  f"{cells(runs, 'cpu_ms_per_req', server, n)} | {cells(runs, 'fsyncs_per_push', server, n)} | "
                  f"{ratio} |")
    print("\n| records replayed | restart to first answer s | replay s | journal bytes/record |")
    print("|---:|---:|---:|---:|")
    for r in recoveries:
        print(f"| {r['replayed']} | {r['restart_to_first_answer_s']:.2f} | {r['replay_s']} | {r['bytes_per_record']:.0f} |")


if __name__ == "__main__":
    main()
