"""Invoker backends, one module each, chosen by name (`--invoker local|docker|openwhisk`).

`INVOKERS` maps the name to a factory taking the merged settings; an unknown name is an error
that lists the valid ones. Backends are imported lazily so that choosing one never imports the
other's dependencies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from owtrain.errors import ConfigError
from wsk.config import DockerConfig, LocalInvokerConfig, WskConfig
from wsk.invoker.base import Invoker


@dataclass(frozen=True)
class InvokerSettings:
    """What any backend may need; each factory reads its own part."""

    local: LocalInvokerConfig | None = None
    wsk: WskConfig | None = None
    docker: DockerConfig | None = None


def _local(settings: InvokerSettings, env: Mapping[str, str]) -> Invoker:
    from wsk.invoker.local import LocalInvoker

    if settings.local is None:
        raise ConfigError("the local invoker needs its settings (activation database path, limits)")
    return LocalInvoker(settings.local, env)


def _docker(settings: InvokerSettings, env: Mapping[str, str]) -> Invoker:
    from wsk.invoker.docker import DockerInvoker

    if settings.local is None or settings.docker is None:
        raise ConfigError("the docker invoker needs its limits and an image (--invoker docker --image TAG)")
    return DockerInvoker(settings.local, settings.docker, env)


def _openwhisk(settings: InvokerSettings, env: Mapping[str, str]) -> Invoker:
    from wsk.client import OpenWhiskClient
    from wsk.invoker.openwhisk import OpenWhiskInvoker

    if settings.wsk is None:
        raise ConfigError("the openwhisk invoker needs APIHOST and AUTH (~/.wskprops or --apihost/--auth)")
    return OpenWhiskInvoker(OpenWhiskClient(settings.wsk))


INVOKERS: dict[str, Callable[[InvokerSettings, Mapping[str, str]], Invoker]] = {
    "local": _local,
    "docker": _docker,
    "openwhisk": _openwhisk,
}


def make_invoker(name: str, settings: InvokerSettings, env: Mapping[str, str]) -> Invoker:
    """The backend called `name`; ConfigError listing the valid names for anything else."""
    try:
        factory = INVOKERS[name]
    except KeyError:
        raise ConfigError(f"unknown invoker {name!r}; choose one of {', '.join(sorted(INVOKERS))}") from None
    return factory(settings, env)
