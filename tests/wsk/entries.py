"""Test entry functions for the real action server (`owtrain action serve --entry tests.wsk.entries:main`).

They let the local invoker's tests provoke each outcome OpenWhisk distinguishes (success,
application error, crash, time-out, memory) through the real Docker-action protocol server.
"""

from __future__ import annotations

import os
import sys
import time


def main(args: dict) -> dict:
    """`do` picks the behaviour; everything prints one line on each stream first."""
    print(f"stdout line of {os.environ.get('__OW_ACTIVATION_ID')}")
    print(f"stderr line of {os.environ.get('__OW_ACTIVATION_ID')}", file=sys.stderr)
    do = args.get("do", "echo")
    if do == "sleep":
        time.sleep(float(args["s"]))
    elif do == "hog":
        block = bytearray(int(args["mb"]) * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(2)
    elif do == "fail":
        raise ValueError("bad input")
    elif do == "crash":
        os._exit(3)
    elif do == "big":
        return {"blob": "x" * int(args["n"])}
    return {"echo": args, "pid": os.getpid(), "deadline": os.environ.get("__OW_DEADLINE")}
