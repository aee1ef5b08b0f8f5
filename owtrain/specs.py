"""Strategy and compression settings as typed values: parsed once, when a configuration is built.

On command lines, in the action's parameters and in saved run configurations a strategy is one
string, `name[:key=value,...]` (`sync:k=4,timeout=5`), and a compression another (`none`, `fp16`,
`bf16`, `int8`, `topk[:RATIO]`). The configs hold them as `StrategySpec` and `CompressionSpec`;
`str(spec)` writes the string back (`parse(str(spec)) == spec`), so the wire formats stay strings.

This module is pure Python (no torch): the command-line usage checks parse these before any heavy
import. It checks the syntax only where it cannot know more: which strategies exist and which
options each takes is the registry's business (`param_server.strategies.parse_strategy`); the
compressions are few and fixed, so `CompressionSpec` checks them fully.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

# The compressions a user can name, as the error messages list them.
COMPRESSIONS = ("none", "fp16", "bf16", "int8", "topk:RATIO")
COMPRESSION_KINDS = tuple(name.partition(":")[0] for name in COMPRESSIONS)
DEFAULT_TOPK_RATIO = 0.01  # `topk` without a ratio sends the largest 1 % of each tensor's entries


class TextSpec:
    """A setting written as one string (command line, action parameter, saved config) and held parsed.

    `owtrain.settings` derives a string option for a config field of such a type and parses it when
    the config is built; `owtrain.action_params` writes `str(value)` on the wire and parses what it reads.
    """

    @classmethod
    def parse(cls, text: str) -> Self:
        """The value `text` spells; ValueError saying what is wrong with it."""
        raise NotImplementedError


@dataclass(frozen=True)
class StrategySpec(TextSpec):
    """An aggregation strategy by name with its options as written (`sync:k=4` is
    `StrategySpec("sync", (("k", "4"),))`); the registry checks the name and converts the values."""

    name: str
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # What `parse` can produce, so that every spec round-trips through its string.
        if not self.name or ":" in self.name or self.name != self.name.strip():
            raise ValueError(f"bad strategy name {self.name!r}; write name[:key=value,...], e.g. sync:k=4")
        for key, value in self.options:
            if "," in key + value or "=" in key or key != key.lstrip() or value != value.rstrip():
                raise ValueError(f"bad strategy option {key!r}={value!r} for {self.name}; write key=value "
                                 "without commas")

    @classmethod
    def parse(cls, text: str) -> Self:
        """`name[:key=value,...]`; blank items between commas are skipped. ValueError for an item that
        is not `key=value` or an empty name."""
        name, _, rest = text.strip().partition(":")
        if not name.strip():
            raise ValueError(f"no strategy name in {text!r}; write name[:key=value,...], e.g. sync:k=4")
        options = []
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"bad strategy option {item!r} for {name}; write key=value, e.g. sync:k=4")
            options.append((key, value))
        return cls(name, tuple(options))

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{key}={value}" for key, value in self.options)


@dataclass(frozen=True)
class CompressionSpec(TextSpec):
    """An update compression: `kind` one of `COMPRESSION_KINDS`; `ratio` the fraction of entries top-k
    sends (always set for topk, None for the others)."""

    kind: str
    ratio: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in COMPRESSION_KINDS:
            raise ValueError(f"unknown compression {self.kind!r}; choose one of {COMPRESSIONS}")
        if self.kind == "topk":
            ratio = DEFAULT_TOPK_RATIO if self.ratio is None else self.ratio
            object.__setattr__(self, "ratio", topk_ratio(ratio))
        elif self.ratio is not None:
            raise ValueError(f"compression {self.kind} takes no ratio, got {self.ratio!r}")

    @classmethod
    def parse(cls, text: str) -> Self:
        """`none`, `fp16`, `bf16`, `int8` or `topk[:RATIO]` (RATIO in (0, 1], default 0.01). Only top-k
        takes an argument: `fp16:x` is refused (it used to be read as `fp16`, silently)."""
        kind, sep, arg = text.partition(":")
        if kind not in COMPRESSION_KINDS:
            raise ValueError(f"unknown compression {text!r}; choose one of {COMPRESSIONS}")
        if kind != "topk":
            if sep:
                raise ValueError(f"compression {kind} takes no argument, got {text!r}; write {kind}")
            return cls(kind)
        if not arg:
            return cls(kind, DEFAULT_TOPK_RATIO)
        try:
            ratio = float(arg)
        except ValueError:
            raise ValueError(f"top-k ratio must be a number in (0, 1], got {arg!r}") from None
        return cls(kind, ratio)

    def __str__(self) -> str:
        return f"topk:{self.ratio!r}" if self.kind == "topk" else self.kind


def topk_ratio(ratio: object) -> float:
    """`ratio` as a float if top-k can send that fraction of a tensor's entries; ValueError otherwise."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 < ratio <= 1.0:  # NaN too
        raise ValueError(f"top-k ratio must be in (0, 1], got {ratio}")
    return float(ratio)
