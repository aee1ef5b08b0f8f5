"""`owtrain action …`: serve the Docker-action protocol (what the image runs) or run one activation.

The image's CMD is `owtrain action serve --port 8080`; inside a container the server must listen
on every interface, so the Dockerfile sets OWTRAIN_ACTION_HOST=0.0.0.0 while a developer's
machine keeps the loopback default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from actions import DEFAULT_ENTRY
from owtrain.settings import usage_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `action serve` and `action run`."""
    action = subparsers.add_parser(
        "action", help="the OpenWhisk training action (dist-train)",
        description="The training action: serve it as a Docker action, or run one activation here. "
                    "Parameters and result: docs/action.md.")
    sub = action.add_subparsers(dest="action_command", metavar="ACTION_COMMAND")

    serve = sub.add_parser("serve", help="serve the Docker-action protocol (POST /init, POST /run)")
    serve.add_argument("--host", default=os.environ.get("OWTRAIN_ACTION_HOST", "127.0.0.1"),
                       help="address to listen on (default: $OWTRAIN_ACTION_HOST or 127.0.0.1; "
                            "the image sets 0.0.0.0 so the invoker can reach it)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("OWTRAIN_ACTION_PORT") or 8080),
                       help="TCP port (default: $OWTRAIN_ACTION_PORT or 8080, as OpenWhisk expects; owtrain's "
                            "docker invoker sets the variable, its containers share the host's network)")
    serve.add_argument("--entry", default=DEFAULT_ENTRY,
                       help=f"package.module:function called for each /run (default {DEFAULT_ENTRY})")
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser("run", help="run one activation in this process and print its result as JSON",
                         description="Call actions.main.main once with the parameters in a JSON file, without "
                                     "a platform: no deadline unless __OW_DEADLINE (epoch ms) is set. Exit "
                                     "status 1 when the result is an error.")
    run.add_argument("params", help="JSON file with the action parameters ('-' reads stdin)")
    run.set_defaults(func=cmd_run)
    action.set_defaults(func=usage_of(action))  # `owtrain action` alone: usage


def cmd_serve(args: argparse.Namespace) -> int:
    from actions.server import serve

    serve(args.host, args.port, args.entry)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Call `actions.main.main` once, as an activation without a platform would."""
    from actions.main import main

    text = sys.stdin.read() if args.params == "-" else Path(args.params).read_text(encoding="utf-8")
    result = main(json.loads(text))
    print(json.dumps(result, indent=2))
    return 1 if "error" in result else 0
