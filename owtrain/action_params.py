"""The action's parameters (Contract 3): the one place that knows their wire names and defaults.

The seed's names are kept on the wire (`batch_sz_train`, `epoch_n`, `update_intv`, `apihost`, …).
The writers (the driver, `owtrain local`, `owtrain action-params`) build an `ActionParams` or a
checked set of training parameters and send `to_wire()`; the reader (the action's
`actions.config.ActionConfig`, which adds what comes from the environment) parses with
`from_wire`. Every bad value is a BadRequest naming the parameter, what it got and what it needs,
so the driver's log says what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from owtrain.cursor import Cursor
from owtrain.errors import BadRequest, ConfigError
from owtrain.ps_urls import parse_urls
from owtrain.specs import CompressionSpec, TextSpec

MODES = ("grad", "delta")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
_WIRE = "owtrain.wire"


def _param(default: Any, wire: str | None = None, *, minimum: int | None = None, positive: bool = False,
           choices: tuple[str, ...] | None = None) -> Any:
    """A field that is a training parameter on the wire (named `wire`, or the field's own name)."""
    return field(default=default, metadata={_WIRE: {"name": wire, "minimum": minimum, "positive": positive,
                                                    "choices": choices}})


@dataclass(frozen=True)
class ActionParams:
    """One activation's parameters: identity (required), training parameters (the same for every
    activation of a job, with the seed's defaults) and the cursor to start from."""

    dataset_url: str
    dataset_sha256: str
    apihost: str  # the parameter server's URL, or a sharded one's shard URLs comma-separated, shard 0 first
    ps_token: str
    job: str
    worker: str
    batch_size: int = _param(32, "batch_sz_train", minimum=1)
    epochs: int = _param(1, "epoch_n", minimum=1)
    update_intv: int = _param(1, minimum=1)
    mode: str = _param("grad", choices=MODES)
    lr: float = _param(0.01, positive=True)
    optimizer: str = _param("sgd", choices=OPTIMIZERS)
    momentum: float = _param(0.0)
    lr_decay: float = _param(0.0)  # delta mode: local lr / (1 + lr_decay * epochs this worker trained)
    compression: CompressionSpec = _param(CompressionSpec("none"))  # a string on the wire
    time_budget_s: float | None = _param(None, positive=True)
    seed: int = _param(0, minimum=0)
    device: str = _param("auto", choices=DEVICES)
    threads: int = _param(1, minimum=1)
    trace: bool = _param(False)
    cursor: Cursor | None = None

    def __repr__(self) -> str:
        # The token and the presigned URL's signature are credentials: keep them out of logs.
        return (f"{type(self).__name__}(job={self.job!r}, worker={self.worker!r}, mode={self.mode!r}, "
                f"batch_size={self.batch_size}, update_intv={self.update_intv}, epochs={self.epochs}, "
                f"compression={str(self.compression)!r}, device={self.device!r}, cursor={self.cursor})")

    def to_wire(self) -> dict[str, Any]:
        """The JSON parameters of an invocation (cursor only when there is one)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in REQUIRED}
        for f in _training_fields():
            out[_wire_name(f)] = _on_wire(getattr(self, f.name))
        if self.cursor is not None:
            out["cursor"] = self.cursor.to_json()
        return out

    @staticmethod
    def wire(training: Mapping[str, Any], epochs: int, cursor: Mapping[str, Any] | None = None,
             **identity: Any) -> dict[str, Any]:
        """An invocation's JSON parameters: the job's training parameters (wire names: the known ones
        checked by `check_training` when the job was configured; any others are passed on, for an
        action of the user's own), its identity fields (`REQUIRED`), the epochs and the cursor the
        previous activation returned (passed on as it came: the action checks it)."""
        if missing := sorted(set(REQUIRED) - set(identity)):
            raise TypeError(f"missing identity field(s) {missing}")
        out = {**training, **{name: identity[name] for name in REQUIRED}, _wire_name(_field("epochs")): epochs}
        if cursor is not None:
            out["cursor"] = cursor
        return out

    @classmethod
    def field_values(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        """The field values of wire parameters `args`; BadRequest for a missing or bad one."""
        missing = [name for name in REQUIRED if not args.get(name)]
        if missing:
            raise BadRequest(f"missing required parameter(s): {', '.join(missing)}")
        values: dict[str, Any] = {name: _text(args, name) for name in REQUIRED if name != "apihost"}
        values["apihost"] = _ps_urls(args["apihost"])
        values.update(training_values(args))
        values["cursor"] = Cursor.from_json(args["cursor"]) if args.get("cursor") is not None else None
        return values


REQUIRED = ("dataset_url", "dataset_sha256", "apihost", "ps_token", "job", "worker")


def _training_fields() -> list[Field[Any]]:
    return [f for f in fields(ActionParams) if _WIRE in f.metadata]


def _field(name: str) -> Field[Any]:
    return next(f for f in fields(ActionParams) if f.name == name)


def _wire_name(f: Field[Any]) -> str:
    return f.metadata[_WIRE]["name"] or f.name


TRAINING = tuple(_wire_name(f) for f in _training_fields())
KNOWN = frozenset(REQUIRED + TRAINING + ("cursor",))


def training_values(args: Mapping[str, Any]) -> dict[str, Any]:
    """The training parameters' field values from wire parameters (absent ones: the defaults above)."""
    out: dict[str, Any] = {}
    for f in _training_fields():
        name, meta = _wire_name(f), f.metadata[_WIRE]
        value = args.get(name, f.default)
        if f.default is not MISSING and value is f.default:
            out[f.name] = value
            continue
        out[f.name] = _checked(name, value, f.default, meta)
    if out["lr_decay"] > 0 and out["mode"] != "delta":
        raise BadRequest("parameter 'lr_decay' decays delta mode's local steps; in mode 'grad' the server's "
                         "optimiser steps: drop lr_decay or use mode 'delta'")
    return out


def training_wire(**values: Any) -> dict[str, Any]:
    """Training parameters given by field name (`batch_size=64`, …) under their wire names, checked."""
    by_name = {f.name: f for f in _training_fields()}
    if unknown := sorted(set(values) - set(by_name)):
        raise TypeError(f"not training parameters: {unknown}")
    wire = {_wire_name(by_name[name]): _on_wire(value) for name, value in values.items()}
    training_values(wire)
    return wire


def check_training(params: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """`params` (wire names) if each known training parameter among them is valid; BadRequest naming the
    first that is not. `strict`: unknown names are refused too (for owtrain's own action)."""
    if strict and (unknown := sorted(set(params) - set(TRAINING))):
        raise BadRequest(f"{', '.join(unknown)}: not a training parameter; choose from {', '.join(TRAINING)}")
    training_values(params)
    return dict(params)


def parse_pairs(pairs: list[str]) -> tuple[tuple[str, object], ...]:
    """`-p KEY VALUE` pairs as `wsk` reads them: VALUE is JSON when it parses, else a string."""
    out: list[tuple[str, object]] = []
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        try:
            out.append((key, json.loads(value)))
        except ValueError:
            out.append((key, value))
    return tuple(out)


def unknown(args: Mapping[str, Any]) -> list[str]:
    """Parameter names the action does not know (typos, or the platform's `__ow_*` extras)."""
    return sorted(k for k in args if k not in KNOWN and not k.startswith("__ow"))


def _on_wire(value: Any) -> Any:
    """A field value as the wire carries it: a spec as its string, everything else as it is."""
    return str(value) if isinstance(value, TextSpec) else value


def _bad(name: str, value: Any, need: str) -> BadRequest:
    return BadRequest(f"parameter {name!r} must be {need}, got {value!r} ({type(value).__name__})")


def _text(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(name, value, "a non-empty string")
    return value


def _ps_urls(value: Any) -> str:
    """`apihost`: one URL, comma-separated shard URLs or a JSON list of them, as one comma-separated string."""
    try:
        return ",".join(parse_urls(value))
    except ConfigError:
        raise _bad("apihost", value, "a URL or a list of shard URLs (shard 0 first)") from None


def _checked(name: str, value: Any, default: Any, meta: dict[str, Any]) -> Any:
    """One training parameter, typed by its default (bool, int, float, str or a spec parsed from a string)."""
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise _bad(name, value, f"one of {', '.join(meta['choices'])}")
        return value
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        minimum = meta["minimum"]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _bad(name, value, f"an integer >= {minimum}")
        return value
    if isinstance(default, str | TextSpec):
        if not isinstance(value, str) or not value:
            raise _bad(name, value, "a non-empty string")
        if isinstance(default, TextSpec):
            try:
                return type(default).parse(value)
            except ValueError as exc:
                raise BadRequest(f"parameter {name!r}: {exc}") from None
        return value
    if value is None and default is None:
        return None
    positive = meta["positive"]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    if not ok or (positive and value <= 0):
        raise _bad(name, value, "a positive number" if positive else "a number >= 0")
    return float(value)
