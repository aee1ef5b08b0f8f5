"""`python -m param_server …` is `owtrain ps …` without loading the other parts' sub-commands, so the
server (and the tests that start it) do not depend on every other part importing cleanly."""

from __future__ import annotations

import argparse
import sys

from owtrain.log import setup_logging
from param_server.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m param_server")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ps", *(sys.argv[1:] if argv is None else argv)])
    setup_logging()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
