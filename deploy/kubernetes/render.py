#!/usr/bin/env python3
"""Render owtrain's Kubernetes manifests: replace each ${NAME} by its value and print the YAML.

Values come from `--set NAME=VALUE`, else the environment, else params.env beside this file. Only
${NAME} with NAME in [A-Z0-9_] is a placeholder (Kubernetes' own $(VAR) expansion is left alone); a
placeholder with no value is an error that names it, so nothing half-rendered reaches kubectl.
Standard library only, so an operator's machine needs nothing but Python:

    python3 deploy/kubernetes/render.py | kubectl apply -f -
    python3 deploy/kubernetes/render.py secrets.yaml | kubectl apply -f -   # with the secrets in the environment
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")
# applied in this order; secrets.yaml is rendered on its own (its values come from the environment)
MANIFESTS = ("namespace.yaml", "ps.yaml", "bridge.yaml")


def defaults(path: Path = HERE / "params.env") -> dict[str, str]:
    """NAME=VALUE lines of params.env (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            if not sep:
                raise SystemExit(f"{path}: not NAME=VALUE: {line!r}")
            out[name.strip()] = value.strip()
    return out


def render(text: str, values: Mapping[str, str]) -> str:
    """`text` with every ${NAME} replaced; SystemExit listing the names that have no value."""
    missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise SystemExit(f"no value for {', '.join(missing)}: export them or pass --set NAME=VALUE")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help=f"manifests beside this script (default: {' '.join(MANIFESTS)})")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one value")
    args = ap.parse_args(argv)
    values = {**defaults(), **{k: v for k, v in os.environ.items() if PLACEHOLDER.fullmatch("${" + k + "}")}}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set wants NAME=VALUE, got {item!r}")
        values[name] = value
    docs = [render((HERE / name).read_text(encoding="utf-8"), values) for name in (args.files or MANIFESTS)]
    sys.stdout.write("\n---\n".join(d.strip("\n").removeprefix("---\n") for d in docs) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
