"""The `owtrain` command: one entry point whose sub-commands live beside the code they run.

Each part registers its own sub-commands (`param_server.cli`, `dataset_packer.cli`, …) so the CLI
grows with the parts and no module here knows their options. Heavy imports (torch) happen inside
the command functions, so `owtrain --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from owtrain import __version__
from owtrain.errors import ConfigError
from owtrain.log import setup_logging

# Modules that define `register(subparsers)`; each adds sub-commands with `func` set.
PROVIDERS = (
    "param_server.cli",
    "dataset_packer.cli",
    "actions.cli",
    "wsk.cli",
    "localrun.cli",
    "serving.cli",
)

log = logging.getLogger("owtrain")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available part's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="owtrain",
        description="Serverless data-parallel training of PyTorch models on Apache OpenWhisk.",
    )
    parser.add_argument("--version", action="version", version=f"owtrain {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in PROVIDERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name and not name.startswith(f"{exc.name}."):
                raise  # the part is there but something it imports is not: a real error
            continue  # the part is not installed (the action image ships only the action's parts)
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # a usage error found while checking options: argparse's form, no traceback
        print(f"owtrain {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
