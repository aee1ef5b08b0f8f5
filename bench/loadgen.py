"""An external HTTP load generator: one process per client, one keep-alive connection each, closed loop.

Each client process opens one TCP connection (TCP_NODELAY), sends `POST path` with the same body
again and again, waiting for each answer before the next request (closed loop), and records the
latency of every request that started and ended inside the measuring window. The requests are
written with two `sendall` calls (head, then the body from memory, no copy) and the answers read by
a minimal HTTP/1.1 reader (Content-Length only), so a client costs little CPU next to any server.
The processes start, connect and say "ready"; the parent then gives every one the same warm-up
and measuring window. The server's CPU (utime + stime from /proc/<pid>/stat) over the window and
its peak RSS (VmHWM, reset through /proc/<pid>/clear_refs before each window) come with the result.

A push body must differ per request (the parameter server applies each (worker, seq) once): the
body can carry a fixed-width decimal field at `seq_offset` (e.g. in a safetensors header) that
each client overwrites with its request counter, and each client has its own headers (its token).

Used by bench/ps_push.py; on its own (e.g. against any server):

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8090/sink --body-bytes 248000 \\
        --clients 8 --seconds 3 [--server-pid PID]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    """What every client sends: `POST path` to host:port with the bytes of `body_file`.

    `headers[i]` are client i's extra headers (the last entry is reused when there are fewer);
    `seq_offset`/`seq_width` locate a decimal field of the body each request overwrites."""

    host: str
    port: int
    path: str
    body_file: Path
    headers: list[dict[str, str]] = field(default_factory=lambda: [{}])
    seq_offset: int | None = None
    seq_width: int = 0


def measure(target: Target, clients: int, seconds: float, warmup: float = 0.5,
            server_pid: int | None = None) -> dict:
    """Run `clients` client processes against `target`; return throughput, latency and server cost.

    Keys: n (requests completed in the window), per_s, mb_s, p50_ms, p99_ms, errors, and with a
    `server_pid` also cpu_ms_per_req (server CPU over the window / n), cpu_cores and peak_rss_mb.
    """
    procs = [_spawn(target, i) for i in range(clients)]
    try:
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                raise RuntimeError(f"load client did not start: {line!r} {p.stderr.read()}")  # type: ignore[union-attr]
        t_go = time.time() + 0.05
        t_start, t_end = t_go + warmup, t_go + warmup + seconds
        if server_pid is not None:
            _reset_peak_rss(server_pid)
        for p in procs:
            p.stdin.write(f"{t_start} {t_end}\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        cpu0 = wall0 = None
        if server_pid is not None:
            time.sleep(max(0.0, t_start - time.time()))
            cpu0, wall0 = _cpu_s(server_pid), time.time()
        outs = [json.loads(p.communicate(timeout=seconds + warmup + 120)[0]) for p in procs]
        cpu1, wall1 = (_cpu_s(server_pid), time.time()) if server_pid is not None else (None, None)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    latencies = sorted(x for o in outs for x in o["latencies"])
    errors = sum(o["errors"] for o in outs)
    n = len(latencies)
    size = target.body_file.stat().st_size
    result = {"clients": clients, "n": n, "errors": errors, "per_s": n / seconds, "mb_s": n * size / seconds / 1e6,
              "p50_ms": 1000 * statistics.median(latencies) if n else None,
              "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))] if n else None,
              "first_error": next((o["first_error"] for o in outs if o["first_error"]), None),
              "loadavg_1m": os.getloadavg()[0]}
    if server_pid is not None and cpu0 is not None and cpu1 is not None and wall0 is not None and wall1 is not None:
        result["cpu_ms_per_req"] = 1000 * (cpu1 - cpu0) / n if n else None
        result["cpu_cores"] = (cpu1 - cpu0) / (wall1 - wall0)
        result["peak_rss_mb"] = _peak_rss_mb(server_pid)
    return result


def _spawn(target: Target, i: int) -> subprocess.Popen:
    headers = target.headers[min(i, len(target.headers) - 1)]
    argv = [sys.executable, str(Path(__file__).resolve()), "--client", target.host, str(target.port), target.path,
            str(target.body_file), json.dumps(headers), str(-1 if target.seq_offset is None else target.seq_offset),
            str(target.seq_width)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cpu_s(pid: int) -> float:
    """utime + stime of `pid` (all its threads) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def _reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs), so the next peak is this window's."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # not ours to reset: the peak then covers the process's whole life


def _peak_rss_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# -- the client process ------------------------------------------------------------------------------


def client(host: str, port: int, path: str, body_file: str, headers: dict[str, str], seq_offset: int,
           seq_width: int) -> None:
    """One closed-loop client: connect, say ready, wait for the window, then POST until it ends."""
    body = bytearray(Path(body_file).read_bytes())
    view = memoryview(body)
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode()
    reader = _Reader(sock)
    print("ready", flush=True)
    t_start, t_end = (float(x) for x in sys.stdin.readline().split())
    latencies: list[float] = []
    errors, first_error, seq = 0, None, 0
    while True:
        now = time.time()
        if now >= t_end:
            break
        if seq_offset >= 0:
            body[seq_offset:seq_offset + seq_width] = str(seq).rjust(seq_width, "0").encode()
        seq += 1
        t0 = time.perf_counter()
        sock.sendall(head)
        sock.sendall(view)
        status, answer = reader.response()
        dt = time.perf_counter() - t0
        if status != 200:
            errors += 1
            first_error = first_error or f"HTTP {status}: {answer[:200]!r}"
        elif now >= t_start and time.time() <= t_end:
            latencies.append(dt)
    sock.close()
    print(json.dumps({"latencies": latencies, "errors": errors, "first_error": first_error}), flush=True)


class _Reader:
    """Reads HTTP/1.1 responses with a Content-Length from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                       if k.strip().lower() == "content-length"), None)
        if length is None:
            raise RuntimeError(f"answer without Content-Length: {head[:300]!r}")
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def _more(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        host, port, path, body_file, headers, seq_offset, seq_width = sys.argv[2:9]
        client(host, int(port), path, body_file, json.loads(headers), int(seq_offset), int(seq_width))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="http://host:port/path to POST to")
    ap.add_argument("--body-bytes", type=int, default=248_000, help="size of the (zero) body")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring window")
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds of requests before the window")
    ap.add_argument("--server-pid", type=int, help="also report this process's CPU per request and peak RSS")
    args = ap.parse_args()
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        ap.error("--url must be http://host:port/path (no TLS: this measures the server, not the cipher)")
    with tempfile.NamedTemporaryFile(prefix="loadgen-", suffix=".bin") as f:
        f.write(bytes(args.body_bytes))
        f.flush()
        target = Target(url.hostname, url.port or 80, url.path or "/", Path(f.name))
        print(json.dumps(measure(target, args.clients, args.seconds, args.warmup, args.server_pid), indent=2))


if __name__ == "__main__":
    main()
