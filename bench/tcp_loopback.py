"""Raw TCP loopback: a plain socket server that reads each request's N bytes and answers.

The floor under every HTTP figure of bench/ps_push.py: a thread per connection reads the request
head up to its blank line, takes N from its Content-Length, reads N bytes into one preallocated
buffer (`recv_into`, no copies) and sends a fixed 2-byte HTTP answer. No HTTP library, no WSGI, no
event loop: the same load generator speaks to it, and what it reaches is what the kernel's
loopback and one Python `recv_into` loop allow.

    .venv/bin/python bench/tcp_loopback.py --port 8092
"""

from __future__ import annotations

import argparse
import socket
import threading

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def serve_connection(conn: socket.socket) -> None:
    """Answer every request on `conn` until the client closes it."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    pending = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in pending:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                pending += chunk
            head, rest = pending.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            if length > len(buf):
                buf = bytearray(length)
                view = memoryview(buf)
            got = min(len(rest), length)
            view[:got] = rest[:got]
            pending = rest[got:]
            while got < length:
                n = conn.recv_into(view[got:length])
                if n == 0:
                    return
                got += n
            conn.sendall(ANSWER)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    listener = socket.create_server((args.host, args.port), backlog=128)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
