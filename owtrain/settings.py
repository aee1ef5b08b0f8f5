"""Settings declared once: a config dataclass field carries its default and help, and the command line is
derived from it.

A field declared with `setting(default, "help", flag="--name", ...)` becomes one command-line option
whose default is the field's default (shown in `--help` in the option's unit), and `values(Config, args)`
turns the parsed options back into the field values. So a default lives in exactly one place, the
dataclass, and `tests/test_settings_once.py` fails if a command-line module declares one again.

Options the flag spells differently from the field:
- `scale`: the option is in a larger unit than the field (`--keep-versions-mb` for bytes): the
  field is `option × scale`, rounded for int fields;
- `negate`: a flag that turns a field that is on by default off (`--no-journal` for `journal=True`);
- a `bool` field that is off by default is a plain `store_true` flag;
- a field of an `owtrain.specs.TextSpec` type (`StrategySpec`, `CompressionSpec`) is a string option
  (its `--help` default is `str(default)`) that `values` parses; text it refuses is a ConfigError
  naming the option (`--strategy 'sync:k': bad strategy option ...`), a usage error.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, Field, field, fields
from pathlib import Path
from typing import Any

from owtrain.errors import ConfigError
from owtrain.specs import TextSpec

_META = "owtrain.setting"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: …)" only where there is a default worth reading (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == [] or action.default == "":
            return action.help
        return super()._get_help_string(action)


def setting(default: Any, help: str, *, flag: str | None = None, scale: float | None = None,
            negate: bool = False, choices: Sequence[str] | None = None, metavar: Any = None,
            nargs: int | None = None) -> Any:
    """A dataclass field that is also a command-line option (see the module docstring)."""
    meta = {"help": help, "flag": flag, "scale": scale, "negate": negate, "choices": choices,
            "metavar": metavar, "nargs": nargs}
    return field(default=default, metadata={_META: meta})


def options(cls: type) -> list[Field[Any]]:
    """The fields of `cls` declared with `setting`, in declaration order."""
    return [f for f in fields(cls) if _META in f.metadata]


def flag_of(f: Field[Any], prefix: str = "") -> str:
    """The option's flag: declared, or `--NAME` (`--PREFIX-NAME` for a group of options of another config)."""
    meta = f.metadata[_META]
    if meta["flag"]:
        return str(meta["flag"])
    return "--" + (prefix + "-" if prefix else "") + f.name.replace("_", "-")


def dest_of(f: Field[Any], prefix: str = "") -> str:
    return flag_of(f, prefix).lstrip("-").replace("-", "_")


def add_options(parser: argparse._ActionsContainer, cls: type, skip: Iterable[str] = (), prefix: str = "") -> None:
    """Add one option per `setting` field of `cls` (except the field names in `skip`)."""
    hints = typing.get_type_hints(cls)
    skipped = set(skip)
    for f in options(cls):
        if f.name in skipped:
            continue
        meta = f.metadata[_META]
        kind, _ = _kind(hints[f.name])
        shown = f.default / meta["scale"] if meta["scale"] and f.default is not None else f.default
        kw: dict[str, Any] = {"dest": dest_of(f, prefix), "help": meta["help"]}
        if kind is bool:
            if meta["negate"] or f.default is not True:
                kw["action"] = "store_true"
            else:
                kw["action"] = argparse.BooleanOptionalAction
                kw["default"] = True
        elif issubclass(kind, TextSpec):
            kw["default"] = None if f.default is None else str(f.default)
        else:
            kw["type"] = float if meta["scale"] else kind
            kw["default"] = shown
            for name in ("choices", "metavar", "nargs"):
                if meta[name] is not None:
                    kw[name] = meta[name]
        parser.add_argument(flag_of(f, prefix), **kw)


def values(cls: type, args: argparse.Namespace, skip: Iterable[str] = (), prefix: str = "") -> dict[str, Any]:
    """The field values of the `setting` fields of `cls` from parsed options (as `add_options` added them)."""
    hints = typing.get_type_hints(cls)
    skipped = set(skip)
    out: dict[str, Any] = {}
    for f in options(cls):
        if f.name in skipped:
            continue
        meta = f.metadata[_META]
        value = getattr(args, dest_of(f, prefix))
        kind, _ = _kind(hints[f.name])
        if kind is bool and meta["negate"]:
            value = not value
        elif issubclass(kind, TextSpec) and value is not None:
            try:
                value = kind.parse(value)
            except ValueError as exc:
                raise ConfigError(f"{flag_of(f, prefix)} {value!r}: {exc}") from None
        elif meta["scale"] and value is not None:
            value = value * meta["scale"]
            if kind is int:
                value = int(round(value))
        elif isinstance(value, list):
            value = tuple(value)
        out[f.name] = value
    return out


def usage_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The `func` of a command group run without its subcommand (`owtrain bridge`): its usage, exit 2."""

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return usage


def default_of(cls: type, name: str) -> Any:
    """The declared default of field `name` of `cls` (for help texts and derived defaults)."""
    f = next(f for f in fields(cls) if f.name == name)
    if f.default is MISSING:
        raise KeyError(f"{cls.__name__}.{name} has no default")
    return f.default


def _kind(hint: Any) -> tuple[type, bool]:
    """The option's value type for a field's type hint: (int|float|str|Path|bool or a TextSpec type, whether
    None is allowed)."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0])[0], True
    if origin is tuple:
        return _kind(args[0])[0], False
    if hint in (int, float, str, bool, Path) or (isinstance(hint, type) and issubclass(hint, TextSpec)):
        return hint, False
    raise TypeError(f"no command-line type for {hint!r}")
