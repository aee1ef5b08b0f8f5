"""Aggregation strategies, one per module, chosen by name through the explicit `STRATEGIES`
registry; `parse_strategy(StrategySpec.parse("sync:k=4,timeout=5"))` builds one from a config's
strategy. The registry is what knows the names and each strategy's options (`owtrain.specs` only
checks the syntax).
"""

from __future__ import annotations

import inspect

from owtrain.specs import StrategySpec
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


def parse_strategy(spec: StrategySpec | str) -> Strategy:
    """Build the strategy `spec` names (a string is parsed first, `name[:key=value,...]`); the option
    values are converted to the parameter's type.

    Raises ValueError naming the valid strategies or parameters.
    """
    if isinstance(spec, str):
        spec = StrategySpec.parse(spec)
    cls = STRATEGIES.get(spec.name)
    if cls is None:
        raise ValueError(f"unknown strategy {spec.name!r}; choose one of {sorted(STRATEGIES)}")
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, object] = {}
    for key, value in spec.options:
        if key not in params or key == "self":
            valid = [p for p in params if p != "self"]
            item = f"{key}={value}"
            raise ValueError(f"bad strategy option {item!r} for {spec.name}; valid options: {valid}")
        kind = type(params[key].default)
        try:
            kwargs[key] = kind(value)
        except ValueError as exc:
            raise ValueError(f"strategy option {key}={value!r} is not a valid {kind.__name__}") from exc
    return cls(**kwargs)


def check_strategy(spec: StrategySpec | str) -> None:
    """ConfigError naming `--strategy` when `spec` builds no strategy (every command's fail-fast check)."""
    from owtrain.errors import ConfigError

    try:
        parse_strategy(spec)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--strategy {str(spec)!r}: {exc}") from None
