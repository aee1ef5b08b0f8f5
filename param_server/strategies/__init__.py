"""Aggregation strategies, one per module, chosen by name through the explicit `STRATEGIES`
registry; `parse_strategy("sync:k=4,timeout=5")` builds one from a CLI string.
"""

from __future__ import annotations

import inspect

from param_server.strategies.asynchronous import AsyncStrategy
from param_server.strategies.base import Outcome, Strategy, Update
from param_server.strategies.bounded import BoundedStrategy
from param_server.strategies.sync import SyncStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    "sync": SyncStrategy,
    "async": AsyncStrategy,
    "bounded": BoundedStrategy,
}

__all__ = ["STRATEGIES", "Outcome", "Strategy", "Update", "check_strategy", "parse_strategy"]


def parse_strategy(spec: str) -> Strategy:
    """Build a strategy from `name[:key=value,...]`; values are converted to the parameter's type.

    Raises ValueError naming the valid strategies or parameters.
    """
    name, _, rest = spec.strip().partition(":")
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in params or key == "self":
            valid = [p for p in params if p != "self"]
            raise ValueError(f"bad strategy option {item!r} for {name}; valid options: {valid}")
        kind = type(params[key].default)
        try:
            kwargs[key] = kind(value)
        except ValueError as exc:
            raise ValueError(f"strategy option {key}={value!r} is not a valid {kind.__name__}") from exc
    return cls(**kwargs)


def check_strategy(spec: str) -> None:
    """ConfigError naming `--strategy` when `spec` builds no strategy (every command's fail-fast check)."""
    from owtrain.errors import ConfigError

    try:
        parse_strategy(spec)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--strategy {spec!r}: {exc}") from None
