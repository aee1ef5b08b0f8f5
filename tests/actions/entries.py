"""Entry functions for protocol tests: they show what the server hands an action, nothing more.

The server runs them through its `--entry` option, the same hook that runs `actions.main:main`.
"""

from __future__ import annotations

import os
import sys
import time


def echo(args: dict) -> object:
    """Return the parameters and the `__OW_*`/`INIT_*` environment, or misbehave on request."""
    print(f"stdout line for {args.get('tag')}")
    print(f"stderr line for {args.get('tag')}", file=sys.stderr)
    if args.get("raise"):
        raise ValueError(f"asked to fail: {args['raise']}")
    if "return" in args:
        return args["return"]
    env = {k: v for k, v in os.environ.items() if k.startswith(("__OW_", "INIT_"))}
    return {"args": args, "env": env}


def sleepy(args: dict) -> dict:
    """Sleep `seconds` and report when this activation ran (to show runs never overlap)."""
    start = time.time()
    time.sleep(float(args.get("seconds", 0.3)))
    return {"start": start, "end": time.time()}
