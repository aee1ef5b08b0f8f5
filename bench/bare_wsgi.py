"""The bare stack: a WSGI app that only reads the request body, on owtrain's own gevent server.

The reference for the parameter server's push figures (bench/ps_push.py): the same server class
as `owtrain ps` (`owtrain.wsgi.NoDelayWSGIServer`: gevent.pywsgi with TCP_NODELAY), with no Flask,
no decoding and no apply. Whatever the parameter server loses against this is its own cost, not
the stack's.

    .venv/bin/python bench/bare_wsgi.py --port 8091
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from owtrain.wsgi import NoDelayWSGIServer  # noqa: E402

ANSWER = b'{"status": "read"}'


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Read exactly Content-Length bytes in one call, answer a small JSON object."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    NoDelayWSGIServer((args.host, args.port), app, log=None).serve_forever()


if __name__ == "__main__":
    main()
